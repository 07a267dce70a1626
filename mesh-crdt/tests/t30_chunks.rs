//! Invariant 4: partial deltas are causally safe.
//!
//! A state is cut into chunks of at most `max_bytes`; any subset of the chunks, applied
//! in any order to a replica that knows part of the history, never removes an element
//! (or a dot) that the replica holding the full state still has. All chunks together
//! equal the whole. The negative control shows the delta_crdt_ex bug: a piece carrying
//! the sender's whole context with only some entries deletes live entries.

mod common;

use std::collections::BTreeMap;

use common::{config, live_dots, wire_bytes, Node, State, WireCtx, WireOrigin};
use mesh_crdt::Replica;
use proptest::prelude::*;

/// A history on 2–3 origins; returns the full state (the join of everything) and a
/// replica that received a random subset of the deltas.
fn histories() -> impl Strategy<Value = (State, State)> {
    (
        2usize..=3,
        prop::collection::vec((0usize..3, 0u8..8, 0u8..3), 1..120),
        prop::collection::vec(any::<bool>(), 120),
    )
        .prop_map(|(n, script, seen)| {
            let mut owners: Vec<Node> = (0..n).map(|i| Replica::new(i as u8, 1)).collect();
            let mut partial = State::new();
            for (k, (at, element, action)) in script.into_iter().enumerate() {
                let at = at % n;
                let delta = if action == 0 {
                    owners[at].remove(&element).ok()
                } else {
                    Some(owners[at].add(element))
                };
                if let Some(delta) = delta {
                    if seen[k % seen.len()] {
                        partial.merge(&delta);
                    }
                }
            }
            let mut full = State::new();
            for owner in &owners {
                full.merge(owner.state());
            }
            (full, partial)
        })
}

fn check_subset(
    full: &State,
    partial: &State,
    chunks: &[State],
    pick: &[prop::sample::Index],
) -> Result<(), TestCaseError> {
    let before = live_dots(partial);
    let full_dots = live_dots(full);
    let mut target = partial.clone();
    for idx in pick {
        let chunk = &chunks[idx.index(chunks.len())];
        target.merge(chunk);
        let now = live_dots(&target);
        for (dot, e) in &before {
            if full_dots.contains_key(dot) {
                prop_assert_eq!(
                    now.get(dot),
                    Some(e),
                    "a chunk removed {:?}, which the full state still holds",
                    dot
                );
            }
        }
        // At the element level: an element the replica held under a dot the full
        // state still holds stays present. (An element removed and re-added under a
        // new dot may be absent until the piece with the new dot arrives; see
        // `a_removed_and_re_added_element_may_be_absent_until_...`.)
        for (dot, element) in &before {
            if full_dots.contains_key(dot) {
                prop_assert!(target.contains(element), "lost element {}", element);
            }
        }
        // Nothing appears that the full state does not hold or the replica did not have.
        for dot in now.keys() {
            prop_assert!(full_dots.contains_key(dot) || before.contains_key(dot));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_subset_of_chunks_in_any_order_never_removes_what_the_full_state_holds(
        (full, partial) in histories(),
        max_bytes in 48usize..400,
        pick in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let chunks = full.chunks(max_bytes).expect("small elements fit");
        for chunk in &chunks {
            prop_assert!(chunk.encoded_len().expect("len") <= max_bytes);
        }
        check_subset(&full, &partial, &chunks, &pick)?;
    }

    #[test]
    fn all_chunks_together_equal_the_whole(
        (full, partial) in histories(),
        max_bytes in 48usize..400,
        reverse in any::<bool>(),
    ) {
        let mut chunks = full.chunks(max_bytes).expect("small elements fit");
        if reverse {
            chunks.reverse();
        }
        let mut rebuilt = State::new();
        for chunk in &chunks {
            rebuilt.merge(chunk);
        }
        prop_assert_eq!(&rebuilt, &full);
        let mut expected = partial.clone();
        expected.merge(&full);
        let mut target = partial;
        for chunk in &chunks {
            target.merge(chunk);
        }
        prop_assert_eq!(target, expected);
    }

    #[test]
    fn chunks_of_an_anti_entropy_reply_are_causally_safe_too(
        (full, partial) in histories(),
        max_bytes in 48usize..400,
        pick in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let reply = full.missing_for(&partial.digest());
        let chunks = reply.chunks(max_bytes).expect("small elements fit");
        if chunks.is_empty() {
            return Ok(());
        }
        check_subset(&full, &partial, &chunks, &pick)?;
        // And the whole reply brings the replica to the join.
        let mut target = partial.clone();
        for chunk in &chunks {
            target.merge(chunk);
        }
        let mut expected = partial.clone();
        expected.merge(&full);
        prop_assert_eq!(live_dots(&target), live_dots(&expected));
    }
}

/// The delta_crdt_ex bug, reproduced by hand: a piece that carries the sender's whole
/// context ("I know dots 1..=2") but only one of its two entries makes the receiver
/// delete the other entry, which is still live at the sender.
#[test]
fn a_piece_claiming_dots_it_does_not_carry_deletes_live_entries() {
    let mut owner = Replica::<u8, u8>::new(0, 1);
    let mut receiver = State::new();
    receiver.merge(&owner.add(10));
    receiver.merge(&owner.add(20));
    let naive_piece = State::decode(&wire_bytes(BTreeMap::from([(
        0u8,
        WireOrigin {
            i: 1,
            r: false,
            c: WireCtx { c: 2, g: vec![] },
            e: vec![(10, vec![1])],
        },
    )])))
    .expect("a valid (but misleading) piece");
    let mut victim = receiver.clone();
    victim.merge(&naive_piece);
    assert!(
        !victim.contains(&20),
        "the naive piece deletes a live entry"
    );
    assert!(owner.state().contains(&20));
}

#[test]
fn our_pieces_of_the_same_kind_of_state_delete_nothing_live() {
    let mut owner = Replica::<u8, String>::new(0, 1);
    let mut receiver = mesh_crdt::Orswot::new();
    for name in ["alpha", "bravo", "charlie", "delta"] {
        receiver.merge(&owner.add(name.repeat(6)));
    }
    let gone = owner.remove(&"bravo".repeat(6)).expect("present");
    let chunks = owner.state().chunks(90).expect("one dot fits");
    assert!(chunks.len() >= 3, "{chunks:?}");
    for chunk in &chunks {
        let mut safe = receiver.clone();
        safe.merge(chunk);
        for name in ["alpha", "charlie", "delta"] {
            assert!(safe.contains(&name.repeat(6)), "{chunk:?} dropped {name}");
        }
    }
    // The piece that covers the removed dot does remove it: that removal is real.
    let mut all = receiver.clone();
    for chunk in &chunks {
        all.merge(chunk);
    }
    all.merge(&gone);
    assert_eq!(&all, owner.state());
}

/// Where dot-level safety and element-level views differ: an element that was removed
/// and re-added lives on under a *new* dot. A replica that gets the piece with the
/// removal but not yet the piece with the re-add shows the element absent for a while
/// — exactly the owner's own history (it left, then joined again), and exactly what
/// the same two deltas delivered out of order would show. No dot the full state holds
/// is ever removed.
#[test]
fn a_removed_and_re_added_element_may_be_absent_until_the_piece_with_its_new_dot_arrives() {
    let mut owner = Replica::<u8, String>::new(0, 1);
    let mut receiver = mesh_crdt::Orswot::new();
    let name = "worker".repeat(6);
    receiver.merge(&owner.add(name.clone()));
    let _ = owner.add("filler".repeat(6));
    let _ = owner.remove(&name).expect("present");
    let _ = owner.add(name.clone());
    let chunks = owner.state().chunks(80).expect("one dot fits");
    let first = chunks
        .iter()
        .find(|c| c.context_of(&0).is_some_and(|ctx| ctx.contains(1)))
        .expect("a piece covers dot 1");
    assert!(!first.contains(&name));
    let mut partial = receiver.clone();
    partial.merge(first);
    assert!(
        !partial.contains(&name),
        "absent between the leave and the re-join"
    );
    for chunk in &chunks {
        partial.merge(chunk);
    }
    assert!(partial.contains(&name));
}

#[test]
fn a_large_state_is_cut_into_pieces_that_fit_a_datagram() {
    let mut owner = Replica::<String, (String, u64)>::new("n1".into(), 1);
    for i in 0..5_000u64 {
        let _ = owner.add((format!("group-{}", i % 50), i));
    }
    for i in (0..5_000u64).step_by(4) {
        let _ = owner.remove(&(format!("group-{}", i % 50), i));
    }
    let chunks = owner.state().chunks(1_100).expect("fits");
    let total: usize = chunks.iter().map(|c| c.encoded_len().expect("len")).sum();
    let whole = owner.state().encoded_len().expect("len");
    assert!(chunks
        .iter()
        .all(|c| c.encoded_len().expect("len") <= 1_100));
    // Packing is reasonably tight: less than 25 % overhead over the whole state.
    assert!(
        total * 4 < whole * 5,
        "chunks total {total} bytes for a {whole}-byte state"
    );
    let mut rebuilt = mesh_crdt::Orswot::new();
    for c in &chunks {
        rebuilt.merge(c);
    }
    assert_eq!(&rebuilt, owner.state());
}
