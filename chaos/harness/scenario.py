"""Scenarios: one small Python file each under chaos/scenarios/, holding only data.

A scenario file sets:

  NUMBER     int, its number in the issue's scenario set (extras from 10 up)
  NAME       short slug, e.g. "partition-halves"
  TITLE      one line
  NODES      default cluster size; MIN_NODES the smallest that makes sense
  STEPS      the timeline, a list of tuples: ("step", arg, ..., {kwargs}) — see steps.py
  BOUNDS     optional overrides: converge_s, formation_s, detect_s, false_downs, rss_mb,
             registry_converge_s, registry_stable_s, delivery_grace_s
  SKEW       optional {node: rate}: agents started under libfaketime at that clock rate
  WORKLOADS  workloads it needs (default ["membership"]); see chaos/workloads/
  CHECKERS   checkers that must pass (default: every landed checker); see chaos/checkers/
  VOTERS     3 (default) or 5: the voters n1..nV when a claims, strong-names or leader
             workload runs
  SPARES     namespaces past the agents', for impostors (the impostor_start step)
  CONTROL    for negative controls only: {"checker": NAME, "violation": KIND}; the run
             must FAIL with that violation (chaos/selftest asserts it)

A scenario that needs a pending workload or checker is pending itself: listed by
`chaos/run --list`, never run, never faked.

The runner starts every agent, waits for the cluster to form (converge, bound
formation_s), runs STEPS, and ends with a final converge measured from that moment: the
cluster must still be (or become again) converged at the end.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import checkers
import workloads

from .util import CHAOS_DIR, HarnessError

SCENARIO_DIR = CHAOS_DIR / "scenarios"

DEFAULT_BOUNDS = {
    "formation_s": 30.0,   # all agents started -> converged
    "converge_s": 20.0,    # heal/restart/resume -> converged
    "stable_s": 5.0,       # converged views must hold this long to count
    "detect_s": 15.0,      # await_down: every live agent reports the node down
    "false_downs": 0,      # false Downs allowed (loss-only and quiet phases)
    "rss_mb": 200.0,       # max VmRSS per agent
    "skew_tolerance": 0.10,  # measured clock rate vs configured, relative
    "registry_converge_s": 20.0,  # registry check begins -> same groups/names everywhere
    "registry_stable_s": 1.0,     # converged registry views must hold this long
    "delivery_grace_s": 3.0,      # a delivered message must be read from its stream by then
}


@dataclass
class Scenario:
    number: int
    name: str
    title: str
    nodes: int
    min_nodes: int
    steps: list
    bounds: dict
    skew: dict
    workloads: list[str]
    checkers: list[str]
    control: dict | None
    path: Path
    spares: int = 0  # extra namespaces, for impostors (SPARES)
    voters: int = 3  # voters n1..nV when a quorum workload runs (VOTERS: 3 or 5)
    pending: str | None = field(default=None)

    @property
    def slug(self) -> str:
        return f"{self.number:02d}-{self.name}"

    def matches(self, key: str) -> bool:
        k = key.strip().lower()
        return k in (str(self.number), f"{self.number:02d}", self.name, self.slug,
                     self.path.stem, f"s{self.number:02d}")


def load(path: Path) -> Scenario:
    spec = importlib.util.spec_from_file_location(f"scenario_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        number, name, title = mod.NUMBER, mod.NAME, mod.TITLE
        steps = list(mod.STEPS)
    except AttributeError as e:
        raise HarnessError(f"{path}: missing {e.name}") from e
    wl = list(getattr(mod, "WORKLOADS", ["membership"]))
    ck = list(getattr(mod, "CHECKERS", [c.NAME for c in checkers.landed()]))
    for w in wl:
        workloads.get(w)  # raises on an unknown name
    for c in ck:
        checkers.get(c)
    # Group what is missing by reason: "workload claims, checker claims: claims not
    # landed (issue 4)".
    missing: dict[str, list[str]] = {}
    for w in wl:
        if workloads.get(w).PENDING:
            missing.setdefault(workloads.get(w).PENDING, []).append(f"workload {w}")
    for c in ck:
        if checkers.get(c).PENDING:
            missing.setdefault(checkers.get(c).PENDING, []).append(f"checker {c}")
    pending = [f"{', '.join(what)}: {why}" for why, what in missing.items()]
    return Scenario(
        number=number, name=name, title=title, nodes=getattr(mod, "NODES", 5),
        min_nodes=getattr(mod, "MIN_NODES", 2), steps=steps,
        bounds={**DEFAULT_BOUNDS, **getattr(mod, "BOUNDS", {})},
        skew=dict(getattr(mod, "SKEW", {})), workloads=wl, checkers=ck,
        control=getattr(mod, "CONTROL", None), path=path,
        spares=int(getattr(mod, "SPARES", 0)),
        voters=int(getattr(mod, "VOTERS", 3)),
        pending="needs " + "; ".join(pending) if pending else None)


def all_scenarios() -> list[Scenario]:
    out = [load(p) for p in sorted(SCENARIO_DIR.glob("s*.py"))]
    out.sort(key=lambda s: (s.control is not None, s.number))
    return out


def find(key: str) -> Scenario:
    hits = [s for s in all_scenarios() if s.matches(key)]
    if not hits:
        names = ", ".join(s.slug for s in all_scenarios())
        raise HarnessError(f"no scenario {key!r}; have: {names}")
    return hits[0]
