//! Three registries, random operations, a network that loses, duplicates and reorders,
//! random membership reports, permdown ticks and restarts; then a heal by anti-entropy.
//!
//! Checked after **every step** (each check names the property of the module docs of
//! `mesh_core::registry` it stands for):
//!
//! - *exact tracking* (1): every monitor's snapshot + events equals the registry's
//!   snapshot, and no event arrives for a removed monitor;
//! - *the view is the state* (2): every query equals a recomputation from the replicated
//!   state without hidden origins; no empty group;
//! - *hidden means invisible, purged means gone* (3): nothing of a hidden node is
//!   visible; no PID of an older boot of a node is visible once a node holds the newer
//!   incarnation; nothing of a purged incarnation is visible again;
//! - *losers once, on their own node* (5): at most one `NameConflict` per claim, each
//!   delivered on the loser's node.
//!
//! Checked **after healing** (everything delivered, anti-entropy until quiet, all
//! nodes alive to each other): equal digests and equal visible state everywhere, one
//! claim at most per name and the same winner everywhere (4), every claim retracted by
//! a conflict notified exactly once and every surviving claim never, and no exited
//! process visible anywhere.
//!
//! The negative controls at the end show that the exact-tracking checker fails when one
//! event is dropped. `PROPTEST_CASES=2000 cargo test -p mesh-core --test
//! registry_convergence` is the long run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mesh_core::pid::Pid;
use mesh_core::registry::{
    ConflictPolicy, GroupEntry, MonitorId, MonitorView, NameClaim, Registry, RegistryConfig,
    RegistryOutput,
};
use mesh_crdt::{Delta, Orswot};
use proptest::prelude::*;
use proptest::test_runner::Config;

const NODES: usize = 3;
const PERMDOWN: Duration = Duration::from_secs(10);
/// CRDT incarnation of boot `b` is `b * STRIDE`, so reincarnations (+1) stay below the
/// next boot and a visible PID's boot can be read off the incarnation a node holds.
const STRIDE: u64 = 1_000_000;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Spawn(usize),
    Join {
        node: usize,
        proc: usize,
        scope: u8,
        groups: Vec<u8>,
        meta: Option<u8>,
    },
    Leave {
        node: usize,
        proc: usize,
        scope: u8,
        groups: Vec<u8>,
    },
    SetMeta {
        node: usize,
        proc: usize,
        scope: u8,
        group: u8,
        meta: Option<u8>,
    },
    Exit {
        node: usize,
        proc: usize,
    },
    Register {
        node: usize,
        proc: usize,
        name: u8,
        policy: u8,
    },
    Unregister {
        node: usize,
        name: u8,
    },
    Monitor {
        node: usize,
        scope: u8,
        group: Option<u8>,
        owner: Option<usize>,
    },
    Demonitor {
        node: usize,
        which: usize,
    },
    Down {
        at: usize,
        of: usize,
    },
    Alive {
        at: usize,
        of: usize,
    },
    Tick(usize),
    /// Let the permdown period pass, then tick the node.
    Permdown(usize),
    Advance(u64),
    Restart(usize),
    Deliver {
        which: usize,
        dup: bool,
    },
    Lose(usize),
    AntiEntropy {
        a: usize,
        b: usize,
        chunked: bool,
        reverse: bool,
    },
    /// Several ops with no draining in between (so demonitor meets queued events).
    Batch(Vec<Self>),
}

/// `MESH_REGISTRY_TRACE=1` prints every op, conflict and the claims after each op.
fn tracing() -> bool {
    std::env::var_os("MESH_REGISTRY_TRACE").is_some()
}

fn node() -> impl Strategy<Value = usize> {
    0..NODES
}

fn leaf() -> impl Strategy<Value = Op> {
    let groups = || prop::collection::vec(0u8..3, 1..3);
    prop_oneof![
        3 => node().prop_map(Op::Spawn),
        6 => (node(), any::<usize>(), 0u8..2, groups(), prop::option::of(0u8..2))
            .prop_map(|(node, proc, scope, groups, meta)| Op::Join { node, proc, scope, groups, meta }),
        3 => (node(), any::<usize>(), 0u8..2, groups())
            .prop_map(|(node, proc, scope, groups)| Op::Leave { node, proc, scope, groups }),
        2 => (node(), any::<usize>(), 0u8..2, 0u8..3, prop::option::of(0u8..2))
            .prop_map(|(node, proc, scope, group, meta)| Op::SetMeta { node, proc, scope, group, meta }),
        2 => (node(), any::<usize>()).prop_map(|(node, proc)| Op::Exit { node, proc }),
        6 => (node(), any::<usize>(), 0u8..2, 0u8..3)
            .prop_map(|(node, proc, name, policy)| Op::Register { node, proc, name, policy }),
        1 => (node(), 0u8..2).prop_map(|(node, name)| Op::Unregister { node, name }),
        2 => (node(), 0u8..2, prop::option::of(0u8..3), prop::option::of(any::<usize>()))
            .prop_map(|(node, scope, group, owner)| Op::Monitor { node, scope, group, owner }),
        1 => (node(), any::<usize>()).prop_map(|(node, which)| Op::Demonitor { node, which }),
        2 => (node(), node()).prop_map(|(at, of)| Op::Down { at, of }),
        2 => (node(), node()).prop_map(|(at, of)| Op::Alive { at, of }),
        1 => node().prop_map(Op::Tick),
        1 => node().prop_map(Op::Permdown),
        2 => prop_oneof![Just(1u64), Just(500), Just(11_000)].prop_map(Op::Advance),
        1 => node().prop_map(Op::Restart),
        12 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(which, dup)| Op::Deliver { which, dup }),
        4 => any::<usize>().prop_map(Op::Lose),
        3 => (node(), node(), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, chunked, reverse)| Op::AntiEntropy { a, b, chunked, reverse }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => leaf(),
        1 => prop::collection::vec(leaf(), 2..5).prop_map(Op::Batch),
    ]
}

#[derive(Clone, Debug)]
enum Payload {
    Groups(Delta<String, GroupEntry>, Vec<Pid>),
    Names(Delta<String, NameClaim>),
}

struct Watch {
    id: MonitorId,
    owner: Option<Pid>,
    scope: String,
    group: Option<String>,
    view: MonitorView,
}

struct Node {
    name: String,
    boot: u64,
    reg: Registry,
    pids: Vec<Pid>,
    next_local: u64,
    wall_offset: u64,
    watches: Vec<Watch>,
    /// Origin -> the CRDT incarnation this registry purged at permdown.
    purged: BTreeMap<String, u64>,
}

/// One registration: its notifications, and whether the harness ended it itself
/// (unregister, exit, restart) while it was still live.
#[derive(Debug)]
struct ClaimRecord {
    claim: NameClaim,
    conflicts: u32,
    ended_by_owner: bool,
}

struct World {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    net: Vec<(usize, Payload)>,
    /// (pid, name) -> its registrations, in order.
    claims: BTreeMap<(Pid, String), Vec<ClaimRecord>>,
    /// `unregister_both` conflicts seen: (winner, name, index of the winning
    /// registration, loser's node, its boot then).
    both_lost: Vec<(Pid, String, usize, usize, u64)>,
    /// (node, origin) pairs where the node ever purged the origin at permdown.
    ever_purged: BTreeSet<(usize, String)>,
    dead: BTreeSet<Pid>,
    /// Negative controls: drop the first monitor event with a nonzero effect.
    drop_one_event: bool,
    /// The monitor (node, id) whose event was dropped.
    dropped_event: Option<(usize, MonitorId)>,
    /// With `MESH_REGISTRY_TRACE`: the history, written to
    /// `$CARGO_TARGET_TMPDIR/registry_trace.txt` when a case fails (the last failing
    /// case proptest runs is the minimal one).
    trace: Vec<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() && tracing() {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("registry_trace.txt");
            let _ = std::fs::write(&path, self.trace.join("\n"));
        }
    }
}

fn scope_name(s: u8) -> String {
    format!("s{s}")
}
fn group_name(g: u8) -> String {
    format!("g{g}")
}
fn meta_value(m: Option<u8>) -> Option<String> {
    m.map(|m| format!("m{m}"))
}
fn policy(p: u8) -> ConflictPolicy {
    match p {
        0 => ConflictPolicy::Notify,
        1 => ConflictPolicy::Kill,
        _ => ConflictPolicy::UnregisterBoth,
    }
}

impl World {
    fn new(wall_offsets: [u64; NODES]) -> Self {
        let start = Instant::now();
        let nodes = (0..NODES)
            .map(|i| {
                let name = format!("n{i}");
                let mut reg =
                    Registry::new(name.clone(), STRIDE, RegistryConfig { permdown: PERMDOWN });
                reg.announce();
                Node {
                    name,
                    boot: 1,
                    reg,
                    pids: Vec::new(),
                    next_local: 0,
                    wall_offset: wall_offsets[i],
                    watches: Vec::new(),
                    purged: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            start,
            now: start,
            nodes,
            net: Vec::new(),
            claims: BTreeMap::new(),
            both_lost: Vec::new(),
            ever_purged: BTreeSet::new(),
            dead: BTreeSet::new(),
            drop_one_event: false,
            dropped_event: None,
            trace: Vec::new(),
        }
    }

    fn wall(&self, node: usize) -> u64 {
        let elapsed = u64::try_from((self.now - self.start).as_millis()).unwrap_or(u64::MAX);
        1_000_000 + self.nodes[node].wall_offset + elapsed
    }

    fn pick(&self, node: usize, proc: &usize) -> Option<Pid> {
        let pids = &self.nodes[node].pids;
        (!pids.is_empty()).then(|| pids[*proc % pids.len()].clone())
    }

    /// Ends, as "by the owner", every live claim of `pid` on `node`.
    fn end_claims_of(&mut self, node: usize, pid: &Pid) {
        for c in self.nodes[node].reg.local_claims() {
            if c.pid == *pid {
                if let Some(r) = self
                    .claims
                    .get_mut(&(c.pid.clone(), c.name.clone()))
                    .and_then(|v| v.last_mut())
                {
                    r.ended_by_owner = true;
                }
            }
        }
    }

    fn exit(&mut self, node: usize, pid: &Pid) {
        self.end_claims_of(node, pid);
        let now = self.now;
        self.nodes[node].reg.process_exited(now, pid);
        let n = &mut self.nodes[node];
        n.pids.retain(|p| p != pid);
        // A monitor owned by the process goes with it.
        n.watches.retain(|w| w.owner.as_ref() != Some(pid));
        self.dead.insert(pid.clone());
    }

    fn apply(&mut self, op: &Op) {
        if tracing() {
            self.trace.push(format!("-- {op:?}"));
        }
        self.apply_undrained(op);
        self.drain_all();
        if tracing() {
            for n in &self.nodes {
                let claims: Vec<String> = n
                    .reg
                    .names()
                    .state()
                    .elements()
                    .keys()
                    .map(|c| {
                        format!(
                            "{}:{:?}@{}.{}:{:?}",
                            c.name, c.pid, c.hlc.wall_ms, c.hlc.logical, c.policy
                        )
                    })
                    .collect();
                let line = format!(
                    "   {} boot {} inc {} hidden {:?} claims {claims:?}",
                    n.name,
                    n.boot,
                    n.reg.crdt_incarnation(),
                    n.reg.hidden_nodes()
                );
                self.trace.push(line);
            }
        }
    }

    fn apply_undrained(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Batch(ops) => {
                for op in ops {
                    self.apply_undrained(op);
                }
            }
            Op::Spawn(n) => {
                let node = &mut self.nodes[*n];
                node.next_local += 1;
                node.pids
                    .push(Pid::new(node.name.clone(), node.boot, node.next_local));
            }
            Op::Join {
                node,
                proc,
                scope,
                groups,
                meta,
            } => {
                if let Some(pid) = self.pick(*node, proc) {
                    let groups: Vec<String> = groups.iter().map(|g| group_name(*g)).collect();
                    let r = self.nodes[*node].reg.join(
                        now,
                        &scope_name(*scope),
                        &groups,
                        &pid,
                        meta_value(*meta),
                    );
                    assert_eq!(r, Ok(()));
                }
            }
            Op::Leave {
                node,
                proc,
                scope,
                groups,
            } => {
                if let Some(pid) = self.pick(*node, proc) {
                    let groups: Vec<String> = groups.iter().map(|g| group_name(*g)).collect();
                    let scope = scope_name(*scope);
                    let reg = &mut self.nodes[*node].reg;
                    let joined = groups
                        .iter()
                        .any(|g| reg.local_members(&scope, g).contains(&pid));
                    let r = reg.leave(now, &scope, &groups, &pid);
                    assert_eq!(r.is_ok(), joined, "{r:?}: NotJoined iff none joined");
                }
            }
            Op::SetMeta {
                node,
                proc,
                scope,
                group,
                meta,
            } => {
                if let Some(pid) = self.pick(*node, proc) {
                    let (scope, group) = (scope_name(*scope), group_name(*group));
                    let reg = &mut self.nodes[*node].reg;
                    let joined = reg.local_members(&scope, &group).contains(&pid);
                    let r = reg.set_meta(now, &scope, &group, &pid, meta_value(*meta));
                    assert_eq!(r.is_ok(), joined, "{r:?}: NotJoined iff not a member");
                    if joined {
                        let shown = reg
                            .members_with_meta(&scope, &group)
                            .into_iter()
                            .find(|m| m.0 == pid)
                            .map(|m| m.2);
                        assert_eq!(
                            shown,
                            Some(meta_value(*meta)),
                            "the owner's write shows at once"
                        );
                    }
                }
            }
            Op::Exit { node, proc } => {
                if let Some(pid) = self.pick(*node, proc) {
                    self.exit(*node, &pid);
                }
            }
            Op::Register {
                node,
                proc,
                name,
                policy: p,
            } => {
                if let Some(pid) = self.pick(*node, proc) {
                    let name = format!("x{name}");
                    let wall = self.wall(*node);
                    let r =
                        self.nodes[*node]
                            .reg
                            .register(now, wall, &name, &pid, None, policy(*p));
                    if r.is_ok() {
                        let claim = self.nodes[*node]
                            .reg
                            .local_claims()
                            .into_iter()
                            .find(|c| c.name == name)
                            .expect("the new claim is live");
                        self.claims
                            .entry((pid, name))
                            .or_default()
                            .push(ClaimRecord {
                                claim,
                                conflicts: 0,
                                ended_by_owner: false,
                            });
                    }
                }
            }
            Op::Unregister { node, name } => {
                let name = format!("x{name}");
                if let Ok(pid) = self.nodes[*node].reg.unregister(now, &name) {
                    if let Some(r) = self.claims.get_mut(&(pid, name)).and_then(|v| v.last_mut()) {
                        r.ended_by_owner = true;
                    }
                }
            }
            Op::Monitor {
                node,
                scope,
                group,
                owner,
            } => {
                let owner = owner.as_ref().and_then(|o| self.pick(*node, o));
                let scope = scope_name(*scope);
                let group = group.map(group_name);
                let n = &mut self.nodes[*node];
                let (id, snap) = n.reg.monitor(owner.clone(), &scope, group.as_deref());
                n.watches.push(Watch {
                    id,
                    owner,
                    scope,
                    group,
                    view: MonitorView::new(&snap),
                });
            }
            Op::Demonitor { node, which } => {
                let n = &mut self.nodes[*node];
                if !n.watches.is_empty() {
                    let w = n.watches.remove(*which % n.watches.len());
                    assert!(n.reg.demonitor(w.id), "a live monitor");
                }
            }
            Op::Down { at, of } => {
                let of = self.nodes[*of].name.clone();
                self.nodes[*at].reg.node_down(now, &of);
            }
            Op::Alive { at, of } => {
                let (name, inc) = (
                    self.nodes[*of].name.clone(),
                    self.nodes[*of].reg.crdt_incarnation(),
                );
                self.nodes[*at].reg.node_alive(now, &name, inc);
            }
            Op::Tick(n) => self.tick(*n),
            Op::Permdown(n) => {
                self.now += PERMDOWN + Duration::from_millis(1);
                self.tick(*n);
            }
            Op::Advance(ms) => self.now += Duration::from_millis(*ms),
            Op::Restart(n) => {
                for pid in self.nodes[*n].pids.clone() {
                    self.dead.insert(pid);
                }
                // Nothing is owed to the old boot's processes: not even a NameConflict
                // still queued in the registry that is thrown away here.
                let (name, boot) = (self.nodes[*n].name.clone(), self.nodes[*n].boot);
                for ((pid, _), records) in &mut self.claims {
                    if pid.node == name && pid.incarnation == boot {
                        for r in records {
                            r.ended_by_owner = true;
                        }
                    }
                }
                let node = &mut self.nodes[*n];
                node.boot += 1;
                node.pids.clear();
                node.next_local = 0;
                node.watches.clear();
                node.purged.clear();
                node.reg = Registry::new(
                    node.name.clone(),
                    node.boot * STRIDE,
                    RegistryConfig { permdown: PERMDOWN },
                );
                node.reg.announce();
            }
            Op::Deliver { which, dup } => {
                if !self.net.is_empty() {
                    let i = *which % self.net.len();
                    let (to, payload) = if *dup {
                        self.net[i].clone()
                    } else {
                        self.net.remove(i)
                    };
                    self.deliver(to, &payload);
                }
            }
            Op::Lose(which) => {
                if !self.net.is_empty() {
                    let i = *which % self.net.len();
                    self.net.remove(i);
                }
            }
            Op::AntiEntropy {
                a,
                b,
                chunked,
                reverse,
            } => {
                if a != b {
                    self.anti_entropy(*a, *b, *chunked, *reverse);
                }
            }
        }
    }

    fn tick(&mut self, n: usize) {
        let now = self.now;
        let node = &mut self.nodes[n];
        let before: BTreeSet<String> = node.reg.hidden_nodes().into_iter().collect();
        if node.reg.poll_timeout().is_some_and(|t| t <= now) {
            node.reg.handle_tick(now);
        }
        let after: BTreeSet<String> = node.reg.hidden_nodes().into_iter().collect();
        for gone in before.difference(&after) {
            let origin = gone.clone();
            if let Some(inc) = node.reg.groups().state().incarnation_of(&origin) {
                assert!(
                    node.reg.groups().state().is_retired(&origin),
                    "purged at permdown"
                );
                self.ever_purged.insert((n, origin.clone()));
                node.purged.insert(origin, inc);
            }
        }
    }

    fn deliver(&mut self, to: usize, payload: &Payload) {
        let now = self.now;
        let reg = &mut self.nodes[to].reg;
        match payload {
            Payload::Groups(d, exited) => {
                reg.merge_groups(now, d, exited)
                    .expect("valid deltas are accepted");
            }
            Payload::Names(d) => {
                reg.merge_names(now, d).expect("valid deltas are accepted");
            }
        }
    }

    fn anti_entropy(&mut self, a: usize, b: usize, chunked: bool, reverse: bool) {
        let now = self.now;
        for (from, to) in [(a, b), (b, a)] {
            let g = self.nodes[from]
                .reg
                .groups()
                .missing_for(&self.nodes[to].reg.groups().digest());
            let n = self.nodes[from]
                .reg
                .names()
                .missing_for(&self.nodes[to].reg.names().digest());
            let mut gs = pieces(&g, chunked);
            let mut ns = pieces(&n, chunked);
            if reverse {
                gs.reverse();
                ns.reverse();
            }
            for piece in gs {
                self.nodes[to]
                    .reg
                    .merge_groups(now, &piece, &[])
                    .expect("valid");
            }
            for piece in ns {
                self.nodes[to].reg.merge_names(now, &piece).expect("valid");
            }
        }
    }

    /// Drains every node's outputs: deltas onto the network (to both other nodes),
    /// events into their monitor views, conflicts into the claim records, kills done.
    fn drain_all(&mut self) {
        loop {
            let mut kills = Vec::new();
            for i in 0..NODES {
                while let Some(out) = self.nodes[i].reg.poll_output() {
                    match out {
                        RegistryOutput::GroupsDelta { delta, exited } => {
                            for to in (0..NODES).filter(|&t| t != i) {
                                self.net
                                    .push((to, Payload::Groups(delta.clone(), exited.clone())));
                            }
                        }
                        RegistryOutput::NamesDelta(delta) => {
                            for to in (0..NODES).filter(|&t| t != i) {
                                self.net.push((to, Payload::Names(delta.clone())));
                            }
                        }
                        RegistryOutput::Monitor { id, event } => {
                            if self.drop_one_event
                                && self.dropped_event.is_none()
                                && event.reason.effect() != 0
                            {
                                self.dropped_event = Some((i, id));
                                continue;
                            }
                            let node = &mut self.nodes[i];
                            let Some(w) = node.watches.iter_mut().find(|w| w.id == id) else {
                                panic!("{}: event {event:?} for removed monitor {id:?}", node.name);
                            };
                            if let Err(e) = w.view.apply(&event) {
                                // Recorded as a mismatch; the checker reports it.
                                w.view = MonitorView::new(&mesh_core::registry::Snapshot {
                                    scope: format!("broken: {e}"),
                                    group: None,
                                    members: Vec::new(),
                                });
                            }
                        }
                        RegistryOutput::NameConflict {
                            name,
                            loser,
                            winner,
                        } => {
                            assert_eq!(
                                loser.node, self.nodes[i].name,
                                "a loser is handled on its own node"
                            );
                            self.record_conflict(i, &name, &loser, &winner);
                        }
                        RegistryOutput::Kill { pid, .. } => kills.push((i, pid)),
                    }
                }
            }
            if kills.is_empty() {
                break;
            }
            for (i, pid) in kills {
                if self.nodes[i].pids.contains(&pid) {
                    self.exit(i, &pid);
                }
            }
        }
    }

    /// Books one `NameConflict` output by node `i` against the losing registration.
    fn record_conflict(&mut self, i: usize, name: &str, loser: &Pid, winner: &Pid) {
        if tracing() {
            self.trace.push(format!(
                "   NameConflict at n{i}: {name} loser {loser:?} winner {winner:?}"
            ));
        }
        let records = |pid: &Pid| self.claims.get(&(pid.clone(), name.to_owned()));
        let lost = records(loser)
            .and_then(|v| v.last())
            .map(|r| r.claim.clone())
            .unwrap_or_else(|| panic!("NameConflict for {loser:?} on {name}, never registered"));
        if winner == loser {
            assert_eq!(
                lost.policy,
                ConflictPolicy::UnregisterBoth,
                "a winner is notified only under unregister_both"
            );
        } else {
            // The winning registration: one of the winner's on this name that comes
            // first in the order. A PID may register a name more than once and the
            // output names only the PID: the unregister_both expectation is checked
            // only when exactly one registration can have won.
            let key = (lost.hlc, &lost.pid);
            let candidates: Vec<(usize, NameClaim)> = records(winner)
                .map(|v| {
                    v.iter()
                        .enumerate()
                        .filter(|(_, r)| (r.claim.hlc, &r.claim.pid) < key)
                        .map(|(at, r)| (at, r.claim.clone()))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                !candidates.is_empty(),
                "{winner:?} reported winning {name} over {lost:?}"
            );
            if let [(at, won)] = candidates.as_slice() {
                if won.policy == ConflictPolicy::UnregisterBoth {
                    let boot = self.nodes[i].boot;
                    self.both_lost
                        .push((winner.clone(), name.to_owned(), *at, i, boot));
                }
            }
        }
        let rec = self
            .claims
            .get_mut(&(loser.clone(), name.to_owned()))
            .and_then(|v| v.last_mut())
            .expect("checked above");
        rec.conflicts += 1;
        assert_eq!(
            rec.conflicts, 1,
            "one NameConflict per losing claim ({loser:?}, {name})"
        );
    }

    // --- checks ------------------------------------------------------------------------

    /// Exact tracking: every monitor's view equals the registry's snapshot.
    fn check_tracking(&self) -> Result<(), String> {
        for n in &self.nodes {
            for w in &n.watches {
                let want = n.reg.snapshot(&w.scope, w.group.as_deref());
                let got = w.view.snapshot();
                if got != want {
                    return Err(format!(
                        "{}: monitor {:?} on {}/{:?} tracks {:?}, the view is {:?}",
                        n.name, w.id, w.scope, w.group, got.members, want.members
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_step(&self) {
        if let Err(e) = self.check_tracking() {
            panic!("exact tracking: {e}");
        }
        for n in &self.nodes {
            check_view_is_state(n);
        }
    }
}

fn pieces<E>(d: &Delta<String, E>, chunked: bool) -> Vec<Delta<String, E>>
where
    E: serde::Serialize + serde::de::DeserializeOwned + Ord + Clone + std::hash::Hash,
{
    if chunked {
        d.chunks(160).expect("small elements fit")
    } else if d.is_empty() {
        Vec::new()
    } else {
        vec![d.clone()]
    }
}

type MemberKey = (String, String, Pid);

/// The visible groups recomputed from the replicated state: per member, its
/// occurrences and the metadata of its newest dot.
fn expected_members(reg: &Registry) -> BTreeMap<MemberKey, (usize, Option<String>)> {
    let hidden: BTreeSet<String> = reg.hidden_nodes().into_iter().collect();
    let state: &Orswot<String, GroupEntry> = reg.groups().state();
    let mut dots: BTreeMap<MemberKey, BTreeMap<(u64, u64), Option<String>>> = BTreeMap::new();
    for origin in state.origins() {
        if hidden.contains(origin) {
            continue;
        }
        for (e, _) in state.elements_of(origin) {
            for d in state.dots_of(e) {
                if d.origin == *origin {
                    dots.entry((e.scope.clone(), e.group.clone(), e.pid.clone()))
                        .or_default()
                        .insert((d.incarnation, d.seq), e.meta.clone());
                }
            }
        }
    }
    dots.into_iter()
        .map(|(k, d)| {
            let meta = d.values().last().cloned().flatten();
            (k, (d.len(), meta))
        })
        .collect()
}

/// The visible members as the registry's queries show them, checking the queries
/// against each other on the way.
fn shown_members(reg: &Registry) -> BTreeMap<MemberKey, (usize, Option<String>)> {
    let mut out = BTreeMap::new();
    for scope in reg.scopes() {
        let counts = reg.group_counts(&scope);
        assert!(
            !counts.is_empty(),
            "{}: scope {scope} listed without groups",
            reg.node()
        );
        assert_eq!(
            reg.which_groups(&scope),
            counts.iter().map(|(g, _)| g.clone()).collect::<Vec<_>>()
        );
        let mut local_groups = Vec::new();
        for (group, n) in counts {
            assert!(n > 0, "{}: empty group {scope}/{group} listed", reg.node());
            let members = reg.members_with_meta(&scope, &group);
            assert_eq!(members.iter().map(|m| m.1).sum::<usize>(), n);
            assert_eq!(reg.member_count(&scope, &group), n);
            assert_eq!(reg.members(&scope, &group).len(), n);
            let local: Vec<Pid> = reg
                .members(&scope, &group)
                .into_iter()
                .filter(|p| p.node == reg.node())
                .collect();
            assert_eq!(reg.local_members(&scope, &group), local);
            if !local.is_empty() {
                local_groups.push(group.clone());
            }
            for (pid, count, meta) in members {
                out.insert((scope.clone(), group.clone(), pid), (count, meta));
            }
        }
        assert_eq!(reg.which_local_groups(&scope), local_groups);
    }
    out
}

/// The name winners recomputed from the replicated state.
fn expected_winners(reg: &Registry) -> BTreeMap<String, NameClaim> {
    let hidden: BTreeSet<String> = reg.hidden_nodes().into_iter().collect();
    let state = reg.names().state();
    let mut out: BTreeMap<String, NameClaim> = BTreeMap::new();
    for origin in state.origins() {
        if hidden.contains(origin) {
            continue;
        }
        for (c, _) in state.elements_of(origin) {
            match out.get(&c.name) {
                Some(w) if (w.hlc, &w.pid) <= (c.hlc, &c.pid) => {}
                _ => {
                    out.insert(c.name.clone(), c.clone());
                }
            }
        }
    }
    out
}

fn check_view_is_state(n: &Node) {
    let reg = &n.reg;
    let shown = shown_members(reg);
    assert_eq!(shown, expected_members(reg), "{}: view != state", n.name);
    let stats = reg.stats();
    assert_eq!(stats.members, shown.values().map(|v| v.0).sum::<usize>());
    let winners: BTreeMap<String, (Pid, mesh_core::hlc::Hlc)> = reg
        .registered()
        .into_iter()
        .map(|(name, i)| (name, (i.pid, i.hlc)))
        .collect();
    let expected: BTreeMap<String, (Pid, mesh_core::hlc::Hlc)> = expected_winners(reg)
        .into_iter()
        .map(|(name, c)| (name, (c.pid, c.hlc)))
        .collect();
    assert_eq!(winners, expected, "{}: names view != state", n.name);
    // Hidden is invisible; old boots and purged incarnations are gone.
    let hidden: BTreeSet<String> = reg.hidden_nodes().into_iter().collect();
    let visible_pids = shown
        .keys()
        .map(|k| &k.2)
        .chain(winners.values().map(|w| &w.0));
    for pid in visible_pids {
        assert!(
            !hidden.contains(&pid.node),
            "{}: hidden {pid:?} visible",
            n.name
        );
        let origin = pid.node.clone();
        if pid.node != n.name {
            let held = reg
                .groups()
                .state()
                .incarnation_of(&origin)
                .unwrap_or(0)
                .max(reg.names().state().incarnation_of(&origin).unwrap_or(0));
            assert!(
                held / STRIDE <= pid.incarnation,
                "{}: {pid:?} of an older boot visible while incarnation {held} is held",
                n.name
            );
            if let Some(&purged) = n.purged.get(&origin) {
                let live = reg.groups().state().incarnation_of(&origin).unwrap_or(0);
                assert!(
                    live > purged || reg.names().state().incarnation_of(&origin) > Some(purged),
                    "{}: {pid:?} visible after incarnation {purged} was purged",
                    n.name
                );
            }
        } else {
            assert_eq!(pid.incarnation, n.boot, "{}: own old boot visible", n.name);
        }
    }
}

fn heal(w: &mut World) {
    let now = w.now;
    for round in 0.. {
        assert!(round < 40, "no quiescence after 40 heal rounds");
        if tracing() {
            w.trace.push(format!("-- heal round {round}"));
        }
        for at in 0..NODES {
            for of in 0..NODES {
                if at != of {
                    let (name, inc) =
                        (w.nodes[of].name.clone(), w.nodes[of].reg.crdt_incarnation());
                    w.nodes[at].reg.node_alive(now, &name, inc);
                }
            }
        }
        w.drain_all();
        while !w.net.is_empty() {
            let (to, payload) = w.net.remove(0);
            w.deliver(to, &payload);
            w.drain_all();
        }
        for a in 0..NODES {
            for b in a + 1..NODES {
                w.anti_entropy(a, b, false, false);
                w.drain_all();
            }
        }
        w.check_step();
        let quiet = w.net.is_empty()
            && w.nodes.iter().all(|n| {
                n.reg.groups().digest() == w.nodes[0].reg.groups().digest()
                    && n.reg.names().digest() == w.nodes[0].reg.names().digest()
                    && n.reg.hidden_nodes().is_empty()
            });
        if quiet {
            break;
        }
    }
}

fn check_healed(w: &World) {
    let first = &w.nodes[0].reg;
    let view = |r: &Registry| {
        r.scopes()
            .into_iter()
            .map(|s| r.snapshot(&s, None))
            .collect::<Vec<_>>()
    };
    for n in &w.nodes {
        assert_eq!(
            view(&n.reg),
            view(first),
            "{}: groups differ after heal",
            n.name
        );
        assert_eq!(
            n.reg.registered(),
            first.registered(),
            "{}: names differ after heal",
            n.name
        );
        assert_eq!(n.reg.groups().state(), first.groups().state());
        assert_eq!(n.reg.names().state(), first.names().state());
    }
    // One claim per name at most, in the state itself.
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for (c, n) in first.names().state().elements() {
        *per_name.entry(c.name.clone()).or_default() += n;
    }
    for (name, n) in per_name {
        assert_eq!(n, 1, "{name} has {n} claims after heal");
    }
    // Surviving claims were never notified; retracted ones exactly once.
    let live: BTreeSet<(Pid, String)> = w
        .nodes
        .iter()
        .flat_map(|n| n.reg.local_claims())
        .map(|c| (c.pid, c.name))
        .collect();
    for ((pid, name), records) in &w.claims {
        for (i, r) in records.iter().enumerate() {
            let current = i + 1 == records.len();
            if current && live.contains(&(pid.clone(), name.clone())) {
                assert_eq!(r.conflicts, 0, "{pid:?} keeps {name} but was told it lost");
            } else if !r.ended_by_owner {
                assert_eq!(
                    r.conflicts, 1,
                    "{pid:?} lost {name} (registration {i}) unnotified"
                );
            }
        }
    }
    // unregister_both: the winner of every such conflict ended retracted and notified
    // too, unless the winner's node was purged (permdown, anywhere) or the loser's node
    // restarted (the documented corners).
    for (winner, name, at, loser_node, boot) in &w.both_lost {
        let r = &w.claims[&(winner.clone(), name.clone())][*at];
        let corner = w
            .ever_purged
            .iter()
            .any(|(_, origin)| *origin == winner.node)
            || w.nodes[*loser_node].boot != *boot;
        if !r.ended_by_owner && !corner {
            assert_eq!(
                r.conflicts, 1,
                "{winner:?} kept {name} under unregister_both"
            );
        }
    }
    // No exited process anywhere.
    for n in &w.nodes {
        for m in shown_members(&n.reg).keys() {
            assert!(!w.dead.contains(&m.2), "{}: dead {:?} visible", n.name, m.2);
        }
        for (_, i) in n.reg.registered() {
            assert!(
                !w.dead.contains(&i.pid),
                "{}: dead {:?} holds a name",
                n.name,
                i.pid
            );
        }
    }
    if let Err(e) = w.check_tracking() {
        panic!("exact tracking after heal: {e}");
    }
}

fn offsets() -> impl Strategy<Value = [u64; NODES]> {
    [0u64..50, 0u64..50, 0u64..50]
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn registries_converge_and_every_monitor_tracks_its_view_exactly(
        ops in prop::collection::vec(op(), 1..200),
        walls in offsets(),
    ) {
        let mut w = World::new(walls);
        w.drain_all();
        for op in &ops {
            w.apply(op);
            w.check_step();
        }
        heal(&mut w);
        check_healed(&w);
    }

    /// Negative control: with one (count-changing) event dropped, the exact-tracking
    /// checker fails at the step that dropped it.
    #[test]
    fn the_tracking_checker_catches_one_dropped_event(
        ops in prop::collection::vec(op(), 1..200),
        walls in offsets(),
    ) {
        let mut w = World::new(walls);
        w.drop_one_event = true;
        w.drain_all();
        for op in &ops {
            w.apply(op);
            if let Some((node, id)) = w.dropped_event {
                if w.nodes[node].watches.iter().any(|watch| watch.id == id) {
                    prop_assert!(w.check_tracking().is_err(), "a dropped event went unnoticed after {:?}", op);
                    break;
                }
                // The monitor went in the same step (its owner was killed or the node
                // restarted): nothing left to check; drop another event later.
                w.dropped_event = None;
            }
            prop_assert!(w.check_tracking().is_ok());
        }
    }
}

#[test]
fn the_tracking_checker_fails_when_a_join_event_is_dropped() {
    let mut w = World::new([0; NODES]);
    w.drain_all();
    w.apply(&Op::Spawn(0));
    w.apply(&Op::Monitor {
        node: 1,
        scope: 0,
        group: Some(0),
        owner: None,
    });
    w.apply(&Op::Join {
        node: 0,
        proc: 0,
        scope: 0,
        groups: vec![0],
        meta: None,
    });
    assert!(w.check_tracking().is_ok());
    w.drop_one_event = true;
    while !w.net.is_empty() {
        w.apply(&Op::Deliver {
            which: 0,
            dup: false,
        });
    }
    assert!(
        w.dropped_event.is_some(),
        "the delivery produced an event to drop"
    );
    let err = w.check_tracking().expect_err("the checker must notice");
    assert!(err.contains("n1"), "{err}");
    assert_eq!(
        w.nodes[1].reg.members("s0", "g0"),
        vec![Pid::new("n0", 1, 1)],
        "the registry itself is right"
    );
}
