"""9. Flapping link: partition halves on and off every 2 s for a minute, then heal.

Groups, names and sends run throughout (joins, leaves and sends while the link flaps).
"""

NUMBER = 9
NAME = "flapping-link"
TITLE = "Partition halves on/off every 2 s for 60 s, then heal"
NODES = 5
MIN_NODES = 2
WORKLOADS = ["membership", "groups", "sends", "names"]
STEPS = [
    ("hold", 5),
    ("flap", "half1", "half2", {"period": 2, "duration": 60}),
    ("heal",),
    ("converge",),
    ("hold", 10),
]
