"""7. Clock-rate skew of +-rho on the claim holder and on the watcher.

PENDING until claims land (issue 4). The skew injector exists and is exercised now by
scenario 11 (clock-skew-membership); this scenario will run the claims workload with the
holder's clock slow and the watcher's fast (the worst case for lease expiry) and check
that validity windows never overlap.
"""

NUMBER = 7
NAME = "clock-skew-claims"
TITLE = "Clock-rate skew (holder slow, watcher fast) under claims: windows never overlap"
NODES = 5
MIN_NODES = 3
SKEW = {"n2": 0.9, "n3": 1.1}
WORKLOADS = ["membership", "claims"]
CHECKERS = ["membership-convergence", "false-downs", "process-health", "clock-skew",
            "claims"]
STEPS = [
    ("hold", 60),
    ("kill", "n2"),
    ("hold", 30),
    ("restart", "n2"),
    ("converge",),
]
