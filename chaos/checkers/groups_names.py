"""Groups and eventual names converge, and conflicts resolve to exactly one winner.

PENDING: groups, names and send land with issue 3. When they do, check() must:
  - after each heal, compare every agent's view of every group (members with
    multiplicity) and every name: identical on all live agents;
  - match each member/name that disappeared to an exit, leave, unregister or permdown
    reason recorded by the workloads (nothing lost without a reason);
  - for every deliberately conflicting registration: exactly one winner, the first in
    the documented order (earliest HLC, then lowest node id, then PID), and a
    NameConflict notice delivered to each loser.
Inputs it will need: the `groups` and `names` workloads' histories (RunData.histories).
"""

NAME = "groups-names"
DESCRIPTION = "every agent's view of every group and name is identical; one winner per conflict"
PENDING = "groups/names/send not landed (issue 3)"
