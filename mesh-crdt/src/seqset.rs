//! A set of sequence numbers of one origin incarnation: a contiguous prefix (the
//! version-vector entry) plus a *dot cloud* of disjoint ranges above it.
//!
//! Sequence numbers start at 1. The prefix `1..=contiguous` costs one integer however
//! many dots it covers; the cloud holds only what is not contiguous yet, run-length
//! encoded, so a run of removed dots is one range, not one entry per dot. The cloud is
//! folded into the prefix as soon as the gap below it fills ([`SeqSet::insert`] and
//! [`SeqSet::union`] keep the set normalized). This is the garbage collection of removed
//! state: see the crate docs, "Garbage collection".

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// A normalized set of sequence numbers (`>= 1`).
///
/// Invariants (kept by every method, checked when decoding):
/// - every cloud range `start..=end` has `contiguous + 1 < start <= end`;
/// - cloud ranges are disjoint and not adjacent (`prev.end + 1 < next.start`).
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SeqSetWire", into = "SeqSetWire")]
pub struct SeqSet {
    contiguous: u64,
    /// start -> end (inclusive).
    cloud: BTreeMap<u64, u64>,
}

/// The wire form: `{c: contiguous, g: [[start, end], ...]}`.
#[derive(Serialize, Deserialize)]
struct SeqSetWire {
    #[serde(rename = "c", default)]
    contiguous: u64,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    gaps: Vec<(u64, u64)>,
}

/// Why bytes did not decode into a [`SeqSet`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid sequence range {start}..={end}: sequence numbers start at 1 and a range must not be empty")]
pub struct InvalidRange {
    /// First sequence number of the rejected range.
    pub start: u64,
    /// Last sequence number of the rejected range.
    pub end: u64,
}

impl TryFrom<SeqSetWire> for SeqSet {
    type Error = InvalidRange;

    fn try_from(wire: SeqSetWire) -> Result<Self, Self::Error> {
        let mut set = Self {
            contiguous: wire.contiguous,
            cloud: BTreeMap::new(),
        };
        for (start, end) in wire.gaps {
            if start == 0 || start > end {
                return Err(InvalidRange { start, end });
            }
            set.insert_range(start, end);
        }
        Ok(set)
    }
}

impl From<SeqSet> for SeqSetWire {
    fn from(set: SeqSet) -> Self {
        Self {
            contiguous: set.contiguous,
            gaps: set.cloud.into_iter().collect(),
        }
    }
}

impl std::fmt::Debug for SeqSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for range in self.ranges() {
            list.entry(&range);
        }
        list.finish()
    }
}

impl SeqSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set `1..=contiguous`.
    pub fn prefix(contiguous: u64) -> Self {
        Self {
            contiguous,
            cloud: BTreeMap::new(),
        }
    }

    /// The largest `n` such that `1..=n` is in the set (0 if 1 is not).
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// True if nothing is in the set.
    pub fn is_empty(&self) -> bool {
        self.contiguous == 0 && self.cloud.is_empty()
    }

    /// The largest member, if any.
    pub fn max(&self) -> Option<u64> {
        match self.cloud.last_key_value() {
            Some((_, &end)) => Some(end),
            None if self.contiguous > 0 => Some(self.contiguous),
            None => None,
        }
    }

    /// True if `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq <= self.contiguous {
            return true;
        }
        self.cloud
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| seq <= end)
    }

    /// Number of members above the contiguous prefix (the dot cloud), saturating.
    pub fn cloud_len(&self) -> u64 {
        self.cloud.iter().fold(0u64, |n, (&s, &e)| {
            n.saturating_add(e - s).saturating_add(1)
        })
    }

    /// Number of disjoint ranges in the cloud (0 when the set is a prefix).
    pub fn cloud_ranges(&self) -> usize {
        self.cloud.len()
    }

    /// The set as ascending, disjoint, non-adjacent inclusive ranges.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        let prefix = (self.contiguous > 0).then_some(1..=self.contiguous);
        prefix
            .into_iter()
            .chain(self.cloud.iter().map(|(&s, &e)| s..=e))
    }

    /// Adds one sequence number (0 is ignored).
    pub fn insert(&mut self, seq: u64) {
        if seq > 0 {
            self.insert_range(seq, seq);
        }
    }

    /// Adds `start..=end` (ignored if `start == 0` or `start > end`).
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start == 0 || start > end || end <= self.contiguous {
            return;
        }
        let mut start = start.max(self.contiguous.saturating_add(1));
        let mut end = end;
        // Absorb every cloud range that overlaps or touches start..=end.
        let touching: Vec<(u64, u64)> = self
            .cloud
            .range(..=end.saturating_add(1))
            .rev()
            .take_while(|(_, &e)| e.saturating_add(1) >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.cloud.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        if start <= self.contiguous.saturating_add(1) {
            self.contiguous = end;
            self.fold();
        } else {
            self.cloud.insert(start, end);
        }
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &Self) {
        if other.contiguous > self.contiguous {
            self.contiguous = other.contiguous;
            self.fold();
        }
        for (&s, &e) in &other.cloud {
            self.insert_range(s, e);
        }
    }

    /// The members that lie in `lo..=hi`.
    pub fn restrict(&self, lo: u64, hi: u64) -> Self {
        let mut out = Self::new();
        for range in self.ranges() {
            let s = (*range.start()).max(lo);
            let e = (*range.end()).min(hi);
            if s <= e {
                out.insert_range(s, e);
            }
        }
        out
    }

    /// The members of `self` that are not in the ascending iterator `remove`.
    ///
    /// Cost is linear in the number of ranges plus the number of removed members, never
    /// in the size of a range.
    pub fn without_sorted(&self, remove: impl IntoIterator<Item = u64>) -> Self {
        let mut out = Self::new();
        let mut remove = remove.into_iter().peekable();
        for range in self.ranges() {
            let (start, end) = (*range.start(), *range.end());
            // The first member of the range not emitted or removed yet; None once the
            // range is used up.
            let mut cursor = Some(start);
            while let Some(&r) = remove.peek() {
                if r > end {
                    break;
                }
                remove.next();
                let Some(c) = cursor else { continue };
                if r < c {
                    continue;
                }
                if r > c {
                    out.insert_range(c, r - 1);
                }
                cursor = r.checked_add(1).filter(|&next| next <= end);
            }
            if let Some(c) = cursor {
                out.insert_range(c, end);
            }
        }
        out
    }

    /// Moves cloud ranges that now touch the prefix into it.
    fn fold(&mut self) {
        while let Some(entry) = self.cloud.first_entry() {
            if *entry.key() > self.contiguous.saturating_add(1) {
                break;
            }
            let end = entry.remove();
            self.contiguous = self.contiguous.max(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(u64, u64)]) -> SeqSet {
        let mut s = SeqSet::new();
        for &(a, b) in ranges {
            s.insert_range(a, b);
        }
        s
    }

    #[test]
    fn a_filled_gap_folds_the_cloud_into_the_prefix() {
        let mut s = set(&[(1, 3), (5, 7), (9, 9)]);
        assert_eq!(s.contiguous(), 3);
        assert_eq!(s.cloud_ranges(), 2);
        s.insert(4);
        assert_eq!(s.contiguous(), 7);
        s.insert(8);
        assert_eq!(s.contiguous(), 9);
        assert_eq!(s.cloud_ranges(), 0);
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge_into_one() {
        let s = set(&[(10, 12), (13, 14), (20, 25), (11, 21)]);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![10..=25]);
        assert_eq!(s.cloud_len(), 16);
    }

    #[test]
    fn union_with_a_longer_prefix_swallows_the_cloud() {
        let mut a = set(&[(5, 6), (9, 12)]);
        a.union(&SeqSet::prefix(10));
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![1..=12]);
    }

    #[test]
    fn restrict_keeps_only_members_in_the_window() {
        let s = set(&[(1, 4), (8, 10)]);
        assert_eq!(
            s.restrict(3, 8).ranges().collect::<Vec<_>>(),
            vec![3..=4, 8..=8]
        );
        assert!(s.restrict(5, 7).is_empty());
    }

    #[test]
    fn without_sorted_punches_holes_without_walking_ranges() {
        let s = set(&[(1, 1_000_000_000)]);
        let out = s.without_sorted([1, 5, 6, 1_000_000_000]);
        assert_eq!(
            out.ranges().collect::<Vec<_>>(),
            vec![2..=4, 7..=999_999_999]
        );
        let top = set(&[(u64::MAX - 1, u64::MAX)]);
        assert_eq!(
            top.without_sorted([u64::MAX]).ranges().collect::<Vec<_>>(),
            vec![u64::MAX - 1..=u64::MAX - 1]
        );
    }

    #[test]
    fn decoding_rejects_zero_and_reversed_ranges() {
        let bad = rmp_serde::to_vec_named(&SeqSetWire {
            contiguous: 0,
            gaps: vec![(5, 2)],
        })
        .expect("encode");
        assert!(rmp_serde::from_slice::<SeqSet>(&bad).is_err());
        let zero = rmp_serde::to_vec_named(&SeqSetWire {
            contiguous: 0,
            gaps: vec![(0, 2)],
        })
        .expect("encode");
        assert!(rmp_serde::from_slice::<SeqSet>(&zero).is_err());
    }
}
