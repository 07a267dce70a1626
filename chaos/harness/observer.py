"""The observer: polls every agent from the root namespace and records what it sees.

One thread per agent asks GET /v1/members every `interval` seconds and, every
`metrics_every` seconds, GET /metrics. A monitor thread samples VmRSS and notices agents
that exited without the harness asking. Everything is timestamped on the oracle clock
(seconds since the run's start) and kept for the checkers:

  observations   {t, t_done, node, pid, ok, view | err}        (see views.py)
  metric_samples {t, node, pid, down, suspect, rejoins}         (event counters)
  last_metrics   {(node, pid): full parsed /metrics}            (one per process life)
  rss_max_kb     {node: max VmRSS}
  ops            attempted / succeeded / failed / indeterminate polls

When a groups, names or sends workload runs it calls watch_registry(): one more thread
per agent then polls the agent's groups and names every `registry_every` seconds
(registry.fetch_view) into

  registry_observations {t, t_done, node, pid, ok, view | err}   (see registry.py)
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error

from . import prom
from .cluster import RUNNING, Cluster
from .recorder import Recorder
from .registry import fetch_view
from .util import vm_rss_kb
from .views import reduce_members


class Observer:
    def __init__(self, cluster: Cluster, recorder: Recorder, interval: float = 0.25,
                 metrics_every: float = 2.0):
        self.cluster = cluster
        self.rec = recorder
        self.interval = interval
        self.metrics_every = metrics_every
        self.observations: list[dict] = []
        self.metric_samples: list[dict] = []
        self.last_metrics: dict[tuple[str, int], dict[str, float]] = {}
        self.rss_max_kb: dict[str, int] = {}
        self.ops = {"attempted": 0, "succeeded": 0, "failed": 0, "indeterminate": 0,
                    "interrupted_by_fault": 0}
        self.failures: list[dict] = []  # failed polls of agents that should have answered
        self.registry_observations: list[dict] = []
        self.registry_every = 0.5
        self._watching_registry = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition(self._lock)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for name in self.cluster.names():
            t = threading.Thread(target=self._poll_loop, args=(name,), daemon=True,
                                 name=f"observe-{name}")
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._monitor_loop, daemon=True, name="monitor")
        t.start()
        self._threads.append(t)

    def watch_registry(self) -> None:
        """Start polling every agent's groups and names (once; idempotent)."""
        with self._lock:
            if self._watching_registry:
                return
            self._watching_registry = True
        for name in self.cluster.names():
            t = threading.Thread(target=self._registry_loop, args=(name,), daemon=True,
                                 name=f"registry-{name}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)

    # -- queries used by the runner ------------------------------------------------------------
    def sorted_observations(self) -> list[dict]:
        with self._lock:
            return sorted(self.observations, key=lambda o: o["t_done"])

    def sorted_registry(self) -> list[dict]:
        with self._lock:
            return sorted(self.registry_observations, key=lambda o: o["t_done"])

    def wait_new(self, timeout: float) -> None:
        """Block until a new observation arrives (or timeout)."""
        with self._cond:
            self._cond.wait(timeout)

    def snapshot_metrics(self, name: str) -> None:
        """Fetch /metrics now (called just before the harness kills an agent)."""
        a = self.cluster.agents[name]
        try:
            status, body = self.cluster.http_get(name, "/metrics", timeout=1.0)
        except OSError:
            return
        if status == 200:
            self._store_metrics(name, a.pid, prom.parse(body))

    # -- loops -------------------------------------------------------------------------------
    def _poll_loop(self, name: str) -> None:
        a = self.cluster.agents[name]
        next_metrics = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if a.status == RUNNING:
                self._poll_members(name)
                if started >= next_metrics:
                    next_metrics = started + self.metrics_every
                    self._poll_metrics(name)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _poll_members(self, name: str) -> None:
        a = self.cluster.agents[name]
        pid, t = a.pid, self.rec.now()
        ob = {"t": round(t, 3), "node": name, "pid": pid}
        try:
            status, body = self.cluster.http_get(name, "/v1/members", timeout=1.0)
            if status != 200:
                raise OSError(f"HTTP {status}")
            ob.update(ok=True, view=reduce_members(json.loads(body)))
            outcome = "succeeded"
        except (TimeoutError, socket.timeout) as e:
            ob.update(ok=False, err=f"timeout: {e}")
            outcome = "indeterminate"
        except (OSError, urllib.error.URLError, ValueError) as e:
            ob.update(ok=False, err=str(e))
            outcome = "failed"
        ob["t_done"] = round(self.rec.now(), 3)
        with self._cond:
            # A poll cut short because the harness killed/paused the agent meanwhile is
            # the fault's doing, not a failed operation.
            if outcome != "succeeded" and (a.status != RUNNING or a.pid != pid):
                outcome = "interrupted_by_fault"
            ob["outcome"] = outcome
            self.ops["attempted"] += 1
            self.ops[outcome] += 1
            if outcome in ("failed", "indeterminate"):
                self.failures.append(ob)
            self.observations.append(ob)
            self._cond.notify_all()

    def _registry_loop(self, name: str) -> None:
        a = self.cluster.agents[name]
        while not self._stop.is_set():
            started = time.monotonic()
            if a.status == RUNNING:
                pid, t = a.pid, self.rec.now()
                ob = {"t": round(t, 3), "node": name, "pid": pid}
                try:
                    ob.update(ok=True, view=fetch_view(self.cluster, name))
                except (OSError, urllib.error.URLError, ValueError, KeyError,
                        TypeError) as e:
                    ob.update(ok=False, err=f"{type(e).__name__}: {e}")
                ob["t_done"] = round(self.rec.now(), 3)
                with self._cond:
                    self.registry_observations.append(ob)
                    self._cond.notify_all()
            self._stop.wait(max(0.0, self.registry_every - (time.monotonic() - started)))

    def _poll_metrics(self, name: str) -> None:
        a = self.cluster.agents[name]
        pid = a.pid
        try:
            status, body = self.cluster.http_get(name, "/metrics", timeout=1.0)
        except OSError:
            return
        if status == 200:
            self._store_metrics(name, pid, prom.parse(body))

    def _store_metrics(self, name: str, pid: int | None, m: dict[str, float]) -> None:
        sample = {"t": round(self.rec.now(), 3), "node": name, "pid": pid,
                  "down": m.get(prom.key("mesh_membership_events_total", {"kind": "down"})),
                  "suspect": m.get(prom.key("mesh_membership_events_total",
                                            {"kind": "suspect"})),
                  "rejoins": m.get("mesh_membership_rejoins_total")}
        with self._lock:
            self.last_metrics[(name, pid)] = m
            self.metric_samples.append(sample)

    def _monitor_loop(self) -> None:
        while not self._stop.is_set():
            self.cluster.poll_exits()
            for a in self.cluster.agents.values():
                if a.status == RUNNING and a.pid:
                    kb = vm_rss_kb(a.pid)
                    if kb is not None and kb > self.rss_max_kb.get(a.name, 0):
                        self.rss_max_kb[a.name] = kb
            self._stop.wait(0.5)
