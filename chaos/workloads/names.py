"""Eventual name registrations through listen streams, including deliberate conflicts.

Steady part: once the cluster has formed, one listener per live agent registers a fresh
name (`nm<k>`, policy notify: the default); then, every 1-3 x PERIOD_S seconds, the
seeded schedule closes one of them (the name must go everywhere) or registers another
fresh name on a random live agent (up to MAX_OPEN).

Conflicts: the scenario step `("name_conflicts", side_a, side_b, {"count": 3})`, run
while a partition between the two sides is in force, registers each of `count` fresh
names (`cf<round>-<i>`) on a random node of each side — alternating which side goes
first, so the earlier registration in real time is not always the same side — and
records the round (`conflict_round`: the names and the listener ids of the claims).
Conflict listeners stay open to the end: after the heal exactly one claim of each name
must win everywhere (the first in the documented order: earliest HLC, then lowest node
name, then PID) and each loser gets exactly one `name_conflict` notice.

After each successful registration the claim is read back from its own agent's
GET /v1/names/{name} and recorded (`name_claim`: pid and HLC; `holder` is who the agent
shows, which is the new listener unless something is wrong). The checker orders claims
by these HLCs.

Operations: registrations and unregistrations (closes) attempted / succeeded / failed /
indeterminate; a registration refused with 409 (the name is already held in that
agent's view) counts as failed.
"""

from __future__ import annotations

import itertools
import json
import urllib.parse

from ._pool import Listener, Pool

NAME = "names"
DESCRIPTION = "eventual names registered and dropped through listen streams; conflicts by step"
PENDING = None

PERIOD_S = 1.0
MAX_OPEN = 8


class Workload:
    def __init__(self, ctx):
        self.pool = Pool.of(ctx)
        self.rng = self.pool.rng(NAME)
        self._fresh = itertools.count(1)
        self._rounds = itertools.count(1)

    def start(self) -> None:
        self.pool.spawn("names", self._run)

    def stop(self) -> None:
        self.pool.stop()

    def operations(self) -> dict:
        return self.pool.operations((NAME, "conflicts"))

    # -- the schedule 
    def _run(self) -> None:
        first = True
        while True:
            with self.pool.churn() as go:
                if not go:
                    return
                if first:
                    for node in self.pool.c.live():
                        self.register(node, f"nm{next(self._fresh)}")
                    first = False
                else:
                    self._step()
            if not self.pool.sleep(self.rng.uniform(1.0, 3.0) * PERIOD_S):
                return

    def _step(self) -> None:
        mine = self.pool.open_listeners(NAME)
        if mine and (self.rng.random() < 0.5 or len(mine) >= MAX_OPEN):
            self.rng.choice(mine).close()
            return
        live = self.pool.c.live()
        if live:
            self.register(self.rng.choice(live), f"nm{next(self._fresh)}")

    def register(self, node: str, name: str, owner: str = NAME) -> Listener | None:
        x = self.pool.open(node, [], "default", name=name, owner=owner)
        if x is not None:
            self._read_claim(x)
        return x

    def _read_claim(self, x: Listener) -> None:
        c = self.pool.c
        try:
            status, body = c.http_get(x.node, "/v1/names/"
                                      + urllib.parse.quote(x.name, safe=""))
            info = json.loads(body) if status == 200 else {}
        except (OSError, ValueError):
            status, info = None, {}
        holder = info.get("pid")
        self.pool.rec.op("name_claim", lid=x.lid, name=x.name, pid=x.pid,
                         hlc=info.get("hlc") if holder == x.pid else None,
                         holder=holder, status=status)

    # -- the conflict step 
    def conflicts(self, side_a: list[str], side_b: list[str], count: int = 3) -> dict:
        rnd = next(self._rounds)
        names = [f"cf{rnd}-{i}" for i in range(count)]
        claims: dict[str, list[str]] = {}
        live = set(self.pool.c.live())
        for i, name in enumerate(names):
            sides = (side_a, side_b) if i % 2 == 0 else (side_b, side_a)
            for side in sides:
                nodes = [n for n in side if n in live] or side
                x = self.register(self.rng.choice(nodes), name, owner="conflicts")
                if x is not None:
                    claims.setdefault(name, []).append(x.lid)
        return self.pool.rec.event("conflict_round", round=rnd, names=names,
                                   sides=[list(side_a), list(side_b)], claims=claims)
