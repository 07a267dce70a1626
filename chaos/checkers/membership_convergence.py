"""Membership convergence: after every heal, every live agent reports the same members.

For each converge step of the timeline (after formation, each heal, restart, resume and
at the end of the run), re-derived from the recorded /v1/members polls: within the bound,
the latest view of every live agent (each polled after the heal) shows exactly the live
agents alive — nothing suspect, nothing missing, no dead agent alive — and all agents
agree on every live node's incarnation. An agent that sees only itself is reported as
isolated. The time to converge after each heal is recorded.
"""

from __future__ import annotations

from harness.views import alive_set, convergence_problems

from . import Result
from ._timeline import converge_results

NAME = "membership-convergence"
DESCRIPTION = "after each heal every live agent shows the same members, all alive, in bound"
PENDING = None


def check(run) -> Result:
    r = Result(NAME)
    rows = []
    for c in converge_results(run):
        rows.append({k: c[k] for k in ("after", "since", "bound_s", "took_s", "ok")})
        if c["ok"]:
            continue
        latest, live = c["latest"], c["live"]
        problems = convergence_problems(latest, live)
        isolated = [n for n in live if n in latest and alive_set(latest[n]) == {n}
                    and len(live) > 1]
        r.violation("not_converged",
                    f"not converged {c['bound_s']:.0f}s after {c['after']} at "
                    f"t={c['since']:.1f}s: " + "; ".join(problems[:6]),
                    since=c["since"], after=c["after"], problems=problems,
                    isolated=isolated,
                    views={n: sorted(alive_set(v)) for n, v in latest.items() if n in live})
        if isolated:
            r.violation("isolated", f"isolated after {c['after']}: {', '.join(isolated)}",
                        since=c["since"], nodes=isolated)
    took = [row["took_s"] for row in rows if row["took_s"] is not None]
    r.details = {"converges": rows, "max_converge_s": max(took) if took else None}
    if not rows:
        r.violation("no_converge_step", "the run has no converge step to check")
    return r
