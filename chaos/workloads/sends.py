"""Sends to groups, names and PIDs, counting deliveries.

PENDING: groups/names/send not landed (issue 3). When it lands, Workload(ctx) will:
`meshctl send --group|--name|--pid` from the root namespace; record each send with its
result and match deliveries in the listeners.
"""

NAME = "sends"
DESCRIPTION = "sends to groups, names and PIDs, counting deliveries"
PENDING = "groups/names/send not landed (issue 3)"
