//! Voter changes at run time: the procedure, sans-IO (issue 10, part 1: the core).
//!
//! The voter set V and its quorums live in the [`RootRecord`]. A change of V is a short
//! sequence of roots, each one epoch above the last; every proposer uses the quorums of
//! the root it holds, every request carries that root's epoch, and an acceptor refuses
//! (with [`Reply::WrongEpoch`](super::Reply::WrongEpoch), naming its own epoch) every
//! request of another epoch than its own: a proposer on an old epoch is refused and learns
//! that a newer root exists ([`Proposer::newer_epoch`](super::Proposer::newer_epoch)),
//! never obeyed.
//!
//! # Quorums
//!
//! A root's [`Quorums`] name two rules: a *prepare* rule ("`need` promises among
//! `among`") and an *accept* rule. Flexible Paxos (Howard et al. 2016) only needs every
//! prepare quorum to meet every accept quorum; [`QuorumRule::always_meets`] decides it by
//! counting. A root without explicit quorums (every epoch-1 root, so every store written
//! before this module) uses majorities of its voters ([`RootRecord::quorums`]).
//!
//! # The procedure (the CASPaxos paper's "cluster membership change")
//!
//! One change at a time; each step is a new root, epoch + 1, carrying the change's
//! progress in [`RootRecord::pending`] so any node can resume or roll it back:
//!
//! - **Add `x`** (V → V + x):
//!   1. root `e+1`: voters V + x; prepare rule *unchanged* (old V, old count); accept rule
//!      *raised* to the target's (a majority of V + x, which includes `x` in its set);
//!      `pending: Add x, Widened`.
//!   2. **rescan**: once epoch `e` is retired (below), read and write back every key of
//!      every shard at epoch `e+1` (a [`RegisterChange::Read`](super::RegisterChange)
//!      runs phase 2, so it rewrites the value under the new accept rule). The keys are
//!      the union of the keys held by the acceptors of one prepare quorum of `e+1`.
//!   3. root `e+2`: prepare rule raised to the target's too; `pending: None`.
//! - **Remove `x`** (W → W − x), the reverse: root `e+1` *lowers the prepare rule first*
//!   (a majority of W − x) while accepts still go to the old rule over W
//!   (`pending: Remove x, Narrowed`); then root `e+2` lowers the accept rule; no rescan.
//! - **Replace `old` by `new`** = add `new`, then remove `old`. A wiped voter is replaced
//!   by itself: its new store has a new acceptor id, added under its name, then its old
//!   id removed (a root may list one name twice during that change).
//! - **Roll back** an interrupted change: a root `e+1` with the quorums and voters of the
//!   root before the change, `pending: None` (the pair is the same compatible pair).
//!
//! # The step rules the driver must follow
//!
//! - **R1 (retire before the next step).** A root of epoch `e+1` may be handed to any
//!   acceptor only once epoch `e−1` is *retired*: so many acceptors of `e−1`'s accept set
//!   durably hold epoch `≥ e` that the others cannot form an accept quorum of `e−1`
//!   ([`retired`]). Acceptors' epochs only grow, so a retired epoch never chooses a value
//!   again.
//! - **R2 (rescan after retiring).** The rescan of an add starts only once the epoch
//!   before the change is retired (R1's test on the change's first root), and the add's
//!   last root only after every key's rescan completed.
//! - **R3 (one at a time).** [`begin`] refuses while [`RootRecord::pending`] is set.
//!
//! # Properties
//!
//! **Safety.** Every key stays linearizable across any sequence of changes, whatever the
//! network does and whoever crashes (each acceptor keeps its durable state across epochs).
//!
//! *Argument.* Paxos is safe across rules as long as every prepare quorum that can still
//! succeed meets every accept quorum that ever chose a value not chosen again since at a
//! higher ballot. (a) Consecutive roots are *compatible* ([`Quorums::compatible`]: each
//! one's prepare rule always meets the other's accept rule and its own), which [`begin`]
//! and [`advance`] check, so while two adjacent epochs are both in use nothing is lost.
//! (b) By R1 at most two adjacent epochs are in use at any moment. (c) Non-adjacent roots
//! need not be compatible: after an add, the target's prepare rule (say 3 of 4) may miss
//! a value chosen by the old accept rule (2 of the old 3) once a later removal narrows it
//! (2 of the remaining 3). R2 closes this: once `e` is retired no value is chosen under
//! the old accept rule again, and the rescan re-chooses every key's current value under
//! the raised accept rule at a higher ballot, which every later prepare rule meets (it is
//! compatible with the next root, and each later root again rescans or keeps a rule that
//! meets it). (d) A proposer on an old epoch is refused by every acceptor that moved on,
//! so its requests only count among acceptors still in its epoch, i.e. within (b).
//!
//! The model (`tests/reconfig_model.rs`) checks this with the real proposer and acceptor
//! and catches each broken variant: skipping the rescan, raising the prepare rule before
//! the accept rule, and an acceptor obeying an old epoch. The seed loop
//! (`tests/reconfig_sim.rs`) runs whole changes (a replace, 3 → 5 → 3, a rollback) under
//! load with loss, partitions, acceptor and driver crashes, and catches a skipped rescan
//! as lost increments.
//!
//! # Not yet here
//!
//! The node and agent do not drive a change yet (no `Command`, admin route or `meshctl`
//! verb), and [`Formation`](super::Formation) still only takes epoch-1 roots: a root of a
//! later epoch must be checked ([`Quorums::is_safe`], distinct ids) before any node
//! adopts one from a peer.
//!
//! **Liveness.** With every voter of the change's roots reachable by a majority of each
//! rule, and the driver alive (or any node resuming from `pending`), each step completes:
//! a root reaches enough acceptors for R1, the rescan's reads complete (ordinary register
//! changes), and the change ends with `pending: None`. Client changes are refused only
//! briefly at a step (a proposer learns the new root and retries from phase 1).

use super::ballot::NodeId;
use super::root::RootRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// "`need` acceptors among `among`": one of a root's two quorum rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumRule {
    /// The acceptor ids whose answers count, sorted and distinct (as [`QuorumRule::majority`]
    /// makes them; a rule decoded from a peer is not trusted to be: lookups are linear).
    pub among: Vec<u64>,
    /// How many of them make a quorum.
    pub need: usize,
}

impl QuorumRule {
    /// A majority of `ids` (duplicates ignored).
    pub fn majority(ids: impl IntoIterator<Item = u64>) -> Self {
        let among: Vec<u64> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let need = super::majority(among.len());
        Self { among, need }
    }

    /// Whether `ids` hold a quorum under this rule (ids outside `among` do not count).
    pub fn met_by<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let n = ids
            .into_iter()
            .filter(|id| self.among.contains(&id.0))
            .count();
        n >= self.need
    }

    /// Whether every quorum of `self` shares an acceptor with every quorum of `other`.
    /// By counting: a quorum of each can avoid the other's set for the members outside
    /// it; what is left must overflow the common part.
    pub fn always_meets(&self, other: &Self) -> bool {
        let common = self
            .among
            .iter()
            .filter(|id| other.among.contains(id))
            .count();
        let mine_in_common = self.need.saturating_sub(self.among.len() - common);
        let theirs_in_common = other.need.saturating_sub(other.among.len() - common);
        self.need <= self.among.len()
            && other.need <= other.among.len()
            && mine_in_common + theirs_in_common > common
    }

    /// Whether the acceptors *not* in `moved_on` can no longer form a quorum of this rule.
    pub fn blocked_without<'a>(&self, moved_on: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let moved: BTreeSet<u64> = moved_on.into_iter().map(|id| id.0).collect();
        let left = self.among.iter().filter(|id| !moved.contains(id)).count();
        left < self.need
    }

    /// The ids, as [`NodeId`]s.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.among.iter().map(|id| NodeId(*id))
    }
}

impl fmt::Display for QuorumRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.need, self.among.len())
    }
}

/// The two quorum rules of a root: every proposer of that epoch uses these.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quorums {
    /// Phase 1: promises needed.
    pub prepare: QuorumRule,
    /// Phase 2: accepts needed.
    pub accept: QuorumRule,
}

impl Quorums {
    /// Majorities of `ids` for both phases (the epoch-1 rule).
    pub fn majority(ids: impl IntoIterator<Item = u64>) -> Self {
        let rule = QuorumRule::majority(ids);
        Self {
            prepare: rule.clone(),
            accept: rule,
        }
    }

    /// Whether the rules are safe on their own: every prepare quorum meets every accept
    /// quorum.
    pub fn is_safe(&self) -> bool {
        self.prepare.always_meets(&self.accept)
    }

    /// Whether two roots' rules may be in use at the same time: each one's prepare rule
    /// always meets both accept rules.
    pub fn compatible(&self, other: &Self) -> bool {
        self.is_safe()
            && other.is_safe()
            && self.prepare.always_meets(&other.accept)
            && other.prepare.always_meets(&self.accept)
    }

    /// Every acceptor id either rule names: whom a proposer sends to.
    pub fn acceptors(&self) -> Vec<NodeId> {
        let all: BTreeSet<u64> = self
            .prepare
            .among
            .iter()
            .chain(&self.accept.among)
            .copied()
            .collect();
        all.into_iter().map(NodeId).collect()
    }
}

impl fmt::Display for Quorums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prepare {}, accept {}", self.prepare, self.accept)
    }
}

/// One voter change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoterChange {
    /// Add the voter `name` with the acceptor id of its store.
    Add {
        /// The node name.
        name: String,
        /// Its store's acceptor id.
        acceptor: u64,
    },
    /// Remove the acceptor `acceptor` (listed under `name`).
    Remove {
        /// The node name.
        name: String,
        /// The acceptor id the root lists for it.
        acceptor: u64,
    },
}

/// Where a pending change stands (in the root that carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Step {
    /// An add's first root: the accept rule is raised; the rescan is due, then the
    /// prepare rule.
    Widened,
    /// A removal's first root: the prepare rule is lowered; the accept rule is next.
    Narrowed,
}

/// A change in progress, persisted in the root so any node can resume or roll it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pending {
    /// The change.
    pub change: VoterChange,
    /// Its step.
    pub step: Step,
    /// The voters before the change (for a rollback).
    pub before_voters: Vec<(String, u64)>,
    /// The quorums before the change (for a rollback).
    pub before_quorums: Quorums,
}

/// Why a change (or a step of it) was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigError {
    /// Another change is in progress (one at a time).
    #[error("another voter change is in progress ({0:?}); resume or roll it back first")]
    InProgress(VoterChange),
    /// The acceptor (or name, for an add) is already in V.
    #[error("{0} is already a voter")]
    AlreadyAVoter(String),
    /// The name or acceptor is not in V.
    #[error("{0} is not a voter")]
    NotAVoter(String),
    /// Acceptor id 0 is not valid.
    #[error("acceptor id 0 is not valid")]
    ZeroAcceptorId,
    /// Removing would leave fewer voters than the minimum.
    #[error("removing {0} would leave fewer than {MIN_VOTERS} voters")]
    TooFew(String),
    /// Adding would make more voters than the maximum.
    #[error("adding {0} would make more than {MAX_VOTERS} voters")]
    TooMany(String),
    /// There is no change to advance or roll back.
    #[error("no voter change is in progress")]
    NothingPending,
    /// The next root's rules would not be compatible with the current one's (a bug
    /// guard: the procedure never produces that).
    #[error(
        "the next root's quorums ({next}) are not compatible with the current ones ({current})"
    )]
    Incompatible {
        /// The current rules, as [`Quorums`] displays them.
        current: String,
        /// The refused rules, as [`Quorums`] displays them.
        next: String,
    },
}

/// The fewest voters a change may leave.
pub const MIN_VOTERS: usize = 3;
/// The most voters a change may make.
pub const MAX_VOTERS: usize = 7;

/// Whether epoch `prev` (whose rules are `prev`) is retired: the acceptors that durably
/// hold a newer epoch (`moved_on`) leave too few of its accept set to choose a value (R1).
pub fn retired<'a>(prev: &Quorums, moved_on: impl IntoIterator<Item = &'a NodeId>) -> bool {
    prev.accept.blocked_without(moved_on)
}

fn sorted(mut voters: Vec<(String, u64)>) -> Vec<(String, u64)> {
    voters.sort();
    voters
}

fn next_root(
    root: &RootRecord,
    voters: Vec<(String, u64)>,
    quorums: Quorums,
    pending: Option<Pending>,
) -> Result<RootRecord, ReconfigError> {
    let current = root.quorums();
    if !current.compatible(&quorums) {
        return Err(ReconfigError::Incompatible {
            current: current.to_string(),
            next: quorums.to_string(),
        });
    }
    Ok(RootRecord {
        epoch: root.epoch + 1,
        voters: sorted(voters),
        quorums: Some(Box::new(quorums)),
        pending: pending.map(Box::new),
    })
}

/// The first root of `change` from `root` (the next epoch), or why it is refused.
pub fn begin(root: &RootRecord, change: VoterChange) -> Result<RootRecord, ReconfigError> {
    if let Some(p) = &root.pending {
        return Err(ReconfigError::InProgress(p.change.clone()));
    }
    let before = root.quorums();
    let ids: Vec<u64> = root.voters.iter().map(|(_, id)| *id).collect();
    match &change {
        VoterChange::Add { name, acceptor } => {
            if *acceptor == 0 {
                return Err(ReconfigError::ZeroAcceptorId);
            }
            if ids.contains(acceptor) {
                return Err(ReconfigError::AlreadyAVoter(format!(
                    "acceptor {acceptor:016x}"
                )));
            }
            if root.voters.len() >= MAX_VOTERS {
                return Err(ReconfigError::TooMany(name.clone()));
            }
            // A name may be listed twice, under two acceptor ids, only while a wiped voter
            // is replaced by itself (its new store added, then its old id removed); the
            // shell refuses adding a name already in V otherwise.
            let mut voters = root.voters.clone();
            voters.push((name.clone(), *acceptor));
            let target = QuorumRule::majority(voters.iter().map(|(_, id)| *id));
            let quorums = Quorums {
                prepare: before.prepare.clone(),
                accept: target,
            };
            let pending = Pending {
                change,
                step: Step::Widened,
                before_voters: root.voters.clone(),
                before_quorums: before,
            };
            next_root(root, voters, quorums, Some(pending))
        }
        VoterChange::Remove { name, acceptor } => {
            if !root
                .voters
                .iter()
                .any(|(n, id)| n == name && id == acceptor)
            {
                return Err(ReconfigError::NotAVoter(format!(
                    "{name} ({acceptor:016x})"
                )));
            }
            if root.voters.len() <= MIN_VOTERS {
                return Err(ReconfigError::TooFew(name.clone()));
            }
            let left = ids.iter().copied().filter(|id| id != acceptor);
            let quorums = Quorums {
                prepare: QuorumRule::majority(left),
                accept: before.accept.clone(),
            };
            let pending = Pending {
                change,
                step: Step::Narrowed,
                before_voters: root.voters.clone(),
                before_quorums: before,
            };
            next_root(root, root.voters.clone(), quorums, Some(pending))
        }
    }
}

/// The last root of the pending change (the next epoch). For an add, call it only after
/// the rescan (R2) completed; for both, only once the epoch before `root` is retired (R1).
pub fn advance(root: &RootRecord) -> Result<RootRecord, ReconfigError> {
    let Some(pending) = &root.pending else {
        return Err(ReconfigError::NothingPending);
    };
    let (voters, quorums) = match &pending.change {
        VoterChange::Add { .. } => (root.voters.clone(), Quorums::majority(ids(&root.voters))),
        VoterChange::Remove { acceptor, .. } => {
            let voters: Vec<(String, u64)> = root
                .voters
                .iter()
                .filter(|(_, id)| id != acceptor)
                .cloned()
                .collect();
            let quorums = Quorums::majority(ids(&voters));
            (voters, quorums)
        }
    };
    next_root(root, voters, quorums, None)
}

/// A root that undoes the pending change: the voters and quorums of before it, at the
/// next epoch (R1 applies as to any step).
pub fn roll_back(root: &RootRecord) -> Result<RootRecord, ReconfigError> {
    let Some(pending) = &root.pending else {
        return Err(ReconfigError::NothingPending);
    };
    next_root(
        root,
        pending.before_voters.clone(),
        pending.before_quorums.clone(),
        None,
    )
}

/// Whether `root` waits for a rescan before [`advance`] (an add's first root).
pub fn needs_rescan(root: &RootRecord) -> bool {
    root.pending
        .as_ref()
        .is_some_and(|p| p.step == Step::Widened)
}

fn ids(voters: &[(String, u64)]) -> impl Iterator<Item = u64> + '_ {
    voters.iter().map(|(_, id)| *id)
}

#[cfg(test)]
#[path = "reconfig_tests.rs"]
mod tests;
