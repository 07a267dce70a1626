"""15. Eventual-name conflicts across a partition: one winner each, one notice per loser.

The halves are partitioned; the same fresh names are registered on a node of each side,
once right after the cut (before SWIM has declared the other side down) and once after
(when the other side's entries are hidden). After the heal every agent must show, for
each name, the first claim in the documented order (earliest HLC, then lowest node name,
then PID), and each losing listener (policy notify) must have received exactly one
name_conflict notice naming that winner. Groups and sends run alongside (sends also go
to the conflicting names).
"""

NUMBER = 15
NAME = "name-conflict-partition"
TITLE = "Same names registered on both sides of a partition: one winner, one notice per loser"
NODES = 5
MIN_NODES = 2
WORKLOADS = ["membership", "groups", "sends", "names"]
STEPS = [
    ("hold", 5),
    ("partition", "half1", "half2"),
    ("hold", 1),
    ("name_conflicts", "half1", "half2", {"count": 4}),
    ("hold", 8),
    ("name_conflicts", "half1", "half2", {"count": 2}),
    ("hold", 5),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
