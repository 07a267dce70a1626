//! The replicated state and its deltas: one type, one join.

use std::collections::BTreeMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::dot::{ChangeKind, Dot, MergeReport};
use crate::origin::OriginState;
use crate::seqset::SeqSet;

/// An owner-partitioned ORSWOT: for each origin, its incarnation, its causal context
/// (a [`SeqSet`]: contiguous prefix plus dot cloud) and its live dots.
///
/// The same type is the full state, a delta, an anti-entropy reply and a chunk: a
/// delta is simply a small state whose context is exactly the dots it adds or removes,
/// and [`merge`](Self::merge) is the one join for all of them. Mutations go through a
/// [`Replica`](crate::Replica), which alone mints dots for its origin.
///
/// Equality is structural; two replicas that have seen the same information are equal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "O: Serialize, E: Serialize + Ord",
    deserialize = "O: Deserialize<'de> + Ord, E: Deserialize<'de> + Clone + Ord + Hash"
))]
pub struct Orswot<O, E> {
    #[serde(rename = "o")]
    pub(crate) origins: BTreeMap<O, OriginState<E>>,
}

/// A delta: a small [`Orswot`] whose causal context covers exactly the dots it carries
/// (added ones as live entries, removed ones as context only).
pub type Delta<O, E> = Orswot<O, E>;

/// What [`Orswot::purge_origin`] did: the retirement marker to gossip, and the dots it
/// dropped here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged<O, E> {
    /// The retirement marker for the purged incarnation. Merging it anywhere purges the
    /// same incarnation there; it is a few bytes however many entries went.
    pub delta: Delta<O, E>,
    /// The dots dropped here, each with [`ChangeKind::Purged`].
    pub report: MergeReport<O, E>,
}

impl<O, E> Default for Orswot<O, E> {
    fn default() -> Self {
        Self {
            origins: BTreeMap::new(),
        }
    }
}

impl<O: std::fmt::Debug, E: std::fmt::Debug> std::fmt::Debug for Orswot<O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.origins.iter()).finish()
    }
}

impl<O, E> Orswot<O, E> {
    /// The empty state (also the empty delta).
    pub fn new() -> Self {
        Self::default()
    }

    /// True if the state knows nothing at all, not even an origin's incarnation.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The origins this state knows about, live or retired.
    pub fn origins(&self) -> impl Iterator<Item = &O> {
        self.origins.keys()
    }

    /// Keeps only the partitions of the origins `keep` accepts, dropping the others
    /// whole (dots, context, retirement). Partitions are independent, so what remains is
    /// still a causally safe delta: it claims exactly what it did for the kept origins.
    /// Returns the origins dropped.
    pub fn retain_origins(&mut self, mut keep: impl FnMut(&O) -> bool) -> Vec<O>
    where
        O: Clone + Ord,
    {
        let mut dropped = Vec::new();
        self.origins.retain(|o, _| {
            let k = keep(o);
            if !k {
                dropped.push(o.clone());
            }
            k
        });
        dropped
    }

    /// Total number of live dots, over all elements and origins.
    pub fn live_dots(&self) -> usize {
        self.origins.values().map(|o| o.dots.len()).sum()
    }
}

impl<O: Ord, E> Orswot<O, E> {
    /// The incarnation of `origin` this state holds, if it knows the origin.
    pub fn incarnation_of(&self, origin: &O) -> Option<u64> {
        self.origins.get(origin).map(|o| o.incarnation)
    }

    /// True if `origin`'s latest known incarnation was purged.
    pub fn is_retired(&self, origin: &O) -> bool {
        self.origins.get(origin).is_some_and(|o| o.retired)
    }

    /// The causal context held for `origin`'s current incarnation.
    pub fn context_of(&self, origin: &O) -> Option<&SeqSet> {
        self.origins.get(origin).map(|o| &o.ctx)
    }
}

impl<O: Ord, E: Ord> Orswot<O, E> {
    /// The elements `origin` holds live, with their multiplicity from that origin, in
    /// element order.
    ///
    /// Entries are partitioned by origin, so a view can hide or unhide a whole node
    /// with this iterator (see the crate docs, "Hiding a down node"). It sorts the
    /// origin's elements (the index is hashed): O(k log k) for k elements.
    pub fn elements_of(&self, origin: &O) -> impl Iterator<Item = (&E, usize)> {
        let mut out: Vec<(&E, usize)> = self
            .origins
            .get(origin)
            .into_iter()
            .flat_map(|o| o.elems.iter().map(|(e, seqs)| (&**e, seqs.len())))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.into_iter()
    }
}

impl<O: Ord + Clone, E: Ord + Clone + Hash> Orswot<O, E> {
    /// Number of live dots of `element`, over all origins (0 if absent).
    pub fn multiplicity(&self, element: &E) -> usize {
        self.origins
            .values()
            .filter_map(|o| o.elems.get(element))
            .map(|seqs| seqs.len())
            .sum()
    }

    /// True if `element` has at least one live dot.
    pub fn contains(&self, element: &E) -> bool {
        self.origins.values().any(|o| o.elems.contains_key(element))
    }

    /// Every element with at least one live dot, with its multiplicity.
    pub fn elements(&self) -> BTreeMap<&E, usize> {
        let mut out = BTreeMap::new();
        for origin in self.origins.values() {
            for (e, seqs) in &origin.elems {
                *out.entry(&**e).or_insert(0) += seqs.len();
            }
        }
        out
    }

    /// The live dots of `element`, in (origin, incarnation, seq) order.
    pub fn dots_of(&self, element: &E) -> Vec<Dot<O>> {
        let mut out = Vec::new();
        for (origin, state) in &self.origins {
            if let Some(seqs) = state.elems.get(element) {
                out.extend(seqs.iter().map(|seq| Dot {
                    origin: origin.clone(),
                    incarnation: state.incarnation,
                    seq,
                }));
            }
        }
        out
    }

    /// Joins `other` (a delta, a chunk, an anti-entropy reply or a full state) into
    /// `self` and reports every dot that appeared or went.
    ///
    /// The join is commutative, associative and idempotent, so deltas may arrive in any
    /// order, duplicated, or be replaced by any state that includes them.
    pub fn merge(&mut self, other: &Self) -> MergeReport<O, E> {
        let mut report = MergeReport::default();
        self.join(other, None, &mut report);
        report
    }

    /// The join, leaving `protect`'s partition untouched: a [`Replica`](crate::Replica)
    /// is the only writer of its own origin, so remote views of it never overwrite it.
    pub(crate) fn join(
        &mut self,
        other: &Self,
        protect: Option<&O>,
        report: &mut MergeReport<O, E>,
    ) {
        for (origin, theirs) in &other.origins {
            if protect == Some(origin) {
                if let Some(mine) = self.origins.get(origin) {
                    if theirs.key() > mine.key() {
                        let by = report
                            .own_incarnation_superseded_by
                            .map_or(theirs.incarnation, |b| b.max(theirs.incarnation));
                        report.own_incarnation_superseded_by = Some(by);
                    }
                }
                continue;
            }
            match self.origins.get_mut(origin) {
                Some(mine) => mine.join(origin, theirs, report),
                None => {
                    // Joining into an empty live state of the same incarnation reports
                    // every live dot as added and ends equal to `theirs`.
                    let mut fresh = OriginState::live(theirs.incarnation);
                    fresh.join(origin, theirs, report);
                    self.origins.insert(origin.clone(), fresh);
                }
            }
        }
    }

    /// Purges `origin`'s current incarnation here, at once (permdown): its entries go,
    /// and a retirement marker stays so that no delta or state of that incarnation, or
    /// of any older one, can bring them back. Only a newer incarnation of the origin is
    /// accepted afterwards.
    ///
    /// The returned delta spreads the purge; merging any state that contains the marker
    /// has the same effect. Returns `None`, changing nothing, if the origin is unknown
    /// or already retired.
    pub fn purge_origin(&mut self, origin: &O) -> Option<Purged<O, E>> {
        let current = self.origins.get(origin)?;
        if current.retired {
            return None;
        }
        let mut delta = Self::new();
        delta
            .origins
            .insert(origin.clone(), OriginState::retired(current.incarnation));
        let report = self.merge(&delta);
        debug_assert!(report.changes.iter().all(|c| c.kind == ChangeKind::Purged));
        Some(Purged { delta, report })
    }
}

impl<O, E> Orswot<O, E>
where
    O: Serialize + serde::de::DeserializeOwned + Ord,
    E: Serialize + serde::de::DeserializeOwned + Ord + Clone + Hash,
{
    /// Encodes the state (MessagePack, named fields) — the bytes
    /// [`encoded_len`](Self::encoded_len) counts and [`chunks`](Self::chunks) bounds.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes and validates a state. Malformed or inconsistent input (a dot outside
    /// its context, a dot given twice, a retired incarnation with entries, trailing
    /// bytes) is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes)
    }

    /// The exact size of [`encode`](Self::encode)'s output, without allocating it.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        codec::encoded_len(self)
    }
}
