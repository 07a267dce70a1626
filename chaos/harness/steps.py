"""The step vocabulary of scenario timelines, and its executor.

Node selectors (any argument naming nodes):
  "all", "n3", "n1,n2", "first", "last",
  "half1" / "half2"        first floor(N/2) nodes / the rest
  "third1" .. "third3"     N split in three for the majority ring (5 -> n1,n2 | n3 | n4,n5)
  "others:n3"              everyone but n3
  "{node}"                 the current node inside foreach

Steps (trailing dict = keyword arguments; durations are scaled by --duration-scale,
bounds are not):
  ("hold", seconds)                       let the cluster run
  ("converge", {"within": s})             wait until every live agent shows the same
                                          members, all alive, starting within the bound
                                          (converge_s) and holding for stable_s
  ("partition", sel_a, sel_b)             ("isolate", node)    ("ring", a, b, c)
  ("oneway", sel_a, sel_b, {"excuse": False})   a's packets to b dropped, b's to a pass;
                                          excuse=True counts a and b as disrupted
  ("loss", percent[, sel])                ("bandwidth", sel, rate | None)
  ("delay", sel, delay[, jitter[, reorder]])   tc netem     ("heal",)
  ("flap", sel_a, sel_b, {"period": 2, "duration": 60})   partition on/off, ends on a heal
  ("kill", sel)  ("restart", sel)  ("stop", sel)  ("pause", sel)  ("resume", sel)
  ("skew", node, rate)                    restart node under faketime at rate x
  ("hidden_pause", sel) ("hidden_resume", sel)   negative controls only (faults.py)
  ("impostor_start", node) ("impostor_kill", node)   a second agent under node's name,
                                          with a valid certificate, in a spare namespace
                                          (the scenario sets SPARES = 1)
  ("hidden_kill", sel)                    negative controls only: kill -9, unrecorded
  ("await_down", node, {"within": s})     every other live agent reports node down
  ("expect_new_incarnation", node)        checked after the run: node's incarnation
                                          after this point > before its last disruption
  ("foreach", sel, [steps])               run steps once per node, "{node}" bound

Steps that need a workload (the run fails with a harness error without it):
  ("name_conflicts", sel_a, sel_b, {"count": 3})   names: register the same fresh names
                                          on a node of each side (while a partition
                                          between them is in force)
  ("check_registry", {"within": s})       compare the groups/names views now, without
                                          waiting for membership (negative controls)
  ("hidden_close", node)                  negative controls only: close one listener on
                                          node under an event kind the checkers do not know
  ("replay_send", node)                   negative controls only: send an already used
                                          payload again, under an unknown event kind
  ("freeze_holder", node)                 claims: stop node's claims client between its
                                          validity check and its write (then pause node)
  ("thaw_holder", node)                   claims: let it write, late (after resuming node)
  ("unfence",)                            negative controls only: the fenced resource
                                          skips its check, under an unknown event kind
  ("leader_fault", "pause"|"kill")        leader: wait for a node to lead, pause or kill
                                          its agent, record leader_fault {node, token}
  ("leader_recover",)                     leader: resume or restart that agent
  ("leak_leader",)                        negative controls only (leader): the leading
                                          command forks a writer meshctl cannot stop
  ("stale_read", node_a, node_b)          negative controls only (strong-names): register
                                          a fresh name through node_a, read node_b's cache
                                          and record it as a linearizable read

When a groups or names workload runs, every converge step (and the runner's closing
one) is followed by its registry check: the workloads hold still, and the step waits
until every live agent shows the same groups and names as the workloads' history says
(bound registry_converge_s, holding registry_stable_s), recorded as registry_converge.
"""

from __future__ import annotations

import time

from .cluster import Cluster
from .faults import FAULT_KINDS, Faults
from .observer import Observer
from .recorder import Recorder
from .util import HarnessError
from .views import DOWN, LEFT, convergence_problems, first_converged


def resolve(names: list[str], sel) -> list[str]:
    """Resolve a node selector (see the module doc) against the cluster's node names."""
    n = len(names)
    if isinstance(sel, (list, tuple)):
        return [x for s in sel for x in resolve(names, s)]
    sel = str(sel)
    if sel == "all":
        return list(names)
    if sel == "first":
        return names[:1]
    if sel == "last":
        return names[-1:]
    if sel in ("half1", "half2"):
        k = n // 2
        return names[:k] if sel == "half1" else names[k:]
    if sel in ("third1", "third2", "third3"):
        k, r = divmod(n, 3)
        sizes = [k + (r > 0), k, k + (r > 1)]
        i = int(sel[5:]) - 1
        start = sum(sizes[:i])
        return names[start:start + sizes[i]]
    if sel.startswith("others:"):
        out = set(resolve(names, sel[7:]))
        return [x for x in names if x not in out]
    parts = [p.strip() for p in sel.split(",") if p.strip()]
    for p in parts:
        if p not in names:
            raise HarnessError(f"unknown node {p!r} in selector {sel!r} "
                               f"(have {', '.join(names)})")
    return parts


class Steps:
    def __init__(self, cluster: Cluster, faults: Faults, observer: Observer,
                 rec: Recorder, bounds: dict, scale: float = 1.0):
        self.c = cluster
        self.f = faults
        self.obs = observer
        self.rec = rec
        self.bounds = bounds
        self.scale = scale
        # Workloads by name (set by the runner), and what runs after each converge step:
        # hook(after, within) -> None.
        self.workloads: dict = {}
        self.converge_hooks: list = []

    # -- driving -------------------------------------------------------------------------------
    def run(self, steps: list, env: dict | None = None) -> None:
        for step in steps:
            self.do(step, env or {})

    def do(self, step, env: dict) -> None:
        if isinstance(step, str):
            step = (step,)
        name, *args = step
        kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
        fn = getattr(self, f"step_{name}", None)
        if fn is None:
            raise HarnessError(f"unknown step {name!r}")
        args = [self._subst(a, env) for a in args]
        fn(*args, **kwargs)

    def _subst(self, a, env: dict):
        if isinstance(a, str):
            for k, v in env.items():
                a = a.replace("{" + k + "}", v)
        return a

    def nodes(self, sel) -> list[str]:
        return resolve(self.c.names(), sel)

    def _sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    # -- time --------------------------------------------------------------------------------
    def step_hold(self, seconds: float) -> None:
        self.rec.event("hold", seconds=round(seconds * self.scale, 2))
        self._sleep(seconds * self.scale)

    def step_converge(self, within: float | None = None, bound_key: str = "converge_s",
                      final: bool = False) -> dict:
        """Wait until converged or the bound passes; the checker re-derives the verdict.

        Measured from the latest fault event, or (final=True, the runner's closing
        check) from now: the cluster must still be converged at the end of the run.
        """
        bound = float(within if within is not None else self.bounds[bound_key])
        since_ev = self._last_event(FAULT_KINDS)
        since = since_ev["t"] if since_ev else 0.0
        after = since_ev["kind"] if since_ev else "start"
        if final:
            since, after = round(self.rec.now(), 3), "end"
        live = self.c.live()
        deadline = since + bound
        stable = float(self.bounds["stable_s"])
        while True:
            t, latest = first_converged(self.obs.sorted_observations(), live, since,
                                        bound, stable)
            if t is not None:
                ev = self.rec.event("converge", after=after, since=since, live=live,
                                    bound_s=bound, stable_s=stable, converged_at=t,
                                    took_s=round(t - since, 3))
                break
            if self.rec.now() > deadline + stable:
                ev = self.rec.event("converge", after=after, since=since, live=live,
                                    bound_s=bound, stable_s=stable, converged_at=None,
                                    took_s=None,
                                    problems=convergence_problems(latest, live))
                break
            self.obs.wait_new(0.5)
        for hook in self.converge_hooks:
            hook(after=after, within=None)
        return ev

    def _last_event(self, kinds) -> dict | None:
        for ev in reversed(self.rec.events):
            if ev["kind"] in kinds:
                return ev
        return None

    # -- network faults -------------------------------------------------------------------------
    def step_partition(self, a, b) -> None:
        self.f.partition(self.nodes(a), self.nodes(b))

    def step_isolate(self, node) -> None:
        for n in self.nodes(node):
            self.f.isolate(n)

    def step_ring(self, a, b, c) -> None:
        self.f.ring(self.nodes(a), self.nodes(b), self.nodes(c))

    def step_oneway(self, a, b, excuse: bool = False) -> None:
        self.f.oneway(self.nodes(a), self.nodes(b), bool(excuse))

    def step_loss(self, percent, sel=None) -> None:
        self.f.loss(int(percent), self.nodes(sel) if sel else None)

    def step_bandwidth(self, sel, rate) -> None:
        self.f.bandwidth(self.nodes(sel), rate)

    def step_delay(self, sel, delay, jitter=None, reorder=None) -> None:
        self.f.delay(self.nodes(sel), delay, jitter, reorder)

    def step_heal(self) -> None:
        self.f.heal()

    def step_flap(self, a, b, period: float = 2.0, duration: float = 60.0) -> None:
        """Partition a|b for `period` s, heal for `period` s, until `duration` s passed."""
        sa, sb = self.nodes(a), self.nodes(b)
        end = time.monotonic() + duration * self.scale
        cycles = 0
        while True:
            self.f.partition(sa, sb, kind="flap")
            self._sleep(min(period, end - time.monotonic()))
            self.f.heal()
            cycles += 1
            if time.monotonic() + period >= end:
                break  # end on a heal, so a converge step measures from it
            self._sleep(period)
        self.rec.event("flap_done", cycles=cycles, period_s=period)

    # -- process faults ------------------------------------------------------------------------
    def step_kill(self, sel) -> None:
        self.f.kill(self.nodes(sel))

    def step_restart(self, sel) -> None:
        self.f.restart(self.nodes(sel))

    def step_stop(self, sel) -> None:
        self.f.stop(self.nodes(sel))

    def step_pause(self, sel) -> None:
        self.f.pause(self.nodes(sel))

    def step_hidden_pause(self, sel) -> None:
        self.f.pause(self.nodes(sel), hidden=True)

    def step_resume(self, sel) -> None:
        self.f.resume(self.nodes(sel))

    def step_hidden_resume(self, sel) -> None:
        """Resume a hidden pause; recorded under a kind the checkers do not know."""
        nodes = self.nodes(sel)
        for n in nodes:
            self.c.resume(n)
        self.rec.event("hidden_resume", nodes=nodes)

    def step_impostor_start(self, node) -> None:
        """A second agent under `node`'s name, with a valid certificate for it, in a
        spare namespace (the scenario sets SPARES); the identity checker judges it."""
        for n in self.nodes(node):
            a = self.c.start_impostor(n)
            self.rec.event("impostor_start", node=n, ip=a.ip, pid=a.pid)

    def step_impostor_kill(self, node) -> None:
        for n in self.nodes(node):
            self.c.kill_impostor(n)
            self.rec.event("impostor_kill", node=n)

    def step_hidden_kill(self, sel) -> None:
        """Negative controls only: kill -9 under a kind the checkers do not know."""
        nodes = self.nodes(sel)
        for n in nodes:
            self.c.kill(n)
        self.rec.event("hidden_kill", nodes=nodes)

    def step_skew(self, node, rate) -> None:
        for n in self.nodes(node):
            self.f.skew(n, None if rate is None else float(rate))

    # -- expectations --------------------------------------------------------------------------
    def step_await_down(self, node, within: float | None = None) -> None:
        """Wait until every other live agent reports `node` down (or left)."""
        bound = float(within if within is not None else self.bounds["detect_s"])
        target = self.nodes(node)[0]
        since_ev = self._last_event(("kill", "stop", "pause", "isolate", "partition",
                                     "hidden_pause"))
        since = since_ev["t"] if since_ev else self.rec.now()
        watchers = [n for n in self.c.live() if n != target]
        while True:
            latest = {}
            for ob in self.obs.sorted_observations():
                if ob["t"] >= since and ob.get("ok"):
                    latest[ob["node"]] = ob["view"]
            seen = [w for w in watchers if w in latest and
                    latest[w]["m"].get(target, [None])[0] in (DOWN, LEFT)]
            if len(seen) == len(watchers):
                self.rec.event("await_down", node=target, since=since, watchers=watchers,
                               bound_s=bound, took_s=round(self.rec.now() - since, 3),
                               ok=True)
                return
            if self.rec.now() > since + bound:
                self.rec.event("await_down", node=target, since=since, watchers=watchers,
                               bound_s=bound, took_s=None, ok=False,
                               not_yet=[w for w in watchers if w not in seen])
                return
            self.obs.wait_new(0.5)

    def step_expect_new_incarnation(self, node) -> None:
        for n in self.nodes(node):
            self.rec.event("expect_new_incarnation", node=n)

    # -- workloads -----------------------------------------------------------------------------
    def _workload(self, name: str, step: str):
        if name not in self.workloads:
            raise HarnessError(f"step {step!r} needs the {name} workload "
                               "(add it to the scenario's WORKLOADS)")
        return self.workloads[name]

    def step_name_conflicts(self, a, b, count: int = 3) -> None:
        self._workload("names", "name_conflicts").conflicts(self.nodes(a), self.nodes(b),
                                                            int(count))

    def step_check_registry(self, within: float | None = None) -> None:
        if not self.converge_hooks:
            raise HarnessError("step 'check_registry' needs a groups or names workload")
        for hook in self.converge_hooks:
            hook(after="check_registry", within=within)

    def step_hidden_close(self, node) -> None:
        self._workload("groups", "hidden_close").hidden_close(self.nodes(node)[0])

    def step_replay_send(self, node) -> None:
        self._workload("sends", "replay_send").replay(self.nodes(node)[0])

    def step_freeze_holder(self, node) -> None:
        self._workload("claims", "freeze_holder").freeze(self.nodes(node)[0])

    def step_thaw_holder(self, node) -> None:
        self._workload("claims", "thaw_holder").thaw(self.nodes(node)[0])

    def step_unfence(self) -> None:
        self._workload("claims", "unfence").unfence()

    def step_leader_fault(self, kind: str) -> None:
        if kind not in ("pause", "kill"):
            raise HarnessError(f"leader_fault: {kind!r} is not pause or kill")
        node, token = self._workload("leader", "leader_fault").current_leader()
        (self.f.pause if kind == "pause" else self.f.kill)([node])
        self.rec.event("leader_fault", node=node, token=token, fault=kind)
        self._leader_faulted = (node, kind)

    def step_leader_recover(self) -> None:
        node, kind = getattr(self, "_leader_faulted", (None, None))
        if node is None:
            raise HarnessError("leader_recover: no leader_fault step before it")
        (self.f.resume if kind == "pause" else self.f.restart)([node])
        self._leader_faulted = (None, None)

    def step_leak_leader(self) -> None:
        self._workload("leader", "leak_leader").leak()

    def step_stale_read(self, a, b) -> None:
        self._workload("strong-names", "stale_read").stale_read(self.nodes(a)[0],
                                                                self.nodes(b)[0])

    # -- structure -----------------------------------------------------------------------------
    def step_foreach(self, sel, steps: list) -> None:
        for n in self.nodes(sel):
            self.run(steps, {"node": n})
