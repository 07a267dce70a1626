"""10. Pause one agent (SIGSTOP) for 10 s: others mark it down; on SIGCONT it rejoins
with a renewed incarnation. Exercises the pause injector until claims (scenario 6) land."""

NUMBER = 10
NAME = "pause-rejoin"
TITLE = "SIGSTOP n3 for 10 s (seen down), SIGCONT: it rejoins as a new incarnation"
NODES = 5
MIN_NODES = 3
STEPS = [
    ("hold", 5),
    ("pause", "n3"),
    ("await_down", "n3"),
    ("hold", 10),
    ("resume", "n3"),
    ("converge",),
    ("expect_new_incarnation", "n3"),
    ("hold", 5),
]
