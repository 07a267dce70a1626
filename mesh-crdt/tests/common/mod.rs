//! Helpers shared by the property tests: bounded proptest configs, states built from
//! their wire form, and a push-pull anti-entropy round.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::{BTreeMap, BTreeSet};

use mesh_crdt::{Dot, Orswot, Replica};
use proptest::test_runner::Config;
use serde::Serialize;

/// Elements and origins in the tests are small integers, so collisions are common.
pub(crate) type State = Orswot<u8, u8>;
pub(crate) type Node = Replica<u8, u8>;

/// `default_cases` unless `PROPTEST_CASES` says otherwise.
pub(crate) fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // Shrinking long op sequences can take minutes; keep failures quick to report.
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

/// The wire form of one origin's partition, as `mesh-crdt` encodes it.
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct WireOrigin {
    pub(crate) i: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) r: bool,
    pub(crate) c: WireCtx,
    pub(crate) e: Vec<(u8, Vec<u64>)>,
}

/// The wire form of a context: prefix plus ranges.
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct WireCtx {
    pub(crate) c: u64,
    pub(crate) g: Vec<(u64, u64)>,
}

#[derive(Serialize)]
struct WireState {
    o: BTreeMap<u8, WireOrigin>,
}

/// Encodes a hand-made wire state (which may be invalid on purpose).
pub(crate) fn wire_bytes(origins: BTreeMap<u8, WireOrigin>) -> Vec<u8> {
    rmp_serde::to_vec_named(&WireState { o: origins }).expect("encode wire state")
}

/// One origin's partition in plain sets: (incarnation, retired, context seqs, live
/// seq -> element).
pub(crate) type Part = (u64, bool, BTreeSet<u64>, BTreeMap<u64, u8>);

/// Builds a state from per-origin parts through the public decoder.
pub(crate) fn state_from_parts(parts: &BTreeMap<u8, Part>) -> State {
    let mut origins = BTreeMap::new();
    for (&origin, (inc, retired, ctx, live)) in parts {
        let mut by_elem: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        for (&seq, &e) in live {
            by_elem.entry(e).or_default().push(seq);
        }
        origins.insert(
            origin,
            WireOrigin {
                i: *inc,
                r: *retired,
                c: WireCtx {
                    c: 0,
                    g: ctx.iter().map(|&s| (s, s)).collect(),
                },
                e: by_elem.into_iter().collect(),
            },
        );
    }
    Orswot::decode(&wire_bytes(origins)).expect("valid generated state")
}

/// Every live dot of a state with its element.
pub(crate) fn live_dots(state: &State) -> BTreeMap<Dot<u8>, u8> {
    let mut out = BTreeMap::new();
    for e in state.elements().keys() {
        for dot in state.dots_of(e) {
            out.insert(dot, **e);
        }
    }
    out
}

/// Every dot a state knows was removed (context covers it, not live), for the
/// origins' current incarnations.
pub(crate) fn removed_dots(state: &State) -> BTreeSet<Dot<u8>> {
    let live = live_dots(state);
    let mut out = BTreeSet::new();
    for origin in state.origins().copied().collect::<Vec<_>>() {
        let (Some(inc), Some(ctx)) = (state.incarnation_of(&origin), state.context_of(&origin))
        else {
            continue;
        };
        for range in ctx.ranges() {
            for seq in range {
                let dot = Dot {
                    origin,
                    incarnation: inc,
                    seq,
                };
                if !live.contains_key(&dot) {
                    out.insert(dot);
                }
            }
        }
    }
    out
}

/// Merges `delta` into `node`; if it retired the node's own incarnation (another node
/// purged it), the node refutes at once with the next incarnation, as the runtime does.
pub(crate) fn merge_and_refute(node: &mut Node, delta: &State) {
    let report = node.merge(delta);
    if let Some(by) = report.own_incarnation_superseded_by {
        let next = by.max(node.incarnation()) + 1;
        node.reincarnate(next).expect("newer incarnation");
    }
}

/// One push-pull anti-entropy round between two replicas: each sends its digest and
/// merges the other's reply.
pub(crate) fn anti_entropy(a: &mut Node, b: &mut Node) {
    let to_a = b.missing_for(&a.digest());
    let to_b = a.missing_for(&b.digest());
    merge_and_refute(a, &to_a);
    merge_and_refute(b, &to_b);
}

/// Runs anti-entropy over every pair until all digests agree; returns the number of
/// full passes it took (panics past `max_passes`).
pub(crate) fn converge(nodes: &mut [Node], max_passes: usize) -> usize {
    for pass in 1..=max_passes {
        for i in 0..nodes.len() {
            for j in (i + 1)..nodes.len() {
                let (left, right) = nodes.split_at_mut(j);
                anti_entropy(&mut left[i], &mut right[0]);
            }
        }
        let first = nodes[0].digest();
        if nodes.iter().all(|n| n.digest() == first) {
            return pass;
        }
    }
    panic!("anti-entropy did not converge in {max_passes} passes: {nodes:#?}");
}
