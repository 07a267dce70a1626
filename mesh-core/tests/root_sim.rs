//! A seeded simulation of root formation: 3 or 5 voters and two clients over a network
//! that loses, duplicates and reorders hellos (with stragglers held back for seconds); nodes start at different times, crash and
//! restart (keeping their [`MemStore`]), persist with a delay (a crash can beat the
//! fsync); in some runs the creator is wiped right after it created the root, one voter is
//! wiped after formation, or a node has another voter configuration.
//!
//! Checked after every event: (1) a root is created only when no node holds any root;
//! (2) every node that holds a root — in force, or in its store — holds the same one;
//! (3) a node acts as an acceptor only under the id its store has now, and that id is the
//! one its root lists; (4) misconfigured nodes never hold a root, and no node ever sees a
//! root conflict. At the end, after the network healed: every correctly configured node
//! has the root in force (a wiped voter as [`FormationState::NotAVoter`]), or — when a
//! configured voter has another voter set — no node has any root and the creator reports
//! the mismatch.
//!
//! Seeds run through `mesh_sim_seeds::for_each_seed`: `MESH_SIM_SEEDS=N` runs more seeds
//! (default 300), `MESH_SIM_SEED=S` replays one, and a failure prints the seed with a
//! `REPRODUCE WITH:` command.

use mesh_core::quorum::root::*;
use mesh_core::quorum::{AcceptorStore, MemStore};
use mesh_sim_seeds::{for_each_seed, sim_test};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

const SEEDS: u64 = 300;
const RETRY: Duration = Duration::from_millis(500);
const HEAL_AT: Duration = Duration::from_secs(5);
const END: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misconfig {
    /// Everyone agrees.
    None,
    /// An extra node `x1` lists itself and two of our voters: it must be refused.
    Outsider,
    /// Our last voter lists another voter set: no root may form anywhere.
    Voter,
}

#[derive(Debug)]
enum Event {
    Deliver {
        to: String,
        hello: Hello,
    },
    Start(String),
    Crash {
        name: String,
        down: Duration,
    },
    Wipe(String),
    Persisted {
        name: String,
        life: u64,
    },
    /// Nothing but a wake-up (for the wipe after formation), every half second from the
    /// heal on.
    Tick,
}

struct Node {
    /// The voter set this node is configured with.
    voters: VoterNames,
    /// Voters (in their own configuration) have a store, kept across crashes.
    store: Option<MemStore>,
    /// What the store's root should be (what was persisted), to check the store with.
    durable_root: Option<RootRecord>,
    formation: Option<Formation>,
    life: u64,
    /// Acceptor ids of earlier, wiped lives.
    wiped_ids: Vec<u64>,
    /// Whether this node was wiped after formation.
    wiped_after_formation: bool,
    in_force: Option<RootRecord>,
    created_seen: u64,
    /// A root this life created and is persisting.
    creating: Option<RootRecord>,
    correct: bool,
}

struct Sim {
    rng: StdRng,
    t0: Instant,
    now: Instant,
    loss: f64,
    dup: f64,
    max_delay_ms: u64,
    misconfig: Misconfig,
    wipe_creator_after_create: bool,
    wipe_after_formation: bool,
    voter_names: Vec<String>,
    nodes: BTreeMap<String, Node>,
    events: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    /// Every distinct root that was created and made durable.
    created: Vec<RootRecord>,
    formed_once: bool,
    trace: VecDeque<String>,
}

impl Sim {
    fn new(seed: u64) -> Result<Self, String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if rng.random_bool(0.5) { 3 } else { 5 };
        let voter_names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let ours = VoterNames::new(voter_names.clone()).map_err(|e| e.to_string())?;
        let misconfig = match rng.random_range(0..6) {
            0 | 1 => Misconfig::Outsider,
            2 => Misconfig::Voter,
            _ => Misconfig::None,
        };
        let t0 = Instant::now();
        let mut sim = Self {
            loss: rng.random_range(0.0..0.3),
            dup: rng.random_range(0.0..0.2),
            max_delay_ms: rng.random_range(1..150),
            wipe_creator_after_create: misconfig != Misconfig::Voter && rng.random_bool(0.25),
            wipe_after_formation: misconfig != Misconfig::Voter && rng.random_bool(0.6),
            rng,
            t0,
            now: t0,
            misconfig,
            voter_names: voter_names.clone(),
            nodes: BTreeMap::new(),
            events: BTreeMap::new(),
            seq: 0,
            created: Vec::new(),
            formed_once: false,
            trace: VecDeque::new(),
        };
        let mut configs: Vec<(String, VoterNames, bool)> = voter_names
            .iter()
            .map(|v| (v.clone(), ours.clone(), true))
            .collect();
        configs.push(("c1".into(), ours.clone(), true));
        configs.push(("c2".into(), ours.clone(), true));
        match misconfig {
            Misconfig::None => {}
            Misconfig::Outsider => {
                let theirs = VoterNames::new(["n1", "n2", "x1"]).map_err(|e| e.to_string())?;
                configs.push(("x1".into(), theirs, false));
            }
            Misconfig::Voter => {
                let last = voter_names[n - 1].clone();
                let mut names: Vec<String> = voter_names[1..].to_vec();
                names.push("n9".into());
                let theirs = VoterNames::new(names).map_err(|e| e.to_string())?;
                configs[n - 1] = (last, theirs, false);
            }
        }
        for (name, voters, correct) in configs {
            let store = voters.contains(&name).then(|| MemStore::new(&mut sim.rng));
            let node = Node {
                voters,
                store,
                durable_root: None,
                formation: None,
                life: 0,
                wiped_ids: Vec::new(),
                wiped_after_formation: false,
                in_force: None,
                created_seen: 0,
                creating: None,
                correct,
            };
            let start = Duration::from_millis(sim.rng.random_range(0..2000));
            sim.schedule(start, Event::Start(name.clone()));
            sim.nodes.insert(name, node);
        }
        sim.schedule(HEAL_AT, Event::Tick);
        let names: Vec<String> = sim.nodes.keys().cloned().collect();
        for _ in 0..sim.rng.random_range(0..4) {
            let who = names[sim.rng.random_range(0..names.len())].clone();
            let at = Duration::from_millis(sim.rng.random_range(0..4000));
            let down = Duration::from_millis(sim.rng.random_range(0..1000));
            sim.schedule(at, Event::Crash { name: who, down });
        }
        Ok(sim)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == 60 {
            self.trace.pop_front();
        }
        let line = format!("{:>6}ms {line}", self.elapsed().as_millis());
        self.trace.push_back(line);
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    fn run(&mut self) -> Result<(), String> {
        let mut steps = 0u64;
        while self.elapsed() < END {
            steps += 1;
            if steps > 500_000 {
                return Err(format!(
                    "an event storm: {} events queued",
                    self.events.len()
                ));
            }
            let next_event = self.events.keys().next().map(|(at, _)| *at);
            let next_timer = self
                .nodes
                .values()
                .filter_map(|n| n.formation.as_ref()?.poll_timeout())
                .min();
            let Some(at) = [next_event, next_timer].into_iter().flatten().min() else {
                break;
            };
            self.now = self.now.max(at);
            if next_event == Some(at) {
                if let Some((_, event)) = self.events.pop_first() {
                    self.handle(event)?;
                }
            } else {
                let due: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| {
                        n.formation
                            .as_ref()
                            .and_then(Formation::poll_timeout)
                            .is_some_and(|t| t <= at)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in due {
                    if let Some(f) = self.formation(&name) {
                        f.handle_timeout(at);
                    }
                    self.flush(&name)?;
                }
            }
            self.check()?;
            self.maybe_wipe_after_formation();
        }
        self.check_end()
    }

    fn formation(&mut self, name: &str) -> Option<&mut Formation> {
        self.nodes.get_mut(name)?.formation.as_mut()
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver { to, hello } => {
                let now = self.now;
                if let Some(f) = self.formation(&to) {
                    f.handle_hello(now, hello);
                    self.flush(&to)?;
                }
            }
            Event::Start(name) => self.start(&name)?,
            Event::Tick => {
                if self.elapsed() + RETRY < END {
                    self.schedule(RETRY, Event::Tick);
                }
            }
            Event::Crash { name, down } => {
                let Some(node) = self.nodes.get_mut(&name) else {
                    return Ok(());
                };
                if node.formation.take().is_some() {
                    node.store = node.store.as_ref().map(MemStore::crash);
                    self.log(format!("{name} crashes"));
                    self.schedule(down, Event::Start(name));
                }
            }
            Event::Wipe(name) => {
                let mut fresh = MemStore::new(&mut self.rng);
                let Some(node) = self.nodes.get_mut(&name) else {
                    return Ok(());
                };
                let Some(old) = node.store.as_mut() else {
                    return Ok(());
                };
                std::mem::swap(old, &mut fresh);
                node.wiped_ids.push(fresh.acceptor_id());
                node.durable_root = None;
                let was_up = node.formation.take().is_some();
                self.log(format!("{name} is wiped (was up: {was_up})"));
                let after = Duration::from_millis(self.rng.random_range(0..500));
                self.schedule(after, Event::Start(name));
            }
            Event::Persisted { name, life } => {
                let now = self.now;
                let Some(node) = self.nodes.get_mut(&name) else {
                    return Ok(());
                };
                if node.life != life || node.formation.is_none() {
                    return Ok(()); // it crashed before the fsync finished
                }
                let Some(FormationState::Persisting(root)) =
                    node.formation.as_ref().map(Formation::state).cloned()
                else {
                    return Err(format!("{name}: persisted but not persisting"));
                };
                let store = node.store.as_mut().ok_or("a client persisted a root")?;
                store.set_root(&root).map_err(|e| e.to_string())?;
                node.durable_root = Some(root.clone());
                let created = node.creating.take() == Some(root.clone());
                if let Some(f) = node.formation.as_mut() {
                    f.handle_persisted(now).map_err(|e| e.to_string())?;
                }
                self.log(format!("{name} persisted {root}"));
                if created {
                    self.created(&name, root)?;
                }
                self.flush(&name)?;
            }
        }
        Ok(())
    }

    fn start(&mut self, name: &str) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let now = self.now;
        let node = self.nodes.get_mut(name).ok_or("unknown node")?;
        if node.formation.is_some() {
            return Ok(());
        }
        let stored_root = match &node.store {
            Some(store) => store.root().map_err(|e| e.to_string())?,
            None => None,
        };
        if stored_root != node.durable_root {
            return Err(format!("{name}: the store lost or invented its root"));
        }
        let config = FormationConfig {
            name: name.to_owned(),
            voters: node.voters.clone(),
            acceptor_id: node.store.as_ref().map(AcceptorStore::acceptor_id),
            stored_root,
            retry: RETRY,
            seed,
        };
        node.formation = Some(Formation::new(config, now).map_err(|e| e.to_string())?);
        node.life += 1;
        node.in_force = None;
        node.created_seen = 0;
        node.creating = None;
        self.log(format!("{name} starts"));
        self.flush(name)
    }

    fn flush(&mut self, name: &str) -> Result<(), String> {
        loop {
            let Some(node) = self.nodes.get_mut(name) else {
                return Ok(());
            };
            let Some(f) = node.formation.as_mut() else {
                return Ok(());
            };
            let Some(out) = f.poll_output() else {
                return Ok(());
            };
            let state = f.state().clone();
            let created = f.stats().roots_created;
            let is_creation = created > node.created_seen;
            node.created_seen = created;
            let life = node.life;
            match out {
                FormationOutput::Send { to, hello } => self.send(to, hello),
                FormationOutput::Persist(root) => {
                    if is_creation {
                        self.creating(name, &root)?;
                        if let Some(node) = self.nodes.get_mut(name) {
                            node.creating = Some(root.clone());
                        }
                    }
                    let fsync = Duration::from_millis(self.rng.random_range(0..10));
                    let name = name.to_owned();
                    self.schedule(fsync, Event::Persisted { name, life });
                }
                FormationOutput::RootInForce(root) => {
                    if node.in_force.replace(root.clone()).is_some() {
                        return Err(format!("{name}: RootInForce twice in one life"));
                    }
                    let listed = match &state {
                        FormationState::Voter(r)
                        | FormationState::NonVoter(r)
                        | FormationState::NotAVoter { root: r, .. } => Some(r),
                        _ => None,
                    };
                    if listed != Some(&root) {
                        return Err(format!("{name}: RootInForce but {state:?}"));
                    }
                    self.log(format!("{name} in force ({state:?})"));
                }
                FormationOutput::ConfigMismatch { peer, reason } => {
                    self.log(format!("{name} mismatch {peer:?}: {reason}"));
                }
                FormationOutput::RootConflict { peer, theirs } => {
                    return Err(format!("{name}: a root conflict with {peer}: {theirs}"));
                }
            }
        }
    }

    fn send(&mut self, to: String, hello: Hello) {
        let healed = self.elapsed() >= HEAL_AT;
        let (loss, dup) = if healed {
            (0.0, 0.0)
        } else {
            (self.loss, self.dup)
        };
        let copies = if self.rng.random_bool(dup) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.random_bool(loss) {
                continue;
            }
            // Now and then a straggler, held back for up to two seconds: old news from an
            // earlier life of its sender.
            let max = if self.rng.random_bool(0.05) {
                2000
            } else {
                self.max_delay_ms
            };
            let delay = Duration::from_millis(self.rng.random_range(1..=max));
            let event = Event::Deliver {
                to: to.clone(),
                hello: hello.clone(),
            };
            self.schedule(delay, event);
        }
    }

    /// Every root held now: in force on a node that is up, or in a store.
    fn held_roots(&self) -> Vec<(String, RootRecord)> {
        let mut held = Vec::new();
        for (name, node) in &self.nodes {
            if let Some(r) = node.formation.as_ref().and_then(Formation::root_in_force) {
                held.push((name.clone(), r.clone()));
            }
            if let Some(r) = &node.durable_root {
                held.push((format!("{name}'s store"), r.clone()));
            }
        }
        held
    }

    /// Invariant 1, when the creator decides: only the creator, and nobody holds a root.
    fn creating(&mut self, name: &str, root: &RootRecord) -> Result<(), String> {
        self.log(format!("{name} creates {root}"));
        if name != self.voter_names[0] {
            return Err(format!("{name} created a root but is not the creator"));
        }
        if let Some((holder, r)) = self.held_roots().first() {
            return Err(format!("{name} created {root} while {holder} holds {r}"));
        }
        Ok(())
    }

    /// Invariant 1, once the created root is durable (a creation that a crash beat to the
    /// fsync left no trace): a second root only after the creator was wiped.
    fn created(&mut self, name: &str, root: RootRecord) -> Result<(), String> {
        if self.created.contains(&root) {
            return Ok(());
        }
        self.created.push(root);
        if self.created.len() > 1 && !self.wipe_creator_after_create {
            return Err("a second root without a wiped creator".to_owned());
        }
        if self.wipe_creator_after_create && self.created.len() == 1 {
            let after = Duration::from_millis(self.rng.random_range(0..200));
            self.schedule(after, Event::Wipe(name.to_owned()));
        }
        Ok(())
    }

    /// Invariants 2, 3 and 4, after every event.
    fn check(&self) -> Result<(), String> {
        let held = self.held_roots();
        if let Some((first, r)) = held.first() {
            if let Some((other, r2)) = held.iter().find(|(_, r2)| r2 != r) {
                return Err(format!("two roots: {first} holds {r}, {other} holds {r2}"));
            }
        }
        for (holder, _) in &held {
            let name = holder.trim_end_matches("'s store");
            if !self.nodes[name].correct {
                return Err(format!("misconfigured {holder} holds a root"));
            }
        }
        for (name, node) in &self.nodes {
            let Some(f) = &node.formation else { continue };
            if !f.is_acceptor() {
                continue;
            }
            let id = node.store.as_ref().map(AcceptorStore::acceptor_id);
            let listed = f.root_in_force().and_then(|r| r.acceptor_of(name));
            if id.is_none() || listed.map(|l| l.0) != id {
                return Err(format!(
                    "{name} is an acceptor as {listed:?} but has {id:?}"
                ));
            }
            if id.is_some_and(|id| node.wiped_ids.contains(&id)) {
                return Err(format!("{name} votes under a wiped id"));
            }
        }
        Ok(())
    }

    fn all_correct_in_force(&self) -> bool {
        self.nodes.values().filter(|n| n.correct).all(|n| {
            n.formation
                .as_ref()
                .and_then(Formation::root_in_force)
                .is_some()
        })
    }

    /// Once formed and healed, wipe one voter (and restart it).
    fn maybe_wipe_after_formation(&mut self) {
        if !self.wipe_after_formation
            || self.formed_once
            || self.elapsed() < HEAL_AT
            || !self.all_correct_in_force()
        {
            return;
        }
        self.formed_once = true;
        let who = self.voter_names[self.rng.random_range(0..self.voter_names.len())].clone();
        if let Some(node) = self.nodes.get_mut(&who) {
            node.wiped_after_formation = true;
        }
        self.schedule(Duration::ZERO, Event::Wipe(who));
    }

    fn check_end(&self) -> Result<(), String> {
        let held = self.held_roots();
        if self.misconfig == Misconfig::Voter {
            if let Some((holder, r)) = held.first() {
                return Err(format!(
                    "a root formed despite a misconfigured voter: {holder} {r}"
                ));
            }
            let creator = &self.nodes[&self.voter_names[0]];
            return match creator.formation.as_ref().map(Formation::state) {
                Some(FormationState::ConfigMismatch { .. }) => Ok(()),
                other => Err(format!("the creator did not refuse: {other:?}")),
            };
        }
        for (name, node) in &self.nodes {
            let Some(f) = &node.formation else {
                return Err(format!("{name} is down at the end"));
            };
            if !node.correct {
                if !matches!(f.state(), FormationState::ConfigMismatch { .. }) {
                    return Err(format!("misconfigured {name} ends {:?}", f.state()));
                }
                continue;
            }
            let Some(root) = f.root_in_force() else {
                return Err(format!("{name} has no root at the end: {:?}", f.state()));
            };
            let id = node.store.as_ref().map(AcceptorStore::acceptor_id);
            let listed = root.acceptor_of(name).map(|l| l.0);
            let expected_acceptor = id.is_some() && id == listed;
            if f.is_acceptor() != expected_acceptor {
                return Err(format!(
                    "{name}: acceptor {} but {id:?} vs {listed:?}",
                    f.is_acceptor()
                ));
            }
            if node.wiped_after_formation {
                match f.state() {
                    FormationState::NotAVoter { reason, .. } if reason.starts_with("wiped:") => {}
                    other => return Err(format!("{name} was wiped but is {other:?}")),
                }
            }
        }
        if self.wipe_after_formation && !self.formed_once {
            return Err("never formed, so never wiped a voter".to_owned());
        }
        Ok(())
    }
}

/// What a run went through, to show that the seeds cover the interesting cases.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    /// The creator was wiped before anyone took its root, and formed another.
    second_root: u64,
    /// The creator was wiped after someone took its root: it came back as a non-voter.
    creator_root_survived: u64,
    /// A voter was wiped after formation.
    wiped_after_formation: u64,
    /// An outsider with another configuration was refused.
    outsider: u64,
    /// A voter with another configuration stopped formation.
    misconfigured_voter: u64,
}

impl Coverage {
    fn add(&mut self, o: Self) {
        self.second_root += o.second_root;
        self.creator_root_survived += o.creator_root_survived;
        self.wiped_after_formation += o.wiped_after_formation;
        self.outsider += o.outsider;
        self.misconfigured_voter += o.misconfigured_voter;
    }
}

fn run_seed(seed: u64) -> Result<Coverage, String> {
    let mut sim = Sim::new(seed)?;
    let result = sim.run();
    let creator_wiped = sim.wipe_creator_after_create && !sim.created.is_empty();
    let coverage = Coverage {
        second_root: u64::from(sim.created.len() > 1),
        creator_root_survived: u64::from(creator_wiped && sim.created.len() == 1),
        wiped_after_formation: u64::from(sim.formed_once),
        outsider: u64::from(sim.misconfig == Misconfig::Outsider),
        misconfigured_voter: u64::from(sim.misconfig == Misconfig::Voter),
    };
    result.map(|()| coverage).map_err(|e| {
        let trace: Vec<String> = sim.trace.iter().cloned().collect();
        let nodes: Vec<String> = sim
            .nodes
            .iter()
            .map(|(name, n)| match &n.formation {
                Some(f) => format!("{name}: {:?} {:?}", f.state(), f.stats()),
                None => format!("{name}: down"),
            })
            .collect();
        format!(
            "{e}\n  scenario: {} voters, {:?}, loss {:.2}, dup {:.2}, delay <= {} ms, wipe creator {}, wipe after {}\n  at {:?}:\n    {}\n  last events:\n    {}",
            sim.voter_names.len(),
            sim.misconfig,
            sim.loss,
            sim.dup,
            sim.max_delay_ms,
            sim.wipe_creator_after_create,
            sim.wipe_after_formation,
            sim.elapsed(),
            nodes.join("\n    "),
            trace.join("\n    ")
        )
    })
}

#[test]
fn formation_keeps_one_root_under_loss_reordering_crashes_wipes_and_mismatched_configs() {
    let runs = for_each_seed(
        sim_test!(
            "formation_keeps_one_root_under_loss_reordering_crashes_wipes_and_mismatched_configs"
        ),
        SEEDS,
        run_seed,
    );
    let mut coverage = Coverage::default();
    for (_, c) in &runs {
        coverage.add(*c);
    }
    println!("{} seeds: {coverage:?}", runs.len());
    if runs.len() as u64 >= SEEDS {
        let c = coverage;
        assert!(
            c.second_root > 0
                && c.creator_root_survived > 0
                && c.wiped_after_formation > 0
                && c.outsider > 0
                && c.misconfigured_voter > 0,
            "the seeds miss a case: {c:?}"
        );
    }
}

#[test]
fn the_checker_reports_two_roots_held_at_once() {
    // The checker is not vacuous: two voters holding different roots (what a formation
    // that adopts stale roots ends in) is reported.
    let mut sim = Sim::new(0).expect("scenario");
    let (a, b) = (sim.voter_names[0].clone(), sim.voter_names[1].clone());
    let root = |id: u64| RootRecord {
        epoch: ROOT_EPOCH,
        quorums: None,
        pending: None,
        voters: sim
            .voter_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), id + i as u64))
            .collect(),
    };
    let (r1, r2) = (root(10), root(20));
    sim.nodes.get_mut(&a).expect("voter").durable_root = Some(r1);
    assert!(sim.check().is_ok());
    sim.nodes.get_mut(&b).expect("voter").durable_root = Some(r2);
    let err = sim.check().expect_err("two roots");
    assert!(err.starts_with("two roots"), "{err}");
}
