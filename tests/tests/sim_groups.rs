//! Process groups and eventual names on the simulator: the whole node (SWIM, registry,
//! dissemination, anti-entropy, processes) under loss, duplication, reordering,
//! partitions, kills and restarts, over many seeds. Each test states the property it
//! checks (see `mesh_core::registry` and `mesh_core::node` for the properties).
//!
//! `MESH_SIM_SEEDS=N` runs N seeds per test; `MESH_SIM_SEED=S` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mesh_core::node::MonitorItem;
use mesh_core::node::{Command, Dest, GroupMode, Reply, SyncMode};
use mesh_core::pid::Pid;
use mesh_core::process::{Delivery, Inbox, Mailbox};
use mesh_core::registry::{ConflictPolicy, MonitorId, MonitorView, RegistryConfig};
use mesh_tests::sim::{for_each_seed, LinkConfig, Sim};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SEEDS: u64 = 60;
const SCOPES: [&str; 2] = ["default", "jobs"];
const GROUPS: [&str; 4] = ["a", "b", "c", "d"];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Everything a node shows: members (scope, group, pid) → (count, meta), and names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct View {
    members: BTreeMap<(String, String, Pid), (usize, Option<String>)>,
    names: BTreeMap<String, Pid>,
}

fn view(sim: &Sim, n: usize) -> Option<View> {
    let node = sim.node(n)?;
    let r = node.registry();
    let mut v = View::default();
    for scope in SCOPES {
        for m in r.snapshot(scope, None).members {
            v.members
                .insert((scope.to_owned(), m.group, m.pid), (m.count, m.meta));
        }
    }
    for (name, info) in r.registered() {
        v.names.insert(name, info.pid);
    }
    Some(v)
}

/// The truth: what each live node says of its own processes, put together.
fn truth(sim: &Sim) -> View {
    let mut t = View::default();
    for n in sim.live_nodes() {
        let name = sim.nodes[n].name.clone();
        if let Some(v) = view(sim, n) {
            t.members.extend(
                v.members
                    .into_iter()
                    .filter(|((_, _, p), _)| p.node == name),
            );
            t.names
                .extend(v.names.into_iter().filter(|(_, p)| p.node == name));
        }
    }
    t
}

/// Every live node shows the truth.
fn converged(sim: &Sim) -> Result<(), String> {
    let t = truth(sim);
    for n in sim.live_nodes() {
        let v = view(sim, n).unwrap_or_default();
        if v != t {
            return Err(format!(
                "{} differs from the truth: members {:?} vs {:?}; names {:?} vs {:?}",
                sim.nodes[n].name,
                diff(&v.members, &t.members),
                diff(&t.members, &v.members),
                v.names,
                t.names
            ));
        }
    }
    Ok(())
}

fn diff<K: Ord + Clone, V: PartialEq + Clone>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> Vec<K> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .take(5)
        .collect()
}

/// A process the workload runs, with its mailbox.
struct Proc {
    node: usize,
    life: u64,
    pid: Pid,
    joined: Vec<(String, String)>,
}

/// Monitors the workload holds on one node (scope-wide and one group).
struct Watch {
    node: usize,
    life: u64,
    id: MonitorId,
    inbox: Inbox<MonitorItem>,
    view: MonitorView,
    group: Option<String>,
    scope: String,
}

/// A seeded workload of spawns, joins, leaves, meta changes, exits and registrations.
struct Workload {
    rng: StdRng,
    procs: Vec<Proc>,
}

impl Workload {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x776f_726b),
            procs: Vec::new(),
        }
    }

    fn spawn(&mut self, sim: &mut Sim, n: usize) {
        let life = sim.nodes[n].life;
        // The mailbox is dropped: this workload checks views, not deliveries.
        if let Some((pid, _mailbox)) = sim.with_node(n, |node, _| node.spawn(None)) {
            self.procs.push(Proc {
                node: n,
                life,
                pid,
                joined: Vec::new(),
            });
        }
    }

    /// Processes whose node is still in the life that spawned them.
    fn alive(&mut self, sim: &Sim) {
        self.procs
            .retain(|p| sim.nodes[p.node].life == p.life && sim.nodes[p.node].node.is_some());
    }

    /// One random operation on a random live process (or a spawn).
    fn step(&mut self, sim: &mut Sim) {
        self.alive(sim);
        let live = sim.live_nodes();
        if live.is_empty() {
            return;
        }
        if self.procs.len() < 6 || self.rng.random_range(0..10) == 0 {
            let n = live[self.rng.random_range(0..live.len())];
            self.spawn(sim, n);
            return;
        }
        let i = self.rng.random_range(0..self.procs.len());
        let scope = SCOPES[self.rng.random_range(0..SCOPES.len())].to_owned();
        let group = GROUPS[self.rng.random_range(0..GROUPS.len())].to_owned();
        let p = &mut self.procs[i];
        let pid = p.pid.clone();
        match self.rng.random_range(0..10) {
            0..=3 => {
                let meta = (self.rng.random_range(0..3) == 0)
                    .then(|| format!("m{}", self.rng.random_range(0..3)));
                let ok = sim
                    .with_node(p.node, |node, now| {
                        node.join(now, &scope, std::slice::from_ref(&group), &pid, meta)
                            .is_ok()
                    })
                    .unwrap_or(false);
                if ok {
                    p.joined.push((scope, group));
                }
            }
            4..=5 if !p.joined.is_empty() => {
                let k = self.rng.random_range(0..p.joined.len());
                let (scope, group) = p.joined.swap_remove(k);
                let ok = sim
                    .with_node(p.node, |node, now| {
                        node.leave_groups(now, &scope, &[group], &pid).is_ok()
                    })
                    .unwrap_or(false);
                assert!(ok, "leaving a group the process joined must succeed");
            }
            6 if !p.joined.is_empty() => {
                let (scope, group) = p.joined[0].clone();
                let meta = Some(format!("x{}", self.rng.random_range(0..100)));
                sim.with_node(p.node, |node, now| {
                    node.set_meta(now, &scope, &group, &pid, meta).is_ok()
                });
            }
            7 => {
                let name = format!("name{}", self.rng.random_range(0..6));
                sim.with_node(p.node, |node, now| {
                    let _ = node.register(now, &name, &pid, None, ConflictPolicy::Notify);
                });
            }
            8 => {
                let node_idx = p.node;
                sim.with_node(node_idx, |node, now| {
                    let _ = node.exit(now, &pid);
                });
                self.procs.swap_remove(i);
            }
            _ => {
                // A send to the group: it must not panic or lose order; delivery is
                // not what this workload checks.
                let from = Some(pid);
                sim.with_node(p.node, |node, now| {
                    let dest = Dest::Group {
                        scope,
                        group,
                        mode: GroupMode::All,
                    };
                    let _ = node.send(now, from, &dest, bytes::Bytes::from_static(b"x"));
                });
            }
        }
    }

    /// `k` operations spread over `over` of simulated time.
    fn run(&mut self, sim: &mut Sim, k: usize, over: Duration) {
        let gap = over / u32::try_from(k.max(1)).unwrap_or(1);
        for _ in 0..k {
            self.step(sim);
            sim.run_for(gap);
        }
    }
}

fn lossy() -> LinkConfig {
    LinkConfig {
        delay_min: ms(1),
        delay_max: ms(30),
        loss: 0.05,
        duplicate: 0.05,
    }
}

fn cluster(seed: u64, n: usize, permdown: Duration) -> Result<Sim, String> {
    let mut sim = Sim::new(seed);
    sim.node_config.registry = RegistryConfig { permdown };
    sim.add_cluster(n);
    if !sim.run_until(secs(15), Sim::all_see_all_alive) {
        return Err(format!("membership did not converge: {}", sim.describe()));
    }
    Ok(sim)
}

fn settle(sim: &mut Sim, limit: Duration) -> Result<(), String> {
    let mut last = Ok(());
    let ok = sim.run_until(limit, |s| {
        last = if s.all_see_all_alive() {
            converged(s)
        } else {
            Err("membership not converged".to_owned())
        };
        last.is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not converged after {limit:?}: {last:?}; {}",
            sim.describe()
        ))
    }
}

/// N5: under loss, duplication and reordering, with a partition, a restart and a
/// kill along the way, every live node ends up showing exactly what the processes'
/// own nodes say — not merely the same as each other.
#[test]
fn groups_and_names_converge_to_the_truth_on_every_node_after_heal() {
    for_each_seed(
        "groups_and_names_converge_to_the_truth_on_every_node_after_heal",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 5, secs(20))?;
            let mut w = Workload::new(seed);
            sim.set_network(lossy());
            w.run(&mut sim, 40, secs(8));
            sim.partition(&[0, 1], &[2, 3, 4]);
            w.run(&mut sim, 40, secs(8));
            sim.heal();
            let victim = 1 + usize::try_from(seed % 4).unwrap_or(0);
            sim.kill(victim);
            w.run(&mut sim, 20, secs(4));
            if seed % 2 == 0 {
                sim.restart(victim);
            }
            w.run(&mut sim, 20, secs(4));
            sim.set_network(LinkConfig::default());
            settle(&mut sim, secs(40))
        },
    );
}

/// N5 with every broadcast lost: no delta rides a SWIM packet or a batch frame, and
/// anti-entropy alone still brings every node to the truth.
#[test]
fn state_converges_when_every_broadcast_is_lost() {
    for_each_seed(
        "state_converges_when_every_broadcast_is_lost",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 5, secs(300))?;
            sim.lose_broadcasts = true;
            let mut w = Workload::new(seed);
            w.run(&mut sim, 60, secs(6));
            settle(&mut sim, secs(30))?;
            if sim.broadcasts_lost == 0 {
                return Err("no broadcast was attempted: the test checks nothing".into());
            }
            Ok(())
        },
    );
}

/// Exact tracking: for every monitor, its snapshot with every event applied in order
/// equals the node's current view of the monitored scope or group, at every check, under
/// loss, partitions, node kills (NodeDown), returns (NodeRestored), restarts and
/// meta changes.
#[test]
fn monitor_streams_equal_the_diff_of_successive_snapshots() {
    for_each_seed(
        "monitor_streams_equal_the_diff_of_successive_snapshots",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 4, secs(12))?;
            sim.set_network(lossy());
            let mut w = Workload::new(seed);
            let mut watches: Vec<Watch> = Vec::new();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut events = 0usize;
            for round in 0..40u64 {
                // (Re)subscribe on nodes that have no monitor in their current life.
                for n in sim.live_nodes() {
                    let life = sim.nodes[n].life;
                    if watches.iter().any(|m| m.node == n && m.life == life) {
                        continue;
                    }
                    for group in [None, Some("a")] {
                        let scope = "default";
                        let made = sim.with_node(n, |node, _| node.monitor(None, scope, group));
                        if let Some(Ok((id, snapshot, inbox))) = made {
                            watches.push(Watch {
                                node: n,
                                life,
                                id,
                                view: MonitorView::new(&snapshot),
                                inbox,
                                group: group.map(str::to_owned),
                                scope: scope.to_owned(),
                            });
                        }
                    }
                }
                match round % 10 {
                    3 => sim.isolate(rng.random_range(0..4)),
                    6 => sim.heal(),
                    8 if round == 18 => sim.kill(3),
                    9 if round == 29 => sim.restart(3),
                    _ => {}
                }
                w.run(&mut sim, 4, ms(500));
                watches.retain(|m| {
                    sim.nodes[m.node].life == m.life && sim.nodes[m.node].node.is_some()
                });
                for m in &mut watches {
                    while let Some(item) = m.inbox.try_recv() {
                        match item {
                            MonitorItem::Event(ev) => {
                                events += 1;
                                m.view.apply(&ev).map_err(|e| {
                                    format!("seed {seed} node n{}: bad event: {e}", m.node)
                                })?;
                            }
                            MonitorItem::Overflowed => return Err("monitor overflowed".into()),
                        }
                    }
                    let now = sim
                        .node(m.node)
                        .map(|node| node.registry().snapshot(&m.scope, m.group.as_deref()));
                    if now.as_ref() != Some(&m.view.snapshot()) {
                        return Err(format!(
                            "round {round}: n{} monitor {:?} drifted: view {:?} vs registry {:?}",
                            m.node,
                            m.id,
                            m.view.snapshot(),
                            now
                        ));
                    }
                }
            }
            if events == 0 {
                return Err("no event was delivered: the test checks nothing".into());
            }
            Ok(())
        },
    );
}

/// Names: claims made concurrently on both sides of a partition resolve to one winner
/// on every node — the first claim in (HLC, node, PID) order — and each losing process
/// receives exactly one NameConflict naming that winner.
#[test]
fn concurrent_registrations_resolve_to_one_winner_and_one_notice_per_loser() {
    for_each_seed(
        "concurrent_registrations_resolve_to_one_winner_and_one_notice_per_loser",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 4, secs(300))?;
            sim.set_network(lossy());
            let mut rng = StdRng::seed_from_u64(seed);
            sim.partition(&[0, 1], &[2, 3]);
            sim.run_until(secs(15), |s| {
                s.all_see(&[0, 1], 2, &[mesh_core::membership::MemberState::Down])
                    && s.all_see(&[2, 3], 0, &[mesh_core::membership::MemberState::Down])
            });
            // Per name: the claimants (node, pid, mailbox) on both sides, and the order key
            // of each claim as its own node recorded it.
            let mut claims: BTreeMap<String, Vec<(usize, Pid, Mailbox)>> = BTreeMap::new();
            let mut keys: BTreeMap<String, Vec<(mesh_core::hlc::Hlc, String, Pid)>> =
                BTreeMap::new();
            for k in 0..4 {
                let name = format!("svc{k}");
                for side in [[0usize, 1], [2, 3]] {
                    let n = side[rng.random_range(0..2)];
                    sim.run_for(ms(rng.random_range(0..300)));
                    let made = sim.with_node(n, |node, now| {
                        let (pid, mb) = node.spawn(None);
                        node.register(now, &name, &pid, None, ConflictPolicy::Notify)
                            .map(|()| (pid, mb, node.whereis(&name).map(|i| i.hlc)))
                    });
                    match made {
                        Some(Ok((pid, mb, Some(hlc)))) => {
                            keys.entry(name.clone()).or_default().push((
                                hlc,
                                pid.node.clone(),
                                pid.clone(),
                            ));
                            claims.entry(name.clone()).or_default().push((n, pid, mb));
                        }
                        other => return Err(format!("register on n{n} failed: {other:?}")),
                    }
                }
            }
            sim.run_for(secs(1));
            sim.heal();
            sim.set_network(LinkConfig::default());
            settle(&mut sim, secs(30))?;
            for (name, claimants) in &claims {
                let holders: BTreeSet<Option<Pid>> = sim
                    .live_nodes()
                    .into_iter()
                    .map(|n| {
                        sim.node(n)
                            .and_then(|node| node.whereis(name))
                            .map(|i| i.pid)
                    })
                    .collect();
                if holders.len() != 1 {
                    return Err(format!("{name}: holders differ: {holders:?}"));
                }
                let Some(Some(holder)) = holders.into_iter().next() else {
                    return Err(format!("{name}: nobody holds it"));
                };
                // The documented order: earliest HLC, then lowest node, then PID.
                let first = keys
                    .get(name)
                    .and_then(|k| k.iter().min())
                    .map(|(_, _, p)| p.clone());
                if first.as_ref() != Some(&holder) {
                    return Err(format!(
                        "{name}: holder {holder:?} is not the first claim {first:?} of {:?}",
                        keys.get(name)
                    ));
                }
                for (n, pid, mb) in claimants {
                    let mut notices = Vec::new();
                    while let Some(d) = mb.try_recv() {
                        if let Delivery::NameConflict { name: nm, winner } = d {
                            notices.push((nm, winner));
                        }
                    }
                    let want: Vec<(String, Pid)> = if *pid == holder {
                        Vec::new()
                    } else {
                        vec![(name.clone(), holder.clone())]
                    };
                    if notices != want {
                        return Err(format!(
                            "{name}: n{n} {pid:?} got {notices:?}, want {want:?}"
                        ));
                    }
                }
            }
            Ok(())
        },
    );
}

/// Two-phase failure: a killed node's entries are hidden everywhere, purged after
/// permdown, and never seen again — not after more churn, not after partitions heal,
/// not after the node restarts as a new incarnation.
#[test]
fn nothing_hidden_resurrects_after_permdown_or_a_new_incarnation() {
    for_each_seed(
        "nothing_hidden_resurrects_after_permdown_or_a_new_incarnation",
        SEEDS,
        |seed| {
            let permdown = secs(8);
            let mut sim = cluster(seed, 5, permdown)?;
            sim.set_network(lossy());
            let mut w = Workload::new(seed);
            let victim = 1 + usize::try_from(seed % 4).unwrap_or(0);
            for _ in 0..3 {
                w.spawn(&mut sim, victim);
            }
            w.run(&mut sim, 40, secs(4));
            settle(&mut sim, secs(30))?;
            let victim_name = sim.nodes[victim].name.clone();
            let old_incarnation = sim.nodes[victim].incarnation;
            sim.kill(victim);
            // Somebody else was cut off meanwhile: the purge must not come back through it.
            let cut = (victim + 1) % 5;
            sim.isolate(cut);
            w.run(&mut sim, 20, secs(3));
            sim.heal();
            w.run(&mut sim, 40, permdown + secs(4));
            if seed % 2 == 0 {
                sim.restart(victim);
            }
            let stale = |s: &Sim| -> Option<String> {
                s.live_nodes().into_iter().find_map(|n| {
                    let v = view(s, n)?;
                    v.members
                        .keys()
                        .map(|(_, _, p)| p)
                        .chain(v.names.values())
                        .find(|p| p.node == victim_name && p.incarnation == old_incarnation)
                        .map(|p| format!("n{n} still shows {p:?}"))
                })
            };
            for _ in 0..20 {
                w.run(&mut sim, 2, ms(500));
                if let Some(bad) = stale(&sim) {
                    return Err(bad);
                }
            }
            sim.set_network(LinkConfig::default());
            settle(&mut sim, secs(30))?;
            match stale(&sim) {
                Some(bad) => Err(bad),
                None => Ok(()),
            }
        },
    );
}

/// Two-phase failure, phase one only: a node cut off for less than permdown is hidden
/// (its members leave the others' views with NodeDown) and comes back with
/// NodeRestored events when it returns, with no new join by its processes.
#[test]
fn a_node_back_before_permdown_is_unhidden_with_node_restored_events() {
    for_each_seed(
        "a_node_back_before_permdown_is_unhidden_with_node_restored_events",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 4, secs(60))?;
            let mut w = Workload::new(seed);
            let away = 1 + usize::try_from(seed % 3).unwrap_or(0);
            for _ in 0..2 {
                w.spawn(&mut sim, away);
            }
            for p in w.procs.iter().filter(|p| p.node == away) {
                let pid = p.pid.clone();
                sim.with_node(away, |node, now| {
                    node.join(now, "default", &["a".to_owned()], &pid, None)
                });
            }
            settle(&mut sim, secs(20))?;
            let observer = (away + 1) % 4;
            let Some(Ok((_, snapshot, inbox))) =
                sim.with_node(observer, |node, _| node.monitor(None, "default", Some("a")))
            else {
                return Err("monitor failed".into());
            };
            let before = snapshot.members.len();
            if before < 2 {
                return Err(format!(
                    "expected the away node's members in the snapshot: {snapshot:?}"
                ));
            }
            sim.isolate(away);
            let observer_sees_down = |s: &Sim| {
                s.all_see(
                    &[observer],
                    away,
                    &[mesh_core::membership::MemberState::Down],
                )
            };
            if !sim.run_until(secs(20), observer_sees_down) {
                return Err("the observer never saw the node down".into());
            }
            sim.run_for(secs(2));
            sim.heal();
            settle(&mut sim, secs(30))?;
            let mut reasons = Vec::new();
            while let Some(MonitorItem::Event(ev)) = inbox.try_recv() {
                reasons.push(ev.reason);
            }
            use mesh_core::registry::EventReason::{NodeDown, NodeRestored};
            let downs = reasons.iter().filter(|r| **r == NodeDown).count();
            let restored = reasons.iter().filter(|r| **r == NodeRestored).count();
            if downs != 2 || restored != 2 {
                return Err(format!(
                    "want 2 NodeDown then 2 NodeRestored, got {reasons:?}"
                ));
            }
            Ok(())
        },
    );
}

/// Runs a `sync(All)` on node `n` and steps the simulator one instant at a time until
/// its completion comes out; returns the barrier's result (Err if it never completed).
fn sync_all(sim: &mut Sim, n: usize, timeout: Duration) -> Result<(), String> {
    let sync = Command::Sync {
        mode: SyncMode::All,
        timeout,
    };
    let id = sim.command(n, sync).ok_or("node is dead")?;
    let deadline = sim.elapsed() + timeout + secs(1);
    loop {
        if let Some(reply) = sim.reply(n, id) {
            return match reply {
                Reply::Synced(result) => result.map_err(|e| e.to_string()),
                other => Err(format!("not a barrier's reply: {other:?}")),
            };
        }
        if sim.elapsed() > deadline || !sim.step() {
            return Err(format!("sync {id:?} never completed"));
        }
    }
}

/// N6 covers removals: once `sync(All)` returns Ok after a leave, an unregister or a
/// process exit, the peer no longer shows the removed member or name at that same
/// instant (a removal mints no dot, so a barrier on dot sequences alone returns at
/// once).
#[test]
fn sync_returns_only_once_a_removal_has_reached_every_peer() {
    for_each_seed(
        "sync_returns_only_once_a_removal_has_reached_every_peer",
        SEEDS,
        |seed| {
            let mut sim = cluster(seed, 2, secs(300))?;
            sim.set_network(lossy());
            let group = vec!["g".to_owned()];
            let shows = |sim: &Sim, pid: &Pid| -> Result<(bool, bool), String> {
                let v = view(sim, 1).ok_or("n1 is dead")?;
                Ok((
                    v.members
                        .keys()
                        .any(|(s, g, p)| s == "default" && g == "g" && p == pid),
                    v.names.get("x") == Some(pid),
                ))
            };
            let timeout = secs(20);
            for (round, removal) in ["leave", "unregister", "exit"].iter().enumerate() {
                let (pid, _mailbox) = sim
                    .with_node(0, |node, _| node.spawn(None))
                    .ok_or("n0 is dead")?;
                sim.with_node(0, |node, now| {
                    node.join(now, "default", &group, &pid, None)
                        .map_err(|e| e.to_string())?;
                    node.register(now, "x", &pid, None, ConflictPolicy::default())
                        .map_err(|e| e.to_string())
                })
                .ok_or("n0 is dead")??;
                sync_all(&mut sim, 0, timeout)?;
                if shows(&sim, &pid)? != (true, true) {
                    return Err(format!("round {round}: after the add barrier n1 lacks P"));
                }
                sim.with_node(0, |node, now| match *removal {
                    "leave" => {
                        node.leave_groups(now, "default", &group, &pid)
                            .map_err(|e| e.to_string())?;
                        node.unregister(now, "x")
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                    "unregister" => node
                        .unregister(now, "x")
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    _ => node.exit(now, &pid).map_err(|e| e.to_string()),
                })
                .ok_or("n0 is dead")??;
                sync_all(&mut sim, 0, timeout)?;
                let (member, name) = shows(&sim, &pid)?;
                let member_expected = *removal == "unregister";
                if name || member != member_expected {
                    return Err(format!(
                        "round {round} ({removal}): sync(All) returned Ok while n1 shows \
                         member={member} name={name}"
                    ));
                }
                if *removal == "unregister" {
                    sim.with_node(0, |node, now| node.exit(now, &pid))
                        .ok_or("n0 is dead")?
                        .map_err(|e| e.to_string())?;
                    sync_all(&mut sim, 0, timeout)?;
                    if shows(&sim, &pid)?.0 {
                        return Err(format!("round {round}: n1 still shows P after exit + sync"));
                    }
                }
            }
            Ok(())
        },
    );
}

/// N7: groups state pushed for an origin that SWIM has never seen is not merged (so it
/// can never linger past every permdown, since `down` hides only a member's state), is
/// counted as `unknown_origin`, and is not relayed: no node shows the ghost's member.
/// A push of the same shape for a real member's process is merged (the control).
#[test]
fn state_for_an_origin_membership_never_saw_is_refused_counted_and_not_relayed() {
    use mesh_core::node::StateFrame;
    use mesh_core::registry::GroupEntry;
    use mesh_crdt::Replica;
    use mesh_transport::frame::Class;

    fn push_for(origin: &str, incarnation: u64) -> Vec<u8> {
        let mut r: Replica<String, GroupEntry> = Replica::new(origin.to_owned(), incarnation);
        let groups = r.add(GroupEntry {
            scope: "default".into(),
            group: "ghosts".into(),
            pid: Pid::new(origin, incarnation, 1),
            meta: None,
        });
        let frame = StateFrame::Push {
            groups,
            names: mesh_crdt::Delta::new(),
            tags: Vec::new(),
        };
        rmp_serde::to_vec_named(&frame).expect("encodes")
    }

    for_each_seed(
        "state_for_an_origin_membership_never_saw_is_refused_counted_and_not_relayed",
        20,
        |seed| {
            let mut sim = cluster(seed, 3, secs(30))?;
            let ghost = push_for("ghost", 1);
            sim.with_node(0, |node, now| {
                node.handle_frame(now, "n1", Class::State, &ghost)
            });
            sim.run_for(secs(5));
            for n in 0..3 {
                let seen = sim
                    .node(n)
                    .map_or(0, |node| node.registry().member_count("default", "ghosts"));
                if seen != 0 {
                    return Err(format!("n{n} shows the ghost's member"));
                }
            }
            let refused = sim
                .node(0)
                .and_then(|node| node.stats().dropped.get("unknown_origin").copied())
                .unwrap_or(0);
            if refused == 0 {
                return Err("the refusal was not counted".into());
            }
            // The control: a push for a process of n2 (a member, at its incarnation) is
            // merged by n0.
            let inc = sim
                .node(2)
                .map(|node| node.boot_incarnation())
                .ok_or("n2 runs")?;
            let member = push_for("n2", inc);
            sim.with_node(0, |node, now| {
                node.handle_frame(now, "n1", Class::State, &member)
            });
            let merged = sim
                .node(0)
                .is_some_and(|node| node.registry().member_count("default", "ghosts") == 1);
            if !merged {
                return Err("a member's state must be merged (the control)".into());
            }
            Ok(())
        },
    );
}
