#!/usr/bin/env python3
"""Checks a systemd unit's SystemCallFilter= against the system calls a real agent made.

    check-syscalls.py UNIT STRACE_SUMMARY

STRACE_SUMMARY is the output of `strace -f -c -o FILE meshctl agent ...` (the
real-Prometheus test writes one for agent n1 with --strace). The unit's
SystemCallFilter= lines are applied as systemd does (the first list allows, a `~`
list denies, later lines add to the allow list or to the deny list), with the groups
expanded by `systemd-analyze syscall-filter`. Fails (exit 1) if any call the agent made
would be refused: under the unit, that call would fail with SystemCallErrorNumber.
Standard library only.
"""

import re
import subprocess
import sys


def groups():
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True
    ).stdout.decode()
    table, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            table[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            table[current].append(line.strip())
    return table


def expand(names, table, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if n.startswith("@"):
            if n in seen:
                continue
            seen.add(n)
            if n not in table:
                raise SystemExit("check-syscalls: unknown group %s" % n)
            out |= expand(table[n], table, seen)
        else:
            out.add(n)
    return out


def allowed_by(unit_text, table):
    allow, deny = None, set()
    for m in re.finditer(r"^SystemCallFilter=(.*)$", unit_text, re.M):
        value = m.group(1).strip()
        if value.startswith("~"):
            deny |= expand(value[1:].split(), table)
        else:
            names = expand(value.split(), table)
            allow = names if allow is None else allow | names
    if allow is None:
        raise SystemExit("check-syscalls: the unit has no allow-list SystemCallFilter=")
    return allow - deny


def made(summary_text):
    calls = set()
    for line in summary_text.splitlines():
        parts = line.split()
        # "% time seconds usecs/call calls [errors] syscall"
        if len(parts) >= 5 and re.fullmatch(r"[0-9.]+", parts[0]) and parts[-1] != "total":
            calls.add(parts[-1])
    return calls


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    unit = open(argv[1], encoding="utf-8").read()
    calls = made(open(argv[2], encoding="utf-8").read())
    if len(calls) < 20:
        print("check-syscalls: only %d calls in %s: not an agent's run" % (len(calls), argv[2]), file=sys.stderr)
        return 1
    allowed = allowed_by(unit, groups())
    refused = sorted(calls - allowed)
    if refused:
        print("check-syscalls: the unit's filter refuses calls the agent made: %s" % " ".join(refused), file=sys.stderr)
        return 1
    print("check-syscalls: all %d system calls the agent made are allowed by %s" % (len(calls), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
