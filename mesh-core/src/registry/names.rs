//! Eventual names: the visible claims, the winner order, and conflict handling on the
//! loser's node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use mesh_crdt::{ChangeKind, Delta};

use crate::pid::Pid;

use super::error::{check_meta, check_name, Field, MergeError, RegisterError, UnregisterError};
use super::types::{ConflictPolicy, NameClaim, NameInfo, RegistryOutput};
use super::{fold, Doomed, Registry};

/// The visible claims of every name, with their number of live dots (1 in practice;
/// counted so that a transiently duplicated dot cannot corrupt the view). Claims of one
/// name are ordered by the winner order; the first one wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameView {
    names: BTreeMap<String, BTreeMap<NameClaim, usize>>,
}

impl NameView {
    pub(crate) fn add(&mut self, claim: &NameClaim) {
        *self
            .names
            .entry(claim.name.clone())
            .or_default()
            .entry(claim.clone())
            .or_insert(0) += 1;
    }

    /// Removes `dots` live dots of `claim` (all of them with `usize::MAX`).
    pub(crate) fn remove(&mut self, claim: &NameClaim, dots: usize) {
        let Some(claims) = self.names.get_mut(&claim.name) else {
            return;
        };
        if let Some(n) = claims.get_mut(claim) {
            *n = n.saturating_sub(dots);
            if *n == 0 {
                claims.remove(claim);
            }
        }
        if claims.is_empty() {
            self.names.remove(&claim.name);
        }
    }

    pub(crate) fn winner(&self, name: &str) -> Option<&NameClaim> {
        self.names.get(name)?.keys().next()
    }

    pub(crate) fn claims(&self, name: &str) -> usize {
        self.names.get(name).map_or(0, BTreeMap::len)
    }

    pub(crate) fn winners(&self) -> impl Iterator<Item = (&String, &NameClaim)> {
        self.names
            .iter()
            .filter_map(|(name, claims)| claims.keys().next().map(|c| (name, c)))
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

impl Registry {
    /// Claims `name` for the local process `pid`, stamped with this node's HLC at
    /// `wall_ms` (the wall clock in milliseconds since the Unix epoch).
    ///
    /// Eventual: only this node's view is consulted. If it holds a visible winner for
    /// the name (possibly `pid` itself) the call fails with
    /// [`RegisterError::AlreadyRegistered`]. A concurrent claim elsewhere is settled
    /// when the claims meet (see the module docs, "Names"). A process may hold several
    /// names. Queues one [`NamesDelta`](RegistryOutput::NamesDelta).
    pub fn register(
        &mut self,
        now: Instant,
        wall_ms: u64,
        name: &str,
        pid: &Pid,
        meta: Option<String>,
        policy: ConflictPolicy,
    ) -> Result<(), RegisterError> {
        let _ = now;
        check_name(Field::Name, name)?;
        check_meta(meta.as_deref())?;
        if pid.node != self.node {
            return Err(RegisterError::NotLocal { pid: pid.clone() });
        }
        if let Some(w) = self.claims.winner(name) {
            return Err(RegisterError::AlreadyRegistered(w.pid.clone()));
        }
        let claim = NameClaim {
            name: name.to_owned(),
            hlc: self.clock.now(wall_ms),
            pid: pid.clone(),
            policy,
            meta,
        };
        let delta = self.names.add(claim.clone());
        self.claims.add(&claim);
        self.claims_of
            .entry(pid.clone())
            .or_default()
            .insert(name.to_owned());
        self.local_claims.insert(name.to_owned(), claim);
        self.queue_names_delta(Some(delta));
        Ok(())
    }

    /// Retracts this node's claim on `name` and returns the process that held it.
    /// [`UnregisterError::NotLocal`] if the visible winner is a remote process.
    pub fn unregister(&mut self, now: Instant, name: &str) -> Result<Pid, UnregisterError> {
        let _ = now;
        check_name(Field::Name, name)?;
        if let Some(pid) = self.local_claims.get(name).map(|c| c.pid.clone()) {
            let delta = self.retract(name);
            self.queue_names_delta(delta);
            return Ok(pid);
        }
        match self.claims.winner(name) {
            Some(w) => Err(UnregisterError::NotLocal {
                owner: w.pid.clone(),
            }),
            None => Err(UnregisterError::NotRegistered),
        }
    }

    /// The winner of `name` in this node's visible view.
    pub fn whereis(&self, name: &str) -> Option<NameInfo> {
        self.claims.winner(name).map(NameInfo::from)
    }

    /// Every name with a visible winner, sorted by name.
    pub fn registered(&self) -> Vec<(String, NameInfo)> {
        self.claims
            .winners()
            .map(|(name, c)| (name.clone(), NameInfo::from(c)))
            .collect()
    }

    /// This node's live claims (winning, or not yet settled), sorted by name. A claim
    /// that lost under `unregister_both` is no longer listed, although it stays in the
    /// replica until the claim it lost to is gone.
    pub fn local_claims(&self) -> Vec<NameClaim> {
        self.local_claims.values().cloned().collect()
    }

    /// Merges a names delta from a peer. Returns whether anything changed. Observes
    /// every new claim's HLC, then settles every name the delta touched: each local
    /// claim that lost is handled once (see the module docs, "Names").
    ///
    /// A newer incarnation of an origin purges the older one in both replicas at once.
    ///
    /// A delta with a claim whose PID is not hosted on the origin that minted it, or
    /// that breaks a size limit, is refused whole.
    pub fn merge_names(
        &mut self,
        now: Instant,
        delta: &Delta<String, NameClaim>,
    ) -> Result<bool, MergeError> {
        let _ = now;
        if let Err(e) = validate_names(delta) {
            self.count_refused(&e);
            return Err(e);
        }
        let changed = self.apply_names(delta);
        self.align_incarnations(delta.origins());
        Ok(changed)
    }

    /// Merges a valid names delta: the view follows the merge report, then every
    /// touched name is settled.
    pub(super) fn apply_names(&mut self, delta: &Delta<String, NameClaim>) -> bool {
        let report = self.names.merge(delta);
        let changed = !report.is_empty();
        let mut touched = BTreeSet::new();
        for c in &report.changes {
            if c.kind == ChangeKind::Added {
                self.clock.observe(c.element.hlc);
            }
            touched.insert(c.element.name.clone());
            if let Some(h) = self.hidden.get_mut(&c.dot.origin) {
                h.track(c.kind);
                continue;
            }
            match c.kind {
                ChangeKind::Added => self.claims.add(&c.element),
                ChangeKind::Removed | ChangeKind::Purged => self.claims.remove(&c.element, 1),
            }
        }
        self.count_merge(changed);
        if report.own_incarnation_superseded_by.is_some() {
            self.reincarnate();
        }
        self.settle(touched);
        changed
    }

    /// Settles every name in `names` and queues the retractions as one delta.
    pub(super) fn settle(&mut self, names: BTreeSet<String>) {
        let mut delta = None;
        for name in names {
            fold(&mut delta, self.settle_one(&name));
        }
        self.queue_names_delta(delta);
    }

    /// Handles this node's claim on `name`, if it has one, against the visible
    /// winner. Returns the retraction delta, if any.
    fn settle_one(&mut self, name: &str) -> Option<Delta<String, NameClaim>> {
        let mut delta = None;
        if let Some(d) = self.doomed.get(name) {
            // unregister_both, losing side, already notified: retract once the winning
            // claim is gone from the state (retracted, exited or purged; merely hidden
            // does not count).
            if !self.names.state().contains(&d.waits_on) {
                fold(&mut delta, self.retract_doomed(name));
            }
        }
        let Some(mine) = self.local_claims.get(name).cloned() else {
            return delta;
        };
        let Some(winner) = self.claims.winner(name).cloned() else {
            return delta;
        };
        if winner == mine {
            if mine.policy == ConflictPolicy::UnregisterBoth && self.claims.claims(name) > 1 {
                self.notify(name, &mine.pid, &mine.pid);
                fold(&mut delta, self.retract(name));
            }
            return delta;
        }
        self.notify(name, &mine.pid, &winner.pid);
        match winner.policy {
            ConflictPolicy::Notify => fold(&mut delta, self.retract(name)),
            ConflictPolicy::Kill => {
                self.stats.kills += 1;
                self.out.push_back(RegistryOutput::Kill {
                    pid: mine.pid.clone(),
                    name: name.to_owned(),
                    winner: winner.pid.clone(),
                });
                fold(&mut delta, self.retract(name));
            }
            ConflictPolicy::UnregisterBoth => {
                // The process has lost the name; the claim stays in the replica.
                self.forget_local_claim(name);
                self.doomed.insert(
                    name.to_owned(),
                    Doomed {
                        mine,
                        waits_on: winner,
                    },
                );
            }
        }
        delta
    }

    fn notify(&mut self, name: &str, loser: &Pid, winner: &Pid) {
        self.stats.name_conflicts += 1;
        self.out.push_back(RegistryOutput::NameConflict {
            name: name.to_owned(),
            loser: loser.clone(),
            winner: winner.clone(),
        });
    }

    /// Removes this node's live claim on `name` from the replica, the view and the
    /// local indexes. Returns the delta (not queued).
    pub(super) fn retract(&mut self, name: &str) -> Option<Delta<String, NameClaim>> {
        let claim = self.forget_local_claim(name)?;
        self.claims.remove(&claim, usize::MAX);
        self.names.remove_all(&claim).ok()
    }

    /// Drops the live claim on `name` from the local indexes only.
    fn forget_local_claim(&mut self, name: &str) -> Option<NameClaim> {
        let claim = self.local_claims.remove(name)?;
        if let Some(names) = self.claims_of.get_mut(&claim.pid) {
            names.remove(name);
            if names.is_empty() {
                self.claims_of.remove(&claim.pid);
            }
        }
        Some(claim)
    }

    /// Retracts a losing `unregister_both` claim whose winner is gone.
    fn retract_doomed(&mut self, name: &str) -> Option<Delta<String, NameClaim>> {
        let d = self.doomed.remove(name)?;
        self.claims.remove(&d.mine, usize::MAX);
        self.names.remove_all(&d.mine).ok()
    }

    /// Retracts every claim of the local process `pid`: the names half of
    /// [`process_exited`](Registry::process_exited).
    pub(super) fn exit_names(&mut self, pid: &Pid) -> Option<Delta<String, NameClaim>> {
        let names = self.claims_of.get(pid).cloned().unwrap_or_default();
        let mut delta = None;
        for name in names {
            fold(&mut delta, self.retract(&name));
        }
        delta
    }
}

/// Every claim of origin `o` must name a process of `o` and respect the size limits.
fn validate_names(delta: &Delta<String, NameClaim>) -> Result<(), MergeError> {
    for origin in delta.origins() {
        for (c, _) in delta.elements_of(origin) {
            if c.pid.node != *origin {
                return Err(MergeError::ForeignEntry {
                    origin: origin.clone(),
                    pid: c.pid.clone(),
                });
            }
            let invalid = |error| MergeError::InvalidEntry {
                origin: origin.clone(),
                error,
            };
            check_name(Field::Name, &c.name).map_err(invalid)?;
            check_meta(c.meta.as_deref()).map_err(invalid)?;
        }
    }
    Ok(())
}
