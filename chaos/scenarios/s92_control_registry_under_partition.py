"""Negative control: the groups and names views are compared while a partition is in force.

n1 | n2,n3 for 8 s, with the groups workload joining and leaving on both sides; then a
registry check runs before the heal. Each side hides the other's members (it sees the
other side down), so the views cannot be identical: the groups-names checker must fail
with `views_differ` (and `lost_without_reason`); chaos/selftest asserts it. The partition
is then healed, so that no other checker has anything to report.
"""

NUMBER = 92
NAME = "control-registry-under-partition"
TITLE = "NEGATIVE CONTROL: compare group views while n1 | n2,n3 is in force; must differ"
NODES = 3
MIN_NODES = 3
WORKLOADS = ["membership", "groups"]
CONTROL = {"checker": "groups-names", "violation": "views_differ"}
STEPS = [
    ("hold", 2),
    ("partition", "n1", "n2,n3"),
    ("hold", 8),
    ("check_registry", {"within": 5}),
    ("heal",),
    ("converge",),
]
