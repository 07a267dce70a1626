"""16. Pause, then kill, the leader's agent: a new leader within the bound, never two.

Every agent runs `meshctl elect demo -- leader_cmd.py` (the leader workload): the
leader's command writes its fencing token to a fenced resource. The agent of whoever
leads is SIGSTOPped for 25 s, past TTL·(1+ρ) (the agents' claims TTL is 10 s): its
meshctl, still running, must stop the command before the validity ends, and another
agent must lead within leader_failover_s with a higher token. Then it resumes, and the
agent of the new leader is SIGKILLed (its meshctl loses the connection and stops the
command) and restarted 25 s later. The leader checker requires that no two terms
overlapped, tokens increased, the fence never took a stale token, no write fell outside
its term, and both faults were followed by a new leader in time (leader_min_failovers).
"""

NUMBER = 16
NAME = "leader-failover"
TITLE = "Pause, then kill, the leader's agent: leadership regained in time, never two leaders"
NODES = 5
MIN_NODES = 5
WORKLOADS = ["membership", "leader"]
BOUNDS = {"leader_min_failovers": 2}
STEPS = [
    ("hold", 5),
    ("leader_fault", "pause"),
    ("hold", 25),
    ("leader_recover",),
    ("converge",),
    ("hold", 5),
    ("leader_fault", "kill"),
    ("hold", 25),
    ("leader_recover",),
    ("converge",),
    ("hold", 5),
]
