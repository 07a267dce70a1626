//! Structure-aware: three replicas run arbitrary operations (add, remove, remove all,
//! restart as a new incarnation, purge another origin) while their deltas travel as
//! *encoded bytes* through a network that delivers them late, out of order, twice or
//! never, and anti-entropy rounds exchange encoded digests and byte-bounded chunks,
//! of which any subset may arrive.
//!
//! Checked on the way: every delta and chunk decodes to what was encoded, no merge of a
//! piece of a peer's state removes a dot that peer still holds (partial deltas are
//! causally safe), a replica whose own incarnation was superseded reincarnates and is
//! seen again. At the end, after full anti-entropy, every replica holds the same state
//! and every origin's elements are exactly what that origin holds (a model of counts).
#![no_main]
use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_crdt::{ChangeKind, Delta, Digest, Orswot, Replica};
use mesh_fuzz::check_state;

type R = Replica<u8, u8>;
type D = Delta<u8, u8>;

const N: usize = 3;

#[derive(Arbitrary, Debug)]
enum Op {
    Add {
        r: u8,
        e: u8,
    },
    Remove {
        r: u8,
        e: u8,
    },
    RemoveAll {
        r: u8,
        e: u8,
    },
    /// Deliver the in-flight message `i` to `to`; keep a copy in flight if `dup`.
    Deliver {
        i: u8,
        to: u8,
        dup: bool,
    },
    Lose {
        i: u8,
    },
    /// `from` answers `to`'s digest, cut into chunks of `limit`; chunk k arrives iff
    /// bit k of `mask` is set.
    AntiEntropy {
        from: u8,
        to: u8,
        limit: u8,
        mask: u32,
    },
    /// The node restarts: a new replica at a larger incarnation, its state gone.
    Restart {
        r: u8,
    },
    /// `r` purges `target` (permdown), even if `target` is in fact alive.
    Purge {
        r: u8,
        target: u8,
    },
}

struct World {
    replicas: Vec<R>,
    /// Encoded deltas in flight.
    net: Vec<Vec<u8>>,
    /// What each origin holds: element -> count (the oracle).
    model: Vec<BTreeMap<u8, usize>>,
    /// The largest incarnation each origin has used.
    incarnation: Vec<u64>,
}

fn idx(x: u8) -> usize {
    usize::from(x) % N
}

impl World {
    fn send(&mut self, delta: &D) {
        let bytes = delta.encode().expect("encode");
        let back = D::decode(&bytes).expect("a delta decodes");
        assert_eq!(&back, delta, "decode(encode(delta)) != delta");
        if self.net.len() < 256 {
            self.net.push(bytes);
        }
    }

    fn merge_into(&mut self, to: usize, delta: &D) {
        let report = self.replicas[to].merge(delta);
        for c in &report.changes {
            assert_ne!(
                c.dot.origin, to as u8,
                "a merge changed the replica's own partition"
            );
        }
        self.reincarnate_if_superseded(to);
        check_state(self.replicas[to].state());
    }

    fn reincarnate_if_superseded(&mut self, r: usize) {
        if let Some(by) = self.replicas[r].superseded_by() {
            let next = by.max(self.incarnation[r]) + 1;
            let delta = self.replicas[r]
                .reincarnate(next)
                .expect("newer incarnation");
            self.incarnation[r] = next;
            self.send(&delta);
        }
    }

    fn anti_entropy(&mut self, from: usize, to: usize, limit: usize, mask: Option<u32>) {
        let digest_bytes = self.replicas[to].digest().encode().expect("encode");
        let digest = Digest::<u8>::decode(&digest_bytes).expect("a digest decodes");
        assert_eq!(digest, self.replicas[to].digest());
        let reply = self.replicas[from].missing_for(&digest);
        let pieces = reply
            .chunks(limit)
            .expect("u8 elements fit any limit used here");
        for (k, piece) in pieces.iter().enumerate() {
            let bytes = piece.encode().expect("encode");
            assert!(
                bytes.len() <= limit,
                "chunk of {} bytes over {limit}",
                bytes.len()
            );
            let piece = D::decode(&bytes).expect("a chunk decodes");
            if mask.is_some_and(|m| k >= 32 || m & (1 << k) == 0) {
                continue;
            }
            // Causal safety: a dot the sender still holds live is never removed.
            let sender = self.replicas[from].state();
            let mut probe: Orswot<u8, u8> = self.replicas[to].state().clone();
            for c in probe.merge(&piece).changes {
                if c.kind == ChangeKind::Removed {
                    let live = sender.dots_of(&c.element).contains(&c.dot);
                    assert!(!live, "a chunk removed {:?}, live at its sender", c.dot);
                }
            }
            self.merge_into(to, &piece);
        }
    }

    fn converge(&mut self) {
        for _round in 0..8 {
            // Flush the network first (reincarnations send deltas).
            while let Some(bytes) = self.net.pop() {
                let delta = D::decode(&bytes).expect("decodes");
                for to in 0..N {
                    self.merge_into(to, &delta);
                }
            }
            for a in 0..N {
                for b in 0..N {
                    if a != b {
                        self.anti_entropy(a, b, 200, None);
                    }
                }
            }
            let d0 = self.replicas[0].digest();
            if self.net.is_empty() && self.replicas.iter().all(|r| r.digest() == d0) {
                return;
            }
        }
        panic!("no convergence after 8 full anti-entropy rounds");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut w = World {
        replicas: (0..N as u8).map(|o| R::new(o, 1)).collect(),
        net: Vec::new(),
        model: vec![BTreeMap::new(); N],
        incarnation: vec![1; N],
    };
    for r in 0..N {
        let announce = w.replicas[r].announce();
        w.send(&announce);
    }
    for op in ops.into_iter().take(200) {
        match op {
            Op::Add { r, e } => {
                let r = idx(r);
                let d = w.replicas[r].add(e % 8);
                *w.model[r].entry(e % 8).or_default() += 1;
                w.send(&d);
            }
            Op::Remove { r, e } => {
                let r = idx(r);
                match w.replicas[r].remove(&(e % 8)) {
                    Ok(d) => {
                        let n = w.model[r].get_mut(&(e % 8)).expect("model has it");
                        *n -= 1;
                        if *n == 0 {
                            w.model[r].remove(&(e % 8));
                        }
                        w.send(&d);
                    }
                    Err(_) => assert!(!w.model[r].contains_key(&(e % 8))),
                }
            }
            Op::RemoveAll { r, e } => {
                let r = idx(r);
                match w.replicas[r].remove_all(&(e % 8)) {
                    Ok(d) => {
                        assert!(w.model[r].remove(&(e % 8)).is_some());
                        w.send(&d);
                    }
                    Err(_) => assert!(!w.model[r].contains_key(&(e % 8))),
                }
            }
            Op::Deliver { i, to, dup } => {
                if w.net.is_empty() {
                    continue;
                }
                let i = usize::from(i) % w.net.len();
                let bytes = if dup {
                    w.net[i].clone()
                } else {
                    w.net.swap_remove(i)
                };
                let delta = D::decode(&bytes).expect("decodes");
                w.merge_into(idx(to), &delta);
            }
            Op::Lose { i } => {
                if !w.net.is_empty() {
                    let i = usize::from(i) % w.net.len();
                    w.net.swap_remove(i);
                }
            }
            Op::AntiEntropy {
                from,
                to,
                limit,
                mask,
            } => {
                let (from, to) = (idx(from), idx(to));
                if from != to {
                    w.anti_entropy(from, to, 64 + usize::from(limit), Some(mask));
                }
            }
            Op::Restart { r } => {
                let r = idx(r);
                w.incarnation[r] += 1;
                w.replicas[r] = R::new(r as u8, w.incarnation[r]);
                w.model[r].clear();
                let announce = w.replicas[r].announce();
                w.send(&announce);
            }
            Op::Purge { r, target } => {
                let (r, target) = (idx(r), idx(target));
                if let Ok(purged) = w.replicas[r].purge_origin(&(target as u8)) {
                    assert!(purged
                        .report
                        .changes
                        .iter()
                        .all(|c| c.kind == ChangeKind::Purged));
                    w.send(&purged.delta);
                }
            }
        }
    }
    w.converge();
    let first = w.replicas[0].state().clone();
    for r in &w.replicas {
        assert_eq!(
            r.state(),
            &first,
            "replicas with equal digests hold different states"
        );
    }
    for (o, model) in w.model.iter().enumerate() {
        let held: BTreeMap<u8, usize> = first
            .elements_of(&(o as u8))
            .map(|(e, n)| (*e, n))
            .collect();
        assert_eq!(&held, model, "origin {o}'s elements after convergence");
        assert_eq!(first.incarnation_of(&(o as u8)), Some(w.incarnation[o]));
    }
});
