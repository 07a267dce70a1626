"""18. Nine agents, five voters: isolate two voters with a minority, then roll every voter.

Voters n1..n5. n1,n2 (2 of the 5 voters) and n6,n7 are cut from n3,n4,n5,n8,n9 for 30 s:
the side with 3 voters keeps granting claims and strong names, the other gets 503
(claims and strong-names checkers: no overlap, linearizable, no minority answer). After
the heal, each voter in turn is killed, seen down, restarted from its data dir and
converged: with 5 voters at most one is out at a time, so every step has a majority, and
tokens must keep increasing across all five restarts.
"""

NUMBER = 18
NAME = "five-voters"
TITLE = "9 agents, 5 voters: n1,n2 (+n6,n7) cut off 30 s, heal, then every voter restarted in turn"
NODES = 9
MIN_NODES = 7
VOTERS = 5
WORKLOADS = ["membership", "claims", "strong-names"]
STEPS = [
    ("hold", 5),
    ("partition", "n1,n2,n6,n7", "n3,n4,n5,n8,n9"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 3),
    ("foreach", "n1,n2,n3,n4,n5", [
        ("kill", "{node}"),
        ("await_down", "{node}"),
        ("restart", "{node}"),
        ("converge",),
        ("hold", 2),
    ]),
    ("hold", 5),
    ("converge",),
]
