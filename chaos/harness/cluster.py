"""A cluster of real `meshctl agent` processes, one per network namespace.

The cluster owns: a copy of the meshctl binary (so a parallel `cargo build` cannot swap
it mid-run), a CA and one certificate per node made with `meshctl cert`, one data dir
and one log file per node, and the agents' processes. Agents run in their own session
(Ctrl-C in the terminal reaches the harness, which then kills them) and, for clock-rate
skew, under libfaketime loaded with LD_PRELOAD — not the `faketime` wrapper, which forks
and would leave the harness holding the wrapper's pid instead of the agent's.

Its state is mirrored to STATE_DIR/<prefix>.json so `chaos/fault` and `chaos/cleanup`,
run from another shell, can act on a cluster this process started.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from .net import Net
from .util import STATE_DIR, HarnessError, clock, cmdline, pid_alive, run

SWIM_PORT = 7946
ADMIN_PORT = 7947
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
SEED_COUNT = 3  # agents seed through the first three nodes (not themselves)

def _locked(method):
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


# Agent states as the harness knows them (its intent, checked against the process).
RUNNING, PAUSED, KILLED, STOPPED, EXITED = "running", "paused", "killed", "stopped", "exited"


@dataclass
class Agent:
    name: str
    idx: int
    ip: str
    ns: str
    data_dir: str
    log: str
    skew: float | None = None  # clock rate factor under libfaketime; None = real clock
    voters: str | None = None  # --voters (the quorum plane), e.g. "n1,n2,n3"; None = off
    pid: int | None = None
    status: str = STOPPED
    starts: int = 0
    popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def admin(self) -> str:
        return f"{self.ip}:{ADMIN_PORT}"

    @property
    def swim(self) -> str:
        return f"{self.ip}:{SWIM_PORT}"


class Cluster:
    """N agents on a Net. Create with Cluster.create(), or Cluster.load(prefix)."""

    def __init__(self, net: Net, run_dir: Path, meshctl: Path, token: str,
                 profile: str, agents: dict[str, Agent], owner_pid: int,
                 keep: bool = False):
        self.net = net
        self.run_dir = run_dir
        self.meshctl = meshctl
        self.token = token
        self.profile = profile
        self.agents = agents
        self.owner_pid = owner_pid
        self.keep = keep
        # Called with an agent's name just before it is killed, so the observer can take
        # a last metrics snapshot of that process life.
        self.before_kill: Callable[[str], None] | None = None
        self.on_exit: Callable[[Agent, int | None], None] | None = None
        # Process operations and the exit monitor must not interleave: a kill must never
        # be mistaken for an unexpected exit.
        self.lock = threading.RLock()
        # Network faults now in force (for `chaos/fault status` and heal), by kind.
        self.active_faults: dict = {}
        self.binary: dict = {}  # which meshctl this cluster runs (path, sha256, mtime)
        # Second agents under a live agent's name (start_impostor), by that name.
        self.impostors: dict[str, Agent] = {}
        # Oracle time zero of this cluster's events (CLOCK_MONOTONIC is system-wide, so
        # `chaos/fault` in another process records on the same timeline).
        self.t0 = clock()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, nodes: int, run_dir: Path | str | None = None,
               meshctl: Path | str | None = None, subnet: str = "10.77.0",
               profile: str = "lan", skews: dict[str, float] | None = None,
               tag: str | None = None, t0: float | None = None,
               voters: int = 0, spares: int = 0) -> Cluster:
        """Build the network, certificates and data dirs; agents are not started yet.

        voters: with 3 or 5, every agent runs with `--voters` naming the first that many
        nodes (claims and strong names need them); 0: no quorum plane.
        spares: namespaces past the agents' (n{nodes+1}...), where start_impostor runs a
        second agent under a live agent's name."""
        from .util import REPORTS_DIR, default_meshctl

        tag = tag or str(os.getpid())
        src = Path(meshctl) if meshctl else default_meshctl()
        if src is None or not src.exists():
            raise HarnessError(
                "meshctl not found; build it with `cargo build --release -p mesh-cli` "
                "or pass --meshctl PATH (or set MESHCTL)")
        run_dir = Path(run_dir) if run_dir else REPORTS_DIR / f"cluster-mc{tag}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "logs").mkdir(exist_ok=True)
        (run_dir / "bin").mkdir(exist_ok=True)
        binary = run_dir / "bin" / "meshctl"
        shutil.copy2(src, binary)
        skews = skews or {}
        if skews and not Path(LIBFAKETIME).exists():
            raise HarnessError(f"clock skew needs {LIBFAKETIME} (apt-get install faketime)")

        if voters and voters not in (3, 5) or voters > nodes:
            raise HarnessError(f"voters: {voters} of {nodes} nodes (3 or 5, at most the "
                               "cluster size)")
        voter_list = ",".join(f"n{i}" for i in range(1, voters + 1)) or None
        net = Net(tag, nodes + spares, subnet)
        agents = {}
        for i in range(1, nodes + 1):
            name = f"n{i}"
            agents[name] = Agent(name=name, idx=i, ip=net.ip(i), ns=net.ns(i),
                                 data_dir=str(run_dir / "nodes" / name),
                                 log=str(run_dir / "logs" / f"{name}.log"),
                                 skew=skews.get(name), voters=voter_list)
        unknown = set(skews) - set(agents)
        if unknown:
            raise HarnessError(f"skew for unknown nodes: {sorted(unknown)}")
        cluster = cls(net, run_dir, binary, secrets.token_hex(16), profile, agents,
                      os.getpid())
        if t0 is not None:
            cluster.t0 = t0
        cluster.binary = binary_identity(src, binary)
        cluster.save_state()  # before anything exists, so cleanup can find a crash
        try:
            net.create()
            cluster._certs()
        except BaseException:
            cluster.destroy()  # whatever part of the network exists
            raise
        cluster.save_state()
        return cluster

    def _certs(self) -> None:
        ca = self.run_dir / "ca"
        run([str(self.meshctl), "cert", "ca", "--out", str(ca), "--cluster",
             self.net.prefix, "--force"])
        for a in self.agents.values():
            run([str(self.meshctl), "cert", "issue", "--ca-dir", str(ca), "--name", a.name,
                 "--out", a.data_dir, "--force"])

    # -- agent processes ---------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.agents)

    def live(self) -> list[str]:
        """Agents that are running and not paused: the members a healed cluster must show."""
        return [n for n, a in self.agents.items() if a.status == RUNNING]

    def seeds_for(self, a: Agent) -> list[str]:
        return [b.swim for b in list(self.agents.values())[:SEED_COUNT + 1]
                if b.name != a.name][:SEED_COUNT]

    def command(self, a: Agent) -> tuple[list[str], dict[str, str]]:
        ca = self.run_dir / "ca" / "ca.crt"
        argv = ["ip", "netns", "exec", a.ns, str(self.meshctl), "agent",
                "--name", a.name, "--bind", a.swim, "--advertise", a.swim,
                "--admin", a.admin, "--admin-token", self.token,
                "--ca", str(ca), "--cert", f"{a.data_dir}/{a.name}.crt",
                "--key", f"{a.data_dir}/{a.name}.key", "--data-dir", a.data_dir,
                "--profile", self.profile]
        for s in self.seeds_for(a):
            argv += ["--seed", s]
        if a.voters:
            argv += ["--voters", a.voters]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
        env.setdefault("RUST_LOG", "info")
        if a.skew is not None:
            env["LD_PRELOAD"] = LIBFAKETIME
            env["FAKETIME"] = f"+0 x{a.skew:.6g}"
            env["FAKETIME_DONT_RESET"] = "1"
            env["LC_ALL"] = "C"  # libfaketime parses the rate with the locale's decimal point
        return argv, env

    @_locked
    def start(self, name: str) -> Agent:
        a = self.agents[name]
        if a.status in (RUNNING, PAUSED) and pid_alive(a.pid):
            raise HarnessError(f"{name} is already running (pid {a.pid})")
        self._spawn(a)
        self.save_state()
        return a

    @_locked
    def start_impostor(self, of: str) -> Agent:
        """A second agent under `of`'s name, with its own valid certificate for that name
        (what an operator who copies a config makes), in the first free spare namespace.
        Not in `agents`: the observer, workloads and checkers do not poll it."""
        real = self.agents[of]
        taken = {a.idx for a in self.agents.values()} | {a.idx for a in self.impostors.values()}
        free = [i for i in range(1, self.net.n + 1) if i not in taken]
        if not free:
            raise HarnessError("no spare namespace for an impostor (set SPARES in the scenario)")
        i = free[0]
        a = Agent(name=of, idx=i, ip=self.net.ip(i), ns=self.net.ns(i),
                  data_dir=str(self.run_dir / "nodes" / f"{of}-dup"),
                  log=str(self.run_dir / "logs" / f"{of}-dup.log"), voters=real.voters)
        run([str(self.meshctl), "cert", "issue", "--ca-dir", str(self.run_dir / "ca"),
             "--name", of, "--out", a.data_dir, "--force"])
        self._spawn(a)
        self.impostors[of] = a
        return a

    @_locked
    def kill_impostor(self, of: str) -> None:
        a = self.impostors.pop(of)
        self._signal(a, signal.SIGKILL)
        self._reap(a, 5)
        a.status = KILLED

    def _spawn(self, a: Agent) -> None:
        argv, env = self.command(a)
        with open(a.log, "ab") as log:
            log.write(f"=== chaos: start #{a.starts + 1} skew={a.skew} at "
                      f"{time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            a.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        a.pid = a.popen.pid
        a.status = RUNNING
        a.starts += 1

    @_locked
    def kill(self, name: str) -> None:
        """kill -9 (a paused agent dies too: SIGKILL needs no SIGCONT)."""
        a = self.agents[name]
        if self.before_kill and a.status == RUNNING:
            self.before_kill(name)
        self._signal(a, signal.SIGKILL)
        self._reap(a, 5)
        a.status = KILLED
        self.save_state()

    @_locked
    def stop(self, name: str, timeout: float = 10) -> None:
        """SIGTERM: a graceful leave. Falls back to SIGKILL after `timeout`."""
        a = self.agents[name]
        if self.before_kill and a.status == RUNNING:
            self.before_kill(name)
        if a.status == PAUSED:
            self._signal(a, signal.SIGCONT)
        self._signal(a, signal.SIGTERM)
        if not self._reap(a, timeout):
            self._signal(a, signal.SIGKILL)
            self._reap(a, 5)
        a.status = STOPPED
        self.save_state()

    @_locked
    def pause(self, name: str) -> None:
        a = self._running(name)
        self._signal(a, signal.SIGSTOP)
        a.status = PAUSED
        self.save_state()

    @_locked
    def resume(self, name: str) -> None:
        a = self.agents[name]
        if a.status != PAUSED:
            raise HarnessError(f"{name} is not paused ({a.status})")
        self._signal(a, signal.SIGCONT)
        a.status = RUNNING
        self.save_state()

    @_locked
    def set_skew(self, name: str, rate: float | None) -> None:
        """Restart the agent (kill -9, same name and data dir) with a new clock rate."""
        if rate is not None and not Path(LIBFAKETIME).exists():
            raise HarnessError(f"clock skew needs {LIBFAKETIME} (apt-get install faketime)")
        a = self.agents[name]
        if a.status in (RUNNING, PAUSED):
            self.kill(name)
        a.skew = None if rate in (None, 1, 1.0) else float(rate)
        self.start(name)

    @_locked
    def poll_exits(self) -> list[Agent]:
        """Agents the harness believes alive whose process has ended. Marks them exited."""
        gone = []
        for a in self.agents.values():
            if a.status not in (RUNNING, PAUSED):
                continue
            code = a.popen.poll() if a.popen else (None if pid_alive(a.pid) else -1)
            if code is not None:
                a.status = EXITED
                gone.append(a)
                if self.on_exit:
                    self.on_exit(a, code)
        if gone:
            self.save_state()
        return gone

    def _running(self, name: str) -> Agent:
        a = self.agents[name]
        if a.status != RUNNING:
            raise HarnessError(f"{name} is not running ({a.status})")
        return a

    def _is_ours(self, a: Agent) -> bool:
        """The pid still belongs to this agent (guards against pid reuse)."""
        argv = cmdline(a.pid) if a.pid else []
        return str(self.meshctl) in argv and a.name in argv and "agent" in argv

    def _signal(self, a: Agent, sig: int) -> None:
        if a.pid and pid_alive(a.pid) and self._is_ours(a):
            os.kill(a.pid, sig)

    def _reap(self, a: Agent, timeout: float) -> bool:
        if a.popen:
            try:
                a.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(a.pid):
                return True
            time.sleep(0.05)
        return False

    # -- admin API ---------------------------------------------------------------------------
    def http_get(self, name: str, path: str, timeout: float = 1.0) -> tuple[int, str]:
        """GET from an agent's admin API; raises OSError/TimeoutError on failure."""
        a = self.agents[name]
        req = urllib.request.Request(f"http://{a.admin}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def http_post(self, name: str, path: str, body: dict,
                  timeout: float = 1.0) -> tuple[int, str]:
        """POST a JSON body to an agent's admin API; raises OSError/TimeoutError on
        failure (an HTTP error status is an answer, not a failure)."""
        a = self.agents[name]
        req = urllib.request.Request(f"http://{a.admin}{path}", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def members(self, name: str) -> list[dict]:
        status, body = self.http_get(name, "/v1/members")
        if status != 200:
            raise HarnessError(f"{name}: /v1/members answered {status}: {body[:200]}")
        return json.loads(body)

    # -- teardown ----------------------------------------------------------------------------
    def destroy(self) -> list[str]:
        """Kill every agent, then remove namespaces, bridge, veths and the nft table."""
        for a in [*self.agents.values(), *self.impostors.values()]:
            if a.status in (RUNNING, PAUSED) or pid_alive(a.pid):
                self._signal(a, signal.SIGKILL)
                self._reap(a, 5)
                a.status = KILLED if a.status in (RUNNING, PAUSED) else a.status
        kill_ns_processes(self.net.tag)
        failed = self.net.destroy()
        (self.run_dir / "bin" / "meshctl").unlink(missing_ok=True)
        self.state_file().unlink(missing_ok=True)
        return failed

    # -- persisted state -----------------------------------------------------------------------
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.net.prefix}.json"

    def save_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "prefix": self.net.prefix, "tag": self.net.tag, "nodes": self.net.n,
            "subnet": self.net.subnet, "run_dir": str(self.run_dir),
            "meshctl": str(self.meshctl), "token": self.token, "profile": self.profile,
            "owner_pid": self.owner_pid, "keep": self.keep,
            "netem": self.net.netem, "injected": self.net.injected,
            "active_faults": self.active_faults, "t0": self.t0,
            "agents": {n: {f.name: getattr(a, f.name) for f in fields(Agent)
                           if f.name != "popen"} for n, a in self.agents.items()},
        }
        tmp = self.state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file())

    @classmethod
    def load(cls, prefix: str | None = None) -> Cluster:
        """Attach to a cluster another process started (the only one, if prefix is None)."""
        files = sorted(STATE_DIR.glob("mc*.json"))
        if prefix:
            files = [f for f in files if f.stem == prefix]
        if not files:
            raise HarnessError(f"no chaos cluster {prefix or ''} found in {STATE_DIR} "
                               "(start one with chaos/cluster up, or chaos/run ... --keep)")
        if len(files) > 1:
            raise HarnessError("several chaos clusters are up; pick one with --cluster: "
                               + ", ".join(f.stem for f in files))
        s = json.loads(files[0].read_text())
        net = Net(s["tag"], s["nodes"], s["subnet"])
        net.netem = s.get("netem")
        net.injected = s.get("injected", {})
        agents = {n: Agent(**a) for n, a in s["agents"].items()}
        cluster = cls(net, Path(s["run_dir"]), Path(s["meshctl"]), s["token"], s["profile"],
                      agents, s["owner_pid"], s.get("keep", False))
        cluster.active_faults = s.get("active_faults", {})
        cluster.t0 = s.get("t0", clock())
        return cluster


def binary_identity(src: Path, copy: Path) -> dict:
    """Where the agents' binary came from and what it was, for the report."""
    h = hashlib.sha256()
    with open(copy, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(src.stat().st_mtime))
    return {"source": str(src), "sha256": h.hexdigest()[:16], "built": mtime}


def kill_ns_processes(tag: str) -> None:
    """SIGKILL whatever still runs inside run `tag`'s namespaces (crashed-run leftovers)."""
    from .net import NS_RE, list_namespaces

    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if not (m and m.group(1) == tag):
            continue
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
