"""Negative control: a holder's clock far slower than the protocol's ρ allows.

Leases are safe for clock-rate errors up to ρ = 0.1 %. n4 runs at ×0.5: it believes a
2 s lease lasts about twice as long in real time as the watcher (a voter at the real
rate) does. n4's claims client is frozen just before a write and n4 paused, so its
renewals stop while its own window (measured at its rate) still runs; the watcher
evicts n4's session after TTL·(1+ρ) of real time and another agent takes the task
while n4 still believes it holds it. The claims checker must report
`window_overlap`; chaos/selftest asserts it. (The fence still refuses n4's late write:
fencing holds even where the lease does not.)
"""

NUMBER = 97
NAME = "control-skew-beyond-rho"
TITLE = "NEGATIVE CONTROL: holder clock at x0.5 (rho is 0.1 %); overlapping validity must be found"
NODES = 5
MIN_NODES = 5
SKEW = {"n4": 0.5}
WORKLOADS = ["membership", "claims"]
CONTROL = {"checker": "claims", "violation": "window_overlap"}
STEPS = [
    ("hold", 6),
    ("freeze_holder", "n4"),
    ("pause", "n4"),
    ("hold", 8),
    ("resume", "n4"),
    ("thaw_holder", "n4"),
    ("converge",),
]
