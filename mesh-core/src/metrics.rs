//! Prometheus metrics for the agent.
//!
//! Names follow `mesh_<subsystem>_<name>_<unit>`; counters end in `_total`, durations
//! are seconds, label values come from small fixed sets. Every series is registered at
//! zero when the recorder is installed, so a missing series means "not deployed",
//! never "nothing happened yet".
//!
//! The recorder is process-global (the `metrics` crate has one recorder per process):
//! one agent per process is the deployment model; in-process test clusters share it.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::membership::{EventKind, MemberState, Rejected};
use crate::node::Undeliverable;
use crate::node::{Node, SendError, DROP_REASONS};

/// Scopes published with their own label; the rest are summed under `_other`, so a
/// program that makes scopes on the fly cannot blow up the series count.
const MAX_SCOPE_LABELS: usize = 32;

/// Histogram buckets for propagation lag, in seconds.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Histogram buckets for probe round trips, in seconds.
const RTT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and registers every series at
/// zero. Returns `None` if another recorder was installed first (then `/metrics`
/// says so instead of lying with an empty page).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("mesh_membership_probe_rtt_seconds".into()),
                    RTT_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("mesh_crdt_propagation_lag_seconds".into()),
                    LAG_BUCKETS,
                )
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            register();
            Some(handle)
        })
        .clone()
}

/// Describes every mesh series and sets it to zero.
fn register() {
    describe_gauge!(
        "mesh_membership_members",
        "Members this node knows, by state (itself included as alive)."
    );
    describe_counter!(
        "mesh_membership_events_total",
        "Membership events, by kind."
    );
    describe_counter!(
        "mesh_membership_datagrams_dropped_total",
        "SWIM datagrams dropped before or by SWIM, by reason."
    );
    describe_histogram!(
        "mesh_membership_probe_rtt_seconds",
        "Round trip of direct SWIM probes."
    );
    describe_gauge!(
        "mesh_membership_joined",
        "1 when joined to a cluster (or alone with no seeds), else 0."
    );
    describe_gauge!(
        "mesh_membership_local_health",
        "Local-health level 0..=3; each level stretches the suspicion timeout by half."
    );
    describe_counter!(
        "mesh_membership_rejoins_total",
        "Times this node was declared down and rejoined as a newer incarnation."
    );
    describe_counter!(
        "mesh_membership_probes_failed_total",
        "Probes that got no answer, direct or indirect."
    );
    describe_counter!(
        "mesh_runtime_input_dropped_total",
        "Inputs the membership loop could not take, by reason."
    );
    for state in [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Down,
        MemberState::Left,
    ] {
        gauge!("mesh_membership_members", "state" => state.as_str()).set(0.0);
    }
    for kind in EventKind::ALL {
        counter!("mesh_membership_events_total", "kind" => kind.as_str()).increment(0);
    }
    for reason in Rejected::ALL {
        counter!("mesh_membership_datagrams_dropped_total", "reason" => reason.as_str())
            .increment(0);
    }
    counter!("mesh_membership_rejoins_total").increment(0);
    counter!("mesh_membership_probes_failed_total").increment(0);
    counter!("mesh_runtime_input_dropped_total", "reason" => "command_queue_full").increment(0);
    gauge!("mesh_membership_joined").set(0.0);
    gauge!("mesh_membership_local_health").set(0.0);
    register_node();
    mesh_transport::register_metrics();
}

/// The series of groups, names, dissemination, anti-entropy and sends.
fn register_node() {
    describe_gauge!("mesh_groups_groups", "Visible non-empty groups, by scope.");
    describe_gauge!(
        "mesh_groups_members",
        "Visible group memberships (with multiplicity), by scope."
    );
    describe_gauge!(
        "mesh_groups_local_members",
        "Memberships of processes on this node."
    );
    describe_gauge!(
        "mesh_groups_hidden_nodes",
        "Nodes declared down whose entries are hidden until they return or permdown."
    );
    describe_gauge!(
        "mesh_groups_hidden_entries",
        "Group entries and name claims held hidden for down nodes."
    );
    describe_counter!(
        "mesh_groups_purged_entries_total",
        "Entries and claims purged at permdown."
    );
    describe_gauge!("mesh_groups_monitors", "Live group monitors.");
    describe_counter!(
        "mesh_groups_monitors_overflowed_total",
        "Monitors ended because their reader fell too far behind."
    );
    describe_gauge!(
        "mesh_names_registered",
        "Eventual names with a visible holder."
    );
    describe_counter!(
        "mesh_names_conflicts_total",
        "Name conflicts this node resolved against one of its own processes."
    );
    describe_counter!(
        "mesh_crdt_merges_total",
        "Remote deltas merged, by whether they changed anything."
    );
    describe_counter!(
        "mesh_crdt_dropped_total",
        "Remote deltas or reports the registry refused, by reason."
    );
    describe_counter!(
        "mesh_crdt_deltas_produced_total",
        "Deltas made by local changes."
    );
    describe_counter!(
        "mesh_crdt_delta_bytes_total",
        "Bytes of delta items, by direction (out: piggybacked and batched sends)."
    );
    describe_counter!(
        "mesh_crdt_anti_entropy_rounds_total",
        "Anti-entropy rounds, by result (started, served, completed, failed)."
    );
    describe_counter!(
        "mesh_crdt_anti_entropy_bytes_total",
        "Bytes of anti-entropy digests, responses and pushes, by direction."
    );
    describe_histogram!(
        "mesh_crdt_propagation_lag_seconds",
        "Origin wall clock to apply here, for group deltas that changed this node's state."
    );
    describe_counter!(
        "mesh_dissemination_sends_total",
        "Delta item sends, by channel and path (piggyback on SWIM, batch on a stream)."
    );
    describe_counter!("mesh_dissemination_dropped_total", "Delta items dropped before sending, by channel and reason (overflow: anti-entropy repairs it).");
    describe_gauge!(
        "mesh_dissemination_queued_bytes",
        "Delta bytes waiting to be sent, by channel."
    );
    describe_gauge!("mesh_processes", "Live processes on this node.");
    describe_counter!(
        "mesh_process_delivered_total",
        "Messages put into local mailboxes."
    );
    describe_counter!(
        "mesh_process_refused_total",
        "Messages from other nodes refused on arrival, by reason (mailbox_full, no_process)."
    );
    describe_counter!(
        "mesh_send_errors_total",
        "Sends refused to local senders, by reason."
    );
    describe_counter!(
        "mesh_node_dropped_total",
        "Inputs the node dropped before any protocol saw them, by reason."
    );
    for reason in SendError::REASONS {
        counter!("mesh_send_errors_total", "reason" => reason).increment(0);
    }
    for why in [
        Undeliverable::MailboxFull,
        Undeliverable::NoProcess,
        Undeliverable::StaleVersion,
    ] {
        counter!("mesh_process_refused_total", "reason" => why.as_str()).increment(0);
    }
    for reason in DROP_REASONS {
        counter!("mesh_node_dropped_total", "reason" => *reason).increment(0);
    }
    for result in ["applied", "noop"] {
        counter!("mesh_crdt_merges_total", "result" => result).increment(0);
    }
    for reason in [
        "foreign_entry",
        "invalid_entry",
        "stale_alive",
        "self_membership",
        "demonitored_events",
        "incarnation_exhausted",
    ] {
        counter!("mesh_crdt_dropped_total", "reason" => reason).increment(0);
    }
    for result in ["started", "served", "completed", "failed"] {
        counter!("mesh_crdt_anti_entropy_rounds_total", "result" => result).increment(0);
    }
    for direction in ["in", "out"] {
        counter!("mesh_crdt_anti_entropy_bytes_total", "direction" => direction).increment(0);
        counter!("mesh_crdt_delta_bytes_total", "direction" => direction).increment(0);
    }
    for channel in ["groups", "names"] {
        for path in ["piggyback", "batch"] {
            counter!("mesh_dissemination_sends_total", "channel" => channel, "path" => path)
                .increment(0);
        }
        for reason in ["overflow", "rejected"] {
            counter!("mesh_dissemination_dropped_total", "channel" => channel, "reason" => reason)
                .increment(0);
        }
        gauge!("mesh_dissemination_queued_bytes", "channel" => channel).set(0.0);
    }
    for name in [
        "mesh_groups_local_members",
        "mesh_groups_hidden_nodes",
        "mesh_groups_hidden_entries",
        "mesh_groups_monitors",
        "mesh_names_registered",
        "mesh_processes",
    ] {
        gauge!(name).set(0.0);
    }
    for name in [
        "mesh_groups_purged_entries_total",
        "mesh_groups_monitors_overflowed_total",
        "mesh_names_conflicts_total",
        "mesh_crdt_deltas_produced_total",
        "mesh_process_delivered_total",
    ] {
        counter!(name).increment(0);
    }
}

/// Publishes the node's counters and gauges (cumulative values, set absolutely) and
/// the samples it measured since the last call.
pub fn publish_node(node: &mut Node) {
    for rtt in node.drain_probe_rtts() {
        histogram!("mesh_membership_probe_rtt_seconds").record(rtt.as_secs_f64());
    }
    for lag in node.drain_lags() {
        histogram!("mesh_crdt_propagation_lag_seconds").record(lag.as_secs_f64());
    }
    let r = node.registry().stats();
    let mut other = (0usize, 0usize);
    for (i, scope) in node.registry().scope_stats().into_iter().enumerate() {
        if i < MAX_SCOPE_LABELS {
            gauge!("mesh_groups_groups", "scope" => scope.scope.clone()).set(scope.groups as f64);
            gauge!("mesh_groups_members", "scope" => scope.scope).set(scope.members as f64);
        } else {
            other.0 += scope.groups;
            other.1 += scope.members;
        }
    }
    if other != (0, 0) {
        gauge!("mesh_groups_groups", "scope" => "_other").set(other.0 as f64);
        gauge!("mesh_groups_members", "scope" => "_other").set(other.1 as f64);
    }
    gauge!("mesh_groups_local_members").set(r.local_members as f64);
    gauge!("mesh_groups_hidden_nodes").set(r.hidden_nodes as f64);
    gauge!("mesh_groups_hidden_entries").set(r.hidden_entries as f64);
    gauge!("mesh_groups_monitors").set(r.monitors as f64);
    gauge!("mesh_names_registered").set(r.names as f64);
    counter!("mesh_groups_purged_entries_total").absolute(r.purged_entries);
    counter!("mesh_names_conflicts_total").absolute(r.name_conflicts);
    counter!("mesh_crdt_merges_total", "result" => "applied").absolute(r.merges_applied);
    counter!("mesh_crdt_merges_total", "result" => "noop").absolute(r.merges_noop);
    counter!("mesh_crdt_deltas_produced_total").absolute(r.deltas_produced);
    let d = &r.dropped;
    for (reason, n) in [
        ("foreign_entry", d.foreign_entry),
        ("invalid_entry", d.invalid_entry),
        ("stale_alive", d.stale_alive),
        ("self_membership", d.self_membership),
        ("demonitored_events", d.demonitored_events),
        ("incarnation_exhausted", d.incarnation_exhausted),
    ] {
        counter!("mesh_crdt_dropped_total", "reason" => reason).absolute(n);
    }
    let mut out_bytes = 0;
    for c in &node.dissemination().stats().channels {
        counter!("mesh_dissemination_sends_total", "channel" => c.name, "path" => "piggyback")
            .absolute(c.piggybacked_sends);
        counter!("mesh_dissemination_sends_total", "channel" => c.name, "path" => "batch")
            .absolute(c.batched_sends);
        counter!("mesh_dissemination_dropped_total", "channel" => c.name, "reason" => "overflow")
            .absolute(c.dropped_overflow);
        counter!("mesh_dissemination_dropped_total", "channel" => c.name, "reason" => "rejected")
            .absolute(c.rejected);
        gauge!("mesh_dissemination_queued_bytes", "channel" => c.name).set(c.queued_bytes as f64);
        out_bytes += c.piggybacked_bytes + c.batched_bytes;
    }
    let n = node.stats();
    counter!("mesh_crdt_delta_bytes_total", "direction" => "out").absolute(out_bytes);
    counter!("mesh_crdt_delta_bytes_total", "direction" => "in").absolute(n.delta_bytes_in);
    counter!("mesh_crdt_anti_entropy_rounds_total", "result" => "started").absolute(n.ae_started);
    counter!("mesh_crdt_anti_entropy_rounds_total", "result" => "served").absolute(n.ae_served);
    counter!("mesh_crdt_anti_entropy_rounds_total", "result" => "completed")
        .absolute(n.ae_completed);
    counter!("mesh_crdt_anti_entropy_rounds_total", "result" => "failed").absolute(n.ae_failed);
    counter!("mesh_crdt_anti_entropy_bytes_total", "direction" => "in").absolute(n.ae_bytes_in);
    counter!("mesh_crdt_anti_entropy_bytes_total", "direction" => "out").absolute(n.ae_bytes_out);
    gauge!("mesh_processes").set(node.process_count() as f64);
    counter!("mesh_process_delivered_total").absolute(n.delivered);
    counter!("mesh_groups_monitors_overflowed_total").absolute(n.monitors_overflowed);
    for (reason, v) in &n.send_errors {
        counter!("mesh_send_errors_total", "reason" => *reason).absolute(*v);
    }
    for (reason, v) in &n.refused_in {
        counter!("mesh_process_refused_total", "reason" => *reason).absolute(*v);
    }
    for (reason, v) in &n.dropped {
        counter!("mesh_node_dropped_total", "reason" => *reason).absolute(*v);
    }
}
