"""Run one scenario end to end: build, start, observe, inject, check, report, tear down."""

from __future__ import annotations

import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import checkers
import workloads

from . import report as report_mod
from .cluster import RUNNING, Cluster
from .faults import Faults
from .observer import Observer
from .recorder import Recorder
from .rundata import RunData
from .scenario import Scenario
from .steps import Steps
from .util import REPORTS_DIR, HarnessError, git_rev

# Exit codes of chaos/run.
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_PENDING, EXIT_UNSUPPORTED = 0, 1, 2, 3, 4


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: unwind so that teardown runs. SIGINT is handled here too,
    not left to KeyboardInterrupt: a shell starts background jobs with SIGINT ignored."""


@dataclass
class Options:
    nodes: int | None = None
    scale: float = 1.0
    keep: bool = False
    meshctl: str | None = None
    subnet: str = "10.77.0"
    profile: str = "lan"
    command: str = ""
    seed: int | None = None  # the workloads' schedules; None = a fresh one, recorded


class _Ctx:
    """What a workload gets: the cluster, the recorder, the observer, the step executor
    (for converge hooks and workload steps), the scenario's bounds and the seed."""

    def __init__(self, cluster, recorder, observer, steps, bounds, seed):
        self.cluster, self.recorder, self.observer = cluster, recorder, observer
        self.steps, self.bounds, self.seed = steps, bounds, seed


def run_scenario(scn: Scenario, opts: Options) -> tuple[int, dict | None]:
    """Returns (exit code, report)."""
    if scn.pending:
        print(f"{scn.slug}: pending: {scn.pending}", file=sys.stderr)
        return EXIT_PENDING, None
    nodes = opts.nodes or scn.nodes
    if nodes < scn.min_nodes:
        raise HarnessError(f"{scn.slug} needs at least {scn.min_nodes} nodes")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = REPORTS_DIR / f"{scn.slug}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = Recorder(run_dir)
    print(f"== chaos {scn.slug}: {scn.title} ({nodes} nodes, run dir {run_dir})",
          file=sys.stderr, flush=True)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal)
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    cluster: Cluster | None = None
    observer: Observer | None = None
    running_wl = []
    status, error = "completed", None
    try:
        quorum = {"claims", "strong-names", "leader"} & set(scn.workloads)
        cluster = Cluster.create(nodes, run_dir, opts.meshctl, opts.subnet, opts.profile,
                                 skews=scn.skew, t0=rec.t0,
                                 voters=scn.voters if quorum and nodes >= scn.voters else 0,
                                 spares=scn.spares)
        cluster.keep = opts.keep
        observer = Observer(cluster, rec)
        cluster.before_kill = observer.snapshot_metrics
        cluster.on_exit = lambda a, code: rec.event("agent_exited", node=a.name, pid=a.pid,
                                                    code=code)
        faults = Faults(cluster, rec)
        steps = Steps(cluster, faults, observer, rec, scn.bounds, opts.scale)
        faults.start(cluster.names())
        observer.start()
        voters = [a.voters for a in cluster.agents.values() if a.voters]
        if voters:
            rec.event("voters", voters=voters[0].split(","))
        seed = opts.seed if opts.seed is not None else random.randrange(1, 1 << 31)
        ctx = _Ctx(cluster, rec, observer, steps, scn.bounds, seed)
        if len(scn.workloads) > 1:
            cmd = opts.command or f"chaos/run {scn.name}"
            rec.event("workload_seed", seed=seed,
                      reproduce=cmd if "--seed" in cmd else f"{cmd} --seed {seed}")
        for name in scn.workloads:
            wl = workloads.get(name).Workload(ctx)
            wl.start()
            running_wl.append((name, wl))
            steps.workloads[name] = wl
        steps.step_converge(bound_key="formation_s")
        steps.run(scn.steps)
        steps.step_converge(final=True)
    except (KeyboardInterrupt, Interrupted) as e:
        status, error = "interrupted", f"interrupted ({type(e).__name__} {e})"
        print(f"\n{error}: tearing down", file=sys.stderr)
    except HarnessError as e:
        status, error = "error", str(e)
        print(f"error: {e}", file=sys.stderr)
    except Exception as e:  # a harness bug: still tear down, and say where
        status, error = "error", f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        for s in old:  # a second Ctrl-C must not cut the teardown short
            signal.signal(s, signal.SIG_IGN)
        for _, wl in running_wl:
            wl.stop()
        leftovers = _finish(cluster, observer, rec, opts.keep)
        for s, h in old.items():
            signal.signal(s, h)

    # A workload thread that crashed is a harness bug: the run proves nothing.
    crashed = [e for e in rec.events if e["kind"] == "workload_error"]
    if crashed and status == "completed":
        status, error = "error", (f"workload thread {crashed[0]['thread']} failed: "
                                  f"{crashed[0]['error']}")
        print(f"error: {error}\n{crashed[0]['trace']}", file=sys.stderr)
    data = RunData(
        scenario=scn.slug, nodes=cluster.names() if cluster else [],
        bounds=scn.bounds, events=rec.events,
        observations=observer.sorted_observations() if observer else [],
        metric_samples=list(observer.metric_samples) if observer else [],
        last_metrics=dict(observer.last_metrics) if observer else {},
        rss_max_kb=dict(observer.rss_max_kb) if observer else {},
        ops=dict(observer.ops) if observer else {},
        poll_failures=list(observer.failures) if observer else [],
        injected_drops=dict(cluster.net.injected) if cluster else {},
        log_dir=run_dir / "logs",
        status=status,
        registry_observations=observer.sorted_registry() if observer else [])
    # A run that never got its agents started has nothing to judge.
    started = any(e["kind"] == "start" for e in rec.events)
    results = run_checkers(scn, data) if started else []
    operations = {name: wl.operations() for name, wl in running_wl}
    binary = cluster.binary if cluster else {}
    rep = report_mod.build(scn, opts, nodes, data, results, operations, run_dir,
                           stamp, git_rev(), error, leftovers, binary)
    json_path, md_path = report_mod.write(rep, REPORTS_DIR / f"{scn.slug}-{stamp}")
    report_mod.save_run(data, run_dir, rep)
    print(report_mod.console_summary(rep, md_path), file=sys.stderr, flush=True)
    if opts.keep and cluster:
        print(f"cluster kept: {cluster.net.prefix} (chaos/fault --cluster "
              f"{cluster.net.prefix} status; chaos/cleanup {cluster.net.prefix})",
              file=sys.stderr)
    rec.close()
    return exit_code(rep), rep


def exit_code(rep: dict) -> int:
    if rep["status"] != "completed":
        return EXIT_ERROR
    return EXIT_PASS if rep["result"] in ("pass", "skipped") else EXIT_FAIL


def recheck(run_dir: Path) -> tuple[int, dict]:
    """Re-run today's checkers on a recorded run and rewrite its report."""
    from .scenario import find

    run_dir = run_dir.resolve()
    if run_dir.suffix in (".md", ".json"):
        run_dir = run_dir.with_suffix("")
    if not (run_dir / "rundata.json").exists():
        raise HarnessError(f"{run_dir}: not a run dir (no rundata.json)")
    data, saved = report_mod.load_run(run_dir)
    scn = find(data.scenario.split("-", 1)[1])
    opts = Options(scale=saved["duration_scale"], profile=saved["profile"],
                   command=saved["command"])
    results = run_checkers(scn, data)
    rep = report_mod.build(scn, opts, saved["nodes"], data, results, saved["operations"],
                           run_dir, saved["started"], saved["git"], saved["error"],
                           saved["leftovers"], saved["meshctl"])
    _, md_path = report_mod.write(rep, run_dir)
    print(report_mod.console_summary(rep, md_path), file=sys.stderr, flush=True)
    return exit_code(rep), rep


def _finish(cluster: Cluster | None, observer: Observer | None, rec: Recorder,
            keep: bool) -> list[str]:
    """Stop observing, take last metrics, then (unless keep) tear everything down."""
    if observer:
        observer.stop()
    if cluster is None:
        return []
    if observer:
        cluster.poll_exits()
        for a in cluster.agents.values():
            if a.status == RUNNING:
                observer.snapshot_metrics(a.name)
    if keep:
        return []
    try:
        cluster.net.clear_partitions()  # harvests the drop counters of active rules
        cluster.net.clear_loss()
    except HarnessError:
        pass
    cluster.before_kill = None
    cluster.on_exit = None
    leftovers = cluster.destroy()
    if leftovers:
        print(f"warning: could not remove {', '.join(leftovers)}; run chaos/cleanup",
              file=sys.stderr)
    rec.event("teardown", leftovers=leftovers)
    return leftovers


def run_checkers(scn: Scenario, data: RunData) -> list[checkers.Result]:
    out = []
    for mod in checkers.all_checkers():
        if mod.PENDING:
            out.append(checkers.Result(mod.NAME, notes=[f"pending: {mod.PENDING}"]))
            continue
        try:
            res = mod.check(data)
        except Exception as e:  # a checker bug must not pass silently
            res = checkers.Result(mod.NAME)
            res.violation("checker_error", f"{type(e).__name__}: {e}",
                          trace=traceback.format_exc())
        if mod.NAME not in scn.checkers:
            # Informational for this scenario: its violations do not fail the run.
            res.notes.append("not required by this scenario: "
                             f"{len(res.violations)} finding(s) informational")
            res.details["informational_violations"] = res.violations
            res.violations = []
        out.append(res)
    return out

