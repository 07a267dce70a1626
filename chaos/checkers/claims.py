"""Claims: no two validity windows for one task overlap in real time; tokens increase.

PENDING: task claims land with issue 4. When they do, check() must, from the `claims`
workload's history (each holder reports [valid_from, valid_until] on the oracle clock for
each token it held, and the fenced resource logs every token it accepted or refused):
  - for each task, no two validity windows of different tokens overlap in real time;
  - each task's tokens strictly increase across holders, restarts and pauses;
  - the fenced resource never accepted a token lower than one it had already seen.
Negative control to add with it: a test-only agent flag that skips the fencing check.
"""

NAME = "claims"
DESCRIPTION = "validity windows never overlap; tokens strictly increase; no stale token accepted"
PENDING = "claims not landed (issue 4)"
