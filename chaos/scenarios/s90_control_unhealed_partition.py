"""Negative control: a partition that is never healed, while the run expects convergence.

The membership-convergence checker must fail with `not_converged`; chaos/selftest (and
chaos/tests/test_negative_controls.py) assert that it does.
"""

NUMBER = 90
NAME = "control-unhealed-partition"
TITLE = "NEGATIVE CONTROL: partition n1 | n2,n3 and never heal; convergence must fail"
NODES = 3
MIN_NODES = 3
CONTROL = {"checker": "membership-convergence", "violation": "not_converged"}
STEPS = [
    ("hold", 2),
    ("partition", "n1", "n2,n3"),
    ("hold", 5),
    ("converge", {"within": 10}),
]
