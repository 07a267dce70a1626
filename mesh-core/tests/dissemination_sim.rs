//! Seeded convergence simulation of the dissemination scheduler
//! (`mesh_core::dissemination`) with real `mesh_crdt` replicas.
//!
//! Ten nodes, each a `Replica<String, (String, u64)>` (toy elements) and a
//! `Dissemination`, on a simulated network with random per-message latency. SWIM is
//! stood in for by ping/ack packets of random size to random peers (every 50–150 ms per
//! node), each wrapped by `wrap_datagram`, so CRDT deltas ride their trailers; deltas of
//! several operations are larger than `piggyback_max_item` and go in batch frames. For
//! the first few seconds every node makes random adds and removes of its own entries.
//! A node that receives a delta that changes its state pushes it again (rumor
//! mongering). Anti-entropy rounds are real push-pull exchanges over a reliable
//! request/response: digest → `missing_for` → chunks, both ways.
//!
//! Scenarios:
//! - **every broadcast lost**: every datagram trailer and every batch frame is dropped
//!   (the SWIM part still arrives); only anti-entropy gets through. All replicas must be
//!   equal within `N` anti-entropy intervals after the last write — the bound follows
//!   from F3 (each node's ring visits every peer within `N − 1` rounds, and one
//!   push-pull with an origin hands over that origin's final state).
//! - **no loss, no anti-entropy**: piggyback and batches with rumor mongering alone must
//!   converge.
//! - **negative control**: every broadcast lost *and* no anti-entropy must leave the
//!   replicas different — the convergence check can fail.
//!
//! `MESH_SIM_SEEDS=N` runs `N` seeds (default 200; 50 for the heavier rumor-mongering
//! run, where every node relays every delta); `MESH_SIM_SEED=S` runs one seed; both through
//! `mesh_sim_seeds::for_each_seed`, which prints a `REPRODUCE WITH:` command on failure.

use bytes::Bytes;
use mesh_core::dissemination::{
    decode_batch, ChannelId, Dissemination, DisseminationConfig, DisseminationOutput, MAX_DATAGRAM,
};
use mesh_crdt::{Digest, Orswot, Replica};
use mesh_sim_seeds::{for_each_seed, run_seeds, sim_test};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type Element = (String, u64);
type Delta = Orswot<String, Element>;

const N: usize = 10;
const GROUPS: ChannelId = ChannelId(0);
const AE_INTERVAL: Duration = Duration::from_secs(1);
const WRITE_PHASE: Duration = Duration::from_secs(3);
/// Anti-entropy replies are cut into pieces of at most this many encoded bytes.
const CHUNK: usize = 1100;

#[derive(Clone, Copy, Debug)]
struct Scenario {
    broadcasts_lost: bool,
    anti_entropy: bool,
    /// How long after the last write every replica must be equal.
    bound: Duration,
}

enum Msg {
    /// A wrapped SWIM packet; `ping` asks for an ack back.
    Datagram {
        ping: bool,
        data: Bytes,
    },
    Batch(Bytes),
    AeRequest(Vec<u8>),
    AeReply {
        chunks: Vec<Vec<u8>>,
        digest: Vec<u8>,
    },
    AePush(Vec<Vec<u8>>),
}

enum Event {
    Tick(usize),
    Swim(usize),
    Write(usize),
    Deliver { to: usize, from: usize, msg: Msg },
}

struct Node {
    name: String,
    replica: Replica<String, Element>,
    diss: Dissemination,
    /// The tick currently scheduled (older Tick events are stale).
    tick_at: Option<Instant>,
    /// Elements this node added and has not removed (with multiplicity).
    own: Vec<Element>,
    /// The replica's digest, refreshed after every change.
    digest: Digest<String>,
}

#[derive(Debug, Default)]
struct Totals {
    writes: u64,
    items_sent: u64,
    items_lost: u64,
    items_new: u64,
    exchanges: u64,
    datagrams: u64,
    piggybacked: u64,
    batched: u64,
    pushed_again: u64,
}

impl Totals {
    fn add(&mut self, o: &Self) {
        self.writes += o.writes;
        self.items_sent += o.items_sent;
        self.items_lost += o.items_lost;
        self.items_new += o.items_new;
        self.exchanges += o.exchanges;
        self.datagrams += o.datagrams;
        self.piggybacked += o.piggybacked;
        self.batched += o.batched;
        self.pushed_again += o.pushed_again;
    }
}

struct Sim {
    scenario: Scenario,
    t0: Instant,
    now: Instant,
    rng: StdRng,
    nodes: Vec<Node>,
    events: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    last_write: Instant,
    totals: Totals,
}

impl Sim {
    fn new(seed: u64, scenario: Scenario) -> Self {
        let t0 = Instant::now();
        let rng = StdRng::seed_from_u64(seed);
        let config = DisseminationConfig {
            // Single-operation deltas (17–34 bytes) piggyback; joined ones (six operations,
            // 50–100 bytes) are batched.
            piggyback_max_item: 48,
            anti_entropy_interval: scenario.anti_entropy.then_some(AE_INTERVAL),
            ..DisseminationConfig::default()
        };
        let names: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
        let nodes = (0..N)
            .map(|i| {
                let mut diss = Dissemination::new(
                    config.clone(),
                    &[(GROUPS, "groups")],
                    seed.wrapping_mul(1000).wrapping_add(i as u64),
                )
                .expect("valid config");
                let peers: Vec<String> =
                    names.iter().filter(|n| **n != names[i]).cloned().collect();
                diss.set_peers(t0, &peers);
                let replica = Replica::new(names[i].clone(), 1);
                Node {
                    name: names[i].clone(),
                    digest: replica.digest(),
                    replica,
                    diss,
                    tick_at: None,
                    own: Vec::new(),
                }
            })
            .collect();
        let mut sim = Self {
            scenario,
            t0,
            now: t0,
            rng,
            nodes,
            events: BTreeMap::new(),
            seq: 0,
            last_write: t0,
            totals: Totals::default(),
        };
        for i in 0..N {
            let swim = Duration::from_millis(sim.rng.random_range(0..100));
            sim.at(t0 + swim, Event::Swim(i));
            let write = Duration::from_millis(sim.rng.random_range(0..300));
            sim.at(t0 + write, Event::Write(i));
            sim.reschedule_tick(i);
        }
        sim
    }

    fn at(&mut self, when: Instant, event: Event) {
        self.seq += 1;
        self.events.insert((when, self.seq), event);
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        let latency = Duration::from_millis(self.rng.random_range(1..=20));
        self.at(self.now + latency, Event::Deliver { to, from, msg });
    }

    fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .expect("outputs name known peers")
    }

    fn reschedule_tick(&mut self, i: usize) {
        let next = self.nodes[i].diss.poll_timeout();
        if next.is_some() && next != self.nodes[i].tick_at {
            self.nodes[i].tick_at = next;
            if let Some(t) = next {
                self.at(t, Event::Tick(i));
            }
        }
    }

    /// Sends what node `i` produced, then re-arms its timer.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].diss.poll_output() {
            match out {
                DisseminationOutput::Batch { to, frame } => {
                    let to = self.index(&to);
                    self.send(i, to, Msg::Batch(frame));
                }
                DisseminationOutput::AntiEntropy { with } => {
                    let with = self.index(&with);
                    let digest = self.nodes[i].digest.encode().expect("encodes");
                    self.send(i, with, Msg::AeRequest(digest));
                }
            }
        }
        self.reschedule_tick(i);
    }

    /// A delta from a peer: merge it; if it changed our state, spread it further.
    fn receive_item(&mut self, i: usize, bytes: Bytes) {
        let delta = Delta::decode(&bytes).expect("deltas we sent decode");
        let node = &mut self.nodes[i];
        node.replica.merge(&delta);
        let after = node.replica.digest();
        if after != node.digest {
            node.digest = after;
            self.totals.items_new += 1;
            self.totals.pushed_again += 1;
            node.diss
                .push(self.now, GROUPS, bytes)
                .expect("a valid item");
        }
    }

    fn receive_items(&mut self, i: usize, items: Vec<(ChannelId, Bytes)>) {
        self.totals.items_sent += items.len() as u64;
        if self.scenario.broadcasts_lost {
            self.totals.items_lost += items.len() as u64;
            return;
        }
        for (channel, bytes) in items {
            assert_eq!(channel, GROUPS);
            self.receive_item(i, bytes);
        }
    }

    fn chunks(delta: &Delta) -> Vec<Vec<u8>> {
        delta
            .chunks(CHUNK)
            .expect("toy elements fit a chunk")
            .iter()
            .map(|c| c.encode().expect("encodes"))
            .collect()
    }

    fn merge_chunks(&mut self, i: usize, chunks: &[Vec<u8>]) {
        for chunk in chunks {
            assert!(chunk.len() <= CHUNK);
            let piece = Delta::decode(chunk).expect("chunks decode");
            self.nodes[i].replica.merge(&piece);
        }
        self.nodes[i].digest = self.nodes[i].replica.digest();
    }

    fn write(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut delta = Delta::new();
        let ops = if self.rng.random_range(0..4) == 0 {
            6
        } else {
            1
        };
        for _ in 0..ops {
            let remove = !node.own.is_empty() && self.rng.random_range(0..10) < 4;
            if remove {
                let k = self.rng.random_range(0..node.own.len());
                let element = node.own.swap_remove(k);
                delta.merge(&node.replica.remove(&element).expect("we added it"));
            } else {
                let element = (
                    format!("g{}", self.rng.random_range(0..5)),
                    self.rng.random_range(0..20u64),
                );
                node.own.push(element.clone());
                delta.merge(&node.replica.add(element));
            }
        }
        let bytes = Bytes::from(delta.encode().expect("encodes"));
        node.diss
            .push(self.now, GROUPS, bytes)
            .expect("a valid item");
        node.digest = node.replica.digest();
        self.totals.writes += 1;
        self.last_write = self.now;
    }

    /// All replicas have the same digest (a few words per origin, kept up to date,
    /// cheap enough to compare after every event; any change of state changes it).
    fn digests_equal(&self) -> bool {
        let digest = &self.nodes[0].digest;
        self.nodes[1..].iter().all(|n| n.digest == *digest)
    }

    /// All replicas are equal, structurally.
    fn states_equal(&self) -> bool {
        let first = self.nodes[0].replica.state();
        self.nodes[1..].iter().all(|n| n.replica.state() == first)
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                if self.nodes[i].tick_at != Some(self.now) {
                    return; // superseded
                }
                self.nodes[i].tick_at = None;
                self.nodes[i].diss.handle_tick(self.now);
                self.drain(i);
            }
            Event::Swim(i) => {
                let mut to = self.rng.random_range(0..N - 1);
                if to >= i {
                    to += 1;
                }
                self.ping(i, to, true);
                let next = Duration::from_millis(self.rng.random_range(50..150));
                self.at(self.now + next, Event::Swim(i));
            }
            Event::Write(i) => {
                if self.now < self.t0 + WRITE_PHASE {
                    self.write(i);
                    self.drain(i);
                    let next = Duration::from_millis(self.rng.random_range(20..400));
                    self.at(self.now + next, Event::Write(i));
                }
            }
            Event::Deliver { to, from, msg } => self.deliver(to, from, msg),
        }
    }

    /// A SWIM-sized packet from `i` to `to`, wrapped with whatever fits.
    fn ping(&mut self, i: usize, to: usize, ping: bool) {
        let len = self.rng.random_range(30..400);
        let swim = vec![u8::from(ping); len];
        let to_name = self.nodes[to].name.clone();
        let data = self.nodes[i]
            .diss
            .wrap_datagram(self.now, &to_name, &swim)
            .expect("SWIM packets fit");
        assert!(data.len() <= MAX_DATAGRAM);
        self.totals.datagrams += 1;
        self.send(i, to, Msg::Datagram { ping, data });
    }

    fn deliver(&mut self, i: usize, from: usize, msg: Msg) {
        match msg {
            Msg::Datagram { ping, data } => {
                let (swim, items) =
                    Dissemination::unwrap_datagram(&data).expect("our datagrams unwrap");
                assert!(swim.iter().all(|&b| b == u8::from(ping)));
                self.receive_items(i, items);
                if ping {
                    self.ping(i, from, false);
                }
            }
            Msg::Batch(frame) => {
                let items = decode_batch(&frame).expect("our frames decode");
                self.receive_items(i, items);
            }
            Msg::AeRequest(digest) => {
                let theirs = Digest::<String>::decode(&digest).expect("digests decode");
                let chunks = Self::chunks(&self.nodes[i].replica.missing_for(&theirs));
                let digest = self.nodes[i].digest.encode().expect("encodes");
                self.send(i, from, Msg::AeReply { chunks, digest });
            }
            Msg::AeReply { chunks, digest } => {
                self.merge_chunks(i, &chunks);
                let theirs = Digest::<String>::decode(&digest).expect("digests decode");
                let push = Self::chunks(&self.nodes[i].replica.missing_for(&theirs));
                self.send(i, from, Msg::AePush(push));
            }
            Msg::AePush(chunks) => {
                self.merge_chunks(i, &chunks);
                self.totals.exchanges += 1;
            }
        }
        self.drain(i);
    }

    /// Runs until `bound` after the write phase; returns how long after the last write
    /// the replicas became (and stayed) equal, if they did.
    fn run(&mut self) -> Option<Duration> {
        let end = self.t0 + WRITE_PHASE + self.scenario.bound;
        let mut converged_at = None;
        while let Some(((when, _), event)) = self.events.pop_first() {
            if when > end {
                break;
            }
            self.now = when;
            self.step(event);
            if self.now >= self.t0 + WRITE_PHASE {
                match converged_at {
                    None if self.digests_equal() && self.states_equal() => {
                        converged_at = Some(self.now);
                    }
                    Some(_) => assert!(self.digests_equal(), "replicas diverged without writes"),
                    None => {}
                }
            }
        }
        for n in &self.nodes {
            let s = n.diss.stats();
            self.totals.piggybacked += s.channels[0].piggybacked_sends;
            self.totals.batched += s.channels[0].batched_sends;
            assert_eq!(
                s.channels[0].dropped_overflow, 0,
                "no overflow at this load"
            );
        }
        if converged_at.is_some() {
            assert!(self.states_equal(), "still equal at the end");
        }
        converged_at.map(|at| at - self.last_write)
    }
}

/// Runs every seed the environment asks for (`mesh_sim_seeds::for_each_seed`, default
/// `default_seeds`); returns the totals and the slowest convergence.
fn run_scenario(test: &str, default_seeds: u64, scenario: Scenario) -> (Totals, Duration) {
    let started = Instant::now();
    let runs = for_each_seed(sim_test!(test), default_seeds, |seed| {
        let mut sim = Sim::new(seed, scenario);
        match sim.run() {
            Some(after) => Ok((std::mem::take(&mut sim.totals), after)),
            None => Err(format!(
                "replicas still differ {:?} after the last write",
                scenario.bound
            )),
        }
    });
    let mut totals = Totals::default();
    let mut slowest = Duration::ZERO;
    for (_, (t, after)) in &runs {
        totals.add(t);
        slowest = slowest.max(*after);
    }
    println!(
        "{test}: {} seeds, slowest convergence {slowest:?} after the last write, {:.1?}; {totals:?}",
        runs.len(),
        started.elapsed()
    );
    (totals, slowest)
}

#[test]
fn replicas_converge_by_anti_entropy_alone_when_every_broadcast_is_lost() {
    let scenario = Scenario {
        broadcasts_lost: true,
        anti_entropy: true,
        bound: AE_INTERVAL * N as u32,
    };
    let (t, _) = run_scenario(
        "replicas_converge_by_anti_entropy_alone_when_every_broadcast_is_lost",
        200,
        scenario,
    );
    // The broadcasts were really attempted, on both paths, and really all lost.
    assert!(t.writes > 0 && t.piggybacked > 0 && t.batched > 0, "{t:?}");
    assert_eq!(t.items_lost, t.items_sent);
    assert_eq!(t.items_new, 0);
    assert!(t.exchanges > 0);
}

#[test]
fn replicas_converge_by_piggyback_and_batches_alone_without_loss_or_anti_entropy() {
    let scenario = Scenario {
        broadcasts_lost: false,
        anti_entropy: false,
        bound: Duration::from_secs(2),
    };
    let (t, _) = run_scenario(
        "replicas_converge_by_piggyback_and_batches_alone_without_loss_or_anti_entropy",
        50,
        scenario,
    );
    assert_eq!(t.exchanges, 0, "no anti-entropy ran");
    assert!(t.piggybacked > 0 && t.batched > 0, "{t:?}");
    assert!(t.pushed_again > 0, "rumor mongering relayed items");
}

/// Negative control: with every broadcast lost and no anti-entropy, nothing spreads, and
/// the convergence check must say so.
#[test]
fn without_anti_entropy_lost_broadcasts_leave_the_replicas_different() {
    let scenario = Scenario {
        broadcasts_lost: true,
        anti_entropy: false,
        bound: AE_INTERVAL * N as u32,
    };
    let seeds: Vec<u64> = (0..5).collect();
    for (seed, run) in run_seeds(&seeds, |seed| {
        let mut sim = Sim::new(seed, scenario);
        (sim.run(), std::mem::take(&mut sim.totals))
    }) {
        let (converged, t) = run.unwrap_or_else(|p| panic!("seed {seed} {p}"));
        assert_eq!(
            converged, None,
            "seed {seed} converged without any delivery"
        );
        assert!(t.writes > 0 && t.items_lost > 0, "seed {seed}: {t:?}");
    }
}
