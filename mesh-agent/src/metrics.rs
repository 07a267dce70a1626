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

use mesh_core::claims::{HoldOutcome, ShardId};
use mesh_core::membership::{EventKind, MemberState, Rejected};
use mesh_core::node::claims_plane::{QuorumDrop, QuorumPlane};
use mesh_core::node::Undeliverable;
use mesh_core::node::{DropReason, Node, SendError};

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

/// Histogram buckets for quorum commits (submission to decision), in seconds.
const COMMIT_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Histogram buckets for the acceptor store's fsyncs and whole commits, in seconds.
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// Kinds of `mesh_claims_token_rejections_total`: a release with a token that is not
/// the task's current one, a name release or transfer with a stale version (both
/// counted by the admin API, see `admin/claims.rs`), and a send to a strong name that
/// its receiving node refused for a stale version.
pub const TOKEN_REJECTION_KINDS: [&str; 3] = ["release", "name_version", "strong_send"];

/// The `stream` label values of `mesh_admin_monitor_streams`.
pub const MONITOR_STREAMS: [&str; 3] = ["members", "groups", "claims"];

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
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("mesh_quorum_commit_seconds".into()),
                    COMMIT_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("mesh_quorum_fsync_seconds".into()),
                    FSYNC_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("mesh_quorum_persist_seconds".into()),
                    FSYNC_BUCKETS,
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
    describe_counter!(
        "mesh_runtime_unclaimed_replies_total",
        "Replies whose caller had gone (a closed HTTP request, a cancelled call) and \
         whose process or monitor the agent therefore ended at once."
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
    counter!("mesh_runtime_unclaimed_replies_total").increment(0);
    describe_gauge!("mesh_admin_connections", "Open admin API connections.");
    describe_counter!(
        "mesh_admin_connections_refused_total",
        "Admin connections closed by their bounds: over the connection limit (limit), or \
         sent nothing for the idle limit (idle_timeout)."
    );
    gauge!("mesh_admin_connections").increment(0.0);
    for reason in ["limit", "idle_timeout"] {
        counter!("mesh_admin_connections_refused_total", "reason" => reason).increment(0);
    }
    describe_gauge!(
        "mesh_admin_monitor_streams",
        "Open admin monitor streams (GET /v1/monitor/...), by stream."
    );
    for stream in MONITOR_STREAMS {
        gauge!("mesh_admin_monitor_streams", "stream" => stream).set(0.0);
    }
    gauge!("mesh_membership_joined").set(0.0);
    gauge!("mesh_membership_local_health").set(0.0);
    describe_counter!(
        "mesh_seed_resolves_total",
        "DNS seed lookups started (while alone, with backoff)."
    );
    describe_counter!(
        "mesh_seed_resolve_failures_total",
        "DNS seed lookups that gave no address, by reason (nxdomain, no_records, timeout, error)."
    );
    counter!("mesh_seed_resolves_total").increment(0);
    for reason in mesh_core::discovery::ResolveFailure::ALL {
        counter!("mesh_seed_resolve_failures_total", "reason" => reason.as_str()).increment(0);
    }
    register_node();
    register_quorum();
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
    describe_gauge!("mesh_monitors", "Open group monitors on this node.");
    describe_counter!(
        "mesh_limit_refusals_total",
        "Spawns and monitors refused because the node held its max_processes or \
         max_monitors, by resource."
    );
    for resource in mesh_core::node::Resource::ALL {
        counter!("mesh_limit_refusals_total", "resource" => resource.as_str()).absolute(0);
    }
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
    for reason in DropReason::ALL {
        counter!("mesh_node_dropped_total", "reason" => reason.as_str()).increment(0);
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

/// The series of the quorum plane, task claims and strong names.
fn register_quorum() {
    describe_counter!(
        "mesh_quorum_round_trips_total",
        "Proposer rounds by phase (prepare, accept) and result: started, or ok (a quorum \
         promised / accepted). Started minus ok is failed (conflict, round-trip timeout), \
         cut short by the op timeout, or in flight."
    );
    describe_counter!(
        "mesh_quorum_failed_rounds_total",
        "Proposer rounds that failed (conflict or round-trip timeout, either phase) and \
         backed off."
    );
    describe_counter!(
        "mesh_quorum_promise_cache_hits_total",
        "Changes that skipped phase 1 thanks to the cached promise (one round trip)."
    );
    describe_counter!(
        "mesh_quorum_ops_total",
        "Changes and reads this node's proposer finished, by result (committed, timeout)."
    );
    describe_counter!(
        "mesh_quorum_forwards_total",
        "Changes forwarded to a shard's preferred proposer (out), proposed here for \
         another node (in), and forwards that timed out here (timeout; retried locally)."
    );
    describe_histogram!(
        "mesh_quorum_commit_seconds",
        "Submission to decision of the changes this node's proposer ran for local callers."
    );
    describe_histogram!(
        "mesh_quorum_fsync_seconds",
        "fsync of the acceptor store, per commit (voters only)."
    );
    describe_histogram!(
        "mesh_quorum_persist_seconds",
        "Whole durable commit of the acceptor store (write and fsync), per batch."
    );
    describe_counter!(
        "mesh_quorum_commits_total",
        "Durable group commits of acceptor state (voters only)."
    );
    describe_counter!(
        "mesh_quorum_commit_keys_total",
        "Acceptor states (shards) written by those commits."
    );
    describe_counter!(
        "mesh_quorum_dropped_total",
        "Quorum messages dropped, by reason."
    );
    describe_counter!(
        "mesh_quorum_acceptor_total",
        "Acceptor answers by kind: promise, accept, conflict (a higher promise), \
         wrong_epoch."
    );
    describe_gauge!(
        "mesh_quorum_voters",
        "Configured voters (0: claims are off)."
    );
    describe_gauge!(
        "mesh_quorum_slot_bytes_max",
        "Largest shard register value (encoded accept or promise, bytes) this node sent."
    );
    describe_gauge!(
        "mesh_quorum_shards_stalled",
        "Shards this node sees stalled: a register value over the frame limit, or 3+ \
         changes in a row without a decision (meshctl quorum status names them)."
    );
    describe_gauge!(
        "mesh_quorum_reachable_voters",
        "Voters this node reaches (itself included); below a majority, calls are Unavailable."
    );
    describe_gauge!(
        "mesh_quorum_formed",
        "1 once the voters' root record is in force on this node."
    );
    describe_gauge!(
        "mesh_quorum_acceptor",
        "1 when this node acts as an acceptor."
    );
    describe_gauge!(
        "mesh_claims_active",
        "Task claims this node holds (acknowledged, not lost or released)."
    );
    describe_counter!(
        "mesh_claims_evictions_total",
        "Expired sessions this node's watcher evicted (with their claims)."
    );
    describe_counter!(
        "mesh_claims_lost_total",
        "Claims this node lost, by reason (evicted, expired)."
    );
    describe_counter!(
        "mesh_claims_calls_total",
        "Claims and strong-name calls, by result: accepted, or refused at once \
         (unavailable, overloaded, bad_input)."
    );
    describe_counter!(
        "mesh_claims_renews_total",
        "Session renews, by result (submitted, timed_out)."
    );
    describe_counter!(
        "mesh_claims_assigned_total",
        "Claims adopted from a result (reassigned here, or a timed-out claim that took effect)."
    );
    describe_counter!(
        "mesh_claims_token_rejections_total",
        "Stale fencing tokens refused, by kind (release, name_version, strong_send)."
    );
    describe_counter!(
        "mesh_claims_dropped_total",
        "Claims inputs dropped, by reason: old_session (a result for a forgotten session), \
         stale_observation (watcher), unknown_completion (a duplicate or another life's \
         completion)."
    );
    describe_counter!(
        "mesh_claims_watcher_ignored_total",
        "Shard tables the watcher was shown for shards it does not watch (normal: every \
         result of a change this node proposed or forwarded; not a drop)."
    );
    describe_counter!(
        "mesh_claims_hold_releases_total",
        "Releases of claims whose hold stream ended (admin API), by result: released, \
         gone (lost or released already), failed (given up after two minutes of retries)."
    );
    describe_gauge!(
        "mesh_strong_names",
        "Strong names in this node's cache (the cached whereis)."
    );
    describe_counter!(
        "mesh_strong_sends_total",
        "Sends to a strong name checked on arrival here, by result (accepted, refused)."
    );
    for phase in ["prepare", "accept"] {
        for result in ["started", "ok"] {
            counter!("mesh_quorum_round_trips_total", "phase" => phase, "result" => result)
                .increment(0);
        }
    }
    for result in ["committed", "timeout"] {
        counter!("mesh_quorum_ops_total", "result" => result).increment(0);
    }
    for kind in ["out", "in", "timeout"] {
        counter!("mesh_quorum_forwards_total", "kind" => kind).increment(0);
    }
    for reason in QuorumDrop::ALL {
        counter!("mesh_quorum_dropped_total", "reason" => reason.as_str()).increment(0);
    }
    for kind in ["promise", "accept", "conflict", "wrong_epoch"] {
        counter!("mesh_quorum_acceptor_total", "kind" => kind).increment(0);
    }
    for reason in ["evicted", "expired"] {
        counter!("mesh_claims_lost_total", "reason" => reason).increment(0);
    }
    for result in ["accepted", "unavailable", "overloaded", "bad_input"] {
        counter!("mesh_claims_calls_total", "result" => result).increment(0);
    }
    for result in ["submitted", "timed_out"] {
        counter!("mesh_claims_renews_total", "result" => result).increment(0);
    }
    for kind in TOKEN_REJECTION_KINDS {
        counter!("mesh_claims_token_rejections_total", "kind" => kind).increment(0);
    }
    for reason in CLAIMS_DROP_REASONS {
        counter!("mesh_claims_dropped_total", "reason" => reason).increment(0);
    }
    counter!("mesh_claims_watcher_ignored_total").increment(0);
    for result in ["accepted", "refused"] {
        counter!("mesh_strong_sends_total", "result" => result).increment(0);
    }
    for result in HoldOutcome::ALL {
        counter!("mesh_claims_hold_releases_total", "result" => result.as_str()).increment(0);
    }
    for name in [
        "mesh_quorum_failed_rounds_total",
        "mesh_quorum_promise_cache_hits_total",
        "mesh_quorum_commits_total",
        "mesh_quorum_commit_keys_total",
        "mesh_claims_evictions_total",
        "mesh_claims_assigned_total",
    ] {
        counter!(name).increment(0);
    }
    for name in [
        "mesh_quorum_voters",
        "mesh_quorum_slot_bytes_max",
        "mesh_quorum_shards_stalled",
        "mesh_quorum_reachable_voters",
        "mesh_quorum_formed",
        "mesh_quorum_acceptor",
        "mesh_claims_active",
        "mesh_strong_names",
    ] {
        gauge!(name).set(0.0);
    }
    for name in [
        "mesh_quorum_commit_seconds",
        "mesh_quorum_fsync_seconds",
        "mesh_quorum_persist_seconds",
    ] {
        // Touching a histogram registers it, so it renders with zero counts.
        let _ = histogram!(name);
    }
}

/// Reasons of `mesh_claims_dropped_total`.
const CLAIMS_DROP_REASONS: [&str; 3] = ["old_session", "stale_observation", "unknown_completion"];

/// The quorum plane's figures as Prometheus values: counters are cumulative (set with
/// `absolute`), gauges are current. One plain struct, so that what is published is
/// computed (and unit-tested) apart from the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct QuorumFigures {
    prepares: u64,
    prepares_ok: u64,
    accepts: u64,
    accepts_ok: u64,
    failed_rounds: u64,
    cache_hits: u64,
    committed: u64,
    timeouts: u64,
    forwarded_out: u64,
    forwarded_in: u64,
    forward_timeouts: u64,
    commits: u64,
    commit_keys: u64,
    acceptor: [u64; 4],
    voters: usize,
    reachable: usize,
    formed: bool,
    is_acceptor: bool,
    active: usize,
    evictions: u64,
    lost_evicted: u64,
    lost_expired: u64,
    calls: [u64; 4],
    renews: u64,
    renews_timed_out: u64,
    assigned: u64,
    dropped: [u64; 3],
    watcher_ignored: u64,
    strong_names: usize,
    sends_accepted: u64,
    sends_refused: u64,
    slot_bytes_max: u64,
    shards_stalled: usize,
    hold_releases: Vec<(&'static str, u64)>,
}

impl QuorumFigures {
    fn of(q: &QuorumPlane) -> Self {
        let mut f = Self::default();
        if let Some(p) = q.proposer_stats() {
            f.prepares = p.prepares;
            // Every accept round that did not start from the cache followed a prepare
            // that a quorum promised; every commit is an accept round a quorum accepted.
            f.prepares_ok = p.accepts.saturating_sub(p.cache_hits);
            f.accepts = p.accepts;
            f.accepts_ok = p.committed;
            f.failed_rounds = p.failed_rounds;
            f.cache_hits = p.cache_hits;
        }
        let s = q.stats();
        f.committed = s.committed;
        f.timeouts = s.timeouts;
        f.forwarded_out = s.forwarded_out;
        f.forwarded_in = s.forwarded_in;
        f.forward_timeouts = s.forward_timeouts;
        f.commits = s.commits;
        f.commit_keys = s.commit_keys;
        if let Some(a) = q.acceptor_stats() {
            f.acceptor = [a.promises, a.accepts, a.conflicts, a.wrong_epoch];
        }
        f.voters = q.config().voters.names().len();
        f.reachable = q.reachable_voters();
        f.formed = q.root().is_some();
        f.is_acceptor = q.is_acceptor();
        f.active = q.holders().map(|h| h.held()).sum();
        {
            let hs = q.holder_stats();
            f.lost_evicted += hs.lost_evicted;
            f.lost_expired += hs.lost_expired;
            f.calls[0] += hs.calls;
            f.calls[1] += hs.refused_unavailable;
            f.calls[2] += hs.refused_overloaded;
            f.calls[3] += hs.refused_bad_input;
            f.renews += hs.renews;
            f.renews_timed_out += hs.renews_timed_out;
            f.assigned += hs.assigned;
            f.dropped[0] += hs.dropped_old_session;
            f.dropped[2] += hs.submit.dropped_unknown;
        }
        let w = q.watcher().stats();
        f.evictions = w.evicted;
        f.dropped[1] = w.dropped_stale;
        f.watcher_ignored = w.ignored_unwatched;
        f.dropped[2] += w.submit.dropped_unknown;
        let cache = q.name_cache();
        f.strong_names = (0..q.config().shards)
            .filter_map(|s| cache.snapshot(ShardId(s)))
            .map(|(_, names)| names.len())
            .sum();
        f.slot_bytes_max = q
            .shard_health()
            .values()
            .map(|h| h.slot_bytes)
            .max()
            .unwrap_or(0);
        f.shards_stalled = q
            .shard_health()
            .values()
            .filter(|h| h.stalled().is_some())
            .count();
        f.hold_releases = HoldOutcome::ALL
            .iter()
            .map(|o| {
                let label = o.as_str();
                (label, s.hold_releases.get(label).copied().unwrap_or(0))
            })
            .collect();
        f.sends_accepted = cache.stats().sends_accepted;
        f.sends_refused = cache.stats().sends_refused;
        f
    }

    fn publish(&self) {
        for (phase, result, v) in [
            ("prepare", "started", self.prepares),
            ("prepare", "ok", self.prepares_ok),
            ("accept", "started", self.accepts),
            ("accept", "ok", self.accepts_ok),
        ] {
            counter!("mesh_quorum_round_trips_total", "phase" => phase, "result" => result)
                .absolute(v);
        }
        counter!("mesh_quorum_failed_rounds_total").absolute(self.failed_rounds);
        counter!("mesh_quorum_promise_cache_hits_total").absolute(self.cache_hits);
        counter!("mesh_quorum_ops_total", "result" => "committed").absolute(self.committed);
        counter!("mesh_quorum_ops_total", "result" => "timeout").absolute(self.timeouts);
        for (kind, v) in [
            ("out", self.forwarded_out),
            ("in", self.forwarded_in),
            ("timeout", self.forward_timeouts),
        ] {
            counter!("mesh_quorum_forwards_total", "kind" => kind).absolute(v);
        }
        counter!("mesh_quorum_commits_total").absolute(self.commits);
        counter!("mesh_quorum_commit_keys_total").absolute(self.commit_keys);
        for (kind, v) in ["promise", "accept", "conflict", "wrong_epoch"]
            .into_iter()
            .zip(self.acceptor)
        {
            counter!("mesh_quorum_acceptor_total", "kind" => kind).absolute(v);
        }
        gauge!("mesh_quorum_voters").set(self.voters as f64);
        gauge!("mesh_quorum_slot_bytes_max").set(self.slot_bytes_max as f64);
        gauge!("mesh_quorum_shards_stalled").set(self.shards_stalled as f64);
        gauge!("mesh_quorum_reachable_voters").set(self.reachable as f64);
        gauge!("mesh_quorum_formed").set(if self.formed { 1.0 } else { 0.0 });
        gauge!("mesh_quorum_acceptor").set(if self.is_acceptor { 1.0 } else { 0.0 });
        gauge!("mesh_claims_active").set(self.active as f64);
        counter!("mesh_claims_evictions_total").absolute(self.evictions);
        counter!("mesh_claims_lost_total", "reason" => "evicted").absolute(self.lost_evicted);
        counter!("mesh_claims_lost_total", "reason" => "expired").absolute(self.lost_expired);
        for (result, v) in ["accepted", "unavailable", "overloaded", "bad_input"]
            .into_iter()
            .zip(self.calls)
        {
            counter!("mesh_claims_calls_total", "result" => result).absolute(v);
        }
        counter!("mesh_claims_renews_total", "result" => "submitted").absolute(self.renews);
        counter!("mesh_claims_renews_total", "result" => "timed_out")
            .absolute(self.renews_timed_out);
        counter!("mesh_claims_assigned_total").absolute(self.assigned);
        for (reason, v) in CLAIMS_DROP_REASONS.into_iter().zip(self.dropped) {
            counter!("mesh_claims_dropped_total", "reason" => reason).absolute(v);
        }
        counter!("mesh_claims_watcher_ignored_total").absolute(self.watcher_ignored);
        counter!("mesh_claims_token_rejections_total", "kind" => "strong_send")
            .absolute(self.sends_refused);
        gauge!("mesh_strong_names").set(self.strong_names as f64);
        counter!("mesh_strong_sends_total", "result" => "accepted").absolute(self.sends_accepted);
        counter!("mesh_strong_sends_total", "result" => "refused").absolute(self.sends_refused);
        for (result, v) in &self.hold_releases {
            counter!("mesh_claims_hold_releases_total", "result" => *result).absolute(*v);
        }
    }
}

/// Publishes the quorum plane's figures and the commit latencies measured since the
/// last call. Nothing (the series stay at zero) when no voters are configured.
fn publish_quorum(node: &mut Node) {
    for d in node.drain_commit_samples() {
        histogram!("mesh_quorum_commit_seconds").record(d.as_secs_f64());
    }
    if let Some(q) = node.quorum() {
        QuorumFigures::of(q).publish();
    }
}

/// Publishes the node's counters and gauges (cumulative values, set absolutely) and
/// the samples it measured since the last call.
pub fn publish_node(node: &mut Node) {
    publish_quorum(node);
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
    gauge!("mesh_monitors").set(node.monitor_count() as f64);
    for (resource, refused) in &n.over_limit {
        counter!("mesh_limit_refusals_total", "resource" => *resource).absolute(*refused);
    }
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use mesh_core::node::claims_plane::{QuorumConfig, QuorumPlane};
    use mesh_core::quorum::VoterNames;

    fn plane(name: &str) -> QuorumPlane {
        let voters = VoterNames::new(["n1", "n2", "n3"]).expect("three voters");
        QuorumPlane::new(name, 7, QuorumConfig::new(voters), None, 1, Instant::now())
            .expect("a valid plane")
    }

    #[test]
    fn the_required_quorum_series_are_rendered_at_zero_after_install() {
        let handle = install().expect("the first recorder of this test process");
        let text = handle.render();
        for series in [
            "mesh_quorum_round_trips_total{phase=\"prepare\",result=\"started\"} 0",
            "mesh_quorum_round_trips_total{phase=\"accept\",result=\"ok\"} 0",
            "mesh_quorum_commit_seconds_count 0",
            "mesh_quorum_fsync_seconds_count 0",
            "mesh_claims_active 0",
            "mesh_claims_evictions_total 0",
            "mesh_claims_token_rejections_total{kind=\"release\"} 0",
            "mesh_claims_token_rejections_total{kind=\"strong_send\"} 0",
            "mesh_strong_names 0",
            "mesh_quorum_dropped_total{reason=\"malformed\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == series),
                "missing {series:?} in:\n{text}"
            );
        }
        assert!(
            text.contains("mesh_quorum_fsync_seconds_bucket{le=\"0.001\"} 0"),
            "the fsync histogram has its buckets (not a summary)"
        );
    }

    #[test]
    fn a_plane_without_a_root_counts_a_refused_call_as_unavailable_and_nothing_else() {
        let mut q = plane("n9");
        let before = QuorumFigures::of(&q);
        assert_eq!(
            (
                before.voters,
                before.reachable,
                before.formed,
                before.is_acceptor
            ),
            (3, 0, false, false),
            "a non-voter without peers reaches no voter, and is none"
        );
        let refused = q.call(Instant::now(), None, |h, now| h.claim(now, "job-1"));
        assert!(refused.is_err(), "no root in force: {refused:?}");
        let after = QuorumFigures::of(&q);
        assert_eq!(after.calls, [0, 1, 0, 0], "one call refused as unavailable");
        assert_eq!(
            QuorumFigures {
                calls: before.calls,
                ..after
            },
            before,
            "nothing else moved"
        );
    }
}
