"""Negative control: a fenced resource that skips its check takes a stale write.

As scenario 6 (n2's claims client frozen between its validity check and its write, n2
paused 15 s past its TTL, another holder takes the task and writes with a higher token,
n2 resumes and its client writes late), but the resource was told to accept every token
through an event kind the checkers do not know (`hidden_unfence`). The claims checker
must report `stale_token_accepted`; chaos/selftest asserts it.
"""

NUMBER = 95
NAME = "control-unfenced-resource"
TITLE = "NEGATIVE CONTROL: the fence skips its check; the paused holder's stale write must be found"
NODES = 5
MIN_NODES = 5
WORKLOADS = ["membership", "claims"]
CONTROL = {"checker": "claims", "violation": "stale_token_accepted"}
STEPS = [
    ("hold", 4),
    ("unfence",),
    ("freeze_holder", "n2"),
    ("pause", "n2"),
    ("hold", 15),
    ("resume", "n2"),
    ("thaw_holder", "n2"),
    ("hold", 1),
    ("converge",),
]
