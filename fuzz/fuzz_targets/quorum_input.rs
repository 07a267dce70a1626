//! The quorum plane's decoders and its acceptor on arbitrary bytes: `[selector][payload]`.
//!
//! - 0: a quorum message as the node decodes it (`QuorumMsg`, `rmp_serde::from_slice`,
//!   what the crate-private `wire::decode` does): what decodes re-encodes to itself.
//! - 1: a root record as the acceptor store reads it (`store::decode_root`): what
//!   decodes re-encodes (`store::encode_state`) to bytes that decode to it again.
//! - 2: an acceptor state as the store reads it (`store::decode_state`, a shard's
//!   `AcceptorState<ShardSlot>`): the same round trip.
//! - 3..: a sequence of length-prefixed quorum messages ([`mesh_fuzz::split_pieces`])
//!   fed to one acceptor (id 1, epoch 1, as a voter's plane does with the requests
//!   addressed to it). After every message, for every register it holds: the promise is
//!   at least the accepted ballot and never went down, the accepted ballot never went
//!   down, a state of another epoch is never written; every `Persist` output carries
//!   exactly the state the acceptor then holds for that key, and every reply encodes
//!   and decodes back to itself (the bytes the proposer will read).
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mesh_core::claims::{ShardId, ShardSlot};
use mesh_core::node::claims_plane::QuorumMsg;
use mesh_core::quorum::store::{decode_root, decode_state, encode_key, encode_state};
use mesh_core::quorum::{Acceptor, AcceptorOutput, AcceptorState, Ballot, NodeId, Reply};
use mesh_fuzz::{check_reencode, split_pieces};

type State = AcceptorState<ShardSlot>;

fn acceptor_run(data: &[u8]) {
    let mut acc: Acceptor<ShardId, ShardSlot> = Acceptor::new(NodeId(1), 1);
    let mut seen: BTreeMap<ShardId, (Ballot, Option<Ballot>)> = BTreeMap::new();
    for piece in split_pieces(data).into_iter().take(64) {
        let Ok(msg) = rmp_serde::from_slice::<QuorumMsg>(piece) else {
            continue;
        };
        let QuorumMsg::Request { to: 1, req } = msg else {
            continue;
        };
        let key = *req.key();
        acc.handle_request(NodeId(9), req);
        while let Some(out) = acc.poll_output() {
            let reply = match out {
                AcceptorOutput::Persist { key, state, then } => {
                    assert_eq!(
                        acc.state(&key),
                        Some(&state),
                        "a Persist output differs from the state the acceptor holds"
                    );
                    assert_eq!(state.epoch, 1, "a state of another epoch was written");
                    then
                }
                AcceptorOutput::Send(then) => then,
            };
            let bytes = rmp_serde::to_vec_named(&reply.msg).expect("a reply encodes");
            let back: Reply<ShardId, ShardSlot> =
                rmp_serde::from_slice(&bytes).expect("a reply decodes");
            assert_eq!(back, reply.msg, "a reply does not decode to itself");
        }
        if let Some(s) = acc.state(&key) {
            let accepted = s.accepted.as_ref().map(|(b, _)| *b);
            if let Some(a) = accepted {
                assert!(
                    s.promised >= a,
                    "accepted {a:?} above the promise {:?}",
                    s.promised
                );
            }
            if let Some((promised, was)) = seen.get(&key) {
                assert!(s.promised >= *promised, "a promise went down");
                assert!(accepted >= *was, "an accepted ballot went down");
            }
            seen.insert(key, (s.promised, accepted));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match selector {
        0 => {
            if let Ok(msg) = rmp_serde::from_slice::<QuorumMsg>(payload) {
                check_reencode(&msg);
            }
        }
        1 => {
            if let Ok(root) = decode_root(payload) {
                let bytes = encode_state(&root).expect("a root encodes");
                assert_eq!(decode_root(&bytes).expect("re-encoded root decodes"), root);
            }
        }
        2 => {
            let key = encode_key(&ShardId(3)).expect("a key encodes");
            if let Ok(state) = decode_state::<State>(&key, payload) {
                let bytes = encode_state(&state).expect("a state encodes");
                let back: State = decode_state(&key, &bytes).expect("re-encoded state decodes");
                assert_eq!(back, state);
            }
        }
        _ => acceptor_run(payload),
    }
});
