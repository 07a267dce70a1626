"""3. Majority ring: A sees B, B sees C, A does not see C (5 nodes: n1,n2 | n3 | n4,n5).

SWIM's indirect probes through B can keep A and C from declaring each other down; the
run records what happened during the ring (downs there are expected, not false) and
requires convergence after the heal. Groups, names and sends run throughout.
"""

NUMBER = 3
NAME = "majority-ring"
TITLE = "Majority ring: A-B and B-C connected, A-C cut, for 30 s, then heal"
NODES = 5
MIN_NODES = 3
WORKLOADS = ["membership", "groups", "sends", "names"]
STEPS = [
    ("hold", 5),
    ("ring", "third1", "third2", "third3"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
