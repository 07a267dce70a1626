//! Random operations on 2–4 replicas with random delivery: deltas delivered in any
//! order, duplicated or dropped; anti-entropy replies cut into chunks of which only
//! some arrive; full-state merges; restarts with a new incarnation; purges.
//!
//! Checked after every step:
//! - invariant 2: a dot a replica has seen removed is never live there again;
//! - invariant 3: no false removal — if a replica's context covers a dot of the
//!   owner's current incarnation that the owner still holds, the replica holds it
//!   too, with the owner's element;
//! - a replica holds no dot the owner never minted.
//!
//! At the end, anti-entropy between all pairs makes every replica equal (liveness),
//! within a bounded number of passes. A second property drops every broadcast.

mod common;

use std::collections::BTreeSet;

use common::{config, converge, live_dots, removed_dots, Node, State};
use mesh_crdt::{Dot, Replica};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Add {
        at: usize,
        element: u8,
    },
    Remove {
        at: usize,
        element: u8,
    },
    RemoveAll {
        at: usize,
        element: u8,
    },
    /// Deliver one in-flight delta; keep a copy in flight if `duplicate`.
    Deliver {
        pick: prop::sample::Index,
        duplicate: bool,
    },
    Drop {
        pick: prop::sample::Index,
    },
    /// `to` asks `from` for what it lacks; the reply is cut into chunks of at most
    /// `max_bytes` and only the chunks whose bit in `keep` is set arrive, in reverse
    /// order if `reverse`.
    AntiEntropy {
        from: usize,
        to: usize,
        max_bytes: usize,
        keep: u32,
        reverse: bool,
    },
    FullState {
        from: usize,
        to: usize,
    },
    Restart {
        at: usize,
    },
    Purge {
        at: usize,
        origin: usize,
    },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..n, 0u8..6).prop_map(|(at, element)| Op::Add { at, element }),
        3 => (0..n, 0u8..6).prop_map(|(at, element)| Op::Remove { at, element }),
        1 => (0..n, 0u8..6).prop_map(|(at, element)| Op::RemoveAll { at, element }),
        8 => (any::<prop::sample::Index>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, duplicate)| Op::Deliver { pick, duplicate }),
        2 => any::<prop::sample::Index>().prop_map(|pick| Op::Drop { pick }),
        2 => (0..n, 0..n, 60usize..300, any::<u32>(), any::<bool>()).prop_map(
            |(from, to, max_bytes, keep, reverse)| Op::AntiEntropy { from, to, max_bytes, keep, reverse }
        ),
        1 => (0..n, 0..n).prop_map(|(from, to)| Op::FullState { from, to }),
        1 => (0..n).prop_map(|at| Op::Restart { at }),
        1 => (0..n, 0..n).prop_map(|(at, origin)| Op::Purge { at, origin }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2usize..=4).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..80)))
}

struct World {
    nodes: Vec<Node>,
    /// Incarnations used so far per node (a restart takes the next one).
    next_incarnation: Vec<u64>,
    in_flight: Vec<(usize, State)>,
    /// Per replica: every dot it has ever seen removed or superseded.
    seen_removed: Vec<BTreeSet<Dot<u8>>>,
    broadcast: bool,
}

impl World {
    fn new(n: usize, broadcast: bool) -> Self {
        Self {
            nodes: (0..n).map(|i| Replica::new(i as u8, 1)).collect(),
            next_incarnation: vec![2; n],
            in_flight: Vec::new(),
            seen_removed: vec![BTreeSet::new(); n],
            broadcast,
        }
    }

    fn send_all(&mut self, from: usize, delta: State) {
        if !self.broadcast {
            return;
        }
        for to in 0..self.nodes.len() {
            if to != from {
                self.in_flight.push((to, delta.clone()));
            }
        }
    }

    fn merge(&mut self, to: usize, delta: &State) {
        let report = self.nodes[to].merge(delta);
        if let Some(by) = report.own_incarnation_superseded_by {
            // Someone purged this node while it was alive: refute with a new incarnation.
            let inc = self.next_incarnation[to].max(by + 1);
            self.next_incarnation[to] = inc + 1;
            let delta = self.nodes[to].reincarnate(inc).expect("newer incarnation");
            self.send_all(to, delta);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Add { at, element } => {
                let delta = self.nodes[at].add(element);
                self.send_all(at, delta);
            }
            Op::Remove { at, element } => {
                let had = self.nodes[at].local_multiplicity(&element);
                match self.nodes[at].remove(&element) {
                    Ok(delta) => {
                        assert_eq!(self.nodes[at].local_multiplicity(&element), had - 1);
                        self.send_all(at, delta);
                    }
                    Err(_) => assert_eq!(had, 0),
                }
            }
            Op::RemoveAll { at, element } => {
                if let Ok(delta) = self.nodes[at].remove_all(&element) {
                    assert_eq!(self.nodes[at].local_multiplicity(&element), 0);
                    self.send_all(at, delta);
                }
            }
            Op::Deliver { pick, duplicate } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let i = pick.index(self.in_flight.len());
                let (to, delta) = if duplicate {
                    self.in_flight[i].clone()
                } else {
                    self.in_flight.swap_remove(i)
                };
                self.merge(to, &delta);
            }
            Op::Drop { pick } => {
                if !self.in_flight.is_empty() {
                    let i = pick.index(self.in_flight.len());
                    self.in_flight.swap_remove(i);
                }
            }
            Op::AntiEntropy {
                from,
                to,
                max_bytes,
                keep,
                reverse,
            } => {
                if from == to {
                    return;
                }
                let reply = self.nodes[from].missing_for(&self.nodes[to].digest());
                let mut chunks = reply.chunks(max_bytes).expect("small elements fit");
                for chunk in &chunks {
                    assert!(chunk.encoded_len().expect("len") <= max_bytes);
                }
                if reverse {
                    chunks.reverse();
                }
                for (i, chunk) in chunks.iter().enumerate() {
                    if keep & (1 << (i % 32)) != 0 {
                        self.merge(to, chunk);
                    }
                }
            }
            Op::FullState { from, to } => {
                if from != to {
                    let state = self.nodes[from].state().clone();
                    self.merge(to, &state);
                }
            }
            Op::Restart { at } => {
                // A reboot: empty store, next incarnation.
                let inc = self.next_incarnation[at];
                self.next_incarnation[at] = inc + 1;
                self.nodes[at] = Replica::new(at as u8, inc);
                // The reboot forgot everything, including what it had seen removed.
                self.seen_removed[at].clear();
                let announce = self.nodes[at].announce();
                self.send_all(at, announce);
            }
            Op::Purge { at, origin } => {
                if let Ok(purged) = self.nodes[at].purge_origin(&(origin as u8)) {
                    self.send_all(at, purged.delta);
                }
            }
        }
    }

    fn check(&mut self) {
        for (r, node) in self.nodes.iter().enumerate() {
            let state = node.state();
            let live = live_dots(state);
            // Invariant 2: nothing seen removed (or superseded) is live again.
            for dot in &self.seen_removed[r] {
                assert!(
                    !live.contains_key(dot),
                    "replica {r} revived {dot:?}: {state:?}"
                );
            }
            // Every live dot was minted by its owner, for that element.
            for (dot, element) in &live {
                let owner = &self.nodes[usize::from(dot.origin)];
                if owner.incarnation() == dot.incarnation {
                    let minted = owner.state().context_of(&dot.origin).expect("own");
                    assert!(
                        minted.contains(dot.seq),
                        "replica {r} holds unminted {dot:?}"
                    );
                    if let Some(&e) = live_dots(owner.state()).get(dot) {
                        assert_eq!(e, *element, "replica {r} has the wrong element for {dot:?}");
                    }
                } else {
                    assert!(
                        dot.incarnation < owner.incarnation(),
                        "future incarnation {dot:?}"
                    );
                }
            }
            // Invariant 3: no false removal.
            for (o, owner) in self.nodes.iter().enumerate() {
                if o == r {
                    continue;
                }
                let origin = o as u8;
                if state.incarnation_of(&origin) != Some(owner.incarnation())
                    || state.is_retired(&origin)
                {
                    continue;
                }
                let ctx = state.context_of(&origin).expect("known");
                for (dot, element) in live_dots(owner.state()) {
                    if dot.origin == origin && ctx.contains(dot.seq) {
                        assert_eq!(
                            live.get(&dot),
                            Some(&element),
                            "replica {r} lost {dot:?} that its owner still holds"
                        );
                    }
                }
            }
        }
        for (r, node) in self.nodes.iter().enumerate() {
            let state = node.state();
            let removed = removed_dots(state);
            self.seen_removed[r].extend(removed);
            // Dots of incarnations this replica has moved past are gone for good too.
            for origin in state.origins() {
                let inc = state.incarnation_of(origin).expect("known");
                let owner_dots = live_dots(self.nodes[usize::from(*origin)].state());
                for dot in owner_dots.keys() {
                    if dot.origin == *origin
                        && (dot.incarnation < inc
                            || (dot.incarnation == inc && state.is_retired(origin)))
                    {
                        self.seen_removed[r].insert(dot.clone());
                    }
                }
            }
        }
    }
}

fn run(n: usize, ops: &[Op], broadcast: bool) -> Result<(), TestCaseError> {
    let mut world = World::new(n, broadcast);
    for op in ops {
        world.apply(op);
        world.check();
    }
    // Whatever is still in flight is lost; anti-entropy alone must converge.
    world.in_flight.clear();
    // Pass 1 equalizes contexts; pass 2 repairs lost removals; a refutation after a
    // purge may need one more pass to spread the new incarnation.
    let passes = converge(&mut world.nodes, 6);
    prop_assert!(passes <= 4, "took {passes} passes");
    world.check();
    let first = world.nodes[0].state().clone();
    for node in &world.nodes[1..] {
        prop_assert_eq!(node.state(), &first);
    }
    // Every owner's live entries are everywhere.
    let all = live_dots(&first);
    for (o, owner) in world.nodes.iter().enumerate() {
        for (dot, e) in live_dots(owner.state()) {
            if usize::from(dot.origin) == o {
                prop_assert_eq!(all.get(&dot), Some(&e));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn replicas_converge_under_reordering_duplication_loss_and_partial_chunks(
        (n, ops) in scenario()
    ) {
        run(n, &ops, true)?;
    }

    #[test]
    fn replicas_converge_by_anti_entropy_when_every_broadcast_is_lost(
        (n, ops) in scenario()
    ) {
        run(n, &ops, false)?;
    }

    #[test]
    fn replicas_that_saw_the_same_deltas_in_any_order_with_duplicates_are_equal(
        n in 2usize..=4,
        script in prop::collection::vec((0usize..4, 0u8..6, any::<bool>()), 1..40),
        orders in prop::collection::vec(
            prop::collection::vec(any::<prop::sample::Index>(), 0..20), 4),
    ) {
        // Owners act; every replica then receives all deltas in its own random order,
        // with random extra duplicates.
        let mut owners: Vec<Node> = (0..n).map(|i| Replica::new(i as u8, 1)).collect();
        let mut deltas = Vec::new();
        for (at, element, add) in script {
            let at = at % n;
            if add {
                deltas.push(owners[at].add(element));
            } else if let Ok(d) = owners[at].remove(&element) {
                deltas.push(d);
            }
        }
        if deltas.is_empty() {
            return Ok(());
        }
        let mut observers = Vec::new();
        for extra in orders.iter().take(n) {
            let mut sequence: Vec<&State> = deltas.iter().collect();
            for idx in extra {
                let i = idx.index(sequence.len());
                sequence.push(sequence[i]);
            }
            // A deterministic shuffle driven by the generated indexes.
            for (k, idx) in extra.iter().enumerate() {
                let a = idx.index(sequence.len());
                let b = (a + k * 7 + 3) % sequence.len();
                sequence.swap(a, b);
            }
            let mut state = State::new();
            for d in sequence {
                state.merge(d);
            }
            observers.push(state);
        }
        let mut expected = State::new();
        for owner in &owners {
            expected.merge(owner.state());
        }
        for state in &observers {
            prop_assert_eq!(state.elements(), expected.elements());
            prop_assert_eq!(live_dots(state), live_dots(&expected));
        }
    }
}
