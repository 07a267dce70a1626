"""Membership: no client operations beyond the cluster itself.

The observer's polls of GET /v1/members (every agent, every 0.25 s) are this workload's
operations: succeeded, failed (refused or an HTTP error from an agent the harness
believes running), indeterminate (timed out), and interrupted by a fault (the harness
killed or paused the agent while the poll was in flight — not counted as failed).
"""

NAME = "membership"
DESCRIPTION = "observe /v1/members on every agent (no client writes)"
PENDING = None


class Workload:
    def __init__(self, ctx):
        self.ctx = ctx

    def start(self) -> None:
        pass  # the observer already runs

    def stop(self) -> None:
        pass

    def operations(self) -> dict:
        return dict(self.ctx.observer.ops)
