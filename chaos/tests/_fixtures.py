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


# -- groups, names and sends (harness/registry.py lists the event kinds) ----------------------
def pid_of(node: str, local: int, inc: int = 7) -> str:
    return f"{node}/{inc}/{local}"


def listener(lid: str, node: str, t: float, groups=(), scope: str = "default",
             name: str | None = None, local: int | None = None, agent_pid: int = 1,
             hlc: str | None = None) -> list[dict]:
    """listen + listen_ok (+ name_claim when named) events; the PID is node/7/<local>."""
    pid = pid_of(node, local if local is not None else int(lid[1:]))
    evs = [{"t": t, "kind": "listen", "lid": lid, "node": node, "groups": list(groups),
            "scope": scope, "name": name, "owner": "names" if name else "groups"},
           {"t": t + 0.01, "kind": "listen_ok", "lid": lid, "pid": pid,
            "agent_pid": agent_pid}]
    if name:
        evs.append({"t": t + 0.02, "kind": "name_claim", "lid": lid, "name": name,
                    "pid": pid, "hlc": hlc, "holder": pid})
    return evs


def registry_check(t: float, since: float, live=NODES, after: str = "heal",
                   bound: float = 20.0, stable: float = 1.0) -> dict:
    return {"t": t, "kind": "registry_converge", "after": after, "since": since,
            "live": list(live), "bound_s": bound, "stable_s": stable}


def rview(groups: dict | None = None, names: dict | None = None) -> dict:
    """A registry view: groups {"S/G": {pid: count | [count, meta]}}, names {name: pid}."""
    g = {k: {p: (c if isinstance(c, list) else [c, None]) for p, c in m.items()}
         for k, m in (groups or {}).items()}
    return {"groups": g, "names": {n: [p, None] for n, p in (names or {}).items()}}


def rpolls(t0: float, t1: float, make, nodes=NODES, step: float = 0.5) -> list[dict]:
    """Registry polls of every node every `step` s in [t0, t1); make(node, t) -> view."""
    out, t = [], t0
    while t < t1:
        for i, n in enumerate(nodes):
            tt = round(t + i * 0.001, 3)
            out.append({"t": tt, "t_done": tt + 0.02, "node": n, "pid": 1, "ok": True,
                        "view": make(n, t)})
        t += step
    return sorted(out, key=lambda o: o["t_done"])
