"""6. Pause the holder of claims past its TTL, then resume it (the classic lease bug).

PENDING until claims land (issue 4): the `claims` workload and checker are pending, so
this scenario is listed but never run. The timeline is what it will run: a holder on n2
claims tasks with a short TTL, is SIGSTOPped past TTL*(1+rho), another worker claims
the tasks, then n2 resumes and must not act on its stale claims (fencing refuses it).
"""

NUMBER = 6
NAME = "pause-claim-holder"
TITLE = "Pause a claim holder past its TTL, resume it: no overlapping validity, no stale write"
NODES = 5
MIN_NODES = 3
WORKLOADS = ["membership", "claims"]
CHECKERS = ["membership-convergence", "false-downs", "process-health", "claims"]
STEPS = [
    ("hold", 10),
    ("pause", "n2"),
    ("hold", 20),
    ("resume", "n2"),
    ("converge",),
    ("hold", 10),
]
