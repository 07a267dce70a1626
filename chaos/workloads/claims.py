"""Task claims with renewals, acting on a fenced resource; holders report validity windows.

One client per agent (its own seeded schedule), in the root namespace, acting as that
agent's worker. Once the cluster has formed, while its agent runs, a client tries the
tasks (`task-0` .. `task-{TASKS-1}`, in a random order) with `POST /v1/claims {task,
ttl_ms: TTL_MS}` until one is granted (0.1-0.4 s apart when none is), then works on it: WRITES_MIN..WRITES_MAX writes to
the fenced resource, one every 0.15-0.35 s, renewing by claiming again every RENEW_S (a
repeat claim by the holding agent returns the same token with the validity left), then
`POST /v1/claims/release {task, token}`.

**Validity.** Every answer that grants or renews gives the holder a window on the oracle
clock: `[t_answer, t_send + valid_for_ms / rate − GUARD_S)`. It ends `valid_for_ms`
after just before the request was sent, `rate` being the holder agent's configured
clock rate (faketime; 1 without skew), so the end is what the holder itself believes;
it starts when the answer arrived, since the holder cannot act on a token before it has
it (a claim sent before the previous holder's release can be granted after it). Before each write the client
checks that the window has not ended (else it records `write_skipped` and stops using
the token). The write carries the token.

**The fenced resource** (FencedResource, one per run, in the harness) applies a write only
if its token is ≥ the highest it has accepted for that task, atomically under its lock,
and logs every write (`fence_write`: seq, task, token, accepted, the highest before, and
whether the writer was still inside its own window).

**Freezing a holder** (scenario 6): `freeze(node)` waits until that node's client has
passed its validity check for a write and stops it right there (`holder_frozen`), as a
process paused between check and act; the scenario then SIGSTOPs the agent. `thaw(node)`
lets it go on (`holder_thawed`): its write lands late, and the fence must refuse it if a
newer holder wrote meanwhile. `unfence()` (negative control only) makes the resource skip
its check, recorded under a kind the checkers do not know (`hidden_unfence`).

Events: `claim` {k, cid, node, task, ttl_ms, t_send} / `claim_done` {k, at, ..., status,
outcome ok|refused|failed|indeterminate, token, valid_for_ms, window, error};
`claim_release` {k, cid, node, task, token, t_send} / `claim_release_done`; `fence_write`;
`write_skipped`; `claim_lost` (a renewal did not give the token back).

Outcomes: 200 ok; 409 refused (held by another agent; the report's operations table
counts it as failed, as the names workload does its 409s); 503, 429, 400 and a refused
connection failed (nothing was submitted); 504, a client timeout or a broken connection
indeterminate (a claim may have been granted: the client claims that task again first).
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error

from harness.cluster import RUNNING
from harness.util import HarnessError

from ._clients import PerNodeClients

NAME = "claims"
DESCRIPTION = "task claims with renewals on a fenced resource; holders report validity windows"
PENDING = None

TASKS = 3
TTL_MS = 2000
RENEW_S = 0.6          # about TTL/3
GUARD_S = 0.05         # the client's own margin between its check and its write
WRITES_MIN, WRITES_MAX = 3, 10
CALL_TIMEOUT_S = 25.0  # above the agent's 20 s decision deadline
FREEZE_WAIT_S = 20.0


def outcome_of(status: int | None, error: BaseException | None) -> str:
    """ok / refused / failed / indeterminate for a claims or strong-name call."""
    if error is not None:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ConnectionRefusedError):
            return "failed"
        return "indeterminate"
    if status == 200:
        return "ok"
    if status in (404, 409):
        return "refused"
    if status in (400, 429, 503):
        return "failed"
    return "indeterminate"  # 504, and anything unexpected (500) may have taken effect


def call(cluster, node: str, path: str, body: dict | None,
         timeout: float = CALL_TIMEOUT_S) -> tuple[int | None, dict, BaseException | None]:
    """One admin call: (status, answer JSON or {"error": text}, exception or None)."""
    try:
        if body is None:
            status, text = cluster.http_get(node, path, timeout=timeout)
        else:
            status, text = cluster.http_post(node, path, body, timeout=timeout)
    except (OSError, urllib.error.URLError, ValueError) as e:
        return None, {"error": f"{type(e).__name__}: {e}"[:300]}, e
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {"error": text[:300]}
    if not isinstance(answer, dict):
        answer = {"list": answer}
    return status, answer, None


class FencedResource:
    """A dict behind a lock: a write with a token below the task's highest is refused."""

    def __init__(self, rec):
        self.rec = rec
        self.check = True
        self.highest: dict[str, int] = {}
        self.seq = 0
        self._lock = threading.Lock()

    def write(self, cid: str, node: str, task: str, token: int, in_window: bool) -> bool:
        with self._lock:
            hi = self.highest.get(task)
            accepted = hi is None or token >= hi or not self.check
            if accepted:
                self.highest[task] = token if hi is None else max(hi, token)
            self.seq += 1
            self.rec.op("fence_write", seq=self.seq, cid=cid, node=node, task=task,
                        token=token, accepted=accepted, highest=hi, in_window=in_window)
            return accepted


class _Freeze:
    def __init__(self):
        self.frozen = threading.Event()
        self.thaw = threading.Event()


class Workload(PerNodeClients):
    thread_prefix = "claims"
    join_timeout_s = CALL_TIMEOUT_S + 5

    def __init__(self, ctx):
        super().__init__(ctx)
        self.resource = FencedResource(self.rec)
        self.tasks = [f"task-{i}" for i in range(TASKS)]
        self._k = 0
        self._freeze: dict[str, _Freeze] = {}

    def stop(self) -> None:
        self._stop.set()
        for f in self._freeze.values():
            f.thaw.set()
        super().stop()

    # -- the client 
    def _run(self, node: str) -> None:
        rng = random.Random(f"{self.seed}/{NAME}/{node}")
        if not self._wait_formed():
            return
        retry: str | None = None
        while not self._stop.is_set():
            if self.c.agents[node].status != RUNNING:
                self._sleep(0.2)
                continue
            order = self.tasks[:]
            rng.shuffle(order)
            if retry:
                order.remove(retry)
                order.insert(0, retry)
                retry = None
            worked = False
            for task in order:
                done = self.claim(node, task)
                if done["outcome"] == "ok":
                    self.work(node, task, done, rng)
                    worked = True
                    break
                if done["outcome"] == "indeterminate":
                    retry = task
                    break
                if done["outcome"] == "failed":
                    break
            # Every task held elsewhere (or no quorum): back off a little longer.
            if not self._sleep(rng.uniform(0.05, 0.25) if worked else rng.uniform(0.1, 0.4)):
                return

    def claim(self, node: str, task: str) -> dict:
        with self._lock:
            self._k += 1
            k = self._k
        cid = f"c-{node}"
        t_send = self.rec.now()
        self.rec.op("claim", k=k, cid=cid, node=node, task=task, ttl_ms=TTL_MS,
                    t_send=round(t_send, 6))
        status, ans, err = call(self.c, node, "/v1/claims", {"task": task, "ttl_ms": TTL_MS})
        outcome = outcome_of(status, err)
        done = {"k": k, "cid": cid, "node": node, "task": task, "status": status,
                "outcome": outcome}
        if outcome == "ok":
            try:
                token, valid = int(ans["token"]), int(ans["valid_for_ms"])
            except (KeyError, TypeError, ValueError):
                outcome = done["outcome"] = "indeterminate"
                done["error"] = f"malformed answer: {ans}"[:300]
            else:
                rate = self.c.agents[node].skew or 1.0
                end = t_send + valid / 1000.0 / rate - GUARD_S
                done.update(token=token, valid_for_ms=valid,
                            window=[round(self.rec.now(), 6), round(end, 6)])
        else:
            done["error"] = str(ans.get("error", ""))[:300]
        self.rec.op("claim_done", at=round(self.rec.now(), 6), **done)
        self._count(outcome)
        return done

    def work(self, node: str, task: str, granted: dict, rng: random.Random) -> None:
        cid, token = f"c-{node}", granted["token"]
        end, renewed = granted["window"][1], self.rec.now()
        for _ in range(rng.randint(WRITES_MIN, WRITES_MAX)):
            if self._stop.is_set():
                break
            if self.rec.now() - renewed >= RENEW_S:
                again = self.claim(node, task)
                renewed = self.rec.now()
                if again["outcome"] == "ok" and again["token"] == token:
                    end = max(end, again["window"][1])
                elif again["outcome"] == "ok":
                    # The old claim was lost and the agent got a new one: a new grant.
                    self.rec.op("claim_lost", cid=cid, node=node, task=task, token=token,
                                new_token=again["token"])
                    token, end = again["token"], again["window"][1]
                elif again["outcome"] == "refused":
                    self.rec.op("claim_lost", cid=cid, node=node, task=task, token=token,
                                status=again["status"])
                    return  # held by another agent now: nothing to release
            if self.rec.now() >= end:
                self.rec.op("write_skipped", cid=cid, node=node, task=task, token=token,
                            reason="window ended")
                break
            self._maybe_freeze(node, task, token, end)
            self.resource.write(cid, node, task, token, in_window=self.rec.now() < end)
            if not self._sleep(rng.uniform(0.15, 0.35)):
                break
        self.release(node, task, token)

    def release(self, node: str, task: str, token: int) -> dict:
        with self._lock:
            self._k += 1
            k = self._k
        self.rec.op("claim_release", k=k, cid=f"c-{node}", node=node, task=task,
                    token=token, t_send=round(self.rec.now(), 6))
        status, ans, err = call(self.c, node, "/v1/claims/release",
                                {"task": task, "token": token})
        outcome = outcome_of(status, err)
        self.rec.op("claim_release_done", k=k, status=status, outcome=outcome,
                    **({} if outcome == "ok" else {"error": str(ans.get("error"))[:300]}))
        self._count(outcome)
        return {"status": status, "outcome": outcome}

    # -- scenario steps 
    def _maybe_freeze(self, node: str, task: str, token: int, end: float) -> None:
        f = self._freeze.get(node)
        if f is None or f.frozen.is_set():
            return
        self.rec.event("holder_frozen", node=node, task=task, token=token,
                       window_end=round(end, 3))
        f.frozen.set()
        f.thaw.wait()

    def freeze(self, node: str) -> dict:
        """Stop `node`'s client between its validity check and its write (step)."""
        f = self._freeze[node] = _Freeze()
        if not f.frozen.wait(FREEZE_WAIT_S):
            raise HarnessError(f"freeze_holder: the claims client on {node} held no claim "
                               f"within {FREEZE_WAIT_S:.0f} s")
        return {"node": node}

    def thaw(self, node: str) -> None:
        f = self._freeze.pop(node, None)
        if f is None:
            raise HarnessError(f"thaw_holder: the claims client on {node} is not frozen")
        self.rec.event("holder_thawed", node=node)
        f.thaw.set()

    def unfence(self) -> None:
        """Negative control only: the resource accepts every token from now on."""
        self.resource.check = False
        self.rec.event("hidden_unfence")
