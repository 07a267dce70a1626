//! The context representation against a plain set model: inserting, unioning,
//! restricting and punching holes keep the set equal to the model and normalized
//! (the prefix is maximal, cloud ranges are disjoint and not adjacent).

mod common;

use std::collections::BTreeSet;

use common::config;
use mesh_crdt::SeqSet;
use proptest::prelude::*;

fn members(set: &SeqSet) -> BTreeSet<u64> {
    set.ranges().flatten().collect()
}

fn assert_normalized(set: &SeqSet) -> Result<(), TestCaseError> {
    let ranges: Vec<_> = set.ranges().collect();
    for pair in ranges.windows(2) {
        prop_assert!(
            pair[0].end() + 1 < *pair[1].start(),
            "not normalized: {:?}",
            ranges
        );
    }
    let model = members(set);
    let contiguous = (1..).take_while(|s| model.contains(s)).count() as u64;
    prop_assert_eq!(set.contiguous(), contiguous);
    prop_assert_eq!(set.cloud_len(), model.len() as u64 - contiguous);
    prop_assert_eq!(set.max(), model.last().copied());
    Ok(())
}

fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((1u64..60, 0u64..6).prop_map(|(s, len)| (s, s + len)), 0..12)
}

fn build(ranges: &[(u64, u64)]) -> (SeqSet, BTreeSet<u64>) {
    let mut set = SeqSet::new();
    let mut model = BTreeSet::new();
    for &(s, e) in ranges {
        set.insert_range(s, e);
        model.extend(s..=e);
    }
    (set, model)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn inserts_match_the_model(ranges in arb_ranges(), singles in prop::collection::vec(0u64..70, 0..20)) {
        let (mut set, mut model) = build(&ranges);
        for s in singles {
            set.insert(s);
            if s > 0 {
                model.insert(s);
            }
        }
        prop_assert_eq!(members(&set), model.clone());
        for probe in 0..70 {
            prop_assert_eq!(set.contains(probe), model.contains(&probe));
        }
        assert_normalized(&set)?;
    }

    #[test]
    fn union_matches_the_model(a in arb_ranges(), b in arb_ranges(), prefix in 0u64..30) {
        let (mut x, mut mx) = build(&a);
        let (mut y, my) = build(&b);
        y.union(&SeqSet::prefix(prefix));
        let my: BTreeSet<u64> = my.into_iter().chain(1..=prefix).collect();
        x.union(&y);
        mx.extend(my);
        prop_assert_eq!(members(&x), mx);
        assert_normalized(&x)?;
    }

    #[test]
    fn restrict_matches_the_model(a in arb_ranges(), lo in 0u64..70, len in 0u64..40) {
        let (set, model) = build(&a);
        let hi = lo + len;
        let cut = set.restrict(lo, hi);
        let expected: BTreeSet<u64> = model.range(lo..=hi).copied().collect();
        prop_assert_eq!(members(&cut), expected);
        assert_normalized(&cut)?;
    }

    #[test]
    fn without_sorted_matches_the_model(a in arb_ranges(), holes in prop::collection::btree_set(0u64..70, 0..20)) {
        let (set, model) = build(&a);
        let out = set.without_sorted(holes.iter().copied());
        let expected: BTreeSet<u64> = model.difference(&holes).copied().collect();
        prop_assert_eq!(members(&out), expected);
        assert_normalized(&out)?;
    }
}
