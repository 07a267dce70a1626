"""Reports: chaos/reports/<scenario>-<timestamp>.json plus a short markdown summary."""

from __future__ import annotations

import json
from pathlib import Path

from .faults import FAULT_KINDS
NOISY = ("disrupts",)


def build(scn, opts, nodes, data, results, operations, run_dir, stamp, rev, error,
          leftovers, binary) -> dict:
    by_name = {r.name: r for r in results}

    def details(name: str) -> dict:
        return by_name[name].details if name in by_name else {}

    violations = [v for r in results for v in r.violations]
    faults = [{k: v for k, v in e.items() if k not in NOISY}
              for e in data.events if e["kind"] in FAULT_KINDS and e["kind"] != "start"]
    applied = [f for f in faults if f["kind"] != "skipped"]
    conv = details("membership-convergence")
    fd = details("false-downs")
    health = details("process-health")
    skipped = [f for f in faults if f["kind"] == "skipped"]
    if data.status != "completed":
        result = "error"
    elif violations:
        result = "fail"
    elif skipped and not [f for f in applied if f["kind"] != "heal"]:
        result = "skipped"  # every fault phase needed something this machine lacks
    else:
        result = "pass"
    return {
        "scenario": {"slug": scn.slug, "number": scn.number, "name": scn.name,
                     "title": scn.title, "file": str(scn.path.relative_to(
                         scn.path.parent.parent.parent))},
        "command": opts.command,
        "nodes": nodes,
        "duration_scale": opts.scale,
        "profile": opts.profile,
        "git": rev,
        "meshctl": binary,
        "started": stamp,
        "duration_s": data.events[-1]["t"] if data.events else 0,
        "status": data.status,
        "error": error,
        "result": result,
        "control": scn.control,
        "faults": faults,
        "skipped_phases": skipped,
        "operations": {
            **operations,
            "faults": {"attempted": len(applied), "succeeded": len(applied), "failed": 0,
                       "indeterminate": 0},
        },
        "convergence": conv.get("converges", []),
        "max_converge_s": conv.get("max_converge_s"),
        "detections": details("membership-detection").get("detections", []),
        "rejoins": details("membership-detection").get("rejoins", []),
        "false_downs": {k: fd.get(k) for k in ("false_downs", "poll_based", "metric_based",
                                               "during_loss", "settling_downs", "loss_phases",
                                               "episodes")},
        "drops": {"agents_by_reason": health.get("drops_by_reason", {}),
                  "injected_by_harness": health.get("injected_drops", {})},
        "health": {k: health.get(k) for k in ("max_rss_mb", "rss_bound_mb", "panics",
                                              "process_lives")},
        "clock_skew": details("clock-skew").get("lives", []),
        "registry": {k: details("groups-names").get(k) for k in (
            "checks", "max_registry_converge_s", "listeners", "streams_ended_by_faults",
            "absent_at_last_check", "conflicts")},
        "sends": details("sends"),
        "checkers": [{"name": r.name,
                      "status": ("pending" if any(n.startswith("pending") for n in r.notes)
                                 else "pass" if r.ok else "fail"),
                      "violations": len(r.violations), "notes": r.notes} for r in results],
        "violations": violations,
        "run_dir": str(run_dir),
        "leftovers": leftovers,
    }


def write(rep: dict, base: Path) -> tuple[Path, Path]:
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(rep, indent=1, default=str) + "\n")
    md_path.write_text(markdown(rep))
    return json_path, md_path


def save_run(data, run_dir: Path, rep: dict) -> None:
    """Everything the checkers read, so `chaos/run --recheck RUN_DIR` can re-judge a run."""
    with open(run_dir / "observations.jsonl", "w") as f:
        for ob in data.observations:
            f.write(json.dumps(ob) + "\n")
    with open(run_dir / "metric_samples.jsonl", "w") as f:
        for s in data.metric_samples:
            f.write(json.dumps(s) + "\n")
    with open(run_dir / "registry_observations.jsonl", "w") as f:
        for ob in data.registry_observations:
            f.write(json.dumps(ob) + "\n")
    rest = {
        "scenario": data.scenario, "nodes": data.nodes, "bounds": data.bounds,
        "rss_max_kb": data.rss_max_kb, "ops": data.ops, "status": data.status,
        "injected_drops": data.injected_drops, "poll_interval": data.poll_interval,
        "last_metrics": [{"node": n, "pid": p, "metrics": m}
                         for (n, p), m in data.last_metrics.items()],
        "report": {k: rep[k] for k in ("command", "nodes", "duration_scale", "profile",
                                       "git", "meshctl", "started", "error", "leftovers",
                                       "operations")},
    }
    (run_dir / "rundata.json").write_text(json.dumps(rest) + "\n")


def load_run(run_dir: Path):
    """(RunData, saved report fields) from a run dir written by save_run."""
    from .rundata import RunData

    def jsonl(name):
        path = run_dir / name
        if not path.exists() and name == "registry_observations.jsonl":
            return []  # recorded before groups and names landed
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]

    rest = json.loads((run_dir / "rundata.json").read_text())
    data = RunData(
        scenario=rest["scenario"], nodes=rest["nodes"], bounds=rest["bounds"],
        events=jsonl("events.jsonl"),
        observations=sorted(jsonl("observations.jsonl"), key=lambda o: o["t_done"]),
        metric_samples=jsonl("metric_samples.jsonl"),
        last_metrics={(x["node"], x["pid"]): x["metrics"] for x in rest["last_metrics"]},
        rss_max_kb=rest["rss_max_kb"], ops=rest["ops"],
        injected_drops=rest["injected_drops"], log_dir=run_dir / "logs",
        poll_interval=rest["poll_interval"], status=rest["status"],
        registry_observations=sorted(jsonl("registry_observations.jsonl"),
                                     key=lambda o: o["t_done"]))
    return data, rest["report"]


def _fault_line(f: dict) -> str:
    rest = {k: v for k, v in f.items() if k not in ("t", "kind", "pids", "skews")}
    detail = ", ".join(f"{k}={_short(v)}" for k, v in rest.items())
    return f"- t={f['t']:.1f}s **{f['kind']}** {detail}".rstrip()


def _short(v) -> str:
    if isinstance(v, list):
        return "[" + " | ".join(_short(x) for x in v) + "]" if any(
            isinstance(x, list) for x in v) else ",".join(map(str, v))
    return str(v)


def markdown(rep: dict) -> str:
    s = rep["scenario"]
    fd = rep["false_downs"]
    lines = [
        f"# chaos {s['slug']}: {rep['result'].upper()}",
        "",
        f"{s['title']}. {rep['nodes']} nodes, duration scale {rep['duration_scale']}, "
        f"git {rep['git']}, meshctl {rep['meshctl'].get('source', '?')} "
        f"(sha256 {rep['meshctl'].get('sha256', '?')}, built {rep['meshctl'].get('built', '?')}), "
        f"{rep['duration_s']:.0f} s.",
        f"Command: `{rep['command']}`",
        "",
    ]
    if rep["control"]:
        lines += [f"Negative control: must fail with `{rep['control']['violation']}` from "
                  f"`{rep['control']['checker']}`.", ""]
    if rep["error"]:
        lines += [f"**Run error:** {rep['error']}", ""]
    lines += ["## Faults applied", ""]
    lines += [_fault_line(f) for f in rep["faults"] if f["kind"] != "skipped"] or ["- none"]
    for f in rep["skipped_phases"]:
        lines.append(f"- t={f['t']:.1f}s skipped {f.get('fault')}: {f.get('reason')}")
    lines += ["", "## Operations", "", "| workload | attempted | succeeded | failed | "
              "indeterminate |", "|---|---|---|---|---|"]
    for name, ops in rep["operations"].items():
        lines.append(f"| {name} | {ops.get('attempted', 0)} | {ops.get('succeeded', 0)} | "
                     f"{ops.get('failed', 0)} | {ops.get('indeterminate', 0)} |")
    lines += ["", "## Convergence", "", "| after | at | took | bound |", "|---|---|---|---|"]
    for c in rep["convergence"]:
        took = f"{c['took_s']:.2f} s" if c["took_s"] is not None else "**not converged**"
        lines.append(f"| {c['after']} | {c['since']:.1f} s | {took} | {c['bound_s']:.0f} s |")
    for d in rep["detections"]:
        took = f"{d['took_s']:.2f} s" if d["took_s"] is not None else "**not detected**"
        lines.append(f"| down of {d['node']} seen by all | | {took} | {d['bound_s']:.0f} s |")
    lines += ["", f"False Downs: **{fd['false_downs'] or 0}** (poll-based {fd['poll_based']}, "
              f"metric-based {fd['metric_based']}, during loss {fd['during_loss']}). "
              f"Downs of healthy nodes while settling after a heal (a cut-off node's "
              f"verdicts arriving; expected): {fd.get('settling_downs', 0)}.", ""]
    lines += ["## Drops", ""]
    agents = rep["drops"]["agents_by_reason"]
    lines += [f"- agents: `{k}` {v:.0f}" for k, v in agents.items()] or \
        ["- agents: none counted"]
    inj = rep["drops"]["injected_by_harness"]
    lines += [f"- injected by the harness (nft/tc counters): " + (", ".join(
        f"{k} {v}" for k, v in inj.items()) or "none")]
    rss = rep["health"]["max_rss_mb"] or {}
    if rss:
        lines += [f"- max VmRSS: {max(rss.values()):.0f} MB "
                  f"(bound {rep['health']['rss_bound_mb']:.0f} MB)"]
    if rep["clock_skew"]:
        lines += ["", "## Clock rates", ""] + [
            f"- {x['node']} pid {x['pid']}: configured x{x['configured']}, measured "
            f"x{x['measured']} over {x['span_s']} s" for x in rep["clock_skew"]]
    reg = rep.get("registry") or {}
    if reg.get("checks"):
        lines += ["", "## Groups and names", "", "| registry check after | at | took | "
                  "bound | absent listeners by reason |", "|---|---|---|---|---|"]
        for c in reg["checks"]:
            took = f"{c['took_s']:.2f} s" if c["took_s"] is not None else \
                "**not converged**"
            absent = ", ".join(f"{k} {v}" for k, v in sorted(c["absent"].items())) or "-"
            lines.append(f"| {c['after']} | {c['since']:.1f} s | {took} | "
                         f"{c['bound_s']:.0f} s | {absent} |")
        lines += ["", f"Listeners: {reg.get('listeners')}; streams ended by faults: "
                  f"{reg.get('streams_ended_by_faults') or 'none'}."]
        for cf in reg.get("conflicts") or []:
            claims = ", ".join(f"{c['lid']} hlc {c['hlc']} notices {len(c['notices'])}"
                               for c in cf["claims"])
            lines.append(f"- conflict {cf['name']}: winner {cf.get('winner_lid') or '?'} "
                         f"({cf.get('winner') or 'order not checked'}; {claims})")
    snd = rep.get("sends") or {}
    if snd.get("sends"):
        lines += ["", "## Sends", "", f"{snd['sends']} sends, {snd['reads']} reads; "
                  f"{snd['decided_exactly']} sends checked exactly (delivered = read), "
                  f"{snd['not_decidable']} not decidable (a receiver closing or "
                  f"disrupted), {snd['indeterminate']} indeterminate; duplicates "
                  f"{snd['duplicates']}, misdelivered {snd['misdelivered']}, reordered "
                  f"{snd['reordered']}. Refusals seen: {snd.get('refusals_seen') or 'none'}."]
    lines += ["", "## Checkers", ""]
    for c in rep["checkers"]:
        notes = [n.removeprefix("pending: ") for n in c["notes"]]
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"- {c['name']}: {c['status']}{note}")
    lines += ["", f"## Violations: {len(rep['violations'])}", ""]
    lines += [f"- `{v['checker']}/{v['kind']}`: {v['message']}" for v in rep["violations"]]
    lines += ["", f"Run dir (logs, events, observations): `{rep['run_dir']}`", ""]
    return "\n".join(lines)


def console_summary(rep: dict, md_path: Path) -> str:
    fd = rep["false_downs"]["false_downs"]
    conv = rep["max_converge_s"]
    lines = [f"== {rep['scenario']['slug']}: {rep['result'].upper()}  "
             f"violations={len(rep['violations'])} false_downs={fd} "
             f"max_converge={conv if conv is not None else '-'}s  report {md_path}"]
    for v in rep["violations"][:10]:
        lines.append(f"   violation {v['checker']}/{v['kind']}: {v['message'][:300]}")
    for f in rep["skipped_phases"]:
        lines.append(f"   skipped {f.get('fault')}: {f.get('reason')}")
    return "\n".join(lines)
