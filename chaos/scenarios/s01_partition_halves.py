"""1. Partition the cluster into two halves for 30 s, then heal."""

NUMBER = 1
NAME = "partition-halves"
TITLE = "Partition halves (n1,n2 | n3..nN) for 30 s, then heal"
NODES = 5
MIN_NODES = 2
STEPS = [
    ("hold", 5),
    ("partition", "half1", "half2"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
