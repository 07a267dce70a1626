"""12. Bandwidth limit: n2's link shaped to 128 kbit/s both ways (tc tbf) for 30 s."""

NUMBER = 12
NAME = "bandwidth-limit"
TITLE = "n2's link limited to 128 kbit/s (tc tbf) for 30 s: no false Downs"
NODES = 5
MIN_NODES = 2
STEPS = [
    ("hold", 5),
    ("bandwidth", "n2", "128kbit"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
