//! Seeded simulation of online voter changes (`mesh_core::quorum::reconfig`): the real
//! acceptors, proposers and planner over a simulated network with loss, duplication and
//! reordering, partitions and acceptor crashes (one at a time), three clients issuing
//! increments and reads on one key all along, while a driver replaces voter 1 by voter 4
//! (3 → 4 → 3), grows 3 → 5 and shrinks back, or rolls an add back before redoing it.
//! On half the seeds the driver dies once mid-way (its acks and its rescan in flight
//! lost) and the change resumes from the root.
//!
//! The driver hands each root to the acceptors of that root and the one before over the
//! same lossy network (an acceptor persists it, then acks), follows R1 (the next root
//! only once the epoch before the newest is retired, by the acks it got) and R2 (an add's
//! rescan — a read — once that holds; the add's last root after it). A proposer refused
//! with `WrongEpoch` learns the newer root (from the driver's list, as a shell would from
//! a voter) and goes on under its rules.
//!
//! Every run's history is checked as in `quorum_sim.rs`: (a) no lost or duplicated
//! increments (acknowledged increments return distinct values), (b) real-time order
//! (values only grow), (c) every op and the whole change complete within bounds. The
//! final value is read under the last root.
//!
//! Negative control: a driver that skips the rescan must be caught on some seed.
//!
//! Seeds run through `mesh_sim_seeds`: `MESH_SIM_SEEDS=N` runs more seeds (default 100);
//! `MESH_SIM_SEED=S` runs one seed; a failure prints a `REPRODUCE WITH:` command.

use mesh_core::quorum::reconfig::{self, needs_rescan, retired};
use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Change, NodeId, Outcome, ProposeError, Proposer,
    ProposerConfig, ProposerOutput, Reply, Request, RequestId, RootRecord, Slot, VoterChange,
};
use mesh_sim_seeds::{for_each_seed, run_seeds, sim_test};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

/// Increment the counter, or read it: the two client changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CounterChange {
    Incr,
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Never;

impl Change<u64> for CounterChange {
    type Reject = Never;
    fn apply(&self, current: Option<&u64>) -> Result<Option<u64>, Never> {
        match self {
            Self::Incr => Ok(Some(current.copied().unwrap_or(0) + 1)),
            Self::Read => Ok(current.copied()),
        }
    }
    fn is_read(&self) -> bool {
        matches!(self, Self::Read)
    }
    /// The counter's value right after the increment: what a replayed retry reports.
    fn receipt(&self, new: Option<&u64>) -> u64 {
        new.copied().unwrap_or(0)
    }
}

type S = Slot<u64, Never>;
type A = Acceptor<&'static str, S>;
type P = Proposer<&'static str, u64, CounterChange>;
const KEY: &str = "counter";
const CLIENTS: usize = 3;
/// The driver's proposer is the client after the last one (it issues no client ops).
const DRIVER: usize = CLIENTS;
const OPS_PER_CLIENT: usize = 25;
const RETRIES: usize = 4;

#[derive(Clone, Debug)]
enum Msg {
    Req(Request<&'static str, S>),
    Rep(Reply<&'static str, S>),
    /// The driver hands the root of this epoch to an acceptor.
    Install(u64),
    /// The acceptor holds (durably) a root of at least this epoch.
    Installed(u64),
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Sync(usize),
    Crash(usize),
    Restart(usize),
    ProposerTimer(usize),
    ClientIssue(usize),
    DriverTick,
    /// The operator's agent dies and another node resumes the change from the root: the
    /// acks it had and its rescan in flight are lost.
    DriverCrash,
}

struct AccNode {
    id: NodeId,
    /// The epoch of the root it durably holds (0: none).
    epoch: u64,
    live: A,
    durable: BTreeMap<&'static str, AcceptorState<S>>,
    unsynced: Vec<AcceptorOutput<&'static str, S>>,
    sync_scheduled: bool,
    down: bool,
    /// Proposers (client indexes) this acceptor is partitioned from, both directions.
    cut_from: Vec<usize>,
}

#[derive(Clone, Debug)]
struct OpRecord {
    client: usize,
    incr: bool,
    invoked: Duration,
    completed: Option<Duration>,
    value: Option<u64>,
}

struct Client {
    proposer: P,
    next_seq: u64,
    ops_done: usize,
    /// The op in flight: its record index, request id, change and retries left.
    current: Option<(usize, Option<RequestId>, CounterChange, usize)>,
    timer_at: Option<Instant>,
}

struct Driver {
    roots: Vec<RootRecord>,
    /// The newest root handed out.
    epoch: u64,
    /// Acceptors known (by their acks) to hold the newest root.
    acked: Vec<NodeId>,
    rescanned: bool,
    rescanning: bool,
    skip_rescan: bool,
    done_at: Option<Duration>,
}

struct Sim {
    seed: u64,
    driver: Driver,
    /// Lives of the driver's proposer (its incarnation).
    driver_lives: u64,
    rng: StdRng,
    base: Instant,
    now: Instant,
    seq: u64,
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    payloads: BTreeMap<usize, Event>,
    next_payload: usize,
    acceptors: Vec<AccNode>,
    clients: Vec<Client>,
    history: Vec<OpRecord>,
    loss: f64,
    dup: f64,
    faults_until: Instant,
    /// Negative control: a timed-out increment is retried under a *new* request id.
    fresh_ids_on_retry: bool,
    stats: SimStats,
}

/// What a run went through (summed over seeds and printed).
#[derive(Debug, Default, Clone, Copy)]
struct SimStats {
    ops: usize,
    acked: usize,
    indeterminate: usize,
    retries: usize,
    /// Retries that found their increment already applied (reported by its receipt).
    replays: usize,
    crashes: usize,
    partitions: usize,
    lost: usize,
    duplicated: usize,
    cache_hits: u64,
    failed_rounds: u64,
    max_latency: Duration,
    /// Roots handed out while a client op was in flight.
    roots_under_load: usize,
    /// Rescans run (retries included).
    rescans: usize,
    /// Driver deaths (the change resumed from the root).
    driver_crashes: usize,
}

impl SimStats {
    fn add(&mut self, o: &Self) {
        self.ops += o.ops;
        self.acked += o.acked;
        self.indeterminate += o.indeterminate;
        self.retries += o.retries;
        self.replays += o.replays;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.cache_hits += o.cache_hits;
        self.failed_rounds += o.failed_rounds;
        self.max_latency = self.max_latency.max(o.max_latency);
        self.roots_under_load += o.roots_under_load;
        self.rescans += o.rescans;
        self.driver_crashes += o.driver_crashes;
    }
}

/// (c) Liveness bound: with a majority connected, an op (with its retries) completes
/// within this much simulated time: all its attempts, `(RETRIES + 1) * op_timeout`.
/// Observed over 1000 seeds: at most ~4.8 s. Three proposers hammering one key is
/// unfair to the lowest node id (it loses ballot ties), which is why the shell should
/// route a key's changes to its HRW-preferred proposer.
const LIVENESS_BOUND: Duration = Duration::from_millis(7_500);

/// (c) The whole change completes within this much simulated time.
const CHANGE_BOUND: Duration = Duration::from_secs(30);

fn config() -> ProposerConfig {
    ProposerConfig {
        attempt_timeout: Duration::from_millis(100),
        op_timeout: Duration::from_millis(1500),
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(80),
    }
}

impl Sim {
    fn new(seed: u64, roots: Vec<RootRecord>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let first = roots[0].quorums();
        let n_acc = roots
            .iter()
            .flat_map(|r| r.acceptor_ids())
            .map(|id| id.0)
            .max()
            .unwrap_or(3);
        let base = Instant::now();
        let loss = rng.random_range(0.0..0.15);
        let dup = rng.random_range(0.0..0.15);
        let mut sim = Self {
            seed,
            rng,
            base,
            now: base,
            seq: 0,
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            next_payload: 0,
            driver_lives: 1,
            driver: Driver {
                roots,
                epoch: 1,
                acked: Vec::new(),
                rescanned: false,
                rescanning: false,
                skip_rescan: false,
                done_at: None,
            },
            acceptors: (1..=n_acc)
                .map(|id| {
                    let epoch = u64::from(id <= 3);
                    (NodeId(id), epoch)
                })
                .map(|(id, epoch)| AccNode {
                    id,
                    epoch,
                    live: A::new(id, epoch),
                    durable: BTreeMap::new(),
                    unsynced: Vec::new(),
                    sync_scheduled: false,
                    down: false,
                    cut_from: Vec::new(),
                })
                .collect(),
            clients: (0..=CLIENTS)
                .map(|i| Client {
                    proposer: P::with_quorums(NodeId(10 + i as u64), 1, 1, first.clone(), config()),
                    next_seq: 1,
                    // The driver's proposer has no client ops.
                    ops_done: if i == DRIVER { OPS_PER_CLIENT } else { 0 },
                    current: None,
                    timer_at: None,
                })
                .collect(),
            history: Vec::new(),
            loss,
            dup,
            faults_until: base + Duration::from_secs(8),
            fresh_ids_on_retry: false,
            stats: SimStats::default(),
        };
        for c in 0..CLIENTS {
            let at = Duration::from_millis(sim.rng.random_range(0..20));
            sim.schedule(at, Event::ClientIssue(c));
        }
        let first_crash = Duration::from_millis(sim.rng.random_range(100..1000));
        let a = sim.rng.random_range(0..sim.acceptors.len());
        sim.schedule(first_crash, Event::Crash(a));
        let start = Duration::from_millis(sim.rng.random_range(50..500));
        sim.schedule(start, Event::DriverTick);
        if sim.rng.random_bool(0.5) {
            let at = Duration::from_millis(sim.rng.random_range(50..1500));
            sim.schedule(at, Event::DriverCrash);
        }
        sim
    }

    fn schedule(&mut self, after: Duration, ev: Event) {
        let id = self.next_payload;
        self.next_payload += 1;
        self.payloads.insert(id, ev);
        self.seq += 1;
        self.events.push(Reverse((self.now + after, self.seq, id)));
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Put a message on the wire: maybe lost, maybe duplicated, each copy delayed.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if self.rng.random_bool(self.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = Duration::from_micros(self.rng.random_range(200..15_000));
            self.schedule(
                delay,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn drain_client(&mut self, c: usize) {
        let from = self.clients[c].proposer.id();
        loop {
            while let Some(out) = self.clients[c].proposer.poll_output() {
                match out {
                    ProposerOutput::Send(env) => self.send(from, env.to, Msg::Req(env.msg)),
                    ProposerOutput::Complete(done) if c == DRIVER => {
                        self.driver.rescanning = false;
                        self.driver.rescanned = matches!(done.result, Ok(Outcome::Applied { .. }))
                            && self.clients[c].proposer.epoch() == self.driver.epoch;
                    }
                    ProposerOutput::Complete(done) => self.complete(c, done.result),
                }
            }
            // The shell learns the newer root from the voter that refused it.
            let Some(e) = self.clients[c].proposer.newer_epoch() else {
                break;
            };
            let e = e.min(self.driver.epoch);
            if e <= self.clients[c].proposer.epoch() {
                break;
            }
            let quorums = self.driver.roots[(e - 1) as usize].quorums();
            let now = self.now;
            self.clients[c].proposer.set_root(now, e, quorums);
        }
        // Keep exactly one timer event per deadline.
        let next = self.clients[c].proposer.poll_timeout();
        if next.is_some() && next != self.clients[c].timer_at {
            self.clients[c].timer_at = next;
            if let Some(at) = next {
                let after = at.saturating_duration_since(self.now);
                self.schedule(after, Event::ProposerTimer(c));
            }
        }
    }

    fn complete(&mut self, c: usize, result: Result<Outcome<u64, Never>, ProposeError>) {
        let Some((idx, rid, change, retries)) = self.clients[c].current.take() else {
            panic!("seed {}: a completion without an op in flight", self.seed);
        };
        match result {
            Ok(Outcome::Applied { value: v, .. }) => {
                self.history[idx].completed = Some(self.elapsed());
                self.history[idx].value = Some(v.unwrap_or(0));
            }
            // A retry that found its increment applied: the value it produced then.
            Ok(Outcome::Replayed {
                decision: Ok(v), ..
            }) => {
                self.stats.replays += 1;
                self.history[idx].completed = Some(self.elapsed());
                self.history[idx].value = Some(v);
            }
            Ok(other) => panic!("seed {}: unexpected outcome {other:?}", self.seed),
            Err(ProposeError::Timeout) if retries > 0 => {
                // Retry with the *same* request id: applied at most once.
                self.stats.retries += 1;
                let mut rid = rid;
                if self.fresh_ids_on_retry {
                    if let Some(r) = rid.as_mut() {
                        r.seq = self.clients[c].next_seq;
                        self.clients[c].next_seq += 1;
                    }
                }
                let now = self.now;
                self.clients[c].current = Some((idx, rid, change.clone(), retries - 1));
                self.clients[c].proposer.propose(now, KEY, rid, change);
                return;
            }
            Err(ProposeError::Timeout) => {}
        }
        self.clients[c].ops_done += 1;
        if self.clients[c].ops_done < OPS_PER_CLIENT {
            let think = Duration::from_millis(self.rng.random_range(0..30));
            self.schedule(think, Event::ClientIssue(c));
        }
    }

    fn issue(&mut self, c: usize) {
        let incr = self.rng.random_bool(0.75);
        let (change, rid) = if incr {
            let seq = self.clients[c].next_seq;
            self.clients[c].next_seq += 1;
            (
                CounterChange::Incr,
                Some(RequestId {
                    client: c as u64,
                    seq,
                }),
            )
        } else {
            (CounterChange::Read, None)
        };
        self.history.push(OpRecord {
            client: c,
            incr,
            invoked: self.elapsed(),
            completed: None,
            value: None,
        });
        let idx = self.history.len() - 1;
        self.clients[c].current = Some((idx, rid, change.clone(), RETRIES));
        let now = self.now;
        self.clients[c].proposer.propose(now, KEY, rid, change);
        self.drain_client(c);
    }

    fn drain_acceptor(&mut self, a: usize) {
        while let Some(out) = self.acceptors[a].live.poll_output() {
            self.acceptors[a].unsynced.push(out);
        }
        if !self.acceptors[a].unsynced.is_empty() && !self.acceptors[a].sync_scheduled {
            // Group commit: one fsync for everything queued until it runs.
            self.acceptors[a].sync_scheduled = true;
            let fsync = Duration::from_micros(self.rng.random_range(100..3_000));
            self.schedule(fsync, Event::Sync(a));
        }
    }

    fn step(&mut self) -> bool {
        let Some(Reverse((at, _, id))) = self.events.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let Some(ev) = self.payloads.remove(&id) else {
            return true;
        };
        match ev {
            Event::Deliver { from, to, msg } => match msg {
                Msg::Install(epoch) => {
                    if let Some(a) = self.acceptors.iter().position(|x| x.id == to) {
                        if !self.acceptors[a].down {
                            // Persisted (and fsynced) before the ack.
                            let node = &mut self.acceptors[a];
                            node.epoch = node.epoch.max(epoch);
                            node.live.set_epoch(epoch);
                            let held = node.epoch;
                            self.send(to, from, Msg::Installed(held));
                        }
                    }
                }
                Msg::Installed(epoch) => {
                    if epoch >= self.driver.epoch && !self.driver.acked.contains(&from) {
                        self.driver.acked.push(from);
                    }
                }
                Msg::Req(req) => {
                    if let Some(a) = self.acceptors.iter().position(|x| x.id == to) {
                        let c = (from.0 - 10) as usize;
                        if !self.acceptors[a].down && !self.acceptors[a].cut_from.contains(&c) {
                            self.acceptors[a].live.handle_request(from, req);
                            self.drain_acceptor(a);
                        }
                    }
                }
                Msg::Rep(rep) => {
                    let c = (to.0 - 10) as usize;
                    let cut = self
                        .acceptors
                        .iter()
                        .position(|x| x.id == from)
                        .is_some_and(|a| self.acceptors[a].cut_from.contains(&c));
                    if cut {
                        return true;
                    }
                    let now = self.now;
                    self.clients[c]
                        .proposer
                        .handle_reply(now, from, rep, &mut self.rng);
                    self.drain_client(c);
                }
            },
            Event::Sync(a) => {
                self.acceptors[a].sync_scheduled = false;
                if !self.acceptors[a].down {
                    let outs = std::mem::take(&mut self.acceptors[a].unsynced);
                    for out in outs {
                        let then = match out {
                            AcceptorOutput::Persist { key, state, then } => {
                                self.acceptors[a].durable.insert(key, state);
                                then
                            }
                            AcceptorOutput::Send(then) => then,
                        };
                        let id = self.acceptors[a].id;
                        self.send(id, then.to, Msg::Rep(then.msg));
                    }
                }
            }
            Event::Crash(a) if self.rng.random_bool(0.5) => {
                // A partition instead of a crash: the acceptor keeps running, cut off
                // from a random non-empty set of proposers.
                self.stats.partitions += 1;
                let mut cut: Vec<usize> =
                    (0..CLIENTS).filter(|_| self.rng.random_bool(0.5)).collect();
                if cut.is_empty() {
                    cut.push(self.rng.random_range(0..CLIENTS));
                }
                self.acceptors[a].cut_from = cut;
                let down_for = Duration::from_millis(self.rng.random_range(50..800));
                self.schedule(down_for, Event::Restart(a));
            }
            Event::Crash(a) => {
                self.stats.crashes += 1;
                let node = &mut self.acceptors[a];
                node.down = true;
                node.unsynced.clear();
                node.live = A::restore(node.id, node.epoch, node.durable.clone());
                let down_for = Duration::from_millis(self.rng.random_range(50..800));
                self.schedule(down_for, Event::Restart(a));
            }
            Event::Restart(a) => {
                self.acceptors[a].down = false;
                self.acceptors[a].cut_from.clear();
                if self.now < self.faults_until {
                    // At most one acceptor down at a time: a majority stays connected.
                    let gap = Duration::from_millis(self.rng.random_range(10..1500));
                    let next = self.rng.random_range(0..self.acceptors.len());
                    self.schedule(gap, Event::Crash(next));
                }
            }
            Event::ProposerTimer(c) => {
                let due = self.clients[c].timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.clients[c].timer_at = None;
                    let now = self.now;
                    self.clients[c].proposer.handle_timeout(now, &mut self.rng);
                }
                self.drain_client(c);
            }
            Event::ClientIssue(c) => self.issue(c),
            Event::DriverTick => self.drive(),
            Event::DriverCrash => {
                self.stats.driver_crashes += 1;
                self.driver.acked.clear();
                self.driver.rescanning = false;
                let epoch = self.clients[DRIVER].proposer.epoch();
                let quorums = self.root(epoch).quorums();
                let incarnation = self.driver_lives + 1;
                self.driver_lives = incarnation;
                self.clients[DRIVER].proposer = P::with_quorums(
                    NodeId(10 + DRIVER as u64),
                    incarnation,
                    epoch,
                    quorums,
                    config(),
                );
                self.clients[DRIVER].timer_at = None;
            }
        }
        true
    }

    fn root(&self, epoch: u64) -> &RootRecord {
        &self.driver.roots[(epoch - 1) as usize]
    }

    /// One step of the driver (every 20 ms until the change is done).
    fn drive(&mut self) {
        let cur = self.driver.epoch;
        let last = self.driver.roots.len() as u64;
        let prev_retired = cur == 1 || retired(&self.root(cur - 1).quorums(), &self.driver.acked);
        // A rollback (the next root restores the voters of before) needs no rescan.
        let rolling_back = cur < last && self.root(cur + 1).voters != self.root(cur).voters;
        let rescan_due = needs_rescan(self.root(cur))
            && !rolling_back
            && !self.driver.skip_rescan
            && !self.driver.rescanned;
        let listed_all = self
            .root(cur)
            .acceptor_ids()
            .iter()
            .all(|id| self.driver.acked.contains(id));
        if cur == last && listed_all {
            self.driver.done_at = Some(self.elapsed());
            return;
        }
        if cur < last && prev_retired && !rescan_due {
            // R1 holds: hand out the next root.
            if self.clients[..CLIENTS].iter().any(|c| c.current.is_some()) {
                self.stats.roots_under_load += 1;
            }
            self.driver.epoch += 1;
            self.driver.acked.clear();
            self.driver.rescanned = false;
            let e = self.driver.epoch;
            let quorums = self.root(e).quorums();
            let now = self.now;
            self.clients[DRIVER].proposer.set_root(now, e, quorums);
            self.drain_client(DRIVER);
        } else if rescan_due && prev_retired && !self.driver.rescanning {
            // R2: the rescan (a read writes the value back under the raised accept rule).
            self.driver.rescanning = true;
            self.stats.rescans += 1;
            let now = self.now;
            self.clients[DRIVER]
                .proposer
                .propose(now, KEY, None, CounterChange::Read);
            self.drain_client(DRIVER);
        }
        let cur = self.driver.epoch;
        let mut to: Vec<NodeId> = self.root(cur).acceptor_ids();
        if cur > 1 {
            to.extend(self.root(cur - 1).acceptor_ids());
        }
        to.sort();
        to.dedup();
        for id in to {
            if !self.driver.acked.contains(&id) {
                self.send(NodeId(9), id, Msg::Install(cur));
            }
        }
        self.schedule(Duration::from_millis(20), Event::DriverTick);
    }

    /// Run to the end, then read the final value through a fresh proposer with no faults.
    fn run(mut self) -> (SimStats, Result<(), String>) {
        let result = self.run_inner();
        let mut st = self.stats;
        st.ops = self.history.len();
        st.acked = self
            .history
            .iter()
            .filter(|o| o.completed.is_some())
            .count();
        st.indeterminate = st.ops - st.acked;
        for c in &self.clients {
            st.cache_hits += c.proposer.stats().cache_hits;
            st.failed_rounds += c.proposer.stats().failed_rounds;
        }
        st.max_latency = self
            .history
            .iter()
            .filter_map(|o| o.completed.map(|d| d - o.invoked))
            .max()
            .unwrap_or_default();
        (st, result)
    }

    fn run_inner(&mut self) -> Result<(), String> {
        let limit = self.base + Duration::from_secs(120);
        while self.now < limit && self.step() {
            let finished = self.clients.iter().all(|c| c.ops_done >= OPS_PER_CLIENT)
                && self.driver.done_at.is_some();
            if finished {
                break;
            }
        }
        let ops_done: usize = self.clients[..CLIENTS].iter().map(|c| c.ops_done).sum();
        if ops_done < CLIENTS * OPS_PER_CLIENT {
            return Err(format!(
                "liveness: only {ops_done} of {} ops finished by {:?}",
                CLIENTS * OPS_PER_CLIENT,
                self.elapsed()
            ));
        }
        // (c) Liveness: every op completed (no indeterminate op left after its retries),
        // each within the bound.
        for o in &self.history {
            match o.completed {
                None => return Err(format!("liveness: op never completed: {o:?}")),
                Some(done) if done - o.invoked > LIVENESS_BOUND => {
                    return Err(format!("liveness: op took {:?}: {o:?}", done - o.invoked))
                }
                Some(_) => {}
            }
        }
        let Some(done) = self.driver.done_at else {
            return Err(format!(
                "liveness: the change stopped at epoch {} of {}",
                self.driver.epoch,
                self.driver.roots.len()
            ));
        };
        if done > CHANGE_BOUND {
            return Err(format!("liveness: the change took {done:?}"));
        }
        let final_value = self.final_read()?;
        check_history(&self.history, final_value)
    }

    fn final_read(&mut self) -> Result<u64, String> {
        let mut acceptors: Vec<A> = self
            .acceptors
            .iter()
            .map(|a| A::restore(a.id, a.epoch, a.durable.clone()))
            .collect();
        let last = self.driver.roots.len() as u64;
        let quorums = self.root(last).quorums();
        let mut p = P::with_quorums(NodeId(99), 1, last, quorums, config());
        let now = self.now;
        p.propose(now, KEY, None, CounterChange::Read);
        for _ in 0..20 {
            let mut replies = Vec::new();
            while let Some(out) = p.poll_output() {
                match out {
                    ProposerOutput::Send(env) => {
                        let a = &mut acceptors[(env.to.0 - 1) as usize];
                        a.handle_request(p.id(), env.msg);
                        while let Some(o) = a.poll_output() {
                            let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) =
                                o;
                            replies.push((a.id(), then.msg));
                        }
                    }
                    ProposerOutput::Complete(done) => {
                        return match done.result {
                            Ok(Outcome::Applied { value: v, .. }) => Ok(v.unwrap_or(0)),
                            other => Err(format!("final read failed: {other:?}")),
                        };
                    }
                }
            }
            let idle = replies.is_empty();
            for (from, r) in replies {
                p.handle_reply(now, from, r, &mut self.rng);
            }
            // A conflict backs off: fire the timer once nothing else is moving.
            if idle {
                if let Some(t) = p.poll_timeout() {
                    p.handle_timeout(t.max(now), &mut self.rng);
                }
            }
        }
        Err("final read did not complete".into())
    }
}

fn check_history(history: &[OpRecord], final_value: u64) -> Result<(), String> {
    let acked: Vec<&OpRecord> = history.iter().filter(|o| o.completed.is_some()).collect();
    let acked_incr = acked.iter().filter(|o| o.incr).count() as u64;
    let unknown_incr = history
        .iter()
        .filter(|o| o.incr && o.completed.is_none())
        .count() as u64;
    // (a) No lost and no duplicated increments.
    if final_value < acked_incr || final_value > acked_incr + unknown_incr {
        return Err(format!(
            "final value {final_value} but {acked_incr} acknowledged and {unknown_incr} \
             indeterminate increments"
        ));
    }
    let mut seen = BTreeMap::new();
    for o in acked.iter().filter(|o| o.incr) {
        let v = o.value.unwrap_or(0);
        if v == 0 || v > final_value {
            return Err(format!("increment returned {v}, final value {final_value}"));
        }
        if let Some(prev) = seen.insert(v, o.client) {
            return Err(format!(
                "two acknowledged increments returned {v} (clients {prev} and {})",
                o.client
            ));
        }
    }
    // (b) Real-time order between non-overlapping acknowledged ops.
    for a in &acked {
        for b in &acked {
            let (Some(a_done), Some(av), Some(bv)) = (a.completed, a.value, b.value) else {
                continue;
            };
            if a_done < b.invoked && (av > bv || (b.incr && av == bv)) {
                return Err(format!(
                    "real-time order broken: {a:?} completed before {b:?} began"
                ));
            }
        }
    }
    Ok(())
}

fn root3() -> RootRecord {
    RootRecord {
        epoch: 1,
        voters: vec![("n1".into(), 1), ("n2".into(), 2), ("n3".into(), 3)],
        quorums: None,
        pending: None,
    }
}

/// The roots of `changes` (acceptor `n` named `n{n}`) from three voters, by the planner.
fn plan(changes: &[(bool, u64)]) -> Vec<RootRecord> {
    let mut roots = vec![root3()];
    for (add, n) in changes {
        let (name, acceptor) = (format!("n{n}"), *n);
        let change = if *add {
            VoterChange::Add { name, acceptor }
        } else {
            VoterChange::Remove { name, acceptor }
        };
        let last = roots.last().cloned().expect("a root");
        let first = reconfig::begin(&last, change).expect("begins");
        let done = reconfig::advance(&first).expect("ends");
        roots.push(first);
        roots.push(done);
    }
    roots
}

/// Add voter 4, roll the add back (an interrupted change undone), add it again, then
/// remove voter 1.
fn replace_after_a_rollback() -> Vec<RootRecord> {
    let r0 = root3();
    let add = || VoterChange::Add {
        name: "n4".into(),
        acceptor: 4,
    };
    let widened = reconfig::begin(&r0, add()).expect("begins");
    let back = reconfig::roll_back(&widened).expect("rolls back");
    let again = reconfig::begin(&back, add()).expect("begins again");
    let mut roots = vec![r0, widened, back, again.clone()];
    let done = reconfig::advance(&again).expect("ends");
    let remove = VoterChange::Remove {
        name: "n1".into(),
        acceptor: 1,
    };
    let narrowed = reconfig::begin(&done, remove).expect("begins");
    let removed = reconfig::advance(&narrowed).expect("ends");
    roots.extend([done, narrowed, removed]);
    roots
}

/// Replace voter 1 by voter 4.
fn replace() -> Vec<RootRecord> {
    plan(&[(true, 4), (false, 1)])
}

/// 3 → 4 → 5 → 4 → 3.
fn grow_and_shrink() -> Vec<RootRecord> {
    plan(&[(true, 4), (true, 5), (false, 1), (false, 2)])
}

/// Runs `sim` on each of `seeds` (on all cores); a panicking run fails the test.
fn verdicts(
    seeds: std::ops::Range<u64>,
    sim: impl Fn(u64) -> Sim + Sync,
) -> Vec<(u64, SimStats, Result<(), String>)> {
    let seeds: Vec<u64> = seeds.collect();
    run_seeds(&seeds, |seed| sim(seed).run())
        .into_iter()
        .map(|(seed, run)| {
            let (stats, verdict) = run.unwrap_or_else(|p| panic!("seed {seed} {p}"));
            (seed, stats, verdict)
        })
        .collect()
}

fn seed_loop(name: mesh_sim_seeds::SimTest<'_>, roots: fn() -> Vec<RootRecord>) {
    let started = Instant::now();
    let runs = for_each_seed(name, 100, |seed| {
        let (stats, result) = Sim::new(seed, roots()).run();
        result.map(|()| stats)
    });
    let mut total = SimStats::default();
    for (_, stats) in &runs {
        total.add(stats);
    }
    println!(
        "reconfig sim: {} seeds, {:.1?}; {total:?}",
        runs.len(),
        started.elapsed()
    );
    assert!(total.crashes > 0 && total.partitions > 0);
    assert!(total.lost > 0 && total.duplicated > 0);
    assert!(
        total.roots_under_load > runs.len(),
        "roots were handed out while client ops ran"
    );
    assert!(total.rescans >= runs.len(), "every run rescanned");
    assert!(
        total.driver_crashes > 0,
        "some changes resumed after the driver died"
    );
}

#[test]
fn a_replace_under_load_partitions_and_crashes_keeps_the_history_linearizable() {
    seed_loop(
        sim_test!("a_replace_under_load_partitions_and_crashes_keeps_the_history_linearizable"),
        replace,
    );
}

#[test]
fn growing_to_five_and_back_under_load_keeps_the_history_linearizable() {
    seed_loop(
        sim_test!("growing_to_five_and_back_under_load_keeps_the_history_linearizable"),
        grow_and_shrink,
    );
}

#[test]
fn a_rolled_back_add_then_a_replace_under_load_keeps_the_history_linearizable() {
    seed_loop(
        sim_test!("a_rolled_back_add_then_a_replace_under_load_keeps_the_history_linearizable"),
        replace_after_a_rollback,
    );
}

/// Negative control: a driver that skips the rescan loses increments (or breaks their
/// order) on some seed, and the same checks must say so.
#[test]
fn skipping_the_rescan_is_caught_by_the_history_checker() {
    let mut caught = 0;
    for (seed, _, result) in verdicts(0..200, |seed| {
        let mut sim = Sim::new(seed, replace());
        sim.driver.skip_rescan = true;
        sim
    }) {
        if let Err(why) = result {
            if caught == 0 {
                println!("caught on seed {seed}: {why}");
            }
            caught += 1;
        }
    }
    println!("negative control (no rescan): {caught} of 200 seeds caught");
    assert!(
        caught > 0,
        "the history checker must catch a skipped rescan"
    );
}
