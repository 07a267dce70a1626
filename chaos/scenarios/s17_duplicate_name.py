"""17. A second agent under a live member's name (issue 14's hostile operator).

An impostor with its own valid certificate for n2 (a copied config) starts in a spare
namespace, seeded like any agent, and runs 20 s while groups, names and sends run. The
real n2 must never be displaced: nobody shows n2 at an incarnation the real one never
had (identity), nobody declares the real n2 down (false-downs), and the refusals are
counted (identity's conflict_not_exercised). Then the impostor is killed and the
cluster must be whole.
"""

NUMBER = 17
NAME = "duplicate-name"
TITLE = "A second agent under n2's name runs 20 s; the real n2 is never displaced"
NODES = 5
MIN_NODES = 3
SPARES = 1
WORKLOADS = ["membership", "groups", "sends", "names"]
STEPS = [
    ("hold", 5),
    ("impostor_start", "n2"),
    ("hold", 20),
    ("impostor_kill", "n2"),
    ("hold", 5),
    ("converge",),
]
