"""Sends to groups, names and PIDs with unique payloads, answers recorded.

One sender per agent (its own seeded schedule): every 0.5-1.5 x PERIOD_S seconds, while
that agent runs, it POSTs /v1/send through it — to a group of the groups workload
(mode all, or one / nearest / local), to a name the names workload registered, or to
the PID of a listener (open, or already closed: a send to a dead process must be an
error). Each payload is unique (`chaos <via>.<seq>`). The sender waits for each answer
before the next send, so the sends of one sender are ordered in real time; the checker
relies on that for its order check. Invocation (`send`) and completion (`send_done`:
HTTP status, the answer's delivered / remote_nodes / failed / timed_out, or the error)
are recorded; the listeners record what arrives (`recv`).

Outcomes: 200 succeeded; 504 (no confirmation: may or may not have arrived) and a
client timeout indeterminate; any other status, or a refused connection, failed.
"""

from __future__ import annotations

import json
import threading

from harness.cluster import RUNNING
from harness.util import HarnessError

from ._pool import Pool
from .groups import SCOPES

NAME = "sends"
DESCRIPTION = "sends to groups, names and PIDs with unique payloads; answers recorded"
PENDING = None

PERIOD_S = 0.5
SEND_TIMEOUT_S = 10.0  # above the agent's 5 s acknowledgement timeout
MODES = (("all", 0.7), ("one", 0.1), ("nearest", 0.1), ("local", 0.1))


class Workload:
    def __init__(self, ctx):
        self.pool = Pool.of(ctx)
        self.ops = {"attempted": 0, "succeeded": 0, "failed": 0, "indeterminate": 0}
        self._lock = threading.Lock()

    def start(self) -> None:
        for node in self.pool.c.names():
            self.pool.spawn(f"sends-{node}", self._run, node)

    def stop(self) -> None:
        self.pool.stop()

    def operations(self) -> dict:
        with self._lock:
            return dict(self.ops)

    def _run(self, node: str) -> None:
        rng = self.pool.rng(f"{NAME}/{node}")
        a = self.pool.c.agents[node]
        seq = 0
        if not self.pool.wait_formed():
            return
        while self.pool.sleep(rng.uniform(0.5, 1.5) * PERIOD_S):
            if a.status != RUNNING:
                continue
            body = self._pick(rng)
            seq += 1
            self.send(node, seq, body)

    def _pick(self, rng) -> dict:
        r = rng.random()
        known = self.pool.known()
        names = sorted({x.name for x in known if x.name})
        if 0.7 <= r < 0.85 and names:
            return {"name": rng.choice(names)}
        if r >= 0.85 and known:
            return {"pid": rng.choice(known).pid}
        scope = rng.choice(sorted(SCOPES))
        x = rng.random()
        mode = next(m for m, acc in _cumulative(MODES) if x < acc)
        return {"group": rng.choice(SCOPES[scope]), "scope": scope, "mode": mode}

    def send(self, via: str, seq: int, body: dict, kind: str = "send",
             sid: str | None = None, payload: str | None = None) -> dict:
        c, rec = self.pool.c, self.pool.rec
        sid = sid or f"{via}.{seq}"
        payload = payload or f"chaos {sid}"
        dest = "group" if "group" in body else "name" if "name" in body else "pid"
        rec.op(kind, sid=sid, via=via, via_pid=c.agents[via].pid, seq=seq, dest=dest,
               target=body[dest], scope=body.get("scope"), mode=body.get("mode"),
               payload=payload)
        with self._lock:
            self.ops["attempted"] += 1
        done = {"sid": sid, "status": None, "outcome": "failed"}
        try:
            status, text = c.http_post(via, "/v1/send", {**body, "payload": payload},
                                       timeout=SEND_TIMEOUT_S)
            done["status"] = status
            answer = json.loads(text) if text else {}
            if status == 200:
                done.update(outcome="ok", delivered=answer.get("delivered"),
                            remote_nodes=answer.get("remote_nodes"),
                            failed=answer.get("failed", []),
                            timed_out=answer.get("timed_out", []))
            else:
                done.update(outcome="indeterminate" if status == 504 else "failed",
                            error=str(answer.get("error", text))[:300])
        except (OSError, ValueError) as e:
            timeout = isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None),
                                                                TimeoutError)
            done.update(outcome="indeterminate" if timeout else "failed",
                        error=f"{type(e).__name__}: {e}"[:300])
        rec.op(f"{kind}_done", **done)
        with self._lock:
            self.ops[{"ok": "succeeded"}.get(done["outcome"], done["outcome"])] += 1
        return done

    # -- negative controls 
    def replay(self, via: str) -> dict:
        """Send a payload an open listener already read from a send through `via` again,
        to that listener's PID, recorded as `hidden_resend` (a kind the checkers do not
        know): the listener reads it twice."""
        open_now = {x.lid: x for x in self.pool.open_listeners()}
        prefix = f"chaos {via}."
        for e in reversed(list(self.pool.rec.events)):
            x = open_now.get(e.get("lid"))
            if e["kind"] == "recv" and x and str(e.get("payload")).startswith(prefix):
                sid = e["payload"][len("chaos "):]
                return self.send(via, int(sid.rsplit(".", 1)[1]), {"pid": x.pid},
                                 kind="hidden_resend", sid=sid, payload=e["payload"])
        raise HarnessError(f"replay_send: no open listener has read a send through {via}")


def _cumulative(weights):
    acc = 0.0
    for m, w in weights:
        acc += w
        yield m, acc
    yield weights[-1][0], 2.0
