"""2. Isolate one node (n1, a seed of every other node) for 60 s, then heal."""

NUMBER = 2
NAME = "isolate-one"
TITLE = "Isolate n1 (a seed) from everyone for 60 s, then heal"
NODES = 5
MIN_NODES = 3
STEPS = [
    ("hold", 5),
    ("isolate", "n1"),
    ("await_down", "n1"),
    ("hold", 60),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
