"""Strong names: the recorded history of every name is linearizable.

Safety: for each name, the `strong-names` workload's operations (register, release,
linearizable whereis; each with its invocation and completion on the oracle clock, `at`
in microseconds where recorded) can
be put in one total order that respects real time (an operation completed before
another was invoked comes first) and in which every answer is what a single register
would have given (`not_linearizable`). Names are independent (linearizability is
compositional), so each is checked alone.

The model: a name is free or owned by (pid, version).

- `register` (no pid: the agent spawns the owner) — free → owned by the answer's
  (pid, version): `ok`; owned → unchanged: `taken` (409).
- `release(version)` — owned at that version → free: `ok`; owned at another version →
  unchanged: `stale` (409); free → unchanged: `free` (404).
- `whereis` (linearizable) — reads the state: (pid, version), or `free` (404).

Indeterminate operations (504, a client timeout, a dropped connection) may take effect
at any moment after their invocation, or never; their answer is not known. An
indeterminate register that takes effect leaves the name owned by an unknown process
of the registering node at an unknown version, bound by the first read that shows one.
Failures that change nothing (503 unavailable, 429, 400, a refused connection) are left
out. Cached (non-linearizable) reads are recorded by the workload but not checked.

The search is Wing & Gong's with Lowe's memoisation, as Porcupine does it: a depth-first
search over (operations linearized, state) that linearizes next only an operation
invoked before every remaining completed operation completed, never visiting a
configuration twice. A search longer than MAX_STEPS is reported `undecided` (never a
pass). Availability under a cut (`minority_answered`, `majority_stalled`;
checkers/_quorum.py): from 5 s after a partition or isolation until its heal, the side
with the voters' majority answers (200, 404, 409) and the other side answers no
linearizable operation (503). A violation names the operations that could not be linearized and the states
the longest linearizable prefix allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import Result, _quorum

NAME = "strong-names"
DESCRIPTION = "strong-name register/release/linearizable whereis history is linearizable"
PENDING = None

MAX_STEPS = 2_000_000
FREE = ("free",)
INF = float("inf")


@dataclass(frozen=True)
class Op:
    """One operation on one name. complete is None for an indeterminate one."""
    oid: str
    node: str
    kind: str          # register | release | whereis
    invoke: float
    complete: float | None
    result: tuple      # ("ok", pid, version) | ("taken",) | ("stale",) | ("free",) |
                       # ("owned", pid, version) | ("unknown",)
    version: int | None = None   # release: the version named

    @property
    def done(self) -> bool:
        return self.complete is not None


def _owner_node(pid: str) -> str:
    return str(pid).split("/", 1)[0]


def step(state: tuple, op: Op) -> list[tuple]:
    """The states after op in state, if op's answer is possible there (none: it is not).

    States: FREE, ("owned", pid, version), ("someone", node, oid): owned by what an
    indeterminate register of `node` created, pid and version not yet seen.
    """
    owned = state[0] in ("owned", "someone")
    r = op.result
    if op.kind == "register":
        if r[0] == "ok":
            return [("owned", r[1], r[2])] if state == FREE else []
        if r[0] == "taken":
            return [state] if owned else []
        if r[0] == "unknown":  # takes effect here: only if free
            return [("someone", op.node, op.oid)] if state == FREE else []
        return []
    if op.kind == "release":
        matches = state[0] == "owned" and state[2] == op.version
        if r[0] == "ok":
            return [FREE] if matches else []
        if r[0] == "stale":
            return [state] if owned and not matches else []
        if r[0] == "free":
            return [state] if state == FREE else []
        if r[0] == "unknown":
            return [FREE] if matches else []
        return []
    if op.kind == "whereis":
        if r[0] == "free":
            return [state] if state == FREE else []
        if r[0] == "owned":
            if state[0] == "owned":
                return [state] if (state[1], state[2]) == (r[1], r[2]) else []
            if state[0] == "someone":  # binds the unknown registration
                return [("owned", r[1], r[2])] if _owner_node(r[1]) == state[1] else []
        return []
    return []


def linearizable(ops: list[Op], init: tuple = FREE, max_steps: int = MAX_STEPS) -> dict:
    """WGL search. Returns {"ok": bool|None, "steps", "stuck": [...], "states": [...]}
    (ok None: undecided within max_steps)."""
    # Indeterminate operations that cannot change the state are no-ops: drop them.
    ops = [o for o in ops if o.done or (o.kind in ("register", "release"))]
    ops.sort(key=lambda o: (o.invoke, o.complete if o.done else INF))
    n = len(ops)
    done_mask = 0
    for i, o in enumerate(ops):
        if o.done:
            done_mask |= 1 << i
    full = (1 << n) - 1
    seen = set()
    stack = [(full, init)]
    steps = 0
    best = (-1, full, [init])  # (completed ops linearized, remaining, states there)
    while stack:
        remaining, state = stack.pop()
        if (remaining, state) in seen:
            continue
        seen.add((remaining, state))
        steps += 1
        if steps > max_steps:
            return {"ok": None, "steps": steps, "stuck": [], "states": []}
        if remaining & done_mask == 0:
            return {"ok": True, "steps": steps, "stuck": [], "states": []}
        lin = bin(~remaining & done_mask & full).count("1")
        if lin > best[0]:
            best = (lin, remaining, [state])
        elif lin == best[0] and remaining == best[1] and state not in best[2]:
            best[2].append(state)
        bound = min(ops[i].complete for i in range(n)
                    if remaining >> i & 1 and ops[i].done)
        for i in range(n):
            if not remaining >> i & 1:
                continue
            o = ops[i]
            if o.invoke > bound:
                break  # sorted by invocation: no later one may go next
            for nxt in step(state, o):
                key = (remaining & ~(1 << i), nxt)
                if key not in seen:
                    stack.append(key)
    _, remaining, states = best
    stuck = []
    bound = min((ops[i].complete for i in range(n) if remaining >> i & 1 and ops[i].done),
                default=INF)
    for i in range(n):
        if remaining >> i & 1 and ops[i].invoke <= bound:
            stuck.append(ops[i])
    return {"ok": False, "steps": steps, "stuck": stuck, "states": states}


def history(events: list[dict]) -> tuple[dict[str, list[Op]], dict]:
    """Per name, the operations of the run; and counts by outcome."""
    invokes = {e["oid"]: e for e in events if e["kind"] == "sn"}
    out: dict[str, list[Op]] = {}
    counts = {"ok": 0, "refused": 0, "failed": 0, "indeterminate": 0, "cached_reads": 0}
    answered = set()
    for e in events:
        if e["kind"] != "sn_done":
            continue
        inv = invokes.get(e["oid"])
        if inv is None:
            continue
        answered.add(e["oid"])
        if inv.get("cached"):
            counts["cached_reads"] += 1
            continue
        outcome = e["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "failed":
            continue  # changed nothing, observed nothing
        kind, status = inv["op"], e.get("status")
        if outcome == "indeterminate":
            if kind == "whereis":
                continue
            result, complete = ("unknown",), None
        elif kind == "register":
            result = ("ok", e["pid"], e["version"]) if status == 200 else ("taken",)
            complete = e.get("at", e["t"])
        elif kind == "release":
            result = ("ok",) if status == 200 else ("stale",) if status == 409 else ("free",)
            complete = e.get("at", e["t"])
        else:
            result = (("owned", e["pid"], e["version"]) if status == 200 else ("free",))
            complete = e.get("at", e["t"])
        out.setdefault(inv["name"], []).append(
            Op(oid=e["oid"], node=inv["node"], kind=kind, invoke=inv.get("at", inv["t"]),
               complete=complete, result=result, version=inv.get("version")))
    # Invoked and never answered (the run ended first): indeterminate.
    for oid, inv in invokes.items():
        if oid in answered or inv.get("cached") or inv["op"] == "whereis":
            continue
        counts["indeterminate"] += 1
        out.setdefault(inv["name"], []).append(
            Op(oid=oid, node=inv["node"], kind=inv["op"], invoke=inv.get("at", inv["t"]),
               complete=None,
               result=("unknown",), version=inv.get("version")))
    return out, counts


def _describe(o: Op) -> str:
    arg = f"({o.version})" if o.kind == "release" else ""
    end = f"{o.complete:.3f}" if o.done else "?"
    return f"{o.oid} {o.node} {o.kind}{arg} [{o.invoke:.3f}, {end}] -> {'/'.join(map(str, o.result))}"


def check(run) -> Result:
    res = Result(NAME)
    if not any(e["kind"] == "sn" for e in run.events):
        res.notes.append("no strong-names workload in this run")
        return res
    per_name, counts = history(run.events)
    searched = {}
    for name, ops in sorted(per_name.items()):
        r = linearizable(ops)
        searched[name] = {"ops": len(ops), "steps": r["steps"]}
        if r["ok"] is None:
            res.violation("undecided", f"strong name {name!r}: the linearizability search "
                          f"gave up after {MAX_STEPS} steps ({len(ops)} operations)",
                          name=name)
        elif not r["ok"]:
            res.violation("not_linearizable",
                          f"strong name {name!r}: no linearization; from the longest "
                          f"linearizable prefix (states {r['states']}) none of these can go "
                          f"next: " + "; ".join(_describe(o) for o in r["stuck"][:6]),
                          name=name, stuck=[_describe(o) for o in r["stuck"]],
                          states=[list(s) for s in r["states"]])
    invs = {e["oid"]: e for e in run.events if e["kind"] == "sn"}
    cut_calls = [(invs[e["oid"]]["node"], invs[e["oid"]].get("at", invs[e["oid"]]["t"]),
                  e.get("at", e["t"]), e.get("status"))
                 for e in run.events if e["kind"] == "sn_done" and e["oid"] in invs
                 and not invs[e["oid"]].get("cached")
                 and invs[e["oid"]].get("via") != "cache"]
    res.details["cuts"] = _quorum.judge(res, _quorum.cuts(run), cut_calls,
                                        "strong-name operations")
    res.details.update(names=searched, operations=counts)
    res.notes.append(f"{sum(len(v) for v in per_name.values())} operations on "
                     f"{len(per_name)} names checked ({counts['indeterminate']} "
                     f"indeterminate, {counts['cached_reads']} cached reads not checked)")
    min_ok = run.bounds.get("strong_names_min_ok", 1)
    if counts["ok"] < min_ok:
        res.violation("too_few_operations", f"{counts['ok']} strong-name operations "
                      f"succeeded (bound: at least {min_ok}): nothing was tested")
    return res
