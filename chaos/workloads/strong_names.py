"""Strong names: register / release / linearizable whereis on a few names, concurrently.

One client per agent (its own seeded schedule). Once the cluster has formed, every
0.15-0.5 s while its agent runs, a client picks one of NAMES and either registers it
(`POST /v1/names/strong {name}`: the agent spawns the owning process), releases it at
the version it holds (`POST /v1/names/strong/release {name, version}`) or, now and then,
at the version a read showed (another client's registration: a stale release must be
refused), or reads it with `GET /v1/names/strong/{name}?linearizable=true`. One in ten
reads is a cached one (`linearizable=false`), recorded with `cached` and not checked.

Every invocation (`sn` {oid, at, node, op, name, version, cached}) and completion
(`sn_done` {oid, at, status, outcome, pid, version, error}) is recorded on the oracle
clock; `at` is the time in microseconds, taken before the request and after the answer
(the events' own `t` is rounded to milliseconds). Outcomes:
200 ok; 404 / 409 refused (an answer: free, taken, stale); 503, 429, 400 and a refused
connection failed (nothing was submitted); 504, a client timeout or a broken connection
indeterminate (may or may not have taken effect).

Negative control step: `stale_read(majority_node, minority_node)` registers a fresh
name through the majority side, then reads it from the minority side's *cache* and
records that read as a linearizable one — a client that uses its cache as if it were
linearizable during a partition. The strong-names checker must find it.
"""

from __future__ import annotations

import itertools
import random
import time
import urllib.parse

from harness.cluster import RUNNING
from harness.util import HarnessError

from ._clients import PerNodeClients
from .claims import CALL_TIMEOUT_S, call, outcome_of

NAME = "strong-names"
DESCRIPTION = "strong-name register/release/linearizable whereis from every agent"
PENDING = None

NAMES = ["sn-a", "sn-b", "sn-c"]


class Workload(PerNodeClients):
    thread_prefix = "strong-names"
    join_timeout_s = CALL_TIMEOUT_S + 5

    def __init__(self, ctx):
        super().__init__(ctx)
        self._ids = itertools.count(1)
        self._ctl = itertools.count(1)

    def _run(self, node: str) -> None:
        rng = random.Random(f"{self.seed}/{NAME}/{node}")
        if not self._wait_formed():
            return
        held: dict[str, int] = {}   # names this client registered, at their version
        seen: dict[str, int] = {}   # the version a read last showed
        while self._sleep(rng.uniform(0.15, 0.5)):
            if self.c.agents[node].status != RUNNING:
                continue
            name = rng.choice(NAMES)
            r = rng.random()
            if name in held and r < 0.5:
                done = self.op(node, "release", name, version=held.pop(name))
            elif name in seen and r < 0.55:
                done = self.op(node, "release", name, version=seen.pop(name))
            elif r < 0.6:
                done = self.op(node, "register", name)
                if done["outcome"] == "ok":
                    held[name] = done["version"]
            else:
                done = self.op(node, "whereis", name, cached=rng.random() < 0.1)
                if done["outcome"] == "ok" and not done.get("cached"):
                    seen[name] = done["version"]

    def op(self, node: str, op: str, name: str, version: int | None = None,
           cached: bool = False, as_linearizable: bool = False) -> dict:
        """One operation; as_linearizable records a cached read as a linearizable one
        (negative control only)."""
        oid = f"{node}.{next(self._ids)}"
        self.rec.op("sn", oid=oid, at=round(self.rec.now(), 6), node=node, op=op, name=name,
                    version=version,
                    cached=cached and not as_linearizable,
                    **({"via": "cache"} if as_linearizable else {}))
        q = urllib.parse.quote(name, safe="")
        if op == "register":
            status, ans, err = call(self.c, node, "/v1/names/strong", {"name": name})
        elif op == "release":
            status, ans, err = call(self.c, node, "/v1/names/strong/release",
                                    {"name": name, "version": version})
        else:
            lin = "false" if cached or as_linearizable else "true"
            status, ans, err = call(self.c, node,
                                    f"/v1/names/strong/{q}?linearizable={lin}", None)
        outcome = outcome_of(status, err)
        done = {"oid": oid, "status": status, "outcome": outcome}
        if outcome == "ok" and op in ("register", "whereis"):
            if not isinstance(ans.get("pid"), str) or not isinstance(ans.get("version"), int):
                done["outcome"] = outcome = "indeterminate"
                done["error"] = f"malformed answer: {ans}"[:300]
            else:
                done.update(pid=ans["pid"], version=ans["version"])
        elif outcome != "ok":
            done["error"] = str(ans.get("error", ""))[:300]
        self.rec.op("sn_done", at=round(self.rec.now(), 6), **done)
        self._count(outcome)
        return {**done, "cached": cached}

    # -- negative control 
    def stale_read(self, majority: str, minority: str, within: float = 15.0) -> dict:
        """Register a fresh name through `majority`, then read `minority`'s cache and
        record it as a linearizable read (see the module doc)."""
        name = f"sn-ctl-{next(self._ctl)}"
        deadline = time.monotonic() + within
        while True:
            done = self.op(majority, "register", name)
            if done["outcome"] == "ok":
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"stale_read: {majority} could not register {name}: "
                                   f"{done.get('status')} {done.get('error')}")
            time.sleep(0.5)
        read = self.op(minority, "whereis", name, as_linearizable=True)
        return self.rec.event("stale_read", name=name, majority=majority,
                              minority=minority, read_status=read["status"])
