"""Group joins and leaves through meshctl listen --group processes.

PENDING: groups/names/send not landed (issue 3). When it lands, Workload(ctx) will: one
`meshctl listen --group G` process per member, joined and stopped on a schedule; record
join/leave invoke+complete and every message received.
"""

NAME = "groups"
DESCRIPTION = "group joins and leaves through meshctl listen --group processes"
PENDING = "groups/names/send not landed (issue 3)"
