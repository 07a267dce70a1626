"""4. 20 % packet loss on every link for 2 minutes; no node may be declared down."""

NUMBER = 4
NAME = "loss-20"
TITLE = "20 % loss on every forwarded packet for 120 s: no false Downs, then heal"
NODES = 5
MIN_NODES = 2
STEPS = [
    ("hold", 5),
    ("loss", 20),
    ("hold", 120),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
