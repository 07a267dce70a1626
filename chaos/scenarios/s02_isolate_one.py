"""2. Isolate one node (n1, a seed of every other node) for 60 s, then heal.

Groups, names and sends run throughout; once n1 is seen down, two names are registered
both on n1 and on the majority (a conflict round).

Claims and strong names run too (voters n1,n2,n3): the isolated n1 gets 503, the
majority goes on.
"""

NUMBER = 2
NAME = "isolate-one"
TITLE = "Isolate n1 (a seed) from everyone for 60 s, then heal"
NODES = 5
MIN_NODES = 3
WORKLOADS = ["membership", "groups", "sends", "names", "claims", "strong-names"]
STEPS = [
    ("hold", 5),
    ("isolate", "n1"),
    ("await_down", "n1"),
    ("name_conflicts", "n1", "others:n1", {"count": 2}),
    ("hold", 60),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
