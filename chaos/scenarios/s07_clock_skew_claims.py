"""7. Clock-rate skew of ±ρ on the claim holders and the watchers.

The agents' clock-rate error bound ρ is 0.1 % (README "Lease rules"). The voters n1,n2,n3
— the shards' preferred proposers, which watch the sessions and evict them — run fast
(×1.001) and the non-voters n4,n5 slow (×0.999): the worst case for a lease, a holder
that believes its claim lasts longer while the watcher believes it ran out sooner. The
claims clients measure their windows at their agent's rate. The holder on n4 is frozen
and n4 paused past its TTL (its renewals stop while its window runs), and n5 is
killed and restarted (its session dies with it). Validity windows must never overlap,
tokens must increase, and the fence must refuse n4's late write.
"""

NUMBER = 7
NAME = "clock-skew-claims"
TITLE = "Clock-rate skew ±ρ (holders slow ×0.999, watchers fast ×1.001) under claims"
NODES = 5
MIN_NODES = 5
SKEW = {"n1": 1.001, "n2": 1.001, "n3": 1.001, "n4": 0.999, "n5": 0.999}
WORKLOADS = ["membership", "claims", "strong-names"]
BOUNDS = {"claims_min_late_refused": 1}
STEPS = [
    ("hold", 15),
    ("freeze_holder", "n4"),
    ("pause", "n4"),
    ("hold", 12),
    ("resume", "n4"),
    ("thaw_holder", "n4"),
    ("converge",),
    ("hold", 5),
    ("kill", "n5"),
    ("hold", 8),
    ("restart", "n5"),
    ("converge",),
    ("hold", 10),
]
