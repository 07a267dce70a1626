"""Groups and names: the agents' views, the workloads' history, and what "converged" means.

Registry views. The observer asks every agent GET /v1/scopes, then /v1/groups?scope=S
and /v1/groups/G?scope=S for each scope and group it lists, and GET /v1/names; one poll
is reduced to

    {"groups": {"S/G": {pid: [count, meta]}}, "names": {name: [pid, hlc]}}

(an empty group is left out: an empty group never appears). The reads of one poll are
not one atomic snapshot; the checks only compare views while the workloads hold still.

History. The groups, names and sends workloads record, on the oracle clock (workload
events are recorded with Recorder.op, never echoed):

    listen        {lid, node, groups, scope, name, owner}  a listen stream is being opened
    listen_ok     {lid, pid, agent_pid}       its `ready` line arrived: joined / registered
    listen_fail   {lid, status, error, outcome}   refused (4xx/5xx) or failed / timed out
    unlisten      {lid, teardown?}            the workload closes the stream (a leave)
    unlisten_ok   {lid, confirmed, took_s}    its own agent stopped listing it (or gave up)
    listen_ended  {lid, reason}               the stream ended without the workload closing it
    recv          {lid, seq, payload, from}   a `message` line (seq counts per listener)
    name_conflict {lid, name, winner}         a `name_conflict` line
    name_claim    {lid, name, pid, hlc, holder}   the claim as its own agent showed it
    conflict_round {round, names, sides, claims: {name: [lid, ...]}}
    send          {sid, via, via_pid, seq, dest, target, scope, mode, payload}
    send_done     {sid, status, outcome, delivered, remote_nodes, failed, timed_out, error}
    listen_bad_line {lid, line}               a stream line that is not the documented JSON
    registry_converge {after, since, live, bound_s, stable_s, converged_at, took_s,
                   problems?}                 a registry check, as the runner saw it
    workload_seed {seed, reproduce}           workload_error {thread, error, trace}
    hidden_close, hidden_resend               negative controls only: kinds the checkers
                                              deliberately do not know

Expected state at time T, for the live agents L. A listener is *present* iff its ready
line arrived by T, the workload had not begun closing it, its stream had not ended, its
node is in L and still runs the agent process the listener was opened on. Every present
listener must be in every live agent's view of each of its groups, with the number of
times it joined (the group list may repeat a group); nothing else may be there. A name's
holder must be the first, in the documented winner order (earliest HLC, then lowest node
name, then PID), of the claims whose listener is present and has not been told it lost
the name; if some of those claims' HLCs are unknown, any of them is accepted.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass, field

# Process faults that end an agent process (and with it every listen stream on it).
LIFE_ENDS = ("kill", "stop", "restart", "skew", "agent_exited")


# -- views ---------------------------------------------------------------------------------
def fetch_view(cluster, node: str, timeout: float = 1.0) -> dict:
    """One agent's registry view; raises OSError/ValueError when it does not answer."""
    def get(path: str):
        status, body = cluster.http_get(node, path, timeout=timeout)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}: {body[:200]}")
        return json.loads(body)

    groups: dict[str, dict] = {}
    for scope in get("/v1/scopes"):
        q = urllib.parse.quote(scope, safe="")
        for g in get(f"/v1/groups?scope={q}"):
            name = urllib.parse.quote(g["group"], safe="")
            detail = get(f"/v1/groups/{name}?scope={q}")
            members = {m["pid"]: [int(m["count"]), m.get("meta")]
                       for m in detail["members"]}
            if members:
                groups[f"{scope}/{g['group']}"] = members
    names = {n["name"]: [n["pid"], n.get("hlc")] for n in get("/v1/names")}
    return {"groups": groups, "names": names}


def parse_hlc(hlc: str | None) -> tuple[int, int] | None:
    """`wall_ms.logical` -> (wall_ms, logical); None when missing or malformed."""
    if not hlc:
        return None
    wall, _, logical = str(hlc).partition(".")
    try:
        return int(wall), int(logical or 0)
    except ValueError:
        return None


def pid_key(pid: str) -> tuple:
    """A PID's order: node name, then boot incarnation, then local id."""
    node, _, rest = pid.partition("/")
    inc, _, local = rest.partition("/")
    try:
        return node, int(inc), int(local)
    except ValueError:
        return node, -1, -1


def winner_key(hlc: tuple[int, int], pid: str) -> tuple:
    """The documented winner order: earliest HLC, then lowest node name, then PID."""
    return (*hlc, *pid_key(pid))


def first_claim(claims: list) -> list[str] | None:
    """[pid] of the first of these Listeners' claims in the winner order, or None when
    some claim's HLC is unknown (its own agent did not show it)."""
    keyed = []
    for x in claims:
        c = x.claim or {}
        hlc = parse_hlc(c.get("hlc")) if c.get("pid") == x.pid else None
        if hlc is None:
            return None
        keyed.append((winner_key(hlc, x.pid), x.pid))
    return [min(keyed)[1]] if keyed else None


# -- history -------------------------------------------------------------------------------
@dataclass
class Listener:
    lid: str
    node: str
    groups: list[str]
    scope: str
    name: str | None
    owner: str
    t_invoke: float
    t_ready: float | None = None
    pid: str | None = None
    agent_pid: int | None = None
    fail: dict | None = None
    t_close: float | None = None
    t_closed: float | None = None
    close_confirmed: bool | None = None
    t_ended: float | None = None
    end_reason: str | None = None
    claim: dict | None = None
    notices: list[dict] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)

    def gone_at(self) -> float:
        """When the workload began closing it or its stream ended (inf if neither)."""
        return min(x for x in (self.t_close, self.t_ended, math.inf) if x is not None)


class History:
    """The workloads' history, rebuilt from a run's events."""

    def __init__(self, events: list[dict]):
        self.listeners: dict[str, Listener] = {}
        self.lives: dict[str, list[tuple[float, int]]] = {}   # node -> (t, agent pid)
        self.proc_faults: dict[str, list[tuple[float, str]]] = {}
        self.rounds: list[dict] = []
        self.sends: dict[str, dict] = {}
        self.checks: list[dict] = []
        for e in events:
            k = e["kind"]
            if k in ("start", "restart"):
                for n, p in (e.get("pids") or {}).items():
                    self.lives.setdefault(n, []).append((e["t"], p))
            if k == "skew":
                self.lives.setdefault(e["node"], []).append((e["t"], e.get("pid")))
            if k in LIFE_ENDS + ("pause", "resume", "hidden_pause", "hidden_resume"):
                nodes = e.get("nodes") or ([e["node"]] if e.get("node") else [])
                for n in nodes:
                    self.proc_faults.setdefault(n, []).append((e["t"], k))
            if k == "listen":
                self.listeners[e["lid"]] = Listener(
                    lid=e["lid"], node=e["node"], groups=list(e.get("groups") or []),
                    scope=e.get("scope") or "default", name=e.get("name"),
                    owner=e.get("owner", ""), t_invoke=e["t"])
                continue
            lst = self.listeners.get(e.get("lid")) if "lid" in e else None
            if k == "listen_ok" and lst:
                lst.t_ready, lst.pid, lst.agent_pid = e["t"], e["pid"], e.get("agent_pid")
            elif k == "listen_fail" and lst:
                lst.fail = e
            elif k == "unlisten" and lst and lst.t_close is None:
                lst.t_close = e["t"]
            elif k == "unlisten_ok" and lst:
                lst.t_closed, lst.close_confirmed = e["t"], e.get("confirmed")
            elif k == "listen_ended" and lst and lst.t_ended is None:
                lst.t_ended, lst.end_reason = e["t"], e.get("reason")
            elif k == "recv" and lst:
                lst.received.append(e)
            elif k == "name_conflict" and lst:
                lst.notices.append(e)
            elif k == "name_claim" and lst:
                lst.claim = e
            elif k == "conflict_round":
                self.rounds.append(e)
            elif k == "send":
                self.sends[e["sid"]] = {"send": e, "done": None}
            elif k == "send_done" and e.get("sid") in self.sends:
                self.sends[e["sid"]]["done"] = e
            elif k == "registry_converge":
                self.checks.append(e)
        self.by_pid = {x.pid: x for x in self.listeners.values() if x.pid}

    @property
    def active(self) -> bool:
        """True when the run had listeners at all (a groups or names workload ran)."""
        return bool(self.listeners) or bool(self.checks)

    def agent_pid_at(self, node: str, t: float) -> int | None:
        pid = None
        for ts, p in self.lives.get(node, []):
            if ts <= t:
                pid = p
        return pid

    def life_ended(self, node: str, a: float, b: float) -> str | None:
        """The process fault that ended `node`'s agent process within [a, b], if any."""
        for t, k in self.proc_faults.get(node, []):
            if a <= t <= b and k in LIFE_ENDS:
                return k
        return None

    def status(self, x: Listener, t: float, live: list[str]) -> tuple[bool, str]:
        """(present at t, why not)."""
        if x.t_ready is None or x.t_ready > t:
            return False, "never joined" if x.fail else "not ready yet"
        if x.t_close is not None and x.t_close <= t:
            return False, "closed by the workload"
        if x.t_ended is not None and x.t_ended <= t:
            return False, f"stream ended ({x.end_reason})"
        if x.node not in live:
            return False, "node down"
        if x.agent_pid is not None and self.agent_pid_at(x.node, t) not in (None,
                                                                            x.agent_pid):
            return False, "node restarted"
        return True, "present"

    def retracted(self, x: Listener, name: str, t: float) -> bool:
        return any(n["name"] == name and n["t"] <= t for n in x.notices)

    def expected(self, t: float, live: list[str]) -> dict:
        """The registry every live agent must show at t (see the module doc)."""
        groups: dict[str, dict] = {}
        claims: dict[str, list[Listener]] = {}
        for x in self.listeners.values():
            if not self.status(x, t, live)[0]:
                continue
            for g in x.groups:
                members = groups.setdefault(f"{x.scope}/{g}", {})
                members.setdefault(x.pid, [0, x.lid])[0] += 1
            if x.name and not self.retracted(x, x.name, t):
                claims.setdefault(x.name, []).append(x)
        names = {}
        for name, xs in claims.items():
            pids = sorted(x.pid for x in xs)
            names[name] = {"holders": first_claim(xs) or pids, "claims": pids}
        return {"groups": groups, "names": names}

    def lid_of(self, pid: str) -> str:
        x = self.by_pid.get(pid)
        return x.lid if x else "?"

    def absent_reasons(self, t: float, live: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for x in self.listeners.values():
            if x.t_invoke > t:
                continue  # not opened yet
            present, why = self.status(x, t, live)
            if not present:
                out[why] = out.get(why, 0) + 1
        return out


# -- comparing views -----------------------------------------------------------------------
def _canon(view: dict) -> str:
    return json.dumps(view, sort_keys=True)


def registry_problems(views: dict[str, dict], live: list[str], expected: dict,
                      lid_of=lambda pid: "?") -> list[dict]:
    """What stops the live agents' registry views from being converged (empty = converged).

    Converged means: every live agent answered, all their views are identical, and they
    equal `expected` (History.expected). Each problem is {kind, message, ...}; kinds:
      no_view              a live agent has no registry view in the window
      views_differ         two live agents' views differ (the message names the keys)
      lost_without_reason  a present listener missing (or joined fewer times) somewhere,
                           or a name with a present holder missing somewhere
      not_removed          a member or name that must be gone is still shown somewhere
      wrong_winner         a name held by another present claim than the first one
    """
    problems = []
    have = {n: views[n] for n in live if n in views}
    for n in live:
        if n not in have:
            problems.append({"kind": "no_view", "nodes": [n],
                             "message": f"{n}: no registry view"})
    classes: dict[str, list[str]] = {}
    for n, v in have.items():
        classes.setdefault(_canon(v), []).append(n)
    if len(classes) > 1:
        problems.append({"kind": "views_differ", "message": _diff(have, lid_of),
                         "classes": sorted(classes.values())})
    agg: dict[tuple, dict] = {}

    def add(kind, what, pid, node, detail):
        p = agg.setdefault((kind, what, pid), {"kind": kind, "what": what, "pid": pid,
                                               "lid": lid_of(pid) if pid else None,
                                               "nodes": [], "detail": detail})
        p["nodes"].append(node)

    for n, v in sorted(have.items()):
        vg = v.get("groups", {})
        for key, members in expected["groups"].items():
            for pid, (count, _) in members.items():
                got = vg.get(key, {}).get(pid)
                if not got or got[0] < count:
                    add("lost_without_reason", key, pid, n,
                        f"joined {count}x, shown {got[0] if got else 0}x")
                elif got[0] > count:
                    add("not_removed", key, pid, n, f"joined {count}x, shown {got[0]}x")
        for key, members in vg.items():
            for pid in members:
                if pid not in expected["groups"].get(key, {}):
                    add("not_removed", key, pid, n, "shown, must be gone")
        vn = v.get("names", {})
        for name, want in expected["names"].items():
            got = vn.get(name)
            if not got:
                add("lost_without_reason", f"name {name}", want["holders"][0], n,
                    "name not shown")
            elif got[0] not in want["holders"]:
                # Another present claim shown first: the order is wrong; a claim that
                # must be gone (closed, or told it lost): it was not removed.
                kind = "wrong_winner" if got[0] in want["claims"] else "not_removed"
                add(kind, f"name {name}", got[0], n, "held by it, expected "
                    + " or ".join(f"{lid_of(p)} ({p})" for p in want["holders"]))
        for name, (pid, _) in vn.items():
            if name not in expected["names"]:
                add("not_removed", f"name {name}", pid, n, "shown, must be gone")
    for p in agg.values():
        who = f"{p['lid']} ({p['pid']})" if p["pid"] else ""
        p["message"] = (f"{p['what']}: {who} {p['detail']} on "
                        f"{', '.join(sorted(p['nodes']))}")
        problems.append(p)
    return problems


def _diff(views: dict[str, dict], lid_of) -> str:
    """Which keys differ between the agents, and how, in a few lines."""
    parts = []
    for section in ("groups", "names"):
        keys = sorted({k for v in views.values() for k in v.get(section, {})})
        for k in keys:
            shown: dict[str, list[str]] = {}
            for n, v in sorted(views.items()):
                entry = v.get(section, {}).get(k)
                if section == "groups":
                    desc = ",".join(f"{lid_of(p)}x{c[0]}" for p, c in
                                    sorted((entry or {}).items())) or "-"
                else:
                    desc = f"{lid_of(entry[0])}" if entry else "-"
                shown.setdefault(desc, []).append(n)
            if len(shown) > 1:
                parts.append(f"{k}: " + "; ".join(f"{'+'.join(ns)} {d}"
                                                   for d, ns in shown.items()))
    return "views differ: " + (" | ".join(parts[:8]) or "in metadata or HLCs")


def first_registry_converged(observations: list[dict], live: list[str], start: float,
                             bound: float | None, stable: float, expected: dict,
                             lid_of=lambda pid: "?"
                             ) -> tuple[float | None, dict[str, dict], list[dict]]:
    """Earliest time >= start from which the live agents' registry views stay converged.

    As views.first_converged: only polls requested at or after `start` count, the views
    must stay converged for `stable` seconds, and with a `bound` convergence must begin
    by start + bound. Returns (time or None, the latest views, the problems with them).
    `observations` must be sorted by `t_done`.
    """
    latest: dict[str, dict] = {}
    since: float | None = None
    problems = registry_problems(latest, live, expected, lid_of)
    for ob in observations:
        if ob["t"] < start or not ob.get("ok"):
            continue
        if bound is not None and since is None and ob["t_done"] > start + bound:
            break
        latest[ob["node"]] = ob["view"]
        if ob["node"] not in live:
            continue
        problems = registry_problems(latest, live, expected, lid_of)
        if problems:
            since = None
            continue
        if since is None:
            since = ob["t_done"]
        if ob["t_done"] - since >= stable:
            return since, latest, []
    return None, latest, problems
