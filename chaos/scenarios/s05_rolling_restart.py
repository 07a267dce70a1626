"""5. Rolling kill -9 and restart of every node, one at a time.

Each node is killed, seen down by every other live agent, restarted with the same name
and data dir, and must come back as a new incarnation before the next one goes.
Groups, names and sends run throughout: the killed agent's listeners end with it (and
must vanish everywhere), the others must stay everywhere.

Claims and strong names run too: the voters n1,n2,n3 are restarted one at a time (a
majority stays up), and tokens must keep increasing across every restart.
"""

NUMBER = 5
NAME = "rolling-restart"
TITLE = "Rolling kill -9 and restart of every node (seen down, back as a new incarnation)"
NODES = 5
MIN_NODES = 2
WORKLOADS = ["membership", "groups", "sends", "names", "claims", "strong-names"]
STEPS = [
    ("hold", 3),
    ("foreach", "all", [
        ("kill", "{node}"),
        ("await_down", "{node}"),
        ("restart", "{node}"),
        ("converge",),
        ("expect_new_incarnation", "{node}"),
        ("hold", 2),
    ]),
    ("hold", 5),
    ("converge",),
]
