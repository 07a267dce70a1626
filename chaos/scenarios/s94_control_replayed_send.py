"""Negative control: a payload delivered twice.

A payload that an open listener already read from a send through n1 is sent again to
that listener's PID, recorded under a kind the checkers do not know (`hidden_resend`):
the sends checker must report `duplicate_delivery`; chaos/selftest asserts it.
"""

NUMBER = 94
NAME = "control-replayed-send"
TITLE = "NEGATIVE CONTROL: resend an already read payload unannounced; a duplicate must be found"
NODES = 3
MIN_NODES = 3
WORKLOADS = ["membership", "groups", "sends"]
CONTROL = {"checker": "sends", "violation": "duplicate_delivery"}
STEPS = [
    ("hold", 6),
    ("replay_send", "n1"),
    ("hold", 2),
    ("converge",),
]
