"""8. Whole-cluster restart: every agent killed at once, then all started again.

The cluster must heal by itself (agents alone re-announce to their seeds with backoff).
Groups, names and sends run throughout: every listener ends with the kill, and no
group member or name of the old incarnations may come back.

Claims and strong names run too: every voter restarts from its data dir, and tokens and
strong-name versions must keep increasing across the whole-cluster restart.
"""

NUMBER = 8
NAME = "whole-cluster-restart"
TITLE = "kill -9 every node at once, restart all after 3 s: the cluster re-forms by itself"
NODES = 5
MIN_NODES = 2
WORKLOADS = ["membership", "groups", "sends", "names", "claims", "strong-names"]
BOUNDS = {"converge_s": 30}
STEPS = [
    ("hold", 5),
    ("kill", "all"),
    ("hold", 3),
    ("restart", "all"),
    ("converge",),
    ("expect_new_incarnation", "all"),
    ("hold", 5),
]
