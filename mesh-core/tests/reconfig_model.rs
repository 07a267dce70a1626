//! Model check of online voter changes (`mesh_core::quorum::reconfig`) with stateright.
//!
//! The model runs the *real* `Acceptor` and `Proposer` state machines and the real
//! planner (`reconfig::begin` / `advance`): acceptors 1..=N, client proposers running
//! register ops on one key, and a driver that hands out the change's roots one epoch at a
//! time. The driver follows the procedure's rules: a root of epoch `e+1` is handed out
//! only once epoch `e−1` is retired (R1, `reconfig::retired` over the acceptors that
//! durably hold a newer epoch); an add's rescan (a read, which writes the value back)
//! runs once the epoch before the change is retired, and the add's last root waits for
//! it (R2). Handing a root to an acceptor (`Install`) happens at any moment, in any
//! order, and is durable at once. A proposer refused with `WrongEpoch` learns the newer
//! root (as the shell would from a voter) and restarts under its rules.
//!
//! Faults, as in `quorum_model.rs`: the network is an unordered set (delivery in any
//! order, any number of times; loss in the random walks), acceptors group-commit and
//! crash back to their durable state (epoch included), proposers time out and crash.
//! Checked: linearizability of the client ops (stateright's `LinearizabilityTester`), one
//! value per ballot, no ballot in two proposer lives, durable promises only grow,
//! accepted <= promised.
//!
//! Negative controls the checker must catch: skipping the rescan, raising the prepare
//! rule before the accept rule, and acceptors obeying a proposer on an old epoch. Each is
//! set up by a short fault-free prefix (a write chosen by acceptors {1, 2} at epoch 1,
//! then the whole replace of voter 1 by voter 4), after which one client read is
//! explored exhaustively; the same prefix under the correct procedure is explored
//! exhaustively too and must stay clean.

use mesh_core::quorum::reconfig::{self, needs_rescan, retired};
use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Ballot, CasMismatch, NodeId, Outcome, Proposer,
    ProposerConfig, ProposerOutput, QuorumRule, Quorums, RegisterChange, Reply, Request, RequestId,
    RootRecord, Slot, VoterChange,
};
use rand::rngs::StdRng;
use rand::Rng;
use rand::SeedableRng;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::util::HashableHashSet;
use stateright::{Checker, Chooser, HasDiscoveries, Model, Property};
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
    /// The epoch of the root durably handed to it (0: none yet).
    epoch: u64,
    unsynced: Vec<AcceptorOutput<u8, S>>,
}

#[derive(Clone, Debug, PartialEq, Hash)]
struct PropNode {
    p: P,
    now: Instant,
    incarnation: u64,
    script: Vec<RegisterOp<Val>>,
    pending: Option<RegisterOp<Val>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Driver {
    /// The newest root handed out.
    epoch: u64,
    /// Whether the rescan of the newest root (if it needs one) completed.
    rescanned: bool,
    /// Whether a rescan read is in flight.
    rescanning: bool,
    /// Timeouts of the driver's proposer so far.
    timeouts: usize,
}

/// How many timeouts the driver's proposer may take in a run.
const DRIVER_TIMEOUTS: usize = 30;

#[derive(Clone, Debug, PartialEq, Hash)]
struct State {
    acceptors: Vec<AccNode>,
    /// The clients, then the driver's proposer (last).
    proposers: Vec<PropNode>,
    driver: Driver,
    network: HashableHashSet<Packet>,
    history: LinearizabilityTester<usize, Register<Val>>,
    crashes: usize,
    timeouts: usize,
    sent: BTreeMap<Ballot, S>,
    minted: BTreeMap<Ballot, (usize, u64)>,
    violations: Vec<&'static str>,
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
    /// Hand the newest root to acceptor `a` (durably).
    Install(usize),
    /// Hand out the next root of the change.
    NextRoot,
    /// Start the rescan of the newest root.
    Rescan,
}

#[derive(Clone)]
struct ReconfigModel {
    base: Instant,
    /// The roots, `roots[e - 1]` of epoch `e`.
    roots: Vec<RootRecord>,
    acceptors: usize,
    scripts: Vec<Vec<RegisterOp<Val>>>,
    max_crashes: usize,
    max_timeouts: usize,
    lossy: bool,
    proposer_crashes: bool,
    /// Whether a delivered packet leaves the network (no duplication). The random walks
    /// use it: stateright ends a walk at its first repeated state, which re-delivering a
    /// duplicate often makes, long before a whole change; the exhaustive runs keep
    /// duplicates.
    consume: bool,
    /// Negative control: the driver never rescans.
    skip_rescan: bool,
    /// Negative control: acceptors serve requests of any epoch.
    obey_old_epochs: bool,
    init: Option<State>,
}

fn acc_id(a: usize) -> NodeId {
    NodeId(a as u64 + 1)
}

fn proposer_id(i: usize) -> NodeId {
    NodeId(10 + i as u64)
}

fn config() -> ProposerConfig {
    ProposerConfig {
        attempt_timeout: Duration::from_secs(1),
        op_timeout: Duration::from_secs(1 << 30),
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(2),
    }
}

fn root3() -> RootRecord {
    RootRecord {
        epoch: 1,
        voters: vec![("n1".into(), 1), ("n2".into(), 2), ("n3".into(), 3)],
        quorums: None,
        pending: None,
    }
}

fn add(n: u64) -> VoterChange {
    VoterChange::Add {
        name: format!("n{n}"),
        acceptor: n,
    }
}

fn remove(n: u64) -> VoterChange {
    VoterChange::Remove {
        name: format!("n{n}"),
        acceptor: n,
    }
}

/// The roots of `changes` from three voters, by the real planner.
fn plan(changes: &[VoterChange]) -> Vec<RootRecord> {
    let mut roots = vec![root3()];
    for change in changes {
        let last = roots.last().cloned().expect("a root");
        let first = reconfig::begin(&last, change.clone()).expect("the change begins");
        let done = reconfig::advance(&first).expect("the change ends");
        roots.push(first);
        roots.push(done);
    }
    roots
}

/// Replace voter 1 by voter 4: 3 → 4 → 3.
fn replace_plan() -> Vec<RootRecord> {
    plan(&[add(4), remove(1)])
}

impl ReconfigModel {
    fn new(roots: Vec<RootRecord>) -> Self {
        let acceptors = roots
            .iter()
            .flat_map(|r| r.acceptor_ids())
            .map(|id| id.0 as usize)
            .max()
            .unwrap_or(3);
        Self {
            base: Instant::now(),
            roots,
            acceptors,
            scripts: vec![
                vec![RegisterOp::Write(1), RegisterOp::Read],
                vec![RegisterOp::Write(2)],
            ],
            max_crashes: 1,
            max_timeouts: 1,
            lossy: false,
            proposer_crashes: true,
            consume: false,
            skip_rescan: false,
            obey_old_epochs: false,
            init: None,
        }
    }

    fn root(&self, epoch: u64) -> &RootRecord {
        &self.roots[(epoch - 1) as usize]
    }

    fn driver_index(&self) -> usize {
        self.scripts.len()
    }

    fn new_proposer(&self, i: usize, incarnation: u64, epoch: u64) -> P {
        P::with_quorums(
            proposer_id(i),
            incarnation,
            epoch,
            self.root(epoch).quorums(),
            config(),
        )
    }

    /// R1 for the next root: the epoch before the newest is retired.
    fn previous_retired(&self, s: &State) -> bool {
        let cur = s.driver.epoch;
        if cur == 1 {
            return true;
        }
        let moved: Vec<NodeId> = (0..self.acceptors)
            .filter(|a| s.acceptors[*a].epoch >= cur)
            .map(acc_id)
            .collect();
        retired(&self.root(cur - 1).quorums(), &moved)
    }

    fn can_install(&self, s: &State, a: usize) -> bool {
        let cur = s.driver.epoch;
        let listed = |e: u64| e >= 1 && self.root(e).acceptor_ids().contains(&acc_id(a));
        s.acceptors[a].epoch < cur && (listed(cur) || listed(cur - 1))
    }

    fn rescan_due(&self, s: &State) -> bool {
        needs_rescan(self.root(s.driver.epoch)) && !self.skip_rescan && !s.driver.rescanned
    }

    fn change_done(&self, s: &State) -> bool {
        let last = self.roots.len() as u64;
        s.driver.epoch == last
            && self
                .root(last)
                .acceptor_ids()
                .iter()
                .all(|id| s.acceptors[(id.0 - 1) as usize].epoch == last)
    }

    fn drain_proposer(&self, s: &mut State, i: usize) {
        let from = proposer_id(i);
        loop {
            while let Some(out) = s.proposers[i].p.poll_output() {
                match out {
                    ProposerOutput::Send(env) => {
                        let life = (i, s.proposers[i].incarnation);
                        let used = match &env.msg {
                            Request::Prepare { ballot, .. } | Request::Accept { ballot, .. } => {
                                *ballot
                            }
                        };
                        if *s.minted.entry(used).or_insert(life) != life {
                            s.violations.push("a ballot reused across restarts");
                        }
                        if let Request::Accept { ballot, value, .. } = &env.msg {
                            match s.sent.get(ballot) {
                                Some(v) if v != value => {
                                    s.violations.push("two values for one ballot")
                                }
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
                        if i == self.driver_index() {
                            s.driver.rescanning = false;
                            s.driver.rescanned = matches!(c.result, Ok(Outcome::Applied { .. }))
                                && s.proposers[i].p.epoch() == s.driver.epoch;
                            continue;
                        }
                        let Some(op) = s.proposers[i].pending.take() else {
                            s.violations.push("completion without an op");
                            continue;
                        };
                        let ret = match (op, c.result) {
                            (RegisterOp::Write(_), Ok(Outcome::Applied { .. })) => {
                                RegisterRet::WriteOk
                            }
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
            // The shell learns a newer root from the voter that refused it.
            let Some(e) = s.proposers[i].p.newer_epoch() else {
                break;
            };
            let e = e.min(s.driver.epoch);
            if e <= s.proposers[i].p.epoch() {
                break;
            }
            let now = s.proposers[i].now;
            let quorums = self.root(e).quorums();
            s.proposers[i].p.set_root(now, e, quorums);
        }
    }

    fn drain_acceptor(s: &mut State, a: usize) {
        while let Some(out) = s.acceptors[a].live.poll_output() {
            s.acceptors[a].unsynced.push(out);
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

impl Model for ReconfigModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        if let Some(init) = &self.init {
            return vec![init.clone()];
        }
        let first = self.root(1).acceptor_ids();
        let acceptors = (0..self.acceptors)
            .map(|a| {
                let epoch = u64::from(first.contains(&acc_id(a)));
                AccNode {
                    live: A::new(acc_id(a), epoch),
                    durable: BTreeMap::new(),
                    epoch,
                    unsynced: Vec::new(),
                }
            })
            .collect();
        let mut proposers: Vec<PropNode> = (0..self.scripts.len())
            .map(|i| PropNode {
                p: self.new_proposer(i, 1, 1),
                now: self.base,
                incarnation: 1,
                script: self.scripts[i].iter().rev().cloned().collect(),
                pending: None,
            })
            .collect();
        proposers.push(PropNode {
            p: self.new_proposer(self.driver_index(), 1, 1),
            now: self.base,
            incarnation: 1,
            script: Vec::new(),
            pending: None,
        });
        vec![State {
            acceptors,
            proposers,
            driver: Driver {
                epoch: 1,
                rescanned: false,
                rescanning: false,
                timeouts: 0,
            },
            network: HashableHashSet::default(),
            history: LinearizabilityTester::new(Register(0)),
            crashes: 0,
            timeouts: 0,
            sent: BTreeMap::new(),
            minted: BTreeMap::new(),
            violations: Vec::new(),
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let d = self.driver_index();
        for (i, p) in s.proposers.iter().enumerate() {
            if i < d && p.pending.is_none() && !p.script.is_empty() {
                actions.push(Action::Invoke(i));
            }
            // The driver has its own budget of retries: an interrupted change must be able
            // to go on, whatever the clients' timeouts used up.
            let budget = if i == d {
                s.driver.timeouts < DRIVER_TIMEOUTS && self.max_timeouts > 0
            } else {
                s.timeouts < self.max_timeouts
            };
            if budget && p.p.poll_timeout().is_some() {
                actions.push(Action::Timeout(i));
            }
            let busy = if i < d {
                p.pending.is_some()
            } else {
                s.driver.rescanning
            };
            if self.proposer_crashes && s.crashes < self.max_crashes && busy {
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
            if self.can_install(s, a) {
                actions.push(Action::Install(a));
            }
        }
        let last = self.roots.len() as u64;
        if s.driver.epoch < last && self.previous_retired(s) && !self.rescan_due(s) {
            actions.push(Action::NextRoot);
        }
        if self.rescan_due(s) && !s.driver.rescanning && self.previous_retired(s) {
            actions.push(Action::Rescan);
        }
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
        let d = self.driver_index();
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
            Action::Rescan => {
                s.driver.rescanning = true;
                let now = s.proposers[d].now;
                s.proposers[d].p.propose(now, KEY, None, Ch::Read);
                self.drain_proposer(&mut s, d);
            }
            Action::NextRoot => {
                s.driver.epoch += 1;
                s.driver.rescanned = false;
                let e = s.driver.epoch;
                let now = s.proposers[d].now;
                s.proposers[d].p.set_root(now, e, self.root(e).quorums());
                self.drain_proposer(&mut s, d);
            }
            Action::Install(a) => {
                let e = s.driver.epoch;
                s.acceptors[a].epoch = e;
                s.acceptors[a].live.set_epoch(e);
            }
            Action::Timeout(i) => {
                let t = s.proposers[i].p.poll_timeout()?;
                if i == d {
                    s.driver.timeouts += 1;
                } else {
                    s.timeouts += 1;
                }
                let now = s.proposers[i].now.max(t);
                s.proposers[i].now = now;
                s.proposers[i].p.handle_timeout(now, &mut rng);
                self.drain_proposer(&mut s, i);
            }
            Action::CrashProposer(i) => {
                s.crashes += 1;
                let epoch = s.proposers[i].p.epoch();
                let node = &mut s.proposers[i];
                node.incarnation += 1;
                node.p = self.new_proposer(i, node.incarnation, epoch);
                node.script.clear();
                if i == d {
                    // The operator's agent died mid-rescan: the change resumes from the
                    // root (the rescan is due again).
                    s.driver.rescanning = false;
                }
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
                    s.network.insert(Packet {
                        from: acc_id(a),
                        to: then.to,
                        msg: Msg::Rep(then.msg),
                    });
                }
                Self::check_acceptor(&mut s, a);
            }
            Action::CrashAcceptor(a) => {
                s.crashes += 1;
                let node = &mut s.acceptors[a];
                node.unsynced.clear();
                node.live = A::restore(acc_id(a), node.epoch, node.durable.clone());
            }
            Action::Drop(pkt) => {
                s.network.remove(&pkt);
            }
            Action::Deliver(pkt) => {
                if self.consume {
                    s.network.remove(&pkt);
                }
                self.deliver(&mut s, pkt, &mut rng)?;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        self.props()
    }
}

impl ReconfigModel {
    fn deliver(&self, s: &mut State, pkt: Packet, rng: &mut StdRng) -> Option<()> {
        let d = self.driver_index();
        match pkt.msg {
            Msg::Req(mut req) => {
                let a = (pkt.to.0 as usize).checked_sub(1)?;
                if a >= self.acceptors {
                    return None;
                }
                if self.obey_old_epochs {
                    let mine = s.acceptors[a].live.epoch();
                    match &mut req {
                        Request::Prepare { epoch, .. } | Request::Accept { epoch, .. } => {
                            *epoch = mine;
                        }
                    }
                }
                s.acceptors[a].live.handle_request(pkt.from, req);
                Self::drain_acceptor(s, a);
                Self::check_acceptor(s, a);
            }
            Msg::Rep(rep) => {
                let i = (pkt.to.0 as usize).checked_sub(10)?;
                if i > d {
                    return None;
                }
                let now = s.proposers[i].now;
                s.proposers[i].p.handle_reply(now, pkt.from, rep, rng);
                self.drain_proposer(s, i);
            }
        }
        Some(())
    }

    fn props(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("linearizable", |_, s: &State| {
                s.history.serialized_history().is_some()
            }),
            Property::always("paxos invariants", |_, s: &State| s.violations.is_empty()),
            Property::sometimes("the change completed", |m: &Self, s: &State| {
                m.change_done(s)
            }),
            Property::sometimes(
                "every op completed after the change",
                |m: &Self, s: &State| {
                    m.change_done(s)
                        && s.proposers[..m.driver_index()]
                            .iter()
                            .all(|p| p.pending.is_none() && p.script.is_empty())
                        && s.history.len() == m.scripts.iter().map(Vec::len).sum::<usize>()
                },
            ),
        ]
    }
}

/// Apply the first enabled action `pick` accepts (a timeout only if nothing else),
/// repeatedly, until `done` or nothing is picked (a fault-free, deterministic prefix).
fn drive(
    model: &ReconfigModel,
    mut s: State,
    pick: impl Fn(&State, &Action) -> bool,
    done: impl Fn(&State) -> bool,
) -> State {
    for _ in 0..500 {
        if done(&s) {
            break;
        }
        let mut acts = Vec::new();
        model.actions(&s, &mut acts);
        // A timeout only when nothing else is picked (a round that truly failed).
        let (timeouts, others): (Vec<Action>, Vec<Action>) = acts
            .into_iter()
            .filter(|a| pick(&s, a))
            .partition(|a| matches!(a, Action::Timeout(_)));
        let Some(act) = others.into_iter().chain(timeouts).next() else {
            break;
        };
        let delivered = match &act {
            Action::Deliver(pkt) => Some(pkt.clone()),
            _ => None,
        };
        let Some(next) = model.next_state(&s, act) else {
            break;
        };
        s = next;
        // Each packet once: the prefix has no duplicates.
        if let Some(pkt) = delivered {
            s.network.remove(&pkt);
        }
    }
    s
}

/// Whether `pkt` travels between a proposer and an acceptor in `via`; accepts only to
/// `accept_via`.
fn over(pkt: &Packet, via: &[u64], accept_via: &[u64]) -> bool {
    match &pkt.msg {
        Msg::Req(Request::Accept { .. }) => accept_via.contains(&pkt.to.0),
        Msg::Req(_) => via.contains(&pkt.to.0),
        Msg::Rep(_) => via.contains(&pkt.from.0),
    }
}

/// The shared prefix: client 0's write of 1 is chosen by acceptors {1, 2} at epoch 1,
/// then the whole change runs fault-free (the rescan, if any, through {1, 2, 4} with its
/// accepts to `rescan_accepts`), every root reaching every acceptor it lists. Client 1
/// then holds the last root, and its read is explored exhaustively from there.
fn prefix(model: &mut ReconfigModel, rescan_accepts: &[u64]) -> State {
    model.scripts = vec![vec![RegisterOp::Write(1)], vec![RegisterOp::Read]];
    model.max_crashes = 0;
    model.max_timeouts = usize::MAX;
    model.proposer_crashes = false;
    let mut s = model.init_states().remove(0);
    s = model.next_state(&s, Action::Invoke(0)).expect("invoke");
    s = drive(
        model,
        s,
        |_, a| match a {
            Action::Sync(_) => true,
            Action::Deliver(pkt) => over(pkt, &[1, 2], &[1, 2]),
            _ => false,
        },
        |s| s.proposers[0].pending.is_none(),
    );
    assert!(s.proposers[0].pending.is_none(), "the write completed");
    s.network = HashableHashSet::default();
    let d = model.driver_index();
    s = drive(
        model,
        s,
        |_, a| match a {
            Action::Install(_) | Action::NextRoot | Action::Rescan | Action::Sync(_) => true,
            Action::Timeout(i) => *i == d,
            Action::Deliver(pkt) => {
                (pkt.from == proposer_id(d) || pkt.to == proposer_id(d))
                    && over(pkt, &[1, 2, 4], rescan_accepts)
            }
            _ => false,
        },
        |s| model.change_done(s),
    );
    assert!(
        model.change_done(&s),
        "the change completed: {:?}",
        s.driver
    );
    s.network = HashableHashSet::default();
    model.max_timeouts = 0;
    s.timeouts = 0;
    let last = model.roots.len() as u64;
    let now = s.proposers[1].now;
    s.proposers[1]
        .p
        .set_root(now, last, model.root(last).quorums());
    s
}

/// Client 1 invokes its read and, if acceptor 4 holds a higher promise (the rescan's),
/// learns it through one refused prepare and retries above it: so the explored read is
/// not refused for a ballot too low (which would need more timeouts than the depth holds).
fn invoke_read(model: &mut ReconfigModel, s: State) -> State {
    let s = model.next_state(&s, Action::Invoke(1)).expect("invoke");
    model.max_timeouts = usize::MAX;
    let me = proposer_id(1);
    let s = drive(
        model,
        s,
        |_, a| match a {
            Action::Sync(3) | Action::Timeout(1) => true,
            Action::Deliver(pkt) => {
                (pkt.from == me && pkt.to == NodeId(4)) || (pkt.to == me && pkt.from == NodeId(4))
            }
            _ => false,
        },
        |s| s.proposers[1].p.stats().prepares >= 2,
    );
    model.max_timeouts = 0;
    let mut s = s;
    s.timeouts = 0;
    // Keep only the retry's prepares (the refused round's packets are stale).
    let latest = s
        .network
        .iter()
        .filter_map(|p| match &p.msg {
            Msg::Req(Request::Prepare { ballot, .. }) if p.from == me => Some(*ballot),
            _ => None,
        })
        .max();
    s.network.retain(
        |p| matches!(&p.msg, Msg::Req(Request::Prepare { ballot, .. }) if Some(*ballot) == latest),
    );
    s
}

/// The BFS depth after a prefix: a read through two acceptors needs 13 steps after its invoke.
fn depth() -> usize {
    std::env::var("MESH_MODEL_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(14)
}

fn explore(
    model: &ReconfigModel,
    depth: usize,
    stop_at_failure: bool,
) -> impl Checker<ReconfigModel> {
    let started = Instant::now();
    let checker = model.clone().checker().threads(2).target_max_depth(depth);
    let checker = if stop_at_failure {
        checker.finish_when(HasDiscoveries::AnyFailures)
    } else {
        checker
    };
    let checker = checker.spawn_bfs().join();
    println!(
        "{} states ({} unique), depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker
}

/// From the prefix, the correct procedure keeps every interleaving of a later read
/// linearizable (the positive twin of the negative controls below).
#[test]
fn after_a_replace_every_interleaving_of_a_read_is_linearizable() {
    let mut model = ReconfigModel::new(replace_plan());
    let s = prefix(&mut model, &[1, 2, 4]);
    let s = invoke_read(&mut model, s);
    model.init = Some(s);
    let checker = explore(&model, depth(), false);
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
    // The bound is deep enough for the read to complete (through {3, 4} among others).
    checker.assert_any_discovery("every op completed after the change");
}

/// Exhaustive around the first step: the add's first root is being handed out (and the
/// rescan may start) while client 1's write and client 0's read race it, with one
/// acceptor crash, in every interleaving up to the depth bound (9 in CI; recorded at
/// `MESH_MODEL_DEPTH=11`: 4 041 806 states, 1 165 482 unique, 274 s, no violation).
#[test]
fn around_the_first_step_every_interleaving_is_linearizable() {
    let started = Instant::now();
    let mut model = ReconfigModel::new(replace_plan());
    model.scripts = vec![
        vec![RegisterOp::Write(1), RegisterOp::Read],
        vec![RegisterOp::Write(2)],
    ];
    model.max_timeouts = 0;
    model.proposer_crashes = false;
    let mut s = model.init_states().remove(0);
    s = model.next_state(&s, Action::Invoke(0)).expect("invoke");
    s = drive(
        &model,
        s,
        |_, a| match a {
            Action::Sync(_) => true,
            Action::Deliver(pkt) => over(pkt, &[1, 2, 3], &[1, 2, 3]),
            _ => false,
        },
        |s| s.proposers[0].pending.is_none(),
    );
    assert!(s.proposers[0].pending.is_none(), "the write completed");
    s.network = HashableHashSet::default();
    s = model
        .next_state(&s, Action::NextRoot)
        .expect("the add's first root");
    model.init = Some(s);
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(
            std::env::var("MESH_MODEL_DEPTH")
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(9),
        )
        .spawn_bfs()
        .join();
    println!(
        "reconfig model (first step): {} states ({} unique), depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
}

/// Random deep walks over the whole replace (3 → 4 → 3) from the empty cluster, every
/// fault on: loss, duplication, reordering, timeouts, acceptor and proposer crashes (the
/// driver's included: the rescan starts again), client ops at any moment of the change.
#[test]
fn random_walks_over_a_replace_with_every_fault_are_linearizable() {
    walks(replace_plan(), 200_000);
}

/// The same over 3 → 4 → 5 → 4 → 3 (five acceptors, eight changes of root): too slow for
/// CI. Recorded (2026-12-07, debug build, 2 threads): 2 000 029 states, max depth 400,
/// 258 s, no violation, the whole change completed on some walk.
#[test]
#[ignore]
fn random_walks_over_three_to_five_and_back_are_linearizable() {
    walks(plan(&[add(4), add(5), remove(1), remove(2)]), 2_000_000);
}

/// The driver's proposer id (after the two clients).
const DRIVER: NodeId = NodeId(12);

/// A random chooser that, one step in two, moves the change on (a root handed out or
/// installed, the rescan started or its packets delivered, a commit) when it can: uniform choices alone rarely walk a whole
/// change before the walk loops. Every other step is uniform over all actions.
#[derive(Clone)]
struct ChangeMinded;

impl Chooser<ReconfigModel> for ChangeMinded {
    type State = StdRng;

    fn new_state(&self, seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn choose_initial_state(&self, _: &mut StdRng, _: &[State]) -> usize {
        0
    }

    fn choose_action(&self, rng: &mut StdRng, _: &State, actions: &[Action]) -> usize {
        let change: Vec<usize> = (0..actions.len())
            .filter(|i| match &actions[*i] {
                Action::Install(_) | Action::NextRoot | Action::Rescan | Action::Sync(_) => true,
                Action::Deliver(p) => p.from == DRIVER || p.to == DRIVER,
                _ => false,
            })
            .collect();
        if !change.is_empty() && rng.next_u64().is_multiple_of(2) {
            return change[(rng.next_u64() % change.len() as u64) as usize];
        }
        (rng.next_u64() % actions.len().max(1) as u64) as usize
    }
}

fn walks(roots: Vec<RootRecord>, default_states: usize) {
    let started = Instant::now();
    let states: usize = std::env::var("MESH_MODEL_WALK_STATES")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default_states);
    let mut model = ReconfigModel::new(roots);
    model.lossy = true;
    model.consume = true;
    model.max_timeouts = 4;
    model.max_crashes = 2;
    let checker = model
        .checker()
        .threads(2)
        .target_max_depth(400)
        .target_state_count(states)
        .spawn_simulation(11, ChangeMinded)
        .join();
    println!(
        "reconfig model (random walks, {} roots): {} states, max depth {}, {:.1?}",
        checker.model().roots.len(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker.assert_no_discovery("linearizable");
    checker.assert_no_discovery("paxos invariants");
    checker.assert_any_discovery("the change completed");
}

/// Negative control: the driver skips the rescan. The value written through {1, 2} at
/// epoch 1 is then missed by the last root's prepare quorum {3, 4}.
#[test]
fn skipping_the_rescan_is_caught_by_the_checker() {
    let mut model = ReconfigModel::new(replace_plan());
    model.skip_rescan = true;
    let s = prefix(&mut model, &[1, 2, 4]);
    let s = invoke_read(&mut model, s);
    model.init = Some(s);
    let checker = explore(&model, depth(), true);
    let path = checker.assert_any_discovery("linearizable");
    println!("counterexample: {:?}", path.into_actions());
}

/// Negative control: the add raises the prepare rule first (3 of {1..4}) and keeps the
/// old accept rule (2 of {1, 2, 3}), so its rescan may rewrite the value to {1, 2} only.
#[test]
fn raising_the_prepare_rule_before_the_accept_rule_is_caught_by_the_checker() {
    let mut roots = replace_plan();
    let quorums = Quorums {
        prepare: QuorumRule::majority([1, 2, 3, 4]),
        accept: QuorumRule::majority([1, 2, 3]),
    };
    roots[1].quorums = Some(Box::new(quorums));
    assert!(needs_rescan(&roots[1]));
    let mut model = ReconfigModel::new(roots);
    let s = prefix(&mut model, &[1, 2]);
    let s = invoke_read(&mut model, s);
    model.init = Some(s);
    let checker = explore(&model, depth(), true);
    let path = checker.assert_any_discovery("linearizable");
    println!("counterexample: {:?}", path.into_actions());
}

/// Negative control: acceptors obey a proposer on an old epoch. Client 0, still on epoch
/// 1 after the replace, writes 2 through {1, 2}; a read under the last root through
/// {3, 4} then returns the rescanned 1.
#[test]
fn an_acceptor_obeying_an_old_epoch_is_caught_by_the_checker() {
    let mut model = ReconfigModel::new(replace_plan());
    model.obey_old_epochs = true;
    let mut s = prefix(&mut model, &[1, 2, 4]);
    model.scripts = vec![
        vec![RegisterOp::Write(1), RegisterOp::Write(2)],
        vec![RegisterOp::Read],
    ];
    s.proposers[0].script = vec![RegisterOp::Write(2)];
    assert_eq!(s.proposers[0].p.epoch(), 1, "client 0 is on the old root");
    s = model.next_state(&s, Action::Invoke(0)).expect("invoke");
    model.max_timeouts = usize::MAX;
    s = drive(
        &model,
        s,
        |_, a| match a {
            Action::Sync(_) => true,
            Action::Timeout(_) => true,
            Action::Deliver(pkt) => {
                (pkt.from == proposer_id(0) || pkt.to == proposer_id(0))
                    && over(pkt, &[1, 2], &[1, 2])
            }
            _ => false,
        },
        |s| s.proposers[0].pending.is_none(),
    );
    assert!(
        s.proposers[0].pending.is_none(),
        "the old-epoch write was obeyed"
    );
    s.network = HashableHashSet::default();
    s.timeouts = 0;
    model.max_timeouts = 0;
    let s = invoke_read(&mut model, s);
    model.init = Some(s);
    let checker = explore(&model, depth(), true);
    let path = checker.assert_any_discovery("linearizable");
    println!("counterexample: {:?}", path.into_actions());
}
