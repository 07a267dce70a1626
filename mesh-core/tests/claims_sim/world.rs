//! The simulated world: 3 voters (real `Acceptor`s with group commit; a crash loses what
//! was not fsynced), 3–5 holder nodes (a real `Proposer`, `Holder` and `Watcher` each,
//! and a small application that claims tasks, writes to a fenced resource and uses strong
//! names), one seeded RNG, a discrete-event queue in global simulated time, and per-node
//! clocks whose rates differ from real time by up to ±ρ.
//!
//! Where a change is proposed is decided by the real routing of the claims plane: each
//! holder node runs a `claims_plane::routing::Router` (the one `QuorumPlane` runs), with
//! the (simulated SWIM) view as its candidates. It sends every change to its shard's
//! preferred proposer, skips a proposer that did not answer in `FORWARD_TIMEOUT` (the
//! retry goes to the next node in HRW order, the same for everyone), and tells the
//! preferred proposer's node to watch the shard; this world only moves the forwards and
//! their answers (over a reliable stream), arms the router's timer and feeds the
//! watcher every table its proposer decides on. Register messages are lossy datagrams
//! (loss, duplication, reordering). Odd seeds run the watchers with reassignment.
//!
//! A run has two phases. **Faults** (`0..FAULTS_END`): one fault episode at a time —
//! a voter crash, a voter cut off from some holders, a holder cut off from everyone, a
//! holder crash and restart (a new incarnation), a holder frozen (a stopped process:
//! whatever reaches it waits) — and at any time, an application pausing between its
//! validity check and its write. **Calm** (`FAULTS_END..END`): everything healed and
//! restarted (no more loss; duplication and reordering stay), one voter isolated for the
//! whole phase, and one holder killed for good at `KILL_AT`.
//!
//! Everything a checker needs goes into a [`Record`].

use mesh_core::claims::{
    CallId, CallOk, ClaimReject, Drift, FencedResource, Holder, HolderConfig, HolderEvent,
    LostReason, SessionId, ShardChange, ShardId, ShardOutcome, ShardSlot, ShardTable, Submission,
    Watcher, WatcherConfig, WatcherEvent,
};
use mesh_core::node::claims_plane::routing::{Route, Router, RouterStats, RoutingMutation};
use mesh_core::pid::Pid;
use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Completion, NodeId, OpId, Outcome, ProposeError,
    Proposer, ProposerConfig, ProposerOutput, Reply, Request, RequestId,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

pub(crate) const VOTERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
pub(crate) const SHARDS: u32 = 2;
pub(crate) const TASKS: [&str; 4] = ["task-a", "task-b", "task-c", "task-d"];
pub(crate) const NAMES: [&str; 2] = ["svc-x", "svc-y"];
pub(crate) const TTL: Duration = Duration::from_millis(700);
/// ρ: every node's clock rate is within `1 ± RHO`.
pub(crate) const RHO_PPM: u32 = 100_000;
pub(crate) const GUARD: Duration = Duration::from_millis(10);
pub(crate) const REFRESH: Duration = Duration::from_millis(400);
/// How long the simulated SWIM takes to declare a crashed node down.
pub(crate) const DETECTION: Duration = Duration::from_millis(400);
pub(crate) const FAULTS_END: Duration = Duration::from_millis(3_200);
pub(crate) const KILL_AT: Duration = Duration::from_millis(4_200);
pub(crate) const END: Duration = Duration::from_millis(6_300);
/// From here on no holder that keeps renewing may lose a claim, and every op completes.
pub(crate) const LIVE_FROM: Duration = Duration::from_millis(3_900);

pub(crate) fn rho() -> f64 {
    f64::from(RHO_PPM) / 1e6
}

fn drift() -> Drift {
    Drift::from_ppm(RHO_PPM).unwrap_or(Drift::ZERO)
}

type P = Proposer<ShardId, ShardTable, ShardChange>;
type A = Acceptor<ShardId, ShardSlot>;

/// What a run varies for the negative controls.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Negative control: the application writes without checking its validity (it stops
    /// only when it learns the claim was evicted).
    pub(crate) ignore_deadline: bool,
    /// Negative control: the watchers use this drift bound instead of ρ (`Drift::ZERO`:
    /// evict after TTL instead of TTL·(1+ρ)); clock rates are then pushed to ±ρ.
    pub(crate) watcher_drift: Option<Drift>,
    /// Negative control: each node's proposer uses one voter as its whole voter set.
    pub(crate) quorum_of_one: bool,
    /// Negative control: the routing of every holder node breaks one rule.
    pub(crate) routing_mutation: Option<RoutingMutation>,
}

/// One table operation as a client saw it (global times).
#[derive(Clone, Debug)]
pub(crate) struct HistOp {
    pub(crate) shard: ShardId,
    pub(crate) change: ShardChange,
    pub(crate) client: String,
    pub(crate) invoked: Duration,
    pub(crate) done: Option<(Duration, ShardOutcome)>,
}

/// The interval in which one holder life believed a token valid (global times).
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub(crate) task: String,
    pub(crate) token: u64,
    pub(crate) who: String,
    /// The holder's session in the task's shard when it learned the token.
    pub(crate) session: Option<SessionId>,
    pub(crate) start: Duration,
    /// The latest end of validity the holder reported.
    pub(crate) valid_until: Duration,
    /// When the holder stopped (release submitted, loss learned, crash).
    pub(crate) closed: Option<Duration>,
    /// The last time it decided to act with this token.
    pub(crate) last_decision: Option<Duration>,
}

impl Window {
    /// When the holder stopped believing the token valid.
    pub(crate) fn believed_end(&self) -> Duration {
        self.closed
            .map_or(self.valid_until, |c| c.min(self.valid_until))
    }

    /// When the holder stopped believing it valid or acting on it, whichever is later.
    pub(crate) fn end(&self) -> Duration {
        let believed = self.believed_end();
        self.last_decision.map_or(believed, |d| d.max(believed))
    }
}

/// Everything a run leaves for the checkers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    pub(crate) history: Vec<HistOp>,
    pub(crate) windows: Vec<Window>,
    /// Per task, the tokens the fenced resource applied, in order.
    pub(crate) fenced: BTreeMap<String, Vec<u64>>,
    /// `(who, when, task)` of claims lost by holders alive at the end, after `LIVE_FROM`.
    pub(crate) lost_late: Vec<(String, Duration, String)>,
    /// The holder killed in the calm phase: `(name, incarnation, when)`.
    pub(crate) killed: Option<(String, u64, Duration)>,
    /// When a result first showed none of the killed holder's sessions.
    pub(crate) killed_gone: Option<Duration>,
    /// Node names alive at the end (their ops must complete after `LIVE_FROM`).
    pub(crate) survivors: BTreeSet<String>,
    /// The slowest watcher clock rate (for the eviction bound).
    pub(crate) slowest_rate: f64,
}

/// Counters summed over seeds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ops: usize,
    pub(crate) acked: usize,
    pub(crate) indeterminate: usize,
    /// Tokens learned by holders (claims and assignments).
    pub(crate) grants: usize,
    pub(crate) fenced_applied: u64,
    pub(crate) fenced_refused: u64,
    pub(crate) write_pauses: usize,
    pub(crate) evictions: usize,
    pub(crate) reassigned: usize,
    pub(crate) lost: usize,
    pub(crate) voter_crashes: usize,
    pub(crate) voter_cuts: usize,
    pub(crate) holder_isolations: usize,
    pub(crate) holder_crashes: usize,
    pub(crate) freezes: usize,
    pub(crate) messages: u64,
    pub(crate) superseded: usize,
    pub(crate) events: u64,
    /// The largest register slot at the end of a run (MessagePack bytes), and the most
    /// clients recorded in one (each holds a whole table).
    pub(crate) max_slot_bytes: usize,
    pub(crate) max_slot_clients: usize,
    /// The real routing's counters, summed over every holder life.
    pub(crate) routing: RouterStats,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Self) {
        self.ops += o.ops;
        self.acked += o.acked;
        self.indeterminate += o.indeterminate;
        self.grants += o.grants;
        self.fenced_applied += o.fenced_applied;
        self.fenced_refused += o.fenced_refused;
        self.write_pauses += o.write_pauses;
        self.evictions += o.evictions;
        self.reassigned += o.reassigned;
        self.lost += o.lost;
        self.voter_crashes += o.voter_crashes;
        self.voter_cuts += o.voter_cuts;
        self.holder_isolations += o.holder_isolations;
        self.holder_crashes += o.holder_crashes;
        self.freezes += o.freezes;
        self.messages += o.messages;
        self.superseded += o.superseded;
        self.events += o.events;
        self.max_slot_bytes = self.max_slot_bytes.max(o.max_slot_bytes);
        self.max_slot_clients = self.max_slot_clients.max(o.max_slot_clients);
        add_routing(&mut self.routing, &o.routing);
    }
}

fn add_routing(to: &mut RouterStats, o: &RouterStats) {
    to.forwarded += o.forwarded;
    to.local += o.local;
    to.skipped += o.skipped;
    to.timeouts += o.timeouts;
    to.late += o.late;
}

#[derive(Clone, Debug)]
enum Msg {
    Req(Request<ShardId, ShardSlot>),
    Rep(Reply<ShardId, ShardSlot>),
    /// A change sent to the shard's preferred proposer, with its history entry.
    Forward(Submission, usize),
    /// Its result, back to the node that forwarded it.
    Forwarded {
        shard: ShardId,
        request: RequestId,
        hist: usize,
        result: Result<ShardOutcome, ProposeError>,
    },
}

/// Who a proposer op is for, and its history entry.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Local(RequestId, usize),
    Remote(RequestId, usize, NodeId),
}

/// How long a node waits for a forwarded change before it reports a timeout. Its router
/// then skips that proposer for `SLOW_BACKOFF` (or until heard from) and sends the retry
/// (same request id) to the next node in HRW order — the same for every node, so a
/// shard still has one proposer while SWIM catches up (falling back to proposing locally
/// made every node duel).
const FORWARD_TIMEOUT: Duration = Duration::from_millis(100);
const SLOW_BACKOFF: Duration = Duration::from_millis(1_000);

#[derive(Clone, Debug)]
enum Fault {
    VoterCrash(usize),
    VoterCut(usize, Vec<usize>),
    HolderIsolate(usize),
    HolderCrash(usize),
    HolderFreeze,
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Sync(usize),
    NodeTimer(usize, u64),
    AppTick(usize, u64),
    WriteArrive {
        task: String,
        token: u64,
    },
    FaultStart,
    FaultEnd(Fault),
    ViewDown(usize),
    /// A frozen node may run again.
    Unfreeze(usize),
    Calm,
    Kill,
}

struct Voter {
    live: A,
    durable: BTreeMap<ShardId, AcceptorState<ShardSlot>>,
    unsynced: Vec<AcceptorOutput<ShardId, ShardSlot>>,
    sync_scheduled: bool,
    down: bool,
    /// Holder nodes (indexes) this voter is cut off from, both directions.
    cut: BTreeSet<usize>,
}

#[derive(Clone, Debug)]
enum AppCall {
    Claim(String),
    Release,
    Name(String),
    Whereis,
}

#[derive(Default)]
struct App {
    /// task → (token, window index)
    held: BTreeMap<String, (u64, usize)>,
    calls: BTreeMap<CallId, AppCall>,
    busy: BTreeSet<String>,
    /// Strong names owned: name → version.
    names: BTreeMap<String, u64>,
    /// Keys not to try again before this time (after a refusal).
    backoff: BTreeMap<String, Duration>,
    next_pid: u64,
}

struct Node {
    name: String,
    id: NodeId,
    rate: f64,
    life: u64,
    incarnation: u64,
    up: bool,
    frozen_until: Duration,
    /// Events that reached the node while it was frozen, in arrival order.
    deferred: Vec<Event>,
    proposer: P,
    holder: Holder,
    watcher: Watcher,
    ops: BTreeMap<OpId, Origin>,
    /// The real routing: where each change goes, forwards and their timeouts, skips.
    router: Router,
    /// The history entry of each request (all its attempts are one op).
    hist: BTreeMap<RequestId, usize>,
    timer_at: Option<Duration>,
    app: App,
}

pub(crate) struct Sim {
    pub(crate) seed: u64,
    opts: Options,
    rng: StdRng,
    base: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    payloads: BTreeMap<u64, Event>,
    voters: Vec<Voter>,
    nodes: Vec<Node>,
    /// The simulated SWIM view: nodes believed alive.
    view: BTreeSet<usize>,
    /// Holder nodes cut off from everyone (voters and other holders).
    isolated: BTreeSet<usize>,
    resource: FencedResource<Vec<u64>>,
    loss: f64,
    dup: f64,
    calm: bool,
    killed_gone: BTreeMap<ShardId, Duration>,
    pub(crate) record: Record,
    pub(crate) stats: Stats,
}

fn proposer_config() -> ProposerConfig {
    ProposerConfig {
        attempt_timeout: Duration::from_millis(30),
        op_timeout: Duration::from_millis(250),
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(40),
    }
}

impl Sim {
    pub(crate) fn new(seed: u64, opts: Options) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(3..=5usize);
        let loss = rng.random_range(0.0..0.03);
        let dup = rng.random_range(0.0..0.03);
        let rates: Vec<f64> = (0..n)
            .map(|i| {
                if opts.watcher_drift.is_some() {
                    // Push rates to the extremes so that slow holders meet fast watchers.
                    if i % 2 == 0 {
                        1.0 - rho()
                    } else {
                        1.0 + rho()
                    }
                } else {
                    rng.random_range((1.0 - rho())..=(1.0 + rho()))
                }
            })
            .collect();
        let mut sim = Self {
            seed,
            opts,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            voters: VOTERS
                .iter()
                .map(|id| Voter {
                    live: A::new(*id, 1),
                    durable: BTreeMap::new(),
                    unsynced: Vec::new(),
                    sync_scheduled: false,
                    down: false,
                    cut: BTreeSet::new(),
                })
                .collect(),
            nodes: Vec::new(),
            view: BTreeSet::new(),
            isolated: BTreeSet::new(),
            resource: FencedResource::new(),
            loss,
            dup,
            calm: false,
            killed_gone: BTreeMap::new(),
            record: Record {
                slowest_rate: rates.iter().copied().fold(f64::MAX, f64::min),
                ..Record::default()
            },
            stats: Stats::default(),
        };
        for (i, rate) in rates.into_iter().enumerate() {
            let node = sim.fresh_node(i, rate, 1);
            sim.nodes.push(node);
            sim.view.insert(i);
        }
        for i in 0..n {
            let at = Duration::from_millis(sim.rng.random_range(0..30));
            sim.schedule(at, Event::AppTick(i, 1));
        }
        sim.rewatch();
        let first = Duration::from_millis(sim.rng.random_range(200..600));
        sim.schedule(first, Event::FaultStart);
        sim.schedule(FAULTS_END, Event::Calm);
        sim.schedule(KILL_AT, Event::Kill);
        sim
    }

    fn fresh_node(&self, i: usize, rate: f64, life: u64) -> Node {
        let name = format!("h{i}");
        let id = NodeId(10 + i as u64);
        let incarnation = life;
        let voters: Vec<NodeId> = if self.opts.quorum_of_one {
            vec![VOTERS[i % VOTERS.len()]]
        } else {
            VOTERS.to_vec()
        };
        let mut hc = HolderConfig::new(name.clone(), incarnation, SHARDS, VOTERS.len());
        hc.ttl = TTL;
        hc.drift = drift();
        hc.guard = GUARD;
        hc.retries = 1;
        let mut wc = WatcherConfig::new(&name, incarnation);
        wc.drift = self.opts.watcher_drift.unwrap_or_else(drift);
        wc.refresh = REFRESH;
        wc.reassign = self.seed % 2 == 1;
        let mut router = Router::new(&name, FORWARD_TIMEOUT, SLOW_BACKOFF);
        router.set_mutation(self.opts.routing_mutation);
        Node {
            router,
            proposer: P::new(id, incarnation, 1, voters, proposer_config()),
            holder: Holder::new(hc).unwrap_or_else(|e| panic!("holder config: {e}")),
            watcher: Watcher::new(wc),
            name,
            id,
            rate,
            life,
            incarnation,
            up: true,
            frozen_until: Duration::ZERO,
            deferred: Vec::new(),
            ops: BTreeMap::new(),
            hist: BTreeMap::new(),
            timer_at: None,
            app: App::default(),
        }
    }

    // ------------------------------------------------------------ time

    fn local(&self, n: usize) -> Instant {
        let nanos = self.now.as_nanos() as f64 * self.nodes[n].rate;
        self.base + Duration::from_nanos(nanos as u64)
    }

    /// The first global time at which node `n`'s clock shows `at` or later.
    fn global(&self, n: usize, at: Instant) -> Duration {
        let local = at.saturating_duration_since(self.base).as_nanos() as f64;
        Duration::from_nanos((local / self.nodes[n].rate).ceil() as u64 + 1)
    }

    fn schedule(&mut self, after: Duration, ev: Event) {
        self.schedule_at(self.now + after, ev);
    }

    fn schedule_at(&mut self, at: Duration, ev: Event) {
        self.seq += 1;
        self.payloads.insert(self.seq, ev);
        self.queue.push(Reverse((at.max(self.now), self.seq)));
    }

    // ------------------------------------------------------------ network

    /// Put a message on the wire. Register messages may be lost, duplicated and
    /// reordered; forwarding between holder nodes rides a reliable stream (delayed, lost
    /// only to partitions and crashes).
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        self.stats.messages += 1;
        if matches!(msg, Msg::Forward(..) | Msg::Forwarded { .. }) {
            let delay = Duration::from_micros(self.rng.random_range(200..2_000));
            self.schedule(delay, Event::Deliver { from, to, msg });
            return;
        }
        if self.rng.random_bool(self.loss) {
            return;
        }
        if self.rng.random_bool(self.dup) {
            let delay = Duration::from_micros(self.rng.random_range(200..2_000));
            let copy = msg.clone();
            self.schedule(
                delay,
                Event::Deliver {
                    from,
                    to,
                    msg: copy,
                },
            );
        }
        let delay = Duration::from_micros(self.rng.random_range(200..2_000));
        self.schedule(delay, Event::Deliver { from, to, msg });
    }

    fn voter_index(id: NodeId) -> Option<usize> {
        VOTERS.iter().position(|v| *v == id)
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn drain_voter(&mut self, v: usize) {
        while let Some(out) = self.voters[v].live.poll_output() {
            self.voters[v].unsynced.push(out);
        }
        if !self.voters[v].unsynced.is_empty() && !self.voters[v].sync_scheduled {
            self.voters[v].sync_scheduled = true;
            let fsync = Duration::from_micros(self.rng.random_range(100..1_000));
            self.schedule(fsync, Event::Sync(v));
        }
    }

    // ------------------------------------------------------------ nodes

    fn name_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The names of the nodes in the view: every router's candidate proposers.
    fn view_names(&self) -> Vec<String> {
        self.view
            .iter()
            .map(|&i| self.nodes[i].name.clone())
            .collect()
    }

    fn submit(&mut self, n: usize, sub: Submission) {
        let now = self.now;
        let node = &mut self.nodes[n];
        // Every change is at most once by its request id: one op however often it is
        // retried (or its forward duplicated).
        let hist = match node.hist.get(&sub.request) {
            Some(h) => *h,
            None => {
                let h = self.record.history.len();
                node.hist.insert(sub.request, h);
                self.record.history.push(HistOp {
                    shard: sub.shard,
                    change: sub.change.clone(),
                    client: format!("{}#{}", node.name, node.life),
                    invoked: now,
                    done: None,
                });
                h
            }
        };
        // The real routing decides: the shard's preferred proposer in the view, or the
        // next one for a retry that timed out there, or here.
        let local = self.local(n);
        let view = self.view_names();
        let route = self.nodes[n].router.route(
            local,
            sub.request,
            sub.shard,
            view.iter().map(String::as_str),
        );
        match route {
            Route::Forward(to) => {
                let Some(p) = self.name_index(&to) else {
                    panic!("seed {}: routed to unknown node {to}", self.seed);
                };
                let (from, to) = (self.nodes[n].id, self.nodes[p].id);
                self.send(from, to, Msg::Forward(sub, hist));
            }
            Route::Local => self.propose(n, sub, hist, None),
        }
    }

    fn propose(&mut self, n: usize, sub: Submission, hist: usize, origin: Option<NodeId>) {
        let local = self.local(n);
        let node = &mut self.nodes[n];
        let op = node
            .proposer
            .propose(local, sub.shard, Some(sub.request), sub.change);
        let origin = match origin {
            Some(o) => Origin::Remote(sub.request, hist, o),
            None => Origin::Local(sub.request, hist),
        };
        node.ops.insert(op, origin);
    }

    /// The proposer of node `n` finished an op: its own, or one forwarded to it. The
    /// proposing node's watcher sees every table its proposer decided on (the preferred
    /// proposer runs every change of its shards, so it learns each refresh as it commits).
    fn complete(&mut self, n: usize, c: Completion<ShardId, ShardTable, ClaimReject>) {
        if let Some(t) = c.result.as_ref().ok().and_then(Outcome::value) {
            let local = self.local(n);
            self.nodes[n].watcher.observe(local, c.key, t);
        }
        match self.nodes[n].ops.remove(&c.op) {
            Some(Origin::Local(rid, hist)) => self.finish(n, c.key, rid, Some(hist), c.result),
            Some(Origin::Remote(rid, hist, origin)) => {
                let from = self.nodes[n].id;
                let msg = Msg::Forwarded {
                    shard: c.key,
                    request: rid,
                    hist,
                    result: c.result,
                };
                self.send(from, origin, msg);
            }
            None => panic!("seed {}: completion of an unknown op", self.seed),
        }
    }

    /// Node `n` learns the result of its change `rid` (history entry `hist`; `None`
    /// for a local timeout, which decides nothing).
    fn finish(
        &mut self,
        n: usize,
        shard: ShardId,
        rid: RequestId,
        hist: Option<usize>,
        result: Result<ShardOutcome, ProposeError>,
    ) {
        let local = self.local(n);
        if let (Ok(outcome), Some(idx)) = (&result, hist) {
            if matches!(outcome, Outcome::Superseded) {
                self.stats.superseded += 1;
            }
            let invoked = self.record.history[idx].invoked;
            if self.record.history[idx].done.is_none() {
                self.record.history[idx].done = Some((self.now, outcome.clone()));
            }
            let table = outcome.value();
            if let Some(t) = table {
                self.note_table(shard, invoked, t);
                self.nodes[n].watcher.observe(local, shard, t);
            }
        }
        let node = &mut self.nodes[n];
        node.router.completed(rid, result.is_ok());
        if rid.client == node.holder.client() {
            node.holder.handle_completion(local, rid, result);
        } else if rid.client == node.watcher.client() {
            node.watcher.handle_completion(local, rid, result);
        }
    }

    /// Track, per shard, when a result of an op invoked after the kill first showed
    /// none of the killed holder's sessions (such an op takes effect after the kill, and
    /// a dead holder opens nothing).
    fn note_table(&mut self, shard: ShardId, invoked: Duration, t: &ShardTable) {
        let Some((name, inc, at)) = &self.record.killed else {
            return;
        };
        if invoked < *at || self.killed_gone.contains_key(&shard) {
            return;
        }
        let any = t
            .sessions
            .keys()
            .any(|s| s.node == *name && s.incarnation == *inc);
        if !any {
            self.killed_gone.insert(shard, self.now);
        }
    }

    fn drain(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        loop {
            let mut progressed = false;
            while let Some(sub) = self.nodes[n].holder.poll_submit() {
                progressed = true;
                self.submit(n, sub);
            }
            while let Some(sub) = self.nodes[n].watcher.poll_submit() {
                progressed = true;
                self.submit(n, sub);
            }
            while let Some(out) = self.nodes[n].proposer.poll_output() {
                progressed = true;
                match out {
                    ProposerOutput::Send(env) => {
                        let from = self.nodes[n].id;
                        self.send(from, env.to, Msg::Req(env.msg));
                    }
                    ProposerOutput::Complete(c) => self.complete(n, c),
                }
            }
            while let Some(ev) = self.nodes[n].holder.poll_event() {
                progressed = true;
                self.app_event(n, ev);
            }
            while let Some(ev) = self.nodes[n].watcher.poll_event() {
                progressed = true;
                let WatcherEvent::Evicted { reassigned, .. } = ev;
                self.stats.evictions += 1;
                self.stats.reassigned += reassigned.len();
            }
            if !progressed {
                break;
            }
        }
        self.update_windows(n);
        self.arm_timer(n);
    }

    fn update_windows(&mut self, n: usize) {
        let held: Vec<(String, u64, usize)> = self.nodes[n]
            .app
            .held
            .iter()
            .map(|(t, (k, w))| (t.clone(), *k, *w))
            .collect();
        for (task, token, w) in held {
            if let Some((k, until)) = self.nodes[n].holder.validity(&task) {
                if k == token {
                    let g = self.global(n, until);
                    let win = &mut self.record.windows[w];
                    win.valid_until = win.valid_until.max(g);
                }
            }
        }
    }

    fn arm_timer(&mut self, n: usize) {
        let node = &self.nodes[n];
        let next = [
            node.proposer.poll_timeout(),
            node.holder.poll_timeout(),
            node.watcher.poll_timeout(),
            node.router.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return };
        let at = self
            .global(n, next)
            .max(self.now + Duration::from_micros(1));
        if node.timer_at.is_none_or(|t| at < t || t < self.now) {
            let life = node.life;
            self.nodes[n].timer_at = Some(at);
            self.schedule_at(at, Event::NodeTimer(n, life));
        }
    }

    // ------------------------------------------------------------ the application

    fn acquire(&mut self, n: usize, task: &str, token: u64) {
        if let Some((old, w)) = self.nodes[n].app.held.get(task).copied() {
            if old == token {
                return;
            }
            self.record.windows[w].closed.get_or_insert(self.now);
        }
        let who = format!("{}#{}", self.nodes[n].name, self.nodes[n].life);
        let holder = &self.nodes[n].holder;
        let session = holder.session(holder.shard_of(task)).cloned();
        self.record.windows.push(Window {
            task: task.to_owned(),
            token,
            who,
            session,
            start: self.now,
            valid_until: Duration::ZERO,
            closed: None,
            last_decision: None,
        });
        let w = self.record.windows.len() - 1;
        self.nodes[n].app.held.insert(task.to_owned(), (token, w));
    }

    fn drop_claim(&mut self, n: usize, task: &str) {
        if let Some((_, w)) = self.nodes[n].app.held.remove(task) {
            self.record.windows[w].closed.get_or_insert(self.now);
        }
    }

    fn app_event(&mut self, n: usize, ev: HolderEvent) {
        match ev {
            HolderEvent::Done { call, result } => {
                let Some(what) = self.nodes[n].app.calls.remove(&call) else {
                    return;
                };
                match (what, result) {
                    (AppCall::Claim(task), Ok(CallOk::Claimed { token, .. })) => {
                        self.nodes[n].app.busy.remove(&task);
                        self.acquire(n, &task, token);
                    }
                    (AppCall::Claim(task), Err(_)) => {
                        // Held by someone else (or no quorum): look again later.
                        let later =
                            self.now + Duration::from_millis(self.rng.random_range(250..600));
                        self.nodes[n].app.backoff.insert(task.clone(), later);
                        self.nodes[n].app.busy.remove(&task);
                    }
                    (AppCall::Name(name), Ok(CallOk::Registered { version, .. }))
                    | (AppCall::Name(name), Ok(CallOk::Transferred { version, .. })) => {
                        self.nodes[n].app.busy.remove(&name);
                        self.nodes[n].app.names.insert(name, version);
                    }
                    (AppCall::Name(name), Ok(CallOk::NameReleased { .. })) => {
                        self.nodes[n].app.busy.remove(&name);
                        self.nodes[n].app.names.remove(&name);
                    }
                    (AppCall::Name(name), _) => {
                        let later =
                            self.now + Duration::from_millis(self.rng.random_range(300..900));
                        self.nodes[n].app.backoff.insert(name.clone(), later);
                        self.nodes[n].app.busy.remove(&name);
                    }
                    _ => {}
                }
            }
            HolderEvent::Lost {
                task,
                token,
                reason,
            } => {
                self.stats.lost += 1;
                if self.now >= LIVE_FROM {
                    let who = format!("{}#{}", self.nodes[n].name, self.nodes[n].life);
                    let what = format!("{task} ({reason:?})");
                    self.record.lost_late.push((who, self.now, what));
                }
                let keep = self.opts.ignore_deadline && reason == LostReason::Expired;
                if !keep
                    && self.nodes[n]
                        .app
                        .held
                        .get(&task)
                        .is_some_and(|h| h.0 == token)
                {
                    self.drop_claim(n, &task);
                }
            }
            HolderEvent::Assigned { task, token } => self.acquire(n, &task, token),
            // Informational: the application checks validity when it uses a claim
            // (`is_valid`), which is what the windows record.
            HolderEvent::Renewed { .. } => {}
            HolderEvent::NameLost { name, .. } => {
                self.nodes[n].app.names.remove(&name);
            }
        }
    }

    fn backing_off(&self, n: usize, key: &str) -> bool {
        self.nodes[n]
            .app
            .backoff
            .get(key)
            .is_some_and(|t| *t > self.now)
    }

    fn app_tick(&mut self, n: usize) {
        let local = self.local(n);
        // A busy application while the faults run, a quieter one in the calm phase
        // (which checks liveness: renews, evictions, reclaims).
        let next = if self.calm {
            Duration::from_millis(self.rng.random_range(120..300))
        } else {
            Duration::from_millis(self.rng.random_range(70..170))
        };
        let life = self.nodes[n].life;
        self.schedule(next, Event::AppTick(n, life));
        if self.nodes[n].app.calls.len() >= 2 {
            return;
        }
        let roll = self.rng.random_range(0..100u32);
        if roll < 85 {
            let task = TASKS[self.rng.random_range(0..TASKS.len())];
            if let Some((token, w)) = self.nodes[n].app.held.get(task).copied() {
                let release = !self.calm && self.rng.random_bool(0.08);
                if release {
                    self.drop_claim(n, task);
                    if let Ok(call) = self.nodes[n].holder.release(local, task) {
                        self.nodes[n].app.calls.insert(call, AppCall::Release);
                    }
                } else {
                    let valid = self.opts.ignore_deadline
                        || self.nodes[n].holder.is_valid(local, task, token);
                    if valid {
                        self.record.windows[w].last_decision = Some(self.now);
                        // Usually the write lands at once; sometimes the process stalls
                        // between its check and its write (GC, swap, SIGSTOP).
                        let pause = if !self.calm && self.rng.random_bool(0.1) {
                            self.stats.write_pauses += 1;
                            Duration::from_millis(self.rng.random_range(100..1_500))
                        } else {
                            Duration::from_micros(self.rng.random_range(10..2_000))
                        };
                        self.schedule(
                            pause,
                            Event::WriteArrive {
                                task: task.to_owned(),
                                token,
                            },
                        );
                    }
                }
            } else if !self.nodes[n].app.busy.contains(task) && !self.backing_off(n, task) {
                if let Ok(call) = self.nodes[n].holder.claim(local, task) {
                    self.nodes[n].app.busy.insert(task.to_owned());
                    self.nodes[n]
                        .app
                        .calls
                        .insert(call, AppCall::Claim(task.to_owned()));
                }
            }
        } else if roll < 95 {
            let name = NAMES[self.rng.random_range(0..NAMES.len())];
            if self.nodes[n].app.busy.contains(name) || self.backing_off(n, name) {
                return;
            }
            self.nodes[n].app.next_pid += 1;
            let me = Pid::new(
                self.nodes[n].name.clone(),
                self.nodes[n].incarnation,
                self.nodes[n].app.next_pid,
            );
            let ephemeral = self.rng.random_bool(0.5);
            let call = match self.nodes[n].app.names.get(name).copied() {
                Some(v) if self.rng.random_bool(0.5) => self.nodes[n]
                    .holder
                    .transfer_name(local, name, v, me, ephemeral),
                Some(v) => self.nodes[n].holder.release_name(local, name, v),
                None => self.nodes[n]
                    .holder
                    .register_strong(local, name, me, ephemeral),
            };
            if let Ok(call) = call {
                self.nodes[n].app.busy.insert(name.to_owned());
                self.nodes[n]
                    .app
                    .calls
                    .insert(call, AppCall::Name(name.to_owned()));
            }
        } else {
            let name = NAMES[self.rng.random_range(0..NAMES.len())];
            if let Ok(call) = self.nodes[n].holder.whereis(local, name) {
                self.nodes[n].app.calls.insert(call, AppCall::Whereis);
            }
        }
        self.drain(n);
    }

    // ------------------------------------------------------------ faults

    fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect()
    }

    fn start_fault(&mut self) {
        if self.calm {
            return;
        }
        let kind = self.rng.random_range(0..5u32);
        let nodes = self.nodes.len();
        let ms =
            |sim: &mut Self, lo: u64, hi: u64| Duration::from_millis(sim.rng.random_range(lo..hi));
        let (fault, dur) = match kind {
            0 => {
                let v = self.rng.random_range(0..VOTERS.len());
                self.stats.voter_crashes += 1;
                let voter = &mut self.voters[v];
                voter.down = true;
                voter.unsynced.clear();
                voter.live = A::restore(VOTERS[v], 1, voter.durable.clone());
                (Fault::VoterCrash(v), ms(self, 100, 1_200))
            }
            1 => {
                let v = self.rng.random_range(0..VOTERS.len());
                let mut cut: Vec<usize> =
                    (0..nodes).filter(|_| self.rng.random_bool(0.5)).collect();
                if cut.is_empty() {
                    cut.push(self.rng.random_range(0..nodes));
                }
                self.stats.voter_cuts += 1;
                self.voters[v].cut.extend(cut.iter().copied());
                (Fault::VoterCut(v, cut), ms(self, 100, 1_200))
            }
            2 => {
                let n = self.rng.random_range(0..nodes);
                self.stats.holder_isolations += 1;
                self.isolated.insert(n);
                // SWIM on the other side sees it go silent.
                self.schedule(DETECTION, Event::ViewDown(n));
                (Fault::HolderIsolate(n), ms(self, 300, 2_000))
            }
            3 if self.up_nodes().len() >= 3 => {
                let up = self.up_nodes();
                let n = up[self.rng.random_range(0..up.len())];
                self.stats.holder_crashes += 1;
                self.crash_node(n);
                (Fault::HolderCrash(n), ms(self, 200, 1_500))
            }
            _ => {
                let n = self.rng.random_range(0..nodes);
                self.stats.freezes += 1;
                let d = ms(self, 100, 1_200);
                self.nodes[n].frozen_until = self.nodes[n].frozen_until.max(self.now + d);
                self.schedule(d, Event::Unfreeze(n));
                (Fault::HolderFreeze, d)
            }
        };
        self.schedule(dur, Event::FaultEnd(fault));
    }

    fn end_fault(&mut self, fault: Fault) {
        match fault {
            Fault::VoterCrash(v) => self.voters[v].down = false,
            Fault::VoterCut(v, cut) => {
                for n in cut {
                    self.voters[v].cut.remove(&n);
                }
            }
            Fault::HolderIsolate(n) => {
                self.isolated.remove(&n);
                self.view_up(n);
            }
            Fault::HolderCrash(n) => self.restart_node(n),
            Fault::HolderFreeze => {}
        }
        if !self.calm {
            let gap = Duration::from_millis(self.rng.random_range(50..400));
            self.schedule(gap, Event::FaultStart);
        }
    }

    fn crash_node(&mut self, n: usize) {
        let held: Vec<String> = self.nodes[n].app.held.keys().cloned().collect();
        for task in held {
            self.drop_claim(n, &task);
        }
        self.nodes[n].up = false;
        self.nodes[n].timer_at = None;
        self.schedule(DETECTION, Event::ViewDown(n));
    }

    fn restart_node(&mut self, n: usize) {
        if self.nodes[n].up
            || self
                .record
                .killed
                .as_ref()
                .is_some_and(|k| k.0 == self.nodes[n].name)
        {
            return;
        }
        let life = self.nodes[n].life + 1;
        let rate = self.nodes[n].rate;
        add_routing(&mut self.stats.routing, self.nodes[n].router.stats());
        self.nodes[n] = self.fresh_node(n, rate, life);
        self.schedule(Duration::from_millis(1), Event::AppTick(n, life));
        self.view_up(n);
    }

    fn view_up(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        self.view.insert(n);
        let name = self.nodes[n].name.clone();
        for i in self.up_nodes() {
            self.nodes[i].watcher.node_up(&name);
        }
        self.rewatch();
    }

    /// Whether voter `v` and holder node `n` cannot talk.
    fn cut(&self, v: usize, n: usize) -> bool {
        self.voters[v].cut.contains(&n) || self.isolated.contains(&n)
    }

    /// Every up node watches the shards its router says it is the preferred proposer of
    /// in the view.
    fn rewatch(&mut self) {
        let view = self.view_names();
        for i in self.up_nodes() {
            let local = self.local(i);
            for s in 0..SHARDS {
                let shard = ShardId(s);
                let mine = self.nodes[i]
                    .router
                    .watches(shard, view.iter().map(String::as_str));
                let watching = self.nodes[i].watcher.watched().any(|w| w == shard);
                if mine && !watching {
                    self.nodes[i].watcher.watch(local, shard);
                } else if !mine && watching {
                    self.nodes[i].watcher.unwatch(shard);
                }
            }
            self.drain(i);
        }
    }

    // ------------------------------------------------------------ the loop

    /// Deliver what waited while node `n` was frozen, in order.
    fn thaw(&mut self, n: usize) {
        for ev in std::mem::take(&mut self.nodes[n].deferred) {
            self.schedule_at(self.now, ev);
        }
    }

    fn frozen(&self, n: usize) -> Option<Duration> {
        (self.nodes[n].frozen_until > self.now).then_some(self.nodes[n].frozen_until)
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((at, id))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let Some(ev) = self.payloads.remove(&id) else {
            return true;
        };
        self.stats.events += 1;
        // Events of a frozen node wait until it runs again.
        let target = match &ev {
            Event::Deliver { to, .. } => self.node_index(*to),
            Event::NodeTimer(n, _) | Event::AppTick(n, _) => Some(*n),
            _ => None,
        };
        if let Some(n) = target.filter(|&n| self.frozen(n).is_some()) {
            self.nodes[n].deferred.push(ev);
            return true;
        }
        match ev {
            Event::Deliver { from, to, msg } => match msg {
                Msg::Req(req) => {
                    let (Some(v), Some(n)) = (Self::voter_index(to), self.node_index(from)) else {
                        return true;
                    };
                    if self.voters[v].down || self.cut(v, n) {
                        return true;
                    }
                    self.voters[v].live.handle_request(from, req);
                    self.drain_voter(v);
                }
                Msg::Rep(rep) => {
                    let (Some(v), Some(n)) = (Self::voter_index(from), self.node_index(to)) else {
                        return true;
                    };
                    if !self.nodes[n].up || self.cut(v, n) {
                        return true;
                    }
                    let local = self.local(n);
                    self.nodes[n]
                        .proposer
                        .handle_reply(local, from, rep, &mut self.rng);
                    self.drain(n);
                }
                Msg::Forward(sub, hist) => {
                    let (Some(o), Some(p)) = (self.node_index(from), self.node_index(to)) else {
                        return true;
                    };
                    if self.nodes[p].up
                        && !self.isolated.contains(&o)
                        && !self.isolated.contains(&p)
                    {
                        let name = self.nodes[o].name.clone();
                        self.nodes[p].router.heard_from(&name);
                        self.propose(p, sub, hist, Some(from));
                        self.drain(p);
                    }
                }
                Msg::Forwarded {
                    shard,
                    request,
                    hist,
                    result,
                } => {
                    let (Some(p), Some(o)) = (self.node_index(from), self.node_index(to)) else {
                        return true;
                    };
                    let reachable = !self.isolated.contains(&o) && !self.isolated.contains(&p);
                    if self.nodes[o].up && reachable {
                        let name = self.nodes[p].name.clone();
                        let router = &mut self.nodes[o].router;
                        router.heard_from(&name);
                        // A late answer (the change timed out here) is dropped.
                        if router.answered(request).is_some() {
                            self.finish(o, shard, request, Some(hist), result);
                        }
                        self.drain(o);
                    }
                }
            },
            Event::Sync(v) => {
                self.voters[v].sync_scheduled = false;
                if self.voters[v].down {
                    return true;
                }
                for out in std::mem::take(&mut self.voters[v].unsynced) {
                    let then = match out {
                        AcceptorOutput::Persist { key, state, then } => {
                            self.voters[v].durable.insert(key, state);
                            then
                        }
                        AcceptorOutput::Send(then) => then,
                    };
                    self.send(VOTERS[v], then.to, Msg::Rep(then.msg));
                }
            }
            Event::NodeTimer(n, life) => {
                if !self.nodes[n].up || self.nodes[n].life != life {
                    return true;
                }
                let due = self.nodes[n].timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.nodes[n].timer_at = None;
                    let local = self.local(n);
                    let node = &mut self.nodes[n];
                    node.proposer.handle_timeout(local, &mut self.rng);
                    node.holder.handle_timeout(local);
                    node.watcher.handle_timeout(local);
                    // Forwards not answered in time: a timeout for their caller (the
                    // router skips their proposer on the retry).
                    for (rid, pending) in node.router.expire(local) {
                        self.finish(n, pending.shard, rid, None, Err(ProposeError::Timeout));
                    }
                }
                self.drain(n);
            }
            Event::AppTick(n, life) => {
                if self.nodes[n].up && self.nodes[n].life == life && self.now < END {
                    self.app_tick(n);
                }
            }
            Event::WriteArrive { task, token } => {
                let _ = self.resource.apply(&task, token, |log| log.push(token));
            }
            Event::FaultStart => self.start_fault(),
            Event::FaultEnd(f) => self.end_fault(f),
            Event::ViewDown(n) => {
                if !self.nodes[n].up || self.isolated.contains(&n) {
                    self.view.remove(&n);
                    let name = self.nodes[n].name.clone();
                    for i in self.up_nodes() {
                        let local = self.local(i);
                        self.nodes[i].watcher.node_down(local, &name);
                    }
                    self.rewatch();
                }
            }
            Event::Unfreeze(n) => {
                if self.frozen(n).is_none() {
                    self.thaw(n);
                }
            }
            Event::Calm => {
                self.calm = true;
                // Loss is a fault too: healed (duplication and reordering stay).
                self.loss = 0.0;
                for v in 0..VOTERS.len() {
                    self.voters[v].down = false;
                    self.voters[v].cut.clear();
                }
                let isolated = std::mem::take(&mut self.isolated);
                for n in 0..self.nodes.len() {
                    self.nodes[n].frozen_until = self.nodes[n].frozen_until.min(self.now);
                    self.thaw(n);
                    self.restart_node(n);
                }
                for n in isolated {
                    self.view_up(n);
                }
                // One voter isolated for the whole calm phase.
                let v = self.rng.random_range(0..VOTERS.len());
                self.voters[v].cut = (0..self.nodes.len()).collect();
            }
            Event::Kill => {
                let up = self.up_nodes();
                let n = up[self.rng.random_range(0..up.len())];
                self.record.killed = Some((
                    self.nodes[n].name.clone(),
                    self.nodes[n].incarnation,
                    self.now,
                ));
                self.crash_node(n);
            }
        }
        true
    }

    /// Run to the end, then read every shard back from the voters' durable state, one
    /// voter "crashed" at a time.
    pub(crate) fn run(mut self) -> (Record, Stats) {
        while self.now < END && self.step() {}
        self.record.survivors = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .map(|n| format!("{}#{}", n.name, n.life))
            .collect();
        if self.killed_gone.len() == SHARDS as usize {
            self.record.killed_gone = self.killed_gone.values().max().copied();
        }
        self.final_reads();
        for (task, _) in TASKS.iter().map(|t| (t.to_string(), ())) {
            if let Some(log) = self.resource.get(&task) {
                self.record.fenced.insert(task, log.clone());
            }
        }
        let mut st = self.stats;
        for node in &self.nodes {
            add_routing(&mut st.routing, node.router.stats());
        }
        st.ops = self.record.history.len();
        st.acked = self
            .record
            .history
            .iter()
            .filter(|o| o.done.is_some())
            .count();
        st.indeterminate = st.ops - st.acked;
        st.grants = self.record.windows.len();
        for state in self.voters.iter().flat_map(|v| v.durable.values()) {
            if let Some((_, slot)) = &state.accepted {
                let bytes = rmp_serde::to_vec(slot).map_or(0, |b| b.len());
                st.max_slot_bytes = st.max_slot_bytes.max(bytes);
                st.max_slot_clients = st.max_slot_clients.max(slot.applied.len());
            }
        }
        st.fenced_applied = self.resource.stats().applied;
        st.fenced_refused = self.resource.stats().refused_stale;
        (self.record, st)
    }

    fn final_reads(&mut self) {
        let mut acceptors: Vec<A> = VOTERS
            .iter()
            .zip(&self.voters)
            .map(|(id, v)| A::restore(*id, 1, v.durable.clone()))
            .collect();
        let mut t = END + Duration::from_millis(1);
        for (k, pair) in [[0usize, 1], [1, 2], [0, 2]].iter().enumerate() {
            let voters: Vec<NodeId> = pair.iter().map(|&i| VOTERS[i]).collect();
            let mut p = P::new(NodeId(99), 1 + k as u64, 1, voters, proposer_config());
            for s in 0..SHARDS {
                let outcome =
                    read_through(&mut p, &mut acceptors, ShardId(s), self.base, &mut self.rng);
                self.record.history.push(HistOp {
                    shard: ShardId(s),
                    change: ShardChange::Read,
                    client: format!("final-read-{pair:?}"),
                    invoked: t,
                    done: outcome.map(|o| (t + Duration::from_millis(1), o)),
                });
                t += Duration::from_millis(2);
            }
        }
    }
}

/// A read on `shard` through `p` against in-memory acceptors that answer at once.
fn read_through(
    p: &mut P,
    acceptors: &mut [A],
    shard: ShardId,
    base: Instant,
    rng: &mut StdRng,
) -> Option<ShardOutcome> {
    let mut now = base + END + Duration::from_secs(1);
    p.propose(now, shard, None, ShardChange::Read);
    for _ in 0..50 {
        let mut replies = Vec::new();
        while let Some(out) = p.poll_output() {
            match out {
                ProposerOutput::Send(env) => {
                    let Some(v) = Sim::voter_index(env.to) else {
                        continue;
                    };
                    acceptors[v].handle_request(p.id(), env.msg);
                    while let Some(o) = acceptors[v].poll_output() {
                        let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) = o;
                        replies.push((VOTERS[v], then.msg));
                    }
                }
                ProposerOutput::Complete(done) => return done.result.ok(),
            }
        }
        let idle = replies.is_empty();
        for (from, r) in replies {
            p.handle_reply(now, from, r, rng);
        }
        if idle {
            if let Some(t) = p.poll_timeout() {
                now = now.max(t);
                p.handle_timeout(now, rng);
            }
        }
    }
    None
}
