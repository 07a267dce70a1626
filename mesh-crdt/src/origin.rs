//! The state of one origin: its incarnation, its causal context and its live dots.
//!
//! Everything here is per origin because only the origin writes its partition: the
//! join of two states is the join of their origins one by one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::dot::{Change, ChangeKind, Dot, MergeReport};
use crate::seqset::SeqSet;

/// One origin's partition of the store.
///
/// Invariants (kept by every method, checked when decoding):
/// - every live dot is in `ctx` (`dots.keys() ⊆ ctx`);
/// - `elems` is the inverse of `dots`, without empty sets;
/// - `live_hash` is the sum of `mix(seq)` over the live dots;
/// - a retired origin has no context and no dots.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct OriginState<E> {
    pub(crate) incarnation: u64,
    /// Set by a purge: the whole incarnation is gone, and only a newer one may return.
    pub(crate) retired: bool,
    /// Every dot of this incarnation this replica knows about, live or removed.
    pub(crate) ctx: SeqSet,
    /// Live dots: seq -> element.
    pub(crate) dots: BTreeMap<u64, E>,
    /// Derived index: element -> seqs of its live dots.
    pub(crate) elems: BTreeMap<E, BTreeSet<u64>>,
    /// Derived: order-independent hash of the live seqs (for digests).
    pub(crate) live_hash: u64,
}

/// A 64-bit mixer (splitmix64's finalizer): spreads sequence numbers so that the sum
/// of a set's mixed members is a good set hash.
pub(crate) fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<E> OriginState<E> {
    /// A live incarnation that has minted nothing yet.
    pub(crate) fn live(incarnation: u64) -> Self {
        Self {
            incarnation,
            retired: false,
            ctx: SeqSet::new(),
            dots: BTreeMap::new(),
            elems: BTreeMap::new(),
            live_hash: 0,
        }
    }

    /// The marker that retires `incarnation` (and every older one).
    pub(crate) fn retired(incarnation: u64) -> Self {
        Self {
            retired: true,
            ..Self::live(incarnation)
        }
    }

    /// The lattice order between incarnations of one origin: a newer incarnation wins,
    /// and within one incarnation the retirement marker wins over live state.
    pub(crate) fn key(&self) -> (u64, bool) {
        (self.incarnation, self.retired)
    }
}

impl<E: Clone + Ord> OriginState<E> {
    pub(crate) fn insert_dot(&mut self, seq: u64, element: E) {
        if let Some(old) = self.dots.insert(seq, element.clone()) {
            // Re-inserting a live dot: undo its old index entry first.
            self.unindex(seq, &old);
        } else {
            self.live_hash = self.live_hash.wrapping_add(mix(seq));
        }
        self.elems.entry(element).or_default().insert(seq);
    }

    pub(crate) fn remove_dot(&mut self, seq: u64) -> Option<E> {
        let element = self.dots.remove(&seq)?;
        self.unindex(seq, &element);
        self.live_hash = self.live_hash.wrapping_sub(mix(seq));
        Some(element)
    }

    fn unindex(&mut self, seq: u64, element: &E) {
        if let Some(seqs) = self.elems.get_mut(element) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.elems.remove(element);
            }
        }
    }

    /// Joins `other` (another replica's view of the same origin) into `self`.
    pub(crate) fn join<O: Clone>(
        &mut self,
        origin: &O,
        other: &Self,
        report: &mut MergeReport<O, E>,
    ) {
        match other.key().cmp(&self.key()) {
            Ordering::Less => {}
            Ordering::Greater => {
                // A newer incarnation, or the retirement of ours: ours goes at once,
                // whole, and can never come back (its key is now below ours).
                self.report_all(origin, ChangeKind::Purged, report);
                *self = other.clone();
                self.report_all(origin, ChangeKind::Added, report);
            }
            Ordering::Equal if self.retired => {}
            Ordering::Equal => self.join_same_incarnation(origin, other, report),
        }
    }

    /// The ORSWOT join for one incarnation: a dot stays live iff it is live on both
    /// sides, or live on one side and unknown to the other's context. A dot that one
    /// side's context covers but that side does not hold was removed by the origin.
    fn join_same_incarnation<O: Clone>(
        &mut self,
        origin: &O,
        other: &Self,
        report: &mut MergeReport<O, E>,
    ) {
        // 1. Our live dots that the other side has seen and no longer holds: removed.
        //    Walk only our live dots inside the other's context ranges.
        let mut removed = Vec::new();
        for range in other.ctx.ranges() {
            for (&seq, _) in self.dots.range(range) {
                if !other.dots.contains_key(&seq) {
                    removed.push(seq);
                }
            }
        }
        for seq in removed {
            if let Some(element) = self.remove_dot(seq) {
                report
                    .changes
                    .push(self.change(origin, seq, element, ChangeKind::Removed));
            }
        }
        // 2. Their live dots that we have never seen: added. A dot our context covers
        //    but we do not hold was removed here, and stays removed.
        for (&seq, element) in &other.dots {
            if !self.ctx.contains(seq) {
                self.insert_dot(seq, element.clone());
                report
                    .changes
                    .push(self.change(origin, seq, element.clone(), ChangeKind::Added));
            }
        }
        // 3. We now know every dot either side knew.
        self.ctx.union(&other.ctx);
    }

    fn change<O: Clone>(&self, origin: &O, seq: u64, element: E, kind: ChangeKind) -> Change<O, E> {
        Change {
            element,
            dot: Dot {
                origin: origin.clone(),
                incarnation: self.incarnation,
                seq,
            },
            kind,
        }
    }

    fn report_all<O: Clone>(&self, origin: &O, kind: ChangeKind, report: &mut MergeReport<O, E>) {
        for (&seq, element) in &self.dots {
            report
                .changes
                .push(self.change(origin, seq, element.clone(), kind));
        }
    }

    /// The part of this state about the dots `lo..=hi`: exactly the context in that
    /// window and the live dots in it. This is the only way chunks and anti-entropy
    /// replies are cut, so a piece never claims a dot it does not carry.
    pub(crate) fn restrict(&self, lo: u64, hi: u64) -> Self {
        let mut out = Self {
            incarnation: self.incarnation,
            retired: self.retired,
            ctx: self.ctx.restrict(lo, hi),
            ..Self::live(self.incarnation)
        };
        if lo <= hi {
            for (&seq, element) in self.dots.range(lo..=hi) {
                out.insert_dot(seq, element.clone());
            }
        }
        out
    }

    /// The hash of the live seqs `<= upto`.
    pub(crate) fn live_hash_upto(&self, upto: u64) -> u64 {
        let above = upto.checked_add(1).map_or(0, |from| {
            self.dots
                .range(from..)
                .fold(0u64, |h, (&seq, _)| h.wrapping_add(mix(seq)))
        });
        self.live_hash.wrapping_sub(above)
    }
}

// ---------------------------------------------------------------------------------
// Wire form: `{i: incarnation, r: retired?, c: context, e: [[element, [seq, ...]], ...]}`.
// Elements are written once with all their live seqs; the seq -> element map and the
// hash are rebuilt (and every invariant checked) when decoding.

/// Why a decoded origin state was rejected. The whole decode fails; nothing is merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidState {
    /// A retirement marker also carried a context or dots.
    #[error("a retired incarnation carries state")]
    RetiredWithState,
    /// An element was listed without any dot.
    #[error("an element has no dots")]
    ElementWithoutDots,
    /// A live dot is outside the state's own causal context.
    #[error("dot {seq} is not covered by its causal context")]
    DotOutsideContext {
        /// The offending sequence number.
        seq: u64,
    },
    /// The same dot was given to two elements (or twice to one).
    #[error("dot {seq} is listed twice")]
    DoubleSpentDot {
        /// The offending sequence number.
        seq: u64,
    },
}

impl<E: Serialize> Serialize for OriginState<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 2 + usize::from(self.retired) + usize::from(!self.elems.is_empty());
        let mut s = serializer.serialize_struct("OriginState", fields)?;
        s.serialize_field("i", &self.incarnation)?;
        if self.retired {
            s.serialize_field("r", &true)?;
        } else {
            s.skip_field("r")?;
        }
        s.serialize_field("c", &self.ctx)?;
        if self.elems.is_empty() {
            s.skip_field("e")?;
        } else {
            s.serialize_field("e", &ElemsRef(&self.elems))?;
        }
        s.end()
    }
}

/// Serializes `element -> seqs` as a sequence of `(element, [seq, ...])` pairs without
/// copying the state.
struct ElemsRef<'a, E>(&'a BTreeMap<E, BTreeSet<u64>>);

impl<E: Serialize> Serialize for ElemsRef<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[derive(Deserialize)]
struct OriginWire<E> {
    #[serde(rename = "i")]
    incarnation: u64,
    #[serde(rename = "r", default)]
    retired: bool,
    #[serde(rename = "c", default)]
    ctx: SeqSet,
    #[serde(rename = "e", default = "Vec::new")]
    elems: Vec<(E, Vec<u64>)>,
}

impl<E: Clone + Ord> TryFrom<OriginWire<E>> for OriginState<E> {
    type Error = InvalidState;

    fn try_from(wire: OriginWire<E>) -> Result<Self, Self::Error> {
        if wire.retired {
            if !wire.ctx.is_empty() || !wire.elems.is_empty() {
                return Err(InvalidState::RetiredWithState);
            }
            return Ok(Self::retired(wire.incarnation));
        }
        let mut state = Self {
            ctx: wire.ctx,
            ..Self::live(wire.incarnation)
        };
        for (element, seqs) in wire.elems {
            if seqs.is_empty() {
                return Err(InvalidState::ElementWithoutDots);
            }
            for seq in seqs {
                if !state.ctx.contains(seq) {
                    return Err(InvalidState::DotOutsideContext { seq });
                }
                if state.dots.contains_key(&seq) {
                    return Err(InvalidState::DoubleSpentDot { seq });
                }
                state.insert_dot(seq, element.clone());
            }
        }
        Ok(state)
    }
}

impl<'de, E: Deserialize<'de> + Clone + Ord> Deserialize<'de> for OriginState<E> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = OriginWire::<E>::deserialize(deserializer)?;
        Self::try_from(wire).map_err(serde::de::Error::custom)
    }
}

impl<E: std::fmt::Debug> std::fmt::Debug for OriginState<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Origin");
        d.field("inc", &self.incarnation);
        if self.retired {
            d.field("retired", &true);
        }
        d.field("ctx", &self.ctx).field("dots", &self.dots).finish()
    }
}
