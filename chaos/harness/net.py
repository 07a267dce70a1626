"""Hosts as network namespaces on one bridge, and the network faults on that bridge.

Layout for a run tagged T (the owning process id):

    namespace  mcT-n1 .. mcT-nN   eth0 = SUBNET.i/24, lo up
    veth       mcTv1 .. mcTvN     host end, a port of the bridge
    bridge     mcbrT              SUBNET.254/24 in the root namespace, so the harness
                                  reaches every agent's admin API directly
    nft        table bridge mcT   chain forward (hook) -> jump partition, jump loss

Faults act on packets the bridge *forwards* between ports, so they never touch the
harness's own traffic to the admin APIs (root namespace -> port is not forwarding).
Drops happen at the bridge, never in a sender's OUTPUT hook (there `sendto` would fail
with EPERM instead of the packet being lost on the wire). Every rule has a counter; the
packets a rule dropped are added to `injected` before the rule is removed.

Nothing here touches a name that does not start with this run's prefix.
"""

from __future__ import annotations

import json
import re

from .util import HarnessError, run

# Names this harness creates; `chaos/cleanup` matches leftovers with these.
NS_RE = re.compile(r"^mc(\d+)-n(\d+)$")
VETH_RE = re.compile(r"^mc(\d+)v(\d+)$")
BRIDGE_RE = re.compile(r"^mcbr(\d+)$")
TABLE_RE = re.compile(r"^mc(\d+)$")

TBF_BURST = "32kbit"
TBF_LATENCY = "400ms"


class Net:
    """The namespaces, veths, bridge and nft table of one run."""

    def __init__(self, tag: str, n: int, subnet: str = "10.77.0"):
        if not tag.isdigit():
            raise HarnessError(f"run tag must be digits, got {tag!r}")
        if not 1 <= n <= 64:
            raise HarnessError(f"nodes must be 1..64, got {n}")
        self.tag = tag
        self.n = n
        self.subnet = subnet
        self.prefix = f"mc{tag}"
        self.bridge = f"mcbr{tag}"
        self.table = f"mc{tag}"
        self.injected: dict[str, int] = {}  # packets dropped by our rules, by fault kind
        self.netem: bool | None = None  # unknown until first tried

    # -- names -------------------------------------------------------------------------
    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def veth(self, i: int) -> str:
        return f"{self.prefix}v{i}"

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    # -- lifecycle ---------------------------------------------------------------------
    def create(self) -> None:
        gw = f"{self.subnet}.254"
        addrs = run(["ip", "-o", "-4", "addr", "show"]).stdout
        if re.search(rf"\binet {re.escape(gw)}/", addrs):
            raise HarnessError(
                f"{gw} is already in use (another chaos run?); run chaos/cleanup "
                f"or pass --subnet")
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{gw}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.n + 1):
            ns, veth = self.ns(i), self.veth(i)
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                 "netns", ns])
            run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._nft(f"""
table bridge {self.table} {{
  chain partition {{ }}
  chain loss {{ }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    jump partition
    jump loss
  }}
}}""")

    def destroy(self) -> list[str]:
        """Remove everything this run created; returns what could not be removed."""
        return destroy_by_tag(self.tag)

    # -- partitions ----------------------------------------------------------------------
    def block(self, a: list[int], b: list[int], kind: str, oneway: bool = False) -> None:
        """Drop every packet between side a and side b, both directions (oneway: only
        those from a to b, so a still hears b but b does not hear a)."""
        if not a or not b:
            raise HarnessError("a partition needs two non-empty sides")
        if set(a) & set(b):
            raise HarnessError(f"sides overlap: {sorted(set(a) & set(b))}")
        va, vb = self._ifset(a), self._ifset(b)
        rules = [f'add rule bridge {self.table} partition iifname {va} oifname {vb} '
                 f'counter drop comment "{kind}"']
        if not oneway:
            rules.append(f'add rule bridge {self.table} partition iifname {vb} oifname {va} '
                         f'counter drop comment "{kind}"')
        self._nft("\n".join(rules))

    def clear_partitions(self) -> None:
        self._harvest("partition")
        self._nft(f"flush chain bridge {self.table} partition")

    # -- loss ------------------------------------------------------------------------------
    def loss(self, percent: int, to: list[int] | None = None) -> None:
        """Drop percent % of forwarded packets (only those delivered to `to`, if given)."""
        if not 0 <= percent <= 100:
            raise HarnessError(f"loss must be 0..100 %, got {percent}")
        self.clear_loss()
        if percent == 0:
            return
        match = f"oifname {self._ifset(to)} " if to else ""
        self._nft(f'add rule bridge {self.table} loss {match}numgen random mod 100 < '
                  f'{percent} counter drop comment "loss"')

    def clear_loss(self) -> None:
        self._harvest("loss")
        self._nft(f"flush chain bridge {self.table} loss")

    # -- qdiscs: bandwidth (tbf) and delay (netem) -------------------------------------------
    def _qdisc_targets(self, i: int) -> list[list[str]]:
        """Both directions of node i's link: the bridge port (towards it), its eth0."""
        return [["tc"], ["ip", "netns", "exec", self.ns(i), "tc"]]

    def _dev(self, cmd_prefix: list[str], i: int) -> str:
        return self.veth(i) if len(cmd_prefix) == 1 else "eth0"

    def bandwidth(self, i: int, rate: str) -> None:
        for tc in self._qdisc_targets(i):
            run(tc + ["qdisc", "replace", "dev", self._dev(tc, i), "root", "tbf", "rate",
                      rate, "burst", TBF_BURST, "latency", TBF_LATENCY])

    def netem_available(self) -> bool:
        """Try netem once on node 1's port; this kernel may not have it."""
        if self.netem is None:
            dev = self.veth(1)
            cp = run(["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
                     check=False)
            self.netem = cp.returncode == 0
            if self.netem:
                run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        return self.netem

    def delay(self, i: int, delay: str, jitter: str | None = None,
              reorder: str | None = None) -> None:
        args = ["delay", delay] + ([jitter] if jitter else [])
        if reorder:
            args += ["reorder", reorder]
        for tc in self._qdisc_targets(i):
            run(tc + ["qdisc", "replace", "dev", self._dev(tc, i), "root", "netem"] + args)

    def clear_qdiscs(self, i: int) -> None:
        for tc in self._qdisc_targets(i):
            dev = self._dev(tc, i)
            stats = run(tc + ["-s", "qdisc", "show", "dev", dev], check=False).stdout
            m = re.search(r"^qdisc (tbf|netem) .*?dropped (\d+)", stats, re.S | re.M)
            if m:
                self.injected[m.group(1)] = self.injected.get(m.group(1), 0) + int(m.group(2))
            run(tc + ["qdisc", "del", "dev", dev, "root"], check=False)

    # -- status ----------------------------------------------------------------------------
    def rules(self) -> dict[str, list[str]]:
        """The rules now in the partition and loss chains, as nft prints them."""
        out = {}
        for chain in ("partition", "loss"):
            text = run(["nft", "list", "chain", "bridge", self.table, chain],
                       check=False).stdout
            out[chain] = [ln.strip() for ln in text.splitlines()
                          if "drop" in ln]
        return out

    # -- internals -------------------------------------------------------------------------
    def _ifset(self, nodes: list[int]) -> str:
        return "{ " + ", ".join(f'"{self.veth(i)}"' for i in nodes) + " }"

    def _nft(self, script: str) -> None:
        run(["nft", "-f", "-"], input=script)

    def _harvest(self, chain: str) -> None:
        """Add the packets the chain's rules dropped to `injected`, by rule comment."""
        cp = run(["nft", "-j", "list", "chain", "bridge", self.table, chain], check=False)
        if cp.returncode != 0:
            return
        for item in json.loads(cp.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            kind = rule.get("comment", chain)
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    self.injected[kind] = (self.injected.get(kind, 0)
                                           + int(expr["counter"].get("packets", 0)))


def destroy_by_tag(tag: str) -> list[str]:
    """Delete the namespaces, bridge, veths and nft table of run `tag`, if present.

    Agents inside the namespaces must be killed first (see cluster.kill_ns_processes).
    Returns the names that could not be removed.
    """
    failed = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m and m.group(1) == tag:
            if run(["ip", "netns", "del", ns], check=False).returncode != 0:
                failed.append(ns)
    for link in list_links():
        m = VETH_RE.match(link) or BRIDGE_RE.match(link)
        if m and m.group(1) == tag:
            cp = run(["ip", "link", "del", link], check=False)
            if cp.returncode != 0 and link in list_links():
                failed.append(link)
    if f"mc{tag}" in list_tables():
        if run(["nft", "delete", "table", "bridge", f"mc{tag}"], check=False).returncode:
            failed.append(f"nft table bridge mc{tag}")
    return failed


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def list_links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for ln in out.splitlines():
        parts = ln.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def list_tables() -> list[str]:
    """Names of nft tables of family bridge."""
    out = run(["nft", "list", "tables", "bridge"], check=False).stdout
    return [ln.split()[-1] for ln in out.splitlines() if ln.startswith("table bridge ")]


def tags_present() -> set[str]:
    """Run tags that have at least one leftover namespace, link or table."""
    tags = set()
    for ns in list_namespaces():
        if m := NS_RE.match(ns):
            tags.add(m.group(1))
    for link in list_links():
        if m := (VETH_RE.match(link) or BRIDGE_RE.match(link)):
            tags.add(m.group(1))
    for t in list_tables():
        if m := TABLE_RE.match(t):
            tags.add(m.group(1))
    return tags
