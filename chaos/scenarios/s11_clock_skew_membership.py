"""11. Clock-rate skew on membership: n1 runs its clock at x2, n2 at x0.5 (libfaketime).

Skewed agents must neither be declared down nor declare others down, and the cluster
stays converged. Then n3 is restarted at x1.5 mid-run (the runtime skew injector). The
clock-skew checker verifies each agent's clock really ran at its configured rate.
Exercises the skew injector until claims (scenario 7) land.
"""

NUMBER = 11
NAME = "clock-skew-membership"
TITLE = "Agents at clock rates x2 and x0.5 (then n3 restarted at x1.5): no false Downs"
NODES = 5
MIN_NODES = 3
SKEW = {"n1": 2.0, "n2": 0.5}
STEPS = [
    ("hold", 40),
    ("skew", "n3", 1.5),
    ("converge",),
    ("hold", 30),
]
