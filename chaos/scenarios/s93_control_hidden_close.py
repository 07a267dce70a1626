"""Negative control: a listener closed without telling the checker.

One of n2's group listeners is closed and the close recorded under a kind the checkers
do not know (`hidden_close`), so the history says it still holds its stream: the
groups-names checker must find it missing everywhere (`lost_without_reason`);
chaos/selftest asserts it.
"""

NUMBER = 93
NAME = "control-hidden-close"
TITLE = "NEGATIVE CONTROL: close a listener on n2 unannounced; it must be reported lost"
NODES = 3
MIN_NODES = 3
WORKLOADS = ["membership", "groups"]
BOUNDS = {"registry_converge_s": 6}
CONTROL = {"checker": "groups-names", "violation": "lost_without_reason"}
STEPS = [
    ("hold", 3),
    ("hidden_close", "n2"),
    ("hold", 5),  # the agent notices a closed stream at its next heartbeat (1 s)
    ("converge",),
]
