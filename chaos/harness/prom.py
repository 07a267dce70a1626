"""A tiny parser for the Prometheus text format (enough for mesh's /metrics)."""

from __future__ import annotations

import re

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, float]:
    """Series key -> value, where the key is `name{a="x",b="y"}` with labels sorted."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        out[key(name, dict(_LABEL.findall(labels or "")))] = v
    return out


def key(name: str, labels: dict[str, str] | None = None) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def family(series_key: str) -> str:
    return series_key.split("{", 1)[0]


def select(metrics: dict[str, float], fam: str) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if family(k) == fam}
