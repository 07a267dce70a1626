//! The registry's data: replicated elements, events, snapshots, outputs, configuration
//! and counters.

use std::time::Duration;

use mesh_crdt::Delta;
use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::pid::Pid;

/// One occurrence of a process in a group: the element of the groups replica.
///
/// Only the node hosting `pid` adds or removes it (the replica's partition for origin
/// `pid.node`). A process joined twice holds two dots of the same element. All dots of
/// one member (`scope`, `group`, `pid`) carry the same `meta` on the owner: a metadata
/// change re-mints every dot with the new value (see the module docs, "Metadata").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupEntry {
    /// The namespace the group lives in.
    #[serde(rename = "s")]
    pub scope: String,
    /// The group.
    #[serde(rename = "g")]
    pub group: String,
    /// The member process, hosted on the origin that minted the entry.
    #[serde(rename = "p")]
    pub pid: Pid,
    /// Optional member metadata, written only by the owner.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// How a conflict over an eventual name is settled. The policy of the **winning** claim
/// decides (the registration that holds the name says how latecomers are treated).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum ConflictPolicy {
    /// The losing claim is retracted on its node and its process receives
    /// [`RegistryOutput::NameConflict`]. The default.
    #[default]
    #[serde(rename = "n")]
    Notify,
    /// As `Notify`, and the node is asked to kill the losing process
    /// ([`RegistryOutput::Kill`]).
    #[serde(rename = "k")]
    Kill,
    /// Both claims are retracted, each on its own node, and both processes are notified
    /// once (see the module docs, "unregister_both").
    #[serde(rename = "u")]
    UnregisterBoth,
}

/// One claim on an eventual name: the element of the names replica.
///
/// Field order is the winner order: for one name, the derived `Ord` compares the HLC
/// first, then the PID (whose own order starts with the node name, then the boot
/// incarnation, then the local id). The **smallest** visible claim wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NameClaim {
    /// The name claimed.
    #[serde(rename = "n")]
    pub name: String,
    /// When it was claimed (the claiming node's hybrid logical clock).
    #[serde(rename = "h")]
    pub hlc: Hlc,
    /// The claiming process, hosted on the origin that minted the claim.
    #[serde(rename = "p")]
    pub pid: Pid,
    /// How a conflict is settled if this claim wins.
    #[serde(rename = "y", default)]
    pub policy: ConflictPolicy,
    /// Optional metadata.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// What [`Registry::whereis`](super::Registry::whereis) knows about a name's winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameInfo {
    /// The process holding the name.
    pub pid: Pid,
    /// The claim's metadata.
    pub meta: Option<String>,
    /// When the claim was made.
    pub hlc: Hlc,
    /// How conflicts with this claim are settled.
    pub policy: ConflictPolicy,
}

impl From<&NameClaim> for NameInfo {
    fn from(c: &NameClaim) -> Self {
        Self {
            pid: c.pid.clone(),
            meta: c.meta.clone(),
            hlc: c.hlc,
            policy: c.policy,
        }
    }
}

/// Identifies one monitor (a subscription made by
/// [`Registry::monitor`](super::Registry::monitor)). Never reused by one registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonitorId(pub u64);

/// Why a [`GroupEvent`] fired. Each event changes a subscriber's view of one member
/// (`scope`, `group`, `pid`) as [`effect`](Self::effect) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventReason {
    /// The process joined the group once more (one more occurrence).
    Joined,
    /// The process left the group once (one occurrence fewer), by an explicit leave, or
    /// by an exit whose hint did not reach this node (anti-entropy repairs carry no hint).
    Left,
    /// The process exited: one occurrence fewer for each of its occurrences.
    ProcessExit,
    /// The member's node was declared down (its entries are hidden) or the node's
    /// incarnation was superseded or purged: one occurrence fewer.
    NodeDown,
    /// The member's node came back before permdown, with the incarnation that was
    /// hidden: one occurrence more.
    NodeRestored,
    /// The member's metadata changed; its number of occurrences did not.
    MetaChanged,
}

impl EventReason {
    /// The change in the member's number of occurrences: +1, −1 or 0.
    pub fn effect(self) -> i8 {
        match self {
            Self::Joined | Self::NodeRestored => 1,
            Self::Left | Self::ProcessExit | Self::NodeDown => -1,
            Self::MetaChanged => 0,
        }
    }
}

/// One change to a monitored group, as seen by a subscriber.
///
/// `meta` is the member's metadata after the event (for an event that removes the last
/// occurrence, the metadata the member had).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEvent {
    /// The scope of the group.
    pub scope: String,
    /// The group.
    pub group: String,
    /// The member.
    pub pid: Pid,
    /// The member's metadata (see above).
    pub meta: Option<String>,
    /// What happened.
    pub reason: EventReason,
}

/// One member of a group in a [`Snapshot`]: a process, its number of occurrences
/// (joins not yet left) and its metadata.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberInfo {
    /// The group.
    pub group: String,
    /// The member.
    pub pid: Pid,
    /// Its number of occurrences, at least 1.
    pub count: usize,
    /// Its metadata.
    pub meta: Option<String>,
}

/// The visible members of one group, or of every group of a scope, at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The scope.
    pub scope: String,
    /// The group, or `None` for the whole scope.
    pub group: Option<String>,
    /// The members, sorted by group then PID. An empty group never appears.
    pub members: Vec<MemberInfo>,
}

/// What the registry asks the node to do. Drain with
/// [`Registry::poll_output`](super::Registry::poll_output) after every input.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistryOutput {
    /// A groups delta to disseminate. `exited` lists processes whose exit removed the
    /// entries in `delta`; receivers pass it to
    /// [`merge_groups`](super::Registry::merge_groups) so their monitors report
    /// [`EventReason::ProcessExit`] rather than [`EventReason::Left`].
    GroupsDelta {
        /// The delta.
        delta: Delta<String, GroupEntry>,
        /// The exit hint.
        exited: Vec<Pid>,
    },
    /// A names delta to disseminate.
    NamesDelta(Delta<String, NameClaim>),
    /// An event for monitor `id`. Never output after
    /// [`demonitor`](super::Registry::demonitor)`(id)` returned.
    Monitor {
        /// The monitor.
        id: MonitorId,
        /// The event.
        event: GroupEvent,
    },
    /// Deliver `NameConflict{name, winner}` to the local process `loser`: its claim on
    /// `name` lost (and is retracted, or will be for `unregister_both`). Output exactly
    /// once per losing claim. Under `unregister_both` the winning process is notified
    /// too, with `loser == winner`.
    NameConflict {
        /// The name.
        name: String,
        /// The local process to notify.
        loser: Pid,
        /// The process whose claim came first in the winner order.
        winner: Pid,
    },
    /// Policy `kill`: the node must kill the local process `pid` (and then report its
    /// exit with [`process_exited`](super::Registry::process_exited)).
    Kill {
        /// The process to kill.
        pid: Pid,
        /// The name it lost.
        name: String,
        /// The process that holds the name.
        winner: Pid,
    },
}

/// Registry settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// How long a node declared down stays hidden before its entries and claims are
    /// purged. Default 300 s.
    pub permdown: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            permdown: Duration::from_secs(300),
        }
    }
}

/// Counters and gauges of a registry (see [`Registry::stats`](super::Registry::stats));
/// per-scope figures come from [`Registry::scope_stats`](super::Registry::scope_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Gauge: scopes with at least one visible group.
    pub scopes: usize,
    /// Gauge: visible non-empty groups, over all scopes.
    pub groups: usize,
    /// Gauge: visible memberships (occurrences), over all scopes.
    pub members: usize,
    /// Gauge: memberships of local processes.
    pub local_members: usize,
    /// Gauge: names with a visible winner.
    pub names: usize,
    /// Gauge: live claims made by local processes.
    pub local_claims: usize,
    /// Gauge: losing local claims kept in the replica until the claim they lost to
    /// is gone (`unregister_both`, see the module docs).
    pub pending_retractions: usize,
    /// Gauge: live monitors.
    pub monitors: usize,
    /// Gauge: nodes currently hidden (declared down, not yet purged or back).
    pub hidden_nodes: usize,
    /// Gauge: entries and claims (dots) held for hidden nodes.
    pub hidden_entries: usize,
    /// Counter: entries and claims dropped by permdown purges here.
    pub purged_entries: u64,
    /// Counter: [`RegistryOutput::NameConflict`] outputs.
    pub name_conflicts: u64,
    /// Counter: [`RegistryOutput::Kill`] outputs.
    pub kills: u64,
    /// Counter: remote deltas merged that changed the state.
    pub merges_applied: u64,
    /// Counter: remote deltas merged that changed nothing (duplicates, stale).
    pub merges_noop: u64,
    /// Counter: deltas output for dissemination.
    pub deltas_produced: u64,
    /// Counter: times this node moved to a new CRDT incarnation because a peer had
    /// purged (or superseded) the current one.
    pub reincarnations: u64,
    /// Counter: monitor events output.
    pub monitor_events: u64,
    /// Inputs refused or discarded, by reason.
    pub dropped: DropStats,
}

/// Every input the registry refused or output it discarded, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Remote deltas refused whole because an entry's PID is not hosted on the origin
    /// that minted it.
    pub foreign_entry: u64,
    /// Remote deltas refused whole because an entry breaks a size limit.
    pub invalid_entry: u64,
    /// `node_alive` reports with an incarnation older than the one held.
    pub stale_alive: u64,
    /// `node_down` / `node_alive` reports about this node itself.
    pub self_membership: u64,
    /// Queued monitor events discarded because their monitor was removed first
    /// (`demonitor` or owner exit), as the no-event-after-demonitor guarantee requires.
    pub demonitored_events: u64,
    /// A CRDT incarnation could not be raised (it is at `u64::MAX`).
    pub incarnation_exhausted: u64,
}

/// The visible groups and members of one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeStats {
    /// The scope.
    pub scope: String,
    /// Visible non-empty groups.
    pub groups: usize,
    /// Visible memberships (occurrences).
    pub members: usize,
}
