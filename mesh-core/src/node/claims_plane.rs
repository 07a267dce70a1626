//! The claims plane: the quorum machinery inside the node — voter formation, the
//! acceptor with group commit, the proposer, forwarding to a shard's preferred proposer,
//! the claims holders and the watcher, holds, and the strong-name cache. Sans-IO like the rest of the node: the shell
//! persists what [`QuorumOutput::Persist`] asks (fsync) and hands the result back.
//!
//! ```text
//!  API ─▶ Holder(ttl) ─┐                      ┌─▶ Control frame: Forward ─▶ preferred proposer
//!         Watcher ─────┴─ submission ─▶ route ┤
//!                                             └─▶ Proposer ─▶ Request frames ─▶ acceptors
//!  Request frame ─▶ Acceptor ─▶ GroupCommit ─▶ Persist (fsync) ─▶ Reply frames
//!  Reply frame ─▶ Proposer ─▶ completion ─▶ holder / watcher / Forwarded frame
//! ```
//!
//! # Properties
//!
//! - **Q1 persist before reply.** An acceptor's reply leaves only after every state
//!   its outputs wrote up to it is durable (one commit in flight at a time, replies
//!   released in output order; a failed commit stops the node, [`QuorumOutput::Fatal`]).
//! - **Q2 the root decides who votes.** Requests are addressed to an acceptor id from
//!   the root record; a node answers only as the acceptor its store holds and the root
//!   lists (a wiped voter never answers under its old id), and a proposer counts
//!   replies only from the root's acceptor ids.
//! - **Q3 one proposer per shard when possible.** A change goes to the shard's
//!   HRW-preferred proposer among the live voters; if it does not answer within
//!   [`QuorumConfig::forward_timeout`] the caller sees a timeout and its retry (same
//!   request id, so at most once) goes to the next voter in HRW order, and only when
//!   every live voter timed out is it proposed here. (The claims simulation showed that
//!   falling back to local proposals at once makes every node duel on the shard and
//!   renews get lost.) Safety never depends on who proposes. These rules, and which
//!   shards this node watches, are [`routing`]'s, which the claims simulation runs too.
//! - **Q4 unavailable is explicit.** With no voters configured, before the root is in
//!   force, or with fewer than a majority of voters reachable, calls fail at once with
//!   [`Unavailable`]; they never fall back to eventual names.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::claims::hold::ReleaseAnswer;
use crate::claims::{
    CallId, CallOk, ClaimsError, Drift, HoldOutcome, Holder, HolderConfig, HolderEvent,
    HolderStats, Holds, NameCache, ShardChange, ShardId, ShardOutcome, ShardSlot, ShardTable,
    StrongName, Submission, Unavailable, Watcher, WatcherConfig,
};
use crate::pid::Pid;
use crate::quorum::{
    majority, proposer_id, Acceptor, AcceptorState, Formation, FormationConfig, FormationOutput,
    GroupCommit, Hello, NodeId, OpId, ProposeError, Proposer, ProposerConfig, ProposerOutput,
    Reply, Request, RequestId, RootRecord, VoterNames,
};

use super::wire;

pub mod routing;

use routing::{Route, Router};

/// The quorum plane's settings (the same on every node of a cluster).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// The voters (3 or 5 names).
    pub voters: VoterNames,
    /// Number of shards, fixed at cluster creation.
    pub shards: u32,
    /// Default session TTL for claims.
    pub ttl: Duration,
    /// Clock-rate error bound ρ of every node.
    pub drift: Drift,
    /// Subtracted from every validity.
    pub guard: Duration,
    /// Proposer timings.
    pub proposer: ProposerConfig,
    /// How long a change forwarded to the preferred proposer may take before the
    /// caller's retry goes to the next voter (at most a quarter of the TTL, so that a
    /// session can still be renewed in time).
    pub forward_timeout: Duration,
    /// How long a voter that let a forwarded change time out is skipped as a preferred
    /// proposer (unless it is heard from sooner).
    pub slow_voter_backoff: Duration,
    /// How often formation repeats an unanswered hello.
    pub formation_retry: Duration,
    /// How often the preferred proposer of a shard re-gossips its strong names.
    pub names_gossip: Duration,
    /// The largest encoded quorum message the transport carries (its frame limit, less
    /// the frame header). A larger one is not sent: it is counted (`oversized`), logged
    /// with its shard, and the shard is reported stalled ([`ShardHealth`]).
    pub max_message_bytes: usize,
    /// Whether this node's watcher hands an evicted session's tasks, in the evicting
    /// change, to the HRW-preferred live session of each task
    /// ([`WatcherConfig::reassign`]); otherwise they are freed. Either is safe (S3: the
    /// new token's validity starts after the eviction commits).
    pub reassign: bool,
}

impl QuorumConfig {
    /// Defaults for `voters`: 64 shards, TTL 10 s, ρ = 0.1 %, guard 100 ms, no
    /// reassignment.
    pub fn new(voters: VoterNames) -> Self {
        Self {
            voters,
            shards: 64,
            ttl: Duration::from_secs(10),
            drift: HolderConfig::new("n", 0, 1, 3).drift,
            guard: Duration::from_millis(100),
            proposer: ProposerConfig::default(),
            forward_timeout: Duration::from_millis(1500),
            slow_voter_backoff: Duration::from_secs(10),
            formation_retry: Duration::from_millis(500),
            names_gossip: Duration::from_secs(5),
            // The transport's default frame limit (1 MiB) less its 2-byte body header.
            max_message_bytes: (1 << 20) - 2,
            reassign: false,
        }
    }
}

/// Control-class messages of the quorum plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumMsg {
    /// Voter formation.
    Hello(Hello),
    /// A proposer's request to acceptor `to`.
    Request {
        /// The acceptor id it is for.
        to: u64,
        /// The request.
        req: Request<ShardId, ShardSlot>,
    },
    /// An acceptor's reply to proposer `to`.
    Reply {
        /// The proposer id it is for.
        to: u64,
        /// The acceptor that answers.
        from: u64,
        /// The reply.
        rep: Reply<ShardId, ShardSlot>,
    },
    /// A change for the receiver to propose (it is the shard's preferred proposer).
    Forward {
        /// The register.
        shard: ShardId,
        /// The change.
        change: ShardChange,
        /// Its at-most-once id.
        request: RequestId,
    },
    /// The outcome of a forwarded change.
    Forwarded {
        /// The change's id.
        request: RequestId,
        /// The decision, or `None` for a timeout (indeterminate).
        outcome: Option<ShardOutcome>,
    },
    /// A shard's strong names as of stamp `next_token` (the cached `whereis`).
    Names {
        /// The register.
        shard: ShardId,
        /// The table's `next_token` when these names were current.
        stamp: u64,
        /// The names.
        names: BTreeMap<String, StrongName>,
    },
}

/// Identifies a caller's pending claims or strong-name call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimCall {
    /// The TTL (ms) of the holder that runs it.
    pub ttl_ms: u64,
    /// The holder's call id.
    pub call: CallId,
}

/// What the quorum plane asks of the node and the shell.
#[derive(Debug, Clone)]
pub enum QuorumOutput {
    /// Send a control frame to node `to`.
    Send {
        /// Node name.
        to: String,
        /// The encoded control frame (a `ControlFrame::Quorum` around the encoded
        /// [`QuorumMsg`], made in one pass).
        frame: Bytes,
    },
    /// Write these acceptor states durably (one transaction, fsync), then call
    /// [`QuorumPlane::handle_persisted`] with `id`.
    Persist {
        /// The commit.
        id: u64,
        /// `(key, state)` pairs (encoded by the store helpers).
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Write the root record durably, then call [`QuorumPlane::handle_root_persisted`].
    PersistRoot(RootRecord),
    /// Something that must stop the process happened (a failed fsync).
    Fatal(String),
    /// A claims or strong-name call finished.
    CallDone {
        /// Which call.
        call: ClaimCall,
        /// Its result.
        result: Result<CallOk, ClaimsError>,
    },
    /// A holder event other than a call's completion (a claim lost or assigned).
    Holder(HolderEvent),
    /// An ended hold's release is over ([`crate::claims::hold`]).
    HoldEnded {
        /// The task.
        task: String,
        /// The hold's token.
        token: u64,
        /// How the release ended.
        outcome: HoldOutcome,
    },
    /// A linearizable read of a shard table (see [`QuorumPlane::read`]) finished.
    ReadDone {
        /// The read.
        id: u64,
        /// The table (`None`: never written), or a timeout.
        result: Result<Option<ShardTable>, ProposeError>,
    },
}

/// Counters the shell publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStats {
    /// Round trips (requests sent by the proposer), by phase.
    pub requests_prepare: u64,
    /// Accept requests sent.
    pub requests_accept: u64,
    /// Changes committed with a decision, and timed out.
    pub committed: u64,
    /// Changes that timed out.
    pub timeouts: u64,
    /// Changes forwarded to a preferred proposer / forwarded to us.
    pub forwarded_out: u64,
    /// Changes proposed here for another node.
    pub forwarded_in: u64,
    /// Forwarded changes that timed out here (their retry goes local).
    pub forward_timeouts: u64,
    /// Durable commits and their keys.
    pub commits: u64,
    /// Keys written by those commits.
    pub commit_keys: u64,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Evictions proposed by the watcher.
    pub evictions: u64,
    /// Commit latency samples (ms since submission) not yet drained.
    pub commit_samples: Vec<Duration>,
    /// Ended holds' releases, by [`HoldOutcome`] label.
    pub hold_releases: BTreeMap<&'static str, u64>,
}

/// How one shard's register looks from this node: what a stalled shard shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHealth {
    /// Encoded size of the last quorum message carrying the shard's register value
    /// (an accept or a promise) that this node sent, in bytes: about the slot's size.
    pub slot_bytes: u64,
    /// This node's changes on the shard that timed out (proposed here or forwarded)
    /// since its last decided one.
    pub timeouts_in_a_row: u32,
    /// Messages about the shard this node did not send because they were larger than
    /// [`QuorumConfig::max_message_bytes`].
    pub oversized: u64,
    /// Whether the last such message was refused as oversized with no decision since.
    pub oversized_now: bool,
}

impl ShardHealth {
    /// Timeouts in a row from which a shard counts as stalled.
    pub const STALLED_AFTER: u32 = 3;

    /// Why the shard looks stalled from here, if it does: `oversized` (its register
    /// value no longer fits in a message) or `timeouts` (several changes in a row had
    /// no decision).
    pub fn stalled(&self) -> Option<&'static str> {
        if self.oversized_now {
            Some("oversized")
        } else if self.timeouts_in_a_row >= Self::STALLED_AFTER {
            Some("timeouts")
        } else {
            None
        }
    }
}

crate::reason::reasons! {
    /// Why a quorum message was dropped; counted in [`QuorumStats::dropped`] under
    /// [`QuorumDrop::as_str`].
    pub enum QuorumDrop {
        /// A quorum message that did not decode.
        Malformed => "malformed",
        /// A request addressed to an acceptor id this node's store does not hold (a wiped voter's old id).
        NotForThisAcceptor => "not_for_this_acceptor",
        /// A request to a node the root does not list as a voter.
        NotAVoter => "not_a_voter",
        /// A reply or forward from a node that is not a voter in the root.
        UnknownProposer => "unknown_proposer",
        /// A message that needs the root before this node has one.
        NoRoot => "no_root",
        /// The answer to a forwarded change whose caller already gave up.
        LateForward => "late_forward",
        /// A message this node built did not encode (never expected).
        EncodeFailed => "encode_failed",
        /// A message over the frame limit: not sent (logged once per episode, per shard).
        Oversized => "oversized",
    }
}

enum Origin {
    /// A local holder's or watcher's change.
    Local(RequestId, Instant),
    /// An administrative read.
    Read(u64),
    /// A change forwarded by another node.
    Remote(RequestId, String),
}

/// The quorum plane of one node. See the module docs.
pub struct QuorumPlane {
    name: String,
    incarnation: u64,
    config: QuorumConfig,
    formation: Formation,
    acceptor_id: Option<u64>,
    root: Option<RootRecord>,
    restored: Vec<(ShardId, AcceptorState<ShardSlot>)>,
    acceptor: Option<Acceptor<ShardId, ShardSlot>>,
    open: GroupCommit<ShardId, ShardSlot>,
    in_flight: Option<(u64, GroupCommit<ShardId, ShardSlot>)>,
    next_commit: u64,
    next_read: u64,
    proposer: Option<Proposer<ShardId, ShardTable, ShardChange>>,
    holders: BTreeMap<u64, Holder>,
    /// The first request seq of the next holder made (see [`HolderConfig::first_seq`]).
    next_holder_seq: u64,
    /// The counters of holders dropped as idle (so that totals never go back).
    retired_holders: HolderStats,
    health: BTreeMap<ShardId, ShardHealth>,
    watcher: Watcher,
    names: NameCache,
    ops: HashMap<OpId, Origin>,
    /// Where changes are proposed: forwards, their timeouts, skipped voters, watching.
    router: Router,
    live: BTreeSet<String>,
    proposer_nodes: HashMap<NodeId, String>,
    next_gossip: Instant,
    rng: StdRng,
    outputs: VecDeque<QuorumOutput>,
    /// Messages this node sends itself (its acceptor and its proposer).
    loopback: VecDeque<QuorumMsg>,
    stats: QuorumStats,
    stopped: bool,
    /// Holds: claims bound to a client's stream, and their releases.
    holds: Holds,
    /// Calls made for holds: a hold's claim (its result also goes out) or a release
    /// attempt (internal), by call.
    hold_calls: BTreeMap<ClaimCall, HoldCall>,
}

/// Why a call was made for a hold.
#[derive(Debug, Clone)]
enum HoldCall {
    Claim(String),
    Release(String),
}

impl std::fmt::Debug for QuorumPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumPlane")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("acceptor", &self.acceptor.is_some())
            .finish()
    }
}

fn bump(stats: &mut QuorumStats, why: QuorumDrop) {
    *stats.dropped.entry(why.as_str()).or_default() += 1;
}

/// Why a claims or strong-name call was refused before it started. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The holder refused the call (unavailable, bad input, overloaded, ...).
    #[error(transparent)]
    Claims(ClaimsError),
    /// The TTL asked for cannot work (too short, too long, or no time to renew).
    #[error("ttl: {0}")]
    BadTtl(String),
    /// This node already uses [`MAX_TTLS`] distinct TTLs (one holder each, with a
    /// session per shard it touches): a call with yet another TTL would grow every
    /// shard's session table further. Nothing was submitted; use a TTL already in use
    /// (the default one always is), or wait until a TTL's claims are released and its
    /// sessions closed as idle.
    #[error("at most {max} distinct claim TTLs may be in use on one agent at once")]
    TooManyTtls {
        /// The bound ([`MAX_TTLS`]).
        max: usize,
    },
    /// This node already holds the task (a hold must be the claim's only user).
    #[error("task {task:?} is already held by this agent with token {token}")]
    AlreadyHeld {
        /// The task.
        task: String,
        /// Its current token.
        token: u64,
    },
    /// The task is under an open hold on this node, or that hold's release is still
    /// running ([`crate::claims::hold`], H1). Nothing was submitted.
    #[error("task {task:?} is held by an open hold stream on this agent")]
    UnderHold {
        /// The task.
        task: String,
    },
    /// This node already holds the task under another TTL. Nothing was submitted;
    /// release it first, or claim it again with that TTL.
    #[error("task {task:?} is already held by this agent with ttl {ttl_ms} ms")]
    HeldWithOtherTtl {
        /// The task.
        task: String,
        /// The TTL it is held with.
        ttl_ms: u64,
    },
}

/// Most distinct claim TTLs one agent uses at once (the default one included). Each
/// TTL is one holder with its own session in every shard it touches; a holder whose
/// sessions have all been closed as idle is dropped, which frees its TTL.
pub const MAX_TTLS: usize = 8;

/// Why the quorum plane could not be built. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumSetupError {
    /// The formation configuration is invalid.
    #[error("voters: {0}")]
    Formation(String),
    /// The claims settings are invalid.
    #[error("claims: {0}")]
    Holder(String),
}

impl QuorumPlane {
    /// The plane of node `name` (this boot's `incarnation`), with the acceptor id and the
    /// durable state of its store if it has one (voters must), and a seeded RNG.
    pub fn new(
        name: &str,
        incarnation: u64,
        config: QuorumConfig,
        store: Option<super::StoreBoot>,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Self, QuorumSetupError> {
        let (acceptor_id, stored_root, restored) = match store {
            Some(b) if config.voters.contains(name) => (Some(b.acceptor_id), b.root, b.states),
            _ => (None, None, Vec::new()),
        };
        let formation = Formation::new(
            FormationConfig {
                name: name.to_owned(),
                voters: config.voters.clone(),
                acceptor_id,
                stored_root,
                retry: config.formation_retry,
                seed: rng_seed ^ 0x726f_6f74,
            },
            now,
        )
        .map_err(|e| QuorumSetupError::Formation(e.to_string()))?;
        let mut holder_config = HolderConfig::new(
            name,
            incarnation,
            config.shards,
            config.voters.names().len(),
        );
        holder_config.ttl = config.ttl;
        holder_config.drift = config.drift;
        holder_config.guard = config.guard;
        let holder =
            Holder::new(holder_config).map_err(|e| QuorumSetupError::Holder(e.to_string()))?;
        let mut wc = WatcherConfig::new(name, incarnation);
        wc.drift = config.drift;
        wc.reassign = config.reassign;
        // The preferred proposer's watcher sees every change of its shards as it
        // commits; periodic reads only catch sessions that go silent, which the
        // eviction timer does anyway. A read per shard per second would cost every
        // voter an fsync a second per shard for nothing.
        wc.refresh = config.ttl.max(Duration::from_secs(5));
        let mut holders = BTreeMap::new();
        holders.insert(ms(config.ttl), holder);
        let next_holder_seq = HOLDER_SEQS;
        let router = Router::new(
            name,
            config.forward_timeout.min(config.ttl / 4),
            config.slow_voter_backoff,
        );
        let mut plane = Self {
            name: name.to_owned(),
            incarnation,
            names: NameCache::new(config.shards),
            config,
            formation,
            acceptor_id,
            root: None,
            restored,
            acceptor: None,
            open: GroupCommit::new(),
            in_flight: None,
            next_commit: 1,
            next_read: 1,
            proposer: None,
            holders,
            next_holder_seq,
            retired_holders: HolderStats::default(),
            health: BTreeMap::new(),
            watcher: Watcher::new(wc),
            ops: HashMap::new(),
            router,
            live: BTreeSet::new(),
            proposer_nodes: HashMap::new(),
            next_gossip: now,
            rng: StdRng::seed_from_u64(rng_seed ^ 0x7175_6f72),
            outputs: VecDeque::new(),
            loopback: VecDeque::new(),
            stats: QuorumStats::default(),
            holds: Holds::default(),
            hold_calls: BTreeMap::new(),
            stopped: false,
        };
        plane.set_reachable();
        plane.drain(now);
        Ok(plane)
    }

    /// The root record in force, if formation finished.
    pub fn root(&self) -> Option<&RootRecord> {
        self.root.as_ref()
    }

    /// Whether this node acts as an acceptor.
    pub fn is_acceptor(&self) -> bool {
        self.acceptor.is_some()
    }

    /// The formation's state, for `meshctl quorum status`.
    pub fn formation(&self) -> &Formation {
        &self.formation
    }

    /// The settings.
    pub fn config(&self) -> &QuorumConfig {
        &self.config
    }

    /// Counters (commit samples are drained by [`QuorumPlane::drain_commit_samples`]).
    pub fn stats(&self) -> &QuorumStats {
        &self.stats
    }

    /// Commit latencies measured since the last call.
    pub fn drain_commit_samples(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.stats.commit_samples)
    }

    /// The holders (one per TTL in use), read-only.
    pub fn holders(&self) -> impl Iterator<Item = &Holder> {
        self.holders.values()
    }

    /// The counters of every holder of this life, those dropped as idle included.
    pub fn holder_stats(&self) -> HolderStats {
        let mut total = self.retired_holders.clone();
        for h in self.holders.values() {
            total.add(&h.stats());
        }
        total
    }

    /// Each shard's health as this node saw it (shards it never touched are absent).
    pub fn shard_health(&self) -> &BTreeMap<ShardId, ShardHealth> {
        &self.health
    }

    /// The watcher, read-only.
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// The proposer's counters, once the root is in force (read-only, for metrics).
    pub fn proposer_stats(&self) -> Option<&crate::quorum::ProposerStats> {
        self.proposer.as_ref().map(Proposer::stats)
    }

    /// The acceptor's counters, on a voter that acts as an acceptor (read-only, for
    /// metrics).
    pub fn acceptor_stats(&self) -> Option<&crate::quorum::AcceptorStats> {
        self.acceptor.as_ref().map(Acceptor::stats)
    }

    /// The cached strong names.
    pub fn name_cache(&self) -> &NameCache {
        &self.names
    }

    /// The receiver's check of a message sent to strong name `name` at `version` for
    /// the local process `to` (see [`NameCache::check_send`]).
    pub fn check_strong_send(&mut self, name: &str, version: u64, to: &Pid) -> bool {
        self.names.check_send(name, version, to).is_ok()
    }

    /// The voters currently reachable (live in SWIM, or this node), by name.
    pub fn reachable_names(&self) -> Vec<String> {
        self.config
            .voters
            .names()
            .iter()
            .filter(|v| **v == self.name || self.live.contains(*v))
            .cloned()
            .collect()
    }

    /// Voters currently reachable (live in SWIM, or this node).
    pub fn reachable_voters(&self) -> usize {
        self.config
            .voters
            .names()
            .iter()
            .filter(|v| **v == self.name || self.live.contains(*v))
            .count()
    }

    /// The shard's preferred proposer among the live voters.
    pub fn preferred(&self, shard: ShardId) -> Option<String> {
        Router::preferred(shard, self.reachable_names().iter().map(String::as_str))
    }

    /// The routing counters (forwards, skips, timeouts, late answers).
    pub fn routing_stats(&self) -> &routing::RouterStats {
        self.router.stats()
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<QuorumOutput> {
        self.outputs.pop_front()
    }

    /// When [`QuorumPlane::handle_tick`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let forwards = self.router.poll_timeout();
        let holders = self.holders.values().filter_map(Holder::poll_timeout).min();
        [
            self.formation.poll_timeout(),
            self.proposer.as_ref().and_then(Proposer::poll_timeout),
            holders,
            self.watcher.poll_timeout(),
            forwards,
            self.holds.poll_timeout(),
            self.root.as_ref().map(|_| self.next_gossip),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- inputs ------------------------------------------------------------------

    /// The live peers changed (SWIM).
    pub fn set_live(&mut self, now: Instant, live: impl IntoIterator<Item = String>) {
        let new: BTreeSet<String> = live.into_iter().collect();
        for gone in self.live.difference(&new) {
            self.watcher.node_down(now, gone);
        }
        for back in new.difference(&self.live) {
            self.watcher.node_up(back);
        }
        self.live = new;
        self.set_reachable();
        self.rewatch(now);
        self.drain(now);
    }

    /// A control frame from `from`.
    pub fn handle_message(&mut self, now: Instant, from: &str, payload: &[u8]) {
        let Ok(msg) = wire::decode::<QuorumMsg>(payload) else {
            bump(&mut self.stats, QuorumDrop::Malformed);
            return;
        };
        self.on_message(now, from, msg);
        self.drain(now);
    }

    fn on_message(&mut self, now: Instant, from: &str, msg: QuorumMsg) {
        // Heard from: no longer skipped as a slow proposer.
        self.router.heard_from(from);
        match msg {
            QuorumMsg::Hello(h) => self.formation.handle_hello(now, h),
            QuorumMsg::Request { to, req } => self.on_request(from, to, req),
            QuorumMsg::Reply { to, from: acc, rep } => {
                let mine = proposer_id(&self.name);
                match self.proposer.as_mut() {
                    Some(p) if to == mine.0 => p.handle_reply(now, NodeId(acc), rep, &mut self.rng),
                    Some(_) => bump(&mut self.stats, QuorumDrop::UnknownProposer),
                    None => bump(&mut self.stats, QuorumDrop::NoRoot),
                }
            }
            QuorumMsg::Forward {
                shard,
                change,
                request,
            } => match self.proposer.as_mut() {
                Some(p) => {
                    let op = p.propose(now, shard, Some(request), change);
                    self.ops
                        .insert(op, Origin::Remote(request, from.to_owned()));
                    self.stats.forwarded_in += 1;
                }
                None => bump(&mut self.stats, QuorumDrop::NoRoot),
            },
            QuorumMsg::Forwarded { request, outcome } => {
                match self.router.answered(request) {
                    // Timed out here already; the retry went elsewhere.
                    None => bump(&mut self.stats, QuorumDrop::LateForward),
                    Some(routing::PendingForward { shard, sent, .. }) => {
                        let result = outcome.ok_or(ProposeError::Timeout);
                        self.note_decision(shard, result.is_ok());
                        self.stats
                            .commit_samples
                            .push(now.saturating_duration_since(sent));
                        self.learn(now, shard, &result);
                        self.complete_local(now, request, result);
                    }
                }
            }
            QuorumMsg::Names {
                shard,
                stamp,
                names,
            } => {
                self.names.learn_names(shard, stamp, &names);
            }
        }
    }

    fn on_request(&mut self, from: &str, to: u64, req: Request<ShardId, ShardSlot>) {
        let Some(acceptor) = self.acceptor.as_mut() else {
            bump(&mut self.stats, QuorumDrop::NotAVoter);
            return;
        };
        if Some(to) != self.acceptor_id {
            bump(&mut self.stats, QuorumDrop::NotForThisAcceptor);
            return;
        }
        let pid = proposer_id(from);
        self.proposer_nodes.insert(pid, from.to_owned());
        acceptor.handle_request(pid, req);
    }

    /// The commit `id` asked for by [`QuorumOutput::Persist`] finished.
    pub fn handle_persisted(&mut self, now: Instant, id: u64, result: Result<(), String>) {
        let Some((expected, mut batch)) = self.in_flight.take() else {
            return;
        };
        debug_assert_eq!(expected, id);
        match result {
            Ok(()) => {
                self.stats.commits += 1;
                self.stats.commit_keys += batch.batch().len() as u64;
                let replies = batch.finish(&Ok::<(), crate::quorum::StoreError>(()));
                self.send_replies(replies);
            }
            Err(e) => {
                let _ = batch.finish(&Err::<(), _>(crate::quorum::StoreError::Write(e.clone())));
                self.stop(format!("acceptor state could not be made durable: {e}"));
            }
        }
        self.drain(now);
    }

    /// The root record asked for by [`QuorumOutput::PersistRoot`] is durable (or not).
    pub fn handle_root_persisted(&mut self, now: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if let Err(e) = self.formation.handle_persisted(now) {
                    tracing::warn!(error = %e, "root persisted with nothing pending");
                }
            }
            Err(e) => self.stop(format!("the root record could not be made durable: {e}")),
        }
        self.drain(now);
    }

    /// Periodic work.
    pub fn handle_tick(&mut self, now: Instant) {
        self.formation.handle_timeout(now);
        if let Some(p) = self.proposer.as_mut() {
            p.handle_timeout(now, &mut self.rng);
        }
        for h in self.holders.values_mut() {
            h.handle_timeout(now);
        }
        // Other TTLs' holders that closed every session and have nothing queued.
        let default = ms(self.config.ttl);
        let retired = &mut self.retired_holders;
        self.holders.retain(|ttl, h| {
            let keep = *ttl == default || !h.is_idle();
            if !keep {
                retired.add(&h.stats());
            }
            keep
        });
        self.watcher.handle_timeout(now);
        for (request, pending) in self.router.expire(now) {
            self.note_decision(pending.shard, false);
            self.stats.forward_timeouts += 1;
            self.complete_local(now, request, Err(ProposeError::Timeout));
        }
        if self.root.is_some() && now >= self.next_gossip {
            self.next_gossip = now + self.config.names_gossip;
            self.gossip_names();
        }
        self.start_hold_releases(now);
        self.drain(now);
    }

    // ----- calls -------------------------------------------------------------------

    fn holder(&mut self, ttl: Option<Duration>) -> Result<(u64, &mut Holder), CallError> {
        if self.stopped {
            return Err(CallError::Claims(ClaimsError::Unavailable {
                reason: Unavailable::NoQuorum {
                    reachable: 0,
                    needed: majority(self.config.voters.names().len()),
                },
            }));
        }
        let ttl_ms = ms(ttl.unwrap_or(self.config.ttl));
        if !self.holders.contains_key(&ttl_ms) {
            if self.holders.len() >= MAX_TTLS {
                return Err(CallError::TooManyTtls { max: MAX_TTLS });
            }
            let mut hc = HolderConfig::new(
                &self.name,
                self.incarnation,
                self.config.shards,
                self.config.voters.names().len(),
            );
            hc.ttl = Duration::from_millis(ttl_ms);
            hc.drift = self.config.drift;
            hc.guard = self.config.guard;
            // Another TTL's sessions close when idle (the default TTL's stay: they are
            // the node's lease in each shard), and the holder is dropped once it has
            // none; one made again later for the same TTL is the same request-id
            // client, so it continues above every seq its predecessors used.
            hc.idle_close = Some(hc.ttl.max(Duration::from_secs(1)));
            hc.first_seq = self.next_holder_seq;
            let mut h = Holder::new(hc).map_err(|e| CallError::BadTtl(e.to_string()))?;
            self.next_holder_seq = self.next_holder_seq.saturating_add(HOLDER_SEQS);
            h.set_reachable_voters(self.effective_reachable());
            self.holders.insert(ttl_ms, h);
        }
        let h =
            self.holders
                .get_mut(&ttl_ms)
                .ok_or(CallError::Claims(ClaimsError::Unavailable {
                    reason: Unavailable::NoVoters,
                }))?;
        Ok((ttl_ms, h))
    }

    /// Runs `f` on the holder of `ttl` (the default TTL if `None`) and returns the call.
    pub fn call(
        &mut self,
        now: Instant,
        ttl: Option<Duration>,
        f: impl FnOnce(&mut Holder, Instant) -> Result<CallId, ClaimsError>,
    ) -> Result<ClaimCall, CallError> {
        let (ttl_ms, h) = self.holder(ttl)?;
        let call = f(h, now).map_err(CallError::Claims)?;
        self.drain(now);
        Ok(ClaimCall { ttl_ms, call })
    }

    /// Claims `task` on the holder of `ttl` (the default TTL if `None`). Refused at once
    /// with [`CallError::HeldWithOtherTtl`] if this node holds the task under another TTL
    /// (rather than failing in the table as held by a session of this very node).
    pub fn claim(
        &mut self,
        now: Instant,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<ClaimCall, CallError> {
        if self.holds.is_busy(task) {
            return Err(CallError::UnderHold {
                task: task.to_owned(),
            });
        }
        let want = ms(ttl.unwrap_or(self.config.ttl));
        if let Some(held) = self.holder_ttl_of(task).map(ms) {
            if held != want {
                return Err(CallError::HeldWithOtherTtl {
                    task: task.to_owned(),
                    ttl_ms: held,
                });
            }
        }
        self.call(now, ttl, |h, now| h.claim(now, task))
    }

    /// Releases `task` on the holder that holds it, if `token` is its current token
    /// ([`Holder::release_with_token`]); a task held by no holder goes to the default
    /// TTL's holder, which refuses it as not held.
    pub fn release(
        &mut self,
        now: Instant,
        task: &str,
        token: u64,
    ) -> Result<ClaimCall, CallError> {
        let held = self.holder_ttl_of(task);
        self.call(now, held, |h, now| h.release_with_token(now, task, token))
    }

    /// Opens a hold on `task` ([`crate::claims::hold`]): claims it like
    /// [`QuorumPlane::claim`] (the result comes as [`QuorumOutput::CallDone`]), refused
    /// at once if this node already holds the task ([`CallError::AlreadyHeld`]) or it is
    /// under a hold ([`CallError::UnderHold`]). End it with [`QuorumPlane::end_hold`].
    pub fn hold(
        &mut self,
        now: Instant,
        task: &str,
        ttl: Option<Duration>,
    ) -> Result<ClaimCall, CallError> {
        if let Some((token, _)) = self.validity(task) {
            return Err(CallError::AlreadyHeld {
                task: task.to_owned(),
                token,
            });
        }
        let call = self.claim(now, task, ttl)?;
        self.holds.open(task, ttl.unwrap_or(self.config.ttl));
        self.hold_calls
            .insert(call, HoldCall::Claim(task.to_owned()));
        Ok(call)
    }

    /// The client of the hold on `task` went away: unless its claim was lost, the claim
    /// is released, with retries, and the outcome comes as [`QuorumOutput::HoldEnded`].
    pub fn end_hold(&mut self, now: Instant, task: &str) {
        if self.holds.close(now, task) {
            self.start_hold_releases(now);
            self.drain(now);
        }
    }

    /// The token of the open hold on `task`, if its claim succeeded and was not lost.
    pub fn hold_token(&self, task: &str) -> Option<u64> {
        self.holds.token(task)
    }

    /// Starts the release attempts of ended holds that are due.
    fn start_hold_releases(&mut self, now: Instant) {
        for (task, token) in self.holds.due(now) {
            match self.release(now, &task, token) {
                Ok(call) => {
                    self.hold_calls.insert(call, HoldCall::Release(task));
                }
                Err(e) => {
                    let answer = match e {
                        CallError::Claims(e) => ReleaseAnswer::of(&Err(e)),
                        _ => ReleaseAnswer::Retry,
                    };
                    self.hold_answered(now, &task, answer);
                }
            }
        }
    }

    fn hold_answered(&mut self, now: Instant, task: &str, answer: ReleaseAnswer) {
        if let Some((token, outcome)) = self.holds.answered(now, task, answer) {
            self.hold_ended(task, token, outcome);
        }
    }

    fn hold_ended(&mut self, task: &str, token: u64, outcome: HoldOutcome) {
        *self
            .stats
            .hold_releases
            .entry(outcome.as_str())
            .or_default() += 1;
        self.outputs.push_back(QuorumOutput::HoldEnded {
            task: task.to_owned(),
            token,
            outcome,
        });
    }

    /// Starts a linearizable read of `shard`'s table on this node's proposer; the
    /// result comes as [`QuorumOutput::ReadDone`]. `None` before the root is in force.
    pub fn read(&mut self, now: Instant, shard: ShardId) -> Option<u64> {
        let p = self.proposer.as_mut()?;
        let id = self.next_read;
        self.next_read += 1;
        let op = p.propose(now, shard, None, ShardChange::Read);
        self.ops.insert(op, Origin::Read(id));
        self.drain(now);
        Some(id)
    }

    /// Whether `token` is this node's valid token for `task` now (any TTL).
    pub fn is_valid(&self, now: Instant, task: &str, token: u64) -> bool {
        self.holders.values().any(|h| h.is_valid(now, task, token))
    }

    /// The TTL of the holder that holds `task`, if one does.
    pub fn holder_ttl_of(&self, task: &str) -> Option<Duration> {
        self.holders
            .iter()
            .find(|(_, h)| h.validity(task).is_some())
            .map(|(ttl, _)| Duration::from_millis(*ttl))
    }

    /// The token and end of validity of a task this node holds.
    pub fn validity(&self, task: &str) -> Option<(u64, Instant)> {
        self.holders.values().find_map(|h| h.validity(task))
    }

    // ----- plumbing ----------------------------------------------------------------

    fn stop(&mut self, why: String) {
        if !self.stopped {
            self.stopped = true;
            self.acceptor = None;
            self.outputs.push_back(QuorumOutput::Fatal(why));
        }
    }

    fn effective_reachable(&self) -> usize {
        if self.root.is_some() && !self.stopped {
            self.reachable_voters()
        } else {
            0
        }
    }

    fn set_reachable(&mut self) {
        let r = self.effective_reachable();
        for h in self.holders.values_mut() {
            h.set_reachable_voters(r);
        }
    }

    fn rewatch(&mut self, now: Instant) {
        if self.root.is_none() {
            return;
        }
        let candidates = self.reachable_names();
        for s in 0..self.config.shards {
            let shard = ShardId(s);
            if self
                .router
                .watches(shard, candidates.iter().map(String::as_str))
            {
                self.watcher.watch(now, shard);
            } else {
                self.watcher.unwatch(shard);
            }
        }
    }

    fn gossip_names(&mut self) {
        let watched: Vec<ShardId> = self.watcher.watched().collect();
        for shard in watched {
            let Some((stamp, names)) = self.names.snapshot(shard) else {
                continue;
            };
            if names.is_empty() {
                continue;
            }
            let msg = QuorumMsg::Names {
                shard,
                stamp,
                names: names.clone(),
            };
            let peers: Vec<String> = self.live.iter().cloned().collect();
            for p in peers {
                self.send(&p, &msg);
            }
        }
    }

    fn send(&mut self, to: &str, msg: &QuorumMsg) {
        if to == self.name {
            // Our own acceptor or proposer: no network, handled in `drain`.
            self.loopback.push_back(msg.clone());
            return;
        }
        let Ok((frame, len)) = wire::encode_quorum_frame(msg) else {
            return bump(&mut self.stats, QuorumDrop::EncodeFailed);
        };
        let (shard, carries_slot) = match msg {
            QuorumMsg::Request { req, .. } => {
                (Some(*req.key()), matches!(req, Request::Accept { .. }))
            }
            QuorumMsg::Reply { rep, .. } => (
                Some(*rep.key()),
                matches!(
                    rep,
                    Reply::Promise {
                        accepted: Some(_),
                        ..
                    }
                ),
            ),
            QuorumMsg::Forward { shard, .. } | QuorumMsg::Names { shard, .. } => {
                (Some(*shard), false)
            }
            QuorumMsg::Hello(_) | QuorumMsg::Forwarded { .. } => (None, false),
        };
        if let Some(shard) = shard {
            let h = self.health.entry(shard).or_default();
            if carries_slot {
                h.slot_bytes = len as u64;
            }
            if len > self.config.max_message_bytes {
                h.oversized += 1;
                if !h.oversized_now {
                    // Once per episode: the counter and the status carry the rest.
                    tracing::error!(
                        %shard, bytes = len, max = self.config.max_message_bytes, to,
                        "a quorum message for this shard exceeds the frame limit and is \
                         not sent; the shard cannot decide until its register shrinks"
                    );
                }
                h.oversized_now = true;
                return bump(&mut self.stats, QuorumDrop::Oversized);
            }
        } else if len > self.config.max_message_bytes {
            tracing::error!(bytes = len, to, "a quorum message exceeds the frame limit");
            return bump(&mut self.stats, QuorumDrop::Oversized);
        }
        self.outputs.push_back(QuorumOutput::Send {
            to: to.to_owned(),
            frame,
        });
    }

    fn send_replies(&mut self, replies: Vec<crate::quorum::Envelope<Reply<ShardId, ShardSlot>>>) {
        let Some(acc) = self.acceptor_id else {
            return;
        };
        for env in replies {
            let Some(node) = self.proposer_nodes.get(&env.to).cloned() else {
                bump(&mut self.stats, QuorumDrop::UnknownProposer);
                continue;
            };
            let msg = QuorumMsg::Reply {
                to: env.to.0,
                from: acc,
                rep: env.msg,
            };
            self.send(&node, &msg);
        }
    }

    /// Routes a submission: to the preferred proposer (the next one in HRW order for a
    /// retry of a change that timed out there), or here.
    fn submit(&mut self, now: Instant, sub: Submission) {
        let candidates = self.reachable_names();
        let route = self.router.route(
            now,
            sub.request,
            sub.shard,
            candidates.iter().map(String::as_str),
        );
        match route {
            Route::Forward(p) => {
                self.stats.forwarded_out += 1;
                let msg = QuorumMsg::Forward {
                    shard: sub.shard,
                    change: sub.change,
                    request: sub.request,
                };
                self.send(&p, &msg);
            }
            Route::Local => match self.proposer.as_mut() {
                Some(prop) => {
                    let op = prop.propose(now, sub.shard, Some(sub.request), sub.change);
                    self.ops.insert(op, Origin::Local(sub.request, now));
                }
                None => self.complete_local(now, sub.request, Err(ProposeError::Timeout)),
            },
        }
    }

    fn learn(&mut self, now: Instant, shard: ShardId, result: &Result<ShardOutcome, ProposeError>) {
        if let Some(t) = result.as_ref().ok().and_then(crate::quorum::Outcome::value) {
            self.watcher.observe(now, shard, t);
            if self.names.learn(shard, t) && self.watcher.watched().any(|s| s == shard) {
                // A change of a shard's names: tell the others now, not at the next
                // periodic gossip.
                self.next_gossip = now;
            }
        }
    }

    /// A change on `shard` was decided (or timed out): the shard's health.
    fn note_decision(&mut self, shard: ShardId, decided: bool) {
        let h = self.health.entry(shard).or_default();
        if decided {
            h.timeouts_in_a_row = 0;
            h.oversized_now = false;
        } else {
            h.timeouts_in_a_row = h.timeouts_in_a_row.saturating_add(1);
        }
    }

    fn complete_local(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<ShardOutcome, ProposeError>,
    ) {
        self.router.completed(request, result.is_ok());
        if request.client == self.watcher.client() {
            self.watcher.handle_completion(now, request, result);
            return;
        }
        if let Some(h) = self
            .holders
            .values_mut()
            .find(|h| h.client() == request.client)
        {
            h.handle_completion(now, request, result);
        }
    }

    /// Moves every sub-machine's outputs along until nothing moves.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(msg) = self.loopback.pop_front() {
                progressed = true;
                let me = self.name.clone();
                self.on_message(now, &me, msg);
            }
            while let Some(out) = self.formation.poll_output() {
                progressed = true;
                match out {
                    FormationOutput::Send { to, hello } => self.send(&to, &QuorumMsg::Hello(hello)),
                    FormationOutput::Persist(root) => {
                        self.outputs.push_back(QuorumOutput::PersistRoot(root));
                    }
                    FormationOutput::RootInForce(root) => self.root_in_force(now, root),
                    FormationOutput::ConfigMismatch { peer, reason } => {
                        tracing::error!(peer = ?peer, %reason, "voter configuration mismatch");
                    }
                    FormationOutput::RootConflict { peer, theirs } => {
                        tracing::error!(%peer, ?theirs, "a voter holds another root record");
                    }
                }
            }
            let mut subs = Vec::new();
            for h in self.holders.values_mut() {
                while let Some(s) = h.poll_submit() {
                    subs.push(s);
                }
            }
            while let Some(s) = self.watcher.poll_submit() {
                subs.push(s);
            }
            for s in subs {
                progressed = true;
                self.submit(now, s);
            }
            let mut proposer_out = Vec::new();
            if let Some(p) = self.proposer.as_mut() {
                while let Some(o) = p.poll_output() {
                    proposer_out.push(o);
                }
            }
            for o in proposer_out {
                progressed = true;
                match o {
                    ProposerOutput::Send(env) => {
                        let target = self
                            .root
                            .as_ref()
                            .and_then(|r| r.voter_of(env.to))
                            .map(str::to_owned);
                        match target {
                            Some(node) => {
                                if matches!(env.msg, Request::Prepare { .. }) {
                                    self.stats.requests_prepare += 1;
                                } else {
                                    self.stats.requests_accept += 1;
                                }
                                let msg = QuorumMsg::Request {
                                    to: env.to.0,
                                    req: env.msg,
                                };
                                self.send(&node, &msg);
                            }
                            None => bump(&mut self.stats, QuorumDrop::NoRoot),
                        }
                    }
                    ProposerOutput::Complete(c) => {
                        match &c.result {
                            Ok(_) => self.stats.committed += 1,
                            Err(_) => self.stats.timeouts += 1,
                        }
                        self.note_decision(c.key, c.result.is_ok());
                        self.learn(now, c.key, &c.result);
                        match self.ops.remove(&c.op) {
                            Some(Origin::Local(request, started)) => {
                                self.stats
                                    .commit_samples
                                    .push(now.saturating_duration_since(started));
                                self.complete_local(now, request, c.result);
                            }
                            Some(Origin::Read(id)) => {
                                let result = c.result.map(|o| o.value().cloned());
                                self.outputs
                                    .push_back(QuorumOutput::ReadDone { id, result });
                            }
                            Some(Origin::Remote(request, origin)) => {
                                let msg = QuorumMsg::Forwarded {
                                    request,
                                    outcome: c.result.ok(),
                                };
                                self.send(&origin, &msg);
                            }
                            None => {}
                        }
                    }
                }
            }
            // Acceptor outputs join the open batch; one commit is in flight at a time.
            let mut acc_out = Vec::new();
            if let Some(a) = self.acceptor.as_mut() {
                while let Some(o) = a.poll_output() {
                    acc_out.push(o);
                }
            }
            for o in acc_out {
                progressed = true;
                if self.open.push(o).is_err() {
                    self.stop("an acceptor state could not be encoded".to_owned());
                }
            }
            if self.in_flight.is_none()
                && (self.open.pending_replies() > 0 || !self.open.batch().is_empty())
            {
                progressed = true;
                let batch = std::mem::take(&mut self.open);
                if batch.batch().is_empty() {
                    // Only replies that changed nothing, and nothing before them is
                    // pending: release them now.
                    let mut batch = batch;
                    let replies = batch.finish(&Ok::<(), crate::quorum::StoreError>(()));
                    self.send_replies(replies);
                } else {
                    let id = self.next_commit;
                    self.next_commit += 1;
                    let entries = batch.batch().to_vec();
                    self.in_flight = Some((id, batch));
                    self.outputs
                        .push_back(QuorumOutput::Persist { id, entries });
                }
            }
            let mut events = Vec::new();
            for (ttl_ms, h) in &mut self.holders {
                while let Some(ev) = h.poll_event() {
                    events.push((*ttl_ms, ev));
                }
            }
            for (ttl_ms, ev) in events {
                progressed = true;
                match ev {
                    HolderEvent::Done { call, result } => {
                        let call = ClaimCall { ttl_ms, call };
                        match self.hold_calls.remove(&call) {
                            Some(HoldCall::Release(task)) => {
                                // Internal: nobody waits for it.
                                self.hold_answered(now, &task, ReleaseAnswer::of(&result));
                                continue;
                            }
                            Some(HoldCall::Claim(task)) => {
                                let token = match &result {
                                    Ok(CallOk::Claimed { token, .. }) => Some(*token),
                                    _ => None,
                                };
                                if self.holds.claimed(now, &task, token) {
                                    self.start_hold_releases(now);
                                }
                            }
                            None => {}
                        }
                        self.outputs
                            .push_back(QuorumOutput::CallDone { call, result });
                    }
                    HolderEvent::Lost {
                        ref task, token, ..
                    } => {
                        if let Some(outcome) = self.holds.lost(task, token) {
                            self.hold_ended(task, token, outcome);
                        }
                        self.outputs.push_back(QuorumOutput::Holder(ev));
                    }
                    other => self.outputs.push_back(QuorumOutput::Holder(other)),
                }
            }
            while let Some(ev) = self.watcher.poll_event() {
                progressed = true;
                let crate::claims::WatcherEvent::Evicted { .. } = ev;
                self.stats.evictions += 1;
            }
            if !progressed {
                break;
            }
        }
    }

    fn root_in_force(&mut self, now: Instant, root: RootRecord) {
        if self.formation.is_acceptor() {
            if let Some(id) = self.acceptor_id {
                let restored = std::mem::take(&mut self.restored);
                self.acceptor = Some(Acceptor::restore(NodeId(id), root.epoch, restored));
            }
        }
        self.proposer = Some(Proposer::new(
            proposer_id(&self.name),
            self.incarnation,
            root.epoch,
            root.acceptor_ids(),
            self.config.proposer.clone(),
        ));
        self.root = Some(root);
        self.set_reachable();
        self.rewatch(now);
    }
}

/// Request seqs reserved per holder made in one node life (2^40 each): a holder made
/// again for a TTL continues above every seq an earlier one used.
const HOLDER_SEQS: u64 = 1 << 40;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
