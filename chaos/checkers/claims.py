"""Claims: validity windows never overlap; tokens increase; the fence takes no stale token.

Safety, from the `claims` workload's history (chaos/workloads/claims.py lists the event
kinds; every time is on the oracle clock):

- **No overlap** (`window_overlap`). Each `claim_done` that granted or renewed a claim
  carries the holder's validity window `[t_answer, t_send + valid_for/rate − guard)`:
  from when the holder had the token until as long as the agent said from just before
  the request was sent, on the holder's own clock (its configured faketime rate), minus
  the client's guard. A
  release cuts the windows of its token at the moment it was sent. For each task, no
  two windows of *different* tokens overlap in real time.
- **Tokens strictly increase** (`token_not_increasing`, `token_reused`). For one task,
  a token first granted after another grant had completed is higher than that one; one
  token is never granted to two agents.
- **No stale token accepted** (`stale_token_accepted`). The fenced resource logs every
  write it accepted or refused, in its own order; per task, no accepted token is lower
  than a token it accepted before.

Availability under a cut (`minority_answered`, `majority_stalled`; checkers/_quorum.py):
from 5 s after a partition or isolation until its heal, the side with a majority of the
voters answers claims (200 or 409) and the other side only refuses them (503).

Evidence (a bound, so that a scenario cannot pass vacuously): `claims_min_grants`
(default 1: at least one claim was granted) and `claims_min_late_refused` (default 0;
scenario 6 sets 1: at least one write made after its window ended, by a holder that was
paused between its validity check and its write, was refused by the fence).

Everything else is counted in the details: grants, renewals, refusals (409 held),
unavailable (503), indeterminate (504 or a client timeout), writes accepted / refused /
skipped because the holder's own window had run out, late writes.
"""

from __future__ import annotations

import bisect

from . import Result, _quorum

NAME = "claims"
DESCRIPTION = "validity windows never overlap; tokens strictly increase; no stale token accepted"
PENDING = None

DEFAULT_MIN_GRANTS = 1
DEFAULT_MIN_LATE_REFUSED = 0


def windows(events: list[dict]) -> dict[str, list[dict]]:
    """Per task, the validity windows: {cid, node, token, start, end}, release-cut."""
    cut: dict[tuple, float] = {}
    for e in events:
        if e["kind"] == "claim_release":
            key = (e["node"], e["task"], e["token"])
            cut[key] = min(cut.get(key, e["t_send"]), e["t_send"])
    out: dict[str, list[dict]] = {}
    for e in events:
        if e["kind"] != "claim_done" or e.get("outcome") != "ok" or not e.get("window"):
            continue
        start, end = e["window"]
        start = max(start, e.get("at", start))  # the token is known from its answer on
        end = min(end, cut.get((e["node"], e["task"], e["token"]), end))
        if end <= start:
            continue
        out.setdefault(e["task"], []).append(
            {"cid": e["cid"], "node": e["node"], "token": e["token"], "start": start,
             "end": end, "k": e.get("k")})
    return out


def overlaps(ws: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of windows of different tokens that overlap (a sweep over start times)."""
    found = []
    active: list[dict] = []
    for w in sorted(ws, key=lambda w: (w["start"], w["end"])):
        active = [a for a in active if a["end"] > w["start"]]
        for a in active:
            if a["token"] != w["token"]:
                found.append((a, w))
        active.append(w)
    return found


def grants(events: list[dict]) -> dict[str, list[dict]]:
    """Per task, the first grant of each (node, token): {node, token, invoke, complete}."""
    invokes = {e["k"]: e.get("t_send", e["t"]) for e in events if e["kind"] == "claim"}
    seen = set()
    out: dict[str, list[dict]] = {}
    for e in events:
        if e["kind"] != "claim_done" or e.get("outcome") != "ok":
            continue
        key = (e["task"], e["node"], e["token"])
        if key in seen:
            continue
        seen.add(key)
        out.setdefault(e["task"], []).append(
            {"node": e["node"], "token": e["token"], "invoke": invokes.get(e["k"], e["t"]),
             "complete": e.get("at", e["t"]), "k": e["k"]})
    return out


def check_grants(task: str, gs: list[dict], res: Result) -> None:
    by_token: dict[int, str] = {}
    for g in gs:
        other = by_token.setdefault(g["token"], g["node"])
        if other != g["node"]:
            res.violation("token_reused",
                          f"task {task!r}: token {g['token']} granted to {other} and to "
                          f"{g['node']}", task=task, token=g["token"], nodes=[other, g["node"]])
    done = sorted(gs, key=lambda g: g["complete"])
    ends = [g["complete"] for g in done]
    best: list[dict] = []  # best[i]: the highest-token grant among done[:i+1]
    for g in done:
        best.append(g if not best or g["token"] > best[-1]["token"] else best[-1])
    for g in gs:
        i = bisect.bisect_left(ends, g["invoke"])  # grants completed before g was invoked
        if i == 0:
            continue
        prev = best[i - 1]
        if prev["token"] >= g["token"] and not (prev["token"] == g["token"]
                                                and prev["node"] == g["node"]):
            res.violation("token_not_increasing",
                          f"task {task!r}: token {g['token']} granted to {g['node']} at "
                          f"{g['invoke']:.3f}-{g['complete']:.3f}s after token "
                          f"{prev['token']} had been granted to {prev['node']} at "
                          f"{prev['complete']:.3f}s", task=task, token=g["token"],
                          earlier=prev["token"])


def check_fence(events: list[dict], res: Result) -> dict:
    writes = sorted((e for e in events if e["kind"] == "fence_write"),
                    key=lambda e: e["seq"])
    highest: dict[str, int] = {}
    counts = {"accepted": 0, "refused": 0, "late": 0, "late_accepted": 0,
              "late_refused": 0}
    for w in writes:
        task, token = w["task"], w["token"]
        late = not w.get("in_window", True)
        counts["accepted" if w["accepted"] else "refused"] += 1
        if late:
            counts["late"] += 1
            counts["late_accepted" if w["accepted"] else "late_refused"] += 1
        if not w["accepted"]:
            continue
        if task in highest and token < highest[task]:
            res.violation("stale_token_accepted",
                          f"task {task!r}: the fenced resource accepted token {token} from "
                          f"{w['node']} (write #{w['seq']} at {w['t']:.3f}s) after it had "
                          f"accepted token {highest[task]}", task=task, token=token,
                          highest=highest[task], seq=w["seq"])
        highest[task] = max(highest.get(task, token), token)
    return counts


def check(run) -> Result:
    res = Result(NAME)
    ev = run.events
    calls = [e for e in ev if e["kind"] == "claim_done"]
    if not any(e["kind"] == "claim" for e in ev):
        res.notes.append("no claims workload in this run")
        return res
    by_task = windows(ev)
    for task, ws in sorted(by_task.items()):
        for a, b in overlaps(ws):
            res.violation("window_overlap",
                          f"task {task!r}: {a['node']}'s window for token {a['token']} "
                          f"[{a['start']:.3f}, {a['end']:.3f}) overlaps {b['node']}'s for "
                          f"token {b['token']} [{b['start']:.3f}, {b['end']:.3f}) by "
                          f"{min(a['end'], b['end']) - b['start']:.3f}s",
                          task=task, windows=[a, b])
    gs = grants(ev)
    for task, g in sorted(gs.items()):
        check_grants(task, g, res)
    fence = check_fence(ev, res)
    sent = {e["k"]: e.get("t_send", e["t"]) for e in ev if e["kind"] == "claim"}
    cut_calls = [(e["node"], sent.get(e["k"], e["t"]), e.get("at", e["t"]), e.get("status"))
                 for e in calls]
    res.details["cuts"] = _quorum.judge(res, _quorum.cuts(run), cut_calls, "claim calls")
    outcomes: dict[str, int] = {}
    for e in calls:
        key = e.get("outcome", "?")
        if key == "refused":
            key = f"refused_{e.get('status')}"
        outcomes[key] = outcomes.get(key, 0) + 1
    n_grants = sum(len(g) for g in gs.values())
    skipped = sum(1 for e in ev if e["kind"] == "write_skipped")
    res.details.update(grants=n_grants, calls=outcomes, tasks=sorted(gs),
                       windows=sum(len(w) for w in by_task.values()), writes=fence,
                       writes_skipped_expired=skipped)
    min_grants = run.bounds.get("claims_min_grants", DEFAULT_MIN_GRANTS)
    if n_grants < min_grants:
        res.violation("too_few_grants", f"{n_grants} claims granted (bound: at least "
                      f"{min_grants}): the run did not exercise claims", grants=n_grants)
    min_late = run.bounds.get("claims_min_late_refused", DEFAULT_MIN_LATE_REFUSED)
    if fence["late_refused"] < min_late:
        res.violation("no_late_write_refused",
                      f"{fence['late_refused']} late writes refused by the fence (bound: at "
                      f"least {min_late}): the paused holder's stale write was not tested",
                      late=fence["late"], late_accepted=fence["late_accepted"])
    res.notes.append(f"{n_grants} grants, {res.details['windows']} windows; writes "
                     f"{fence['accepted']} accepted, {fence['refused']} refused "
                     f"({fence['late']} late: {fence['late_refused']} refused)")
    return res
