"""1. Partition the cluster into two halves for 30 s, then heal.

Groups, names and sends run throughout; 5 s into the partition the same three names
are registered on both sides (a conflict round); after the heal every agent must show
the same groups and names, with one winner per name and one notice per loser.

Claims and strong names run too (voters n1,n2,n3): the n1,n2 side holds the voters'
majority and keeps granting; n3,n4,n5 get 503 until the heal; windows must not overlap
across the handover of the minority's tasks, and the strong-name history must stay
linearizable.
"""

NUMBER = 1
NAME = "partition-halves"
TITLE = "Partition halves (n1,n2 | n3..nN) for 30 s, then heal"
NODES = 5
MIN_NODES = 2
WORKLOADS = ["membership", "groups", "sends", "names", "claims", "strong-names"]
STEPS = [
    ("hold", 5),
    ("partition", "half1", "half2"),
    ("hold", 5),
    ("name_conflicts", "half1", "half2", {"count": 3}),
    ("hold", 25),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
