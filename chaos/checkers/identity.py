"""Identity: a second agent under a live agent's name never displaces it.

For every name an impostor ran under (`impostor_start` events), the incarnations other
agents show for that name must be ones the real agent reported as its own (its
`is_self` entry, polled by the observer: every boot and every renewal of the real one).
An incarnation it never reported, seen alive or suspect by anyone, is the impostor
displacing it:

  displaced               agent O showed X at an incarnation X never had (the first
                          such observation per observer)
  conflict_not_exercised  no agent counted a refused name conflict
                          (mesh_transport_handshake_failures_total{kind="name_conflict"}):
                          the impostor never reached the cluster, so the run proves
                          nothing

A run with no impostor passes with a note.
"""

from __future__ import annotations

from harness import prom
from harness.views import ALIVE, SUSPECT

from . import Result

NAME = "identity"
DESCRIPTION = "a second agent under a live agent's name never displaces it"
PENDING = None

CONFLICTS = prom.key("mesh_transport_handshake_failures_total", {"kind": "name_conflict"})


def check(run) -> Result:
    r = Result(NAME)
    targets = sorted({e["node"] for e in run.events_of("impostor_start")})
    if not targets:
        r.notes.append("no impostor ran")
        return r
    own: dict[str, set[int]] = {x: set() for x in targets}
    for ob in run.observations:
        if ob.get("ok") and ob["node"] in own and ob["view"].get("self") == ob["node"]:
            own[ob["node"]].add(ob["view"]["inc"])
    first: dict[tuple[str, str], dict] = {}
    for ob in run.observations:
        if not ob.get("ok") or ob["node"] in own and ob["view"].get("self") == ob["node"]:
            continue
        o = ob["node"]
        for x in targets:
            seen = ob["view"]["m"].get(x)
            if seen is None or seen[0] not in (ALIVE, SUSPECT) or seen[1] in own[x]:
                continue
            first.setdefault((o, x), {"t": ob["t"], "inc": seen[1], "state": seen[0]})
    for (o, x), f in sorted(first.items()):
        r.violation("displaced", f"{o} showed {x} {f['state']} at incarnation {f['inc']} "
                    f"(t={f['t']:.1f}s), which {x} itself never had "
                    f"(its own: {sorted(own[x])})", node=o, target=x, **f)
    refused = sum(m.get(CONFLICTS, 0.0) for m in run.last_metrics.values())
    if refused <= 0:
        r.violation("conflict_not_exercised",
                    "no agent refused a name conflict: the impostor never reached anyone")
    r.details.update({"targets": targets, "own_incarnations": {x: sorted(v) for x, v in
                                                               own.items()},
                      "conflicts_refused": refused})
    return r
