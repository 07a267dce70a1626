//! Tests of the voter-change procedure's pure parts: the quorum arithmetic, the roots it
//! produces, its refusals, and the root record's backward-compatible encoding.

use super::*;
use crate::quorum::store::{decode_root, encode_state};
use crate::quorum::{
    CasMismatch, Proposer, ProposerConfig, ProposerOutput, RegisterChange, Reply, Request, Slot,
};
use std::time::Instant;

fn root3() -> RootRecord {
    RootRecord {
        epoch: 1,
        quorums: None,
        pending: None,
        voters: vec![("n1".into(), 1), ("n2".into(), 2), ("n3".into(), 3)],
    }
}

fn add(name: &str, acceptor: u64) -> VoterChange {
    VoterChange::Add {
        name: name.into(),
        acceptor,
    }
}

fn remove(name: &str, acceptor: u64) -> VoterChange {
    VoterChange::Remove {
        name: name.into(),
        acceptor,
    }
}

fn rule(among: &[u64], need: usize) -> QuorumRule {
    QuorumRule {
        among: among.to_vec(),
        need,
    }
}

/// Every subset of `rule.among` of size `need` (small sets only).
fn quorums_of(rule: &QuorumRule) -> Vec<BTreeSet<u64>> {
    let n = rule.among.len();
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == rule.need)
        .map(|mask| {
            (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| rule.among[i])
                .collect()
        })
        .collect()
}

fn meets_by_enumeration(a: &QuorumRule, b: &QuorumRule) -> bool {
    let (qa, qb) = (quorums_of(a), quorums_of(b));
    !qa.is_empty()
        && !qb.is_empty()
        && qa
            .iter()
            .all(|x| qb.iter().all(|y| x.intersection(y).next().is_some()))
}

#[test]
fn always_meets_agrees_with_enumerating_every_pair_of_quorums() {
    // Every rule over subsets of {1..5} with every need, against every other.
    let mut rules = Vec::new();
    for mask in 1u32..32 {
        let among: Vec<u64> = (0..5)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| i + 1)
            .collect();
        for need in 1..=among.len() + 1 {
            rules.push(rule(&among, need));
        }
    }
    let mut disagreements = 0;
    let mut both = [0usize; 2];
    for a in &rules {
        for b in &rules {
            let want = meets_by_enumeration(a, b);
            both[usize::from(want)] += 1;
            if a.always_meets(b) != want {
                disagreements += 1;
            }
        }
    }
    assert_eq!(disagreements, 0);
    assert!(both[0] > 0 && both[1] > 0, "both answers occur: {both:?}");
}

#[test]
fn a_replace_is_a_chain_of_compatible_roots_and_needs_its_rescan() {
    let r0 = root3();
    let r1 = begin(&r0, add("n4", 4)).expect("add begins");
    assert_eq!(r1.epoch, 2);
    assert!(needs_rescan(&r1));
    assert_eq!(
        r1.quorums().prepare,
        rule(&[1, 2, 3], 2),
        "prepare unchanged"
    );
    assert_eq!(r1.quorums().accept, rule(&[1, 2, 3, 4], 3), "accept raised");
    let r2 = advance(&r1).expect("add ends");
    assert_eq!((r2.epoch, r2.pending.is_none()), (3, true));
    assert_eq!(r2.quorums(), Quorums::majority([1, 2, 3, 4]));
    let r3 = begin(&r2, remove("n1", 1)).expect("remove begins");
    assert!(!needs_rescan(&r3));
    assert_eq!(r3.quorums().prepare, rule(&[2, 3, 4], 2), "prepare lowered");
    assert_eq!(
        r3.quorums().accept,
        rule(&[1, 2, 3, 4], 3),
        "accept unchanged"
    );
    let r4 = advance(&r3).expect("remove ends");
    assert_eq!(r4.epoch, 5);
    assert_eq!(
        r4.voters,
        vec![("n2".into(), 2), ("n3".into(), 3), ("n4".into(), 4)]
    );
    let chain = [&r0, &r1, &r2, &r3, &r4];
    for w in chain.windows(2) {
        assert!(
            w[0].quorums().compatible(&w[1].quorums()),
            "{} / {}",
            w[0],
            w[1]
        );
    }
    // Why R2 (the rescan) is needed: the last root's prepare rule can miss a value the
    // first root's accept rule chose ({1, 2} vs {3, 4}).
    assert!(!r4.quorums().prepare.always_meets(&r0.quorums().accept));
    // And why the prepare rule is raised last: raising it first is not even safe with the
    // old accept rule.
    let wrong = Quorums {
        prepare: rule(&[2, 3, 4], 2),
        accept: r0.quorums().accept,
    };
    assert!(!wrong.is_safe());
}

#[test]
fn three_to_five_and_back_is_a_chain_of_compatible_roots() {
    let mut root = root3();
    let mut chain = vec![root.clone()];
    let steps = [add("n4", 4), add("n5", 5), remove("n1", 1), remove("n2", 2)];
    for change in steps {
        root = begin(&root, change).expect("begins");
        chain.push(root.clone());
        root = advance(&root).expect("ends");
        chain.push(root.clone());
    }
    assert_eq!(root.epoch, 9);
    assert_eq!(root.acceptor_ids(), vec![NodeId(3), NodeId(4), NodeId(5)]);
    for w in chain.windows(2) {
        assert!(
            w[0].quorums().compatible(&w[1].quorums()),
            "{} / {}",
            w[0],
            w[1]
        );
        assert_eq!(w[1].epoch, w[0].epoch + 1);
    }
}

#[test]
fn unsafe_or_overlapping_changes_are_refused_with_a_named_error() {
    let r0 = root3();
    assert_eq!(
        begin(&r0, add("n9", 2)),
        Err(ReconfigError::AlreadyAVoter(
            "acceptor 0000000000000002".into()
        ))
    );
    assert_eq!(begin(&r0, add("n9", 0)), Err(ReconfigError::ZeroAcceptorId));
    assert_eq!(
        begin(&r0, remove("n1", 1)),
        Err(ReconfigError::TooFew("n1".into()))
    );
    assert!(matches!(
        begin(&r0, remove("n7", 7)),
        Err(ReconfigError::NotAVoter(_))
    ));
    assert_eq!(advance(&r0), Err(ReconfigError::NothingPending));
    assert_eq!(roll_back(&r0), Err(ReconfigError::NothingPending));
    let r1 = begin(&r0, add("n4", 4)).expect("begins");
    assert_eq!(
        begin(&r1, add("n5", 5)),
        Err(ReconfigError::InProgress(add("n4", 4)))
    );
    // A wrongly built next root is refused, never handed out.
    let bad = RootRecord {
        quorums: Some(Box::new(Quorums {
            prepare: rule(&[3, 4], 1),
            accept: rule(&[1, 2], 1),
        })),
        ..r1.clone()
    };
    assert!(matches!(
        next_root(&r0, bad.voters.clone(), bad.quorums(), None),
        Err(ReconfigError::Incompatible { .. })
    ));
}

#[test]
fn a_rollback_restores_the_roots_voters_and_quorums_at_the_next_epoch() {
    let r0 = root3();
    let r1 = begin(&r0, add("n4", 4)).expect("begins");
    let back = roll_back(&r1).expect("rolls back");
    assert_eq!(back.epoch, 3);
    assert_eq!(back.voters, r0.voters);
    assert_eq!(back.quorums(), r0.quorums());
    assert_eq!(back.pending, None);
    assert!(begin(&back, add("n5", 5)).is_ok(), "a new change may start");
}

#[test]
fn an_epoch_is_retired_once_its_accept_rule_cannot_be_met_without_moved_acceptors() {
    let q = Quorums::majority([1, 2, 3]);
    assert!(!retired(&q, &[NodeId(1)]));
    assert!(
        !retired(&q, &[NodeId(1), NodeId(9)]),
        "outsiders do not count"
    );
    assert!(retired(&q, &[NodeId(1), NodeId(3)]));
}

#[test]
fn old_roots_decode_and_keep_their_bytes_and_new_fields_round_trip() {
    let old = root3();
    let bytes = encode_state(&old).expect("encodes");
    // The encoding of an epoch-1 root names only the two old fields.
    assert!(!bytes.windows(7).any(|w| w == b"quorums"));
    assert_eq!(decode_root(&bytes).expect("decodes"), old);
    let new = begin(&old, add("n4", 4)).expect("begins");
    let bytes = encode_state(&new).expect("encodes");
    assert_eq!(decode_root(&bytes).expect("decodes"), new);
}

type P = Proposer<&'static str, u32, RegisterChange<u32>>;

type Req = Request<&'static str, Slot<u32, CasMismatch>>;

fn sends(p: &mut P) -> Vec<(NodeId, Req)> {
    std::iter::from_fn(|| p.poll_output())
        .filter_map(|o| match o {
            ProposerOutput::Send(env) => Some((env.to, env.msg)),
            ProposerOutput::Complete(_) => None,
        })
        .collect()
}

#[test]
fn a_proposer_refused_by_a_newer_epoch_learns_it_and_restarts_under_the_new_root() {
    let now = Instant::now();
    let r0 = root3();
    let mut p = P::with_quorums(NodeId(9), 1, 1, r0.quorums(), ProposerConfig::default());
    p.propose(now, "k", None, RegisterChange::Read);
    let first = sends(&mut p);
    assert_eq!(first.len(), 3);
    let ballot = match &first[0].1 {
        Request::Prepare { ballot, .. } => *ballot,
        other => panic!("a prepare first, got {other:?}"),
    };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    // A lagging acceptor's refusal (a lower epoch) teaches nothing.
    let refusal = |epoch| Reply::WrongEpoch {
        key: "k",
        ballot,
        epoch,
    };
    p.handle_reply(now, NodeId(1), refusal(0), &mut rng);
    assert_eq!(p.newer_epoch(), None);
    p.handle_reply(now, NodeId(2), refusal(2), &mut rng);
    assert_eq!(p.newer_epoch(), Some(2));
    assert_eq!(p.stats().wrong_epoch, 2);
    let r1 = begin(&r0, add("n4", 4)).expect("begins");
    p.set_root(now, r1.epoch, r1.quorums());
    assert_eq!((p.epoch(), p.newer_epoch()), (2, None));
    let again = sends(&mut p);
    // The round restarts from phase 1, at the new epoch, to the (unchanged) prepare set.
    let to: Vec<NodeId> = again.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![NodeId(1), NodeId(2), NodeId(3)]);
    for (_, req) in &again {
        assert!(
            matches!(req, Request::Prepare { epoch: 2, ballot: b, .. } if *b > ballot),
            "{req:?}"
        );
    }
    // An older root is ignored.
    p.set_root(now, 1, r0.quorums());
    assert_eq!(p.epoch(), 2);
}
