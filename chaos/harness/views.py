"""Membership views as the observer records them, and what "converged" means.

A view is one agent's answer to GET /v1/members, reduced to
`{"self": name, "inc": own incarnation, "age": own age_seconds, "m": {name: [state,
incarnation]}}` (`age` is read on the agent's own monotonic clock: the skew checker
compares its rate with the real one). The API may
list a name twice (a down old incarnation next to the alive new one); the entry with the
highest incarnation is the one that counts.
"""

from __future__ import annotations

ALIVE, SUSPECT, DOWN, LEFT = "alive", "suspect", "down", "left"


def reduce_members(members: list[dict]) -> dict:
    """Reduce a /v1/members answer to a view."""
    m: dict[str, list] = {}
    me, my_inc, age = None, None, None
    for e in members:
        name, inc = e["name"], int(e["incarnation"])
        if e.get("is_self"):
            me, my_inc, age = name, inc, e.get("age_seconds")
        if name not in m or inc > m[name][1]:
            m[name] = [e["state"], inc]
    return {"self": me, "inc": my_inc, "age": age, "m": m}


def alive_set(view: dict) -> set[str]:
    return {n for n, (state, _) in view["m"].items() if state == ALIVE}


def convergence_problems(views: dict[str, dict], live: list[str]) -> list[str]:
    """What stops the views of the live agents from being converged (empty = converged).

    Converged means: every live agent answered; each one's alive set is exactly the live
    set (nothing suspect, nothing missing, no dead node shown alive); and every agent
    agrees on every live node's incarnation, which is the one that node reports itself.
    """
    problems = []
    want = set(live)
    for n in live:
        v = views.get(n)
        if v is None:
            problems.append(f"{n}: no answer")
            continue
        alive = alive_set(v)
        if alive == {n} and len(want) > 1:
            problems.append(f"{n}: isolated (sees only itself alive)")
        missing, extra = want - alive, alive - want
        if missing:
            states = ", ".join(f"{x} {v['m'].get(x, ['absent'])[0]}" for x in sorted(missing))
            problems.append(f"{n}: not alive: {states}")
        if extra:
            problems.append(f"{n}: shows dead/paused nodes alive: {', '.join(sorted(extra))}")
    for target in live:
        own = views.get(target, {}).get("inc")
        if own is None:
            continue
        for n in live:
            v = views.get(n)
            if v and target in v["m"] and v["m"][target][1] != own:
                problems.append(f"{n}: has {target} at incarnation {v['m'][target][1]}, "
                                f"{target} is at {own}")
    return problems


def first_converged(observations: list[dict], live: list[str], start: float,
                    bound: float | None = None, stable: float = 0.0
                    ) -> tuple[float | None, dict[str, dict]]:
    """Earliest time >= start from which the live agents' views stay converged.

    Only observations requested at or after `start` count (a view fetched before a heal
    says nothing about after it). The views must then stay converged, poll after poll,
    for `stable` seconds: right after a fault nobody has noticed it yet, and a cluster
    that converges and falls apart again has not converged. With a `bound`, convergence
    must begin within start + bound. Returns (time or None, the latest views seen).
    `observations` must be sorted by `t_done`.
    """
    latest: dict[str, dict] = {}
    since: float | None = None
    for ob in observations:
        if ob["t"] < start or not ob.get("ok"):
            continue
        if bound is not None and since is None and ob["t_done"] > start + bound:
            break
        latest[ob["node"]] = ob["view"]
        if ob["node"] not in live:
            continue
        if convergence_problems(latest, live):
            since = None
            continue
        if since is None:
            since = ob["t_done"]
        if ob["t_done"] - since >= stable:
            return since, latest
    return None, latest
