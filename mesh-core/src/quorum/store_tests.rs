//! Tests of the store contract: the encoding, the in-memory model, and the group-commit
//! batcher against a real acceptor. (The redb store's tests are in `mesh-agent`.)

use super::*;
use crate::quorum::{Acceptor, Ballot, NodeId, Request};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

type A = Acceptor<String, u32>;
const P: NodeId = NodeId(9);

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn entry(key: &str, value: u32) -> Entry {
    let state = AcceptorState {
        promised: Ballot::first(P, 1),
        accepted: Some((Ballot::first(P, 1), value)),
        epoch: 1,
    };
    (
        encode_key(key).expect("a string key encodes"),
        encode_state(&state).expect("a state encodes"),
    )
}

fn root() -> RootRecord {
    RootRecord {
        epoch: 1,
        quorums: None,
        pending: None,
        voters: vec![("n1".into(), 11), ("n2".into(), 12), ("n3".into(), 13)],
    }
}

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        node: P,
        incarnation: 1,
    }
}

fn prepare(key: &str, round: u64) -> Request<String, u32> {
    Request::Prepare {
        key: key.to_owned(),
        epoch: 1,
        ballot: ballot(round),
    }
}

fn accept(key: &str, round: u64, value: u32) -> Request<String, u32> {
    Request::Accept {
        key: key.to_owned(),
        epoch: 1,
        ballot: ballot(round),
        value,
        next: ballot(round + 1),
    }
}

/// Every output of `acceptor` into `group`; returns the replies in output order.
fn drain(acceptor: &mut A, group: &mut GroupCommit<String, u32>) -> Vec<Reply<String, u32>> {
    let mut order = Vec::new();
    while let Some(out) = acceptor.poll_output() {
        order.push(match &out {
            AcceptorOutput::Persist { then, .. } => then.msg.clone(),
            AcceptorOutput::Send(then) => then.msg.clone(),
        });
        group.push(out).expect("states encode");
    }
    order
}

fn msgs(replies: Vec<Envelope<Reply<String, u32>>>) -> Vec<Reply<String, u32>> {
    replies.into_iter().map(|e| e.msg).collect()
}

// ---------------------------------------------------------------------------------------
// Encoding

#[test]
fn a_corrupt_state_is_an_error_naming_its_key() {
    let mut store = MemStore::new(&mut rng(1));
    let key = encode_key("shard-7").expect("encodes");
    store
        .commit(&[entry("shard-1", 1), (key.clone(), vec![STATE_FORMAT, 0xc1])])
        .expect("commit");
    let err = load_acceptor::<String, u32>(&store).expect_err("corrupt");
    match err {
        StoreError::Corrupt { key, .. } => assert_eq!(key, "\"shard-7\""),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A state from a future format, and a key that is not MessagePack at all.
    store.commit(&[(key, vec![9, 0x90])]).expect("commit");
    let err = load_acceptor::<String, u32>(&store).expect_err("unknown format");
    assert!(err.to_string().contains("\"shard-7\""), "{err}");
    assert!(err.to_string().contains("unknown format 9"), "{err}");
    let mut store = MemStore::new(&mut rng(1));
    store
        .commit(&[(vec![0xc1, 0x01], vec![1])])
        .expect("commit");
    let err = load_acceptor::<String, u32>(&store).expect_err("bad key");
    assert!(err.to_string().contains("0xc101"), "{err}");
}

// ---------------------------------------------------------------------------------------
// MemStore

#[test]
fn a_mem_store_crash_drops_only_uncommitted_writes() {
    let mut store = MemStore::new(&mut rng(3));
    store.commit(&[entry("a", 1)]).expect("commit");
    store.set_root(&root()).expect("set_root");
    store.fail_next_write();
    assert!(matches!(
        store.commit(&[entry("a", 2), entry("b", 2)]),
        Err(StoreError::Write(_))
    ));
    assert!(matches!(
        store.commit(&[entry("c", 3)]),
        Err(StoreError::Stopped)
    ));
    // The writing process still reads its unsynced data back ...
    assert_eq!(
        store.load().expect("load"),
        vec![entry("a", 2), entry("b", 2)]
    );
    // ... a restarted one does not, and keeps the id and the committed root.
    let mut restarted = store.crash();
    assert_eq!(restarted.load().expect("load"), vec![entry("a", 1)]);
    assert_eq!(restarted.acceptor_id(), store.acceptor_id());
    assert_eq!(restarted.root().expect("root"), Some(root()));
    restarted.commit(&[entry("c", 3)]).expect("writes again");
    assert_eq!(restarted.commits(), 3);
}

#[test]
fn a_failed_root_write_is_not_durable() {
    let mut store = MemStore::new(&mut rng(3));
    store.fail_next_write();
    assert!(store.set_root(&root()).is_err());
    assert_eq!(store.crash().root().expect("root"), None);
}

#[test]
fn a_new_mem_store_never_has_acceptor_id_zero_and_draws_it_from_the_rng() {
    struct Zero;
    impl rand::TryRng for Zero {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(0);
            Ok(())
        }
    }
    assert_eq!(MemStore::new(&mut Zero).acceptor_id(), 1);
    let a = MemStore::new(&mut rng(5)).acceptor_id();
    assert_eq!(MemStore::new(&mut rng(5)).acceptor_id(), a);
    assert_ne!(MemStore::new(&mut rng(6)).acceptor_id(), a);
}

// ---------------------------------------------------------------------------------------
// GroupCommit

#[test]
fn the_batcher_releases_every_reply_in_output_order_after_one_commit() {
    let mut acceptor = A::new(NodeId(1), 1);
    let mut group = GroupCommit::new();
    acceptor.handle_request(P, prepare("a", 2));
    acceptor.handle_request(P, prepare("b", 2));
    acceptor.handle_request(P, prepare("a", 1)); // a conflict: a Send, no write
    acceptor.handle_request(P, accept("b", 2, 7));
    let order = drain(&mut acceptor, &mut group);
    assert_eq!(group.pending_replies(), 4);
    assert_eq!(group.batch().len(), 2, "one entry per key");
    let mut store = MemStore::new(&mut rng(1));
    let committed = store.commit(group.batch());
    let released = msgs(group.finish(&committed));
    assert_eq!(released, order);
    assert_eq!(store.commits(), 1);
    assert_eq!(group.batch().len(), 0);
    assert_eq!(group.stats().released, 4);
}

#[test]
fn a_key_persisted_twice_in_one_batch_is_written_once_with_its_latest_state() {
    let mut acceptor = A::new(NodeId(1), 1);
    let mut group = GroupCommit::new();
    acceptor.handle_request(P, prepare("a", 1));
    acceptor.handle_request(P, accept("a", 1, 5));
    drain(&mut acceptor, &mut group);
    assert_eq!(group.stats().coalesced, 1);
    let mut store = MemStore::new(&mut rng(1));
    let committed = store.commit(group.batch());
    assert_eq!(group.finish(&committed).len(), 2);
    let durable = load_acceptor::<String, u32>(&store).expect("decodes");
    assert_eq!(durable.len(), 1);
    assert_eq!(Some(&durable[0].1), acceptor.state(&"a".to_owned()));
}

#[test]
fn a_failed_commit_releases_no_reply_and_stops_the_batcher() {
    let mut acceptor = A::new(NodeId(1), 1);
    let mut group = GroupCommit::new();
    acceptor.handle_request(P, prepare("a", 1));
    acceptor.handle_request(P, prepare("a", 0)); // a conflict (Send), held back as well
    drain(&mut acceptor, &mut group);
    let mut store = MemStore::new(&mut rng(1));
    store.fail_next_write();
    let committed = store.commit(group.batch());
    assert!(group.finish(&committed).is_empty());
    assert_eq!(group.stats().dropped_commit_failed, 2);
    acceptor.handle_request(P, prepare("b", 1));
    let out = acceptor.poll_output().expect("an output");
    assert!(matches!(group.push(out), Err(StoreError::Stopped)));
    assert_eq!(group.stats().dropped_stopped, 1);
    assert!(group.finish(&Ok::<(), StoreError>(())).is_empty());
}

#[test]
fn a_promise_whose_commit_failed_is_gone_after_a_restart_and_was_never_revealed() {
    let mut store = MemStore::new(&mut rng(1));
    let id = NodeId(store.acceptor_id());
    let mut acceptor = A::new(id, 1);
    let mut group = GroupCommit::new();
    acceptor.handle_request(P, prepare("k", 1));
    drain(&mut acceptor, &mut group);
    let committed = store.commit(group.batch());
    assert_eq!(group.finish(&committed).len(), 1);

    acceptor.handle_request(P, prepare("k", 5));
    drain(&mut acceptor, &mut group);
    store.fail_next_write();
    let committed = store.commit(group.batch());
    assert!(
        group.finish(&committed).is_empty(),
        "promise 5 never leaves"
    );

    // The process stops; the restart sees promise 1, so ballot 3 may be promised.
    let store = store.crash();
    let durable = load_acceptor::<String, u32>(&store).expect("decodes");
    let mut acceptor = A::restore(id, 1, durable);
    assert_eq!(
        acceptor.state(&"k".to_owned()).map(|s| s.promised),
        Some(ballot(1))
    );
    acceptor.handle_request(P, prepare("k", 3));
    assert!(matches!(
        acceptor.poll_output(),
        Some(AcceptorOutput::Persist {
            then: Envelope {
                msg: Reply::Promise { .. },
                ..
            },
            ..
        })
    ));
}

proptest! {
    /// Whatever the requests and wherever a commit fails: the replies released are exactly
    /// those of the batches before the failure, in output order, and after a crash the
    /// durable state of every key is the one the acceptor had at the last good commit.
    #[test]
    fn released_replies_are_exactly_the_committed_ones_and_survive_a_crash(
        ops in prop::collection::vec((0u8..3, 0u64..6, any::<bool>(), 0u32..100), 1..60),
        cuts in prop::collection::vec(any::<bool>(), 60),
        fail_at in 0usize..12,
    ) {
        let mut store = MemStore::new(&mut rng(1));
        let mut acceptor = A::new(NodeId(store.acceptor_id()), 1);
        let mut group = GroupCommit::new();
        let (mut expected, mut released) = (Vec::new(), Vec::new());
        let mut at_last_commit = std::collections::BTreeMap::new();
        let mut batch_no = 0;
        let mut pending = Vec::new();
        for (i, (key, round, is_accept, value)) in ops.iter().enumerate() {
            let key = format!("k{key}");
            let request = if *is_accept {
                accept(&key, *round, *value)
            } else {
                prepare(&key, *round)
            };
            acceptor.handle_request(P, request);
            pending.extend(drain(&mut acceptor, &mut group));
            if cuts[i] || i + 1 == ops.len() {
                if batch_no == fail_at {
                    store.fail_next_write();
                }
                let committed = store.commit(group.batch());
                let ok = committed.is_ok();
                released.extend(msgs(group.finish(&committed)));
                if ok {
                    expected.append(&mut pending);
                    for k in 0..3 {
                        let k = format!("k{k}");
                        if let Some(s) = acceptor.state(&k) {
                            at_last_commit.insert(k, s.clone());
                        }
                    }
                } else {
                    break;
                }
                batch_no += 1;
            }
        }
        prop_assert_eq!(released, expected);
        let durable: std::collections::BTreeMap<String, AcceptorState<u32>> =
            load_acceptor(&store.crash()).expect("decodes").into_iter().collect();
        // Keys that only ever got a refusal have a fresh in-memory state but nothing to
        // persist; compare only what was written.
        for (k, s) in &durable {
            prop_assert_eq!(Some(s), at_last_commit.get(k));
        }
        for (k, s) in &at_last_commit {
            if s.promised != Ballot::ZERO {
                prop_assert_eq!(durable.get(k), Some(s));
            }
        }
    }
}

/// A state whose encoding always fails.
#[derive(Clone, Debug, PartialEq)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<Z: serde::Serializer>(&self, _: Z) -> Result<Z::Ok, Z::Error> {
        Err(serde::ser::Error::custom("no encoding"))
    }
}

#[test]
fn a_state_that_cannot_be_encoded_drops_every_pending_reply_and_stops_the_batcher() {
    let mut group: GroupCommit<String, Unencodable> = GroupCommit::new();
    let reply = |ballot| Envelope {
        to: P,
        msg: Reply::Conflict {
            key: "k".to_owned(),
            ballot,
            promised: ballot,
        },
    };
    group
        .push(AcceptorOutput::Send(reply(ballot(1))))
        .expect("a send needs no encoding");
    let persist = AcceptorOutput::Persist {
        key: "k".to_owned(),
        state: AcceptorState {
            promised: ballot(2),
            accepted: Some((ballot(2), Unencodable)),
            epoch: 1,
        },
        then: reply(ballot(2)),
    };
    let err = group.push(persist).expect_err("cannot encode");
    assert!(matches!(err, StoreError::Encode { .. }), "{err}");
    assert_eq!(group.stats().dropped_encode_failed, 2);
    assert_eq!((group.pending_replies(), group.batch().len()), (0, 0));
    assert!(group.finish(&Ok::<(), StoreError>(())).is_empty());
    assert!(matches!(
        group.push(AcceptorOutput::Send(reply(ballot(3)))),
        Err(StoreError::Stopped)
    ));
}

#[test]
fn keys_are_named_by_their_decoded_value_in_errors() {
    assert_eq!(describe_key(&encode_key(&7u32).expect("encodes")), "7");
    assert_eq!(
        describe_key(&encode_key(&("shard", 3u8)).expect("encodes")),
        "[\"shard\",3]"
    );
    // Trailing bytes: not one MessagePack value, so hex.
    assert_eq!(describe_key(&[0x07, 0x07]), "0x0707");
}
