//! A voter's store written by the previous version, whose shard register had grown past
//! the transport's 1 MiB frame limit (one whole recorded table per client that ever
//! wrote the shard), recovers without wiping anything: loading drops the old records
//! (their clients were lives of the old version, which can no longer retry), the next
//! promise fits in a frame again, and the next change leaves a slot bounded by the live
//! state — with the shard's fencing counter untouched.

use mesh_agent::redb_store::RedbStore;
use mesh_core::claims::{
    holder_client, ClaimReject, Session, SessionId, ShardChange, ShardId, ShardSlot, ShardTable,
};
use mesh_core::quorum::store::{encode_key, encode_state, load_acceptor, AcceptorStore};
use mesh_core::quorum::{
    Acceptor, AcceptorOutput, AcceptorState, Ballot, NodeId, Outcome, Proposer, ProposerConfig,
    ProposerOutput, RequestId,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// The register value as the previous version stored it.
#[derive(Serialize)]
struct LegacySlot {
    value: Option<ShardTable>,
    applied: BTreeMap<u64, (u64, LegacyOutcome)>,
}

/// The previous version's recorded outcome: the whole table of the time.
#[derive(Serialize)]
enum LegacyOutcome {
    #[allow(dead_code)]
    Applied(Option<ShardTable>),
    Rejected {
        reason: ClaimReject,
        current: Option<ShardTable>,
    },
}

/// A table with one live session of `n1` and the counter far along.
fn table() -> ShardTable {
    let mut t = ShardTable {
        next_token: 90_000,
        ..ShardTable::default()
    };
    let sid = SessionId {
        node: "n1".into(),
        incarnation: 3,
        n: 89_000,
    };
    t.sessions.insert(
        sid,
        Session {
            ttl_ms: 10_000,
            renew_seq: 89_999,
        },
    );
    // Enough sessions and claims that each recorded copy of the table is sizeable.
    for i in 0..40u64 {
        let s = SessionId {
            node: format!("gone-{i}"),
            incarnation: 1,
            n: 1_000 + i,
        };
        t.sessions.insert(
            s.clone(),
            Session {
                ttl_ms: 10_000,
                renew_seq: 2_000 + i,
            },
        );
        t.claims.insert(
            format!("task-{i}-{}", "x".repeat(60)),
            mesh_core::claims::ClaimRecord {
                sid: s,
                token: 3_000 + i,
            },
        );
    }
    t
}

#[test]
fn a_store_bloated_past_the_frame_limit_by_the_old_format_recovers_without_a_wipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(9);
    let t = table();
    let legacy = LegacySlot {
        value: Some(t.clone()),
        applied: (0..400u64)
            .map(|client| {
                let outcome = if client % 2 == 0 {
                    LegacyOutcome::Applied(Some(t.clone()))
                } else {
                    LegacyOutcome::Rejected {
                        reason: ClaimReject::NoSuchName,
                        current: Some(t.clone()),
                    }
                };
                (client, (client + 1, outcome))
            })
            .collect(),
    };
    let accepted = Ballot::first(NodeId(50), 1);
    let state = AcceptorState {
        promised: accepted,
        accepted: Some((accepted, legacy)),
        epoch: 1,
    };
    let bytes = encode_state(&state).expect("encode");
    assert!(bytes.len() > 1 << 20, "bloated: {} bytes", bytes.len());
    let key = encode_key(&ShardId(0)).expect("key");
    let id = {
        let (mut store, _) = RedbStore::open(dir.path(), &mut rng).expect("open");
        store.commit(&[(key, bytes)]).expect("commit");
        store.acceptor_id()
    };

    // Restart: the store loads, the old records are gone, the table is intact.
    let (store, _) = RedbStore::open(dir.path(), &mut rng).expect("reopen");
    assert_eq!(
        store.acceptor_id(),
        id,
        "the same acceptor, not a wiped one"
    );
    let states = load_acceptor::<ShardId, ShardSlot>(&store).expect("loads");
    let (_, loaded) = &states[0];
    let (_, slot) = loaded.accepted.as_ref().expect("accepted value");
    assert!(slot.applied.is_empty());
    assert_eq!(slot.value.as_ref(), Some(&t));

    // Three acceptors holding that state answer a new proposer; its promise fits in a
    // frame again, and a claim commits with a token above everything issued before.
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let mut acceptors: Vec<Acceptor<ShardId, ShardSlot>> = voters
        .iter()
        .map(|v| Acceptor::restore(*v, 1, states.clone()))
        .collect();
    let mut proposer: Proposer<ShardId, ShardTable, ShardChange> =
        Proposer::new(NodeId(60), 1, 1, voters, ProposerConfig::default());
    let sid = SessionId {
        node: "n1".into(),
        incarnation: 3,
        n: 89_000,
    };
    let client = holder_client("n1", 3, 10_000);
    let now = Instant::now();
    proposer.propose(
        now,
        ShardId(0),
        Some(RequestId { client, seq: 1 }),
        ShardChange::Claim {
            task: "after-recovery".into(),
            sid,
        },
    );
    let mut done = None;
    let mut largest_message = 0;
    while done.is_none() {
        let Some(out) = proposer.poll_output() else {
            break;
        };
        match out {
            ProposerOutput::Send(env) => {
                let a = &mut acceptors[(env.to.0 - 1) as usize];
                a.handle_request(proposer.id(), env.msg);
                while let Some(o) = a.poll_output() {
                    let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) = o;
                    let wire = rmp_serde::to_vec_named(&then.msg).expect("encode");
                    largest_message = largest_message.max(wire.len());
                    proposer.handle_reply(now, a.id(), then.msg, &mut rng);
                }
            }
            ProposerOutput::Complete(c) => done = Some(c),
        }
    }
    let done = done.expect("a quorum answered");
    assert!(
        largest_message < 1 << 20,
        "a promise of {largest_message} bytes"
    );
    let Ok(Outcome::Applied {
        value: Some(after),
        receipt,
    }) = done.result
    else {
        panic!("{:?}", done.result)
    };
    assert!(
        receipt >= 90_000,
        "token {receipt} is above every earlier stamp"
    );
    assert_eq!(after.claims["after-recovery"].token, receipt);
    assert!(
        after.next_token > t.next_token,
        "the fencing counter only grew"
    );
}
