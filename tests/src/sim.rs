//! A deterministic simulator for mesh protocols.
//!
//! Many nodes run in one thread on a simulated network with a simulated clock. All
//! randomness — per-node protocol RNGs, loss, duplication, delay — comes from one
//! seed, so a failing run replays exactly from its seed. The network has per-link
//! delay with jitter (which reorders), loss, duplication and partitions; nodes can
//! be killed, restarted (as a new incarnation), paused (a stopped or CPU-starved
//! process) and given a clock that runs fast or slow.
//!
//! It reads like raft-rs's `Network` and quinn's `Pair`:
//!
//! ```
//! use mesh_tests::sim::Sim;
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(7);
//! let a = sim.add_node(&[]);
//! let b = sim.add_node(&[a]);
//! assert!(sim.run_until(Duration::from_secs(10), |s| s.all_see_all_alive()));
//! sim.cut(a, b);
//! sim.run_for(Duration::from_secs(10));
//! sim.heal();
//! ```
//!
//! Each node runs the whole [`Node`] state machine — SWIM, the groups and names
//! registry, dissemination and anti-entropy, processes and sends — exactly as the
//! agent does. Three kinds of traffic cross the network: datagrams (SWIM with
//! piggybacked deltas: lost, duplicated and reordered as the link says), stream frames
//! (reliable and in order per (sender, receiver, class), as a QUIC stream: loss only
//! delays them, a cut drops them) and requests (anti-entropy: the response comes back
//! over the same link, or a failure after the request timeout).
//!
//! Tests act on a node with [`Sim::with_node`], which hands the closure the node and
//! the node's local time and routes whatever the node asked for afterwards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_core::dissemination::{ChannelId, Dissemination};
use mesh_core::identity::NodeId;
use mesh_core::membership::{
    EventKind, MemberState, Membership, MembershipConfig, MembershipEvent, Profile, SwimTimer,
};
use mesh_core::node::claims_plane::CallError;
use mesh_core::node::{
    Command, CommandId, Node, NodeConfig, Output, Reply, RequestFailed, RequestTag, StateFrame,
    StoreBoot,
};
use mesh_core::quorum::store::load_acceptor;
use mesh_core::quorum::{AcceptorStore, MemStore};
use mesh_transport::frame::Class;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How long a request waits before failing when its response cannot arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra delay a stream frame takes per "lost" transmission (QUIC retransmits).
pub const RETRANSMIT_DELAY: Duration = Duration::from_millis(200);
/// The simulated wall clock at the start of every run (ms since the Unix epoch).
pub const WALL_START_MS: u64 = 1_800_000_000_000;

/// Network behaviour for a link (or for all links).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Shortest one-way delay.
    pub delay_min: Duration,
    /// Longest one-way delay; anything above `delay_min` is jitter and reorders.
    pub delay_max: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a delivered packet is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay_min: Duration::from_micros(200),
            delay_max: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A durable write in flight.
#[derive(Debug, Clone)]
pub enum Write {
    /// Acceptor states.
    States(Vec<(Vec<u8>, Vec<u8>)>),
    /// The root record.
    Root(mesh_core::quorum::RootRecord),
}

/// How long a simulated fsync takes.
pub const FSYNC: Duration = Duration::from_micros(800);

/// Something scheduled in simulated time.
#[derive(Debug, Clone)]
pub enum Event {
    /// A datagram reaches node `to`, sent over a connection authenticated as `from`.
    Deliver {
        /// Receiver.
        to: usize,
        /// Receiver's life it was sent to (a restart drops in-flight packets).
        life: u64,
        /// Certificate name of the sender.
        from: String,
        /// The datagram.
        data: Bytes,
    },
    /// A stream frame reaches node `to`.
    Frame {
        /// Receiver.
        to: usize,
        /// Receiver's life it was sent to.
        life: u64,
        /// Certificate name of the sender.
        from: String,
        /// Stream class.
        class: Class,
        /// The payload.
        payload: Bytes,
    },
    /// A request reaches node `to`, which answers at once.
    Request {
        /// Receiver.
        to: usize,
        /// Receiver's life it was sent to.
        life: u64,
        /// The requester.
        from: usize,
        /// The requester's life.
        from_life: u64,
        /// The requester's tag.
        tag: RequestTag,
        /// Stream class.
        class: Class,
        /// The payload.
        payload: Bytes,
    },
    /// A request's outcome reaches its requester `to`.
    Response {
        /// The requester.
        to: usize,
        /// Its life.
        life: u64,
        /// The tag it gave.
        tag: RequestTag,
        /// The response, or why there is none.
        result: Result<Bytes, RequestFailed>,
    },
    /// A durable write of node `node` finishes.
    Persisted {
        /// The node.
        node: usize,
        /// Its life that asked for it (a kill loses it).
        life: u64,
        /// The commit id, or `None` for the root record.
        id: Option<u64>,
        /// What to write.
        write: Write,
    },
    /// A SWIM timer of node `node` is due.
    Timer {
        /// Owner.
        node: usize,
        /// Owner's life that armed it.
        life: u64,
        /// The timer.
        timer: SwimTimer,
    },
    /// Housekeeping tick of node `node` (seed announces).
    Tick {
        /// Owner.
        node: usize,
        /// Owner's life.
        life: u64,
    },
}

impl Event {
    fn node(&self) -> usize {
        match self {
            Self::Deliver { to, .. }
            | Self::Frame { to, .. }
            | Self::Request { to, .. }
            | Self::Response { to, .. } => *to,
            Self::Timer { node, .. } | Self::Tick { node, .. } | Self::Persisted { node, .. } => {
                *node
            }
        }
    }

    fn life(&self) -> u64 {
        match self {
            Self::Deliver { life, .. }
            | Self::Frame { life, .. }
            | Self::Request { life, .. }
            | Self::Response { life, .. }
            | Self::Timer { life, .. }
            | Self::Persisted { life, .. }
            | Self::Tick { life, .. } => *life,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Deliver { .. } => 0,
            Self::Frame { .. } => 1,
            Self::Request { .. } => 2,
            Self::Response { .. } => 3,
            Self::Persisted { .. } => 4,
            Self::Timer { .. } => 5,
            Self::Tick { .. } => 6,
        }
    }
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Node name (`n0`, `n1`, ...).
    pub name: String,
    /// Its address on the simulated network.
    pub addr: SocketAddr,
    /// Seeds it joins through.
    pub seeds: Vec<usize>,
    /// The node's state machine; `None` while the node is dead.
    pub node: Option<Node>,
    /// Incremented on every restart; events of an older life are discarded.
    pub life: u64,
    /// Incarnation of the current life.
    pub incarnation: u64,
    /// Local clock rate: 1.0 is exact, 1.01 runs 1 % fast.
    pub clock_rate: f64,
    /// While set, the node handles nothing until this (global) time.
    pub paused_until: Option<Instant>,
    /// Highest incarnation this node had when it was last killed: a `Down` about
    /// an incarnation above it is about a node that never died.
    pub killed_at_incarnation: u64,
    /// When the node's next housekeeping tick is scheduled.
    pub next_tick: Option<Instant>,
    /// A voter's durable store (it survives kills; a wipe replaces it).
    pub store: Option<MemStore>,
    /// Fatal stops the node reported (a failed fsync).
    pub fatal: Vec<String>,
}

/// A membership event as observed by one node.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Global simulated time.
    pub at: Duration,
    /// The node that observed it.
    pub observer: usize,
    /// The event.
    pub event: MembershipEvent,
}

/// The simulator. See the module docs.
pub struct Sim {
    seed: u64,
    rng: StdRng,
    base: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Event>,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    net: LinkConfig,
    links: HashMap<(usize, usize), LinkConfig>,
    cuts: HashSet<(usize, usize)>,
    /// Every membership event observed, in order.
    pub observed: Vec<Observed>,
    /// Outcomes of acknowledged sends and barriers, by node, in order.
    pub results: Vec<(usize, Output)>,
    profile: Profile,
    /// Packets dropped by loss or partitions.
    pub dropped: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Stream frames delivered.
    pub frames_delivered: u64,
    /// Stream frames dropped by cuts or restarts.
    pub frames_dropped: u64,
    /// Requests that failed (cut, or the responder was dead).
    pub requests_failed: u64,
    /// Per (from, to, class): when the last frame arrives, so frames keep their order.
    stream_tail: HashMap<(usize, usize, u8), Instant>,
    /// User streams (from, to) whose send queue is full: the transport refuses their
    /// frames, as a stalled peer's full QUIC stream does in the shell.
    full_user_streams: HashSet<(usize, usize)>,
    /// The last command id handed out ([`Sim::command`]).
    next_command: u64,
    /// Configuration every booted node gets (its membership seeds and profile are set
    /// per node).
    pub node_config: NodeConfig,
    /// When set, every CRDT broadcast is lost: delta items piggybacked on datagrams are
    /// stripped (the SWIM packet still goes) and batch frames are dropped. Only
    /// anti-entropy carries state.
    pub lose_broadcasts: bool,
    /// Broadcasts lost that way (datagram trailers stripped, batch frames dropped).
    pub broadcasts_lost: u64,
    /// Re-wraps stripped SWIM packets (it never holds items).
    stripper: Dissemination,
    /// The simulated DNS zone: a name and the nodes its records point at. A DNS seed
    /// lookup ([`Output::ResolveSeed`]) is answered at once from it, at the seed's port
    /// (7946 for SRV); a name missing or empty is NXDOMAIN.
    pub dns: HashMap<String, Vec<usize>>,
    /// DNS lookups answered.
    pub dns_lookups: u64,
}

impl Sim {
    /// A simulator with the LAN profile and default links.
    pub fn new(seed: u64) -> Self {
        Self::with_profile(seed, Profile::Lan)
    }

    /// A simulator whose nodes use `profile`.
    pub fn with_profile(seed: u64, profile: Profile) -> Self {
        let base = Instant::now();
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            base,
            now: base,
            seq: 0,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            nodes: Vec::new(),
            net: LinkConfig::default(),
            links: HashMap::new(),
            cuts: HashSet::new(),
            observed: Vec::new(),
            results: Vec::new(),
            profile,
            dropped: 0,
            delivered: 0,
            frames_delivered: 0,
            frames_dropped: 0,
            requests_failed: 0,
            stream_tail: HashMap::new(),
            full_user_streams: HashSet::new(),
            next_command: 0,
            node_config: NodeConfig::default(),
            lose_broadcasts: false,
            broadcasts_lost: 0,
            stripper: Dissemination::new(
                mesh_core::dissemination::DisseminationConfig::default(),
                &[(ChannelId(255), "none")],
                0,
            )
            .expect("valid default config"),
            dns: HashMap::new(),
            dns_lookups: 0,
        }
    }

    /// The seed this run replays from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Adds a node that joins through `seeds` and starts it. Returns its index.
    pub fn add_node(&mut self, seeds: &[usize]) -> usize {
        let idx = self.nodes.len();
        let octets = u8::try_from(idx % 250).unwrap_or(0);
        let third = u8::try_from(idx / 250).unwrap_or(0);
        self.nodes.push(SimNode {
            name: format!("n{idx}"),
            addr: SocketAddr::from(([10, 0, third, octets + 1], 7946)),
            seeds: seeds.to_vec(),
            node: None,
            life: 0,
            incarnation: 0,
            clock_rate: 1.0,
            paused_until: None,
            killed_at_incarnation: 0,
            next_tick: None,
            store: None,
            fatal: Vec::new(),
        });
        self.boot(idx);
        idx
    }

    /// Adds `n` nodes, all seeded with node 0 (node 0 itself has no seed).
    pub fn add_cluster(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| {
                let seeds: &[usize] = if i == 0 { &[] } else { &[0] };
                self.add_node(seeds)
            })
            .collect()
    }

    fn local_now(&self, node: usize) -> Instant {
        let rate = self.nodes[node].clock_rate;
        self.base + (self.now - self.base).mul_f64(rate)
    }

    fn to_global(&self, node: usize, local: Instant) -> Instant {
        let rate = self.nodes[node].clock_rate;
        self.base + local.saturating_duration_since(self.base).div_f64(rate)
    }

    fn boot(&mut self, idx: usize) {
        let node = &mut self.nodes[idx];
        node.life += 1;
        // A restart is a new boot: above every incarnation the old life reached,
        // including renewals after being declared down.
        node.incarnation = node.incarnation.max(node.killed_at_incarnation) + 1;
        let seeds = node
            .seeds
            .iter()
            .map(|&s| {
                SocketAddr::from((
                    [
                        10,
                        0,
                        u8::try_from(s / 250).unwrap_or(0),
                        u8::try_from(s % 250).unwrap_or(0) + 1,
                    ],
                    7946,
                ))
            })
            .collect();
        let id = NodeId::new(node.name.clone(), node.addr, node.incarnation);
        let rng_seed = self.rng.random::<u64>();
        let now = self.local_now(idx);
        let mut config = self.node_config.clone();
        config.membership = MembershipConfig {
            profile: self.profile,
            seeds,
            ..config.membership
        };
        if let Some(q) = config.quorum.as_mut() {
            let name = self.nodes[idx].name.clone();
            q.store = q.config.voters.contains(&name).then(|| {
                let store = match self.nodes[idx].store.take() {
                    // A restart finds what was durable; what was not is gone.
                    Some(old) => old.crash(),
                    None => MemStore::new(&mut self.rng),
                };
                let boot = StoreBoot {
                    acceptor_id: store.acceptor_id(),
                    root: store.root().expect("memory store root"),
                    states: load_acceptor(&store).expect("memory store states"),
                };
                self.nodes[idx].store = Some(store);
                boot
            });
        }
        let wall = WALL_START_MS + u64::try_from((self.now - self.base).as_millis()).unwrap_or(0);
        let n = Node::new(id, config, rng_seed, now, wall)
            .expect("the simulator's node config is valid");
        self.nodes[idx].node = Some(n);
        let life = self.nodes[idx].life;
        self.schedule(self.now, Event::Tick { node: idx, life });
        self.drain(idx);
    }

    /// Kills node `n` at once (like `kill -9`): it sends and answers nothing more.
    pub fn kill(&mut self, n: usize) {
        if let Some(node) = self.nodes[n].node.take() {
            self.nodes[n].killed_at_incarnation = node.membership().identity().incarnation;
        }
        self.nodes[n].life += 1;
    }

    /// Restarts a killed node as a new, higher incarnation of the same name.
    pub fn restart(&mut self, n: usize) {
        self.nodes[n].paused_until = None;
        self.boot(n);
    }

    /// Makes node `n` leave gracefully, then stops it.
    pub fn leave(&mut self, n: usize) {
        let now = self.local_now(n);
        if let Some(node) = self.nodes[n].node.as_mut() {
            node.leave(now);
        }
        self.drain(n);
        self.kill(n);
    }

    /// Runs `f` on node `n` (if it is running) with its local time, then routes what
    /// it asked for. Returns `None` if the node is dead.
    pub fn with_node<R>(&mut self, n: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.local_now(n);
        let r = self.nodes[n].node.as_mut().map(|node| f(node, now));
        self.drain(n);
        r
    }

    /// Fills (or, with `full = false`, drains) the user stream from node `from` to
    /// node `to`: while full, the transport refuses every user frame on it.
    pub fn set_user_stream_full(&mut self, from: usize, to: usize, full: bool) {
        if full {
            self.full_user_streams.insert((from, to));
        } else {
            self.full_user_streams.remove(&(from, to));
        }
    }

    /// Hands node `n` a command ([`Node::handle_command`]) under a fresh id; its reply
    /// is in [`Sim::results`] once it comes ([`Sim::reply`]). `None` if the node is not
    /// running.
    pub fn command(&mut self, n: usize, cmd: Command) -> Option<CommandId> {
        self.next_command += 1;
        let id = CommandId(self.next_command);
        self.with_node(n, |node, now| node.handle_command(now, id, cmd))?;
        Some(id)
    }

    /// The reply to command `id` of node `n`, if it came.
    pub fn reply(&self, n: usize, id: CommandId) -> Option<Reply> {
        self.results.iter().rev().find_map(|(node, out)| match out {
            Output::Completed { id: c, result } if *node == n && *c == id => Some(result.clone()),
            _ => None,
        })
    }

    /// Runs until command `id` of node `n` has its reply (or `limit` passes).
    pub fn await_reply(&mut self, n: usize, id: CommandId, limit: Duration) -> Option<Reply> {
        self.run_until(limit, |s| s.reply(n, id).is_some());
        self.reply(n, id)
    }

    /// Runs command `cmd` on node `n` and waits up to `limit` for its reply.
    pub fn run_command(&mut self, n: usize, cmd: Command, limit: Duration) -> Option<Reply> {
        let id = self.command(n, cmd)?;
        self.await_reply(n, id, limit)
    }

    /// Sends from node `n` as the agent's shell does ([`Command::Send`] or
    /// [`Command::SendConfirmed`]): the frames are carried out at once and the
    /// transport's refusals settle the reply in the core. A confirmed send runs the
    /// simulation until its acks ended (its outcome is in [`Sim::results`]). `None` if
    /// the node is not running (or a confirmed send got no reply in time).
    pub fn send_via_shell(
        &mut self,
        n: usize,
        from: Option<mesh_core::pid::Pid>,
        dest: &mesh_core::node::Dest,
        payload: Bytes,
        ack: bool,
    ) -> Option<Result<mesh_core::node::SendReceipt, mesh_core::node::SendError>> {
        let dest = dest.clone();
        let cmd = if ack {
            Command::SendConfirmed {
                from,
                dest,
                payload,
            }
        } else {
            Command::Send {
                from,
                dest,
                payload,
            }
        };
        let id = self.command(n, cmd)?;
        let reply = if ack {
            // The reply comes once every remote node answered, or at the ack timeout.
            self.await_reply(n, id, mesh_core::node::ACK_TIMEOUT + Duration::from_secs(1))
        } else {
            self.reply(n, id)
        };
        match reply? {
            Reply::Sent(r) => Some(r),
            Reply::Confirmed(r) => Some(r.map(|(receipt, _)| receipt)),
            other => panic!("a send replied {other:?}"),
        }
    }

    /// Configures the quorum plane with `voters` (node indices) for every node booted
    /// from now on (call before adding nodes).
    pub fn set_voters(&mut self, voters: &[usize]) {
        let names: Vec<String> = voters.iter().map(|v| format!("n{v}")).collect();
        let names = mesh_core::quorum::VoterNames::new(names).expect("3 or 5 voters");
        self.node_config.quorum = Some(mesh_core::node::QuorumBoot {
            config: mesh_core::node::claims_plane::QuorumConfig::new(names),
            store: None,
        });
    }

    /// Replaces node `n`'s durable store with an empty one (a wiped disk): its next
    /// boot has a new acceptor id.
    pub fn wipe(&mut self, n: usize) {
        self.nodes[n].store = None;
    }

    /// Starts a claims or strong-name command on node `n`; `None` if it is dead.
    pub fn claims_command(&mut self, n: usize, cmd: Command) -> Option<CommandId> {
        self.command(n, cmd)
    }

    /// The result of claims command `id` on node `n`, if it finished.
    pub fn claim_result(
        &self,
        n: usize,
        id: CommandId,
    ) -> Option<Result<mesh_core::claims::CallOk, CallError>> {
        match self.reply(n, id)? {
            Reply::Claims(r) => Some(r),
            other => panic!("a claims command replied {other:?}"),
        }
    }

    /// Runs until claims command `id` on node `n` finished (or `limit` passes).
    pub fn await_claim(
        &mut self,
        n: usize,
        id: CommandId,
        limit: Duration,
    ) -> Option<Result<mesh_core::claims::CallOk, CallError>> {
        self.run_until(limit, |s| s.claim_result(n, id).is_some());
        self.claim_result(n, id)
    }

    /// The address node `n` advertises.
    pub fn nodes_addr(&self, n: usize) -> SocketAddr {
        self.nodes[n].addr
    }

    /// Node `n`'s state machine, if it is running.
    pub fn node(&self, n: usize) -> Option<&Node> {
        self.nodes[n].node.as_ref()
    }

    /// Node `n`'s SWIM state machine, if it is running.
    pub fn membership(&self, n: usize) -> Option<&Membership> {
        self.node(n).map(Node::membership)
    }

    /// Pauses node `n` for `d` (SIGSTOP, or a CPU-starved process): what reaches it
    /// waits until it resumes.
    pub fn pause(&mut self, n: usize, d: Duration) {
        self.nodes[n].paused_until = Some(self.now + d);
    }

    /// Sets node `n`'s clock rate (1.0 exact).
    pub fn set_clock_rate(&mut self, n: usize, rate: f64) {
        self.nodes[n].clock_rate = rate;
    }

    /// Sets the behaviour of every link without an override.
    pub fn set_network(&mut self, cfg: LinkConfig) {
        self.net = cfg;
    }

    /// Sets loss on every link without an override.
    pub fn set_loss(&mut self, p: f64) {
        self.net.loss = p;
    }

    /// Overrides the behaviour of the link from `a` to `b` (one direction).
    pub fn set_link(&mut self, a: usize, b: usize, cfg: LinkConfig) {
        self.links.insert((a, b), cfg);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a, b));
        self.cuts.insert((b, a));
    }

    /// Cuts `n` off from everyone.
    pub fn isolate(&mut self, n: usize) {
        for o in 0..self.nodes.len() {
            if o != n {
                self.cut(n, o);
            }
        }
    }

    /// Cuts every link between the two sides.
    pub fn partition(&mut self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    /// Removes every cut and link override.
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.links.clear();
    }

    /// Answers a DNS seed lookup from [`Sim::dns`].
    fn resolve(
        &mut self,
        seed: &mesh_core::discovery::DnsSeed,
    ) -> Result<Vec<SocketAddr>, mesh_core::discovery::ResolveFailure> {
        use mesh_core::discovery::{DnsSeed, ResolveFailure};
        self.dns_lookups += 1;
        let port = match seed {
            DnsSeed::Host { port, .. } => *port,
            DnsSeed::Srv { .. } => 7946,
        };
        match self.dns.get(seed.name()) {
            Some(nodes) if !nodes.is_empty() => Ok(nodes
                .iter()
                .map(|&i| SocketAddr::new(self.nodes[i].addr.ip(), port))
                .collect()),
            _ => Err(ResolveFailure::NxDomain),
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.pending.insert(self.seq, ev);
    }

    /// Routes everything node `n` asked for.
    fn drain(&mut self, n: usize) {
        let mut outs = Vec::new();
        if let Some(node) = self.nodes[n].node.as_mut() {
            while let Some(o) = node.poll_output() {
                outs.push(o);
            }
        }
        let life = self.nodes[n].life;
        // A send's marker was reached: its reply is in the node's outputs now.
        let mut carried = false;
        for out in outs {
            match out {
                Output::Datagram { to, data } => self.send(n, &to, data),
                Output::Frame { to, class, payload } => {
                    let target = to.name.as_deref().and_then(|t| self.index_of(t));
                    if let Some(target) = target.filter(|&t| {
                        class == Class::User && self.full_user_streams.contains(&(n, t))
                    }) {
                        // The transport refuses the frame: the node is told, as the
                        // shell tells it.
                        let name = self.nodes[target].name.clone();
                        if let Some(node) = self.nodes[n].node.as_mut() {
                            node.frame_refused(&name, class);
                        }
                    } else if let Some(target) = target {
                        self.send_frame(n, target, class, payload);
                    } else {
                        self.frames_dropped += 1;
                    }
                }
                Output::Request {
                    to,
                    tag,
                    class,
                    payload,
                } => {
                    let target = to.name.as_deref().and_then(|t| self.index_of(t));
                    self.send_request(n, target, tag, class, payload);
                }
                Output::Timer { at, timer } => {
                    let at = self.to_global(n, at).max(self.now);
                    self.schedule(
                        at,
                        Event::Timer {
                            node: n,
                            life,
                            timer,
                        },
                    );
                }
                Output::Membership(event) => self.observed.push(Observed {
                    at: self.elapsed(),
                    observer: n,
                    event,
                }),
                Output::Persist { id, entries } => self.schedule(
                    self.now + FSYNC,
                    Event::Persisted {
                        node: n,
                        life,
                        id: Some(id),
                        write: Write::States(entries),
                    },
                ),
                Output::PersistRoot(root) => self.schedule(
                    self.now + FSYNC,
                    Event::Persisted {
                        node: n,
                        life,
                        id: None,
                        write: Write::Root(root),
                    },
                ),
                Output::Fatal(why) => self.nodes[n].fatal.push(why),
                Output::Carried(mark) => {
                    let now = self.local_now(n);
                    if let Some(node) = self.nodes[n].node.as_mut() {
                        node.handle_carried(now, mark);
                        carried = true;
                    }
                }
                // Outcomes of acknowledged sends, barriers, claims calls and holds are
                // kept for the tests, in order.
                Output::ResolveSeed(r) => {
                    let result = self.resolve(&r.seed);
                    let now = self.local_now(n);
                    if let Some(node) = self.nodes[n].node.as_mut() {
                        node.handle_seed_resolved(now, r.index, result);
                        carried = true;
                    }
                }
                Output::Completed { .. } | Output::ClaimEvent(_) | Output::HoldEnded { .. } => {
                    self.results.push((n, out));
                }
            }
        }
        if carried {
            self.drain(n);
            return;
        }
        if let Some(at) = self.nodes[n].node.as_ref().and_then(Node::poll_timeout) {
            let at = self
                .to_global(n, at)
                .max(self.now + Duration::from_millis(1));
            // One pending tick per node: only an earlier deadline adds another.
            let pending = self.nodes[n].next_tick.filter(|&t| t > self.now);
            if pending.is_none_or(|t| at < t) {
                self.nodes[n].next_tick = Some(at);
                self.schedule(at, Event::Tick { node: n, life });
            }
        }
    }

    fn send(&mut self, from: usize, to: &NodeId, data: Bytes) {
        let data = if self.lose_broadcasts {
            match Dissemination::unwrap_datagram(&data) {
                Ok((swim, items)) if !items.is_empty() => {
                    self.broadcasts_lost += 1;
                    let swim = swim.to_vec();
                    self.stripper
                        .wrap_datagram(self.now, "", &swim)
                        .expect("a SWIM packet that was wrapped once fits again")
                }
                _ => data,
            }
        } else {
            data
        };
        let target = if to.is_seed_placeholder() {
            self.nodes.iter().position(|n| n.addr == to.addr)
        } else {
            self.nodes.iter().position(|n| n.name == to.name)
        };
        let Some(target) = target else {
            self.dropped += 1;
            return;
        };
        if self.cuts.contains(&(from, target)) {
            self.dropped += 1;
            return;
        }
        let link = self.link(from, target);
        if self.rng.random::<f64>() < link.loss {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.random::<f64>() < link.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = link.delay_max.saturating_sub(link.delay_min);
            let jitter = span.mul_f64(self.rng.random::<f64>());
            let at = self.now + link.delay_min + jitter;
            let ev = Event::Deliver {
                to: target,
                life: self.nodes[target].life,
                from: self.nodes[from].name.clone(),
                data: data.clone(),
            };
            self.schedule(at, ev);
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn link(&self, from: usize, to: usize) -> LinkConfig {
        self.links.get(&(from, to)).copied().unwrap_or(self.net)
    }

    fn delay(&mut self, link: LinkConfig) -> Duration {
        let span = link.delay_max.saturating_sub(link.delay_min);
        link.delay_min + span.mul_f64(self.rng.random::<f64>())
    }

    /// A frame on the (from, to, class) stream: delayed by the link, by a retransmit
    /// for each loss, and never before the previous frame of the same stream.
    fn send_frame(&mut self, from: usize, to: usize, class: Class, payload: Bytes) {
        if self.lose_broadcasts
            && class == Class::State
            && matches!(
                rmp_serde::from_slice::<StateFrame>(&payload),
                Ok(StateFrame::Batch(_))
            )
        {
            self.broadcasts_lost += 1;
            return;
        }
        if self.cuts.contains(&(from, to)) || self.nodes[to].node.is_none() {
            self.frames_dropped += 1;
            return;
        }
        let link = self.link(from, to);
        let mut delay = self.delay(link);
        let mut tries = 0;
        while tries < 20 && self.rng.random::<f64>() < link.loss {
            delay += RETRANSMIT_DELAY;
            tries += 1;
        }
        let key = (from, to, class as u8);
        let mut at = self.now + delay;
        if let Some(&tail) = self.stream_tail.get(&key) {
            at = at.max(tail);
        }
        self.stream_tail.insert(key, at);
        let ev = Event::Frame {
            to,
            life: self.nodes[to].life,
            from: self.nodes[from].name.clone(),
            class,
            payload,
        };
        self.schedule(at, ev);
    }

    fn send_request(
        &mut self,
        from: usize,
        to: Option<usize>,
        tag: RequestTag,
        class: Class,
        payload: Bytes,
    ) {
        let from_life = self.nodes[from].life;
        let reachable =
            to.filter(|&t| !self.cuts.contains(&(from, t)) && self.nodes[t].node.is_some());
        match reachable {
            Some(t) => {
                let delay = self.delay(self.link(from, t));
                let ev = Event::Request {
                    to: t,
                    life: self.nodes[t].life,
                    from,
                    from_life,
                    tag,
                    class,
                    payload,
                };
                self.schedule(self.now + delay, ev);
            }
            None => self.fail_request(from, from_life, tag, "unreachable"),
        }
    }

    fn fail_request(&mut self, to: usize, life: u64, tag: RequestTag, why: &str) {
        self.requests_failed += 1;
        let ev = Event::Response {
            to,
            life,
            tag,
            result: Err(RequestFailed(why.to_owned())),
        };
        self.schedule(self.now + REQUEST_TIMEOUT, ev);
    }

    /// Processes the next instant's events. Returns false when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, _))) = self.queue.peek().copied() else {
            return false;
        };
        self.now = self.now.max(at);
        // Everything due at this instant, handled in a fixed order: by node, then
        // deliveries before timers, timers in foca's order, then by schedule order.
        let mut batch = Vec::new();
        while let Some(Reverse((t, seq))) = self.queue.peek().copied() {
            if t != at {
                break;
            }
            self.queue.pop();
            if let Some(ev) = self.pending.remove(&seq) {
                batch.push((seq, ev));
            }
        }
        batch.sort_by(|(sa, a), (sb, b)| {
            let timer = |e: &Event| match e {
                Event::Timer { timer, .. } => Some(timer.clone()),
                _ => None,
            };
            (a.node(), a.rank(), timer(a), sa).cmp(&(b.node(), b.rank(), timer(b), sb))
        });
        for (_, ev) in batch {
            self.handle(ev);
        }
        true
    }

    fn handle(&mut self, ev: Event) {
        let n = ev.node();
        if self.nodes[n].life != ev.life() || self.nodes[n].node.is_none() {
            match ev {
                Event::Deliver { .. } => self.dropped += 1,
                Event::Frame { .. } => self.frames_dropped += 1,
                Event::Request {
                    from,
                    from_life,
                    tag,
                    ..
                } => self.fail_request(from, from_life, tag, "responder died"),
                _ => {}
            }
            return;
        }
        if let Some(until) = self.nodes[n].paused_until {
            if self.now < until {
                self.schedule(until, ev);
                return;
            }
            self.nodes[n].paused_until = None;
        }
        let now = self.local_now(n);
        let requester = match &ev {
            Event::Request { from, .. } => self.nodes[*from].name.clone(),
            _ => String::new(),
        };
        let Some(node) = self.nodes[n].node.as_mut() else {
            return;
        };
        match ev {
            Event::Deliver { from, data, .. } => {
                self.delivered += 1;
                // Rejections are counted in the node's stats; tests read them there.
                node.handle_datagram(now, &from, &data);
            }
            Event::Frame {
                from,
                class,
                payload,
                ..
            } => {
                self.frames_delivered += 1;
                node.handle_frame(now, &from, class, &payload);
            }
            Event::Request {
                from,
                from_life,
                tag,
                class,
                payload,
                ..
            } => {
                let result = node
                    .handle_request(now, &requester, class, &payload)
                    .map_err(|e| RequestFailed(e.to_string()));
                // The response travels back over the link (or fails on a cut).
                if self.cuts.contains(&(n, from)) {
                    self.drain(n);
                    self.fail_request(from, from_life, tag, "cut");
                    return;
                }
                let delay = self.delay(self.link(n, from));
                let ev = Event::Response {
                    to: from,
                    life: from_life,
                    tag,
                    result,
                };
                self.schedule(self.now + delay, ev);
            }
            Event::Response { tag, result, .. } => node.handle_response(now, tag, result),
            Event::Persisted { id, write, .. } => {
                let store = self.nodes[n].store.as_mut();
                let result = match (store, write) {
                    (Some(st), Write::States(entries)) => st.commit(&entries).map(|_| ()),
                    (Some(st), Write::Root(root)) => st.set_root(&root),
                    (None, _) => Err(mesh_core::quorum::StoreError::Stopped),
                }
                .map_err(|e| e.to_string());
                let Some(node) = self.nodes[n].node.as_mut() else {
                    return;
                };
                match id {
                    Some(id) => node.handle_persisted(now, id, result),
                    None => node.handle_root_persisted(now, result),
                }
            }
            Event::Timer { timer, .. } => node.handle_timer(now, timer),
            Event::Tick { .. } => node.handle_tick(now),
        }
        self.drain(n);
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(Reverse((at, _))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until `cond` holds (checked every 50 ms of simulated time) or `limit`
    /// passes. Returns whether `cond` held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if cond(self) {
                return true;
            }
            if self.now >= deadline {
                return false;
            }
            self.run_for(Duration::from_millis(50));
        }
    }

    /// Indices of running nodes.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect()
    }

    /// Node `n`'s view: name → (incarnation, state), itself included as alive.
    pub fn view(&self, n: usize) -> BTreeMap<String, (u64, MemberState)> {
        let mut v = BTreeMap::new();
        if let Some(m) = self.membership(n) {
            for info in m.members() {
                v.insert(info.id.name.clone(), (info.id.incarnation, info.state));
            }
            v.insert(
                m.identity().name.clone(),
                (m.identity().incarnation, MemberState::Alive),
            );
        }
        v
    }

    /// Names node `n` sees alive or suspect, itself included.
    pub fn live_view(&self, n: usize) -> Vec<String> {
        self.view(n)
            .into_iter()
            .filter(|(_, (_, s))| s.is_live())
            .map(|(k, _)| k)
            .collect()
    }

    /// Every running node sees every running node live, at its current incarnation,
    /// and nothing else live.
    pub fn all_see_all_alive(&self) -> bool {
        let live = self.live_nodes();
        let expected: BTreeMap<String, u64> = live
            .iter()
            .filter_map(|&i| {
                self.membership(i)
                    .map(|m| (m.identity().name.clone(), m.identity().incarnation))
            })
            .collect();
        live.iter().all(|&i| {
            let seen: BTreeMap<String, u64> = self
                .view(i)
                .into_iter()
                .filter(|(_, (_, s))| s.is_live())
                .map(|(k, (inc, _))| (k, inc))
                .collect();
            seen == expected
        })
    }

    /// Every node in `observers` sees `target` in one of `states`.
    pub fn all_see(&self, observers: &[usize], target: usize, states: &[MemberState]) -> bool {
        let name = &self.nodes[target].name;
        observers.iter().all(|&o| {
            self.view(o)
                .get(name)
                .is_some_and(|(_, s)| states.contains(s))
        })
    }

    /// Down events observed since `since` about an incarnation that was never
    /// killed — false downs. (A node declared down renews itself to a higher
    /// incarnation, so a false down stays visible in the record.) Partitions make
    /// downs legitimate: scope `since` past them.
    pub fn false_downs_since(&self, since: Duration) -> Vec<&Observed> {
        self.observed
            .iter()
            .filter(|o| o.at >= since && o.event.kind == EventKind::Down)
            .filter(|o| {
                self.nodes
                    .iter()
                    .find(|n| n.name == o.event.member.name)
                    .is_some_and(|n| o.event.member.incarnation > n.killed_at_incarnation)
            })
            .collect()
    }

    /// A one-line summary of every node's view, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("seed {} at {:?}:", self.seed, self.elapsed());
        for i in 0..self.nodes.len() {
            let v: Vec<String> = self
                .view(i)
                .into_iter()
                .map(|(k, (inc, st))| format!("{k}#{inc}:{}", st.as_str()))
                .collect();
            s.push_str(&format!("\n  {}: [{}]", self.nodes[i].name, v.join(" ")));
        }
        s
    }
}

/// Runs `check` for every seed through the workspace's one seed loop
/// ([`mesh_sim_seeds::for_each_seed`]): `MESH_SIM_SEEDS` seeds (else `default`), or only
/// `MESH_SIM_SEED` to replay one, spread over the machine's cores. A seed fails when
/// `check` returns `Err` or panics; then this panics with the failing seeds and a
/// `REPRODUCE WITH:` line naming `test` in the running test target.
pub fn for_each_seed(test: &str, default: u64, check: impl Fn(u64) -> Result<(), String> + Sync) {
    let target = mesh_sim_seeds::current_target();
    let test = mesh_sim_seeds::SimTest {
        package: env!("CARGO_PKG_NAME"),
        target: &target,
        name: test,
    };
    mesh_sim_seeds::for_each_seed(test, default, check);
}
