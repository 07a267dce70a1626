//! Edge cases of the set and its sync, one sentence each.

mod common;

use std::collections::BTreeMap;

use common::{anti_entropy, wire_bytes, Node, State, WireCtx, WireOrigin};
use mesh_crdt::{
    ChangeKind, DecodeError, Digest, Orswot, PurgeError, ReincarnateError, RemoveError, Replica,
};

fn node(origin: u8) -> Node {
    Replica::new(origin, 1)
}

#[test]
fn removing_an_element_never_added_is_an_error_and_changes_nothing() {
    let mut a = node(0);
    let before = a.state().clone();
    assert_eq!(a.remove(&7), Err(RemoveError::NotPresent));
    assert_eq!(a.remove_all(&7), Err(RemoveError::NotPresent));
    assert_eq!(a.state(), &before);
}

#[test]
fn an_origin_cannot_remove_an_element_another_origin_added() {
    let mut a = node(0);
    let mut b = node(1);
    b.merge(&a.add(7));
    assert!(b.state().contains(&7));
    assert_eq!(b.remove(&7), Err(RemoveError::NotPresent));
    assert!(b.state().contains(&7));
}

#[test]
fn an_element_added_twice_needs_two_removes_to_leave() {
    let mut a = node(0);
    let mut b = node(1);
    b.merge(&a.add(7));
    b.merge(&a.add(7));
    assert_eq!(b.state().multiplicity(&7), 2);
    b.merge(&a.remove(&7).expect("present"));
    assert_eq!(b.state().multiplicity(&7), 1);
    assert!(b.state().contains(&7));
    b.merge(&a.remove(&7).expect("still present once"));
    assert!(!b.state().contains(&7));
    assert_eq!(a.remove(&7), Err(RemoveError::NotPresent));
}

#[test]
fn the_same_element_from_two_origins_counts_both_and_each_removes_only_its_own() {
    let mut a = node(0);
    let mut b = node(1);
    let da = a.add(7);
    let db = b.add(7);
    a.merge(&db);
    b.merge(&da);
    assert_eq!(a.state().multiplicity(&7), 2);
    let rm = a.remove(&7).expect("a added it");
    b.merge(&rm);
    assert_eq!(b.state().multiplicity(&7), 1);
    assert_eq!(b.state().dots_of(&7)[0].origin, 1);
}

#[test]
fn remove_all_drops_every_local_occurrence_in_one_delta() {
    let mut a = node(0);
    let mut b = node(1);
    for _ in 0..3 {
        b.merge(&a.add(7));
    }
    b.merge(&a.add(8));
    let exit = a.remove_all(&7).expect("present");
    assert_eq!(exit.live_dots(), 0);
    assert_eq!(exit.context_of(&0).map(|c| c.ranges().count()), Some(1));
    b.merge(&exit);
    assert!(!b.state().contains(&7));
    assert!(b.state().contains(&8));
}

#[test]
fn deltas_of_several_operations_join_into_one_delta() {
    // A process exit leaves every group in one delta: join the per-group deltas.
    let mut a = node(0);
    let mut b = node(1);
    let mut c = node(2);
    for g in [1, 2, 3] {
        let d = a.add(g);
        b.merge(&d);
        c.merge(&d);
    }
    let mut exit = State::new();
    for g in [1, 2, 3] {
        exit.merge(&a.remove(&g).expect("joined"));
    }
    b.merge(&exit);
    assert!(b.state().elements().is_empty());
    assert_eq!(exit.context_of(&0).map(|c| c.contiguous()), Some(3));
    // The joined delta is equivalent to the three deltas one by one.
    c.merge(&exit);
    assert_eq!(b.state().elements(), c.state().elements());
}

#[test]
fn re_adding_after_a_remove_mints_a_new_dot_that_the_old_removal_cannot_hide() {
    let mut a = node(0);
    let mut b = node(1);
    let add1 = a.add(7);
    let rm1 = a.remove(&7).expect("present");
    let add2 = a.add(7);
    // Deliver backwards and twice.
    for d in [&add2, &rm1, &add1, &rm1, &add2] {
        b.merge(d);
    }
    assert_eq!(b.state().multiplicity(&7), 1);
    assert_eq!(b.state().dots_of(&7)[0].seq, 2);
}

#[test]
fn a_remove_delivered_before_its_add_wins() {
    let mut a = node(0);
    let mut b = node(1);
    let add = a.add(7);
    let rm = a.remove(&7).expect("present");
    let report = b.merge(&rm);
    assert!(report.changes.is_empty());
    let report = b.merge(&add);
    assert!(
        report.changes.is_empty(),
        "the add is already known as removed"
    );
    assert!(!b.state().contains(&7));
}

#[test]
fn a_stale_incarnation_delta_is_ignored() {
    let mut old = Replica::<u8, u8>::new(0, 1);
    let stale = old.add(7);
    let mut new = Replica::<u8, u8>::new(0, 2);
    let fresh = new.add(8);
    let mut b = node(1);
    b.merge(&fresh);
    let report = b.merge(&stale);
    assert!(report.is_empty());
    assert!(!b.state().contains(&7));
    assert!(b.state().contains(&8));
    assert_eq!(b.state().incarnation_of(&0), Some(2));
}

#[test]
fn a_new_incarnation_purges_the_old_one_at_once_even_before_it_adds_anything() {
    let mut old = Replica::<u8, u8>::new(0, 1);
    let mut b = node(1);
    b.merge(&old.add(7));
    b.merge(&old.add(8));
    let report = b.merge(&Replica::<u8, u8>::new(0, 5).announce());
    assert_eq!(report.changes.len(), 2);
    assert!(report.changes.iter().all(|c| c.kind == ChangeKind::Purged));
    assert!(b.state().elements().is_empty());
}

#[test]
fn a_purged_origin_stays_purged_until_it_reincarnates() {
    let mut a = node(0);
    let mut b = node(1);
    let deltas: Vec<_> = (0..3).map(|i| a.add(i)).collect();
    for d in &deltas {
        b.merge(d);
    }
    let purged = b.purge_origin(&0).expect("known");
    assert_eq!(purged.report.changes.len(), 3);
    assert!(b.state().is_retired(&0));
    // Late deltas and the owner's full state of the purged incarnation change nothing.
    for d in &deltas {
        assert!(b.merge(d).is_empty());
    }
    assert!(b.merge(a.state()).is_empty());
    assert!(b.state().elements().is_empty());
    // The marker reaches the owner, which keeps its entries and must reincarnate.
    let report = a.merge(b.state());
    assert_eq!(report.own_incarnation_superseded_by, Some(1));
    assert_eq!(a.state().multiplicity(&0), 1);
    assert_eq!(
        a.reincarnate(1),
        Err(ReincarnateError::NotNewer {
            requested: 1,
            minimum_exclusive: 1
        })
    );
    let back = a.reincarnate(2).expect("newer");
    b.merge(&back);
    assert_eq!(b.state().elements(), a.state().elements());
    assert_eq!(b.state().incarnation_of(&0), Some(2));
}

#[test]
fn a_replica_refuses_to_purge_itself_or_an_unknown_origin() {
    let mut a = node(0);
    assert_eq!(a.purge_origin(&0).err(), Some(PurgeError::OwnOrigin));
    assert_eq!(a.purge_origin(&9).err(), Some(PurgeError::UnknownOrigin));
    let mut b = node(1);
    a.merge(&b.add(1));
    assert!(a.purge_origin(&1).is_ok());
    assert_eq!(a.purge_origin(&1).err(), Some(PurgeError::AlreadyPurged));
}

#[test]
fn a_lost_remove_is_repaired_by_anti_entropy_even_when_contexts_are_equal() {
    let mut a = node(0);
    let mut b = node(1);
    b.merge(&a.add(7));
    b.merge(&a.add(8));
    let _lost = a.remove(&7).expect("present");
    // Same context (a removal mints no dot), different live sets.
    assert_eq!(a.state().context_of(&0), b.state().context_of(&0));
    assert_ne!(a.digest(), b.digest());
    anti_entropy(&mut a, &mut b);
    assert!(!b.state().contains(&7));
    assert!(b.state().contains(&8));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.state(), b.state());
}

#[test]
fn a_lost_remove_is_repaired_while_the_owner_keeps_adding() {
    let mut a = node(0);
    let mut b = node(1);
    b.merge(&a.add(7));
    let _lost = a.remove(&7).expect("present");
    for i in 0..5 {
        let _lost = a.add(100 + i);
        anti_entropy(&mut a, &mut b);
        assert!(!b.state().contains(&7));
    }
    assert_eq!(a.state(), b.state());
}

#[test]
fn anti_entropy_replies_are_empty_between_equal_states() {
    let mut a = node(0);
    let mut b = node(1);
    b.merge(&a.add(1));
    a.merge(&b.add(2));
    assert_eq!(a.state(), b.state());
    assert!(a.missing_for(&b.digest()).is_empty());
    assert!(b.missing_for(&a.digest()).is_empty());
}

#[test]
fn a_digest_is_small_whatever_the_number_of_entries() {
    let mut a = Replica::<String, (String, u64)>::new("node-17".into(), 1_700_000_000);
    for i in 0..10_000u64 {
        let _ = a.add((format!("group-{}", i % 100), i));
    }
    for i in (0..10_000u64).step_by(3) {
        let _ = a.remove(&(format!("group-{}", i % 100), i));
    }
    let bytes = a.digest().encode().expect("encode").len();
    assert!(bytes < 80, "one origin's digest took {bytes} bytes");
    let back = Digest::<String>::decode(&a.digest().encode().expect("encode")).expect("decode");
    assert_eq!(back, a.digest());
}

#[test]
fn the_dot_cloud_folds_into_the_prefix_when_the_gap_fills() {
    let mut a = node(0);
    let mut b = node(1);
    let deltas: Vec<_> = (0..6).map(|i| a.add(i)).collect();
    for i in [5, 3, 1] {
        b.merge(&deltas[i]);
    }
    let ctx = b.state().context_of(&0).expect("known").clone();
    assert_eq!(ctx.contiguous(), 0);
    assert_eq!(ctx.cloud_ranges(), 3);
    for i in [0, 2, 4] {
        b.merge(&deltas[i]);
    }
    let ctx = b.state().context_of(&0).expect("known");
    assert_eq!(ctx.contiguous(), 6);
    assert_eq!(ctx.cloud_ranges(), 0);
}

#[test]
fn removed_dots_leave_no_trace_but_the_context_prefix() {
    let mut a = node(0);
    for i in 0..1_000u32 {
        let _ = a.add((i % 7) as u8);
    }
    for e in 0..7u8 {
        let _ = a.remove_all(&e);
    }
    let bytes = a.state().encode().expect("encode");
    assert!(a.state().elements().is_empty());
    assert!(
        bytes.len() < 24,
        "an emptied origin takes {} bytes",
        bytes.len()
    );
}

#[test]
fn the_merge_report_lists_added_removed_and_purged_dots() {
    let mut a = node(0);
    let mut b = node(1);
    let report = b.merge(&a.add(7));
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.changes[0].kind, ChangeKind::Added);
    assert_eq!(report.changes[0].element, 7);
    let report = b.merge(&a.remove(&7).expect("present"));
    assert_eq!(report.changes[0].kind, ChangeKind::Removed);
    b.merge(&a.add(8));
    let report = b.purge_origin(&0).expect("known").report;
    assert_eq!(report.changes[0].kind, ChangeKind::Purged);
    assert_eq!(report.changes[0].element, 8);
}

#[test]
fn a_chunk_limit_below_one_dot_is_an_error() {
    let mut a = Replica::<u8, String>::new(0, 1);
    let _ = a.add("x".repeat(500));
    let _ = a.add("y".into());
    let err = a
        .state()
        .chunks(100)
        .expect_err("a 500-byte element cannot fit");
    assert!(err.to_string().contains("100-byte limit"), "{err}");
}

#[test]
fn decoding_garbage_is_an_error_not_a_panic() {
    for bytes in [
        &b""[..],
        &b"\xc1"[..],
        &b"\x81\xa1o\x81\x00\xff"[..],
        &b"\xdf\xff\xff\xff\xff"[..],
        &b"\x91\x92\x93"[..],
    ] {
        assert!(State::decode(bytes).is_err(), "{bytes:?}");
        assert!(Digest::<u8>::decode(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn decoding_rejects_a_dot_outside_its_context() {
    let origins = BTreeMap::from([(
        0u8,
        WireOrigin {
            i: 1,
            r: false,
            c: WireCtx { c: 1, g: vec![] },
            e: vec![(7, vec![2])],
        },
    )]);
    let err = State::decode(&wire_bytes(origins)).expect_err("dot 2 is not in 1..=1");
    assert!(matches!(err, DecodeError::Malformed(_)));
    assert!(err.to_string().contains("not covered"), "{err}");
}

#[test]
fn decoding_rejects_a_dot_given_to_two_elements() {
    let origins = BTreeMap::from([(
        0u8,
        WireOrigin {
            i: 1,
            r: false,
            c: WireCtx { c: 3, g: vec![] },
            e: vec![(7, vec![2]), (8, vec![2, 3])],
        },
    )]);
    let err = State::decode(&wire_bytes(origins)).expect_err("dot 2 twice");
    assert!(err.to_string().contains("listed twice"), "{err}");
}

#[test]
fn decoding_rejects_a_retired_incarnation_with_entries() {
    let origins = BTreeMap::from([(
        0u8,
        WireOrigin {
            i: 1,
            r: true,
            c: WireCtx { c: 1, g: vec![] },
            e: vec![(7, vec![1])],
        },
    )]);
    assert!(State::decode(&wire_bytes(origins)).is_err());
}

#[test]
fn a_state_round_trips_through_its_encoding() {
    let mut a = node(0);
    let mut b = node(1);
    let d = a.add(1);
    b.merge(&d);
    let _ = b.add(2);
    let _ = b.add(2);
    let _ = b.remove(&2);
    let bytes = b.state().encode().expect("encode");
    assert_eq!(bytes.len(), b.state().encoded_len().expect("len"));
    assert_eq!(&Orswot::decode(&bytes).expect("decode"), b.state());
}
