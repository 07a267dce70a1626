#!/usr/bin/env python3
"""The command `meshctl elect` runs for the leader workload (chaos/workloads/leader.py).

  leader_cmd.py HOST:PORT NODE

Writes to the workload's fenced resource every 0.15-0.3 s with its MESH_FENCING_TOKEN,
one JSON line per write over TCP ({node, token, pid}); the resource answers
{accepted}. SIGTERM ends it (Python's default action). It prints nothing: its stdout is
meshctl's event stream.

Negative control only: once the file named by CHAOS_LEAK_FILE exists, it forks a
writer that leaves the process group (setsid), so meshctl's SIGTERM/SIGKILL of the
group cannot reach it, and that writer goes on writing with the old token for LEAK_S.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time

LEAK_S = 40.0


def writer(addr: tuple[str, int], node: str, token: int, until: float | None,
           leaked: bool) -> None:
    leak_file = os.environ.get("CHAOS_LEAK_FILE", "")
    rng = random.Random()
    with socket.create_connection(addr, timeout=5) as s:
        f = s.makefile("rw")
        while until is None or time.monotonic() < until:
            if not leaked and leak_file and os.path.exists(leak_file):
                leaked = True
                os.unlink(leak_file)
                if os.fork() == 0:
                    os.setsid()
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):  # not meshctl's stdout: its reader would wait
                        os.dup2(null, fd)
                    writer(addr, node, token, time.monotonic() + LEAK_S, True)
                    os._exit(0)
            f.write(json.dumps({"node": node, "token": token, "pid": os.getpid()}) + "\n")
            f.flush()
            if not f.readline():
                return
            time.sleep(rng.uniform(0.15, 0.3))


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    node = sys.argv[2]
    token = int(os.environ["MESH_FENCING_TOKEN"])
    try:
        writer((host, int(port)), node, token, None, False)
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
