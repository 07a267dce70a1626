//! Seeded simulation of the CASPaxos register (`mesh_core::quorum`): the real acceptors
//! and proposers over a simulated network with loss, duplication and reordering (random
//! delays), partitions (an acceptor cut off from some proposers), acceptor crashes
//! (un-fsynced state lost, persisted state kept) and restarts,
//! and three proposers whose clients issue increments and reads on one key concurrently.
//!
//! Every run's history is checked:
//! - (a) no lost or duplicated increments: the final value equals the acknowledged
//!   increments plus some of the indeterminate ones, and acknowledged increments return
//!   distinct values;
//! - (b) real-time order: an op that completed before another began returned a value no
//!   larger (strictly smaller if the later one is an increment);
//! - (c) liveness: with at most one acceptor crashed or partitioned at a time (every
//!   proposer keeps a majority connected), every
//!   op completes within a bound (retries by request id included).
//!
//! Negative controls: retries under fresh request ids (duplicated increments) and quorums
//! of one acceptor (lost increments) must both be caught by the same checks.
//!
//! Seeds run through `mesh_sim_seeds`: `MESH_SIM_SEEDS=N` runs more seeds (default 200);
//! `MESH_SIM_SEED=S` runs one seed; a failure prints a `REPRODUCE WITH:` command.

use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Change, NodeId, Outcome, ProposeError, Proposer,
    ProposerConfig, ProposerOutput, Reply, Request, RequestId, Slot,
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
const ACCEPTORS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const CLIENTS: usize = 3;
const OPS_PER_CLIENT: usize = 25;
const RETRIES: usize = 4;

#[derive(Clone, Debug)]
enum Msg {
    Req(Request<&'static str, S>),
    Rep(Reply<&'static str, S>),
}

#[derive(Clone, Debug)]
enum Event {
    Deliver { from: NodeId, to: NodeId, msg: Msg },
    Sync(usize),
    Crash(usize),
    Restart(usize),
    ProposerTimer(usize),
    ClientIssue(usize),
}

struct AccNode {
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

struct Sim {
    seed: u64,
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
    }
}

/// (c) Liveness bound: with a majority connected, an op (with its retries) completes
/// within this much simulated time: all its attempts, `(RETRIES + 1) * op_timeout`.
/// Observed over 1000 seeds: at most ~4.8 s. Three proposers hammering one key is
/// unfair to the lowest node id (it loses ballot ties), which is why the shell should
/// route a key's changes to its HRW-preferred proposer.
const LIVENESS_BOUND: Duration = Duration::from_millis(7_500);

fn config() -> ProposerConfig {
    ProposerConfig {
        attempt_timeout: Duration::from_millis(100),
        op_timeout: Duration::from_millis(1500),
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(80),
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        Self::with_voters(seed, |_| ACCEPTORS.to_vec())
    }

    /// A run where client `c`'s proposer uses `voters(c)` as its voter set.
    fn with_voters(seed: u64, voters: impl Fn(usize) -> Vec<NodeId>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
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
            acceptors: ACCEPTORS
                .iter()
                .map(|id| AccNode {
                    live: A::new(*id, 1),
                    durable: BTreeMap::new(),
                    unsynced: Vec::new(),
                    sync_scheduled: false,
                    down: false,
                    cut_from: Vec::new(),
                })
                .collect(),
            clients: (0..CLIENTS)
                .map(|i| Client {
                    proposer: P::new(NodeId(10 + i as u64), 1, 1, voters(i), config()),
                    next_seq: 1,
                    ops_done: 0,
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
        let a = sim.rng.random_range(0..3);
        sim.schedule(first_crash, Event::Crash(a));
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
        while let Some(out) = self.clients[c].proposer.poll_output() {
            match out {
                ProposerOutput::Send(env) => self.send(from, env.to, Msg::Req(env.msg)),
                ProposerOutput::Complete(done) => self.complete(c, done.result),
            }
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
                Msg::Req(req) => {
                    if let Some(a) = ACCEPTORS.iter().position(|x| *x == to) {
                        let c = (from.0 - 10) as usize;
                        if !self.acceptors[a].down && !self.acceptors[a].cut_from.contains(&c) {
                            self.acceptors[a].live.handle_request(from, req);
                            self.drain_acceptor(a);
                        }
                    }
                }
                Msg::Rep(rep) => {
                    let c = (to.0 - 10) as usize;
                    let cut = ACCEPTORS
                        .iter()
                        .position(|x| *x == from)
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
                        self.send(ACCEPTORS[a], then.to, Msg::Rep(then.msg));
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
                node.live = A::restore(ACCEPTORS[a], 1, node.durable.clone());
                let down_for = Duration::from_millis(self.rng.random_range(50..800));
                self.schedule(down_for, Event::Restart(a));
            }
            Event::Restart(a) => {
                self.acceptors[a].down = false;
                self.acceptors[a].cut_from.clear();
                if self.now < self.faults_until {
                    // At most one acceptor down at a time: a majority stays connected.
                    let gap = Duration::from_millis(self.rng.random_range(10..1500));
                    let next = self.rng.random_range(0..3);
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
        }
        true
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
            let finished = self.clients.iter().all(|c| c.ops_done >= OPS_PER_CLIENT);
            if finished {
                break;
            }
        }
        let ops_done: usize = self.clients.iter().map(|c| c.ops_done).sum();
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
        let final_value = self.final_read()?;
        check_history(&self.history, final_value)
    }

    fn final_read(&mut self) -> Result<u64, String> {
        let durable: Vec<_> = self.acceptors.iter().map(|a| a.durable.clone()).collect();
        let mut acceptors: Vec<A> = ACCEPTORS
            .iter()
            .zip(durable)
            .map(|(id, d)| A::restore(*id, 1, d))
            .collect();
        let mut p = P::new(NodeId(99), 1, 1, ACCEPTORS, config());
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

/// Runs `sim` on each of `seeds` (on all cores); a panicking run fails the test (a
/// negative control counts what the checker caught, not what crashed).
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

#[test]
fn concurrent_increments_survive_loss_duplication_reordering_and_crashes() {
    let started = Instant::now();
    let runs = for_each_seed(
        sim_test!("concurrent_increments_survive_loss_duplication_reordering_and_crashes"),
        200,
        |seed| {
            let (stats, result) = Sim::new(seed).run();
            result.map(|()| stats)
        },
    );
    let mut total = SimStats::default();
    for (_, stats) in &runs {
        total.add(stats);
    }
    println!(
        "quorum sim: {} seeds, {:.1?}; {total:?}",
        runs.len(),
        started.elapsed()
    );
    assert!(total.crashes > 0 && total.partitions > 0);
    assert!(total.lost > 0 && total.duplicated > 0);
    assert!(total.cache_hits > 0, "the 1-RTT cache was exercised");
    assert!(
        total.replays > 0,
        "retries found applied increments by their record"
    );
}

/// Negative control for the checker: retrying a timed-out increment under a *new*
/// request id can apply it twice, and check (a) must notice on some seed.
#[test]
fn retries_under_fresh_request_ids_are_caught_as_duplicated_increments() {
    let mut caught = 0;
    let mut retries = 0;
    let runs = verdicts(0..200, |seed| {
        let mut sim = Sim::new(seed);
        sim.fresh_ids_on_retry = true;
        sim
    });
    for (seed, stats, result) in runs {
        retries += stats.retries;
        if let Err(why) = result {
            if caught == 0 {
                println!("caught on seed {seed}: {why}");
            }
            caught += 1;
        }
    }
    println!("negative control: {caught} of 200 seeds caught ({retries} retries)");
    assert!(
        caught > 0,
        "the history checker must catch duplicated increments"
    );
}

/// Negative control (quorum of one): each proposer uses a single, different acceptor as
/// its whole voter set. Increments are lost across proposers, and the checker must say so.
#[test]
fn quorums_of_one_acceptor_are_caught_by_the_history_checker() {
    let mut caught = 0;
    for (seed, _, result) in verdicts(0..50, |seed| Sim::with_voters(seed, |c| vec![ACCEPTORS[c]]))
    {
        if let Err(why) = result {
            if caught == 0 {
                println!("caught on seed {seed}: {why}");
            }
            caught += 1;
        }
    }
    println!("negative control (quorum of one): {caught} of 50 seeds caught");
    assert!(caught > 0, "the history checker must catch a quorum of one");
}
