"""Clock skew took effect: an agent run at rate R really sees its clock run at R.

The agent reports its own uptime (`age_seconds` of its self entry) on its monotonic
clock; the observer timestamps each poll on the real clock. For every agent life started
with a skew, the measured rate d(uptime)/d(real) over the life must be within
`skew_tolerance` of the configured rate. This checks the injector, not mesh: a skew
scenario whose agents did not actually skew would prove nothing.
"""

from __future__ import annotations

from . import Result

NAME = "clock-skew"
DESCRIPTION = "agents started under a clock-rate skew really run at that rate"
PENDING = None

MIN_SPAN_S = 10.0


def _lives(run) -> dict[tuple[str, int], float]:
    """(node, pid) -> configured rate, for every agent life."""
    rates: dict[str, float] = {}
    lives = {}
    for ev in run.events:
        if ev["kind"] in ("start", "restart"):
            for n, pid in ev.get("pids", {}).items():
                lives[(n, pid)] = ev.get("skews", {}).get(n, rates.get(n, 1.0))
                rates[n] = lives[(n, pid)]
        elif ev["kind"] == "skew":
            rates[ev["node"]] = ev["rate"]
            lives[(ev["node"], ev["pid"])] = ev["rate"]
    return lives


def measure(run, node: str, pid: int) -> tuple[float, float] | None:
    """(measured rate, real span) from the first and last poll of that life."""
    obs = [o for o in run.observations if o["node"] == node and o["pid"] == pid
           and o.get("ok") and o["view"].get("age") is not None]
    if len(obs) < 2:
        return None
    a, b = obs[0], obs[-1]
    real = (b["t"] + b["t_done"]) / 2 - (a["t"] + a["t_done"]) / 2
    if real < MIN_SPAN_S:
        return None
    return (b["view"]["age"] - a["view"]["age"]) / real, real


def check(run) -> Result:
    r = Result(NAME)
    tol = run.bounds.get("skew_tolerance", 0.10)
    rows = []
    for (node, pid), rate in sorted(_lives(run).items(), key=lambda x: str(x[0])):
        m = measure(run, node, pid)
        if m is None:
            continue
        measured, span = m
        rows.append({"node": node, "pid": pid, "configured": rate,
                     "measured": round(measured, 3), "span_s": round(span, 1)})
        if rate != 1.0 and abs(measured / rate - 1) > tol:
            r.violation("skew_not_applied", f"{node} (pid {pid}) configured at x{rate}, "
                        f"its clock ran at x{measured:.3f} over {span:.0f}s", node=node)
    r.details = {"lives": rows}
    if not any(row["configured"] != 1.0 for row in rows):
        r.notes.append("no skewed agent in this run")
    return r
