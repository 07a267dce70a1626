//! The visible groups view: an incremental index of the groups replica without the
//! hidden origins, and the one place that turns changes into monitor events.
//!
//! Every change to the view goes through [`GroupView::apply`] with the dots that
//! appeared or went. For each member touched it compares the member's state before and
//! after — `(occurrences, metadata)` — and emits exactly the events that take a
//! subscriber from one to the other (see [`Sink::diff`]). The events are derived from
//! the view itself, so snapshot + events equals the view by construction; the tests
//! check separately that the view equals the replicated state.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::pid::Pid;

use super::monitor::Monitors;
use super::types::{EventReason, GroupEntry, GroupEvent, MemberInfo, RegistryOutput, ScopeStats};

/// The hasher of the indexes searched on every join and leave: foldhash with a fixed
/// seed (the one `mesh-crdt`'s element index uses), deterministic and several times
/// cheaper than SipHash on short names. Keys come from this node or from validated
/// deltas, which only the cluster's authenticated peers send.
pub(crate) type FixedState = mesh_crdt::FixedState;

/// A dot key: `(origin incarnation, seq)`. Members are partitioned by origin (a PID's
/// entries come only from its node), so the origin name is implied.
pub(crate) type DotKey = (u64, u64);

/// One dot of `entry` that appeared (`add`) or went, and why.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DotChange<'a> {
    pub(crate) entry: &'a GroupEntry,
    pub(crate) dot: DotKey,
    pub(crate) add: bool,
    pub(crate) reason: EventReason,
}

/// One member: its live dots, each with the metadata it carries. The member's
/// metadata is the one of its newest dot (the owner's last write).
#[derive(Clone, Debug, Default)]
pub(crate) struct Member {
    dots: BTreeMap<DotKey, Option<String>>,
}

impl Member {
    pub(crate) fn count(&self) -> usize {
        self.dots.len()
    }

    pub(crate) fn meta(&self) -> Option<&String> {
        self.dots.last_key_value().and_then(|(_, m)| m.as_ref())
    }
}

#[derive(Clone, Debug, Default)]
struct Group {
    members: BTreeMap<Pid, Member>,
    dots: usize,
    /// Occurrences of local processes.
    local_dots: usize,
}

/// One scope: its groups hashed by name (searched on every change; a search in a large
/// ordered map costs a string comparison, and a likely cache miss, per step) and the
/// same names in order for the listing queries, touched only when a group appears or
/// disappears.
#[derive(Clone, Debug, Default)]
struct Scope {
    groups: HashMap<String, Group, FixedState>,
    names: BTreeSet<String>,
    /// The groups with at least one local occurrence.
    local_groups: BTreeSet<String>,
    dots: usize,
}

/// The visible state of the groups replica, indexed scope -> group -> pid.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupView {
    scopes: BTreeMap<String, Scope>,
    groups: usize,
    dots: usize,
    local_dots: usize,
}

/// Where events go: the monitors that may want them and the output queue.
pub(crate) struct Sink<'a> {
    pub(crate) monitors: &'a Monitors,
    pub(crate) out: &'a mut VecDeque<RegistryOutput>,
    pub(crate) events: &'a mut u64,
}

fn member_key(e: &GroupEntry) -> (&str, &str, &Pid) {
    (&e.scope, &e.group, &e.pid)
}

impl GroupView {
    pub(crate) fn member(&self, scope: &str, group: &str, pid: &Pid) -> Option<&Member> {
        self.scopes.get(scope)?.groups.get(group)?.members.get(pid)
    }

    fn state_of(&self, e: &GroupEntry) -> (usize, Option<String>) {
        self.member(&e.scope, &e.group, &e.pid)
            .map_or((0, None), |m| (m.count(), m.meta().cloned()))
    }

    /// Applies `changes` (in any order; sorted here by member) and emits the events of
    /// every member whose visible state changed. `local_node` marks local members.
    pub(crate) fn apply(
        &mut self,
        local_node: &str,
        changes: &mut [DotChange<'_>],
        sink: &mut Sink<'_>,
    ) {
        if changes.len() > 1 {
            changes.sort_by(|a, b| member_key(a.entry).cmp(&member_key(b.entry)));
        }
        let mut start = 0;
        while start < changes.len() {
            let entry = changes[start].entry;
            let run = changes[start..]
                .iter()
                .take_while(|c| member_key(c.entry) == member_key(entry))
                .count();
            let watched = sink.monitors.watches(&entry.scope, &entry.group);
            let before = if watched {
                self.state_of(entry)
            } else {
                (0, None)
            };
            let local = entry.pid.node == local_node;
            let mut gain = None;
            let mut loss = None;
            for c in &changes[start..start + run] {
                if c.add {
                    self.insert(c.entry, c.dot, local);
                    gain.get_or_insert(c.reason);
                } else {
                    // One input removes a member's dots for one reason: a member lives in
                    // one origin's partition, and a merge either joins that partition
                    // (removals) or replaces it (purges), never both.
                    self.remove(c.entry, c.dot, local);
                    loss.get_or_insert(c.reason);
                }
            }
            if watched {
                let after = self.state_of(entry);
                sink.diff(
                    entry,
                    before,
                    after,
                    gain.unwrap_or(EventReason::Joined),
                    loss.unwrap_or(EventReason::Left),
                );
            }
            start += run;
        }
    }

    // `get_mut` first, `entry` (which needs an owned key) only for a new key: one search
    // per level on the common path and no allocation.
    fn insert(&mut self, e: &GroupEntry, dot: DotKey, local: bool) {
        let scope = match self.scopes.get_mut(e.scope.as_str()) {
            Some(s) => s,
            None => self.scopes.entry(e.scope.clone()).or_default(),
        };
        let group = match scope.groups.get_mut(e.group.as_str()) {
            Some(g) => g,
            None => {
                self.groups += 1;
                scope.names.insert(e.group.clone());
                scope.groups.entry(e.group.clone()).or_default()
            }
        };
        let member = match group.members.get_mut(&e.pid) {
            Some(m) => m,
            None => group.members.entry(e.pid.clone()).or_default(),
        };
        if member.dots.insert(dot, e.meta.clone()).is_some() {
            return;
        }
        group.dots += 1;
        scope.dots += 1;
        self.dots += 1;
        if local {
            group.local_dots += 1;
            self.local_dots += 1;
            if group.local_dots == 1 {
                scope.local_groups.insert(e.group.clone());
            }
        }
    }

    fn remove(&mut self, e: &GroupEntry, dot: DotKey, local: bool) {
        let Some(scope) = self.scopes.get_mut(e.scope.as_str()) else {
            return;
        };
        let Some(group) = scope.groups.get_mut(e.group.as_str()) else {
            return;
        };
        let Some(member) = group.members.get_mut(&e.pid) else {
            return;
        };
        if member.dots.remove(&dot).is_none() {
            return;
        }
        group.dots -= 1;
        scope.dots -= 1;
        self.dots -= 1;
        if local {
            group.local_dots -= 1;
            self.local_dots -= 1;
            if group.local_dots == 0 {
                scope.local_groups.remove(e.group.as_str());
            }
        }
        if member.dots.is_empty() {
            group.members.remove(&e.pid);
        }
        if group.members.is_empty() {
            scope.groups.remove(e.group.as_str());
            scope.names.remove(e.group.as_str());
            self.groups -= 1;
        }
        if scope.groups.is_empty() {
            self.scopes.remove(e.scope.as_str());
        }
    }

    /// Replaces the dot keys of a local member after a reincarnation re-minted them,
    /// keeping their metadata. The visible state does not change, so no event.
    pub(crate) fn retag(&mut self, scope: &str, group: &str, pid: &Pid, dots: Vec<DotKey>) {
        let Some(m) = self
            .scopes
            .get_mut(scope)
            .and_then(|s| s.groups.get_mut(group))
            .and_then(|g| g.members.get_mut(pid))
        else {
            return;
        };
        if dots.len() != m.dots.len() {
            return;
        }
        let metas: Vec<Option<String>> = std::mem::take(&mut m.dots).into_values().collect();
        m.dots = dots.into_iter().zip(metas).collect();
    }

    // --- queries -------------------------------------------------------------------

    pub(crate) fn members(
        &self,
        scope: &str,
        group: &str,
    ) -> impl Iterator<Item = (&Pid, &Member)> {
        self.scopes
            .get(scope)
            .and_then(|s| s.groups.get(group))
            .into_iter()
            .flat_map(|g| g.members.iter())
    }

    pub(crate) fn member_count(&self, scope: &str, group: &str) -> usize {
        self.scopes
            .get(scope)
            .and_then(|s| s.groups.get(group))
            .map_or(0, |g| g.dots)
    }

    pub(crate) fn group_counts(&self, scope: &str) -> impl Iterator<Item = (&String, usize)> {
        self.scopes.get(scope).into_iter().flat_map(|s| {
            s.names
                .iter()
                .filter_map(|name| s.groups.get(name).map(|g| (name, g.dots)))
        })
    }

    pub(crate) fn local_groups(&self, scope: &str) -> impl Iterator<Item = &String> {
        self.scopes
            .get(scope)
            .into_iter()
            .flat_map(|s| s.local_groups.iter())
    }

    pub(crate) fn scopes(&self) -> impl Iterator<Item = &String> {
        self.scopes.keys()
    }

    pub(crate) fn scope_stats(&self) -> Vec<ScopeStats> {
        self.scopes
            .iter()
            .map(|(scope, s)| ScopeStats {
                scope: scope.clone(),
                groups: s.groups.len(),
                members: s.dots,
            })
            .collect()
    }

    /// The members of `group` of `scope`, or of every group of the scope.
    pub(crate) fn snapshot_members(&self, scope: &str, group: Option<&str>) -> Vec<MemberInfo> {
        let Some(s) = self.scopes.get(scope) else {
            return Vec::new();
        };
        let groups: Box<dyn Iterator<Item = (&String, &Group)>> = match group {
            Some(g) => Box::new(s.groups.get_key_value(g).into_iter()),
            None => Box::new(
                s.names
                    .iter()
                    .filter_map(|name| s.groups.get(name).map(|g| (name, g))),
            ),
        };
        groups
            .flat_map(|(name, g)| {
                g.members.iter().map(move |(pid, m)| MemberInfo {
                    group: name.clone(),
                    pid: pid.clone(),
                    count: m.count(),
                    meta: m.meta().cloned(),
                })
            })
            .collect()
    }

    /// `(scopes, groups, occurrences, local occurrences)`.
    pub(crate) fn totals(&self) -> (usize, usize, usize, usize) {
        (self.scopes.len(), self.groups, self.dots, self.local_dots)
    }
}

impl Sink<'_> {
    fn emit(&mut self, e: &GroupEntry, meta: &Option<String>, reason: EventReason) {
        for id in self.monitors.watchers(&e.scope, &e.group) {
            *self.events += 1;
            self.out.push_back(RegistryOutput::Monitor {
                id,
                event: GroupEvent {
                    scope: e.scope.clone(),
                    group: e.group.clone(),
                    pid: e.pid.clone(),
                    meta: meta.clone(),
                    reason,
                },
            });
        }
    }

    /// The events that take a subscriber's `(occurrences, metadata)` of one member from
    /// `before` to `after`: a `MetaChanged` if the member stays and its metadata
    /// changed, then one `gain` per occurrence gained or one `loss` per occurrence lost.
    fn diff(
        &mut self,
        e: &GroupEntry,
        before: (usize, Option<String>),
        after: (usize, Option<String>),
        gain: EventReason,
        loss: EventReason,
    ) {
        let (c0, m0) = before;
        let (c1, m1) = after;
        if c0 > 0 && c1 > 0 && m0 != m1 {
            self.emit(e, &m1, EventReason::MetaChanged);
        }
        for _ in c0..c1 {
            self.emit(e, &m1, gain);
        }
        let gone_meta = if c1 > 0 { &m1 } else { &m0 };
        for _ in c1..c0 {
            self.emit(e, gone_meta, loss);
        }
    }
}
