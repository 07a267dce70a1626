"""Eventual name registrations, including deliberate conflicts.

PENDING: groups/names/send not landed (issue 3). When it lands, Workload(ctx) will:
register the same name from two partitioned sides, heal, and record which registration
won and which loser got NameConflict.
"""

NAME = "names"
DESCRIPTION = "eventual name registrations, including deliberate conflicts"
PENDING = "groups/names/send not landed (issue 3)"
