"""6. Pause the holder of claims past its TTL, then resume it (the classic lease bug).

The claims and strong-names workloads run throughout (voters n1,n2,n3; claims TTL 2 s).
n2's claims client is frozen between its validity check and its write — a holder
process paused between check and act — and n2 itself is SIGSTOPped for 15 s, far past
TTL·(1+ρ): the watcher evicts n2's session and another agent's client claims the task
with a higher token and writes. Then n2 resumes and its frozen client makes its write,
late. The claims checker requires that the fence refused that late write (bound
claims_min_late_refused = 1) and that no two validity windows of the task overlapped;
strong names (n2 is a voter: n1,n3 keep the majority) must stay linearizable.
"""

NUMBER = 6
NAME = "pause-claim-holder"
TITLE = "Pause a claim holder past its TTL, resume it: no overlapping validity, no stale write"
NODES = 5
MIN_NODES = 5
WORKLOADS = ["membership", "claims", "strong-names"]
BOUNDS = {"claims_min_late_refused": 1}
STEPS = [
    ("hold", 8),
    ("freeze_holder", "n2"),
    ("pause", "n2"),
    ("hold", 15),
    ("resume", "n2"),
    ("thaw_holder", "n2"),
    ("converge",),
    ("hold", 8),
]
