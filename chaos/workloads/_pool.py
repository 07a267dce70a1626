"""What the groups, names and sends workloads share: listeners, the churn gate, the check.

A **Listener** is one `POST /v1/listen` stream held open from the root namespace by a
thread: on the agent, a process that joined the listener's groups and/or registered its
name, for as long as the stream is read. Closing the stream is the leave (the agent
notices at its next heartbeat write and the process exits). Every step is recorded on
the oracle clock (event kinds in harness/registry.py): the open (`listen`) and its
completion (`listen_ok` / `listen_fail`), every `message` line (`recv`, with a
per-listener sequence number), every `name_conflict` line, the close (`unlisten`) and
its completion (`unlisten_ok`: the listener's own agent stopped listing it, polled for
up to CLOSE_CONFIRM_S), and a stream that ended without the workload closing it
(`listen_ended`, with the reason: EOF, an error, or the agent's `exited` line).

The **Pool** (one per run: Pool.of(ctx)) owns every listener (so sends can target them
and the registry check knows what to expect), makes the observer poll the agents'
groups and names, and runs the registry check after every converge step:

  1. the churn gate closes: the groups and names workloads finish the operation in
     flight and hold still (sends go on: they change no view);
  2. it waits until every live agent's groups and names are identical and equal to
     what the history says (registry.first_registry_converged), within
     registry_converge_s, holding registry_stable_s, and records `registry_converge`;
  3. the gate opens again.

The gate starts closed and opens at the first check (after the cluster has formed). At
the end, Pool.stop() stops every workload thread, then closes the listeners (recorded
with teardown=True). A workload thread that raises records `workload_error`, and the
runner then reports the run as a harness error: a broken workload never passes quietly.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import random
import socket
import threading
import time
import traceback
import urllib.parse

from harness.cluster import RUNNING
from harness.registry import History, first_registry_converged
from harness.util import HarnessError

OPEN_TIMEOUT_S = 5.0      # connect + `ready` line
CLOSE_CONFIRM_S = 10.0    # how long a close waits for the own agent to drop the process
HOLD_TIMEOUT_S = 30.0     # how long a check waits for the operations in flight


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))[:300]
    except (ValueError, AttributeError):
        return body[:300]


class Listener:
    """One listen stream: open() blocks until `ready` (or failure), then a thread reads."""

    def __init__(self, pool: Pool, lid: str, node: str, groups: list[str], scope: str,
                 name: str | None, owner: str):
        self.pool, self.lid, self.node = pool, lid, node
        self.groups, self.scope, self.name, self.owner = groups, scope, name, owner
        self.pid: str | None = None
        self.agent_pid: int | None = None
        self.seq = 0
        self.closing = False
        self.ended = False
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def open_now(self) -> bool:
        return self.pid is not None and not self.closing and not self.ended

    def open(self) -> bool:
        c, rec = self.pool.c, self.pool.rec
        a = c.agents[self.node]
        self.agent_pid = a.pid
        rec.op("listen", lid=self.lid, node=self.node, groups=self.groups,
               scope=self.scope, name=self.name, owner=self.owner)
        body = {"groups": self.groups, "scope": self.scope, "meta": self.lid}
        if self.name:
            body["name"] = self.name
        host, port = a.admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=OPEN_TIMEOUT_S)
        try:
            conn.request("POST", "/v1/listen", body=json.dumps(body),
                         headers={"Authorization": f"Bearer {c.token}",
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                text = resp.read().decode(errors="replace")
                conn.close()
                rec.op("listen_fail", lid=self.lid, status=resp.status,
                       error=_error_text(text), outcome="failed")
                return False
            ready = json.loads(resp.readline())
            if ready.get("event") != "ready" or not ready.get("pid"):
                raise ValueError(f"first line is not `ready`: {ready}")
        except (TimeoutError, socket.timeout) as e:
            conn.close()
            rec.op("listen_fail", lid=self.lid, status=None, error=f"timeout: {e}",
                   outcome="indeterminate")
            return False
        except (OSError, ValueError, http.client.HTTPException) as e:
            conn.close()
            rec.op("listen_fail", lid=self.lid, status=None,
                   error=f"{type(e).__name__}: {e}", outcome="failed")
            return False
        self.pid = ready["pid"]
        rec.op("listen_ok", lid=self.lid, pid=self.pid, agent_pid=self.agent_pid)
        if conn.sock is not None:
            conn.sock.settimeout(None)  # heartbeats stop while an agent is paused
        self._conn, self._resp = conn, resp
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"listen-{self.lid}")
        self._reader.start()
        return True

    def _read(self) -> None:
        rec = self.pool.rec
        reason = "eof"
        try:
            while True:
                line = self._resp.readline()
                if not line:
                    break
                try:
                    ev = json.loads(line)
                except ValueError:
                    rec.op("listen_bad_line", lid=self.lid, line=line[:200].decode(
                        errors="replace"))
                    continue
                kind = ev.get("event")
                if kind == "message":
                    self.seq += 1
                    rec.op("recv", lid=self.lid, seq=self.seq, payload=ev.get("payload"),
                           **{"from": ev.get("from")})
                elif kind == "name_conflict":
                    rec.op("name_conflict", lid=self.lid, name=ev.get("name"),
                           winner=ev.get("winner"))
                elif kind == "exited":
                    reason = "exited"
                elif kind != "heartbeat":
                    rec.op("listen_bad_line", lid=self.lid, line=json.dumps(ev)[:200])
        except (OSError, ValueError, http.client.HTTPException) as e:
            reason = f"{type(e).__name__}: {e}"
        with self._lock:
            self.ended = True
            closing = self.closing
        if not closing:
            rec.op("listen_ended", lid=self.lid, reason=reason)

    def close(self, kind: str = "unlisten", confirm: bool = True,
              teardown: bool = False) -> None:
        """Close the stream (the leave); with confirm, wait until the own agent drops it."""
        with self._lock:
            if self.closing or self.pid is None:
                return
            self.closing = True
            ended = self.ended
        if not ended:
            self.pool.rec.op(kind, lid=self.lid, **({"teardown": True} if teardown else {}))
        if self._conn is not None and self._conn.sock is not None:
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        if self._reader:
            self._reader.join(timeout=2)
        with contextlib.suppress(OSError):
            self._conn.close()
        if confirm and not ended:
            self._confirm()

    def _confirm(self) -> None:
        c, rec = self.pool.c, self.pool.rec
        t0 = time.monotonic()
        while time.monotonic() - t0 < CLOSE_CONFIRM_S:
            a = c.agents[self.node]
            if a.status != RUNNING or a.pid != self.agent_pid:
                rec.op("unlisten_ok", lid=self.lid, confirmed=None,
                       took_s=round(time.monotonic() - t0, 3), note="agent gone")
                return
            try:
                if self._gone_on_own_agent():
                    rec.op("unlisten_ok", lid=self.lid, confirmed=True,
                           took_s=round(time.monotonic() - t0, 3))
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        rec.op("unlisten_ok", lid=self.lid, confirmed=False, took_s=CLOSE_CONFIRM_S)

    def _gone_on_own_agent(self) -> bool:
        c = self.pool.c
        q = urllib.parse.quote(self.scope, safe="")
        for g in sorted(set(self.groups)):
            status, body = c.http_get(self.node, f"/v1/groups/"
                                      f"{urllib.parse.quote(g, safe='')}?scope={q}")
            if status != 200:
                raise OSError(f"HTTP {status}")
            if any(m["pid"] == self.pid for m in json.loads(body)["members"]):
                return False
        if self.name:
            status, body = c.http_get(self.node,
                                      f"/v1/names/{urllib.parse.quote(self.name, safe='')}")
            if status == 200 and json.loads(body).get("pid") == self.pid:
                return False
            if status not in (200, 404):
                raise OSError(f"HTTP {status}")
        return True


class Pool:
    """Every listener of a run, the churn gate and the registry check (module doc)."""

    @classmethod
    def of(cls, ctx) -> Pool:
        pool = getattr(ctx, "pool", None)
        if pool is None:
            pool = ctx.pool = cls(ctx)
        return pool

    def __init__(self, ctx):
        self.c, self.rec, self.obs = ctx.cluster, ctx.recorder, ctx.observer
        self.bounds, self.seed = ctx.bounds, ctx.seed
        self.listeners: dict[str, Listener] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._quiet = True  # opens at the first check, after formation
        self._inflight = 0
        self._stop = threading.Event()
        self._formed = threading.Event()  # set when the gate first opens
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.obs.watch_registry()
        ctx.steps.converge_hooks.append(self.check_registry)

    # -- threads 
    def rng(self, name: str) -> random.Random:
        """A schedule RNG per workload (and per sender), derived from the run's seed."""
        return random.Random(f"{self.seed}/{name}")

    def spawn(self, name: str, target, *args) -> None:
        def guarded():
            try:
                target(*args)
            except Exception as e:  # a workload bug: make the run an error, not a pass
                self.rec.event("workload_error", thread=name,
                               error=f"{type(e).__name__}: {e}",
                               trace=traceback.format_exc())
        t = threading.Thread(target=guarded, daemon=True, name=name)
        t.start()
        self._threads.append(t)

    def sleep(self, seconds: float) -> bool:
        """Sleep; False once the run is stopping."""
        return not self._stop.wait(max(0.0, seconds))

    @contextlib.contextmanager
    def churn(self):
        """One churn operation: waits while the workloads hold still; yields False once
        the run is stopping."""
        with self._cond:
            while self._quiet and not self._stop.is_set():
                self._cond.wait(0.5)
            go = not self._stop.is_set()
            if go:
                self._inflight += 1
        if not go:
            yield False
            return
        try:
            yield True
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _hold(self) -> None:
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        with self._cond:
            self._quiet = True
            while self._inflight and time.monotonic() < deadline:
                self._cond.wait(0.2)

    def _release(self) -> None:
        with self._cond:
            self._quiet = False
            self._formed.set()
            self._cond.notify_all()

    def wait_formed(self) -> bool:
        """Block until the cluster has formed (the first check passed); False once the
        run is stopping."""
        while not self._formed.wait(0.2):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    # -- listeners 
    def open(self, node: str, groups: list[str], scope: str = "default",
             name: str | None = None, owner: str = "") -> Listener | None:
        lid = f"L{next(self._ids)}"
        x = Listener(self, lid, node, list(groups), scope, name, owner)
        with self._cond:
            self.listeners[lid] = x
        return x if x.open() else None

    def open_listeners(self, owner: str | None = None, node: str | None = None
                       ) -> list[Listener]:
        with self._cond:
            xs = list(self.listeners.values())
        return [x for x in xs if x.open_now and (owner is None or x.owner == owner)
                and (node is None or x.node == node)]

    def known(self) -> list[Listener]:
        """Every listener that ever got a PID (open or not), in creation order."""
        with self._cond:
            return [x for x in self.listeners.values() if x.pid]

    def operations(self, owners: tuple[str, ...]) -> dict:
        """Joins/registrations and leaves of these owners, as the report counts them."""
        ops = {"attempted": 0, "succeeded": 0, "failed": 0, "indeterminate": 0}
        mine = {x.lid for x in self.every() if x.owner in owners}
        for e in list(self.rec.events):
            if e.get("lid") not in mine:
                continue
            k = e["kind"]
            if k == "listen" or (k == "unlisten" and not e.get("teardown")):
                ops["attempted"] += 1
            elif k == "listen_ok":
                ops["succeeded"] += 1
            elif k == "listen_fail":
                ops["failed" if e["outcome"] == "failed" else "indeterminate"] += 1
            elif k == "unlisten_ok":
                c = e.get("confirmed")
                ops["succeeded" if c else "failed" if c is False else "indeterminate"] += 1
        return ops

    def every(self) -> list[Listener]:
        """Every listener, in creation order."""
        with self._cond:
            return list(self.listeners.values())

    # -- the registry check 
    def check_registry(self, after: str, within: float | None = None) -> dict:
        """Hold the churn, wait until the views converge (or the bound passes), record it."""
        self._hold()
        try:
            live = self.c.live()
            if not self._formed.is_set() and live:
                self._probe_api(live[0])
            since = round(self.rec.now(), 3)
            bound = float(within if within is not None
                          else self.bounds["registry_converge_s"])
            stable = float(self.bounds["registry_stable_s"])
            # What the history says at the start holds for the whole check: the
            # workloads hold still (the checker computes it the same way).
            hist = History(list(self.rec.events))
            expected = hist.expected(since, live)
            while True:
                t, _, problems = first_registry_converged(
                    self.obs.sorted_registry(), live, since, bound, stable, expected,
                    hist.lid_of)
                if t is not None:
                    return self.rec.event("registry_converge", after=after, since=since,
                                          live=live, bound_s=bound, stable_s=stable,
                                          converged_at=t, took_s=round(t - since, 3))
                if self.rec.now() > since + bound + stable:
                    return self.rec.event("registry_converge", after=after, since=since,
                                          live=live, bound_s=bound, stable_s=stable,
                                          converged_at=None, took_s=None,
                                          problems=[p["message"] for p in problems[:8]])
                self.obs.wait_new(0.5)
        finally:
            self._release()

    def _probe_api(self, node: str) -> None:
        """Fail the run at once when the agents have no groups/names API."""
        try:
            status, body = self.c.http_get(node, "/v1/scopes", timeout=2.0)
        except OSError as e:
            raise HarnessError(f"{node}: GET /v1/scopes failed: {e}") from e
        if status == 404:
            raise HarnessError(f"this meshctl has no groups/names API (GET /v1/scopes on "
                               f"{node}: 404 {body[:100]}); build one with issue 3")

    # -- the end 
    def stop(self) -> None:
        """Stop every workload thread, then close every listener (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=CLOSE_CONFIRM_S + OPEN_TIMEOUT_S + 5)
        for x in self.every():
            x.close(confirm=False, teardown=True)
