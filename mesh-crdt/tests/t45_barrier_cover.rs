//! `Orswot::covered_by`, what a propagation barrier asks of a peer: does the peer hold
//! everything this replica held of its own origin when the barrier started, removals
//! included? The negative controls: a peer with every add but not a removal is not
//! covering, and neither is one that lacks an add.

use mesh_crdt::Replica;

fn digest_of(r: &Replica<String, u8>, origin: &str) -> Option<mesh_crdt::OriginDigest> {
    r.state().origin_digest(&origin.to_owned())
}

#[test]
fn a_peer_covers_a_barrier_only_once_it_has_the_removals_too() {
    let mut a: Replica<String, u8> = Replica::new("a".into(), 1);
    let mut b: Replica<String, u8> = Replica::new("b".into(), 1);
    let me = "a".to_owned();
    let d1 = a.add(1);
    let d2 = a.add(2);
    let then = digest_of(&a, "a").expect("a knows itself");
    assert!(
        !a.state()
            .covered_by(&me, &then, digest_of(&b, "a").as_ref()),
        "a peer that never heard of the origin does not cover a non-empty state"
    );
    b.merge(&d1);
    assert!(
        !a.state()
            .covered_by(&me, &then, digest_of(&b, "a").as_ref()),
        "a peer missing an add does not cover"
    );
    b.merge(&d2);
    assert!(a
        .state()
        .covered_by(&me, &then, digest_of(&b, "a").as_ref()));

    // A removal mints no dot: the prefixes are equal, and still b does not cover it.
    let rm = a.remove(&1).expect("1 is held");
    let then = digest_of(&a, "a").expect("a knows itself");
    assert!(
        !a.state()
            .covered_by(&me, &then, digest_of(&b, "a").as_ref()),
        "a peer without the removal must not cover the barrier"
    );
    b.merge(&rm);
    assert!(a
        .state()
        .covered_by(&me, &then, digest_of(&b, "a").as_ref()));

    // The origin keeps changing after the barrier started: still covered by what b
    // has, which is everything `then` held.
    let _later = a.add(3);
    assert!(a
        .state()
        .covered_by(&me, &then, digest_of(&b, "a").as_ref()));
}

#[test]
fn a_newer_incarnation_on_the_peer_covers_and_an_older_one_does_not() {
    let mut a: Replica<String, u8> = Replica::new("a".into(), 2);
    let me = "a".to_owned();
    let _ = a.add(1);
    let then = digest_of(&a, "a").expect("a knows itself");
    let mut newer = then;
    newer.incarnation = 3;
    let mut older = then;
    older.incarnation = 1;
    assert!(a.state().covered_by(&me, &then, Some(&newer)));
    assert!(!a.state().covered_by(&me, &then, Some(&older)));
    assert!(a.state().covered_by(&me, &then, Some(&then)));
}
