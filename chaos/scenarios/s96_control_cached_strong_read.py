"""Negative control: a cached strong-name read used as if it were linearizable.

The halves n1,n2 | n3,n4,n5 are partitioned (n1,n2 hold two of the three voters: the
majority). A fresh strong name is registered through n1; then n4's *cache* is read
(`linearizable=false`: n4 cannot have learned the name) and recorded as a linearizable
read — a client trusting its cache during a partition. The strong-names checker must
report `not_linearizable`; chaos/selftest asserts it.
"""

NUMBER = 96
NAME = "control-cached-strong-read"
TITLE = "NEGATIVE CONTROL: a cached strong-name read recorded as linearizable under a partition"
NODES = 5
MIN_NODES = 5
WORKLOADS = ["membership", "strong-names"]
CONTROL = {"checker": "strong-names", "violation": "not_linearizable"}
STEPS = [
    ("hold", 3),
    ("partition", "half1", "half2"),
    ("hold", 3),
    ("stale_read", "n1", "n4"),
    ("hold", 2),
    ("heal",),
    ("converge",),
]
