//! The node: every protocol of one mesh peer composed into one sans-IO state machine.
//!
//! [`Node`] owns SWIM [`Membership`], the groups-and-names [`Registry`], the CRDT
//! [`Dissemination`] scheduler, the local processes and their mailboxes, and the routing
//! of messages between processes. Like each of its parts it reads no clock, does no IO
//! and draws randomness only from its seeded RNG: inputs arrive with an explicit `now`,
//! outputs are drained with [`Node::poll_output`]. The tokio shell (`mesh_agent::runtime`,
//! in the `mesh-agent` crate) and the deterministic simulator (`tests/src/sim.rs`) drive
//! the same code.
//!
//! ```text
//!             ┌───────────────────────────── Node ─────────────────────────────┐
//!  datagram ─▶│ unwrap ─▶ Membership (SWIM)          Registry (groups, names)  │
//!             │   └─ piggybacked deltas ──merge────▶   │  deltas ─▶ Dissemination ─┼─▶ Datagram (SWIM + deltas)
//!  frame ────▶│ State: batches, AE pushes ─merge──▶    │                        ─┼─▶ Frame (batches, AE push)
//!             │ User: messages ─▶ mailboxes            │ events ─▶ monitor inboxes│
//!  request ──▶│ AE digest ─▶ missing_for ─▶ response   │                        ─┼─▶ Request (AE digest)
//!  API ──────▶│ spawn/exit, join/leave, register, send, monitor, sync            │
//!             └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! # Properties
//!
//! Safety:
//! - **N1 bad input changes nothing.** A datagram, frame, request or response that does
//!   not decode is dropped and counted with a reason ([`NodeStats::dropped`]); it never
//!   panics and never reaches a state machine half-read.
//! - **N2 no silent loss of user messages.** A message is delivered to a mailbox, or the
//!   sender gets an error (local destinations, unreachable nodes, full send queues),
//!   or — for a remote destination that refuses it — the refusal is counted on the
//!   receiving node and, for an acknowledged send, reported back to the sender.
//! - **N3 order.** Messages from one sender to one receiver arrive in send order: local
//!   delivery is immediate, remote messages to a node share one ordered stream.
//! - **N4 one frame per node.** A group send carries one frame per remote node holding
//!   members, whatever the number of members there.
//!
//! Liveness (checked in the simulator over many seeds):
//! - **N5 convergence.** After a heal, every live node's visible groups and names are
//!   equal: deltas ride SWIM packets and stream batches, and anti-entropy repairs
//!   whatever those lost — even if they lost everything.
//! - **N6 barrier.** [`Node::sync`] completes once the chosen peers' digests cover this
//!   node's latest change, or fails at its deadline.

pub mod quorum;
pub(crate) mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_crdt::Digest;
use mesh_types::frame::Class;
use mesh_types::PeerRef;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dissemination::{
    self, ChannelId, ConfigError as DisseminationConfigError, Dissemination, DisseminationConfig,
    DisseminationOutput,
};
use crate::identity::NodeId;
use crate::membership::{
    EventKind, Membership, MembershipConfig, MembershipEvent, Output as SwimOutput, SwimTimer,
};
use crate::pid::Pid;
use crate::process::{Delivery, Inbox, Mailbox, PushError, DEFAULT_MAILBOX_CAPACITY};
use crate::registry::{
    ConflictPolicy, GroupEvent, JoinError, LeaveError, MonitorId, NameInfo, RegisterError,
    Registry, RegistryConfig, RegistryOutput, SetMetaError, Snapshot, UnregisterError,
};

pub use wire::{
    AeRequest, AeResponse, ControlFrame, GroupsItem, StateFrame, Undeliverable, UserFrame,
};

use quorum::{CallError, ClaimCall, QuorumConfig, QuorumOutput, QuorumPlane, QuorumSetupError};

/// The dissemination channel of group deltas.
pub const GROUPS: ChannelId = ChannelId(0);
/// The dissemination channel of eventual-name deltas.
pub const NAMES: ChannelId = ChannelId(1);

/// Up to this many live peers, a change made on this node is pushed to every peer
/// directly (dissemination's direct push, D1): one hop, `n` small frames per change.
pub const DIRECT_MAX_PEERS: usize = 64;

/// Largest anti-entropy response (bytes of deltas); the rest comes in later rounds.
pub const AE_RESPONSE_BUDGET: usize = 4 << 20;
/// Largest anti-entropy push frame.
pub const AE_PUSH_CHUNK: usize = 512 << 10;
/// Largest delta piece handed to dissemination (bigger deltas are cut causally safe).
pub const DELTA_PIECE: usize = 64 << 10;
/// Largest user payload.
pub const MAX_PAYLOAD: usize = 512 << 10;
/// How long an acknowledged send waits for its acks.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity of a monitor's event inbox; a monitor that falls this far behind is
/// ended with [`MonitorItem::Overflowed`] (never a silent gap).
pub const MONITOR_CAPACITY: usize = 65_536;

/// Everything a node needs besides its identity.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// SWIM settings.
    pub membership: MembershipConfig,
    /// Groups and names settings (permdown).
    pub registry: RegistryConfig,
    /// Dissemination settings.
    pub dissemination: DisseminationConfig,
    /// Default mailbox capacity for [`Node::spawn`].
    pub mailbox_capacity: usize,
    /// The quorum plane (claims, strong names); `None` when no voters are configured.
    pub quorum: Option<QuorumBoot>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            membership: MembershipConfig::default(),
            registry: RegistryConfig::default(),
            dissemination: DisseminationConfig {
                // Push every delta at once (batch rounds every 1 ms while anything is
                // queued) rather than waiting for SWIM traffic to carry it: a quiet
                // cluster sends SWIM packets only on its probe period.
                eager: true,
                batch_interval: Duration::from_millis(1),
                // Up to 64 peers, a local change goes straight to every peer (one hop).
                direct_max_peers: DIRECT_MAX_PEERS,
                ..DisseminationConfig::default()
            },
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            quorum: None,
        }
    }
}

/// What the quorum plane starts from: its settings, and (on a voter) what the durable
/// store held at boot.
#[derive(Debug, Clone)]
pub struct QuorumBoot {
    /// Settings (the same on every node).
    pub config: QuorumConfig,
    /// The store's acceptor id, stored root and acceptor states (voters only).
    pub store: Option<StoreBoot>,
}

/// A voter's durable state at boot.
#[derive(Debug, Clone)]
pub struct StoreBoot {
    /// The store's acceptor id (new after a wipe).
    pub acceptor_id: u64,
    /// The root record it holds.
    pub root: Option<crate::quorum::RootRecord>,
    /// The acceptor states it holds.
    pub states: Vec<(
        crate::claims::ShardId,
        crate::quorum::AcceptorState<crate::claims::ShardSlot>,
    )>,
}

/// Why a node could not be built. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The dissemination settings are invalid.
    #[error("dissemination: {0}")]
    Dissemination(DisseminationConfigError),
    /// The quorum settings are invalid.
    #[error(transparent)]
    Quorum(#[from] QuorumSetupError),
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    /// One process.
    Pid(Pid),
    /// The process holding an eventual name (as this node sees it).
    Name(String),
    /// The owner of a strong name, as this node's cache has it; the message carries
    /// the version and the owner's node refuses it unless that version is current.
    Strong(String),
    /// Members of a group.
    Group {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
        /// Which members.
        mode: GroupMode,
    },
}

/// Which members of a group a send reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Every member (one copy per distinct process).
    #[default]
    All,
    /// Every member on this node.
    Local,
    /// One member chosen uniformly at random.
    One,
    /// A member on this node if there is one, else one on the peer with the shortest
    /// measured round trip (random among equals).
    Nearest,
}

/// Why a send failed. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination process does not exist (exited, unknown, or of an earlier boot
    /// of its node).
    #[error("no such process: {0}")]
    NoProcess(Pid),
    /// No process holds the name in this node's view.
    #[error("no process is registered as {0:?}")]
    NoSuchName(String),
    /// The group has no member (of the kind asked for) in this node's view.
    #[error("group {group:?} in scope {scope:?} has no member to send to")]
    EmptyGroup {
        /// The scope.
        scope: String,
        /// The group.
        group: String,
    },
    /// The destination's node is not a live member.
    #[error("node {0} is not reachable (not a live member)")]
    NodeDown(String),
    /// The destination's mailbox is full.
    #[error("the mailbox of {0} is full")]
    MailboxFull(Pid),
    /// The stream to the destination's node is full: it is slow or unreachable.
    #[error("the send queue to node {0} is full")]
    Backpressure(String),
    /// A strong name was asked for, but no voters are configured: strong names are
    /// off (they never fall back to eventual names).
    #[error("strong names are unavailable: no voters are configured")]
    NoVoters,
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("the payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl SendError {
    /// Every metric label, for registering at zero.
    pub const REASONS: [&'static str; 8] = [
        "no_process",
        "no_such_name",
        "empty_group",
        "node_down",
        "mailbox_full",
        "backpressure",
        "too_large",
        "no_voters",
    ];

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoProcess(_) => "no_process",
            Self::NoSuchName(_) => "no_such_name",
            Self::EmptyGroup { .. } => "empty_group",
            Self::NodeDown(_) => "node_down",
            Self::MailboxFull(_) => "mailbox_full",
            Self::Backpressure(_) => "backpressure",
            Self::TooLarge { .. } => "too_large",
            Self::NoVoters => "no_voters",
        }
    }
}

/// Identifies an acknowledged send's pending outcome ([`Output::SendResult`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(pub u64);

/// What a successful [`Node::send`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// Local mailboxes the message went into.
    pub delivered_local: usize,
    /// Local targets that refused it (full mailbox) in a group send.
    pub failed_local: Vec<(Pid, Undeliverable)>,
    /// Remote nodes a frame went to (one per node).
    pub remote_nodes: usize,
    /// Remote processes targeted.
    pub remote_targets: usize,
    /// Set for an acknowledged send with remote targets: the outcome comes as
    /// [`Output::SendResult`].
    pub pending: Option<AckId>,
    /// Remote nodes whose send queue was full, so their frame was not sent (set by the
    /// shell, which carries the frames out; see [`Node::refuse_ack`]).
    pub refused_nodes: Vec<String>,
}

/// The outcome of an acknowledged send's remote part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendOutcome {
    /// Remote targets delivered to.
    pub delivered: usize,
    /// Remote targets that refused, and why.
    pub failed: Vec<(Pid, Undeliverable)>,
    /// Nodes that did not answer within [`ACK_TIMEOUT`] (their outcome is unknown).
    pub timed_out: Vec<String>,
    /// Nodes whose send queue was full: their targets got nothing.
    pub refused: Vec<String>,
}

/// How many peers a [`Node::sync`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// A majority of the live cluster, this node included.
    Quorum,
    /// Every live peer.
    All,
}

/// Identifies a pending [`Node::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncId(pub u64);

/// Why a [`Node::sync`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The deadline passed first.
    #[error("timed out: {covered} of {needed} peers covered this node's latest change")]
    Timeout {
        /// Peers whose digests covered it.
        covered: usize,
        /// Peers needed.
        needed: usize,
    },
}

/// What a monitor's inbox carries.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorItem {
    /// A change, in order.
    Event(GroupEvent),
    /// The monitor fell [`MONITOR_CAPACITY`] events behind and was ended; take a new
    /// snapshot with a new monitor.
    Overflowed,
}

/// Why a local process operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The PID is not a live process of this node (this boot).
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
}

/// Tags an anti-entropy request so its response finds its way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestTag(pub u64);

/// Why a request failed, as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request failed: {0}")]
pub struct RequestFailed(pub String);

/// Why the node refused to answer a request (the requester sees a refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    /// The request did not decode.
    #[error("malformed request")]
    Malformed,
    /// No handler for the request's class.
    #[error("no handler for class {0}")]
    NoHandler(Class),
}

/// Something the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send a datagram (SWIM, with piggybacked deltas). A seed placeholder is reached
    /// by address alone.
    Datagram {
        /// Destination.
        to: NodeId,
        /// Payload.
        data: Bytes,
    },
    /// Send a frame on the (peer, class) stream.
    Frame {
        /// Destination.
        to: PeerRef,
        /// Class.
        class: Class,
        /// Payload.
        payload: Bytes,
    },
    /// Send a request on a new bi stream; feed the outcome to [`Node::handle_response`].
    Request {
        /// Destination.
        to: PeerRef,
        /// Tag to hand back.
        tag: RequestTag,
        /// Class.
        class: Class,
        /// Payload.
        payload: Bytes,
    },
    /// Call [`Node::handle_timer`] with `timer` at `at` (timers due together in `Ord`
    /// order).
    Timer {
        /// Deadline.
        at: Instant,
        /// The timer.
        timer: SwimTimer,
    },
    /// A membership change.
    Membership(MembershipEvent),
    /// The outcome of an acknowledged send.
    SendResult {
        /// Which send.
        id: AckId,
        /// What happened remotely.
        outcome: SendOutcome,
    },
    /// Write these acceptor states durably (one transaction, fsync), then call
    /// [`Node::handle_persisted`] with `id`. Replies wait for it.
    Persist {
        /// The commit.
        id: u64,
        /// Encoded `(key, state)` pairs.
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Write the voter root record durably, then call [`Node::handle_root_persisted`].
    PersistRoot(crate::quorum::RootRecord),
    /// Stop the process: durable state could not be written.
    Fatal(String),
    /// A claims or strong-name call finished.
    ClaimDone {
        /// Which call.
        call: ClaimCall,
        /// Its result.
        result: Result<crate::claims::CallOk, crate::claims::ClaimsError>,
    },
    /// A linearizable shard read ([`Node::read_shard`]) finished.
    ShardRead {
        /// The read.
        id: u64,
        /// The table (`None`: never written), or a timeout.
        result: Result<Option<crate::claims::ShardTable>, crate::quorum::ProposeError>,
    },
    /// A claim was lost or assigned without a call (see
    /// [`HolderEvent`](crate::claims::HolderEvent)).
    ClaimEvent(crate::claims::HolderEvent),
    /// A [`Node::sync`] finished.
    SyncDone {
        /// Which barrier.
        id: SyncId,
        /// Covered, or not in time.
        result: Result<(), SyncError>,
    },
}

/// Counters the shell publishes as metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Inputs dropped before any state machine saw them, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Send errors returned to local senders, by reason.
    pub send_errors: BTreeMap<&'static str, u64>,
    /// Remote messages refused on arrival, by reason.
    pub refused_in: BTreeMap<&'static str, u64>,
    /// Messages put into local mailboxes (local and remote senders).
    pub delivered: u64,
    /// Frames of user messages sent.
    pub user_frames_out: u64,
    /// Anti-entropy rounds started / answered / completed / failed.
    pub ae_started: u64,
    /// Anti-entropy requests answered.
    pub ae_served: u64,
    /// Anti-entropy rounds whose response arrived.
    pub ae_completed: u64,
    /// Anti-entropy rounds whose request failed.
    pub ae_failed: u64,
    /// Bytes of anti-entropy traffic (requests, responses, pushes) sent and received.
    pub ae_bytes_out: u64,
    /// Bytes of anti-entropy traffic received.
    pub ae_bytes_in: u64,
    /// Bytes of delta items received (piggybacked or batched).
    pub delta_bytes_in: u64,
    /// Delta items that changed this node's state.
    pub deltas_applied: u64,
    /// Processes spawned and exited.
    pub processes_spawned: u64,
    /// Processes that exited.
    pub processes_exited: u64,
    /// Monitors ended because they fell behind.
    pub monitors_overflowed: u64,
}

#[derive(Debug)]
struct ProcEntry {
    mailbox: Mailbox,
}

#[derive(Debug)]
struct MonitorEntry {
    inbox: Inbox<MonitorItem>,
}

#[derive(Debug)]
struct PendingAck {
    deadline: Instant,
    /// Remote node -> its targets (local ids), until it answers.
    waiting: BTreeMap<String, (u64, Vec<u64>)>,
    outcome: SendOutcome,
}

#[derive(Debug)]
struct SyncWaiter {
    id: SyncId,
    deadline: Instant,
    mode: SyncMode,
    /// Our own contexts at the time of the call: (incarnation, groups max, names max).
    target: (u64, u64, u64),
}

/// What a peer's digests say about our own origin: (incarnation, groups, names).
type Cover = (u64, u64, u64);

/// One mesh peer. See the module docs.
pub struct Node {
    name: String,
    boot_incarnation: u64,
    config: NodeConfig,
    membership: Membership,
    registry: Registry,
    dissem: Dissemination,
    rng: StdRng,
    started: Instant,
    wall_at_start: u64,
    processes: BTreeMap<u64, ProcEntry>,
    next_local_id: u64,
    monitors: HashMap<MonitorId, MonitorEntry>,
    /// Live (alive or suspect) peers: name -> identity.
    peers: BTreeMap<String, NodeId>,
    /// Smoothed round trip per peer, from anti-entropy requests.
    rtt: HashMap<String, Duration>,
    ae_pending: HashMap<RequestTag, (String, Instant)>,
    next_tag: u64,
    acks: BTreeMap<AckId, PendingAck>,
    next_msg_id: u64,
    cover: HashMap<String, Cover>,
    syncs: Vec<SyncWaiter>,
    next_sync: u64,
    outputs: VecDeque<Output>,
    lags: Vec<Duration>,
    stats: NodeStats,
    quorum: Option<QuorumPlane>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("processes", &self.processes.len())
            .field("peers", &self.peers.len())
            .finish()
    }
}

/// Every reason [`NodeStats::dropped`] counts (registered at zero as metrics).
pub const DROP_REASONS: &[&str] = &[
    "malformed_datagram",
    "piggyback_of_refused_datagram",
    "malformed_batch",
    "malformed_state_frame",
    "malformed_user_frame",
    "malformed_delta",
    "malformed_ae_request",
    "malformed_ae_response",
    "unknown_channel",
    "unknown_response",
    "late_ack",
    "unexpected_ack",
    "refused_delta",
    "dissemination_refused",
    "swim_too_large",
    "encode_failed",
    "no_handler",
    "malformed_control_frame",
    "peer_unreachable",
];

fn bump(map: &mut BTreeMap<&'static str, u64>, key: &'static str) {
    debug_assert!(
        DROP_REASONS.contains(&key)
            || SendError::REASONS.contains(&key)
            || ["mailbox_full", "no_process", "stale_version"].contains(&key),
        "unregistered reason {key}"
    );
    *map.entry(key).or_default() += 1;
}

impl Node {
    /// A node for `identity` (whose incarnation is this boot's), with the wall clock
    /// reading `wall_ms` (milliseconds since the Unix epoch) at `now`. Fails (building
    /// nothing) if the dissemination settings are invalid.
    pub fn new(
        identity: NodeId,
        config: NodeConfig,
        rng_seed: u64,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Self, NodeError> {
        let name = identity.name.clone();
        let boot_incarnation = identity.incarnation;
        let quorum = match &config.quorum {
            Some(boot) => Some(QuorumPlane::new(
                &name,
                boot_incarnation,
                boot.config.clone(),
                boot.store.clone(),
                rng_seed ^ 0x7175_6f72,
                now,
            )?),
            None => None,
        };
        let membership = Membership::new(identity, config.membership.clone(), rng_seed, now);
        let mut registry = Registry::new(name.clone(), boot_incarnation, config.registry.clone());
        registry.announce();
        let dissem = Dissemination::new(
            config.dissemination.clone(),
            &[(GROUPS, "groups"), (NAMES, "names")],
            rng_seed ^ 0x6469_7373,
        )
        .map_err(NodeError::Dissemination)?;
        let mut node = Self {
            name,
            boot_incarnation,
            config,
            membership,
            registry,
            dissem,
            rng: StdRng::seed_from_u64(rng_seed ^ 0x6e6f_6465),
            started: now,
            wall_at_start: wall_ms,
            processes: BTreeMap::new(),
            next_local_id: 1,
            monitors: HashMap::new(),
            peers: BTreeMap::new(),
            rtt: HashMap::new(),
            ae_pending: HashMap::new(),
            next_tag: 1,
            acks: BTreeMap::new(),
            next_msg_id: 1,
            cover: HashMap::new(),
            syncs: Vec::new(),
            next_sync: 1,
            outputs: VecDeque::new(),
            lags: Vec::new(),
            stats: NodeStats::default(),
            quorum,
        };
        node.drain_registry(now);
        Ok(node)
    }

    // ----- accessors -------------------------------------------------------------

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This boot's incarnation (the one PIDs carry).
    pub fn boot_incarnation(&self) -> u64 {
        self.boot_incarnation
    }

    /// The SWIM state machine (read-only).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The groups and names (read-only).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The dissemination scheduler (read-only).
    pub fn dissemination(&self) -> &Dissemination {
        &self.dissem
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Propagation lags (origin timestamp to apply here) measured since the last call.
    pub fn drain_lags(&mut self) -> std::vec::Drain<'_, Duration> {
        self.lags.drain(..)
    }

    /// SWIM probe round trips measured since the last call.
    pub fn drain_probe_rtts(&mut self) -> Vec<Duration> {
        self.membership.drain_probe_rtts().collect()
    }

    /// Live (alive or suspect) peers.
    pub fn live_peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.values()
    }

    /// The wall clock at `now`, as the node reckons it from its start.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.started);
        self.wall_at_start
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Next output to act on, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_tick`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let acks = self.acks.values().map(|a| a.deadline).min();
        let syncs = self.syncs.iter().map(|s| s.deadline).min();
        [
            self.quorum.as_ref().and_then(QuorumPlane::poll_timeout),
            self.membership.poll_timeout(),
            self.registry.poll_timeout(),
            self.dissem.poll_timeout(),
            acks,
            syncs,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- network inputs --------------------------------------------------------

    /// A datagram arrived on a connection whose certificate names `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: &str, data: &[u8]) {
        let Ok((swim, items)) = Dissemination::unwrap_datagram(data) else {
            bump(&mut self.stats.dropped, "malformed_datagram");
            return;
        };
        // SWIM rejections are counted in the membership stats.
        let swim_ok = self.membership.handle_data(now, from, swim).is_ok();
        if swim_ok {
            for (channel, item) in items {
                self.apply_item(now, channel, item);
            }
        } else if !items.is_empty() {
            // A datagram SWIM refused (identity mismatch, malformed) is not trusted
            // with state either.
            bump(&mut self.stats.dropped, "piggyback_of_refused_datagram");
        }
        self.after_input(now);
    }

    /// A stream frame arrived from `from`.
    pub fn handle_frame(&mut self, now: Instant, from: &str, class: Class, payload: &[u8]) {
        match class {
            Class::State => match wire::decode::<StateFrame>(payload) {
                Ok(StateFrame::Batch(batch)) => match dissemination::decode_batch(&batch) {
                    Ok(items) => {
                        for (channel, item) in items {
                            self.apply_item(now, channel, item);
                        }
                    }
                    Err(_) => bump(&mut self.stats.dropped, "malformed_batch"),
                },
                Ok(StateFrame::Push { groups, names }) => {
                    self.stats.ae_bytes_in += payload.len() as u64;
                    self.merge_state(now, &groups, &names);
                }
                Err(_) => bump(&mut self.stats.dropped, "malformed_state_frame"),
            },
            Class::User => match wire::decode::<UserFrame>(payload) {
                Ok(frame) => self.on_user_frame(now, from, frame),
                Err(_) => bump(&mut self.stats.dropped, "malformed_user_frame"),
            },
            Class::Control => match wire::decode::<ControlFrame>(payload) {
                Ok(ControlFrame::Quorum(bytes)) => match self.quorum.as_mut() {
                    Some(q) => q.handle_message(now, from, &bytes),
                    // No voters configured here: nothing speaks the quorum plane.
                    None => bump(&mut self.stats.dropped, "no_handler"),
                },
                Err(_) => bump(&mut self.stats.dropped, "malformed_control_frame"),
            },
        }
        self.after_input(now);
    }

    /// A request arrived from `from`; returns the response to send back.
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: &str,
        class: Class,
        payload: &[u8],
    ) -> Result<Bytes, RequestRefused> {
        if class != Class::State {
            bump(&mut self.stats.dropped, "no_handler");
            return Err(RequestRefused::NoHandler(class));
        }
        let Ok(req) = wire::decode::<AeRequest>(payload) else {
            bump(&mut self.stats.dropped, "malformed_ae_request");
            return Err(RequestRefused::Malformed);
        };
        self.stats.ae_served += 1;
        self.stats.ae_bytes_in += payload.len() as u64;
        self.learn_digests(now, from, &req.groups, &req.names);
        let response = AeResponse {
            groups: self.registry.groups().missing_for(&req.groups),
            names: self.registry.names().missing_for(&req.names),
            groups_digest: self.registry.groups().digest(),
            names_digest: self.registry.names().digest(),
        };
        let response = trim_response(response);
        let Ok(bytes) = wire::encode(&response) else {
            bump(&mut self.stats.dropped, "encode_failed");
            return Err(RequestRefused::Malformed);
        };
        self.stats.ae_bytes_out += bytes.len() as u64;
        self.after_input(now);
        Ok(bytes)
    }

    /// The outcome of an [`Output::Request`].
    pub fn handle_response(
        &mut self,
        now: Instant,
        tag: RequestTag,
        result: Result<Bytes, RequestFailed>,
    ) {
        let Some((peer, started)) = self.ae_pending.remove(&tag) else {
            bump(&mut self.stats.dropped, "unknown_response");
            return;
        };
        let Ok(bytes) = result else {
            self.stats.ae_failed += 1;
            return;
        };
        let Ok(resp) = wire::decode::<AeResponse>(&bytes) else {
            bump(&mut self.stats.dropped, "malformed_ae_response");
            self.stats.ae_failed += 1;
            return;
        };
        self.stats.ae_completed += 1;
        self.stats.ae_bytes_in += bytes.len() as u64;
        let sample = now.saturating_duration_since(started);
        let rtt = self.rtt.entry(peer.clone()).or_insert(sample);
        *rtt = (*rtt * 7 + sample) / 8;
        self.merge_state(now, &resp.groups, &resp.names);
        self.learn_digests(now, &peer, &resp.groups_digest, &resp.names_digest);
        // Push what the peer lacks, in causally safe pieces.
        let groups = self.registry.groups().missing_for(&resp.groups_digest);
        let names = self.registry.names().missing_for(&resp.names_digest);
        self.push_state(&peer, groups, names);
        self.after_input(now);
    }

    /// A timer armed by [`Output::Timer`] is due.
    pub fn handle_timer(&mut self, now: Instant, timer: SwimTimer) {
        self.membership.handle_timer(now, timer);
        self.after_input(now);
    }

    /// Periodic work: call at [`Node::poll_timeout`] or more often.
    pub fn handle_tick(&mut self, now: Instant) {
        self.membership.handle_tick(now);
        self.registry.handle_tick(now);
        if let Some(q) = self.quorum.as_mut() {
            q.handle_tick(now);
        }
        self.dissem.handle_tick(now);
        self.expire_acks(now);
        self.check_syncs(now);
        self.after_input(now);
    }

    /// The commit `id` of an [`Output::Persist`] finished (the states are durable, or the
    /// write failed and the node must stop).
    pub fn handle_persisted(&mut self, now: Instant, id: u64, result: Result<(), String>) {
        if let Some(q) = self.quorum.as_mut() {
            q.handle_persisted(now, id, result);
        }
        self.after_input(now);
    }

    /// The [`Output::PersistRoot`] write finished.
    pub fn handle_root_persisted(&mut self, now: Instant, result: Result<(), String>) {
        if let Some(q) = self.quorum.as_mut() {
            q.handle_root_persisted(now, result);
        }
        self.after_input(now);
    }

    /// The quorum plane, if voters are configured.
    pub fn quorum(&self) -> Option<&QuorumPlane> {
        self.quorum.as_ref()
    }

    /// Commit latencies of the changes this node's proposer committed since the last
    /// call (drained, so they do not pile up; see [`QuorumPlane::drain_commit_samples`]).
    pub fn drain_commit_samples(&mut self) -> Vec<Duration> {
        self.quorum
            .as_mut()
            .map(QuorumPlane::drain_commit_samples)
            .unwrap_or_default()
    }

    /// Starts a claims or strong-name call on the holder of `ttl` (the default TTL if
    /// `None`); its result comes as [`Output::ClaimDone`]. Fails at once, with nothing
    /// submitted, when no voters are configured or too few are reachable.
    pub fn claims_call(
        &mut self,
        now: Instant,
        ttl: Option<Duration>,
        f: impl FnOnce(
            &mut crate::claims::Holder,
            Instant,
        ) -> Result<crate::claims::CallId, crate::claims::ClaimsError>,
    ) -> Result<ClaimCall, CallError> {
        let Some(q) = self.quorum.as_mut() else {
            return Err(CallError::Claims(crate::claims::ClaimsError::Unavailable {
                reason: crate::claims::Unavailable::NoVoters,
            }));
        };
        let r = q.call(now, ttl, f);
        self.after_input(now);
        r
    }

    /// Claims `task` on the holder of `ttl` (the default TTL if `None`); like
    /// [`Node::claims_call`], and refused at once if this node holds the task under
    /// another TTL ([`CallError::HeldWithOtherTtl`]).
    pub fn claim(
        &mut self,
        now: Instant,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<ClaimCall, CallError> {
        let Some(q) = self.quorum.as_mut() else {
            return Err(CallError::Claims(crate::claims::ClaimsError::Unavailable {
                reason: crate::claims::Unavailable::NoVoters,
            }));
        };
        let r = q.claim(now, task, ttl);
        self.after_input(now);
        r
    }

    /// Starts a linearizable read of a shard table; the result comes as
    /// [`Output::ShardRead`]. `None` if the quorum plane is off or not formed yet.
    pub fn read_shard(&mut self, now: Instant, shard: crate::claims::ShardId) -> Option<u64> {
        let id = self.quorum.as_mut()?.read(now, shard);
        self.after_input(now);
        id
    }

    /// Leaves the cluster gracefully (peers see `left`).
    pub fn leave(&mut self, now: Instant) {
        self.membership.leave(now);
        self.after_input(now);
    }

    // ----- processes -------------------------------------------------------------

    /// Starts a process with a mailbox of `capacity` messages (the configured default
    /// if `None`).
    pub fn spawn(&mut self, capacity: Option<usize>) -> (Pid, Mailbox) {
        let local_id = self.next_local_id;
        self.next_local_id += 1;
        let mailbox = Mailbox::new(capacity.unwrap_or(self.config.mailbox_capacity));
        self.processes.insert(
            local_id,
            ProcEntry {
                mailbox: mailbox.clone(),
            },
        );
        self.stats.processes_spawned += 1;
        (
            Pid::new(self.name.clone(), self.boot_incarnation, local_id),
            mailbox,
        )
    }

    /// True if `pid` is a live process of this node.
    pub fn is_local_alive(&self, pid: &Pid) -> bool {
        self.local_id(pid).is_some()
    }

    fn local_id(&self, pid: &Pid) -> Option<u64> {
        (pid.node == self.name
            && pid.incarnation == self.boot_incarnation
            && self.processes.contains_key(&pid.local_id))
        .then_some(pid.local_id)
    }

    fn check_local(&self, pid: &Pid) -> Result<(), ProcessError> {
        self.local_id(pid)
            .map(|_| ())
            .ok_or_else(|| ProcessError::NotLocal(pid.clone()))
    }

    /// Ends a process: its mailbox closes, it leaves every group and name in one delta,
    /// and monitors it owns end.
    pub fn exit(&mut self, now: Instant, pid: &Pid) -> Result<(), ProcessError> {
        self.check_local(pid)?;
        if let Some(p) = self.processes.remove(&pid.local_id) {
            p.mailbox.close();
        }
        self.stats.processes_exited += 1;
        self.registry.process_exited(now, pid);
        self.after_input(now);
        Ok(())
    }

    /// Number of live local processes.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    // ----- groups ----------------------------------------------------------------

    /// `pg:join`: `pid` (local) joins each of `groups` once more.
    pub fn join(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), NodeOpError<JoinError>> {
        self.check_local(pid)?;
        self.registry
            .join(now, scope, groups, pid, meta)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// `pg:leave`: `pid` (local) leaves each of `groups` once; `NotJoined` only if it
    /// was in none of them.
    pub fn leave_groups(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
    ) -> Result<(), NodeOpError<LeaveError>> {
        self.check_local(pid)?;
        self.registry
            .leave(now, scope, groups, pid)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Replaces the metadata of `pid`'s membership of `group`.
    pub fn set_meta(
        &mut self,
        now: Instant,
        scope: &str,
        group: &str,
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), NodeOpError<SetMetaError>> {
        self.check_local(pid)?;
        self.registry
            .set_meta(now, scope, group, pid, meta)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Subscribes to a group (or, with `group = None`, a whole scope): the snapshot and
    /// the inbox of later events, atomically. With an `owner`, the monitor ends when
    /// that local process exits.
    pub fn monitor(
        &mut self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> Result<(MonitorId, Snapshot, Inbox<MonitorItem>), ProcessError> {
        if let Some(o) = &owner {
            self.check_local(o)?;
        }
        let (id, snapshot) = self.registry.monitor(owner, scope, group);
        let inbox = Inbox::new(MONITOR_CAPACITY);
        self.monitors.insert(
            id,
            MonitorEntry {
                inbox: inbox.clone(),
            },
        );
        Ok((id, snapshot, inbox))
    }

    /// Ends a monitor. Its inbox is closed and emptied: no event arrives after this.
    pub fn demonitor(&mut self, id: MonitorId) -> bool {
        let known = self.registry.demonitor(id);
        if let Some(m) = self.monitors.remove(&id) {
            m.inbox.close();
            while m.inbox.try_recv().is_some() {}
        }
        known
    }

    // ----- names -----------------------------------------------------------------

    /// Registers an eventual name for a local process (checked against this node's
    /// view only; a concurrent registration elsewhere is resolved later).
    pub fn register(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Option<String>,
        policy: ConflictPolicy,
    ) -> Result<(), NodeOpError<RegisterError>> {
        self.check_local(pid)?;
        let wall = self.wall_ms(now);
        self.registry
            .register(now, wall, name, pid, meta, policy)
            .map_err(NodeOpError::Op)?;
        self.after_input(now);
        Ok(())
    }

    /// Unregisters a name held by a local process.
    pub fn unregister(&mut self, now: Instant, name: &str) -> Result<Pid, UnregisterError> {
        let r = self.registry.unregister(now, name);
        self.after_input(now);
        r
    }

    /// The holder of an eventual name in this node's view.
    pub fn whereis(&self, name: &str) -> Option<NameInfo> {
        self.registry.whereis(name)
    }

    // ----- send ------------------------------------------------------------------

    /// Sends `payload` to `dest`. Local targets get it at once; remote ones get one
    /// frame per node. With `ack`, the remote outcome comes as [`Output::SendResult`].
    pub fn send(
        &mut self,
        now: Instant,
        from: Option<Pid>,
        dest: &Dest,
        payload: Bytes,
        ack: bool,
    ) -> Result<SendReceipt, SendError> {
        let result = self.route(now, from, dest, payload, ack);
        if let Err(e) = &result {
            bump(&mut self.stats.send_errors, e.as_str());
        }
        self.after_input(now);
        result
    }

    fn route(
        &mut self,
        now: Instant,
        from: Option<Pid>,
        dest: &Dest,
        payload: Bytes,
        ack: bool,
    ) -> Result<SendReceipt, SendError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let mut strong = None;
        let (targets, strict) = match dest {
            Dest::Pid(pid) => (vec![pid.clone()], true),
            Dest::Name(name) => match self.registry.whereis(name) {
                Some(info) => (vec![info.pid], true),
                None => return Err(SendError::NoSuchName(name.clone())),
            },
            Dest::Strong(name) => {
                let Some(q) = self.quorum.as_ref() else {
                    return Err(SendError::NoVoters);
                };
                let entry = q.name_cache().whereis(name).cloned();
                match entry {
                    Some(e) => {
                        strong = Some((name.clone(), e.version));
                        (vec![e.owner], true)
                    }
                    None => return Err(SendError::NoSuchName(name.clone())),
                }
            }
            Dest::Group { scope, group, mode } => {
                let t = self.group_targets(scope, group, *mode);
                if t.is_empty() {
                    return Err(SendError::EmptyGroup {
                        scope: scope.clone(),
                        group: group.clone(),
                    });
                }
                (t, false)
            }
        };
        // Split by node; check every remote node is reachable before sending anything.
        let mut local = Vec::new();
        let mut remote: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
        for pid in targets {
            if pid.node == self.name {
                local.push(pid);
            } else {
                let e = remote
                    .entry(pid.node.clone())
                    .or_insert((pid.incarnation, Vec::new()));
                if e.0 == pid.incarnation {
                    e.1.push(pid.local_id);
                } else if strict {
                    return Err(SendError::NoProcess(pid));
                }
            }
        }
        if strict {
            if let Some(node) = remote.keys().find(|n| !self.peers.contains_key(*n)) {
                return Err(SendError::NodeDown(node.clone()));
            }
        }
        remote.retain(|node, _| self.peers.contains_key(node));
        let mut receipt = SendReceipt::default();
        for pid in &local {
            if let Some((name, version)) = &strong {
                let current = self
                    .quorum
                    .as_mut()
                    .is_some_and(|q| q.check_strong_send(name, *version, pid));
                if !current {
                    return Err(SendError::NoSuchName(name.clone()));
                }
            }
            let delivery = Delivery::Message {
                from: from.clone(),
                payload: payload.clone(),
            };
            let pushed = match self.local_id(pid) {
                Some(id) => self.processes[&id].mailbox.push(delivery),
                None => Err(PushError::Closed),
            };
            match pushed {
                Ok(()) => {
                    receipt.delivered_local += 1;
                    self.stats.delivered += 1;
                }
                Err(e) if strict => {
                    return Err(match e {
                        PushError::Full => SendError::MailboxFull(pid.clone()),
                        PushError::Closed => SendError::NoProcess(pid.clone()),
                    })
                }
                Err(e) => {
                    let why = match e {
                        PushError::Full => Undeliverable::MailboxFull,
                        PushError::Closed => Undeliverable::NoProcess,
                    };
                    bump(&mut self.stats.send_errors, why.as_str());
                    receipt.failed_local.push((pid.clone(), why));
                }
            }
        }
        if remote.is_empty() {
            if receipt.delivered_local == 0 && !local.is_empty() && !strict {
                // Every target refused: say so rather than claim success.
                if let Some((pid, why)) = receipt.failed_local.first() {
                    return Err(match why {
                        Undeliverable::MailboxFull => SendError::MailboxFull(pid.clone()),
                        _ => SendError::NoProcess(pid.clone()),
                    });
                }
            }
            return Ok(receipt);
        }
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        for (node, (incarnation, targets)) in &remote {
            let frame = UserFrame::Send {
                id,
                ack,
                from: from.clone(),
                incarnation: *incarnation,
                targets: targets.clone(),
                strong: strong.clone(),
                payload: payload.clone(),
            };
            let Ok(bytes) = wire::encode(&frame) else {
                bump(&mut self.stats.dropped, "encode_failed");
                continue;
            };
            let Some(peer) = self.peers.get(node) else {
                continue;
            };
            receipt.remote_nodes += 1;
            receipt.remote_targets += targets.len();
            self.stats.user_frames_out += 1;
            self.outputs.push_back(Output::Frame {
                to: PeerRef {
                    name: Some(node.clone()),
                    addr: peer.addr,
                },
                class: Class::User,
                payload: bytes,
            });
        }
        if ack {
            let aid = AckId(id);
            self.acks.insert(
                aid,
                PendingAck {
                    deadline: now + ACK_TIMEOUT,
                    waiting: remote,
                    outcome: SendOutcome::default(),
                },
            );
            receipt.pending = Some(aid);
        }
        Ok(receipt)
    }

    /// The shell could not queue a frame (the stream is full). Counted; for a user
    /// message the shell reports it to the sender (see [`Node::refuse_ack`]).
    pub fn frame_refused(&mut self, to: &str, class: Class) {
        bump(&mut self.stats.send_errors, "backpressure");
        if class == Class::User {
            tracing::debug!(peer = to, "user frame refused by the transport");
        }
    }

    /// The frame of acknowledged send `id` to `node` was refused by the transport: do
    /// not wait for that node's ack (its targets got nothing).
    pub fn refuse_ack(&mut self, id: AckId, node: &str) {
        let Some(pending) = self.acks.get_mut(&id) else {
            return;
        };
        if pending.waiting.remove(node).is_some() {
            pending.outcome.refused.push(node.to_owned());
        }
        if pending.waiting.is_empty() {
            if let Some(done) = self.acks.remove(&id) {
                self.outputs.push_back(Output::SendResult {
                    id,
                    outcome: done.outcome,
                });
            }
        }
    }

    fn group_targets(&mut self, scope: &str, group: &str, mode: GroupMode) -> Vec<Pid> {
        let mut members = self.registry.members(scope, group);
        members.dedup();
        match mode {
            GroupMode::All => members,
            GroupMode::Local => members
                .into_iter()
                .filter(|p| p.node == self.name)
                .collect(),
            GroupMode::One => {
                if members.is_empty() {
                    return members;
                }
                let i = self.rng.random_range(0..members.len());
                vec![members.swap_remove(i)]
            }
            GroupMode::Nearest => {
                let local: Vec<Pid> = members
                    .iter()
                    .filter(|p| p.node == self.name)
                    .cloned()
                    .collect();
                let pool = if local.is_empty() {
                    let best = members
                        .iter()
                        .filter_map(|p| self.rtt.get(&p.node))
                        .min()
                        .copied();
                    match best {
                        Some(best) => members
                            .iter()
                            .filter(|p| self.rtt.get(&p.node) == Some(&best))
                            .cloned()
                            .collect(),
                        None => members,
                    }
                } else {
                    local
                };
                if pool.is_empty() {
                    return pool;
                }
                let i = self.rng.random_range(0..pool.len());
                vec![pool[i].clone()]
            }
        }
    }

    fn on_user_frame(&mut self, _now: Instant, from: &str, frame: UserFrame) {
        match frame {
            UserFrame::Send {
                id,
                ack,
                from: sender,
                incarnation,
                targets,
                strong,
                payload,
            } => {
                let mut delivered = 0u32;
                let mut failed = Vec::new();
                for local_id in targets {
                    if let Some((name, version)) = &strong {
                        let pid = Pid::new(self.name.clone(), incarnation, local_id);
                        let current = self
                            .quorum
                            .as_mut()
                            .is_some_and(|q| q.check_strong_send(name, *version, &pid));
                        if !current {
                            bump(
                                &mut self.stats.refused_in,
                                Undeliverable::StaleVersion.as_str(),
                            );
                            failed.push((local_id, Undeliverable::StaleVersion));
                            continue;
                        }
                    }
                    let entry = (incarnation == self.boot_incarnation)
                        .then(|| self.processes.get(&local_id))
                        .flatten();
                    let result = match entry {
                        Some(p) => p.mailbox.push(Delivery::Message {
                            from: sender.clone(),
                            payload: payload.clone(),
                        }),
                        None => Err(PushError::Closed),
                    };
                    match result {
                        Ok(()) => {
                            delivered += 1;
                            self.stats.delivered += 1;
                        }
                        Err(e) => {
                            let why = match e {
                                PushError::Full => Undeliverable::MailboxFull,
                                PushError::Closed => Undeliverable::NoProcess,
                            };
                            bump(&mut self.stats.refused_in, why.as_str());
                            failed.push((local_id, why));
                        }
                    }
                }
                if ack {
                    let reply = UserFrame::Ack {
                        id,
                        delivered,
                        failed,
                    };
                    if let (Ok(bytes), Some(peer)) = (wire::encode(&reply), self.peers.get(from)) {
                        self.outputs.push_back(Output::Frame {
                            to: PeerRef {
                                name: Some(from.to_owned()),
                                addr: peer.addr,
                            },
                            class: Class::User,
                            payload: bytes,
                        });
                    }
                }
            }
            UserFrame::Ack {
                id,
                delivered,
                failed,
            } => {
                let aid = AckId(id);
                let Some(pending) = self.acks.get_mut(&aid) else {
                    bump(&mut self.stats.dropped, "late_ack");
                    return;
                };
                let Some((incarnation, _)) = pending.waiting.remove(from) else {
                    bump(&mut self.stats.dropped, "unexpected_ack");
                    return;
                };
                pending.outcome.delivered += delivered as usize;
                pending.outcome.failed.extend(
                    failed
                        .into_iter()
                        .map(|(l, why)| (Pid::new(from, incarnation, l), why)),
                );
                if pending.waiting.is_empty() {
                    if let Some(done) = self.acks.remove(&aid) {
                        self.outputs.push_back(Output::SendResult {
                            id: aid,
                            outcome: done.outcome,
                        });
                    }
                }
            }
        }
    }

    fn expire_acks(&mut self, now: Instant) {
        let due: Vec<AckId> = self
            .acks
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(mut a) = self.acks.remove(&id) {
                a.outcome.timed_out = a.waiting.into_keys().collect();
                self.outputs.push_back(Output::SendResult {
                    id,
                    outcome: a.outcome,
                });
            }
        }
    }

    // ----- sync barrier ----------------------------------------------------------

    /// A propagation barrier: completes ([`Output::SyncDone`]) once `mode`'s peers'
    /// digests cover this node's latest change to groups and names, or at `timeout`.
    /// Starts an anti-entropy round with every live peer so it does not wait for the
    /// periodic ones. (Scopes share one replica, so the barrier covers every scope.)
    pub fn sync(&mut self, now: Instant, mode: SyncMode, timeout: Duration) -> SyncId {
        let id = SyncId(self.next_sync);
        self.next_sync += 1;
        let target = self.own_cover();
        self.syncs.push(SyncWaiter {
            id,
            deadline: now + timeout,
            mode,
            target,
        });
        let peers: Vec<String> = self.peers.keys().cloned().collect();
        for p in peers {
            self.dissem.request_anti_entropy(now, &p);
        }
        self.check_syncs(now);
        self.after_input(now);
        id
    }

    fn own_cover(&self) -> Cover {
        let max = |c: Option<&mesh_crdt::SeqSet>| c.and_then(mesh_crdt::SeqSet::max).unwrap_or(0);
        (
            self.registry.groups().incarnation(),
            max(self.registry.groups().state().context_of(&self.name)),
            max(self.registry.names().state().context_of(&self.name)),
        )
    }

    fn sync_progress(&self, w: &SyncWaiter) -> (usize, usize) {
        let covered = self
            .peers
            .keys()
            .filter(|p| {
                self.cover.get(*p).is_some_and(|c| {
                    c.0 > w.target.0
                        || (c.0 == w.target.0 && c.1 >= w.target.1 && c.2 >= w.target.2)
                })
            })
            .count();
        let n = self.peers.len();
        let needed = match w.mode {
            SyncMode::All => n,
            // A majority of n + 1 nodes, this one included.
            SyncMode::Quorum => n.div_ceil(2),
        };
        (covered, needed)
    }

    fn check_syncs(&mut self, now: Instant) {
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.syncs) {
            let (covered, needed) = self.sync_progress(&w);
            if covered >= needed {
                self.outputs.push_back(Output::SyncDone {
                    id: w.id,
                    result: Ok(()),
                });
            } else if now >= w.deadline {
                self.outputs.push_back(Output::SyncDone {
                    id: w.id,
                    result: Err(SyncError::Timeout { covered, needed }),
                });
            } else {
                keep.push(w);
            }
        }
        self.syncs = keep;
    }

    fn learn_digests(
        &mut self,
        now: Instant,
        peer: &str,
        groups: &Digest<String>,
        names: &Digest<String>,
    ) {
        if let Some(me) = groups.get(&self.name) {
            let names_seq = names.get(&self.name).map_or(0, |d| d.contiguous);
            self.cover
                .insert(peer.to_owned(), (me.incarnation, me.contiguous, names_seq));
        }
        // The peer's own partition header tells its current incarnation.
        if self.peers.contains_key(peer) {
            if let Some(own) = groups.get(&peer.to_owned()) {
                self.registry.node_alive(now, peer, own.incarnation);
            }
        }
        self.check_syncs(now);
    }

    // ----- plumbing --------------------------------------------------------------

    /// Merges an anti-entropy piece; a refused delta is counted (the registry says why).
    fn merge_state(
        &mut self,
        now: Instant,
        groups: &mesh_crdt::Delta<String, crate::registry::GroupEntry>,
        names: &mesh_crdt::Delta<String, crate::registry::NameClaim>,
    ) {
        if self.registry.merge_groups(now, groups, &[]).is_err() {
            bump(&mut self.stats.dropped, "refused_delta");
        }
        if self.registry.merge_names(now, names).is_err() {
            bump(&mut self.stats.dropped, "refused_delta");
        }
    }

    /// Hands an item to dissemination (`own`: made here, so pushed directly to every
    /// peer in a cluster of up to [`DIRECT_MAX_PEERS`] peers); a refusal is counted there
    /// and here.
    fn spread(&mut self, now: Instant, channel: ChannelId, item: Bytes, own: bool) {
        let pushed = if own {
            self.dissem.push_own(now, channel, item)
        } else {
            self.dissem.push(now, channel, item)
        };
        if pushed.is_err() {
            bump(&mut self.stats.dropped, "dissemination_refused");
        }
    }

    fn apply_item(&mut self, now: Instant, channel: ChannelId, item: Bytes) {
        self.stats.delta_bytes_in += item.len() as u64;
        let changed = if channel == GROUPS {
            match wire::decode::<GroupsItem>(&item) {
                Ok(g) => {
                    let Ok(changed) = self.registry.merge_groups(now, &g.delta, &g.exited) else {
                        bump(&mut self.stats.dropped, "refused_delta");
                        return;
                    };
                    if changed {
                        if let Some(t) = g.sent_at {
                            let lag = self.wall_ms(now).saturating_sub(t);
                            self.lags.push(Duration::from_millis(lag));
                        }
                    }
                    changed
                }
                Err(_) => {
                    bump(&mut self.stats.dropped, "malformed_delta");
                    return;
                }
            }
        } else if channel == NAMES {
            match wire::decode::<mesh_crdt::Delta<String, crate::registry::NameClaim>>(&item) {
                Ok(d) => match self.registry.merge_names(now, &d) {
                    Ok(changed) => changed,
                    Err(_) => {
                        bump(&mut self.stats.dropped, "refused_delta");
                        return;
                    }
                },
                Err(_) => {
                    bump(&mut self.stats.dropped, "malformed_delta");
                    return;
                }
            }
        } else {
            bump(&mut self.stats.dropped, "unknown_channel");
            return;
        };
        if changed {
            self.stats.deltas_applied += 1;
            // Rumor mongering: what was news here is passed on.
            self.spread(now, channel, item, false);
        }
    }

    fn push_state(
        &mut self,
        peer: &str,
        groups: mesh_crdt::Delta<String, crate::registry::GroupEntry>,
        names: mesh_crdt::Delta<String, crate::registry::NameClaim>,
    ) {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return;
        };
        let g = groups.chunks(AE_PUSH_CHUNK).unwrap_or_default();
        let n = names.chunks(AE_PUSH_CHUNK).unwrap_or_default();
        let pieces = g.len().max(n.len());
        let mut g = g.into_iter();
        let mut n = n.into_iter();
        for _ in 0..pieces {
            let frame = StateFrame::Push {
                groups: g.next().unwrap_or_default(),
                names: n.next().unwrap_or_default(),
            };
            if let Ok(bytes) = wire::encode(&frame) {
                self.stats.ae_bytes_out += bytes.len() as u64;
                self.outputs.push_back(Output::Frame {
                    to: PeerRef {
                        name: Some(peer.to_owned()),
                        addr,
                    },
                    class: Class::State,
                    payload: bytes,
                });
            }
        }
    }

    fn start_ae(&mut self, now: Instant, peer: &str) {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return;
        };
        let req = AeRequest {
            groups: self.registry.groups().digest(),
            names: self.registry.names().digest(),
        };
        let Ok(payload) = wire::encode(&req) else {
            bump(&mut self.stats.dropped, "encode_failed");
            return;
        };
        let tag = RequestTag(self.next_tag);
        self.next_tag += 1;
        self.stats.ae_started += 1;
        self.stats.ae_bytes_out += payload.len() as u64;
        self.ae_pending.insert(tag, (peer.to_owned(), now));
        self.outputs.push_back(Output::Request {
            to: PeerRef {
                name: Some(peer.to_owned()),
                addr,
            },
            tag,
            class: Class::State,
            payload,
        });
    }

    /// Moves what every sub-machine produced into the node's outputs.
    fn after_input(&mut self, now: Instant) {
        // Membership first: its events change the peer set the others use.
        while let Some(out) = self.membership.poll_output() {
            match out {
                SwimOutput::Send { to, data } => {
                    // A seed known only by address still gets deltas: they reach
                    // whoever answers there.
                    match self.dissem.wrap_datagram(now, &to.name, &data) {
                        Ok(data) => self.outputs.push_back(Output::Datagram { to, data }),
                        // Cannot happen with a valid packet size (checked at compile
                        // time in dissemination); counted if it ever does.
                        Err(_) => bump(&mut self.stats.dropped, "swim_too_large"),
                    }
                }
                SwimOutput::Timer { at, timer } => {
                    self.outputs.push_back(Output::Timer { at, timer });
                }
                SwimOutput::Event(ev) => self.on_membership_event(now, ev),
            }
        }
        self.drain_registry(now);
        self.drain_quorum(now);
        while let Some(out) = self.dissem.poll_output() {
            match out {
                DisseminationOutput::Batch { to, frame } => {
                    let Some(addr) = self.peers.get(&to).map(|p| p.addr) else {
                        continue;
                    };
                    if let Ok(payload) = wire::encode(&StateFrame::Batch(frame)) {
                        self.outputs.push_back(Output::Frame {
                            to: PeerRef {
                                name: Some(to),
                                addr,
                            },
                            class: Class::State,
                            payload,
                        });
                    }
                }
                DisseminationOutput::AntiEntropy { with } => {
                    self.start_ae(now, &with);
                }
            }
        }
    }

    fn on_membership_event(&mut self, now: Instant, ev: MembershipEvent) {
        let name = ev.member.name.clone();
        match ev.kind {
            EventKind::Up => {
                self.peers.insert(name.clone(), ev.member.clone());
                self.dissem.set_peers(now, &self.peer_names());
                // A node whose entries we hide: hear from it now, its digest tells
                // whether to unhide them (same incarnation) or drop them (a restart).
                // Others are reached by the periodic rounds; an exchange per Up would
                // cost N² digests when a cluster forms.
                if self.registry.hidden_nodes().contains(&name) {
                    self.dissem.request_anti_entropy(now, &name);
                }
            }
            EventKind::Suspect | EventKind::Alive => {
                self.peers.insert(name, ev.member.clone());
            }
            EventKind::Down | EventKind::Left => {
                if self
                    .peers
                    .get(&name)
                    .is_some_and(|p| p.incarnation <= ev.member.incarnation)
                {
                    self.peers.remove(&name);
                    self.cover.remove(&name);
                    self.dissem.set_peers(now, &self.peer_names());
                    self.registry.node_down(now, &name);
                }
            }
        }
        if let Some(q) = self.quorum.as_mut() {
            q.set_live(now, self.peers.keys().cloned());
        }
        self.outputs.push_back(Output::Membership(ev));
    }

    fn peer_names(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    fn drain_quorum(&mut self, now: Instant) {
        let Some(q) = self.quorum.as_mut() else {
            return;
        };
        let mut outs = Vec::new();
        while let Some(o) = q.poll_output() {
            outs.push(o);
        }
        for o in outs {
            match o {
                QuorumOutput::Send { to, payload } => {
                    let Some(addr) = self.peers.get(&to).map(|p| p.addr) else {
                        // Not a live member (yet): formation retries, proposers time out.
                        bump(&mut self.stats.dropped, "peer_unreachable");
                        continue;
                    };
                    match wire::encode(&ControlFrame::Quorum(payload)) {
                        Ok(payload) => self.outputs.push_back(Output::Frame {
                            to: PeerRef {
                                name: Some(to),
                                addr,
                            },
                            class: Class::Control,
                            payload,
                        }),
                        Err(_) => bump(&mut self.stats.dropped, "encode_failed"),
                    }
                }
                QuorumOutput::Persist { id, entries } => {
                    self.outputs.push_back(Output::Persist { id, entries });
                }
                QuorumOutput::PersistRoot(root) => {
                    self.outputs.push_back(Output::PersistRoot(root))
                }
                QuorumOutput::Fatal(why) => self.outputs.push_back(Output::Fatal(why)),
                QuorumOutput::CallDone { call, result } => {
                    self.outputs.push_back(Output::ClaimDone { call, result });
                }
                QuorumOutput::Holder(ev) => self.outputs.push_back(Output::ClaimEvent(ev)),
                QuorumOutput::ReadDone { id, result } => {
                    self.outputs.push_back(Output::ShardRead { id, result });
                }
            }
        }
        let _ = now;
    }

    fn drain_registry(&mut self, now: Instant) {
        while let Some(out) = self.registry.poll_output() {
            match out {
                RegistryOutput::GroupsDelta { delta, exited } => {
                    let sent_at = Some(self.wall_ms(now));
                    for piece in delta.chunks(DELTA_PIECE).unwrap_or_default() {
                        let item = GroupsItem {
                            delta: piece,
                            exited: exited.clone(),
                            sent_at,
                        };
                        match wire::encode(&item) {
                            Ok(bytes) => self.spread(now, GROUPS, bytes, true),
                            Err(_) => bump(&mut self.stats.dropped, "encode_failed"),
                        }
                    }
                }
                RegistryOutput::NamesDelta(delta) => {
                    for piece in delta.chunks(DELTA_PIECE).unwrap_or_default() {
                        match wire::encode(&piece) {
                            Ok(bytes) => self.spread(now, NAMES, bytes, true),
                            Err(_) => bump(&mut self.stats.dropped, "encode_failed"),
                        }
                    }
                }
                RegistryOutput::Monitor { id, event } => {
                    let Some(m) = self.monitors.get(&id) else {
                        continue;
                    };
                    if m.inbox.push(MonitorItem::Event(event)).is_err() {
                        let _ = m.inbox.push_notice(MonitorItem::Overflowed);
                        self.stats.monitors_overflowed += 1;
                        self.registry.demonitor(id);
                        self.monitors.remove(&id);
                    }
                }
                RegistryOutput::NameConflict {
                    name,
                    loser,
                    winner,
                } => {
                    if let Some(id) = self.local_id(&loser) {
                        let _ = self.processes[&id]
                            .mailbox
                            .push_notice(Delivery::NameConflict { name, winner });
                    }
                }
                RegistryOutput::Kill { pid, .. } => {
                    if let Some(p) = self.processes.remove(&pid.local_id) {
                        p.mailbox.close();
                        self.stats.processes_exited += 1;
                        self.registry.process_exited(now, &pid);
                    }
                }
            }
        }
    }
}

/// Cuts an anti-entropy response to [`AE_RESPONSE_BUDGET`]: causally safe pieces of
/// each delta, as many as fit (the requester gets the rest in later rounds).
fn trim_response(mut r: AeResponse) -> AeResponse {
    fn fit<E>(d: mesh_crdt::Delta<String, E>, budget: usize) -> (mesh_crdt::Delta<String, E>, usize)
    where
        E: Serialize + serde::de::DeserializeOwned + Ord + Clone + std::hash::Hash,
    {
        let len = d.encoded_len().unwrap_or(usize::MAX);
        if len <= budget {
            return (d, len);
        }
        let mut out = mesh_crdt::Delta::new();
        let mut used = 0;
        for piece in d.chunks(AE_PUSH_CHUNK).unwrap_or_default() {
            let l = piece.encoded_len().unwrap_or(usize::MAX);
            if used + l > budget {
                break;
            }
            used += l;
            out.merge(&piece);
        }
        (out, used)
    }
    let (g, used) = fit(r.groups, AE_RESPONSE_BUDGET);
    let (n, _) = fit(r.names, AE_RESPONSE_BUDGET.saturating_sub(used));
    r.groups = g;
    r.names = n;
    r
}

/// A local operation failed: either the PID is not local, or the operation itself
/// refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeOpError<E> {
    /// The PID is not a live process of this node.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The operation refused.
    #[error(transparent)]
    Op(E),
}
