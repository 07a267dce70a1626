//! Group operations: local join, leave and metadata writes, and merging remote deltas.

use std::time::Instant;

use mesh_crdt::{ChangeKind, Delta};

use crate::pid::Pid;

use super::error::{
    check_meta, check_name, Field, JoinError, LeaveError, MergeError, SetMetaError,
};
use super::types::{EventReason, GroupEntry};
use super::view::DotChange;
use super::{fold, Registry};

impl Registry {
    /// Joins the local process `pid` to each of `groups` of `scope` once more (a group
    /// listed twice is joined twice). With `meta: Some(m)` the member's metadata becomes
    /// `m` in every group of the list (all its occurrences, last writer wins); with
    /// `None` a member keeps the metadata it has (a new member has none).
    ///
    /// Queues one [`GroupsDelta`](super::RegistryOutput::GroupsDelta) for the whole
    /// call. Every field is checked before anything changes.
    pub fn join(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), JoinError> {
        let _ = now; // local changes do not depend on time
        if groups.is_empty() {
            return Err(JoinError::NoGroups);
        }
        check_name(Field::Scope, scope)?;
        for g in groups {
            check_name(Field::Group, g)?;
        }
        check_meta(meta.as_deref())?;
        if pid.node != self.node {
            return Err(JoinError::NotLocal { pid: pid.clone() });
        }
        let mut delta = None;
        for group in groups {
            let (count, current) = self.local_member(scope, group, pid);
            let new_meta = match &meta {
                Some(m) => Some(m.clone()),
                None => current.clone(),
            };
            fold(
                &mut delta,
                self.mint(scope, group, pid, count, current, new_meta, 1),
            );
        }
        self.queue_groups_delta(delta, Vec::new());
        Ok(())
    }

    /// Removes one occurrence of the local process `pid` from each of `groups` of
    /// `scope` that it has joined. Fails with [`LeaveError::NotJoined`] only if it had
    /// joined none of them (then nothing changes). Queues one delta for the whole call.
    pub fn leave(
        &mut self,
        now: Instant,
        scope: &str,
        groups: &[String],
        pid: &Pid,
    ) -> Result<(), LeaveError> {
        let _ = now;
        if groups.is_empty() {
            return Err(LeaveError::NoGroups);
        }
        check_name(Field::Scope, scope)?;
        for g in groups {
            check_name(Field::Group, g)?;
        }
        if pid.node != self.node {
            return Err(LeaveError::NotLocal { pid: pid.clone() });
        }
        let mut delta = None;
        for group in groups {
            let (count, meta) = self.local_member(scope, group, pid);
            if count == 0 {
                continue;
            }
            let entry = GroupEntry {
                scope: scope.to_owned(),
                group: group.clone(),
                pid: pid.clone(),
                meta,
            };
            let Ok(d) = self.groups.remove(&entry) else {
                continue; // the view and the replica agree; see the proptests
            };
            let inc = self.groups.incarnation();
            if let Some(seq) = self.own_seqs(&d).next() {
                self.apply_view(&mut [DotChange {
                    entry: &entry,
                    dot: (inc, seq),
                    add: false,
                    reason: EventReason::Left,
                }]);
            }
            if count == 1 {
                self.forget_local_member(scope, group, pid);
            }
            fold(&mut delta, Some(d));
        }
        if delta.is_none() {
            return Err(LeaveError::NotJoined);
        }
        self.queue_groups_delta(delta, Vec::new());
        Ok(())
    }

    /// Sets the metadata of the local member `pid` of `group` (all its occurrences;
    /// last writer wins, and only the owner writes). Setting the value it already has
    /// changes nothing and queues nothing.
    pub fn set_meta(
        &mut self,
        now: Instant,
        scope: &str,
        group: &str,
        pid: &Pid,
        meta: Option<String>,
    ) -> Result<(), SetMetaError> {
        let _ = now;
        check_name(Field::Scope, scope)?;
        check_name(Field::Group, group)?;
        check_meta(meta.as_deref())?;
        if pid.node != self.node {
            return Err(SetMetaError::NotLocal { pid: pid.clone() });
        }
        let (count, current) = self.local_member(scope, group, pid);
        if count == 0 {
            return Err(SetMetaError::NotJoined);
        }
        if current != meta {
            let delta = self.mint(scope, group, pid, count, current, meta, 0);
            self.queue_groups_delta(delta, Vec::new());
        }
        Ok(())
    }

    /// Merges a groups delta (a broadcast, an anti-entropy reply or a chunk) from a
    /// peer; `exited` is the exit hint that came with it (see
    /// [`RegistryOutput::GroupsDelta`](super::RegistryOutput::GroupsDelta)). Returns
    /// whether anything changed. Entries of hidden nodes merge silently.
    ///
    /// A newer incarnation of an origin purges the older one in both replicas at once,
    /// whichever replica it arrives in.
    ///
    /// A delta with an entry whose PID is not hosted on the origin that minted it, or
    /// that breaks a size limit, is refused whole.
    pub fn merge_groups(
        &mut self,
        now: Instant,
        delta: &Delta<String, GroupEntry>,
        exited: &[Pid],
    ) -> Result<bool, MergeError> {
        let _ = now;
        if let Err(e) = validate_groups(delta) {
            self.count_refused(&e);
            return Err(e);
        }
        let changed = self.apply_groups(delta, exited);
        self.align_incarnations(delta.origins());
        Ok(changed)
    }

    /// Merges a valid groups delta: the view follows the merge report.
    pub(super) fn apply_groups(
        &mut self,
        delta: &Delta<String, GroupEntry>,
        exited: &[Pid],
    ) -> bool {
        let report = self.groups.merge(delta);
        let changed = !report.is_empty();
        let mut changes = Vec::with_capacity(report.changes.len());
        for c in &report.changes {
            if let Some(h) = self.hidden.get_mut(&c.dot.origin) {
                h.track(c.kind);
                continue;
            }
            changes.push(DotChange {
                entry: &c.element,
                dot: (c.dot.incarnation, c.dot.seq),
                add: c.kind == ChangeKind::Added,
                reason: match c.kind {
                    ChangeKind::Added => EventReason::Joined,
                    ChangeKind::Removed if exited.contains(&c.element.pid) => {
                        EventReason::ProcessExit
                    }
                    ChangeKind::Removed => EventReason::Left,
                    ChangeKind::Purged => EventReason::NodeDown,
                },
            });
        }
        self.apply_view(&mut changes);
        self.count_merge(changed);
        if report.own_incarnation_superseded_by.is_some() {
            self.reincarnate();
        }
        changed
    }

    /// The local member's `(occurrences, metadata)`; `(0, None)` if not a member.
    fn local_member(&self, scope: &str, group: &str, pid: &Pid) -> (usize, Option<String>) {
        self.view
            .member(scope, group, pid)
            .map_or((0, None), |m| (m.count(), m.meta().cloned()))
    }

    /// The one local write path for groups: re-mints the member's `count` existing
    /// occurrences if their metadata changes from `current` to `meta`, then adds
    /// `extra` more; updates the view (emitting events) and the local index. Returns
    /// the delta of it all.
    #[allow(clippy::too_many_arguments)]
    fn mint(
        &mut self,
        scope: &str,
        group: &str,
        pid: &Pid,
        count: usize,
        current: Option<String>,
        meta: Option<String>,
        extra: usize,
    ) -> Option<Delta<String, GroupEntry>> {
        let inc = self.groups.incarnation();
        let entry = GroupEntry {
            scope: scope.to_owned(),
            group: group.to_owned(),
            pid: pid.clone(),
            meta,
        };
        if count == 0 && extra > 0 {
            self.remember_local_member(scope, group, pid);
        }
        if extra == 1 && (count == 0 || current == entry.meta) {
            // The hot path (a plain join): one dot, and the view borrows the element
            // from the delta instead of a copy.
            let d = self.groups.add(entry);
            let seq = self.own_seqs(&d).next();
            if let (Some(seq), Some((entry, _))) = (seq, d.elements_of(&self.node).next()) {
                self.apply_view(&mut [DotChange {
                    entry,
                    dot: (inc, seq),
                    add: true,
                    reason: EventReason::Joined,
                }]);
            }
            return Some(d);
        }
        let mut delta = None;
        let mut removed = Vec::new();
        let mut old = None;
        let mut adds = extra;
        if count > 0 && current != entry.meta {
            let previous = GroupEntry {
                meta: current,
                ..entry.clone()
            };
            if let Ok(d) = self.groups.remove_all(&previous) {
                removed.extend(self.own_seqs(&d));
                fold(&mut delta, Some(d));
                adds += count;
            }
            old = Some(previous);
        }
        let mut added = Vec::with_capacity(adds);
        for _ in 0..adds {
            let d = self.groups.add(entry.clone());
            added.extend(self.own_seqs(&d));
            fold(&mut delta, Some(d));
        }
        let mut changes = Vec::with_capacity(removed.len() + added.len());
        if let Some(old) = &old {
            changes.extend(removed.into_iter().map(|seq| DotChange {
                entry: old,
                dot: (inc, seq),
                add: false,
                reason: EventReason::Left,
            }));
        }
        changes.extend(added.into_iter().map(|seq| DotChange {
            entry: &entry,
            dot: (inc, seq),
            add: true,
            reason: EventReason::Joined,
        }));
        self.apply_view(&mut changes);
        delta
    }

    fn remember_local_member(&mut self, scope: &str, group: &str, pid: &Pid) {
        let scopes = match self.local_members.get_mut(pid) {
            Some(s) => s,
            None => self.local_members.entry(pid.clone()).or_default(),
        };
        let groups = match scopes.get_mut(scope) {
            Some(g) => g,
            None => scopes.entry(scope.to_owned()).or_default(),
        };
        if !groups.contains(group) {
            groups.insert(group.to_owned());
        }
    }

    fn forget_local_member(&mut self, scope: &str, group: &str, pid: &Pid) {
        let Some(scopes) = self.local_members.get_mut(pid) else {
            return;
        };
        if let Some(groups) = scopes.get_mut(scope) {
            groups.remove(group);
            if groups.is_empty() {
                scopes.remove(scope);
            }
        }
        if scopes.is_empty() {
            self.local_members.remove(pid);
        }
    }

    /// Removes every occurrence of the local process `pid` from every group: the
    /// groups half of [`process_exited`](Registry::process_exited).
    pub(super) fn exit_groups(&mut self, pid: &Pid) -> Option<Delta<String, GroupEntry>> {
        let inc = self.groups.incarnation();
        let mut delta = None;
        let mut removed = Vec::new();
        let memberships = self.local_members.remove(pid).unwrap_or_default();
        let pairs = memberships
            .into_iter()
            .flat_map(|(scope, groups)| groups.into_iter().map(move |g| (scope.clone(), g)));
        for (scope, group) in pairs {
            let (count, meta) = self.local_member(&scope, &group, pid);
            if count == 0 {
                continue;
            }
            let entry = GroupEntry {
                scope,
                group,
                pid: pid.clone(),
                meta,
            };
            if let Ok(d) = self.groups.remove_all(&entry) {
                let seqs: Vec<u64> = self.own_seqs(&d).collect();
                removed.push((entry, seqs));
                fold(&mut delta, Some(d));
            }
        }
        let mut changes: Vec<DotChange<'_>> = removed
            .iter()
            .flat_map(|(entry, seqs)| {
                seqs.iter().map(move |&seq| DotChange {
                    entry,
                    dot: (inc, seq),
                    add: false,
                    reason: EventReason::ProcessExit,
                })
            })
            .collect();
        self.apply_view(&mut changes);
        delta
    }
}

/// Every entry of origin `o` must name a process of `o` and respect the size limits.
fn validate_groups(delta: &Delta<String, GroupEntry>) -> Result<(), MergeError> {
    for origin in delta.origins() {
        for (e, _) in delta.elements_of(origin) {
            if e.pid.node != *origin {
                return Err(MergeError::ForeignEntry {
                    origin: origin.clone(),
                    pid: e.pid.clone(),
                });
            }
            let invalid = |error| MergeError::InvalidEntry {
                origin: origin.clone(),
                error,
            };
            check_name(Field::Scope, &e.scope).map_err(invalid)?;
            check_name(Field::Group, &e.group).map_err(invalid)?;
            check_meta(e.meta.as_deref()).map_err(invalid)?;
        }
    }
    Ok(())
}
