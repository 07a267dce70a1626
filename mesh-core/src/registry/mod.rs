//! Process groups with Erlang `pg` semantics and an eventual name registry, sans-IO.
//!
//! A [`Registry`] is one node's copy of two replicated sets, each an owner-partitioned
//! delta-ORSWOT from `mesh-crdt` ([`Replica`], origin = node name):
//!
//! - **groups**: [`GroupEntry`] `{scope, group, pid, meta}`, one dot per join;
//! - **names**: [`NameClaim`] `{name, hlc, pid, policy, meta}`, one dot per registration.
//!
//! Only the node hosting a process writes that process's entries, so groups have no
//! write conflicts at all. Names can conflict (two nodes claim one name, e.g. on both
//! sides of a partition); a fixed order settles them on every node alike.
//!
//! # Driving it
//!
//! Inputs are method calls with an explicit `now` ([`join`](Registry::join),
//! [`merge_groups`](Registry::merge_groups), [`node_down`](Registry::node_down),
//! [`handle_tick`](Registry::handle_tick), ...); outputs ([`RegistryOutput`]: deltas to
//! disseminate, monitor events, name conflicts to deliver, processes to kill) are
//! drained with [`poll_output`](Registry::poll_output) after every input, and
//! [`poll_timeout`](Registry::poll_timeout) says when to call `handle_tick`. No clock,
//! no IO, no randomness. The output queue holds only what the last inputs produced;
//! the node drains it after each input, which bounds it. Local changes do not depend on
//! time; they take `now` so the driving loop is uniform.
//!
//! The node must (this module trusts it for):
//! - pass only PIDs of live local processes to local operations (a PID of another node
//!   is refused with a `NotLocal` error);
//! - call [`process_exited`](Registry::process_exited) when a local process exits;
//! - call [`node_down`](Registry::node_down) when SWIM declares a peer down and
//!   [`node_alive`](Registry::node_alive) when a peer is up and has told us its CRDT
//!   incarnation (the one in its digests, [`crdt_incarnation`](Registry::crdt_incarnation));
//! - exchange digests ([`groups`](Registry::groups)`().digest()`, `missing_for`) for
//!   anti-entropy and pass what arrives to `merge_groups` / `merge_names`.
//!
//! ```
//! use mesh_core::pid::Pid;
//! use mesh_core::registry::{Registry, RegistryConfig, RegistryOutput};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut n1 = Registry::new("n1".into(), 1, RegistryConfig::default());
//! let mut n2 = Registry::new("n2".into(), 1, RegistryConfig::default());
//! let worker = Pid::new("n1", 1, 7);
//! n1.join(now, "jobs", &["eu".into()], &worker, None).expect("valid join");
//! // Deliver n1's outputs to n2 (a real node gossips them).
//! while let Some(out) = n1.poll_output() {
//!     if let RegistryOutput::GroupsDelta { delta, exited } = out {
//!         n2.merge_groups(now, &delta, &exited).expect("valid delta");
//!     }
//! }
//! assert_eq!(n2.members("jobs", "eu"), vec![worker]);
//! ```
//!
//! # Properties
//!
//! Safety, after every input:
//!
//! 1. **Exact tracking.** For every monitor, its snapshot followed by every event
//!    output for it, applied in order ([`MonitorView`]), equals the registry's
//!    [`snapshot`](Registry::snapshot) of what it monitors — across local changes,
//!    merges, hide, unhide, purge, reincarnation and metadata changes. No event is lost
//!    or duplicated, and none is output for a monitor after
//!    [`demonitor`](Registry::demonitor) returned or its owner exited.
//! 2. **The view is the state.** Queries and monitors show exactly the replicated
//!    groups and claims of the origins that are not hidden. An empty group never
//!    appears (`which_groups`, `scopes`, snapshots).
//! 3. **Hidden means invisible; purged means gone.** No entry or claim of a hidden
//!    node is visible. Nothing purged (permdown) or superseded by a newer incarnation
//!    is ever visible again: an origin's entries come back only when the origin mints
//!    them again under a newer incarnation (a restart brings new processes; a node
//!    purged while merely cut off re-announces its live processes by reincarnating).
//! 4. **One winner.** The winner of a name is the smallest visible claim in the order
//!    *earliest HLC, then lowest node id, then PID* — a function of the set of visible
//!    claims, so nodes holding the same claims agree whatever order they learned
//!    them in.
//! 5. **Losers are handled once, on their own node.** Exactly one
//!    [`RegistryOutput::NameConflict`] per losing claim, output by the node hosting the
//!    loser, which retracts it.
//! 6. **Bad input changes nothing.** Every refused call or delta leaves the registry
//!    as it was and says why (an error; refused deltas are also counted).
//!
//! Liveness:
//!
//! - Registries that received each other's deltas — in any order, duplicated, or lost
//!   and repaired by anti-entropy (`missing_for(digest)` both ways) — and see each
//!   other alive hold equal visible state: groups, members, multiplicities, metadata
//!   and name winners.
//! - Every name conflict settles: once the conflicting claims have reached each other's
//!   nodes, each name has at most one claim everywhere.
//! - A hidden node is purged once `permdown` has passed ([`handle_tick`](Registry::handle_tick)
//!   at [`poll_timeout`](Registry::poll_timeout)).
//!
//! Unit tests (`tests.rs`) check the `pg` semantics, validation and each mechanism; the
//! property test `tests/registry_convergence.rs` runs three registries with random
//! operations over a lossy, duplicating, reordering network and checks 1–5 after every
//! step and the liveness properties after healing; its negative control shows the
//! exact-tracking checker fails when one event is dropped.
//!
//! # Groups
//!
//! As in Erlang `pg`: [`join`](Registry::join) and [`leave`](Registry::leave) take one
//! local PID and one or many groups; membership has multiplicity (join twice, leave
//! twice; [`members`](Registry::members) lists a PID once per occurrence);
//! [`LeaveError::NotJoined`] only if none of the groups was joined; scopes are
//! independent namespaces; [`local_members`](Registry::local_members) and
//! [`which_local_groups`](Registry::which_local_groups) restrict to this node's
//! processes. A process exit ([`process_exited`](Registry::process_exited)) leaves every
//! group in one delta and retracts every claim in one more.
//!
//! # Metadata
//!
//! Each member `(scope, group, pid)` has one optional metadata value, written only by
//! its owner's node (`join` with `Some(meta)`, or [`set_meta`](Registry::set_meta)); last
//! writer wins. A write re-mints every occurrence of the member with the new value (it
//! removes the old dots and adds as many new ones), so the owner's newest dots always
//! carry the newest value. A member's visible metadata is the one of its newest dot —
//! on a peer that applied only part of a chunked rewrite, that is still the newest
//! write it has seen; such a peer may meanwhile count the member's occurrences twice
//! (new dots arrived, removal of the old ones not yet) or not at all (the reverse),
//! until the rest of the rewrite arrives. A rewrite sent whole is applied atomically.
//!
//! # Events
//!
//! A monitor ([`monitor`](Registry::monitor) with a group, or the whole scope with
//! `None`) gets an atomic [`Snapshot`] and then [`GroupEvent`]s. Events are derived by
//! comparing each touched member's `(occurrences, metadata)` before and after an input:
//!
//! - one event per occurrence gained (`Joined`, or `NodeRestored` when a hidden node
//!   comes back with the incarnation that was hidden) or lost (`Left`, `ProcessExit`,
//!   `NodeDown`), so a subscriber can keep multiplicities;
//! - a `MetaChanged` when a member that stays changes metadata (before the count
//!   events of the same input); a rewrite that keeps the count is that one event.
//!
//! A remote removal is `ProcessExit` when its delta came with the PID in the exit hint
//! (`exited`), and `Left` otherwise: a removal repaired by anti-entropy carries no hint
//! and is reported `Left`. Dots that go because their node's incarnation was superseded
//! or purged are `NodeDown`. Within one input, events are ordered by member.
//!
//! # Node failure, in two phases
//!
//! 1. [`node_down`](Registry::node_down): the node's entries and claims are **hidden** —
//!    gone from queries, monitors (`NodeDown` events) and name resolution — but kept;
//!    its deltas keep merging silently.
//! 2. After `permdown` ([`RegistryConfig`]), [`handle_tick`](Registry::handle_tick)
//!    **purges** whatever incarnation of the node is held ([`Replica::purge_origin`]);
//!    the retirement markers are output as deltas so the purge spreads. Purged names
//!    are thereby unregistered.
//!
//! A node reported alive ([`node_alive`](Registry::node_alive)) before permdown is
//! **unhidden** without any transfer: its current entries reappear (`NodeRestored` if
//! it is the incarnation that was hidden, `Joined` if a newer one arrived meanwhile).
//! An incarnation newer than the one held purges the older one at once, in both
//! replicas, whether it arrives in a groups delta, a names delta or only through
//! `node_alive` (a header of the new incarnation is merged). A purge
//! marker for this node's own incarnation (a peer purged it while it was cut off) makes
//! the registry move both replicas to a new CRDT incarnation ([`Replica::reincarnate`])
//! and output them, so its entries come back everywhere.
//!
//! # Names
//!
//! [`register`](Registry::register) consults only the local view (eventual) and fails
//! with `AlreadyRegistered(winner)` if it has a visible winner. After every merge and
//! unhide, each local claim of a touched name is compared with the name's visible
//! winner; the **winner's policy** decides how a local loser is handled, once:
//!
//! - `notify` (default): the claim is retracted and its process gets
//!   `NameConflict{name, winner}`;
//! - `kill`: the same, plus [`RegistryOutput::Kill`] for the losing process;
//! - `unregister_both`: both claims end retracted, each on its own node, and both
//!   processes are notified once. The loser's node notifies its process at once, and
//!   from then on the name is no longer the process's (`unregister` and its exit do
//!   not touch it), but it **keeps the losing claim in the replica** until the winning
//!   claim is gone from its state (retracted, exited or purged — not merely hidden),
//!   then retracts it. Because the losing claim stays visible until then, whatever its
//!   process does, the winner's node sees it even if it only ever receives merged
//!   states; on seeing a winning local claim with policy `unregister_both` and any
//!   other visible claim, it notifies its own process (`loser == winner`) and retracts
//!   it. Corners, where only the loser is notified: before the winner's node saw the
//!   losing claim, the winner's node was purged (permdown on any node: the marker
//!   reaches the loser's node, which then sees the winning claim gone) or the loser's
//!   node restarted.
//!
//! Remote HLCs are observed on merge, so a later local claim is stamped after every
//! claim this node has seen. Names are unregistered when their process exits and on
//! permdown of their node.
//!
//! # Cost
//!
//! The view keeps incremental indexes, updated from local changes and merge reports:
//! scope → group (hashed by name; the names are also kept in order for the listing
//! queries, touched only when a group appears or disappears) → PID, and local PID →
//! its groups (hashed). A local join or leave therefore costs the replica's own
//! O(log n) update plus O(1) expected searches here; `member_count` is O(1) expected;
//! listing queries cost their output. The hashes use fixed keys (deterministic; keys
//! come from this node or validated deltas of authenticated peers), and no output
//! depends on hash order. `benches/src/registry_bench.rs` measures join+leave from 10
//! to 100 000 groups, next to the bare replica's cost.

mod error;
mod groups;
mod monitor;
mod names;
mod types;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use mesh_crdt::{ChangeKind, Delta, Replica};

use crate::hlc::HlcClock;
use crate::pid::Pid;

pub use error::{
    Field, InvalidField, JoinError, LeaveError, MergeError, RegisterError, SetMetaError,
    UnregisterError, MAX_META_BYTES, MAX_NAME_BYTES,
};
pub use monitor::{MonitorView, ViewError};
pub use types::{
    ConflictPolicy, DropStats, EventReason, GroupEntry, GroupEvent, MemberInfo, MonitorId,
    NameClaim, NameInfo, RegistryConfig, RegistryOutput, RegistryStats, ScopeStats, Snapshot,
};

use monitor::Monitors;
use names::NameView;
use view::{DotChange, FixedState, GroupView, Sink};

/// A node that was declared down and is not yet purged or back.
#[derive(Clone, Debug)]
struct Hidden {
    purge_at: Instant,
    /// The node's groups incarnation when it was hidden.
    incarnation: Option<u64>,
    /// Dots (groups and names) held for it.
    dots: usize,
}

impl Hidden {
    fn track(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Added => self.dots += 1,
            ChangeKind::Removed | ChangeKind::Purged => self.dots = self.dots.saturating_sub(1),
        }
    }
}

/// A losing local claim under `unregister_both`: kept in the replica, as evidence for
/// the winner's node, until the claim it lost to is gone.
#[derive(Clone, Debug)]
struct Doomed {
    mine: NameClaim,
    waits_on: NameClaim,
}

/// One node's groups and eventual names: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Registry {
    node: String,
    config: RegistryConfig,
    groups: Replica<String, GroupEntry>,
    names: Replica<String, NameClaim>,
    clock: HlcClock,
    /// Visible groups, indexed.
    view: GroupView,
    /// Local PID -> scope -> the groups it is a member of. Never iterated in an order
    /// that matters; hashed (with fixed keys: deterministic) because it is searched on
    /// every join and leave.
    local_members: HashMap<Pid, BTreeMap<String, BTreeSet<String>>, FixedState>,
    /// Visible claims, indexed by name.
    claims: NameView,
    /// This node's live claims, by name (at most one per name).
    local_claims: BTreeMap<String, NameClaim>,
    /// Local PID -> the names it claims.
    claims_of: BTreeMap<Pid, BTreeSet<String>>,
    /// `unregister_both` losers already notified, by name: no longer the process's
    /// (not in `local_claims`), still in the replica until the winning claim is gone.
    doomed: BTreeMap<String, Doomed>,
    hidden: BTreeMap<String, Hidden>,
    monitors: Monitors,
    out: VecDeque<RegistryOutput>,
    stats: RegistryStats,
}

/// Joins `d` into the accumulated delta.
fn fold<E: Ord + Clone + std::hash::Hash>(
    acc: &mut Option<Delta<String, E>>,
    d: Option<Delta<String, E>>,
) {
    match (acc.as_mut(), d) {
        (_, None) => {}
        (None, Some(d)) => *acc = Some(d),
        (Some(a), Some(d)) => {
            a.merge(&d);
        }
    }
}

impl Registry {
    /// A registry for `node` whose replicas start at CRDT `incarnation`, which must be
    /// larger than any incarnation an earlier boot of the node used (e.g. the boot
    /// incarnation). Call [`announce`](Self::announce) next.
    pub fn new(node: String, incarnation: u64, config: RegistryConfig) -> Self {
        Self {
            groups: Replica::new(node.clone(), incarnation),
            names: Replica::new(node.clone(), incarnation),
            node,
            config,
            clock: HlcClock::new(),
            view: GroupView::default(),
            local_members: HashMap::default(),
            claims: NameView::default(),
            local_claims: BTreeMap::new(),
            claims_of: BTreeMap::new(),
            doomed: BTreeMap::new(),
            hidden: BTreeMap::new(),
            monitors: Monitors::default(),
            out: VecDeque::new(),
            stats: RegistryStats::default(),
        }
    }

    /// Queues the deltas that announce this incarnation: merging them anywhere purges
    /// every older incarnation of this node at once.
    pub fn announce(&mut self) {
        let g = self.groups.announce();
        let n = self.names.announce();
        self.queue_groups_delta(Some(g), Vec::new());
        self.queue_names_delta(Some(n));
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The CRDT incarnation both replicas mint in (what peers pass to
    /// [`node_alive`](Self::node_alive)). It starts at the one given to
    /// [`new`](Self::new) and grows when the node reincarnates.
    pub fn crdt_incarnation(&self) -> u64 {
        self.groups.incarnation()
    }

    /// The groups replica (digests, `missing_for`, chunks).
    pub fn groups(&self) -> &Replica<String, GroupEntry> {
        &self.groups
    }

    /// The names replica.
    pub fn names(&self) -> &Replica<String, NameClaim> {
        &self.names
    }

    /// The local process `pid` exited: it leaves every group (one groups delta, with
    /// `pid` in its exit hint), its names are unregistered (one names delta), and the
    /// monitors it owned are removed (with their undelivered events).
    pub fn process_exited(&mut self, now: Instant, pid: &Pid) {
        let _ = now;
        for id in self.monitors.remove_owned_by(pid) {
            self.discard_events(id);
        }
        let g = self.exit_groups(pid);
        self.queue_groups_delta(g, vec![pid.clone()]);
        let n = self.exit_names(pid);
        self.queue_names_delta(n);
    }

    // --- queries -------------------------------------------------------------------

    /// The visible members of `group` of `scope`, sorted, each PID once per occurrence.
    pub fn members(&self, scope: &str, group: &str) -> Vec<Pid> {
        let mut out = Vec::new();
        for (pid, m) in self.view.members(scope, group) {
            out.extend(std::iter::repeat_n(pid, m.count()).cloned());
        }
        out
    }

    /// The visible members of `group` with their number of occurrences and metadata,
    /// sorted by PID.
    pub fn members_with_meta(&self, scope: &str, group: &str) -> Vec<(Pid, usize, Option<String>)> {
        self.view
            .members(scope, group)
            .map(|(pid, m)| (pid.clone(), m.count(), m.meta().cloned()))
            .collect()
    }

    /// The local members of `group`, sorted, each once per occurrence.
    pub fn local_members(&self, scope: &str, group: &str) -> Vec<Pid> {
        let mut out = Vec::new();
        for (pid, m) in self.view.members(scope, group) {
            if pid.node == self.node {
                out.extend(std::iter::repeat_n(pid, m.count()).cloned());
            }
        }
        out
    }

    /// The number of visible occurrences in `group` (`members(..).len()`), in O(log n).
    pub fn member_count(&self, scope: &str, group: &str) -> usize {
        self.view.member_count(scope, group)
    }

    /// The visible groups of `scope` (never an empty one), sorted.
    pub fn which_groups(&self, scope: &str) -> Vec<String> {
        self.view
            .group_counts(scope)
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The groups of `scope` that a local process has joined, sorted.
    pub fn which_local_groups(&self, scope: &str) -> Vec<String> {
        self.view.local_groups(scope).cloned().collect()
    }

    /// Every visible group of `scope` with its number of occurrences.
    pub fn group_counts(&self, scope: &str) -> Vec<(String, usize)> {
        self.view
            .group_counts(scope)
            .map(|(g, n)| (g.clone(), n))
            .collect()
    }

    /// The scopes with at least one visible group, sorted.
    pub fn scopes(&self) -> Vec<String> {
        self.view.scopes().cloned().collect()
    }

    /// The nodes currently hidden (declared down, not yet purged or back), sorted.
    pub fn hidden_nodes(&self) -> Vec<String> {
        self.hidden.keys().cloned().collect()
    }

    /// The visible members of `group` of `scope` (or of the whole scope with `None`)
    /// without subscribing.
    pub fn snapshot(&self, scope: &str, group: Option<&str>) -> Snapshot {
        Snapshot {
            scope: scope.to_owned(),
            group: group.map(str::to_owned),
            members: self.view.snapshot_members(scope, group),
        }
    }

    // --- monitors ------------------------------------------------------------------

    /// Subscribes to `group` of `scope` (or to every group of the scope with `None`)
    /// and returns the snapshot taken in the same call: every later change comes as
    /// [`RegistryOutput::Monitor`] events for the returned id. With an `owner` (a local
    /// process), the monitor is removed when that process exits.
    pub fn monitor(
        &mut self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> (MonitorId, Snapshot) {
        let id = self.monitors.add(owner, scope, group);
        (id, self.snapshot(scope, group))
    }

    /// Removes monitor `id` and discards its queued events: no output for `id` follows.
    /// Returns false if it was not live.
    pub fn demonitor(&mut self, id: MonitorId) -> bool {
        let live = self.monitors.remove(id);
        if live {
            self.discard_events(id);
        }
        live
    }

    fn discard_events(&mut self, id: MonitorId) {
        let before = self.out.len();
        self.out
            .retain(|o| !matches!(o, RegistryOutput::Monitor { id: i, .. } if *i == id));
        self.stats.dropped.demonitored_events += (before - self.out.len()) as u64;
    }

    // --- membership ----------------------------------------------------------------

    /// SWIM declared `node` down: hide its entries and claims (`NodeDown` events) and
    /// purge them after the permdown period. Nothing if it is already hidden; reports
    /// about this node itself are ignored (and counted).
    pub fn node_down(&mut self, now: Instant, node: &str) {
        if node == self.node {
            self.stats.dropped.self_membership += 1;
            return;
        }
        if self.hidden.contains_key(node) {
            return;
        }
        // Hide the groups: every visible dot of the node goes, as `NodeDown`.
        let elements: Vec<GroupEntry> = self
            .groups
            .state()
            .elements_of(&node.to_owned())
            .map(|(e, _)| e.clone())
            .collect();
        let mut dots = 0;
        let mut dot_keys = Vec::new();
        for e in &elements {
            for d in self.groups.state().dots_of(e) {
                if d.origin == node {
                    dot_keys.push((e, (d.incarnation, d.seq)));
                }
            }
        }
        dots += dot_keys.len();
        let mut changes: Vec<DotChange<'_>> = dot_keys
            .into_iter()
            .map(|(entry, dot)| DotChange {
                entry,
                dot,
                add: false,
                reason: EventReason::NodeDown,
            })
            .collect();
        self.apply_view(&mut changes);
        // Hide the claims.
        let claims: Vec<(NameClaim, usize)> = self
            .names
            .state()
            .elements_of(&node.to_owned())
            .map(|(c, n)| (c.clone(), n))
            .collect();
        for (c, n) in &claims {
            self.claims.remove(c, *n);
            dots += n;
        }
        self.hidden.insert(
            node.to_owned(),
            Hidden {
                purge_at: now + self.config.permdown,
                incarnation: self.groups.state().incarnation_of(&node.to_owned()),
                dots,
            },
        );
    }

    /// `node` is up and told us (in a digest or delta it sent itself) its CRDT
    /// incarnation. An incarnation newer than the one held purges the older one at once;
    /// an older one is stale and ignored (counted). If the node was hidden it is
    /// unhidden: its current entries reappear (`NodeRestored` if it is the incarnation
    /// that was hidden, `Joined` otherwise) and its claims are settled against ours.
    pub fn node_alive(&mut self, now: Instant, node: &str, crdt_incarnation: u64) {
        let _ = now; // unhiding does not depend on time
        if node == self.node {
            self.stats.dropped.self_membership += 1;
            return;
        }
        let origin = node.to_owned();
        let held = self
            .groups
            .state()
            .incarnation_of(&origin)
            .max(self.names.state().incarnation_of(&origin));
        if held.is_some_and(|h| crdt_incarnation < h) {
            self.stats.dropped.stale_alive += 1;
            return;
        }
        if held.is_none_or(|h| crdt_incarnation > h) {
            self.merge_headers(&origin, crdt_incarnation);
        }
        let Some(hidden) = self.hidden.remove(node) else {
            return;
        };
        let reason = if hidden.incarnation == self.groups.state().incarnation_of(&origin) {
            EventReason::NodeRestored
        } else {
            EventReason::Joined
        };
        let elements: Vec<GroupEntry> = self
            .groups
            .state()
            .elements_of(&origin)
            .map(|(e, _)| e.clone())
            .collect();
        let mut dot_keys = Vec::new();
        for e in &elements {
            for d in self.groups.state().dots_of(e) {
                if d.origin == node {
                    dot_keys.push((e, (d.incarnation, d.seq)));
                }
            }
        }
        let mut changes: Vec<DotChange<'_>> = dot_keys
            .into_iter()
            .map(|(entry, dot)| DotChange {
                entry,
                dot,
                add: true,
                reason,
            })
            .collect();
        self.apply_view(&mut changes);
        let claims: Vec<(NameClaim, usize)> = self
            .names
            .state()
            .elements_of(&origin)
            .map(|(c, n)| (c.clone(), n))
            .collect();
        let mut touched = BTreeSet::new();
        for (c, n) in &claims {
            for _ in 0..*n {
                self.claims.add(c);
            }
            touched.insert(c.name.clone());
        }
        self.settle(touched);
    }

    /// Purges every node hidden for at least the permdown period: its entries and
    /// claims go for good (counted in `purged_entries`) and the retirement markers are
    /// queued as deltas. Call it at [`poll_timeout`](Self::poll_timeout).
    pub fn handle_tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .hidden
            .iter()
            .filter(|(_, h)| h.purge_at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            self.hidden.remove(&node);
            if let Ok(p) = self.groups.purge_origin(&node) {
                self.stats.purged_entries += p.report.changes.len() as u64;
                self.queue_groups_delta(Some(p.delta), Vec::new());
            }
            if let Ok(p) = self.names.purge_origin(&node) {
                self.stats.purged_entries += p.report.changes.len() as u64;
                let touched = p
                    .report
                    .changes
                    .iter()
                    .map(|c| c.element.name.clone())
                    .collect();
                self.queue_names_delta(Some(p.delta));
                // unregister_both losers waiting on a purged winner retract now.
                self.settle(touched);
            }
        }
    }

    /// When [`handle_tick`](Self::handle_tick) next has work: the earliest permdown.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.hidden.values().map(|h| h.purge_at).min()
    }

    /// The next output, in the order produced.
    pub fn poll_output(&mut self) -> Option<RegistryOutput> {
        self.out.pop_front()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> RegistryStats {
        let (scopes, groups, members, local_members) = self.view.totals();
        RegistryStats {
            scopes,
            groups,
            members,
            local_members,
            names: self.claims.len(),
            local_claims: self.local_claims.len(),
            pending_retractions: self.doomed.len(),
            monitors: self.monitors.len(),
            hidden_nodes: self.hidden.len(),
            hidden_entries: self.hidden.values().map(|h| h.dots).sum(),
            ..self.stats.clone()
        }
    }

    /// Visible groups and occurrences per scope, sorted by scope.
    pub fn scope_stats(&self) -> Vec<ScopeStats> {
        self.view.scope_stats()
    }

    // --- internals -----------------------------------------------------------------

    /// The sequence numbers a local delta of this node adds or removes.
    fn own_seqs<'a, E>(&self, d: &'a Delta<String, E>) -> impl Iterator<Item = u64> + 'a {
        d.context_of(&self.node)
            .into_iter()
            .flat_map(|ctx| ctx.ranges())
            .flatten()
    }

    fn apply_view(&mut self, changes: &mut [DotChange<'_>]) {
        let mut sink = Sink {
            monitors: &self.monitors,
            out: &mut self.out,
            events: &mut self.stats.monitor_events,
        };
        self.view.apply(&self.node, changes, &mut sink);
    }

    fn queue_groups_delta(&mut self, delta: Option<Delta<String, GroupEntry>>, exited: Vec<Pid>) {
        if let Some(delta) = delta {
            self.stats.deltas_produced += 1;
            self.out
                .push_back(RegistryOutput::GroupsDelta { delta, exited });
        }
    }

    fn queue_names_delta(&mut self, delta: Option<Delta<String, NameClaim>>) {
        if let Some(delta) = delta {
            self.stats.deltas_produced += 1;
            self.out.push_back(RegistryOutput::NamesDelta(delta));
        }
    }

    fn count_merge(&mut self, changed: bool) {
        if changed {
            self.stats.merges_applied += 1;
        } else {
            self.stats.merges_noop += 1;
        }
    }

    fn count_refused(&mut self, e: &MergeError) {
        match e {
            MergeError::ForeignEntry { .. } => self.stats.dropped.foreign_entry += 1,
            MergeError::InvalidEntry { .. } => self.stats.dropped.invalid_entry += 1,
        }
    }

    /// Merges the headers of `origin`'s `incarnation` into both replicas: that purges
    /// any older incarnation here at once. A header is always valid input.
    fn merge_headers(&mut self, origin: &str, incarnation: u64) {
        let g = Replica::<String, GroupEntry>::new(origin.to_owned(), incarnation).announce();
        let n = Replica::<String, NameClaim>::new(origin.to_owned(), incarnation).announce();
        self.apply_groups(&g, &[]);
        self.apply_names(&n);
    }

    /// Both replicas of a node share one incarnation: when a merge showed one replica a
    /// newer incarnation of an origin than the other holds, the other purges the older
    /// one too.
    fn align_incarnations<'a>(&mut self, origins: impl Iterator<Item = &'a String>) {
        let origins: Vec<String> = origins.filter(|o| **o != self.node).cloned().collect();
        for origin in origins {
            let g = self.groups.state().incarnation_of(&origin);
            let n = self.names.state().incarnation_of(&origin);
            if let Some(newest) = g.max(n).filter(|_| g != n) {
                self.merge_headers(&origin, newest);
            }
        }
    }

    /// A peer purged (or superseded) our incarnation: move both replicas past it and
    /// output them whole, so our live entries and claims come back everywhere.
    fn reincarnate(&mut self) {
        let floor = [
            Some(self.groups.incarnation()),
            Some(self.names.incarnation()),
            self.groups.superseded_by(),
            self.names.superseded_by(),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let Some(next) = floor.checked_add(1) else {
            self.stats.dropped.incarnation_exhausted += 1;
            return;
        };
        let (Ok(g), Ok(n)) = (self.groups.reincarnate(next), self.names.reincarnate(next)) else {
            // Unreachable: `next` is above both replicas' floors.
            self.stats.dropped.incarnation_exhausted += 1;
            return;
        };
        self.stats.reincarnations += 1;
        // The re-minted dots get new keys in the view; nothing visible changes.
        let members: Vec<(Pid, String, String)> = self
            .local_members
            .iter()
            .flat_map(|(pid, scopes)| {
                scopes.iter().flat_map(move |(s, groups)| {
                    groups
                        .iter()
                        .map(move |g| (pid.clone(), s.clone(), g.clone()))
                })
            })
            .collect();
        for (pid, scope, group) in members {
            let (count, meta) = self
                .view
                .member(&scope, &group, &pid)
                .map_or((0, None), |m| (m.count(), m.meta().cloned()));
            if count == 0 {
                continue;
            }
            let entry = GroupEntry {
                scope,
                group,
                pid,
                meta,
            };
            let dots = self
                .groups
                .state()
                .dots_of(&entry)
                .into_iter()
                .filter(|d| d.origin == self.node)
                .map(|d| (d.incarnation, d.seq))
                .collect();
            self.view
                .retag(&entry.scope, &entry.group, &entry.pid, dots);
        }
        self.queue_groups_delta(Some(g), Vec::new());
        self.queue_names_delta(Some(n));
    }
}
