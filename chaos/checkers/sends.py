"""Sends: nothing delivered twice or to the wrong process, answers count exactly what
arrived, order per sender kept, every refusal counted by the agent.

Inputs: the sends workload's history (`send` / `send_done`, payloads unique per send),
what each listener read from its stream (`recv`, in stream order) and the agents' last
/metrics of each process life. "Candidates" of a send are the listeners its
destination can reach: members of the group in its scope (only those on the sending
agent for mode local), the listeners that claimed the name, or the listener with the
PID. Asserted, exactly:

  duplicate_delivery        no listener reads one payload twice (always);
  misdelivered              every payload read belongs to a send, was read after that
                            send was invoked, by one of its candidates (always);
  over_delivered            a send answered 200 was read by at most `delivered`
                            listeners, plus the candidates on the nodes in `timed_out`
                            (whose fate the answer leaves unknown) (always);
  delivered_after_refusal   a send answered with an error other than 504 (nothing was
                            sent) was read by nobody (always);
  under_delivered           a send answered 200 with nothing timed out was read by at
                            least `delivered` listeners — only where that is decidable:
                            no candidate began closing or lost its stream between the
                            send and delivery_grace_s after the answer while its process
                            may still have been taking messages (a closed listener's
                            process lives until its agent notices; until its close was
                            confirmed), no candidate's agent was paused, killed,
                            stopped or restarted in that window, and the window ended
                            before the workloads stopped. Sends left out are counted
                            (`not_decidable`), never judged;
  reordered                 for two sends through the same agent (one sender, each
                            invoked after the previous was answered) read by the same
                            listener, the earlier one is read first (always);
  uncounted_drop            every refusal the harness saw is counted by the agent process
                            that made it: an error answer naming a SendError, or a local
                            entry in `failed`, in the sender's `mesh_send_errors_total
                            {reason}`; a remote entry in `failed`, or "<pid> refused the
                            message: <why>", in the refusing agent's
                            `mesh_process_refused_total{reason}` (the last snapshot of
                            each process life, at least as many). A family an agent
                            does not export is noted, not judged. Refusals answered in
                            the METRICS_LAG_S before that snapshot are left out (the
                            agent publishes its counters every 250 ms).
Timeouts (504, a client timeout) are indeterminate: only the "always" checks apply.
"""

from __future__ import annotations

import math
import re

from harness import prom
from harness.registry import History, Listener

from . import Result

NAME = "sends"
DESCRIPTION = ("no duplicate or misdirected delivery; answers count what arrived; "
               "order per sender kept; refusals counted")
PENDING = None

SEND_ERRORS = "mesh_send_errors_total"        # counted by the sending agent
PROCESS_REFUSED = "mesh_process_refused_total"  # counted by the refusing (receiving) agent
# A single destination on another node that refused: "<pid> refused the message: <why>".
REMOTE_REFUSAL = re.compile(r"^(\S+) refused the message: (\w+)")
# SendError's messages (mesh-core node::SendError) -> its metric reason label.
ERROR_REASONS = (
    (re.compile(r"^no such process"), "no_process"),
    (re.compile(r"^no process is registered as"), "no_such_name"),
    (re.compile(r"has no member to send to"), "empty_group"),
    (re.compile(r"is not reachable"), "node_down"),
    (re.compile(r"^the mailbox of .* is full"), "mailbox_full"),
    (re.compile(r"^the send queue to node .* is full"), "backpressure"),
    (re.compile(r"exceeds the limit"), "too_large"),
)
METRICS_LAG_S = 1.0
LIFE_FAULTS = ("pause", "hidden_pause", "kill", "stop", "restart", "skew", "agent_exited")


def error_reason(error: str | None) -> str | None:
    """The sender-side SendError reason of an error answer, or None (remote refusals,
    timeouts and transport errors are not the sender's drops)."""
    for rx, reason in ERROR_REASONS:
        if error and rx.search(error):
            return reason
    return None


def reaches(s: dict, x: Listener) -> bool:
    """True when listener x is a candidate of send s (its destination can reach x)."""
    if s["dest"] == "group":
        ok = x.scope == (s.get("scope") or "default") and s["target"] in x.groups
        return ok and (s.get("mode") != "local" or x.node == s["via"])
    if s["dest"] == "name":
        return x.name == s["target"]
    return x.pid == s["target"]


def candidates(h: History, s: dict) -> list[Listener]:
    return [x for x in h.listeners.values() if reaches(s, x)]


def _proc_gone(x: Listener) -> float:
    """When the listener's process surely took no more messages."""
    if x.t_close is not None:
        return x.t_closed if x.close_confirmed and x.t_closed is not None else math.inf
    if x.t_ended is not None:
        return x.t_ended
    return math.inf


def check(run) -> Result:
    r = Result(NAME)
    h = History(run.events)
    if not h.sends:
        r.notes.append("no sends workload in this run")
        return r
    grace = run.bounds.get("delivery_grace_s", 3.0)
    teardown = [e["t"] for e in run.events_of("unlisten") if e.get("teardown")]
    stop_t = min(teardown) if teardown else run.events[-1]["t"]
    by_payload = {v["send"]["payload"]: v for v in h.sends.values()}
    readers: dict[str, set[str]] = {}
    dup = mis = reord = 0
    for x in h.listeners.values():
        seen: dict[str, int] = {}
        last_seq: dict[str, tuple[int, str]] = {}
        for ev in x.received:
            p = ev.get("payload")
            seen[p] = seen.get(p, 0) + 1
            if seen[p] == 2:
                dup += 1
                r.violation("duplicate_delivery", f"{x.lid} ({x.pid}) read {p!r} twice "
                            f"(t={ev['t']:.2f}s)", lid=x.lid, payload=p)
            readers.setdefault(p, set()).add(x.lid)
            v = by_payload.get(p)
            if v is None or ev["t"] < v["send"]["t"] or not reaches(v["send"], x):
                mis += 1
                why = ("no send had it" if v is None else "read before it was sent"
                       if ev["t"] < v["send"]["t"] else "not a candidate of its send")
                r.violation("misdelivered", f"{x.lid} ({x.pid}, groups {x.groups} in "
                            f"{x.scope}, name {x.name}) read {p!r}: {why}", lid=x.lid,
                            payload=p)
                continue
            s = v["send"]
            prev = last_seq.get(s["via"])
            if prev and s["seq"] < prev[0]:
                reord += 1
                r.violation("reordered", f"{x.lid} read {p!r} after {prev[1]!r}, both "
                            f"sent through {s['via']} in the opposite order", lid=x.lid)
            if not prev or s["seq"] > prev[0]:
                last_seq[s["via"]] = (s["seq"], p)
    exact = undecidable = indeterminate = 0
    refusals: dict[tuple[str, int], dict[str, int]] = {}
    for sid, v in sorted(h.sends.items()):
        s, d = v["send"], v["done"]
        got = readers.get(s["payload"], set())
        if d is None or d["outcome"] == "indeterminate":
            indeterminate += 1
            continue
        if d["status"] == 200:
            k = int(d.get("delivered") or 0)
            cands = candidates(h, s)
            unknown = sum(1 for x in cands if x.node in (d.get("timed_out") or []))
            if len(got) > k + unknown:
                r.violation("over_delivered", f"send {sid} ({s['dest']} {s['target']}, "
                            f"mode {s.get('mode')}) answered delivered={k} (timed out: "
                            f"{d.get('timed_out')}) but {len(got)} listeners read it: "
                            f"{sorted(got)}", sid=sid)
            a, b = s["t"], d["t"] + grace
            decidable = (not d.get("timed_out") and b <= stop_t and not any(
                x.gone_at() <= b and _proc_gone(x) >= a for x in cands) and not any(
                a <= t <= b and k2 in LIFE_FAULTS
                for x in cands for t, k2 in h.proc_faults.get(x.node, [])))
            if not decidable:
                undecidable += 1
            else:
                exact += 1
                if len(got) < k:
                    r.violation("under_delivered", f"send {sid} ({s['dest']} "
                                f"{s['target']}) answered delivered={k}, but only "
                                f"{len(got)} listener(s) read it within {grace:.0f}s: "
                                f"{sorted(got)}", sid=sid)
            for f in d.get("failed") or []:
                node = f.get("pid", "").split("/", 1)[0]
                fam = SEND_ERRORS if node == s["via"] else PROCESS_REFUSED
                _count(refusals, h, fam, node, d["t"], f.get("reason"))
        else:
            if got:
                r.violation("delivered_after_refusal", f"send {sid} was refused "
                            f"({d['status']}: {d.get('error')}) but {sorted(got)} read it",
                            sid=sid)
            _count(refusals, h, SEND_ERRORS, s["via"], d["t"], error_reason(d.get("error")))
            m = REMOTE_REFUSAL.search(d.get("error") or "")
            if m:
                _count(refusals, h, PROCESS_REFUSED, m.group(1).split("/", 1)[0], d["t"],
                       m.group(2))
    counted = _compare_metrics(r, run, refusals)
    r.details = {"sends": len(h.sends), "decided_exactly": exact,
                 "not_decidable": undecidable, "indeterminate": indeterminate,
                 "reads": sum(len(x.received) for x in h.listeners.values()),
                 "duplicates": dup, "misdelivered": mis, "reordered": reord,
                 "refusals_seen": {f"{f} {n} pid {p}": {k: len(v) for k, v in c.items()}
                                   for (f, n, p), c in sorted(refusals.items(), key=str)},
                 "refusals_counted": counted}
    return r


def _count(refusals: dict, h: History, family: str, node: str, t: float,
           reason: str | None) -> None:
    """Count a refusal (answered at t) against the agent process that must count it."""
    if reason:
        c = refusals.setdefault((family, node, h.agent_pid_at(node, t)), {})
        c.setdefault(reason, []).append(t)


def _compare_metrics(r: Result, run, refusals: dict) -> dict:
    # When each life's last snapshot was taken (the observer samples it with the rest).
    snap_t: dict[tuple, float] = {}
    for smp in run.metric_samples:
        key = (smp["node"], smp["pid"])
        snap_t[key] = max(snap_t.get(key, smp["t"]), smp["t"])
    out = {}
    missing = []
    for (family, node, pid), seen in sorted(refusals.items(), key=str):
        m = run.last_metrics.get((node, pid))
        if m is None:
            r.notes.append(f"{node} pid {pid}: no /metrics snapshot; refusals not compared")
            continue
        if not prom.select(m, family):
            missing.append(f"{family} on {node} pid {pid}")
            continue
        last = snap_t.get((node, pid), math.inf)
        for reason, ts in sorted(seen.items()):
            # The agent publishes its counters every 250 ms, on its next loop turn: a
            # refusal in the last METRICS_LAG_S before the snapshot may not be in it yet.
            n = sum(1 for t in ts if t <= last - METRICS_LAG_S)
            have = m.get(prom.key(family, {"reason": reason}), 0.0)
            out[f"{family} {node} pid {pid} {reason}"] = f"{have:.0f} counted >= {n} seen"
            if have < n:
                r.violation("uncounted_drop", f"{node} (pid {pid}) refused {n} "
                            f"message(s) with {reason}, its {family}{{reason=\"{reason}\"}} "
                            f"is {have:.0f}", node=node, reason=reason, family=family)
    if missing:
        r.notes.append("not exported, refusals not compared: " + ", ".join(missing))
    return out
