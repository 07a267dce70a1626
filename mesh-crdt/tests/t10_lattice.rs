//! Invariant 1: merge is a join — commutative, associative, idempotent — on arbitrary
//! states, not only on states a replica can reach. Also: encoding round-trips, and
//! decoding arbitrary bytes never panics.
//!
//! States are generated in their wire form: per origin an incarnation, maybe a
//! retirement marker, a random context over seqs 1..=12 and a random live subset of
//! it. A dot's element is a fixed function of the dot (an origin mints each dot once,
//! for one element), so two states never disagree on what a dot is.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{config, state_from_parts, Part, State};
use mesh_crdt::Orswot;
use proptest::prelude::*;

type Parts = BTreeMap<u8, Part>;

fn element_of(origin: u8, incarnation: u64, seq: u64) -> u8 {
    ((u64::from(origin) * 31 + incarnation * 7 + seq * 13) % 5) as u8
}

/// One origin's partition: (incarnation, retired, context, live dots).
fn origin_part(origin: u8) -> impl Strategy<Value = Part> {
    (
        1u64..=2,
        prop::bool::weighted(0.15),
        prop::collection::vec((any::<bool>(), any::<bool>()), 12),
    )
        .prop_map(move |(inc, retired, bits)| {
            if retired {
                return (inc, true, BTreeSet::new(), BTreeMap::new());
            }
            let mut ctx = BTreeSet::new();
            let mut live = BTreeMap::new();
            for (i, (known, alive)) in bits.into_iter().enumerate() {
                let seq = i as u64 + 1;
                if known {
                    ctx.insert(seq);
                    if alive {
                        live.insert(seq, element_of(origin, inc, seq));
                    }
                }
            }
            (inc, false, ctx, live)
        })
}

fn arb_state() -> impl Strategy<Value = State> {
    (
        prop::option::of(origin_part(0)),
        prop::option::of(origin_part(1)),
        prop::option::of(origin_part(2)),
    )
        .prop_map(|(a, b, c)| {
            let mut parts = Parts::new();
            for (origin, part) in [(0u8, a), (1, b), (2, c)] {
                if let Some(part) = part {
                    parts.insert(origin, part);
                }
            }
            state_from_parts(&parts)
        })
}

fn join(a: &State, b: &State) -> State {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn merge_is_commutative(a in arb_state(), b in arb_state()) {
        prop_assert_eq!(join(&a, &b), join(&b, &a));
    }

    #[test]
    fn merge_is_associative(a in arb_state(), b in arb_state(), c in arb_state()) {
        prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent(a in arb_state(), b in arb_state()) {
        prop_assert_eq!(join(&a, &a), a.clone());
        let ab = join(&a, &b);
        prop_assert_eq!(join(&ab, &b), ab.clone());
        prop_assert_eq!(join(&ab, &a), ab);
    }

    #[test]
    fn merge_reports_exactly_the_dots_that_changed(a in arb_state(), b in arb_state()) {
        let before = common::live_dots(&a);
        let mut after = a.clone();
        let report = after.merge(&b);
        let after_dots = common::live_dots(&after);
        let mut replayed = before.clone();
        for change in &report.changes {
            match change.kind {
                mesh_crdt::ChangeKind::Added => {
                    prop_assert!(replayed.insert(change.dot.clone(), change.element).is_none());
                }
                _ => {
                    prop_assert_eq!(replayed.remove(&change.dot), Some(change.element));
                }
            }
        }
        prop_assert_eq!(replayed, after_dots);
    }

    #[test]
    fn equal_digests_mean_equal_states(a in arb_state(), b in arb_state()) {
        let ab = join(&a, &b);
        let ba = join(&b, &a);
        prop_assert_eq!(ab.digest(), ba.digest());
        if a.digest() == b.digest() {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn missing_for_brings_a_peer_up_to_the_join(a in arb_state(), b in arb_state()) {
        // One reply each way makes both sides hold a ⊔ b, or leaves only a lost
        // removal inside a prefix to the next round.
        let target = join(&a, &b);
        let mut x = a.clone();
        let mut y = b.clone();
        for _ in 0..2 {
            let to_x = y.missing_for(&x.digest());
            let to_y = x.missing_for(&y.digest());
            x.merge(&to_x);
            y.merge(&to_y);
        }
        prop_assert_eq!(&x, &target);
        prop_assert_eq!(&y, &target);
    }

    #[test]
    fn a_state_round_trips_through_its_encoding(a in arb_state()) {
        let bytes = a.encode().expect("encode");
        prop_assert_eq!(bytes.len(), a.encoded_len().expect("len"));
        prop_assert_eq!(Orswot::decode(&bytes).expect("decode"), a.clone());
        let digest = a.digest();
        let bytes = digest.encode().expect("encode");
        prop_assert_eq!(mesh_crdt::Digest::decode(&bytes).expect("decode"), digest);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = State::decode(&bytes);
        let _ = mesh_crdt::Digest::<u8>::decode(&bytes);
    }

    #[test]
    fn decoding_a_mutated_encoding_never_panics(a in arb_state(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = a.encode().expect("encode");
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(decoded) = State::decode(&bytes) {
            // Whatever decodes is a valid state: it merges and re-encodes.
            let mut merged = a.clone();
            merged.merge(&decoded);
            let _ = merged.encode().expect("encode");
        }
    }
}
