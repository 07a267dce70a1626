"""Task claims with renewals; holders report validity windows.

PENDING: claims not landed (issue 4). When it lands, Workload(ctx) will: `meshctl claim
TASK --ttl` holders that renew, report [valid_from, valid_until] per token on the oracle
clock, and write through a fenced resource.
"""

NAME = "claims"
DESCRIPTION = "task claims with renewals; holders report validity windows"
PENDING = "claims not landed (issue 4)"
