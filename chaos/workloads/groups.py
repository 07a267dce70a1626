"""Group joins and leaves through listen streams, on a seeded schedule.

Once the cluster has formed, PER_NODE listeners are opened on every live agent; then,
every 0.5-1.5 x PERIOD_S seconds, the schedule (a random.Random seeded from the run's
seed) either closes one of its open listeners (the leave) or opens a new one on a
random live agent (up to MAX_PER_NODE per agent; leaves are likelier while there are
PER_NODE or more per live agent, joins below that). Each listener joins one or two
groups of one scope (SCOPES), sometimes the same group twice (multiplicity 2), with its
listener id as metadata. Joins, leaves and every message received are recorded (see
workloads/_pool.py); the churn holds still during each registry check.

Operations: joins and leaves attempted / succeeded / failed / indeterminate (a leave
succeeds when the listener's own agent stops listing it).
"""

from __future__ import annotations

from harness.util import HarnessError

from ._pool import Pool

NAME = "groups"
DESCRIPTION = "listen streams join groups (with multiplicity) and leave on a seeded schedule"
PENDING = None

SCOPES = {"default": ["g0", "g1", "g2"], "s2": ["x0", "x1"]}
PER_NODE = 2
MAX_PER_NODE = 4
PERIOD_S = 1.0
TWICE = 0.15  # chance that a listener joins its first group twice


class Workload:
    def __init__(self, ctx):
        self.pool = Pool.of(ctx)
        self.rng = self.pool.rng(NAME)

    def start(self) -> None:
        self.pool.spawn("groups", self._run)

    def stop(self) -> None:
        self.pool.stop()

    def operations(self) -> dict:
        return self.pool.operations((NAME,))

    # -- the schedule 
    def _run(self) -> None:
        first = True
        while True:
            with self.pool.churn() as go:
                if not go:
                    return
                if first:
                    for node in self.pool.c.live():
                        for _ in range(PER_NODE):
                            self._open(node)
                    first = False
                else:
                    self._step()
            if not self.pool.sleep(self.rng.uniform(0.5, 1.5) * PERIOD_S):
                return

    def _step(self) -> None:
        live = self.pool.c.live()
        mine = self.pool.open_listeners(NAME)
        # Leaves and joins balance around PER_NODE listeners per live agent.
        close = self.rng.random() < (0.5 if len(mine) >= PER_NODE * len(live) else 0.3)
        if close and mine:
            self.rng.choice(mine).close()
            return
        if not live:
            return
        node = self.rng.choice(live)
        if len([x for x in mine if x.node == node]) < MAX_PER_NODE:
            self._open(node)

    def _open(self, node: str) -> None:
        scope = "default" if self.rng.random() < 0.8 else "s2"
        names = SCOPES[scope]
        groups = self.rng.sample(names, k=self.rng.randint(1, 2))
        if self.rng.random() < TWICE:
            groups.append(groups[0])
        self.pool.open(node, groups, scope, owner=NAME)

    # -- negative controls 
    def hidden_close(self, node: str) -> None:
        """Open a listener of the control's own on node (recorded like any other, and out
        of the schedule's reach, so the churn cannot have closed every listener there
        first), then close it recorded as `hidden_close` (a kind the checkers do not
        know): the checkers still expect it everywhere."""
        x = self.pool.open(node, [SCOPES["default"][0]], "default", owner=f"{NAME}-control")
        if x is None:
            raise HarnessError(f"hidden_close: could not open a listener on {node}")
        x.close(kind="hidden_close", confirm=False)
