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
//!  Command ──▶│ handle_command: spawn/exit, join/leave, register, send, sync,    │─▶ Completed (one per command)
//!             │ monitor, claims and strong names (module `command`)              │
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
//! - **N7 no state without a member.** Groups and names state of an origin SWIM has
//!   never seen is not merged and not relayed (counted as `unknown_origin`); once the
//!   origin comes up, this node asks it for its state. So state pushed for a node that
//!   never joined cannot linger past every permdown (down hides only what a member had).
//!
//! DNS seeds: the node decides when a DNS seed is looked up ([`crate::discovery`]: only
//! while alone, with backoff), asks the shell with [`Output::ResolveSeed`], and takes
//! the answer with [`Node::handle_seed_resolved`]; new addresses join the static seeds.
//!
//! Liveness (checked in the simulator over many seeds):
//! - **N5 convergence.** After a heal, every live node's visible groups and names are
//!   equal: deltas ride SWIM packets and stream batches, and anti-entropy repairs
//!   whatever those lost — even if they lost everything.
//! - **N6 barrier.** [`Command::Sync`] completes once the chosen peers' digests cover this
//!   node's latest change, or fails at its deadline.

mod anti_entropy;
mod barrier;
pub mod claims_plane;
pub mod command;
mod processes;
mod send;
mod tagging;
pub(crate) mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_types::frame::Class;
use mesh_types::PeerRef;
use rand::rngs::StdRng;
use rand::SeedableRng;

use barrier::{Cover, SyncWaiter};
use processes::{MonitorEntry, ProcEntry};
use send::PendingAck;

use crate::discovery::{Discovery, DiscoveryConfig, Resolve, ResolveFailure};
use crate::dissemination::{
    self, ChannelId, ConfigError as DisseminationConfigError, Dissemination, DisseminationConfig,
    DisseminationOutput,
};
use crate::identity::NodeId;
use crate::membership::{
    EventKind, Membership, MembershipConfig, MembershipEvent, Output as SwimOutput, SwimTimer,
};
use crate::process::{Delivery, DEFAULT_MAILBOX_CAPACITY};
use crate::registry::{MonitorId, Registry, RegistryConfig, RegistryOutput};
use crate::tags::TagTable;

pub use anti_entropy::{AE_PUSH_CHUNK, AE_RESPONSE_BUDGET, DELTA_PIECE};
pub use barrier::{SyncError, SyncId, SyncMode};
pub use command::{AnnounceError, Command, CommandId, GroupError, NameError, ReadError, Reply};
pub use processes::{
    LimitError, MonitorItem, ProcessError, Resource, DEFAULT_MAX_MONITORS, DEFAULT_MAX_PROCESSES,
    MONITOR_CAPACITY,
};
pub use send::{
    AckId, Dest, GroupMode, SendError, SendOutcome, SendReceipt, ACK_TIMEOUT, MAX_PAYLOAD,
};
pub use wire::{
    AeRequest, AeResponse, ControlFrame, GroupsItem, StateFrame, Undeliverable, UserFrame,
};

use claims_plane::{
    CallError, ClaimCall, QuorumConfig, QuorumOutput, QuorumPlane, QuorumSetupError,
};

/// The dissemination channel of group deltas.
pub const GROUPS: ChannelId = ChannelId(0);
/// The dissemination channel of eventual-name deltas.
pub const NAMES: ChannelId = ChannelId(1);
/// The dissemination channel of node tags ([`crate::tags`]).
pub const TAGS: ChannelId = ChannelId(2);

/// Most origins remembered as refused (N7) until they come up; beyond it, their state
/// comes with the periodic anti-entropy rounds.
pub const MAX_UNKNOWN_ORIGINS: usize = 1024;

/// Up to this many live peers, a change made on this node is pushed to every peer
/// directly (dissemination's direct push, D1): one hop, `n` small frames per change.
pub const DIRECT_MAX_PEERS: usize = 64;

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
    /// Most live local processes a [`Command::Spawn`] may make; one more is refused
    /// ([`Reply::OverLimit`]).
    pub max_processes: usize,
    /// Most open monitors a [`Command::Monitor`] may make; one more is refused.
    pub max_monitors: usize,
    /// The quorum plane (claims, strong names); `None` when no voters are configured.
    pub quorum: Option<QuorumBoot>,
    /// This node's tags at boot (checked against [`mesh_types::tags`]'s limits).
    pub tags: mesh_types::tags::Tags,
    /// DNS seeds and when to look them up ([`crate::discovery`]); their addresses join
    /// the static `membership.seeds`.
    pub discovery: DiscoveryConfig,
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
            max_processes: DEFAULT_MAX_PROCESSES,
            max_monitors: DEFAULT_MAX_MONITORS,
            quorum: None,
            tags: mesh_types::tags::Tags::new(),
            discovery: DiscoveryConfig::default(),
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
    /// The boot tags break the limits.
    #[error("tags: {0}")]
    Tags(mesh_types::tags::TagError),
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

/// Identifies an operation in flight inside the node; its end answers the command that
/// started it ([`command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum OpId {
    /// An acknowledged send.
    Send(AckId),
    /// A barrier ([`Node::sync`]).
    Sync(SyncId),
    /// A claims or strong-name call ([`Node::claims_call`], [`Node::claim`], ...).
    Claims(ClaimCall),
    /// A linearizable shard read ([`Node::read_shard`]).
    Read(u64),
}

/// How an operation in flight ended; the variant matches the [`OpId`]'s.
#[derive(Debug, Clone)]
pub(crate) enum Completion {
    /// What happened remotely to an acknowledged send.
    Send(SendOutcome),
    /// The barrier was covered, or not in time.
    Sync(Result<(), SyncError>),
    /// The call's result.
    Claims(Result<crate::claims::CallOk, crate::claims::ClaimsError>),
    /// The table (`None`: never written), or a timeout.
    Read(Result<Option<crate::claims::ShardTable>, crate::quorum::ProposeError>),
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
    /// A command ([`Node::handle_command`]) ended: exactly one of these per command
    /// (C1 in [`command`]), with the id the shell gave it.
    Completed {
        /// Which command.
        id: CommandId,
        /// How it ended.
        result: Reply,
    },
    /// Once every output before this one is carried out (each refused frame reported
    /// with [`Node::frame_refused`]), call [`Node::handle_carried`] with this mark: a
    /// send's reply depends on which of its frames the transport took (C4 in
    /// [`command`]).
    Carried(u64),
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
    /// An ended hold's release is over ([`Command::EndHold`]).
    HoldEnded {
        /// The task.
        task: String,
        /// The hold's token.
        token: u64,
        /// How the release ended.
        outcome: crate::claims::HoldOutcome,
    },
    /// A claim was lost or assigned without a call (see
    /// [`HolderEvent`](crate::claims::HolderEvent)).
    ClaimEvent(crate::claims::HolderEvent),
    /// Look this DNS seed up, then call [`Node::handle_seed_resolved`] with its
    /// `index` and the addresses (or why there are none).
    ResolveSeed(Resolve),
}

/// Counters the shell publishes as metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Commands refused by a resource limit ([`Reply::OverLimit`]), by resource.
    pub over_limit: BTreeMap<&'static str, u64>,
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
    /// Smoothed round trip per live peer, from anti-entropy requests.
    rtt: HashMap<String, Duration>,
    /// Every live member's tags.
    tags: TagTable,
    ae_pending: HashMap<RequestTag, (String, Instant)>,
    next_tag: u64,
    acks: BTreeMap<AckId, PendingAck>,
    commands: command::Commands,
    next_msg_id: u64,
    cover: HashMap<String, Cover>,
    syncs: Vec<SyncWaiter>,
    next_sync: u64,
    outputs: VecDeque<Output>,
    lags: Vec<Duration>,
    stats: NodeStats,
    quorum: Option<QuorumPlane>,
    /// DNS seeds; `None` when none are configured or once the node leaves.
    discovery: Option<Discovery>,
    /// Origins whose state was refused because SWIM had never seen them (N7): asked for
    /// their state by anti-entropy when they come up.
    unknown_origins: BTreeSet<String>,
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

crate::reason::reasons! {
    /// Why the node dropped an input (or an output it could not send) before any state
    /// machine saw it; counted in [`NodeStats::dropped`] under [`DropReason::as_str`].
    pub enum DropReason {
        /// A datagram that did not decode (SWIM and piggybacked items).
        MalformedDatagram => "malformed_datagram",
        /// Items piggybacked on a datagram SWIM refused: not trusted with state.
        PiggybackOfRefusedDatagram => "piggyback_of_refused_datagram",
        /// A dissemination batch frame that did not decode.
        MalformedBatch => "malformed_batch",
        /// A state-stream frame that did not decode.
        MalformedStateFrame => "malformed_state_frame",
        /// A user-stream frame that did not decode.
        MalformedUserFrame => "malformed_user_frame",
        /// A delta item that did not decode.
        MalformedDelta => "malformed_delta",
        /// An anti-entropy request that did not decode.
        MalformedAeRequest => "malformed_ae_request",
        /// An anti-entropy response that did not decode.
        MalformedAeResponse => "malformed_ae_response",
        /// A delta item on a channel this node does not have.
        UnknownChannel => "unknown_channel",
        /// A response to no request of this node's.
        UnknownResponse => "unknown_response",
        /// An ack for a send whose outcome was already reported.
        LateAck => "late_ack",
        /// An ack from a node the send was not waiting for.
        UnexpectedAck => "unexpected_ack",
        /// A delta the registry refused (it says why in its own counters).
        RefusedDelta => "refused_delta",
        /// An item dissemination refused to carry.
        DisseminationRefused => "dissemination_refused",
        /// A SWIM packet that no longer fit with its trailer (never expected).
        SwimTooLarge => "swim_too_large",
        /// Something this node built did not encode (never expected).
        EncodeFailed => "encode_failed",
        /// A frame or request of a class nothing here speaks.
        NoHandler => "no_handler",
        /// A control-stream frame that did not decode.
        MalformedControlFrame => "malformed_control_frame",
        /// A quorum message to a node that is not a live member.
        PeerUnreachable => "peer_unreachable",
        /// Groups or names state of an origin SWIM has never seen (N7): not merged, not
        /// relayed.
        UnknownOrigin => "unknown_origin",
    }
}

/// Counts one more `key` (a reason's label) in `map`.
fn bump(map: &mut BTreeMap<&'static str, u64>, key: &'static str) {
    *map.entry(key).or_default() += 1;
}

impl NodeStats {
    /// Counts a dropped input.
    fn drop_input(&mut self, why: DropReason) {
        bump(&mut self.dropped, why.as_str());
    }
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
        let discovery = (!config.discovery.seeds.is_empty())
            .then(|| Discovery::new(config.discovery.clone(), rng_seed ^ 0x646e_7373, now));
        let mut registry = Registry::new(name.clone(), boot_incarnation, config.registry.clone());
        registry.announce();
        let dissem = Dissemination::new(
            config.dissemination.clone(),
            &[(GROUPS, "groups"), (NAMES, "names"), (TAGS, "tags")],
            rng_seed ^ 0x6469_7373,
        )
        .map_err(NodeError::Dissemination)?;
        let tags = TagTable::new(name.clone(), boot_incarnation, config.tags.clone())
            .map_err(NodeError::Tags)?;
        let mut node = Self {
            tags,
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
            commands: command::Commands::default(),
            next_msg_id: 1,
            cover: HashMap::new(),
            syncs: Vec::new(),
            next_sync: 1,
            outputs: VecDeque::new(),
            lags: Vec::new(),
            stats: NodeStats::default(),
            quorum,
            discovery,
            unknown_origins: BTreeSet::new(),
        };
        node.drain_registry(now);
        Ok(node)
    }

    // ----- accessors -------------------------------------------------------------

    /// DNS seed discovery, when DNS seeds are configured (and the node has not left).
    pub fn discovery(&self) -> Option<&Discovery> {
        self.discovery.as_ref()
    }

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

    /// Every live member's tags, this node's own included (read-only).
    pub fn tags(&self) -> &TagTable {
        &self.tags
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

    /// The settings this node was built with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The smoothed round trip to `peer`, measured on its anti-entropy requests; `None`
    /// until one has been answered (or for an unknown peer).
    pub fn rtt(&self, peer: &str) -> Option<Duration> {
        self.rtt.get(peer).copied()
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
            self.announce_deadline(),
            self.discovery.as_ref().and_then(Discovery::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- network inputs --------------------------------------------------------

    /// A datagram arrived on a connection whose certificate names `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: &str, data: &[u8]) {
        let Ok((swim, items)) = Dissemination::unwrap_datagram(data) else {
            self.stats.drop_input(DropReason::MalformedDatagram);
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
            self.stats
                .drop_input(DropReason::PiggybackOfRefusedDatagram);
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
                    Err(_) => self.stats.drop_input(DropReason::MalformedBatch),
                },
                Ok(StateFrame::Push {
                    groups,
                    names,
                    tags,
                }) => {
                    self.stats.ae_bytes_in += payload.len() as u64;
                    self.merge_state(now, &groups, &names);
                    self.merge_tags(now, &tags);
                }
                Err(_) => self.stats.drop_input(DropReason::MalformedStateFrame),
            },
            Class::User => match wire::decode::<UserFrame>(payload) {
                Ok(frame) => self.on_user_frame(now, from, frame),
                Err(_) => self.stats.drop_input(DropReason::MalformedUserFrame),
            },
            Class::Control => match wire::decode::<ControlFrame>(payload) {
                Ok(ControlFrame::Quorum(bytes)) => match self.quorum.as_mut() {
                    Some(q) => q.handle_message(now, from, &bytes),
                    // No voters configured here: nothing speaks the quorum plane.
                    None => self.stats.drop_input(DropReason::NoHandler),
                },
                Err(_) => self.stats.drop_input(DropReason::MalformedControlFrame),
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
            self.stats.drop_input(DropReason::NoHandler);
            return Err(RequestRefused::NoHandler(class));
        }
        let Ok(req) = wire::decode::<AeRequest>(payload) else {
            self.stats.drop_input(DropReason::MalformedAeRequest);
            return Err(RequestRefused::Malformed);
        };
        let bytes = self.answer_ae(now, from, &req, payload.len())?;
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
        self.ae_answered(now, tag, result);
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
        self.check_announces(now);
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
    /// `None`); its result comes as [`Output::Completed`]. Fails at once, with nothing
    /// submitted, when no voters are configured or too few are reachable.
    pub(crate) fn claims_call(
        &mut self,
        now: Instant,
        ttl: Option<Duration>,
        f: impl FnOnce(
            &mut crate::claims::Holder,
            Instant,
        ) -> Result<crate::claims::CallId, crate::claims::ClaimsError>,
    ) -> Result<ClaimCall, CallError> {
        self.with_quorum(now, |q| q.call(now, ttl, f))
    }

    /// Claims `task` on the holder of `ttl` (the default TTL if `None`); like
    /// [`Node::claims_call`], and refused at once if this node holds the task under
    /// another TTL ([`CallError::HeldWithOtherTtl`]).
    pub(crate) fn claim(
        &mut self,
        now: Instant,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<ClaimCall, CallError> {
        self.with_quorum(now, |q| q.claim(now, task, ttl))
    }

    /// Releases `task` if `token` is this node's current token for it (else
    /// `StaleToken`, nothing changed); like [`Node::claims_call`], on whichever holder
    /// holds the task.
    pub(crate) fn release(
        &mut self,
        now: Instant,
        task: &str,
        token: u64,
    ) -> Result<ClaimCall, CallError> {
        self.with_quorum(now, |q| q.release(now, task, token))
    }

    /// Runs `f` on the quorum plane (refused with `NoVoters` when none are configured)
    /// and moves what it produced into the node's outputs.
    fn with_quorum<T>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut QuorumPlane) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let Some(q) = self.quorum.as_mut() else {
            return Err(CallError::Claims(crate::claims::ClaimsError::Unavailable {
                reason: crate::claims::Unavailable::NoVoters,
            }));
        };
        let r = f(q);
        self.after_input(now);
        r
    }

    /// Opens a hold on `task` ([`crate::claims::hold`]): claims it (the result comes as
    /// [`Output::Completed`]) and excludes every other claim of it on this node until the
    /// hold ends ([`Command::EndHold`]) and its release is over.
    pub(crate) fn hold(
        &mut self,
        now: Instant,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<ClaimCall, CallError> {
        self.with_quorum(now, |q| q.hold(now, task, ttl))
    }

    /// The hold on `task` ended (its client went away): its claim is released, with
    /// retries, unless it was lost; the outcome comes as [`Output::HoldEnded`].
    pub(crate) fn end_hold(&mut self, now: Instant, task: &str) {
        if let Some(q) = self.quorum.as_mut() {
            q.end_hold(now, task);
        }
        self.after_input(now);
    }

    /// Starts a linearizable read of a shard table; the result comes as
    /// [`Output::Completed`]. `None` if the quorum plane is off or not formed yet.
    pub(crate) fn read_shard(
        &mut self,
        now: Instant,
        shard: crate::claims::ShardId,
    ) -> Option<u64> {
        let id = self.quorum.as_mut()?.read(now, shard);
        self.after_input(now);
        id
    }

    /// Leaves the cluster gracefully (peers see `left`).
    pub fn leave(&mut self, now: Instant) {
        self.discovery = None;
        self.membership.leave(now);
        self.after_input(now);
    }

    /// The lookup asked for by [`Output::ResolveSeed`] with `index` ended. New
    /// addresses become seeds at once (static seeds first); a failure keeps the last
    /// good ones (D3 in [`crate::discovery`]). Returns true when the name's addresses
    /// changed (the shell logs it).
    pub fn handle_seed_resolved(
        &mut self,
        now: Instant,
        index: usize,
        result: Result<Vec<std::net::SocketAddr>, ResolveFailure>,
    ) -> bool {
        let mut changed = false;
        if let Some(d) = self.discovery.as_mut() {
            if d.handle_resolved(now, index, result) {
                changed = true;
                let mut seeds = self.config.membership.seeds.clone();
                seeds.extend(d.addresses());
                self.membership.set_seeds(now, seeds);
            }
        }
        self.after_input(now);
        changed
    }

    /// Asks for the DNS lookups due now (D1, D2 in [`crate::discovery`]).
    fn drive_discovery(&mut self, now: Instant) {
        let Some(d) = self.discovery.as_mut() else {
            return;
        };
        d.set_alone(now, self.membership.live_count() == 0);
        while let Some(r) = d.poll_resolve(now) {
            self.outputs.push_back(Output::ResolveSeed(r));
        }
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
                        Err(_) => self.stats.drop_input(DropReason::SwimTooLarge),
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
        self.drive_discovery(now);
    }

    fn on_membership_event(&mut self, now: Instant, ev: MembershipEvent) {
        let name = ev.member.name.clone();
        match ev.kind {
            EventKind::Up => {
                self.peers.insert(name.clone(), ev.member.clone());
                self.tags.member_up(&name, ev.member.incarnation);
                self.check_announces(now);
                self.dissem.set_peers(now, &self.peer_names());
                // A node whose entries we hide: hear from it now, its digest tells
                // whether to unhide them (same incarnation) or drop them (a restart).
                // Others are reached by the periodic rounds; an exchange per Up would
                // cost N² digests when a cluster forms.
                let refused = self.unknown_origins.remove(&name);
                if refused || self.registry.hidden_nodes().contains(&name) {
                    self.dissem.request_anti_entropy(now, &name);
                }
            }
            EventKind::Suspect | EventKind::Alive => {
                self.peers.insert(name, ev.member.clone());
            }
            // Made by this node (below), not by SWIM.
            EventKind::Tags => {}
            EventKind::Down | EventKind::Left => {
                if self
                    .peers
                    .get(&name)
                    .is_some_and(|p| p.incarnation <= ev.member.incarnation)
                {
                    self.peers.remove(&name);
                    self.cover.remove(&name);
                    self.rtt.remove(&name);
                    self.tags.member_gone(&name, ev.member.incarnation);
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
                QuorumOutput::Send { to, frame } => {
                    let Some(addr) = self.peers.get(&to).map(|p| p.addr) else {
                        // Not a live member (yet): formation retries, proposers time out.
                        self.stats.drop_input(DropReason::PeerUnreachable);
                        continue;
                    };
                    self.outputs.push_back(Output::Frame {
                        to: PeerRef {
                            name: Some(to),
                            addr,
                        },
                        class: Class::Control,
                        payload: frame,
                    });
                }
                QuorumOutput::Persist { id, entries } => {
                    self.outputs.push_back(Output::Persist { id, entries });
                }
                QuorumOutput::PersistRoot(root) => {
                    self.outputs.push_back(Output::PersistRoot(root))
                }
                QuorumOutput::Fatal(why) => self.outputs.push_back(Output::Fatal(why)),
                QuorumOutput::CallDone { call, result } => {
                    self.finish(OpId::Claims(call), Completion::Claims(result));
                }
                QuorumOutput::Holder(ev) => self.outputs.push_back(Output::ClaimEvent(ev)),
                QuorumOutput::HoldEnded {
                    task,
                    token,
                    outcome,
                } => self.outputs.push_back(Output::HoldEnded {
                    task,
                    token,
                    outcome,
                }),
                QuorumOutput::ReadDone { id, result } => {
                    self.finish(OpId::Read(id), Completion::Read(result));
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
                            Err(_) => self.stats.drop_input(DropReason::EncodeFailed),
                        }
                    }
                }
                RegistryOutput::NamesDelta(delta) => {
                    for piece in delta.chunks(DELTA_PIECE).unwrap_or_default() {
                        match wire::encode(&piece) {
                            Ok(bytes) => self.spread(now, NAMES, bytes, true),
                            Err(_) => self.stats.drop_input(DropReason::EncodeFailed),
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
