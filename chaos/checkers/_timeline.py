"""Shared reading of a run's timeline: convergence times, disruption windows, loss phases.

Disruption model. A node is *disrupted* from the moment a fault names it (partitioned,
isolated, cut off in a ring, killed, stopped, paused, restarted, re-skewed) until the
first convergence after every such fault on it has been lifted (heal lifts network cuts;
restart/resume lift process faults). Downs of a disrupted node, or seen by one, are
expected. So are Downs while the cluster *settles* — from the lift until that
convergence — because the Down verdicts a cut-off node reached (an isolated node
declares everyone else down) reach everyone when it comes back, and SWIM cannot take a
Down back: the healthy node rejoins as a new incarnation. Every other Down is false: it
happened to a healthy node watched by a healthy node, under at most loss, bandwidth
limits or delay.
"""

from __future__ import annotations

import math

from harness.views import first_converged

NET_HOLD = {"partition", "isolate", "ring", "oneway", "flap"}
PROC_HOLD = {"kill", "stop", "pause", "agent_exited"}
PROC_LIFT = {"restart", "resume", "start", "skew"}


def converge_results(run) -> list[dict]:
    """Each converge step, re-derived from the observations (not the runner's verdict)."""
    out = []
    for ev in run.events_of("converge"):
        since, bound, live = ev["since"], ev["bound_s"], ev["live"]
        t, latest = first_converged(run.observations, live, since, bound,
                                    ev.get("stable_s", 0.0))
        out.append({"after": ev["after"], "since": since, "bound_s": bound, "live": live,
                    "converged_at": t, "took_s": None if t is None else round(t - since, 3),
                    "ok": t is not None, "latest": latest, "event": ev})
    return out


def disruption_windows(run) -> dict[str, list[tuple[float, float]]]:
    """node -> list of (start, end) windows in which it was disrupted."""
    return _windows(run)[0]


def settling_windows(run) -> list[tuple[float, float]]:
    """(lift, convergence) windows: a fault was lifted and the cluster had not settled."""
    return _windows(run)[1]


def _windows(run):
    settles = [(c["converged_at"], "settle", c) for c in converge_results(run)
               if c["converged_at"] is not None]
    timeline = [(e["t"], "event", e) for e in run.events] + settles
    timeline.sort(key=lambda x: (x[0], x[1] == "settle"))
    open_since: dict[str, float] = {}
    held_net: set[str] = set()
    held_proc: set[str] = set()
    windows: dict[str, list] = {n: [] for n in run.nodes}
    settling: list[tuple[float, float]] = []
    lifted_at: float | None = None
    for t, what, e in timeline:
        if what == "settle":
            for n in list(open_since):
                if n not in held_net and n not in held_proc:
                    windows.setdefault(n, []).append((open_since.pop(n), t))
            if lifted_at is not None:
                settling.append((lifted_at, t))
                lifted_at = None
            continue
        kind = e["kind"]
        targets = list(e.get("disrupts", []))
        if kind == "agent_exited":
            targets = [e["node"]]
        if kind == "heal" or kind in PROC_LIFT:
            if open_since and lifted_at is None:
                lifted_at = t
        for n in targets:
            open_since.setdefault(n, t)
        if kind in NET_HOLD:
            held_net |= set(targets)
        elif kind == "heal":
            held_net.clear()
        elif kind in PROC_HOLD:
            held_proc |= set(targets)
        elif kind in PROC_LIFT:
            held_proc -= set(targets)
    for n, start in open_since.items():
        windows.setdefault(n, []).append((start, math.inf))
    if lifted_at is not None:
        settling.append((lifted_at, math.inf))
    return windows, settling


def disrupted(windows: dict, node: str, t: float, slack: float = 0.0) -> bool:
    return any(a - slack <= t <= b + slack for a, b in windows.get(node, []))


def any_disrupted(windows: dict, a: float, b: float) -> bool:
    """True if some node is disrupted at some point of [a, b]."""
    return any(s <= b and e >= a for ws in windows.values() for s, e in ws)


def loss_windows(run) -> list[tuple[float, float, int]]:
    """(start, end, percent) for every phase with packet loss in force."""
    out, cur = [], None
    for e in run.events:
        if e["kind"] == "loss":
            if cur:
                out.append((cur[0], e["t"], cur[1]))
                cur = None
            if e["percent"] > 0:
                cur = (e["t"], e["percent"])
        elif e["kind"] == "heal" and cur:
            out.append((cur[0], e["t"], cur[1]))
            cur = None
    if cur:
        out.append((cur[0], math.inf, cur[1]))
    return out
