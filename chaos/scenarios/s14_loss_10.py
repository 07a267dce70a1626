"""14. 10 % loss on every link for 2 minutes: the loss level DESIGN's membership
property L4 promises no false Down at. Scenario 4 asks the same at 20 %."""

NUMBER = 14
NAME = "loss-10"
TITLE = "10 % loss on every forwarded packet for 120 s: no false Downs, then heal"
NODES = 5
MIN_NODES = 2
STEPS = [
    ("hold", 5),
    ("loss", 10),
    ("hold", 120),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
