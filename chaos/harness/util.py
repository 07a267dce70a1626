"""Small shared helpers: paths, the one clock, running commands, capability checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

CHAOS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = CHAOS_DIR.parent
REPORTS_DIR = CHAOS_DIR / "reports"
# One small JSON file per live cluster, so that `chaos/fault` and `chaos/cleanup`
# find clusters started by another process.
STATE_DIR = Path(os.environ.get("MESH_CHAOS_STATE_DIR", "/tmp/mesh-chaos"))


class HarnessError(Exception):
    """The harness could not do what it was asked (not a finding about mesh)."""


def clock() -> float:
    """The real-time oracle: CLOCK_MONOTONIC of the one kernel all namespaces share.

    Agents may run under faketime; the harness never does, so every timestamp in
    events and observations is on this clock.
    """
    return time.monotonic()


def run(cmd: list[str], *, check: bool = True, input: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command and capture its output as text; raise HarnessError on failure."""
    try:
        cp = subprocess.run(cmd, input=input, capture_output=True, text=True,
                            timeout=timeout)
    except FileNotFoundError as e:
        raise HarnessError(f"{cmd[0]}: not installed ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(cmd)}: timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        msg = (cp.stderr or cp.stdout).strip()
        raise HarnessError(f"{' '.join(cmd)}: exit {cp.returncode}: {msg}")
    return cp


def unsupported_reason() -> str | None:
    """Why this machine cannot run the harness, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (apt-get install {pkg})"
    probe = f"mcprobe{os.getpid()}"
    cp = run(["ip", "netns", "add", probe], check=False)
    if cp.returncode != 0:
        return f"cannot create a network namespace: {cp.stderr.strip()}"
    run(["ip", "netns", "del", probe], check=False)
    return None


def pid_alive(pid: int | None) -> bool:
    """True when pid names a process that has not exited (zombies count as exited)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> list[str]:
    """The argv of a live process, or [] when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def vm_rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def git_rev() -> str:
    cp = run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], check=False)
    rev = cp.stdout.strip() or "unknown"
    dirty = run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
                check=False).stdout.strip()
    return rev + ("-dirty" if dirty else "")


def default_meshctl() -> Path | None:
    """MESHCTL, else target/release/meshctl, else target/debug/meshctl."""
    env = os.environ.get("MESHCTL")
    if env:
        return Path(env)
    for p in (REPO_DIR / "target/release/meshctl", REPO_DIR / "target/debug/meshctl"):
        if p.exists():
            return p
    return None
