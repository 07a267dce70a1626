"""Negative control: a pause the oracle is not told about, during a loss-only phase.

n3 is SIGSTOPped under a kind the checkers do not know (`hidden_pause`) while 5 % loss is
in force, so the Downs it causes look like false Downs. The false-downs checker must
fail with `false_down`; chaos/selftest asserts that it does.
"""

NUMBER = 91
NAME = "control-hidden-pause"
TITLE = "NEGATIVE CONTROL: unannounced SIGSTOP of n3 under 5 % loss; false Downs must be found"
NODES = 3
MIN_NODES = 3
CONTROL = {"checker": "false-downs", "violation": "false_down"}
STEPS = [
    ("hold", 2),
    ("loss", 5),
    ("hidden_pause", "n3"),
    ("hold", 8),
    ("hidden_resume", "n3"),
    ("heal",),
    ("hold", 5),
    ("converge",),
]
