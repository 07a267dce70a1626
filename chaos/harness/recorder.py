"""The run's timeline: every fault, step and observation, on the oracle clock."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from .util import clock


class Recorder:
    """Appends events to a list and to events.jsonl, and echoes them to the console.

    Each event is a dict with `t` (seconds since the run started, oracle clock),
    `kind`, and kind-specific fields.
    """

    def __init__(self, run_dir: Path | None, echo: bool = True, t0: float | None = None):
        self.t0 = clock() if t0 is None else t0
        self.events: list[dict] = []
        self.echo = echo
        self._lock = threading.Lock()
        self._file = open(run_dir / "events.jsonl", "a") if run_dir else None

    def now(self) -> float:
        return clock() - self.t0

    def event(self, kind: str, **fields) -> dict:
        return self._record(kind, fields, self.echo)

    def op(self, kind: str, **fields) -> dict:
        """Record a workload operation: like event(), never echoed (there are many)."""
        return self._record(kind, fields, False)

    def _record(self, kind: str, fields: dict, echo: bool) -> dict:
        with self._lock:  # stamped under the lock: events stay in time order
            ev = {"t": round(self.now(), 3), "kind": kind, **fields}
            self.events.append(ev)
            if self._file:
                self._file.write(json.dumps(ev) + "\n")
                self._file.flush()
        if echo:
            detail = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            print(f"[{ev['t']:8.2f}s] {kind} {detail}".rstrip(), file=sys.stderr, flush=True)
        return ev

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def _fmt(v) -> str:
    if isinstance(v, list):
        sep = " | " if any(isinstance(x, list) for x in v) else ","
        return sep.join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
