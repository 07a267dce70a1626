"""Membership detection: a dead or paused node is seen down in bound, and comes back new.

  await_down N            every other live agent reports N down (or left) within the
                          bound, counted from the fault that took N away
  expect_new_incarnation  N, back after a disruption, runs a higher incarnation than
                          before it (a peer declared down rejoins as a new incarnation)
"""

from __future__ import annotations

from harness.views import DOWN, LEFT

from . import Result

NAME = "membership-detection"
DESCRIPTION = "failed nodes are seen down within bound; returning nodes have a new incarnation"
PENDING = None

DISRUPTIONS = ("kill", "stop", "pause", "hidden_pause", "isolate", "partition", "skew",
               "restart")


def _detected_at(run, target: str, watchers: list[str], since: float, end: float):
    latest = {}
    for ob in run.observations:
        if ob["t"] < since or not ob.get("ok"):
            continue
        if ob["t_done"] > end:
            break
        latest[ob["node"]] = ob["view"]
        if all(w in latest and latest[w]["m"].get(target, [None])[0] in (DOWN, LEFT)
               for w in watchers):
            return ob["t_done"]
    return None


def _self_inc(run, node: str, before: float | None = None, after: float | None = None):
    obs = [o for o in run.observations if o["node"] == node and o.get("ok")]
    if before is not None:
        obs = [o for o in obs if o["t_done"] < before]
        return obs[-1]["view"]["inc"] if obs else None
    obs = [o for o in obs if o["t"] >= after]
    return obs[0]["view"]["inc"] if obs else None


def check(run) -> Result:
    r = Result(NAME)
    detections = []
    for ev in run.events_of("await_down"):
        t = _detected_at(run, ev["node"], ev["watchers"], ev["since"],
                         ev["since"] + ev["bound_s"])
        took = None if t is None else round(t - ev["since"], 3)
        detections.append({"node": ev["node"], "took_s": took, "bound_s": ev["bound_s"]})
        if t is None:
            r.violation("not_detected", f"{ev['node']} not reported down by every live "
                        f"agent within {ev['bound_s']:.0f}s", node=ev["node"],
                        since=ev["since"])
    rejoins = []
    for ev in run.events_of("expect_new_incarnation"):
        node = ev["node"]
        prior = [e for e in run.events if e["t"] <= ev["t"] and e["kind"] in DISRUPTIONS
                 and node in (e.get("nodes") or e.get("disrupts") or [e.get("node")])]
        if not prior:
            r.violation("no_disruption", f"expect_new_incarnation {node}: no prior fault")
            continue
        before = _self_inc(run, node, before=prior[-1]["t"])
        after = _self_inc(run, node, after=ev["t"])
        rejoins.append({"node": node, "before": before, "after": after})
        if before is None or after is None or after <= before:
            r.violation("same_incarnation", f"{node} came back at incarnation {after}, "
                        f"not above {before}", node=node, before=before, after=after)
    r.details = {"detections": detections, "rejoins": rejoins}
    return r
