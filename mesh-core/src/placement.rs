//! Placement by capability: which live members should own a key.
//!
//! [`ranked_owners`] orders the members whose tags match a [`Selector`] by rendezvous
//! hashing (highest random weight): the weight of member `m` for key `k` is the claims
//! plane's [`pinned_hash`]`(k, m)` — the same weight
//! [`claims::preferred_owner`](crate::claims::preferred_owner) uses — ties by name. Every
//! node that sees the same members with the same tags computes the same order, across
//! versions and platforms.
//!
//! # Properties
//!
//! - **P1 only matching members.** Every name returned is a candidate whose tags match
//!   the selector; none is returned twice.
//! - **P2 minimal movement (HRW).** When a matching member joins, the only keys whose
//!   owner changes are those it now owns; when one leaves, the only keys whose owner
//!   changes are those it owned. The owners of all other keys stay put (property-tested
//!   below).
//! - **P3 determinism.** The result depends only on the key, the set of candidates and
//!   their tags, never on the order candidates are given in.
//!
//! It is a preference, never a lock: two nodes with different views of the membership
//! may pick different owners for a while. Exclusive ownership is what claims are for.

use mesh_types::tags::{Selector, Tags};

use crate::claims::pinned_hash;

/// The members matching `selector`, best first, at most `n` of them. `candidates` are
/// `(name, tags)` of live members; a name given twice counts once.
pub fn ranked_owners<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = (&'a str, &'a Tags)>,
    selector: &Selector,
    n: usize,
) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &'a str)> = candidates
        .into_iter()
        .filter(|(_, tags)| selector.matches(tags))
        .map(|(name, _)| (pinned_hash(&[key.as_bytes(), name.as_bytes()]), name))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, name)| name).collect()
}

/// The preferred owner of `key` among the members matching `selector`.
pub fn preferred_owner<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = (&'a str, &'a Tags)>,
    selector: &Selector,
) -> Option<&'a str> {
    ranked_owners(key, candidates, selector, 1).pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_types::tags::parse_list;
    use proptest::prelude::*;

    fn members(specs: &[(&str, &str)]) -> Vec<(String, Tags)> {
        specs
            .iter()
            .map(|(n, t)| (n.to_string(), parse_list(t).expect("valid")))
            .collect()
    }

    fn view(m: &[(String, Tags)]) -> impl Iterator<Item = (&str, &Tags)> {
        m.iter().map(|(n, t)| (n.as_str(), t))
    }

    #[test]
    fn only_matching_members_are_ranked_and_the_order_is_stable() {
        let m = members(&[
            ("n1", "region=eu"),
            ("n2", "region=us"),
            ("n3", "region=eu,gpu=1"),
            ("n4", "region=eu"),
        ]);
        let eu = Selector::parse("region=eu").expect("valid");
        let ranked = ranked_owners("job-7", view(&m), &eu, 10);
        assert_eq!(ranked.len(), 3);
        assert!(!ranked.contains(&"n2"));
        let mut rev = m.clone();
        rev.reverse();
        assert_eq!(ranked_owners("job-7", view(&rev), &eu, 10), ranked);
        assert_eq!(
            ranked_owners("job-7", view(&m), &eu, 2),
            ranked[..2].to_vec()
        );
        assert_eq!(
            preferred_owner("job-7", view(&m), &Selector::parse("gpu").expect("valid")),
            Some("n3")
        );
        assert_eq!(
            preferred_owner(
                "job-7",
                view(&m),
                &Selector::parse("zone=x").expect("valid")
            ),
            None
        );
        // The same weight as the claims plane's reassignment preference.
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            preferred_owner("job-7", view(&m), &Selector::all()),
            crate::claims::preferred_owner("job-7", names)
        );
    }

    proptest! {
        /// P2: a join moves only the keys the joiner wins; a leave only the leaver's keys.
        #[test]
        fn ownership_moves_minimally(n in 2usize..12, extra in 0usize..12, keys in 50usize..200) {
            let m: Vec<(String, Tags)> =
                (0..n).map(|i| (format!("n{i}"), Tags::new())).collect();
            let joiner = (format!("j{extra}"), Tags::new());
            let mut grown = m.clone();
            grown.push(joiner.clone());
            let all = Selector::all();
            for k in 0..keys {
                let key = format!("key-{k}");
                let before = preferred_owner(&key, view(&m), &all).map(str::to_owned);
                let after = preferred_owner(&key, view(&grown), &all).map(str::to_owned);
                if before != after {
                    prop_assert_eq!(after.as_deref(), Some(joiner.0.as_str()));
                }
                // The leave is the same change read backwards.
                let shrunk: Vec<(String, Tags)> =
                    m.iter().filter(|(name, _)| *name != "n0").cloned().collect();
                let left = preferred_owner(&key, view(&shrunk), &all).map(str::to_owned);
                if before != left {
                    prop_assert_eq!(before.as_deref(), Some("n0"));
                }
            }
        }
    }
}
