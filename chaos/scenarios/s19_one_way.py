"""19. One-way (asymmetric) links: A hears B, B does not hear A.

First n2 stops hearing n1 for 30 s (n1's packets to n2 are dropped, n2's to n1 pass)
and this disrupts nobody: n2's probes of n1 get no direct ack, but its indirect probes
through n3..n5 do, so no one may declare n1 or n2 down (false-downs judges it strictly).
Then half2 stops hearing half1 for 30 s (Downs there are excused: no relay can carry
half1's packets to half2), heal, and the cluster must converge again. Groups, names and
sends run throughout.
"""

NUMBER = 19
NAME = "one-way"
TITLE = "One-way links: n2 deaf to n1 for 30 s (no Down allowed), then half2 deaf to half1 30 s"
NODES = 5
MIN_NODES = 4
WORKLOADS = ["membership", "groups", "sends", "names"]
STEPS = [
    ("hold", 5),
    ("oneway", "n1", "n2"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("oneway", "half1", "half2", {"excuse": True}),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
