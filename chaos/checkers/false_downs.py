"""False Downs: no healthy node is declared down, above all during loss-only phases.

Two independent counts, each compared with the bound (default 0):

  poll-based    from the /v1/members polls: an episode where agent O shows agent X
                down while neither O nor X was disrupted (see _timeline: partitioned,
                killed, paused, restarted — loss, bandwidth and delay disrupt nobody);
                plus every time X rejoined at a higher incarnation (it was declared down
                somewhere, even if no poll caught the Down) while no node at all was
                disrupted — a disrupted node's Down verdicts reach everyone on heal
                Downs while the cluster settles after a heal/resume/restart are
                expected (see _timeline) and reported as settling_downs
  metric-based  deltas of mesh_membership_events_total{kind="down"} and of
                mesh_membership_rejoins_total (this node was declared down and renewed
                its incarnation) over metric samples that fall entirely in a window
                where no node was disrupted

Episodes are split into those during loss and the rest.
"""

from __future__ import annotations

from harness.views import DOWN

from . import Result
from ._timeline import (any_disrupted, disrupted, disruption_windows, loss_windows,
                        settling_windows)

NAME = "false-downs"
DESCRIPTION = "no Down of a node that was never killed, paused or partitioned"
PENDING = None


def _in_loss(losses, t: float) -> bool:
    return any(a <= t <= b for a, b, _ in losses)


def check(run) -> Result:
    r = Result(NAME)
    windows = disruption_windows(run)
    settling = settling_windows(run)
    losses = loss_windows(run)
    slack = run.poll_interval * 2
    episodes = []
    settling_downs = 0

    def while_settling(t: float) -> bool:
        return any(a <= t <= b + slack for a, b in settling)
    # Poll-based: Down episodes per (observer, target).
    state: dict[tuple[str, str], str] = {}
    for ob in run.observations:
        if not ob.get("ok"):
            continue
        o = ob["node"]
        for x, (st, _inc) in ob["view"]["m"].items():
            if x == o:
                continue
            prev = state.get((o, x))
            state[(o, x)] = st
            if st != DOWN or prev == DOWN:
                continue
            t = ob["t"]
            if disrupted(windows, o, t, slack) or disrupted(windows, x, t, slack):
                continue
            if while_settling(t):
                settling_downs += 1
                continue
            episodes.append({"kind": "down", "observer": o, "target": x, "t": t,
                             "during_loss": _in_loss(losses, t)})
    # Poll-based: silent rejoins (self incarnation rose without a harness restart).
    last_inc: dict[tuple[str, int], int] = {}
    for ob in run.observations:
        if not ob.get("ok"):
            continue
        key, inc = (ob["node"], ob["pid"]), ob["view"]["inc"]
        prev = last_inc.get(key)
        last_inc[key] = inc
        # The Down behind a rejoin may come from any node (whoever declared it down
        # gossips that), so only a rejoin while no node at all was disrupted is false.
        if prev is not None and inc > prev and not any_disrupted(windows, ob["t"] - slack,
                                                                 ob["t"]):
            episodes.append({"kind": "rejoined", "observer": ob["node"],
                             "target": ob["node"], "t": ob["t"], "from": prev, "to": inc,
                             "during_loss": _in_loss(losses, ob["t"])})
    # Metric-based.
    metric_false = 0
    by_life: dict[tuple[str, int], list] = {}
    for s in run.metric_samples:
        if s.get("down") is not None:
            by_life.setdefault((s["node"], s["pid"]), []).append(s)
    for samples in by_life.values():
        samples.sort(key=lambda s: s["t"])
        for a, b in zip(samples, samples[1:]):
            delta = (b["down"] - a["down"]) + ((b.get("rejoins") or 0)
                                               - (a.get("rejoins") or 0))
            if delta > 0 and not any_disrupted(windows, a["t"] - slack, b["t"] + slack):
                metric_false += int(delta)
    poll_false = len(episodes)
    during_loss = sum(1 for e in episodes if e["during_loss"])
    bound = run.bounds.get("false_downs", 0)
    r.details = {"false_downs": max(poll_false, metric_false), "poll_based": poll_false,
                 "metric_based": metric_false, "during_loss": during_loss,
                 "settling_downs": settling_downs,
                 "loss_phases": [[a, b if b != float("inf") else None, p]
                                 for a, b, p in losses],
                 "episodes": episodes[:50], "bound": bound}
    if poll_false > bound:
        r.violation("false_down", f"{poll_false} false Down(s) seen in polls "
                    f"({during_loss} during loss): " + "; ".join(
                        f"{e['observer']} saw {e['target']} down at t={e['t']:.1f}s"
                        if e["kind"] == "down" else
                        f"{e['target']} forced to rejoin as a new incarnation at "
                        f"t={e['t']:.1f}s" for e in episodes[:5]), count=poll_false)
    if metric_false > bound:
        r.violation("false_down_metric", f"{metric_false} down/rejoin event(s) counted by "
                    "the agents' metrics while no node was disrupted",
                    count=metric_false)
    return r
