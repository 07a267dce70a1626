//! The reference oracle: the `crdts` crate's `Orswot` (riak_dt's ORSWOT, a vector clock
//! per entry, full-state merge), fed the same operations, must agree with ours on the
//! element set.
//!
//! Mapping. Each of our replicas is also an oracle replica whose actor is the origin.
//! - `add(e)` on origin `o` is an oracle add by actor `o`.
//! - Our `remove(e)` removes one of `o`'s own dots; when `o`'s multiplicity of `e`
//!   drops to 0, the oracle removes `e` with a remove context that holds only `o`'s
//!   entry (`{o: counter}`), so it drops `o`'s contribution and keeps dots other
//!   origins added — the owner-partitioned rule. While `o` still holds other dots of
//!   `e`, the oracle is not told (it has no multiplicity).
//! - A full-state sync is `merge` on both sides.
//!   Our "present" is "multiplicity > 0".
//!
//! Where the semantics differ on purpose (tested separately below): the oracle has no
//! multiplicity (one remove drops an element added twice), and any oracle replica may
//! remove any element it observed, while only the origin removes its own entries here.

mod common;

use std::collections::BTreeSet;

use common::{config, converge, Node, State};
use crdts::ctx::RmCtx;
use crdts::{CmRDT, CvRDT, Dot as ODot, Orswot as Oracle, VClock};
use mesh_crdt::Replica;
use proptest::prelude::*;

type OracleSet = Oracle<u8, u8>;

#[derive(Clone, Debug)]
enum Op {
    Add { at: usize, element: u8 },
    Remove { at: usize, element: u8 },
    Sync { from: usize, to: usize },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n, 0u8..6).prop_map(|(at, element)| Op::Add { at, element }),
        3 => (0..n, 0u8..6).prop_map(|(at, element)| Op::Remove { at, element }),
        3 => (0..n, 0..n).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=4).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..80)))
}

fn oracle_add(set: &mut OracleSet, actor: u8, element: u8) {
    let ctx = set.read_ctx().derive_add_ctx(actor);
    let op = set.add(element, ctx);
    set.apply(op);
}

/// Removes only `actor`'s contribution to `element`.
fn oracle_remove_own(set: &mut OracleSet, actor: u8, element: u8) {
    let counter = set.contains(&element).rm_clock.get(&actor);
    assert!(counter > 0, "the oracle lost {actor}'s add of {element}");
    let clock = VClock::from(ODot::new(actor, counter));
    let op = set.rm(element, RmCtx { clock });
    set.apply(op);
}

fn ours_set(state: &State) -> BTreeSet<u8> {
    state.elements().keys().map(|e| **e).collect()
}

fn oracle_set(set: &OracleSet) -> BTreeSet<u8> {
    set.read().val.into_iter().collect()
}

struct Pair {
    ours: Vec<Node>,
    oracle: Vec<OracleSet>,
}

impl Pair {
    fn new(n: usize) -> Self {
        Self {
            ours: (0..n).map(|i| Replica::new(i as u8, 1)).collect(),
            oracle: vec![OracleSet::default(); n],
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Add { at, element } => {
                let _ = self.ours[at].add(element);
                oracle_add(&mut self.oracle[at], at as u8, element);
            }
            Op::Remove { at, element } => {
                if self.ours[at].remove(&element).is_ok()
                    && self.ours[at].local_multiplicity(&element) == 0
                {
                    oracle_remove_own(&mut self.oracle[at], at as u8, element);
                }
            }
            Op::Sync { from, to } => {
                if from != to {
                    let state = self.ours[from].state().clone();
                    self.ours[to].merge(&state);
                    let other = self.oracle[from].clone();
                    self.oracle[to].merge(other);
                }
            }
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (i, (ours, oracle)) in self.ours.iter().zip(&self.oracle).enumerate() {
            prop_assert_eq!(
                ours_set(ours.state()),
                oracle_set(oracle),
                "replica {} disagrees with the oracle",
                i
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn full_state_merges_agree_with_the_oracle_after_every_step((n, ops) in scenario()) {
        let mut pair = Pair::new(n);
        for op in &ops {
            pair.apply(op);
            pair.check()?;
        }
        // Then everyone syncs with everyone, twice.
        for _ in 0..2 {
            for from in 0..n {
                for to in 0..n {
                    pair.apply(&Op::Sync { from, to });
                }
            }
        }
        pair.check()?;
        let first = oracle_set(&pair.oracle[0]);
        for o in &pair.oracle {
            prop_assert_eq!(oracle_set(o), first.clone());
        }
    }

    #[test]
    fn deltas_with_loss_and_anti_entropy_end_where_the_oracle_ends(
        (n, ops) in scenario(),
        delivered in prop::collection::vec(any::<bool>(), 80),
    ) {
        // Owners act on their own entries; each delta reaches each peer or is lost.
        // Ours then repairs by anti-entropy; the oracle merges all owner states.
        let mut pair = Pair::new(n);
        let mut k = 0;
        for op in &ops {
            let (at, delta) = match *op {
                Op::Add { at, element } => {
                    oracle_add(&mut pair.oracle[at], at as u8, element);
                    (at, pair.ours[at].add(element))
                }
                Op::Remove { at, element } => match pair.ours[at].remove(&element) {
                    Ok(delta) => {
                        if pair.ours[at].local_multiplicity(&element) == 0 {
                            oracle_remove_own(&mut pair.oracle[at], at as u8, element);
                        }
                        (at, delta)
                    }
                    Err(_) => continue,
                },
                Op::Sync { .. } => continue,
            };
            for to in 0..n {
                k += 1;
                if to != at && delivered[k % delivered.len()] {
                    pair.ours[to].merge(&delta);
                }
            }
        }
        converge(&mut pair.ours, 4);
        let mut union = OracleSet::default();
        for o in &pair.oracle {
            union.merge(o.clone());
        }
        for ours in &pair.ours {
            prop_assert_eq!(ours_set(ours.state()), oracle_set(&union));
        }
    }
}

#[test]
fn multiplicity_differs_from_the_oracle_an_element_added_twice_survives_one_remove() {
    let mut ours: Node = Replica::new(0, 1);
    let _ = ours.add(7);
    let _ = ours.add(7);
    let _ = ours.remove(&7).expect("present");
    assert!(ours.state().contains(&7), "one occurrence is left");

    let mut oracle = OracleSet::default();
    oracle_add(&mut oracle, 0, 7);
    oracle_add(&mut oracle, 0, 7);
    let ctx = oracle.contains(&7).derive_rm_ctx();
    let op = oracle.rm(7, ctx);
    oracle.apply(op);
    assert!(
        !oracle_set(&oracle).contains(&7),
        "the oracle has no multiplicity"
    );
}

#[test]
fn ownership_differs_from_the_oracle_only_the_origin_removes_its_entries() {
    let mut a: Node = Replica::new(0, 1);
    let mut b: Node = Replica::new(1, 1);
    b.merge(&a.add(7));
    assert!(b.remove(&7).is_err());
    assert!(b.state().contains(&7));

    let mut oa = OracleSet::default();
    oracle_add(&mut oa, 0, 7);
    let mut ob = OracleSet::default();
    ob.merge(oa.clone());
    let ctx = ob.contains(&7).derive_rm_ctx();
    let op = ob.rm(7, ctx);
    ob.apply(op);
    assert!(
        !oracle_set(&ob).contains(&7),
        "any oracle replica may remove what it saw"
    );
}

#[test]
fn concurrent_add_and_remove_of_one_element_by_two_origins_is_add_wins_in_both() {
    // a adds 7, b adds 7 too; a removes its own 7 without having seen b's add.
    let mut a: Node = Replica::new(0, 1);
    let mut b: Node = Replica::new(1, 1);
    let _ = a.add(7);
    let _ = b.add(7);
    let _ = a.remove(&7).expect("present");
    a.merge(b.state());
    b.merge(a.state());
    assert!(a.state().contains(&7) && b.state().contains(&7));

    let mut oa = OracleSet::default();
    let mut ob = OracleSet::default();
    oracle_add(&mut oa, 0, 7);
    oracle_add(&mut ob, 1, 7);
    oracle_remove_own(&mut oa, 0, 7);
    oa.merge(ob.clone());
    ob.merge(oa.clone());
    assert!(oracle_set(&oa).contains(&7) && oracle_set(&ob).contains(&7));
}
