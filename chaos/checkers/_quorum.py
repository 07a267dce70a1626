"""The sides of a cut, seen from the quorum plane (shared by claims and strong-names).

With voters configured (the runner records a `voters` event), a partition or isolation
leaves at most one side with a majority of them. From SETTLE_S after the cut (SWIM has
noticed it by then and the agents' reachability follows) until the heal, that side must
keep answering claims and strong-name calls, and every other side must answer 503
(README "Unavailable is explicit"): a minority that grants or answers a linearizable
read would mean a decision without a quorum.
"""

from __future__ import annotations

SETTLE_S = 5.0


def voters(run) -> list[str]:
    for e in run.events:
        if e["kind"] == "voters":
            return list(e["voters"])
    return []


def cuts(run, settle: float = SETTLE_S) -> list[dict]:
    """[{from, to, majority: [nodes], minority: [nodes]}] for each partition/isolate with
    a voters' majority on one side, from `settle` after it until the next heal."""
    vs = set(voters(run))
    if not vs:
        return []
    out, open_cut = [], None
    for e in run.events:
        if e["kind"] in ("partition", "isolate") and open_cut is None:
            if e["kind"] == "partition":
                sides = [list(s) for s in e["sides"]]
            else:
                sides = [[e["node"]], [n for n in run.nodes if n != e["node"]]]
            major = [s for s in sides if len(vs & set(s)) * 2 > len(vs)]
            if major:
                rest = sorted({n for s in sides if s is not major[0] for n in s})
                open_cut = {"from": e["t"] + settle, "majority": sorted(major[0]),
                            "minority": rest, "cut_at": e["t"]}
        elif e["kind"] == "heal" and open_cut is not None:
            open_cut["to"] = e["t"]
            if open_cut["to"] > open_cut["from"]:
                out.append(open_cut)
            open_cut = None
    return out


def judge(res, cut_list: list[dict], calls: list[tuple[str, float, float, int | None]],
          what: str) -> list[dict]:
    """calls: (node, invoked, completed, status). Adds `minority_answered` and
    `majority_stalled` violations; returns per-cut status counts for the details."""
    summary = []
    for c in cut_list:
        inside = [x for x in calls if x[1] >= c["from"] and x[2] <= c["to"]]
        minor = [x for x in inside if x[0] in c["minority"]]
        major = [x for x in inside if x[0] in c["majority"]]
        answered = [x for x in minor if x[3] in (200, 404, 409)]
        if answered:
            n, t0, _, st = answered[0]
            res.violation("minority_answered",
                          f"{len(answered)} {what} on the minority side "
                          f"({','.join(c['minority'])}) of the cut at {c['cut_at']:.1f}s got "
                          f"an answer without a voters' majority (first: {n} at {t0:.3f}s, "
                          f"HTTP {st})", cut_at=c["cut_at"], count=len(answered))
        if major and not any(x[3] in (200, 404, 409) for x in major):
            res.violation("majority_stalled",
                          f"none of {len(major)} {what} on the majority side "
                          f"({','.join(c['majority'])}) of the cut at {c['cut_at']:.1f}s got "
                          f"an answer", cut_at=c["cut_at"], count=len(major))
        count = {}
        for side, xs in (("minority", minor), ("majority", major)):
            for x in xs:
                key = f"{side}_{x[3]}"
                count[key] = count.get(key, 0) + 1
        summary.append({"cut_at": c["cut_at"], **count})
        res.notes.append(f"under the cut at {c['cut_at']:.1f}s: " + (", ".join(
            f"{k.replace('_', ' ')} x{v}" for k, v in sorted(count.items())) or "no calls"))
    return summary
