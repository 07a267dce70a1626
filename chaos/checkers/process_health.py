"""Process health: no agent died unasked or panicked, memory stayed bounded, drops counted.

  exits    an agent process that ended without the harness killing or stopping it
  panics   a line containing "panicked" in any agent log
  memory   max VmRSS per agent (sampled every 0.5 s) above the bound (rss_mb)
  admin    an agent the harness believed running whose admin API did not answer for
           more than `admin_stall_s` seconds in a row
  drops    every process life must export the drop counter families (registered at
           zero: a missing family means drops could go uncounted); the last snapshot of
           each life (taken just before a kill, and at the end) is summed by reason,
           every `*_dropped_total` family and the send refusals
"""

from __future__ import annotations

from harness import prom

from . import Result

NAME = "process-health"
DESCRIPTION = "no unexpected exit or panic, bounded RSS, responsive admin API, drops counted"
PENDING = None

DROP_FAMILIES = (
    "mesh_transport_datagrams_dropped_total",
    "mesh_transport_frames_dropped_total",
    "mesh_membership_datagrams_dropped_total",
)
# Messages refused (to the sender, or by the receiving node), summed with the drops in
# the report; the sends checker compares them with what the harness saw.
REFUSAL_FAMILIES = ("mesh_send_errors_total", "mesh_process_refused_total")


def check(run) -> Result:
    r = Result(NAME)
    for ev in run.events_of("agent_exited"):
        r.violation("unexpected_exit", f"{ev['node']} (pid {ev['pid']}) exited with "
                    f"{ev.get('code')} without the harness asking", node=ev["node"])
    panics = []
    if run.log_dir and run.log_dir.exists():
        for log in sorted(run.log_dir.glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "panicked" in line:
                    panics.append(f"{log.stem}: {line.strip()[:300]}")
    for p in panics[:10]:
        r.violation("panic", p)
    bound_kb = run.bounds.get("rss_mb", 200) * 1024
    for node, kb in sorted(run.rss_max_kb.items()):
        if kb > bound_kb:
            r.violation("rss", f"{node} reached {kb / 1024:.0f} MB VmRSS "
                        f"(bound {bound_kb / 1024:.0f} MB)", node=node, kb=kb)
    stall = run.bounds.get("admin_stall_s", 5.0)
    # A streak belongs to one agent process: the last refused poll of a killed agent
    # and the first of its restart (before it listens) are not one outage.
    streak: dict[tuple[str, object], float] = {}
    for ob in run.observations:
        n = ob["node"]
        life = (n, ob.get("pid"))
        if ob.get("ok"):
            streak.pop(life, None)
        elif ob.get("outcome") in ("failed", "indeterminate"):
            first = streak.setdefault(life, ob["t"])
            if ob["t_done"] - first > stall:
                r.violation("admin_unresponsive", f"{n}: admin API failed for "
                            f"{ob['t_done'] - first:.1f}s from t={first:.1f}s "
                            f"({ob.get('err')})", node=n)
                streak[life] = float("inf")  # report once per streak
    drops: dict[str, float] = {}
    for (node, pid), m in sorted(run.last_metrics.items(), key=lambda x: str(x[0])):
        fams = {prom.family(k) for k in m}
        missing = [f for f in DROP_FAMILIES if f not in fams]
        if missing:
            r.violation("drop_counters_missing", f"{node} (pid {pid}) exports no "
                        + ", ".join(missing), node=node)
        for k, v in m.items():
            if (prom.family(k).endswith("_dropped_total") or prom.family(k)
                    in REFUSAL_FAMILIES) and v:
                drops[k] = drops.get(k, 0) + v
    r.details = {
        "max_rss_mb": {n: round(kb / 1024, 1) for n, kb in sorted(run.rss_max_kb.items())},
        "rss_bound_mb": bound_kb / 1024,
        "panics": panics,
        "drops_by_reason": dict(sorted(drops.items())),
        "injected_drops": dict(run.injected_drops),
        "process_lives": len(run.last_metrics),
    }
    return r
