"""Groups and eventual names converge, nothing is lost without a reason, one winner per
conflict with one notice to each loser.

Inputs: the groups / names workloads' history (harness/registry.py lists the events)
and the observer's registry polls (every agent's groups, members with counts and
metadata, and names, every 0.5 s).

  views     For each registry check (after every converge step, the runner's closing
            one, and explicit check_registry steps; the workloads hold still during it),
            re-derived from the polls, not taken from the runner: within
            registry_converge_s of the check's start, the latest view of every live
            agent (each polled after the start) is identical on all of them, and equal
            to what the history says — every listener still holding its stream, on a
            live agent still running the process it was opened on, is a member of each
            of its groups with the number of times it joined, everywhere; every other
            listener (closed by the workload, or whose stream ended) is absent
            everywhere; each name is held by the first present claim in the winner
            order — holding for registry_stable_s. Otherwise, against the latest views:
            `views_differ`, `lost_without_reason`, `not_removed`, `wrong_winner`,
            `no_view` (see registry.registry_problems), each with the listeners and
            agents concerned. Absences are counted by reason in the details ("closed by
            the workload", "node down", "node restarted", "stream ended (...)").
  streams   A stream the workload did not close ended: allowed, with reason "node down",
            when its agent's process ended (kill, stop, restart, re-skew, unexpected
            exit) between the open and 5 s after the end; otherwise `stream_lost`.
            A line on a stream that is not the documented JSON: `bad_stream_line`.
  conflicts For each conflict round (names registered on both sides of a partition),
            at the first registry check after it (the first that converged, else the
            first): every live agent shows one and the same holder, which is the first
            of the claims still present in the documented order (earliest HLC, then
            lowest node name, then PID), else `conflict_winner`; each present loser got
            exactly one `name_conflict` notice for that name, naming that winner, and
            the winner got none, else `conflict_notice` (policy notify: the loser keeps
            running without the name). A claim whose HLC its own agent did not show
            leaves the order unchecked (noted), never guessed.
"""

from __future__ import annotations

from harness.registry import History, first_claim, first_registry_converged

from . import Result

NAME = "groups-names"
DESCRIPTION = ("after each heal every agent shows the same groups and names, as the "
               "history says; one winner per conflict, one notice per loser")
PENDING = None

END_SLACK_S = 5.0  # an agent's death may be recorded after its streams saw EOF


def _checks(run, h: History) -> list[dict]:
    out = []
    for ev in h.checks:
        # The workloads hold still from `since` until the check is recorded; the gate
        # reopens right after, so an operation may share the record's millisecond.
        expected = h.expected(ev["since"], ev["live"])
        t, latest, problems = first_registry_converged(
            run.registry_observations, ev["live"], ev["since"], ev["bound_s"],
            ev.get("stable_s", 0.0), expected, h.lid_of)
        out.append({"after": ev["after"], "since": ev["since"], "t": ev["t"],
                    "live": ev["live"], "bound_s": ev["bound_s"], "converged_at": t,
                    "took_s": None if t is None else round(t - ev["since"], 3),
                    "latest": latest, "problems": problems,
                    "absent": h.absent_reasons(ev["since"], ev["live"])})
    return out


def _views(r: Result, checks: list[dict]) -> None:
    for c in checks:
        if c["converged_at"] is not None:
            continue
        by_kind: dict[str, list[dict]] = {}
        for p in c["problems"]:
            by_kind.setdefault(p["kind"], []).append(p)
        for kind, ps in by_kind.items():
            r.violation(kind, f"{len(ps)} problem(s) {c['bound_s']:.0f}s after the "
                        f"registry check after {c['after']} at t={c['since']:.1f}s: "
                        + "; ".join(p["message"] for p in ps[:5]),
                        since=c["since"], after=c["after"],
                        problems=[{k: v for k, v in p.items() if k != "classes"}
                                  for p in ps[:20]])


def _streams(r: Result, h: History, run) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for x in h.listeners.values():
        if x.t_ended is None or (x.t_close is not None and x.t_close <= x.t_ended):
            continue
        why = h.life_ended(x.node, x.t_invoke, x.t_ended + END_SLACK_S)
        if why:
            reasons[f"node down ({why})"] = reasons.get(f"node down ({why})", 0) + 1
            continue
        r.violation("stream_lost", f"{x.lid} ({x.pid}) on {x.node}: its stream ended at "
                    f"t={x.t_ended:.1f}s ({x.end_reason}) without the workload closing "
                    f"it or a fault ending {x.node}'s agent", lid=x.lid, node=x.node)
    bad = run.events_of("listen_bad_line")
    if bad:
        r.violation("bad_stream_line", f"{len(bad)} listen line(s) that are not the "
                    f"documented JSON, e.g. {bad[0].get('lid')}: {bad[0].get('line')!r}")
    return reasons


def _conflicts(r: Result, h: History, checks: list[dict]) -> list[dict]:
    rows = []
    for rd in h.rounds:
        after = [c for c in checks if c["t"] > rd["t"]]
        if not after:
            r.notes.append(f"conflict round {rd['round']}: no registry check after it")
            continue
        chk = next((c for c in after if c["converged_at"] is not None), after[0])
        T, live, views = chk["since"], chk["live"], chk["latest"]
        for name in rd["names"]:
            xs = [h.listeners[lid] for lid in rd["claims"].get(name, [])
                  if lid in h.listeners and h.listeners[lid].pid]
            present = [x for x in xs if h.status(x, T, live)[0]]
            row = {"round": rd["round"], "name": name, "claims": [
                {"lid": x.lid, "pid": x.pid, "hlc": (x.claim or {}).get("hlc"),
                 "present": x in present,
                 "notices": [n.get("winner") for n in x.notices if n.get("name") == name]}
                for x in xs], "checked_at": T}
            rows.append(row)
            if len(present) < 2:
                r.notes.append(f"{name}: {len(present)} claim(s) still present at the check"
                               " after the heal: no conflict to judge")
                continue
            holders = {n: (views.get(n, {}).get("names", {}).get(name) or [None])[0]
                       for n in live if n in views}
            distinct = set(holders.values())
            want = first_claim(present)
            row["winner"] = want[0] if want else None
            row["winner_lid"] = h.lid_of(want[0]) if want else None
            if len(distinct) != 1 or None in distinct:
                shown = ", ".join(f"{n}: {h.lid_of(p) if p else '-'}"
                                  for n, p in sorted(holders.items()))
                r.violation("conflict_winner", f"{name}: not exactly one winner "
                            f"everywhere after the heal ({shown})", name=name)
                continue
            (held,) = distinct
            if want is None:
                r.notes.append(f"{name}: a claim's HLC is unknown; winner order unchecked")
            elif held != want[0]:
                first = h.by_pid[want[0]]
                r.violation("conflict_winner", f"{name}: held by {h.lid_of(held)} "
                            f"({held}), but the first claim in the winner order is "
                            f"{first.lid} ({want[0]}, hlc {first.claim.get('hlc')})",
                            name=name, held=held, expected=want[0])
            winner = want[0] if want else held
            for x in present:
                got = [n for n in x.notices if n.get("name") == name]
                if x.pid == winner:
                    if got:
                        r.violation("conflict_notice", f"{name}: the winner {x.lid} "
                                    f"({x.pid}) was told it lost ({len(got)} notice(s))",
                                    name=name, lid=x.lid)
                elif len(got) != 1:
                    r.violation("conflict_notice", f"{name}: loser {x.lid} ({x.pid}) got "
                                f"{len(got)} name_conflict notices, expected exactly 1",
                                name=name, lid=x.lid)
                elif got[0].get("winner") != winner:
                    r.violation("conflict_notice", f"{name}: loser {x.lid} was told "
                                f"{got[0].get('winner')} won, the winner is {winner}",
                                name=name, lid=x.lid)
    return rows


def check(run) -> Result:
    r = Result(NAME)
    h = History(run.events)
    if not h.active:
        r.notes.append("no groups or names workload in this run")
        return r
    checks = _checks(run, h)
    if not checks:
        r.violation("no_registry_check", "groups/names workloads ran but no registry "
                    "check was recorded")
    _views(r, checks)
    ended = _streams(r, h, run)
    conflicts = _conflicts(r, h, checks)
    took = [c["took_s"] for c in checks if c["took_s"] is not None]
    absent = h.absent_reasons(checks[-1]["since"], checks[-1]["live"]) if checks else {}
    r.details = {
        "checks": [{k: c[k] for k in ("after", "since", "took_s", "bound_s")}
                   | {"ok": c["converged_at"] is not None, "absent": c["absent"]}
                   for c in checks],
        "max_registry_converge_s": max(took) if took else None,
        "listeners": len(h.listeners),
        "streams_ended_by_faults": ended,
        "absent_at_last_check": absent,
        "conflicts": conflicts,
    }
    return r
