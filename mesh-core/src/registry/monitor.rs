//! Monitors: who watches which group or scope, and the subscriber-side view that
//! snapshot + events build.

use std::collections::{BTreeMap, BTreeSet};

use crate::pid::Pid;

use super::types::{EventReason, GroupEvent, MemberInfo, MonitorId, Snapshot};

/// What one monitor watches.
#[derive(Clone, Debug)]
struct Spec {
    owner: Option<Pid>,
    scope: String,
    group: Option<String>,
}

/// The monitors of one scope: of the whole scope, and per group.
#[derive(Clone, Debug, Default)]
struct ScopeWatch {
    all: BTreeSet<MonitorId>,
    groups: BTreeMap<String, BTreeSet<MonitorId>>,
}

/// Every live monitor, indexed by what it watches and by owner.
#[derive(Clone, Debug, Default)]
pub(crate) struct Monitors {
    next: u64,
    specs: BTreeMap<MonitorId, Spec>,
    by_scope: BTreeMap<String, ScopeWatch>,
    by_owner: BTreeMap<Pid, BTreeSet<MonitorId>>,
}

impl Monitors {
    pub(crate) fn len(&self) -> usize {
        self.specs.len()
    }

    pub(crate) fn add(
        &mut self,
        owner: Option<Pid>,
        scope: &str,
        group: Option<&str>,
    ) -> MonitorId {
        self.next += 1;
        let id = MonitorId(self.next);
        let watch = self.by_scope.entry(scope.to_owned()).or_default();
        match group {
            Some(g) => {
                watch.groups.entry(g.to_owned()).or_default().insert(id);
            }
            None => {
                watch.all.insert(id);
            }
        }
        if let Some(owner) = &owner {
            self.by_owner.entry(owner.clone()).or_default().insert(id);
        }
        self.specs.insert(
            id,
            Spec {
                owner,
                scope: scope.to_owned(),
                group: group.map(str::to_owned),
            },
        );
        id
    }

    /// Removes monitor `id`; false if it was not live.
    pub(crate) fn remove(&mut self, id: MonitorId) -> bool {
        let Some(spec) = self.specs.remove(&id) else {
            return false;
        };
        if let Some(watch) = self.by_scope.get_mut(&spec.scope) {
            match &spec.group {
                Some(g) => {
                    if let Some(ids) = watch.groups.get_mut(g) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            watch.groups.remove(g);
                        }
                    }
                }
                None => {
                    watch.all.remove(&id);
                }
            }
            if watch.all.is_empty() && watch.groups.is_empty() {
                self.by_scope.remove(&spec.scope);
            }
        }
        if let Some(owner) = &spec.owner {
            if let Some(ids) = self.by_owner.get_mut(owner) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
        true
    }

    /// Removes every monitor owned by `pid` and returns their ids.
    pub(crate) fn remove_owned_by(&mut self, pid: &Pid) -> Vec<MonitorId> {
        let ids: Vec<MonitorId> = self
            .by_owner
            .get(pid)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        for &id in &ids {
            self.remove(id);
        }
        ids
    }

    /// True if some monitor watches `group` of `scope` (directly or via the scope).
    pub(crate) fn watches(&self, scope: &str, group: &str) -> bool {
        self.by_scope
            .get(scope)
            .is_some_and(|w| !w.all.is_empty() || w.groups.contains_key(group))
    }

    /// The monitors watching `group` of `scope`, in id order.
    pub(crate) fn watchers(&self, scope: &str, group: &str) -> Vec<MonitorId> {
        let Some(w) = self.by_scope.get(scope) else {
            return Vec::new();
        };
        let mut ids: Vec<MonitorId> = w.all.iter().copied().collect();
        if let Some(g) = w.groups.get(group) {
            ids.extend(g.iter().copied());
            ids.sort_unstable();
        }
        ids
    }
}

/// Why [`MonitorView::apply`] refused an event. The view is unchanged. With events
/// from [`Registry`](super::Registry) this never happens; it exists so that a
/// subscriber (and the tests) can tell a broken stream from a good one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The event is about another scope or group than the view's.
    #[error("event for {scope}/{group} outside the monitored set")]
    OutOfScope {
        /// The event's scope.
        scope: String,
        /// The event's group.
        group: String,
    },
    /// A departure or metadata change for a process that is not a member in the view.
    #[error("{reason:?} for {pid}, which is not a member of {group}")]
    NotAMember {
        /// The group.
        group: String,
        /// The process.
        pid: Pid,
        /// The event's reason.
        reason: EventReason,
    },
}

/// A subscriber's view of a monitored group or scope: start it from the
/// [`Snapshot`] that [`Registry::monitor`](super::Registry::monitor) returned and
/// [`apply`](Self::apply) every event of the monitor in order. It then equals the
/// registry's [`snapshot`](super::Registry::snapshot) of the same group or scope after
/// every input (the exact-tracking property).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorView {
    scope: String,
    group: Option<String>,
    members: BTreeMap<(String, Pid), (usize, Option<String>)>,
}

impl MonitorView {
    /// The view at the time of `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        Self {
            scope: snapshot.scope.clone(),
            group: snapshot.group.clone(),
            members: snapshot
                .members
                .iter()
                .map(|m| ((m.group.clone(), m.pid.clone()), (m.count, m.meta.clone())))
                .collect(),
        }
    }

    /// Applies one event: `Joined`/`NodeRestored` add an occurrence and set the
    /// metadata, `Left`/`ProcessExit`/`NodeDown` remove one, `MetaChanged` sets the
    /// metadata of a member.
    pub fn apply(&mut self, event: &GroupEvent) -> Result<(), ViewError> {
        if event.scope != self.scope || self.group.as_ref().is_some_and(|g| *g != event.group) {
            return Err(ViewError::OutOfScope {
                scope: event.scope.clone(),
                group: event.group.clone(),
            });
        }
        let key = (event.group.clone(), event.pid.clone());
        let not_a_member = || ViewError::NotAMember {
            group: event.group.clone(),
            pid: event.pid.clone(),
            reason: event.reason,
        };
        match event.reason.effect() {
            1 => {
                let slot = self.members.entry(key).or_insert((0, None));
                slot.0 += 1;
                slot.1.clone_from(&event.meta);
            }
            -1 => {
                let slot = self.members.get_mut(&key).ok_or_else(not_a_member)?;
                slot.0 -= 1;
                if slot.0 == 0 {
                    self.members.remove(&key);
                }
            }
            _ => {
                let slot = self.members.get_mut(&key).ok_or_else(not_a_member)?;
                slot.1.clone_from(&event.meta);
            }
        }
        Ok(())
    }

    /// The view as a snapshot, comparable with
    /// [`Registry::snapshot`](super::Registry::snapshot).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            scope: self.scope.clone(),
            group: self.group.clone(),
            members: self
                .members
                .iter()
                .map(|((group, pid), (count, meta))| MemberInfo {
                    group: group.clone(),
                    pid: pid.clone(),
                    count: *count,
                    meta: meta.clone(),
                })
                .collect(),
        }
    }
}
