"""Synthetic runs for checker tests: no namespaces, no agents."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.rundata import RunData  # noqa: E402
from harness.scenario import DEFAULT_BOUNDS  # noqa: E402

NODES = ["n1", "n2", "n3"]
INC = {"n1": 100, "n2": 200, "n3": 300}


def view(me: str, states: dict[str, str], inc: dict[str, int] | None = None,
         age: float | None = None) -> dict:
    inc = {**INC, **(inc or {})}
    return {"self": me, "inc": inc[me], "age": age,
            "m": {n: [st, inc[n]] for n, st in states.items()}}


def all_alive(me: str, nodes=NODES, **kw) -> dict:
    return view(me, {n: "alive" for n in nodes}, **kw)


def poll(t: float, node: str, v: dict, pid: int = 1) -> dict:
    return {"t": t, "t_done": t + 0.01, "node": node, "pid": pid, "ok": True, "view": v,
            "outcome": "succeeded"}


def polls(t0: float, t1: float, make, nodes=NODES, step: float = 0.25) -> list[dict]:
    """One poll per node every `step` s in [t0, t1); make(node, t) -> view."""
    out, t = [], t0
    while t < t1:
        for i, n in enumerate(nodes):
            out.append(poll(round(t + i * 0.001, 3), n, make(n, t)))
        t += step
    return out


def converge_event(t: float, since: float, bound: float = 20.0, live=NODES,
                   after: str = "heal") -> dict:
    return {"t": t, "kind": "converge", "after": after, "since": since, "live": list(live),
            "bound_s": bound, "stable_s": 5.0}


def run(events, observations, **kw) -> RunData:
    observations = sorted(observations, key=lambda o: o["t_done"])
    return RunData(scenario="test", nodes=list(NODES), bounds=dict(DEFAULT_BOUNDS),
                   events=events, observations=observations, **kw)


def start_events() -> list[dict]:
    return [{"t": 0.0, "kind": "start", "nodes": NODES, "pids": {n: 1 for n in NODES},
             "disrupts": NODES}]
