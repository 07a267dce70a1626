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

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::membership::{EventKind, MemberState, Rejected};

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
    mesh_transport::register_metrics();
}
