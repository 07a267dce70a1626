"""One client thread per agent: the scaffolding the claims and strong-names workloads
share (start/stop, operation counts, formation wait, a crash becoming a
`workload_error` event instead of a silent pass)."""

from __future__ import annotations

import threading
import traceback


class PerNodeClients:
    """A subclass names its threads (`thread_prefix`), implements `_run(node)` (the
    client for one agent) and may extend `stop()` (calling `super().stop()`)."""

    thread_prefix = "clients"
    join_timeout_s = 30.0

    def __init__(self, ctx):
        self.c, self.rec, self.seed = ctx.cluster, ctx.recorder, ctx.seed
        self.ops = {"attempted": 0, "succeeded": 0, "failed": 0, "indeterminate": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Wait for formation before the first call (the runner records a converge
        # event); tests without a runner set ctx.formed.
        self._formed = getattr(ctx, "formed", None) or (
            lambda: any(e["kind"] == "converge" for e in list(self.rec.events)))

    # -- lifecycle
    def start(self) -> None:
        for node in self.c.names():
            t = threading.Thread(target=self._guarded, args=(node,), daemon=True,
                                 name=f"{self.thread_prefix}-{node}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.join_timeout_s)

    def operations(self) -> dict:
        with self._lock:
            return dict(self.ops)

    # -- for the clients
    def _count(self, outcome: str) -> None:
        with self._lock:
            self.ops["attempted"] += 1
            self.ops[{"ok": "succeeded", "refused": "failed"}.get(outcome, outcome)] += 1

    def _sleep(self, s: float) -> bool:
        """Sleeps s seconds; False once the workload is stopping."""
        return not self._stop.wait(max(0.0, s))

    def _wait_formed(self) -> bool:
        """Waits for the cluster to form; False if the workload stopped first."""
        while not self._formed():
            if not self._sleep(0.2):
                return False
        return True

    def _guarded(self, node: str) -> None:
        try:
            self._run(node)
        except Exception as e:  # a workload bug: the run is an error, not a pass
            self.rec.event("workload_error", thread=f"{self.thread_prefix}-{node}",
                           error=f"{type(e).__name__}: {e}", trace=traceback.format_exc())

    def _run(self, node: str) -> None:
        raise NotImplementedError
