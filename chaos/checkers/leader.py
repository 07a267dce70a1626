"""Leader election: one leader's effects at a time, and a new leader soon after a death.

From the `leader` workload's history (chaos/workloads/leader.py lists the event kinds;
every time is on the oracle clock). A **term** is one run of the command under one
fencing token on one node: from the earlier of meshctl's `leader` line and the token's
first write, to its `exited` line (or the end of that meshctl process) — it covers
every effect the command could make.

Safety:
- **No two leaders at once** (`leaders_overlap`): no two terms of different tokens (or
  of different nodes) overlap in time. meshctl stops the command before its validity
  ends, and validity ends before another agent can win, so terms are disjoint.
- **Tokens strictly increase** (`token_not_increasing`): each term's token is above the
  previous term's (equal only for the same node re-leading on the claim it held).
- **The fence takes no stale token** (`stale_token_accepted`, shared with the claims
  checker): among the writes the fenced resource accepted, in its order, tokens never
  go down.
- **No effect outside a term** (`effect_outside_term`): every write the resource saw
  with token T from node N falls inside a term of N with T (EFFECT_SLACK_S after its
  end for a write in flight). A write after the term ended is a command that was not
  stopped — the fence may still refuse it, but the election promised it would not run.

Liveness (`leadership_not_regained`): after each `leader_fault` (the leader's agent
paused or killed), a term with a higher token starts within leader_failover_s — by
default TTL·(1+ρ) + TTL/4 + FAILOVER_SLACK_S, the README's bound (eviction, one commit,
the largest backoff) plus detection and meshctl's own start; TTL from `leader_config`.

Evidence: leader_min_terms (default 1) terms, leader_min_failovers (default 0;
scenario 16 sets 2) faults followed by a new leader in time.
"""

from __future__ import annotations

from . import Result
from .claims import check_fence

NAME = "leader"
DESCRIPTION = "leader terms never overlap; tokens increase; no effect outside a term; failover in time"
PENDING = None

RHO = 0.001              # the agents' clock-rate bound (claims)
DEFAULT_TTL_S = 10.0     # the agents' default claims_ttl
FAILOVER_SLACK_S = 5.0
EFFECT_SLACK_S = 0.1
DEFAULT_MIN_TERMS = 1
DEFAULT_MIN_FAILOVERS = 0


def terms(events: list[dict]) -> list[dict]:
    """Every term: {node, mpid, token, start, end, leader_t}, sorted by start."""
    out: list[dict] = []
    open_: dict[int, dict] = {}  # mpid -> the open term
    last_t = max((e["t"] for e in events), default=0.0)
    for e in events:
        k = e["kind"]
        if k == "elect_event" and e.get("event") == "leader":
            t = {"node": e["node"], "mpid": e["mpid"], "token": int(e["token"]),
                 "start": e["t"], "leader_t": e["t"], "end": None}
            open_[e["mpid"]] = t
            out.append(t)
        elif k == "elect_event" and e.get("event") == "exited":
            t = open_.pop(e["mpid"], None)
            if t is not None:
                t["end"] = e["t"]
        elif k == "elect_exit":
            t = open_.pop(e["mpid"], None)
            if t is not None:
                t["end"] = e["t"]
    for t in out:
        if t["end"] is None:
            t["end"] = last_t  # still leading when the history ends
    # The command may write before its `leader` line is read: the term starts earlier.
    for w in events:
        if w["kind"] != "fence_write" or not str(w.get("task", "")).startswith("elect/"):
            continue
        for t in out:
            if (t["node"], t["token"]) == (w["node"], w["token"]) and \
                    t["start"] - 1.0 <= w["t"] < t["start"]:
                t["start"] = w["t"]
                break
    return sorted(out, key=lambda t: t["start"])


def failover_bound(run) -> float:
    if "leader_failover_s" in run.bounds:
        return float(run.bounds["leader_failover_s"])
    cfg = run.events_of("leader_config")
    ttl = (cfg[0].get("ttl_s") if cfg else None) or DEFAULT_TTL_S
    return ttl * (1 + RHO) + ttl / 4 + FAILOVER_SLACK_S


def check(run) -> Result:
    res = Result(NAME)
    ev = run.events
    if not any(e["kind"] == "elect_start" for e in ev):
        res.notes.append("no leader workload in this run")
        return res
    ts = terms(ev)
    for i, a in enumerate(ts):
        for b in ts[i + 1:]:
            if b["start"] >= a["end"]:
                continue
            if (a["node"], a["token"]) == (b["node"], b["token"]):
                continue
            res.violation("leaders_overlap",
                          f"{a['node']} led with token {a['token']} in "
                          f"[{a['start']:.3f}, {a['end']:.3f}] and {b['node']} with token "
                          f"{b['token']} from {b['start']:.3f}: overlap "
                          f"{min(a['end'], b['end']) - b['start']:.3f}s", terms=[a, b])
    for a, b in zip(ts, ts[1:]):
        if b["token"] < a["token"] or (b["token"] == a["token"] and b["node"] != a["node"]):
            res.violation("token_not_increasing",
                          f"{b['node']}'s term from {b['start']:.3f}s has token {b['token']}, "
                          f"not above {a['node']}'s earlier token {a['token']}",
                          terms=[a, b])
    writes = [e for e in ev if e["kind"] == "fence_write"
              and str(e.get("task", "")).startswith("elect/")]
    fence = check_fence(writes, res)
    outside: dict[tuple, list[dict]] = {}
    for w in writes:
        if not any((t["node"], t["token"]) == (w["node"], w["token"])
                   and t["start"] <= w["t"] <= t["end"] + EFFECT_SLACK_S for t in ts):
            outside.setdefault((w["node"], w["token"]), []).append(w)
    for (node, token), ws in sorted(outside.items()):
        acc = sum(1 for w in ws if w["accepted"])
        res.violation("effect_outside_term",
                      f"{len(ws)} writes with token {token} from {node} outside its terms "
                      f"({acc} accepted by the fence), the first at {ws[0]['t']:.3f}s: its "
                      f"command was not stopped", node=node, token=token, writes=len(ws),
                      accepted=acc, first=ws[0]["t"])
    bound = failover_bound(run)
    regained = 0
    for f in run.events_of("leader_fault"):
        nxt = next((t for t in ts if t["token"] > f["token"] and t["start"] >= f["t"]), None)
        took = None if nxt is None else nxt["start"] - f["t"]
        if took is None or took > bound:
            res.violation("leadership_not_regained",
                          f"after {f['node']} (leading with token {f['token']}) was "
                          f"{f['fault']}d at {f['t']:.3f}s, "
                          + ("no new leader" if nxt is None else
                             f"{nxt['node']} led with token {nxt['token']} only after "
                             f"{took:.3f}s")
                          + f" (bound {bound:.2f}s)", node=f["node"], token=f["token"],
                          took_s=took, bound_s=bound)
        else:
            regained += 1
    res.details.update(terms=len(ts), writes=fence, failover_bound_s=round(bound, 3),
                       faults_regained=regained,
                       tokens=[t["token"] for t in ts])
    min_terms = run.bounds.get("leader_min_terms", DEFAULT_MIN_TERMS)
    if len(ts) < min_terms:
        res.violation("too_few_terms", f"{len(ts)} leader terms (bound: at least "
                      f"{min_terms}): the run did not exercise the election", terms=len(ts))
    min_fo = run.bounds.get("leader_min_failovers", DEFAULT_MIN_FAILOVERS)
    if regained < min_fo:
        res.violation("too_few_failovers", f"{regained} leader faults followed by a new "
                      f"leader in time (bound: at least {min_fo})", regained=regained)
    res.notes.append(f"{len(ts)} terms, tokens {[t['token'] for t in ts][:12]}; writes "
                     f"{fence['accepted']} accepted, {fence['refused']} refused; "
                     f"{regained} failovers within {bound:.1f}s")
    return res
