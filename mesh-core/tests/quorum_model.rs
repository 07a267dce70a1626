//! Model check of the CASPaxos register (`mesh_core::quorum`) with stateright.
//!
//! The model runs the *real* `Acceptor` and `Proposer` state machines: 3 acceptors, 2
//! proposers, one key. The network is an unordered set of packets: any packet may be
//! delivered (and stays, so it may be delivered again: duplication and reordering) or
//! dropped (loss). Acceptor outputs wait in an un-synced queue until a `Sync` step (a
//! group commit: persist everything, then release the replies); a crash reverts an
//! acceptor to its durable state and drops the queue, i.e. loses un-fsynced state.
//! Proposers may time out at any moment (back off, retry from phase 1) and may crash
//! (their in-flight op stays indeterminate; they come back with a new incarnation).
//! The 1-RTT cache is in play: each proposer runs a write then a read on the same key.
//!
//! Checked: linearizability (stateright's `LinearizabilityTester` over a register), one
//! value per ballot, no ballot used by two lives (incarnations) of a proposer, durable
//! promises only grow, accepted <= promised. Depths are stateright's (the initial state
//! is depth 1).
//! Negative controls: quorums of one acceptor, and a shell that replies before fsync,
//! must both be caught.

use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Ballot, CasMismatch, NodeId, Outcome, Proposer,
    ProposerConfig, ProposerOutput, RegisterChange, Reply, Request, RequestId, Slot,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::util::HashableHashSet;
use stateright::{Checker, HasDiscoveries, Model, Property, UniformChooser};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

type Val = u8;
type Ch = RegisterChange<Val>;
type S = Slot<Val, CasMismatch>;
type P = Proposer<u8, Val, Ch>;
type A = Acceptor<u8, S>;
const KEY: u8 = 0;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    Req(Request<u8, S>),
    Rep(Reply<u8, S>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Packet {
    from: NodeId,
    to: NodeId,
    msg: Msg,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AccNode {
    live: A,
    durable: BTreeMap<u8, AcceptorState<S>>,
    unsynced: Vec<AcceptorOutput<u8, S>>,
}

#[derive(Clone, Debug, PartialEq, Hash)]
struct PropNode {
    p: P,
    now: Instant,
    incarnation: u64,
    /// Ops still to invoke (next first).
    script: Vec<RegisterOp<Val>>,
    /// The op in flight, if any.
    pending: Option<RegisterOp<Val>>,
}

#[derive(Clone, Debug, PartialEq, Hash)]
struct State {
    acceptors: Vec<AccNode>,
    proposers: Vec<PropNode>,
    network: HashableHashSet<Packet>,
    history: LinearizabilityTester<usize, Register<Val>>,
    crashes: usize,
    timeouts: usize,
    /// Ghost: every (ballot, value) ever sent in an Accept.
    sent: BTreeMap<Ballot, S>,
    /// Ghost: which proposer life (index, incarnation) first used each ballot.
    minted: BTreeMap<Ballot, (usize, u64)>,
    /// Ghost: broken Paxos invariants, by name.
    violations: Vec<&'static str>,
    /// Ghost: a change used the 1-RTT cache.
    cache_used: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Invoke(usize),
    Deliver(Packet),
    Drop(Packet),
    Sync(usize),
    CrashAcceptor(usize),
    CrashProposer(usize),
    Timeout(usize),
}

#[derive(Clone)]
struct RegisterModel {
    base: Instant,
    /// Voter set of each proposer (normally all three acceptors).
    voters: Vec<Vec<NodeId>>,
    scripts: Vec<Vec<RegisterOp<Val>>>,
    max_crashes: usize,
    /// How many proposer timeouts (at arbitrary moments) a run may contain.
    max_timeouts: usize,
    /// Whether packets may be dropped. For safety a dropped packet is the same as one
    /// never delivered (no packet is ever forced to arrive), so the exhaustive check
    /// leaves drops out to save states; the random walks keep them.
    lossy: bool,
    proposer_crashes: bool,
    /// Negative control: the shell releases replies before the fsync.
    reply_before_fsync: bool,
    /// Start from this state instead of the empty cluster.
    init: Option<State>,
}

const ACCEPTORS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn proposer_id(i: usize) -> NodeId {
    NodeId(10 + i as u64)
}

fn config() -> ProposerConfig {
    ProposerConfig {
        attempt_timeout: Duration::from_secs(1),
        // Ops never time out in the model: only crashes leave them indeterminate.
        op_timeout: Duration::from_secs(1 << 30),
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(2),
    }
}

impl RegisterModel {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            voters: vec![ACCEPTORS.to_vec(), ACCEPTORS.to_vec()],
            scripts: vec![
                vec![RegisterOp::Write(1), RegisterOp::Read],
                vec![RegisterOp::Write(2)],
            ],
            max_crashes: 1,
            max_timeouts: 1,
            lossy: false,
            proposer_crashes: true,
            reply_before_fsync: false,
            init: None,
        }
    }

    fn new_proposer(&self, i: usize, incarnation: u64) -> P {
        P::new(
            proposer_id(i),
            incarnation,
            1,
            self.voters[i].iter().copied(),
            config(),
        )
    }

    fn acc_index(id: NodeId) -> Option<usize> {
        ACCEPTORS.iter().position(|a| *a == id)
    }

    fn prop_index(&self, id: NodeId) -> Option<usize> {
        (0..self.scripts.len()).find(|i| proposer_id(*i) == id)
    }

    /// Move a proposer's outputs into the network and the history.
    fn drain_proposer(&self, s: &mut State, i: usize) {
        let from = proposer_id(i);
        while let Some(out) = s.proposers[i].p.poll_output() {
            match out {
                ProposerOutput::Send(env) => {
                    let life = (i, s.proposers[i].incarnation);
                    let used = match &env.msg {
                        Request::Prepare { ballot, .. } | Request::Accept { ballot, .. } => *ballot,
                    };
                    if *s.minted.entry(used).or_insert(life) != life {
                        s.violations.push("a ballot reused across restarts");
                    }
                    if let Request::Accept { ballot, value, .. } = &env.msg {
                        match s.sent.get(ballot) {
                            Some(v) if v != value => s.violations.push("two values for one ballot"),
                            Some(_) => {}
                            None => {
                                s.sent.insert(*ballot, value.clone());
                            }
                        }
                    }
                    s.network.insert(Packet {
                        from,
                        to: env.to,
                        msg: Msg::Req(env.msg),
                    });
                }
                ProposerOutput::Complete(c) => {
                    let Some(op) = s.proposers[i].pending.take() else {
                        s.violations.push("completion without an op");
                        continue;
                    };
                    let ret = match (op, c.result) {
                        (RegisterOp::Write(_), Ok(Outcome::Applied { .. })) => RegisterRet::WriteOk,
                        (RegisterOp::Read, Ok(Outcome::Applied { value: v, .. })) => {
                            RegisterRet::ReadOk(v.unwrap_or(0))
                        }
                        _ => {
                            s.violations.push("unexpected outcome");
                            continue;
                        }
                    };
                    if s.history.on_return(i, ret).is_err() {
                        s.violations.push("history rejected a return");
                    }
                }
            }
        }
        if s.proposers[i].p.stats().cache_hits > 0 {
            s.cache_used = true;
        }
    }

    fn drain_acceptor(&self, s: &mut State, a: usize) {
        while let Some(out) = s.acceptors[a].live.poll_output() {
            if self.reply_before_fsync {
                let then = match &out {
                    AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then) => {
                        then.clone()
                    }
                };
                s.network.insert(Packet {
                    from: ACCEPTORS[a],
                    to: then.to,
                    msg: Msg::Rep(then.msg),
                });
                if let AcceptorOutput::Persist { key, state, .. } = out {
                    s.acceptors[a].unsynced.push(AcceptorOutput::Persist {
                        key,
                        state,
                        then: mesh_core::quorum::Envelope {
                            to: NodeId(0),
                            msg: Reply::WrongEpoch {
                                key: KEY,
                                ballot: Ballot::ZERO,
                                epoch: 0,
                            },
                        },
                    });
                }
            } else {
                s.acceptors[a].unsynced.push(out);
            }
        }
    }

    fn check_acceptor(s: &mut State, a: usize) {
        let live = s.acceptors[a].live.state(&KEY).cloned();
        for st in live.iter().chain(s.acceptors[a].durable.get(&KEY)) {
            if st.accepted.as_ref().is_some_and(|(b, _)| *b > st.promised) {
                s.violations.push("accepted above promised");
            }
        }
    }
}

impl Model for RegisterModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        if let Some(init) = &self.init {
            return vec![init.clone()];
        }
        vec![State {
            acceptors: ACCEPTORS
                .iter()
                .map(|id| AccNode {
                    live: A::new(*id, 1),
                    durable: BTreeMap::new(),
                    unsynced: Vec::new(),
                })
                .collect(),
            proposers: (0..self.scripts.len())
                .map(|i| PropNode {
                    p: self.new_proposer(i, 1),
                    now: self.base,
                    incarnation: 1,
                    script: self.scripts[i].iter().rev().cloned().collect(),
                    pending: None,
                })
                .collect(),
            network: HashableHashSet::default(),
            history: LinearizabilityTester::new(Register(0)),
            crashes: 0,
            timeouts: 0,
            sent: BTreeMap::new(),
            minted: BTreeMap::new(),
            violations: Vec::new(),
            cache_used: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, p) in s.proposers.iter().enumerate() {
            if p.pending.is_none() && !p.script.is_empty() {
                actions.push(Action::Invoke(i));
            }
            if s.timeouts < self.max_timeouts && p.p.poll_timeout().is_some() {
                actions.push(Action::Timeout(i));
            }
            if self.proposer_crashes && s.crashes < self.max_crashes && p.pending.is_some() {
                actions.push(Action::CrashProposer(i));
            }
        }
        for (a, acc) in s.acceptors.iter().enumerate() {
            if !acc.unsynced.is_empty() {
                actions.push(Action::Sync(a));
                if s.crashes < self.max_crashes {
                    actions.push(Action::CrashAcceptor(a));
                }
            }
        }
        // Deterministic order (a HashSet's iteration order is seeded per process), so
        // that stateright can replay counterexample paths by action index.
        let mut packets: Vec<(u64, &Packet)> = s
            .network
            .iter()
            .map(|p| {
                let mut h = std::hash::DefaultHasher::new();
                p.hash(&mut h);
                (h.finish(), p)
            })
            .collect();
        packets.sort_by_key(|(h, _)| *h);
        for (_, pkt) in packets {
            actions.push(Action::Deliver(pkt.clone()));
            if self.lossy {
                actions.push(Action::Drop(pkt.clone()));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let mut rng = StdRng::seed_from_u64(0);
        match action {
            Action::Invoke(i) => {
                let op = s.proposers[i].script.pop()?;
                let seq = (self.scripts[i].len() - s.proposers[i].script.len()) as u64;
                let (change, request) = match op {
                    RegisterOp::Write(v) => (
                        Ch::Write(v),
                        Some(RequestId {
                            client: i as u64,
                            seq,
                        }),
                    ),
                    RegisterOp::Read => (Ch::Read, None),
                };
                if s.history.on_invoke(i, op.clone()).is_err() {
                    s.violations.push("history rejected an invoke");
                }
                s.proposers[i].pending = Some(op);
                let now = s.proposers[i].now;
                s.proposers[i].p.propose(now, KEY, request, change);
                self.drain_proposer(&mut s, i);
            }
            Action::Timeout(i) => {
                let t = s.proposers[i].p.poll_timeout()?;
                s.timeouts += 1;
                let now = s.proposers[i].now.max(t);
                s.proposers[i].now = now;
                s.proposers[i].p.handle_timeout(now, &mut rng);
                self.drain_proposer(&mut s, i);
            }
            Action::CrashProposer(i) => {
                s.crashes += 1;
                let node = &mut s.proposers[i];
                node.incarnation += 1;
                node.p = self.new_proposer(i, node.incarnation);
                // Its op never returns (indeterminate); the client thread stops there.
                node.script.clear();
            }
            Action::Sync(a) => {
                let outs = std::mem::take(&mut s.acceptors[a].unsynced);
                for out in outs {
                    let then = match out {
                        AcceptorOutput::Persist { key, state, then } => {
                            let old = s.acceptors[a].durable.get(&key).map(|st| st.promised);
                            if old.is_some_and(|o| o > state.promised) {
                                s.violations.push("durable promise went down");
                            }
                            s.acceptors[a].durable.insert(key, state);
                            then
                        }
                        AcceptorOutput::Send(then) => then,
                    };
                    if !self.reply_before_fsync {
                        s.network.insert(Packet {
                            from: ACCEPTORS[a],
                            to: then.to,
                            msg: Msg::Rep(then.msg),
                        });
                    }
                }
                Self::check_acceptor(&mut s, a);
            }
            Action::CrashAcceptor(a) => {
                s.crashes += 1;
                let node = &mut s.acceptors[a];
                node.unsynced.clear();
                node.live = A::restore(ACCEPTORS[a], 1, node.durable.clone());
            }
            Action::Drop(pkt) => {
                s.network.remove(&pkt);
            }
            Action::Deliver(pkt) => match pkt.msg {
                Msg::Req(req) => {
                    let a = Self::acc_index(pkt.to)?;
                    s.acceptors[a].live.handle_request(pkt.from, req);
                    self.drain_acceptor(&mut s, a);
                    Self::check_acceptor(&mut s, a);
                }
                Msg::Rep(rep) => {
                    let i = self.prop_index(pkt.to)?;
                    let now = s.proposers[i].now;
                    s.proposers[i].p.handle_reply(now, pkt.from, rep, &mut rng);
                    self.drain_proposer(&mut s, i);
                }
            },
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("linearizable", |_, s: &State| {
                s.history.serialized_history().is_some()
            }),
            Property::always("paxos invariants", |_, s: &State| s.violations.is_empty()),
            Property::sometimes("a change used the 1-RTT cache", |_, s: &State| s.cache_used),
            Property::sometimes("every op completed", |_, s: &State| {
                s.proposers
                    .iter()
                    .all(|p| p.pending.is_none() && p.script.is_empty())
                    && s.history.len() == 3
            }),
        ]
    }
}

fn depth() -> usize {
    std::env::var("MESH_MODEL_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(12)
}

/// Exhaustive: every interleaving up to a bounded depth (deliveries in any order and any
/// number of times, group commits, one acceptor crash losing its un-synced state).
#[test]
fn every_interleaving_up_to_the_depth_bound_is_linearizable() {
    let started = Instant::now();
    let depth = depth();
    let mut model = RegisterModel::new();
    model.max_timeouts = 0;
    model.proposer_crashes = false;
    // BFS, not DFS: stateright's DFS marks a state visited even when it meets it beyond
    // the depth bound, and would then skip it when met again at a shallower depth.
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(depth)
        .spawn_bfs()
        .join();
    println!(
        "quorum model (exhaustive): {} states ({} unique), depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
}

/// Drive proposer `p`'s current op to completion along one fault-free path (each packet
/// to or from it delivered once, commits right away).
fn run_alone(model: &RegisterModel, mut s: State, p: usize, via: &[NodeId], sync: bool) -> State {
    let me = proposer_id(p);
    let mut delivered = Vec::new();
    for _ in 0..100 {
        if s.proposers[p].pending.is_none() {
            break;
        }
        let mut acts = Vec::new();
        model.actions(&s, &mut acts);
        let Some(act) = acts.into_iter().find(|a| match a {
            Action::Sync(_) => sync,
            Action::Deliver(pkt) => {
                !delivered.contains(pkt)
                    && ((pkt.from == me && via.contains(&pkt.to))
                        || (pkt.to == me && via.contains(&pkt.from)))
            }
            _ => false,
        }) else {
            break;
        };
        if let Action::Deliver(pkt) = &act {
            delivered.push(pkt.clone());
        }
        let Some(next) = model.next_state(&s, act) else {
            break;
        };
        s = next;
    }
    s
}

/// Exhaustive from a warm cache: proposer 0 has written (and holds the promise of its
/// next ballot); then its cached read (phase 2 only) races proposer 1's write, with an
/// acceptor crash, in every interleaving up to the depth bound.
#[test]
fn from_a_warm_cache_every_interleaving_is_linearizable() {
    let started = Instant::now();
    let mut model = RegisterModel::new();
    model.max_timeouts = 1;
    model.proposer_crashes = false;
    let mut s = model.init_states().remove(0);
    s = model.next_state(&s, Action::Invoke(0)).expect("invoke");
    s = run_alone(&model, s, 0, &ACCEPTORS, true);
    assert!(s.proposers[0].pending.is_none(), "the write completed");
    assert!(
        s.proposers[0].p.has_cached_promise(&KEY),
        "the cache is warm"
    );
    s.network = HashableHashSet::default();
    model.init = Some(s);
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(depth() - 2)
        .spawn_bfs()
        .join();
    println!(
        "quorum model (warm cache): {} states ({} unique), depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
    checker.assert_any_discovery("a change used the 1-RTT cache");
}

/// Random deep walks with every fault on: loss, duplication, reordering, timeouts at any
/// moment, acceptor and proposer crashes. Each walk runs to the end of all ops (or the
/// depth cap), so complete histories and the 1-RTT cache path are covered.
#[test]
fn random_deep_walks_with_every_fault_are_linearizable() {
    let started = Instant::now();
    let states: usize = std::env::var("MESH_MODEL_WALK_STATES")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(300_000);
    let mut model = RegisterModel::new();
    model.lossy = true;
    model.max_timeouts = 3;
    model.max_crashes = 2;
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(80)
        .target_state_count(states)
        .spawn_simulation(7, UniformChooser)
        .join();
    println!(
        "quorum model (random walks): {} states, max depth {}, {:.1?}",
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
}

/// Negative control: each proposer's "quorum" is one acceptor (different ones). The
/// checker must find a history with no linearization.
#[test]
fn quorums_of_one_acceptor_are_caught_by_the_checker() {
    let started = Instant::now();
    let mut model = RegisterModel::new();
    model.voters = vec![vec![NodeId(1)], vec![NodeId(2)]];
    model.scripts = vec![vec![RegisterOp::Write(1)], vec![RegisterOp::Read]];
    model.max_crashes = 0;
    model.max_timeouts = 0;
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(16)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "negative control (quorum of one): {} states, {:.1?}, violation found: {}",
        checker.state_count(),
        started.elapsed(),
        checker.discovery("linearizable").is_some()
    );
    let path = checker.assert_any_discovery("linearizable");
    println!("counterexample: {:?}", path.into_actions());
}

/// Negative control: a shell that sends replies before the fsync must be caught. From
/// the state where proposer 0's write was acknowledged by acceptors 1 and 2 (nothing
/// fsynced yet), one acceptor crash and proposer 1's read are explored exhaustively: the
/// crash of acceptor 1 makes the acknowledged write disappear for a read through {1, 3}.
#[test]
fn replying_before_fsync_is_caught_by_the_checker() {
    let started = Instant::now();
    let mut model = RegisterModel::new();
    model.reply_before_fsync = true;
    model.proposer_crashes = false;
    model.max_timeouts = 0;
    model.scripts = vec![vec![RegisterOp::Write(1)], vec![RegisterOp::Read]];
    let mut s = model.init_states().remove(0);
    s = model.next_state(&s, Action::Invoke(0)).expect("invoke");
    s = run_alone(&model, s, 0, &[NodeId(1), NodeId(2)], false);
    assert!(
        s.proposers[0].pending.is_none(),
        "the write was acknowledged"
    );
    s.network = HashableHashSet::default();
    model.init = Some(s);
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(13)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "negative control (reply before fsync): {} states, {:.1?}, violation found: {}",
        checker.state_count(),
        started.elapsed(),
        checker.discovery("linearizable").is_some()
    );
    let path = checker.assert_any_discovery("linearizable");
    println!("counterexample: {:?}", path.into_actions());
}
