//! The state of one origin: its incarnation, its causal context and its live dots.
//!
//! Everything here is per origin because only the origin writes its partition: the
//! join of two states is the join of their origins one by one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::dot::{Change, ChangeKind, Dot, MergeReport};
use crate::seqset::SeqSet;

/// The hasher of the element index: foldhash with its fixed default seed, so the
/// index is deterministic (no random state, same on every run). Nothing observable
/// depends on hash order: every iteration that reaches an output or the wire goes in
/// element or sequence order. Elements come from this node or from validated states of
/// the cluster's authenticated peers.
pub type FixedState = foldhash::fast::FixedState;

/// One origin's partition of the store.
///
/// Invariants (kept by every method, checked when decoding):
/// - every live dot is in `ctx` (`dots.keys() ⊆ ctx`);
/// - `elems` is the inverse of `dots`, without empty sets, and shares each element
///   with it (one allocation per element, however many dots and deltas hold it);
/// - `live_hash` is the sum of `mix(seq)` over the live dots;
/// - a retired origin has no context and no dots.
///
/// `elems` is hashed (a lookup costs one hash of the element, whatever the number of
/// elements, where an ordered map costs a comparison and a likely cache miss per
/// level); whatever must be ordered is sorted on the way out (the wire form,
/// [`Orswot::elements_of`](crate::Orswot::elements_of)).
#[derive(Clone)]
pub(crate) struct OriginState<E> {
    pub(crate) incarnation: u64,
    /// Set by a purge: the whole incarnation is gone, and only a newer one may return.
    pub(crate) retired: bool,
    /// Every dot of this incarnation this replica knows about, live or removed.
    pub(crate) ctx: SeqSet,
    /// Live dots: seq -> element.
    pub(crate) dots: BTreeMap<u64, Arc<E>>,
    /// Derived index: element -> seqs of its live dots.
    pub(crate) elems: HashMap<Arc<E>, Seqs, FixedState>,
    /// Derived: order-independent hash of the live seqs (for digests).
    pub(crate) live_hash: u64,
}

/// Equality of the information held; `elems` and `live_hash` are derived from `dots`.
impl<E: PartialEq> PartialEq for OriginState<E> {
    fn eq(&self, other: &Self) -> bool {
        self.incarnation == other.incarnation
            && self.retired == other.retired
            && self.ctx == other.ctx
            && self.dots == other.dots
    }
}

impl<E: Eq> Eq for OriginState<E> {}

/// The seqs of one element's live dots, never empty. Almost every element has one
/// dot (a process joins a group once), kept inline; more go in a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seqs {
    /// Exactly one live dot.
    One(u64),
    /// Two or more live dots.
    Many(BTreeSet<u64>),
}

impl Seqs {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(set) => set.len(),
        }
    }

    /// The newest (largest) seq.
    pub(crate) fn last(&self) -> u64 {
        match self {
            Self::One(seq) => *seq,
            // `Many` holds at least two seqs.
            Self::Many(set) => set.last().copied().unwrap_or_default(),
        }
    }

    /// The seqs, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, many) = match self {
            Self::One(seq) => (Some(*seq), None),
            Self::Many(set) => (None, Some(set.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn insert(&mut self, seq: u64) {
        match self {
            Self::One(s) if *s == seq => {}
            Self::One(s) => *self = Self::Many(BTreeSet::from([*s, seq])),
            Self::Many(set) => {
                set.insert(seq);
            }
        }
    }

    /// Removes `seq`; true if no seq is left (the caller drops the entry).
    fn remove(&mut self, seq: u64) -> bool {
        match self {
            Self::One(s) => *s == seq,
            Self::Many(set) => {
                set.remove(&seq);
                if set.len() == 1 {
                    *self = Self::One(set.first().copied().unwrap_or(seq));
                }
                false
            }
        }
    }
}

impl Serialize for Seqs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
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
            elems: HashMap::default(),
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

impl<E: Clone + Ord + Hash> OriginState<E> {
    pub(crate) fn insert_dot(&mut self, seq: u64, element: Arc<E>) {
        if let Some(old) = self.dots.insert(seq, Arc::clone(&element)) {
            // Re-inserting a live dot: undo its old index entry first.
            self.unindex(seq, &old);
        } else {
            self.live_hash = self.live_hash.wrapping_add(mix(seq));
        }
        self.elems
            .entry(element)
            .and_modify(|seqs| seqs.insert(seq))
            .or_insert(Seqs::One(seq));
    }

    pub(crate) fn remove_dot(&mut self, seq: u64) -> Option<Arc<E>> {
        let element = self.dots.remove(&seq)?;
        self.unindex(seq, &element);
        self.live_hash = self.live_hash.wrapping_sub(mix(seq));
        Some(element)
    }

    fn unindex(&mut self, seq: u64, element: &E) {
        // One search for the usual element with one dot; one more to put back the
        // rest of a multiple one.
        if let Some((key, mut seqs)) = self.elems.remove_entry(element) {
            if !seqs.remove(seq) {
                self.elems.insert(key, seqs);
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
                let element = Arc::unwrap_or_clone(element);
                report
                    .changes
                    .push(self.change(origin, seq, element, ChangeKind::Removed));
            }
        }
        // 2. Their live dots that we have never seen: added. A dot our context covers
        //    but we do not hold was removed here, and stays removed.
        for (&seq, element) in &other.dots {
            if !self.ctx.contains(seq) {
                self.insert_dot(seq, Arc::clone(element));
                report
                    .changes
                    .push(self.change(origin, seq, E::clone(element), ChangeKind::Added));
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
                .push(self.change(origin, seq, E::clone(element), kind));
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
                out.insert_dot(seq, Arc::clone(element));
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

impl<E: Serialize + Ord> Serialize for OriginState<E> {
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

/// Serializes `element -> seqs` as a sequence of `(element, [seq, ...])` pairs in
/// element order (the order the wire form has always had), without copying elements.
struct ElemsRef<'a, E>(&'a HashMap<Arc<E>, Seqs, FixedState>);

impl<E: Serialize + Ord> Serialize for ElemsRef<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<(&E, &Seqs)> = self.0.iter().map(|(e, s)| (&**e, s)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_seq(sorted)
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

impl<E: Clone + Ord + Hash> TryFrom<OriginWire<E>> for OriginState<E> {
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
            let element = Arc::new(element);
            for seq in seqs {
                if !state.ctx.contains(seq) {
                    return Err(InvalidState::DotOutsideContext { seq });
                }
                if state.dots.contains_key(&seq) {
                    return Err(InvalidState::DoubleSpentDot { seq });
                }
                state.insert_dot(seq, Arc::clone(&element));
            }
        }
        Ok(state)
    }
}

impl<'de, E: Deserialize<'de> + Clone + Ord + Hash> Deserialize<'de> for OriginState<E> {
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

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use crate::{Orswot, Replica, SeqSet};

    /// The wire form as it was written when the index was an ordered map: elements in
    /// element order, each with its seqs ascending.
    #[derive(Serialize)]
    struct WireOrigin {
        i: u64,
        c: SeqSet,
        e: Vec<(u32, Vec<u64>)>,
    }

    #[derive(Serialize)]
    struct WireState {
        o: std::collections::BTreeMap<u8, WireOrigin>,
    }

    fn reference(incarnation: u64, ctx: SeqSet, elems: Vec<(u32, Vec<u64>)>) -> Vec<u8> {
        let state = WireState {
            o: [(
                1,
                WireOrigin {
                    i: incarnation,
                    c: ctx,
                    e: elems,
                },
            )]
            .into(),
        };
        crate::codec::encode(&state).expect("encode")
    }

    #[test]
    fn the_hashed_index_encodes_elements_in_element_order_as_the_wire_form_always_had() {
        let mut r: Replica<u8, u32> = Replica::new(1, 7);
        for e in [30, 10, 20, 10, 5] {
            let _ = r.add(e);
        }
        let _ = r.remove(&5).expect("added");
        let expected = reference(
            7,
            SeqSet::prefix(5),
            vec![(10, vec![2, 4]), (20, vec![3]), (30, vec![1])],
        );
        assert_eq!(r.state().encode().expect("encode"), expected);
        let back = Orswot::<u8, u32>::decode(&expected).expect("valid");
        assert_eq!(&back, r.state());
    }

    #[test]
    fn states_with_the_same_dots_are_equal_and_encode_alike_whatever_their_history() {
        let mut a: Replica<u8, u32> = Replica::new(1, 1);
        let mut deltas = Vec::new();
        for e in [1, 2, 3, 1, 1] {
            deltas.push(a.add(e));
        }
        deltas.push(a.remove(&1).expect("added"));
        deltas.push(a.remove(&1).expect("added"));
        // Delivered backwards, so the index of `b` is built in another order, and
        // element 1 goes through one, three and back to one dot differently.
        let mut b: Orswot<u8, u32> = Orswot::new();
        for d in deltas.iter().rev() {
            b.merge(d);
        }
        assert_eq!(&b, a.state());
        assert_eq!(
            b.encode().expect("encode"),
            a.state().encode().expect("encode")
        );
        assert_eq!(b.multiplicity(&1), 1);
        assert_eq!(b.dots_of(&1).len(), 1);
        assert_eq!(
            b.elements_of(&1).collect::<Vec<_>>(),
            vec![(&1, 1), (&2, 1), (&3, 1)]
        );
    }

    #[test]
    fn an_element_removed_down_to_one_dot_keeps_the_newest_remaining_one() {
        let live_seqs = |r: &Replica<u8, u32>| -> Vec<u64> {
            r.state().dots_of(&9).iter().map(|d| d.seq).collect()
        };
        let mut r: Replica<u8, u32> = Replica::new(1, 1);
        for _ in 0..3 {
            let _ = r.add(9);
        }
        // remove takes the newest live dot each time: 3, then 2.
        let _ = r.remove(&9).expect("added");
        assert_eq!(live_seqs(&r), vec![1, 2]);
        let _ = r.remove(&9).expect("added");
        assert_eq!(live_seqs(&r), vec![1]);
        assert_eq!(r.local_multiplicity(&9), 1);
        let _ = r.remove(&9).expect("added");
        assert_eq!(r.local_multiplicity(&9), 0);
        assert!(r.remove(&9).is_err());
        assert_eq!(r.state().live_dots(), 0);
    }
}
