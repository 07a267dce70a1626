#!/usr/bin/env python3
"""Static checks of Grafana dashboard JSON files (no Prometheus needed).

    lint-dashboards.py FILE...

Fails (exit 1) unless every file is valid JSON with a uid and a title, every panel
(rows' nested panels included) has a unique id, a gridPos and at least one target with
a non-empty expr, every panel and target uses the `${datasource}` variable, every
metric selector carries the `$job` and `$instance` filters, no counter (`_total`) or
histogram bucket is used without rate()/increase(), and every `$variable` used is
defined by the dashboard. Standard library only.
"""

import json
import re
import sys

SELECTOR = re.compile(r"\b((?:mesh_[a-z0-9_]+)|up)\b(\{[^}]*\})?")
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__all_variables", "__url_time_range"}


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:
            yield inner


def counters_outside_rate(expr):
    """Names of counters or buckets used as raw values (not inside rate/increase)."""
    bad = []
    for m in SELECTOR.finditer(expr):
        name = m.group(1)
        if not (name.endswith("_total") or name.endswith("_bucket") or name.endswith("_count") or name.endswith("_sum")):
            continue
        before = expr[: m.start()]
        if not re.search(r"\b(rate|increase|irate)\(\s*$", before):
            bad.append(name)
    return bad


def lint(path):
    errors = []
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        return ["%s: not valid JSON: %s" % (path, e)]
    for key in ("uid", "title", "panels"):
        if not dash.get(key):
            errors.append("%s: no %s" % (path, key))
    defined = {v.get("name") for v in dash.get("templating", {}).get("list", [])} | BUILTIN_VARS
    if "datasource" not in defined:
        errors.append("%s: no datasource variable" % path)
    ids = set()
    n = 0
    for p in panels_of(dash):
        title = p.get("title") or "(untitled)"
        where = "%s: panel %r" % (path, title)
        if p.get("id") in ids:
            errors.append("%s: duplicate id %s" % (where, p.get("id")))
        ids.add(p.get("id"))
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
            errors.append("%s: no complete gridPos" % where)
        if p.get("type") == "row":
            continue
        n += 1
        if not p.get("title"):
            errors.append("%s: no title" % where)
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            errors.append("%s: datasource is not ${datasource}" % where)
        targets = [t for t in p.get("targets", []) if (t.get("expr") or "").strip()]
        if not targets:
            errors.append("%s: no query" % where)
        for t in targets:
            tw = "%s %s" % (where, t.get("refId"))
            expr = t["expr"]
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                errors.append("%s: target datasource is not ${datasource}" % tw)
            for var in re.findall(r"\$\{?(\w+)", expr):
                if var not in defined:
                    errors.append("%s: undefined variable $%s" % (tw, var))
            for m in SELECTOR.finditer(expr):
                sel = m.group(2) or ""
                if 'job=~"$job"' not in sel or 'instance=~"$instance"' not in sel:
                    errors.append("%s: selector %s%s lacks the $job/$instance filters" % (tw, m.group(1), sel))
            for name in counters_outside_rate(expr):
                errors.append("%s: %s used without rate()/increase()" % (tw, name))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query" and not v.get("query"):
            errors.append("%s: variable %s has no query" % (path, v.get("name")))
    if n == 0:
        errors.append("%s: no panels" % path)
    return errors


def main(paths):
    if not paths:
        print("usage: lint-dashboards.py FILE...", file=sys.stderr)
        return 2
    errors = []
    for p in paths:
        errors += lint(p)
    for e in errors:
        print("lint-dashboards: %s" % e, file=sys.stderr)
    if errors:
        return 1
    print("lint-dashboards: %d file(s) clean" % len(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
