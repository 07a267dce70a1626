"""Leader election: `meshctl elect` on every agent; the leader's command writes to a fence.

One `meshctl elect demo --json -- leader_cmd.py` per agent (ELECTION), run from the root
namespace against that agent's admin API, restarted whenever it exits while its agent
runs (a killed agent ends it: a lost connection stops CMD and exits 1). The command
(chaos/workloads/leader_cmd.py) writes its `MESH_FENCING_TOKEN` to the run's fenced
resource (claims.FencedResource, task `elect/demo`) every 0.15-0.3 s over a loopback
TCP socket; the resource applies a write only if its token is ≥ the highest accepted.

**Leadership terms.** Each meshctl event line is recorded on arrival (`elect_event`
{node, mpid, event, token, ...}). A term of token T on a node starts at the earlier of
its `leader` line and T's first write (the command may write before the line is read;
both come after the grant) and ends at its `exited` line, or when that meshctl process
ended (`elect_exit`) if no `exited` came: both after the command is dead, so a term
covers every effect the command itself could make.

**Steps.** `leader_fault(kind)` waits (up to FIND_S) until a node leads, then pauses or
kills that node's agent and records `leader_fault` {node, token, fault}; `leader_recover`
resumes or restarts it. `leak_leader` (negative control only) makes the leading command
fork a writer outside meshctl's process group, which keeps writing with the old token
after the command is stopped, recorded under a kind the checkers do not know
(`hidden_leak`).

Events: `leader_config` {ttl_s, election}; `elect_start` {node, mpid}; `elect_event`;
`elect_exit` {node, mpid, code, stderr (its last 2 000 characters)}; `fence_write` (task `elect/demo`); `leader_fault`.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.cluster import RUNNING
from harness.util import HarnessError

from ._clients import PerNodeClients
from .claims import FencedResource, call

NAME = "leader"
DESCRIPTION = "meshctl elect on every agent; the leader's command writes its token to a fence"
PENDING = None

ELECTION = "demo"
TASK = f"elect/{ELECTION}"
CMD = Path(__file__).resolve().parent / "leader_cmd.py"
FIND_S = 40.0        # how long leader_fault waits for a leader
STOP_S = 10.0        # how long stop() gives a meshctl to stop its command and release


class _Fence(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Workload(PerNodeClients):
    thread_prefix = "leader"
    join_timeout_s = STOP_S + 5

    def __init__(self, ctx):
        super().__init__(ctx)
        self.resource = FencedResource(self.rec)
        self.leading: dict[str, int] = {}   # node -> token of its open term
        self._procs: dict[str, subprocess.Popen] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="chaos-leader-")
        self.leak_file = Path(self._tmp.name, "leak")
        wl = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    try:
                        w = json.loads(line)
                        node, token = str(w["node"]), int(w["token"])
                    except (ValueError, KeyError, TypeError):
                        return
                    with wl._lock:
                        in_term = wl.leading.get(node) == token
                    ok = wl.resource.write(f"cmd-{node}", node, TASK, token, in_term)
                    self.wfile.write(b'{"accepted": %s}\n' % (b"true" if ok else b"false"))

        self._server = _Fence(("127.0.0.1", 0), Handler)
        self.addr = "127.0.0.1:%d" % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="leader-fence").start()

    def start(self) -> None:
        super().start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:  # like Ctrl-C: meshctl stops its command and releases
            if p.poll() is None:
                p.terminate()
        super().stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
        self._server.shutdown()
        self._server.server_close()
        self._tmp.cleanup()

    # -- one meshctl elect per agent
    def _run(self, node: str) -> None:
        if not self._wait_formed():
            return
        self._record_config(node)
        while not self._stop.is_set():
            if self.c.agents[node].status != RUNNING:
                self._sleep(0.2)
                continue
            self._elect_once(node)
            self._sleep(0.5)

    def _record_config(self, node: str) -> None:
        with self._lock:
            if any(e["kind"] == "leader_config" for e in list(self.rec.events)):
                return
            status, ans, _ = call(self.c, node, "/v1/info", None, timeout=5.0)
            ttl = (ans.get("config") or {}).get("claims_ttl_seconds") if status == 200 else None
            self.rec.event("leader_config", election=ELECTION, task=TASK, ttl_s=ttl)

    def _elect_once(self, node: str) -> None:
        a = self.c.agents[node]
        argv = [str(self.c.meshctl), "elect", ELECTION, "--admin", a.admin,
                "--admin-token", self.c.token, "--json", "--",
                sys.executable, str(CMD), self.addr, node]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
        env["CHAOS_LEAK_FILE"] = str(self.leak_file)
        err = tempfile.TemporaryFile(mode="w+")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                             stdin=subprocess.DEVNULL, env=env, text=True)
        with self._lock:
            self._procs[node] = p
        self.rec.op("elect_start", node=node, mpid=p.pid)
        for line in p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict) or "event" not in ev:
                continue
            kind = ev.pop("event")
            ev.pop("election", None)
            self.rec.op("elect_event", node=node, mpid=p.pid, event=kind, **ev)
            with self._lock:
                if kind == "leader":
                    self.leading[node] = int(ev.get("token", -1))
                elif kind == "exited":
                    self.leading.pop(node, None)
            if kind == "leader":
                self._count("ok")
            elif kind == "campaigning":
                self._count("refused")
        code = p.wait()
        with self._lock:
            self.leading.pop(node, None)
            self._procs.pop(node, None)
        err.seek(0)
        stderr = err.read()[-2000:]
        err.close()
        self.rec.op("elect_exit", node=node, mpid=p.pid, code=code, stderr=stderr)

    # -- scenario steps
    def current_leader(self, within: float = FIND_S) -> tuple[str, int]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._lock:
                if self.leading:
                    node = sorted(self.leading)[0]
                    return node, self.leading[node]
            time.sleep(0.1)
        raise HarnessError(f"leader_fault: no agent led {ELECTION!r} within {within:.0f} s")

    def leak(self) -> None:
        """Negative control only: the leading command forks a writer meshctl cannot stop."""
        node, token = self.current_leader()
        self.leak_file.touch()
        deadline = time.monotonic() + 5
        while self.leak_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.leak_file.exists():
            raise HarnessError(f"leak_leader: the command on {node} did not fork its writer")
        self.rec.event("hidden_leak", node=node, token=token)
