"""A stand-in for the agents' groups/names/send/listen admin routes, for testing the
harness's own clients (listen streams, sends, registry polls) without root or meshctl.

It is not mesh: every fake agent shares one registry (changes are visible everywhere at
once), there is no membership and no network. It speaks the JSON shapes of
mesh-agent/src/admin/mesh.rs: GET /v1/scopes, /v1/groups?scope=S, /v1/groups/G?scope=S,
/v1/names, /v1/names/N; POST /v1/send and /v1/listen (an NDJSON stream, chunked,
`ready` first, a heartbeat every HEARTBEAT_S, the process removed when a write fails).
`lose(pid)` drops a process from the registry while its stream stays open: the fault a
checker must catch.

Claims and strong names (mesh-agent/src/admin/quorum.rs shapes): POST /v1/claims,
/v1/claims/release, /v1/names/strong, /v1/names/strong/release; GET
/v1/names/strong/{name}?linearizable=. One shared table under a lock (trivially
linearizable); a lease expires TTL after its last claim on the fake's clock;
`quorum.available = False` makes every such route answer 503, as a minority side does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Empty, Queue

from harness.cluster import RUNNING

HEARTBEAT_S = 0.2


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.procs: dict[str, dict] = {}  # pid -> {node, scope, groups, name, meta, box}
        self.ids = 0
        self.hlc = 1_700_000_000_000

    def spawn(self, node: str, body: dict) -> tuple[dict | None, str | None]:
        with self.lock:
            name = body.get("name")
            if name and any(p["name"] == name for p in self.procs.values()):
                return None, f"{name!r} is already registered"
            self.ids += 1
            self.hlc += 1
            pid = f"{node}/1/{self.ids}"
            p = {"pid": pid, "node": node, "scope": body.get("scope") or "default",
                 "groups": list(body.get("groups") or []), "name": name,
                 "meta": body.get("meta"), "box": Queue(), "hlc": f"{self.hlc}.0"}
            self.procs[pid] = p
            return p, None

    def exit(self, pid: str) -> None:
        with self.lock:
            self.procs.pop(pid, None)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.procs.values())


class Quorum:
    """The fake quorum plane: task leases and strong names in one table."""

    def __init__(self):
        self.lock = threading.Lock()
        self.available = True
        self.next_token = 1
        self.claims: dict[str, dict] = {}   # task -> {node, token, until, ttl}
        self.names: dict[str, dict] = {}    # name -> {pid, node, version}
        self.ids = 0

    def _next(self) -> int:
        self.next_token += 1
        return self.next_token

    def claim(self, node: str, body: dict) -> tuple[int, dict]:
        task, ttl = body["task"], body.get("ttl_ms", 10_000) / 1000.0
        with self.lock:
            now = time.monotonic()
            c = self.claims.get(task)
            if c and c["until"] > now and c["node"] != node:
                return 409, {"error": f"task {task!r} is held by node {c['node']} with "
                                      f"token {c['token']}"}
            if not c or c["until"] <= now:
                c = self.claims[task] = {"node": node, "token": self._next(), "ttl": ttl}
            c["until"] = now + ttl
            valid = int((ttl * 0.999 - 0.1) * 1000)
            return 200, {"task": task, "token": c["token"], "valid_for_ms": valid,
                         "node": node}

    def release(self, node: str, body: dict) -> tuple[int, dict]:
        with self.lock:
            c = self.claims.get(body["task"])
            if not c or c["until"] <= time.monotonic() or c["node"] != node:
                return 409, {"error": "not held by this agent"}
            if c["token"] != body["token"]:
                return 409, {"error": f"stale token; the current one is {c['token']}"}
            del self.claims[body["task"]]
            return 200, body

    def register(self, node: str, body: dict) -> tuple[int, dict]:
        with self.lock:
            n = self.names.get(body["name"])
            if n:
                return 409, {"error": f"taken by {n['pid']} at version {n['version']}"}
            self.ids += 1
            n = self.names[body["name"]] = {"name": body["name"], "node": node,
                                            "pid": f"{node}/1/{1000 + self.ids}",
                                            "version": self._next(), "ephemeral": False}
            return 200, dict(n)

    def release_name(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            n = self.names.get(body["name"])
            if not n:
                return 404, {"error": "has no owner"}
            if n["version"] != body["version"]:
                return 409, {"error": f"stale version; the current one is {n['version']}"}
            del self.names[body["name"]]
            return 200, body

    def whereis(self, name: str, linearizable: bool) -> tuple[int, dict]:
        with self.lock:
            n = self.names.get(name)
            if not n:
                return 404, {"error": "has no owner"}
            return 200, {**n, "linearizable": linearizable}


class FakeAgent:
    """One fake agent: an HTTP server on 127.0.0.1, a free port, sharing `registry`."""

    def __init__(self, name: str, registry: Registry, quorum: Quorum | None = None):
        self.name, self.registry = name, registry
        self.quorum = quorum or Quorum()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, status: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                agent.get(self)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if self.path == "/v1/send":
                    agent.send(self, body)
                elif self.path == "/v1/listen":
                    agent.listen(self, body)
                elif self.path in QUORUM_POSTS:
                    agent.quorum_post(self, body)
                else:
                    self._json(404, {"error": "no route"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.admin = f"127.0.0.1:{self.server.server_address[1]}"
        self.ip, self.status, self.pid = "127.0.0.1", RUNNING, 1
        self.skew = None
        self.stale_cache = False  # cached strong-name reads answer 404 (a lagging cache)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routes 
    def quorum_post(self, h, body: dict) -> None:
        q = self.quorum
        if not q.available:
            return h._json(503, {"error": "claims unavailable: 1 of 3 voters reachable"})
        route = {"/v1/claims": lambda: q.claim(self.name, body),
                 "/v1/claims/release": lambda: q.release(self.name, body),
                 "/v1/names/strong": lambda: q.register(self.name, body),
                 "/v1/names/strong/release": lambda: q.release_name(body)}[h.path]
        h._json(*route())

    def get(self, h) -> None:
        url = urllib.parse.urlparse(h.path)
        if url.path.startswith("/v1/names/strong/"):
            if not self.quorum.available:
                return h._json(503, {"error": "claims unavailable"})
            lin = urllib.parse.parse_qs(url.query).get("linearizable", ["false"])[0]
            name = urllib.parse.unquote(url.path[len("/v1/names/strong/"):])
            if lin != "true" and self.stale_cache:
                return h._json(404, {"error": "not in this agent's cache"})
            return h._json(*self.quorum.whereis(name, lin == "true"))
        scope = urllib.parse.parse_qs(url.query).get("scope", ["default"])[0]
        procs = self.registry.snapshot()
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[2:]]
        if parts == ["scopes"]:
            return h._json(200, sorted({p["scope"] for p in procs if p["groups"]}))
        if parts == ["groups"]:
            groups = sorted({g for p in procs if p["scope"] == scope for g in p["groups"]})
            return h._json(200, [{"group": g, "members": sum(
                1 for p in procs if p["scope"] == scope and g in p["groups"])}
                for g in groups])
        if len(parts) == 2 and parts[0] == "groups":
            members = [{"pid": p["pid"], "node": p["node"], "count": p["groups"].count(
                parts[1]), "meta": p["meta"]} for p in procs
                if p["scope"] == scope and parts[1] in p["groups"]]
            return h._json(200, {"scope": scope, "group": parts[1], "members": members})
        names = [{"name": p["name"], "pid": p["pid"], "node": p["node"], "hlc": p["hlc"],
                  "policy": "notify"} for p in procs if p["name"]]
        if parts == ["names"]:
            return h._json(200, names)
        if len(parts) == 2 and parts[0] == "names":
            hit = [n for n in names if n["name"] == parts[1]]
            return h._json(200, hit[0]) if hit else h._json(404, {"error": "no name"})
        return h._json(404, {"error": "no route"})

    def send(self, h, body: dict) -> None:
        procs = self.registry.snapshot()
        if "group" in body:
            scope = body.get("scope") or "default"
            targets = [p for p in procs if p["scope"] == scope and body["group"] in p["groups"]]
            if body.get("mode") == "local":
                targets = [p for p in targets if p["node"] == self.name]
            elif body.get("mode") in ("one", "nearest"):
                targets = targets[:1]
            if not targets:
                return h._json(404, {"error": f"group {body['group']!r} in scope "
                                              f"{scope!r} has no member to send to"})
        elif "name" in body:
            targets = [p for p in procs if p["name"] == body["name"]]
            if not targets:
                return h._json(404, {"error": f"no process is registered as "
                                              f"{body['name']!r}"})
        else:
            targets = [p for p in procs if p["pid"] == body["pid"]]
            if not targets:
                return h._json(404, {"error": f"no such process: {body['pid']}"})
        for p in targets:
            p["box"].put(body["payload"])
        h._json(200, {"delivered": len(targets), "remote_nodes": len(
            {p["node"] for p in targets} - {self.name}), "failed": [], "timed_out": []})

    def listen(self, h, body: dict) -> None:
        p, err = self.registry.spawn(self.name, body)
        if p is None:
            return h._json(409, {"error": err})
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def line(obj) -> None:
            data = json.dumps(obj).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()
        try:
            line({"event": "ready", "pid": p["pid"], "groups": p["groups"],
                  "scope": p["scope"], "name": p["name"]})
            while p["pid"] in {q["pid"] for q in self.registry.snapshot()} or \
                    p.get("lost"):
                try:
                    payload = p["box"].get(timeout=HEARTBEAT_S)
                    line({"event": "message", "payload": payload})
                except Empty:
                    line({"event": "heartbeat"})
            line({"event": "exited"})
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass
        finally:
            h.close_connection = True
            self.registry.exit(p["pid"])

    def lose(self, pid: str) -> None:
        """Drop a process from the registry but keep its stream open (a planted bug)."""
        with self.registry.lock:
            p = self.registry.procs.pop(pid)
            p["lost"] = True


QUORUM_POSTS = ("/v1/claims", "/v1/claims/release", "/v1/names/strong",
                "/v1/names/strong/release")


class FakeCluster:
    """Enough of harness.cluster.Cluster for the workloads, the observer and the pool."""

    def __init__(self, n: int = 3):
        self.registry = Registry()
        self.quorum = Quorum()
        self.agents = {f"n{i}": FakeAgent(f"n{i}", self.registry, self.quorum)
                       for i in range(1, n + 1)}
        self.token = "test"

    def names(self) -> list[str]:
        return list(self.agents)

    def live(self) -> list[str]:
        return [n for n, a in self.agents.items() if a.status == RUNNING]

    def _req(self, name, path, body, timeout):
        req = urllib.request.Request(
            f"http://{self.agents[name].admin}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def http_get(self, name, path, timeout=1.0):
        return self._req(name, path, None, timeout)

    def http_post(self, name, path, body, timeout=1.0):
        return self._req(name, path, body, timeout)

    def close(self) -> None:
        for a in self.agents.values():
            a.close()


def wait_until(pred, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False
