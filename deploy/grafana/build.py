#!/usr/bin/env python3
"""Builds the Grafana dashboards of deploy/grafana/ from the panel lists below.

    python3 deploy/grafana/build.py            # rewrite mesh-cluster.json, mesh-quorum.json
    python3 deploy/grafana/build.py --out DIR  # write them into DIR (deploy/ci diffs them)

The JSON files are committed (they are what operators import); this script is how they
are edited, so that every panel's query follows the same idioms:

- every selector carries the dashboard's `$job` and `$instance` filters;
- counters are only ever shown through `rate(...[5m])` (per second) or
  `increase(...[5m])` (rare events, "per 5 min"), summed *after* the rate;
- quantiles are `histogram_quantile(q, sum by (le) (rate(..._bucket[5m])))`, with any
  other grouping label kept next to `le`.

Only series that `meshctl agent` exports appear here (the README's metric tables;
`deploy/test-prometheus` runs every query against a real Prometheus scraping real
agents and fails on a name that does not exist).
Standard library only.
"""

import argparse
import json
import os
import sys

# The filter every selector carries. The variables' "All" value is `.+`.
F = 'job=~"$job", instance=~"$instance"'
DS = {"type": "prometheus", "uid": "${datasource}"}


def sel(metric, extra=""):
    """A selector of `metric` with the dashboard filters (and `extra` matchers)."""
    if extra:
        return "%s{%s, %s}" % (metric, extra, F)
    return "%s{%s}" % (metric, F)


def rate(metric, extra="", by=None, fn="rate"):
    """sum [by (labels)] (rate(metric{filters}[5m]))."""
    inner = "%s(%s[5m])" % (fn, sel(metric, extra))
    if by:
        return "sum by (%s) (%s)" % (", ".join(by), inner)
    return "sum(%s)" % inner


def quantile(q, metric, by=()):
    """histogram_quantile(q, sum by (le[, by]) (rate(metric_bucket{filters}[5m])))."""
    labels = ", ".join(list(by) + ["le"])
    return "histogram_quantile(%s, sum by (%s) (rate(%s[5m])))" % (
        q,
        labels,
        sel(metric + "_bucket"),
    )


def t(expr, legend=""):
    return (expr, legend)


class Board:
    """Lays panels out on Grafana's 24-column grid, row by row."""

    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def _targets(self, targets, fmt=None):
        out = []
        for i, (expr, legend) in enumerate(targets):
            target = {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend or "__auto",
                "range": True,
                "instant": False,
            }
            if fmt:
                target["format"] = fmt
            out.append(target)
        return out

    def timeseries(
        self, title, desc, targets, unit="short", w=12, h=8, stack=False, minimum=None, dashed=()
    ):
        defaults = {
            "unit": unit,
            "custom": {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10 if not stack else 40,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            },
        }
        if minimum is not None:
            defaults["min"] = minimum
        self.panels.append(
            {
                "id": self._id(),
                "type": "timeseries",
                "title": title,
                "description": desc,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": defaults,
                    "overrides": [
                        {
                            "matcher": {"id": "byName", "options": name},
                            "properties": [
                                {
                                    "id": "custom.lineStyle",
                                    "value": {"fill": "dash", "dash": [10, 10]},
                                },
                                {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                            ],
                        }
                        for name in dashed
                    ],
                },
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": self._targets(targets),
            }
        )

    def stat(self, title, desc, targets, unit="short", w=4, h=4, thresholds=None):
        steps = thresholds or [{"color": "green", "value": None}]
        self.panels.append(
            {
                "id": self._id(),
                "type": "stat",
                "title": title,
                "description": desc,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": {"mode": "absolute", "steps": steps},
                        "color": {"mode": "thresholds"},
                    },
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background",
                    "graphMode": "none",
                    "textMode": "auto",
                    "orientation": "auto",
                    "justifyMode": "auto",
                },
                "targets": self._targets(targets),
            }
        )

    def heatmap(self, title, desc, expr, unit="s", w=12, h=8):
        self.panels.append(
            {
                "id": self._id(),
                "type": "heatmap",
                "title": title,
                "description": desc,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {"defaults": {}, "overrides": []},
                "options": {
                    "calculate": False,
                    "yAxis": {"unit": unit},
                    "cellGap": 1,
                    "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                    "tooltip": {"show": True, "yHistogram": True},
                    "legend": {"show": True},
                },
                "targets": self._targets([t(expr, "{{le}}")], fmt="heatmap"),
            }
        )


def red_at(v):
    return [{"color": "green", "value": None}, {"color": "red", "value": v}]


def red_below(v):
    return [{"color": "red", "value": None}, {"color": "green", "value": v}]


def templating():
    def var(name, label, query):
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "query": query,
            "definition": query,
            "refresh": 2,
            "includeAll": True,
            "allValue": ".+",
            "multi": True,
            "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "hide": 0,
            "regex": "",
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "options": [],
                "hide": 0,
                "refresh": 1,
                "regex": "",
            },
            var("job", "Job", "label_values(mesh_membership_joined, job)"),
            var("instance", "Agent", 'label_values(mesh_membership_joined{job=~"$job"}, instance)'),
        ]
    }


def dashboard(uid, title, desc, board, link_uid, link_title):
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["mesh"],
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "type": "link",
                "title": link_title,
                "url": "/d/%s?${__url_time_range}&${__all_variables}" % link_uid,
                "icon": "dashboard",
                "targetBlank": False,
                "keepTime": True,
                "includeVars": True,
                "tags": [],
                "asDropdown": False,
                "tooltip": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "templating": templating(),
        "panels": board.panels,
        "version": 1,
    }


def cluster():
    b = Board()
    b.row("Agents and membership")
    b.stat(
        "Agents scraped up",
        "Targets of the selected job(s) that Prometheus scraped successfully (`up`).",
        [t('sum(up{%s})' % F)],
    )
    b.stat(
        "Alive members (lowest view)",
        "The smallest number of alive members any agent sees (each agent counts itself). "
        "Lower than the agent count: some agent is cut off or others are down.",
        [t("min(%s)" % sel("mesh_membership_members", 'state="alive"'))],
    )
    b.stat(
        "Suspect or down (highest view)",
        "The largest number of suspect plus down members any agent sees.",
        [t('max(sum by (instance) (%s))' % sel("mesh_membership_members", 'state=~"suspect|down"'))],
        thresholds=red_at(1),
    )
    b.stat(
        "Agents not joined",
        "Agents whose mesh_membership_joined is 0: their /readyz answers 503.",
        [t('count(%s == 0) or vector(0)' % sel("mesh_membership_joined"))],
        thresholds=red_at(1),
    )
    b.stat(
        "Worst local health",
        "Highest Lifeguard local-health level (0-3) of any agent; each level stretches "
        "its suspicion timeout by half. Above 0: that agent misses its own probes.",
        [t("max(%s)" % sel("mesh_membership_local_health"))],
        thresholds=red_at(2),
    )
    b.stat(
        "Rejoins (per 5 min)",
        "Agents declared down while alive that rejoined as a newer incarnation: false downs.",
        [t(rate("mesh_membership_rejoins_total", fn="increase"))],
        thresholds=red_at(1),
    )
    b.timeseries(
        "Members by state, per agent's view",
        "mesh_membership_members: every agent's view of the cluster (itself counted alive).",
        [t(sel("mesh_membership_members"), "{{instance}} {{state}}")],
    )
    b.timeseries(
        "Membership events",
        "mesh_membership_events_total by kind, summed over the agents that saw them (one "
        "event is seen by every agent). up: a member or a new incarnation; suspect; "
        "alive: a suspicion refuted; down; left: a graceful leave.",
        [t(rate("mesh_membership_events_total", by=["kind"]), "{{kind}}")],
        unit="ops",
    )
    b.timeseries(
        "Probe round trip (quantiles)",
        "Direct SWIM probe round trips over all selected agents.",
        [
            t(quantile(0.5, "mesh_membership_probe_rtt_seconds"), "p50"),
            t(quantile(0.9, "mesh_membership_probe_rtt_seconds"), "p90"),
            t(quantile(0.99, "mesh_membership_probe_rtt_seconds"), "p99"),
        ],
        unit="s",
    )
    b.timeseries(
        "Probe round trip p99, per agent",
        "The agent with the slowest probes is usually the overloaded one.",
        [t(quantile(0.99, "mesh_membership_probe_rtt_seconds", by=["instance"]), "{{instance}}")],
        unit="s",
    )
    b.timeseries(
        "Failed probes and rejoins",
        "Probes with no answer (direct or indirect), and rejoins after a false down.",
        [
            t(rate("mesh_membership_probes_failed_total"), "probes failed"),
            t(rate("mesh_membership_rejoins_total"), "rejoins"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Local health, per agent",
        "mesh_membership_local_health (0-3).",
        [t(sel("mesh_membership_local_health"), "{{instance}}")],
        minimum=0,
    )

    b.row("Drops (every drop has a reason)")
    b.timeseries(
        "SWIM datagrams dropped, by reason",
        "mesh_membership_datagrams_dropped_total: identity_mismatch (a packet whose SWIM "
        "name differs from its certificate's), malformed, too_large, refused.",
        [t(rate("mesh_membership_datagrams_dropped_total", by=["reason"]), "{{reason}}")],
        unit="ops",
    )
    b.timeseries(
        "Transport datagrams dropped, by reason",
        "mesh_transport_datagrams_dropped_total.",
        [t(rate("mesh_transport_datagrams_dropped_total", by=["reason"]), "{{reason}}")],
        unit="ops",
    )
    b.timeseries(
        "Stream frames dropped, by class and reason",
        "mesh_transport_frames_dropped_total.",
        [t(rate("mesh_transport_frames_dropped_total", by=["class", "reason"]), "{{class}} {{reason}}")],
        unit="ops",
    )
    b.timeseries(
        "Inputs dropped by the node, registry and runtime",
        "mesh_node_dropped_total (malformed or refused input; peer_unreachable while a "
        "peer is down), mesh_crdt_dropped_total, mesh_runtime_input_dropped_total.",
        [
            t(rate("mesh_node_dropped_total", by=["reason"]), "node {{reason}}"),
            t(rate("mesh_crdt_dropped_total", by=["reason"]), "crdt {{reason}}"),
            t(rate("mesh_runtime_input_dropped_total", by=["reason"]), "runtime {{reason}}"),
        ],
        unit="ops",
    )

    b.row("Transport")
    b.timeseries(
        "Open connections, per agent",
        "mesh_transport_connections: one QUIC connection per peer pair, opened on demand.",
        [t("sum by (instance) (%s)" % sel("mesh_transport_connections"), "{{instance}}")],
    )
    b.timeseries(
        "Handshake failures and duplicate connections",
        "mesh_transport_handshake_failures_total by kind (auth: a peer without a valid "
        "certificate of this CA), and connections closed because both sides dialed.",
        [
            t(rate("mesh_transport_handshake_failures_total", by=["kind"]), "failed: {{kind}}"),
            t(rate("mesh_transport_duplicate_connections_total"), "duplicate closed"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Traffic",
        "mesh_transport_bytes_total by direction (datagram and stream payload).",
        [t(rate("mesh_transport_bytes_total", by=["direction"]), "{{direction}}")],
        unit="Bps",
    )
    b.timeseries(
        "Datagrams and frames",
        "mesh_transport_datagrams_total by direction, mesh_transport_frames_total by class.",
        [
            t(rate("mesh_transport_datagrams_total", by=["direction"]), "datagrams {{direction}}"),
            t(rate("mesh_transport_frames_total", by=["class"]), "frames {{class}}"),
        ],
        unit="ops",
    )

    b.row("Groups, names and processes")
    b.timeseries(
        "Groups and memberships, by scope",
        "mesh_groups_groups and mesh_groups_members (with multiplicity): the largest "
        "view over the agents (all agents converge to the same value).",
        [
            t("max by (scope) (%s)" % sel("mesh_groups_groups"), "groups {{scope}}"),
            t("max by (scope) (%s)" % sel("mesh_groups_members"), "members {{scope}}"),
        ],
    )
    b.timeseries(
        "Eventual names, processes, monitors",
        "mesh_names_registered (largest view), and the sums over agents of their local "
        "processes, local memberships and monitors.",
        [
            t("max(%s)" % sel("mesh_names_registered"), "names"),
            t("sum(%s)" % sel("mesh_processes"), "processes"),
            t("sum(%s)" % sel("mesh_groups_local_members"), "local memberships"),
            t("sum(%s)" % sel("mesh_groups_monitors"), "monitors"),
        ],
    )
    b.timeseries(
        "Two-phase failure: hidden and purged",
        "Nodes declared down whose entries are hidden until they return or permdown; "
        "entries purged at permdown; name conflicts resolved.",
        [
            t("max(%s)" % sel("mesh_groups_hidden_nodes"), "hidden nodes"),
            t("max(%s)" % sel("mesh_groups_hidden_entries"), "hidden entries"),
            t(rate("mesh_groups_purged_entries_total", fn="increase"), "purged (per 5 min)"),
            t(rate("mesh_names_conflicts_total", fn="increase"), "name conflicts (per 5 min)"),
        ],
    )
    b.timeseries(
        "Send errors, refusals, deliveries",
        "mesh_send_errors_total by reason (sends refused to senders), "
        "mesh_process_refused_total by reason (refused on arrival), and deliveries.",
        [
            t(rate("mesh_send_errors_total", by=["reason"]), "error: {{reason}}"),
            t(rate("mesh_process_refused_total", by=["reason"]), "refused: {{reason}}"),
            t(rate("mesh_process_delivered_total"), "delivered"),
        ],
        unit="ops",
    )

    b.row("Replication: dissemination and anti-entropy")
    b.timeseries(
        "Dissemination sends, by channel and path",
        "mesh_dissemination_sends_total: delta items piggybacked on SWIM or batched on a stream.",
        [t(rate("mesh_dissemination_sends_total", by=["channel", "path"]), "{{channel}} {{path}}")],
        unit="ops",
    )
    b.timeseries(
        "Dissemination drops and queue",
        "mesh_dissemination_dropped_total (overflow is repaired by anti-entropy) and the "
        "largest queued bytes per channel.",
        [
            t(rate("mesh_dissemination_dropped_total", by=["channel", "reason"]), "dropped {{channel}} {{reason}}"),
            t("max by (channel) (%s)" % sel("mesh_dissemination_queued_bytes"), "queued bytes {{channel}}"),
        ],
    )
    b.timeseries(
        "Anti-entropy rounds, by result",
        "mesh_crdt_anti_entropy_rounds_total: started, served, completed, failed.",
        [t(rate("mesh_crdt_anti_entropy_rounds_total", by=["result"]), "{{result}}")],
        unit="ops",
    )
    b.timeseries(
        "Anti-entropy and delta bytes",
        "mesh_crdt_anti_entropy_bytes_total and mesh_crdt_delta_bytes_total by direction.",
        [
            t(rate("mesh_crdt_anti_entropy_bytes_total", by=["direction"]), "anti-entropy {{direction}}"),
            t(rate("mesh_crdt_delta_bytes_total", by=["direction"]), "deltas {{direction}}"),
        ],
        unit="Bps",
    )
    b.timeseries(
        "Merges and deltas",
        "mesh_crdt_merges_total by result (applied, noop) and deltas produced locally.",
        [
            t(rate("mesh_crdt_merges_total", by=["result"]), "merged {{result}}"),
            t(rate("mesh_crdt_deltas_produced_total"), "produced"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Propagation lag (quantiles)",
        "Origin wall clock to apply, for group deltas that changed an agent's state "
        "(meaningful with synchronised clocks).",
        [
            t(quantile(0.5, "mesh_crdt_propagation_lag_seconds"), "p50"),
            t(quantile(0.99, "mesh_crdt_propagation_lag_seconds"), "p99"),
        ],
        unit="s",
    )
    return dashboard(
        "mesh-cluster",
        "mesh / cluster overview",
        "Membership, transport, drops, groups and names, dissemination and anti-entropy "
        "of mesh agents (deploy/grafana/build.py).",
        b,
        "mesh-quorum",
        "mesh / quorum plane",
    )


def quorum():
    b = Board()
    quorum_size = "floor(max(%s) / 2) + 1" % sel("mesh_quorum_voters")
    b.row("Availability")
    b.stat(
        "Voters configured",
        "mesh_quorum_voters (0: no voters, claims and strong names are off).",
        [t("max(%s)" % sel("mesh_quorum_voters"))],
    )
    b.stat(
        "Quorum size",
        "Voters needed for a decision: a majority of the configured voters.",
        [t(quorum_size)],
    )
    b.stat(
        "Reachable voters (lowest view)",
        "The fewest voters any agent reaches (itself included). Below the quorum size, "
        "that agent's claims and strong-name calls answer 503 unavailable.",
        [t("min(%s)" % sel("mesh_quorum_reachable_voters"))],
        thresholds=red_below(2),
    )
    b.stat(
        "Agents without the root record",
        "Agents on which the voters' root record is not in force (mesh_quorum_formed 0).",
        [t("count(%s == 0) or vector(0)" % sel("mesh_quorum_formed"))],
        thresholds=red_at(1),
    )
    b.stat(
        "Acceptors",
        "Agents acting as acceptors (mesh_quorum_acceptor).",
        [t("sum(%s)" % sel("mesh_quorum_acceptor"))],
    )
    b.stat(
        "Claims held",
        "mesh_claims_active summed over agents.",
        [t("sum(%s)" % sel("mesh_claims_active"))],
    )
    b.timeseries(
        "Reachable voters vs quorum",
        "Every agent's reachable voters; the dashed quorum line is what a decision needs.",
        [
            t(sel("mesh_quorum_reachable_voters"), "{{instance}}"),
            t(quorum_size, "quorum"),
        ],
        minimum=0,
        dashed=["quorum"],
    )
    b.timeseries(
        "Quorum ops, by result",
        "mesh_quorum_ops_total: changes and reads the agents' proposers finished "
        "(committed, timeout); claims and strong-name calls by result.",
        [
            t(rate("mesh_quorum_ops_total", by=["result"]), "op {{result}}"),
            t(rate("mesh_claims_calls_total", by=["result"]), "call {{result}}"),
        ],
        unit="ops",
    )

    b.row("Latency and durability")
    b.timeseries(
        "Commit latency (quantiles)",
        "mesh_quorum_commit_seconds: submission to decision of local callers' changes.",
        [
            t(quantile(0.5, "mesh_quorum_commit_seconds"), "p50"),
            t(quantile(0.9, "mesh_quorum_commit_seconds"), "p90"),
            t(quantile(0.99, "mesh_quorum_commit_seconds"), "p99"),
        ],
        unit="s",
    )
    b.timeseries(
        "Commit latency p99, per agent",
        "Per proposer; an agent far from the voters pays more.",
        [t(quantile(0.99, "mesh_quorum_commit_seconds", by=["instance"]), "{{instance}}")],
        unit="s",
    )
    b.timeseries(
        "fsync and persist (quantiles)",
        "mesh_quorum_fsync_seconds (the acceptor store's fsync) and "
        "mesh_quorum_persist_seconds (write and fsync of a group commit), voters only. "
        "A voter replies only after its fsync, so this bounds every commit.",
        [
            t(quantile(0.5, "mesh_quorum_fsync_seconds"), "fsync p50"),
            t(quantile(0.99, "mesh_quorum_fsync_seconds"), "fsync p99"),
            t(quantile(0.99, "mesh_quorum_persist_seconds"), "persist p99"),
        ],
        unit="s",
    )
    b.timeseries(
        "fsync p99, per voter",
        "The slow disk is the voter whose line stands out.",
        [t(quantile(0.99, "mesh_quorum_fsync_seconds", by=["instance"]), "{{instance}}")],
        unit="s",
    )
    b.heatmap(
        "fsync distribution",
        "mesh_quorum_fsync_seconds buckets, all voters.",
        "sum by (le) (rate(%s[5m]))" % sel("mesh_quorum_fsync_seconds_bucket"),
    )
    b.timeseries(
        "Group commits",
        "Durable commits of acceptor state, and shards written per commit (group commit).",
        [
            t(rate("mesh_quorum_commits_total"), "commits/s"),
            t(
                "%s / %s"
                % (rate("mesh_quorum_commit_keys_total"), rate("mesh_quorum_commits_total")),
                "keys per commit",
            ),
        ],
    )

    b.row("Claims and strong names")
    b.timeseries(
        "Claims held, per agent",
        "mesh_claims_active: acknowledged claims, not lost or released.",
        [t(sel("mesh_claims_active"), "{{instance}}")],
        minimum=0,
    )
    b.timeseries(
        "Evictions and lost claims (per 5 min)",
        "Sessions the agents' watchers evicted (mesh_claims_evictions_total), and claims "
        "their holders lost, by reason (mesh_claims_lost_total: evicted, expired).",
        [
            t(rate("mesh_claims_evictions_total", fn="increase"), "evictions"),
            t(rate("mesh_claims_lost_total", by=["reason"], fn="increase"), "lost: {{reason}}"),
        ],
    )
    b.timeseries(
        "Stale tokens refused (per 5 min)",
        "mesh_claims_token_rejections_total by kind: release and name_version (admin "
        "API), strong_send (a send with a stale strong-name version, on arrival).",
        [t(rate("mesh_claims_token_rejections_total", by=["kind"], fn="increase"), "{{kind}}")],
    )
    b.timeseries(
        "Renews, reassignments, hold releases",
        "mesh_claims_renews_total by result, mesh_claims_assigned_total, "
        "mesh_claims_hold_releases_total by result.",
        [
            t(rate("mesh_claims_renews_total", by=["result"]), "renew {{result}}"),
            t(rate("mesh_claims_assigned_total"), "assigned"),
            t(rate("mesh_claims_hold_releases_total", by=["result"]), "hold release {{result}}"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Strong names",
        "mesh_strong_names: strong names in each agent's cache (the cached whereis).",
        [t(sel("mesh_strong_names"), "{{instance}}")],
        minimum=0,
    )
    b.timeseries(
        "Strong sends, by result",
        "mesh_strong_sends_total: sends to a strong name checked on arrival.",
        [t(rate("mesh_strong_sends_total", by=["result"]), "{{result}}")],
        unit="ops",
    )

    b.row("Protocol internals")
    b.timeseries(
        "Dropped quorum messages, by reason",
        "mesh_quorum_dropped_total (quorum messages) and mesh_claims_dropped_total "
        "(claims inputs), by reason.",
        [
            t(rate("mesh_quorum_dropped_total", by=["reason"]), "quorum {{reason}}"),
            t(rate("mesh_claims_dropped_total", by=["reason"]), "claims {{reason}}"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Proposer round trips, by phase and result",
        "mesh_quorum_round_trips_total (started - ok: failed, cut short or in flight) and "
        "failed rounds that backed off.",
        [
            t(rate("mesh_quorum_round_trips_total", by=["phase", "result"]), "{{phase}} {{result}}"),
            t(rate("mesh_quorum_failed_rounds_total"), "failed rounds"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Promise cache hit ratio",
        "Changes that skipped phase 1 thanks to the cached promise, over accept rounds started.",
        [
            t(
                "%s / %s"
                % (
                    rate("mesh_quorum_promise_cache_hits_total"),
                    rate("mesh_quorum_round_trips_total", 'phase="accept", result="started"'),
                ),
                "hit ratio",
            )
        ],
        unit="percentunit",
    )
    b.timeseries(
        "Acceptor answers and forwards",
        "mesh_quorum_acceptor_total by kind (promise, accept, conflict, wrong_epoch) and "
        "mesh_quorum_forwards_total by kind (out, in, timeout).",
        [
            t(rate("mesh_quorum_acceptor_total", by=["kind"]), "acceptor {{kind}}"),
            t(rate("mesh_quorum_forwards_total", by=["kind"]), "forward {{kind}}"),
        ],
        unit="ops",
    )
    b.timeseries(
        "Shard registers",
        "mesh_quorum_slot_bytes_max: the largest shard register value (an encoded accept "
        "or promise) each agent sent. A value over the frame limit (1 MiB) is refused "
        "(dropped quorum messages, reason oversized) and stalls its shard.",
        [t(sel("mesh_quorum_slot_bytes_max"), "{{instance}}")],
        unit="bytes",
        minimum=0,
    )
    b.timeseries(
        "Stalled shards",
        "mesh_quorum_shards_stalled, the most any agent sees: shards with a register "
        "value over the frame limit, or 3+ changes in a row without a decision. "
        "`meshctl quorum status` names them and why (alert MeshShardStalled).",
        [t("max(%s)" % sel("mesh_quorum_shards_stalled"), "stalled (max over agents)")],
        minimum=0,
    )
    return dashboard(
        "mesh-quorum",
        "mesh / quorum plane",
        "CASPaxos voters, task claims and strong names of mesh agents "
        "(deploy/grafana/build.py).",
        b,
        "mesh-cluster",
        "mesh / cluster overview",
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=here, help="directory to write into")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, board in [("mesh-cluster.json", cluster()), ("mesh-quorum.json", quorum())]:
        path = os.path.join(args.out, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(board, f, indent=2, sort_keys=False)
            f.write("\n")
        print("wrote %s" % path, file=sys.stderr)


if __name__ == "__main__":
    main()
