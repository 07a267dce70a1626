//! One node's replica: the only writer of its own origin's partition.

use std::hash::Hash;
use std::sync::Arc;

use crate::digest::Digest;
use crate::dot::MergeReport;
use crate::origin::OriginState;
use crate::orswot::{Delta, Orswot, Purged};
use crate::seqset::SeqSet;

/// A node's copy of the replicated set, and the only place that mints dots for the
/// node's own origin.
///
/// Every local mutation returns the [`Delta`] to disseminate. Deltas of several
/// mutations may be joined with [`Orswot::merge`] into one (a process exit that leaves
/// every group is one delta).
///
/// ```
/// use mesh_crdt::Replica;
///
/// let mut a: Replica<&str, &str> = Replica::new("n1", 1);
/// let mut b: Replica<&str, &str> = Replica::new("n2", 1);
/// let d1 = a.add("chat");
/// let d2 = a.add("chat");
/// let d3 = a.remove(&"chat").expect("joined twice");
/// // Delivered out of order and duplicated: the join does not care.
/// for d in [&d3, &d1, &d3, &d2] {
///     b.merge(d);
/// }
/// assert_eq!(b.state().multiplicity(&"chat"), 1);
/// assert_eq!(b.state().elements(), a.state().elements());
/// ```
#[derive(Clone, Debug)]
pub struct Replica<O, E> {
    origin: O,
    incarnation: u64,
    state: Orswot<O, E>,
    /// The largest incarnation of our own origin that someone else claimed retired or
    /// newer; [`Replica::reincarnate`] must go past it.
    superseded_by: Option<u64>,
}

/// Why [`Replica::remove`] or [`Replica::remove_all`] failed. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// This origin holds no live dot of the element (never added, or already removed
    /// as often as it was added). Entries added by other origins cannot be removed here.
    #[error("the element has no live dot from this origin")]
    NotPresent,
}

/// Why [`Replica::purge_origin`] refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// A replica never purges its own origin; a restart uses a new incarnation instead.
    #[error("a replica cannot purge its own origin")]
    OwnOrigin,
    /// The origin is not known here, so there is nothing to purge.
    #[error("the origin is unknown")]
    UnknownOrigin,
    /// The origin's latest known incarnation is already retired.
    #[error("the origin is already purged")]
    AlreadyPurged,
}

/// Why [`Replica::reincarnate`] refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReincarnateError {
    /// The new incarnation must be larger than the current one and than any
    /// incarnation of this origin seen retired or claimed elsewhere.
    #[error("incarnation {requested} is not above {minimum_exclusive}")]
    NotNewer {
        /// The incarnation asked for.
        requested: u64,
        /// The incarnation it must exceed.
        minimum_exclusive: u64,
    },
}

impl<O: Ord + Clone, E: Ord + Clone + Hash> Replica<O, E> {
    /// A replica for `origin` at `incarnation`, knowing nothing else yet.
    ///
    /// Each boot of a node must use an incarnation larger than every earlier one: the
    /// new incarnation purges the old one's entries everywhere it arrives (send
    /// [`announce`](Self::announce) right away so that happens even before the first
    /// add), and older-incarnation deltas still in flight are ignored.
    pub fn new(origin: O, incarnation: u64) -> Self {
        let mut state = Orswot::new();
        state
            .origins
            .insert(origin.clone(), OriginState::live(incarnation));
        Self {
            origin,
            incarnation,
            state,
            superseded_by: None,
        }
    }

    /// The origin this replica writes for.
    pub fn origin(&self) -> &O {
        &self.origin
    }

    /// The origin incarnation this replica mints dots in.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The replicated state (all origins).
    pub fn state(&self) -> &Orswot<O, E> {
        &self.state
    }

    /// A set by another node retired (purged) this replica's own incarnation, or
    /// claimed a newer one: the value to pass [`reincarnate`](Self::reincarnate) past.
    pub fn superseded_by(&self) -> Option<u64> {
        self.superseded_by
    }

    fn own(&self) -> &OriginState<E> {
        // Invariant: `new` inserts our partition and merges never touch it.
        match self.state.origins.get(&self.origin) {
            Some(own) => own,
            None => unreachable!("a replica always holds its own partition"),
        }
    }

    fn own_mut(&mut self) -> &mut OriginState<E> {
        // Invariant: as in `own`.
        match self.state.origins.get_mut(&self.origin) {
            Some(own) => own,
            None => unreachable!("a replica always holds its own partition"),
        }
    }

    /// Our partition's header: this origin at this incarnation, no dots. Merging it
    /// purges older incarnations of the origin at once.
    pub fn announce(&self) -> Delta<O, E> {
        self.own_delta(SeqSet::new(), std::iter::empty())
    }

    fn own_delta(&self, ctx: SeqSet, dots: impl IntoIterator<Item = (u64, Arc<E>)>) -> Delta<O, E> {
        let mut part = OriginState::live(self.incarnation);
        part.ctx = ctx;
        for (seq, element) in dots {
            part.insert_dot(seq, element);
        }
        let mut delta = Orswot::new();
        delta.origins.insert(self.origin.clone(), part);
        delta
    }

    /// Adds one occurrence of `element` (a join): mints the next dot of this origin.
    /// Returns the delta carrying exactly that dot.
    ///
    /// # Panics
    ///
    /// After 2^64 − 1 adds in one incarnation.
    pub fn add(&mut self, element: E) -> Delta<O, E> {
        let own = self.own_mut();
        let seq = own
            .ctx
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .expect("2^64 adds in one incarnation");
        own.ctx.insert(seq);
        // One allocation for the element, shared by the state and the delta.
        let element = Arc::new(element);
        own.insert_dot(seq, Arc::clone(&element));
        let mut ctx = SeqSet::new();
        ctx.insert(seq);
        self.own_delta(ctx, [(seq, element)])
    }

    /// Removes one occurrence of `element` added by this origin (a leave): the newest
    /// of its live dots. Returns the delta whose context is exactly that dot and which
    /// carries no entry, which is how a removal is told.
    pub fn remove(&mut self, element: &E) -> Result<Delta<O, E>, RemoveError> {
        let seq = self
            .own()
            .elems
            .get(element)
            .map(|seqs| seqs.last())
            .ok_or(RemoveError::NotPresent)?;
        self.own_mut().remove_dot(seq);
        let mut ctx = SeqSet::new();
        ctx.insert(seq);
        Ok(self.own_delta(ctx, std::iter::empty()))
    }

    /// Removes every occurrence of `element` added by this origin (a process exit).
    pub fn remove_all(&mut self, element: &E) -> Result<Delta<O, E>, RemoveError> {
        let seqs: Vec<u64> = self
            .own()
            .elems
            .get(element)
            .ok_or(RemoveError::NotPresent)?
            .iter()
            .collect();
        let mut ctx = SeqSet::new();
        for seq in seqs {
            self.own_mut().remove_dot(seq);
            ctx.insert(seq);
        }
        Ok(self.own_delta(ctx, std::iter::empty()))
    }

    /// Number of live dots of `element` that this origin added.
    pub fn local_multiplicity(&self, element: &E) -> usize {
        self.own().elems.get(element).map_or(0, |s| s.len())
    }

    /// Joins a delta, chunk, anti-entropy reply or full state from a peer.
    ///
    /// The replica's own partition is never changed by a merge: no one else writes it.
    /// If the input retires this incarnation or claims a newer one, the report's
    /// [`own_incarnation_superseded_by`](MergeReport::own_incarnation_superseded_by) is
    /// set and the caller should [`reincarnate`](Self::reincarnate).
    pub fn merge(&mut self, delta: &Delta<O, E>) -> MergeReport<O, E> {
        let mut report = MergeReport::default();
        self.state.join(delta, Some(&self.origin), &mut report);
        if let Some(by) = report.own_incarnation_superseded_by {
            self.superseded_by = Some(self.superseded_by.map_or(by, |b| b.max(by)));
        }
        report
    }

    /// This replica's digest (see [`Orswot::digest`]).
    pub fn digest(&self) -> Digest<O> {
        self.state.digest()
    }

    /// What the peer summarized by `peer` lacks (see [`Orswot::missing_for`]).
    pub fn missing_for(&self, peer: &Digest<O>) -> Delta<O, E> {
        self.state.missing_for(peer)
    }

    /// Purges `origin`'s current incarnation (see [`Orswot::purge_origin`]): call it
    /// when the node has been down for the permdown period.
    pub fn purge_origin(&mut self, origin: &O) -> Result<Purged<O, E>, PurgeError> {
        if *origin == self.origin {
            return Err(PurgeError::OwnOrigin);
        }
        if !self.state.origins.contains_key(origin) {
            return Err(PurgeError::UnknownOrigin);
        }
        self.state
            .purge_origin(origin)
            .ok_or(PurgeError::AlreadyPurged)
    }

    /// Moves this origin to a new, larger incarnation, keeping its live entries: every
    /// live dot is re-minted as `1..=n` in the new incarnation. Returns the whole new
    /// partition as a delta; merging it anywhere replaces the old incarnation (and a
    /// retirement marker for it) with the new one. Multiplicities do not change.
    ///
    /// Use it when [`superseded_by`](Self::superseded_by) is set: other nodes purged
    /// this one while it was cut off, and this is how its entries come back.
    pub fn reincarnate(&mut self, incarnation: u64) -> Result<Delta<O, E>, ReincarnateError> {
        let minimum_exclusive = self
            .superseded_by
            .map_or(self.incarnation, |b| b.max(self.incarnation));
        if incarnation <= minimum_exclusive {
            return Err(ReincarnateError::NotNewer {
                requested: incarnation,
                minimum_exclusive,
            });
        }
        let mut fresh = OriginState::live(incarnation);
        let mut seq = 0u64;
        for element in self.own().dots.values() {
            seq += 1;
            fresh.insert_dot(seq, Arc::clone(element));
        }
        fresh.ctx = SeqSet::prefix(seq);
        self.incarnation = incarnation;
        self.superseded_by = None;
        self.state
            .origins
            .insert(self.origin.clone(), fresh.clone());
        let mut delta = Orswot::new();
        delta.origins.insert(self.origin.clone(), fresh);
        Ok(delta)
    }
}
