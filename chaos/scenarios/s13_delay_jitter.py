"""13. Delay, jitter and reordering with tc netem (skipped where the kernel has no netem).

On a kernel without netem the delay phase is skipped with "netem unavailable: skipping
delay/jitter" and the report lists it under skipped phases.
"""

NUMBER = 13
NAME = "delay-jitter"
TITLE = "100 ms +- 50 ms delay with reordering on every link for 30 s (needs netem)"
NODES = 5
MIN_NODES = 2
STEPS = [
    ("hold", 5),
    ("delay", "all", "100ms", "50ms", "25%"),
    ("hold", 30),
    ("heal",),
    ("converge",),
    ("hold", 5),
]
