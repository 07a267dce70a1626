"""Negative control: the leader's command leaves a writer behind that meshctl cannot stop.

As scenario 16's pause: while an agent leads, its command forks a writer that leaves
meshctl's process group (recorded under a kind the checkers do not know, `hidden_leak`),
then that agent is paused past its TTL. meshctl stops the command, but the writer goes
on writing with the old token after its term ended. The leader checker must report
`effect_outside_term`; chaos/selftest asserts it.
"""

NUMBER = 98
NAME = "control-leaked-leader"
TITLE = "NEGATIVE CONTROL: a leader's writer outlives its term; writes outside the term must be found"
NODES = 5
MIN_NODES = 5
WORKLOADS = ["membership", "leader"]
CONTROL = {"checker": "leader", "violation": "effect_outside_term"}
STEPS = [
    ("hold", 5),
    ("leak_leader",),
    ("leader_fault", "pause"),
    ("hold", 25),
    ("leader_recover",),
    ("converge",),
    ("hold", 3),
]
