//! The whole sans-IO node on arbitrary peer input: a sequence of pieces (as in
//! `mesh_fuzz::split_pieces`), each `[kind][bytes]`:
//!
//! | kind % 7 | input                                                                  |
//! |----------|------------------------------------------------------------------------|
//! | 0, 1, 2  | `Node::handle_frame` from n2, class State, User, Control                |
//! | 3        | `Node::handle_request` (State: an anti-entropy digest request)          |
//! | 4        | `Node::handle_datagram` (dissemination wrapper around a SWIM packet, so `Membership::handle_data`); sent by the name in its SWIM header when it has one, as a peer whose certificate matches would |
//! | 5        | `Node::handle_response` to the node's oldest pending AE request         |
//! | 6        | time passes (`bytes[0] * 10` ms): due SWIM timers fire, then a tick     |
//!
//! The node (n1) starts with a process in two groups and a name, and knows n2. After
//! every input: no panic; an input whose envelope does not decode, or a datagram SWIM
//! refused, is dropped and changes no replicated state (N1); a monitor's snapshot plus
//! its events equals the registry's snapshot, which equals the replicated state;
//! everything the node sends decodes.
//! Quorum messages are not fuzzed (no voters are configured: Control frames stop at
//! their envelope).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mesh_core::codec::peek_header;
use mesh_core::node::{AeRequest, ControlFrame, StateFrame, UserFrame};
use mesh_fuzz::harness::{check_own_response, Harness};
use mesh_fuzz::split_pieces;
use mesh_transport::frame::Class;

fn decodes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
    rmp_serde::from_slice::<T>(bytes).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    for piece in split_pieces(data).into_iter().take(64) {
        let Some((&kind, bytes)) = piece.split_first() else {
            continue;
        };
        let groups_before = h.node.registry().groups().state().clone();
        let names_before = h.node.registry().names().state().clone();
        let malformed = match kind % 7 {
            0 => {
                h.node.handle_frame(h.now, "n2", Class::State, bytes);
                !decodes::<StateFrame>(bytes)
            }
            1 => {
                h.node.handle_frame(h.now, "n2", Class::User, bytes);
                !decodes::<UserFrame>(bytes)
            }
            2 => {
                h.node.handle_frame(h.now, "n2", Class::Control, bytes);
                !decodes::<ControlFrame>(bytes)
            }
            3 => {
                let answer = h.node.handle_request(h.now, "n2", Class::State, bytes);
                assert_eq!(answer.is_ok(), decodes::<AeRequest>(bytes));
                if let Ok(resp) = answer {
                    check_own_response(&resp);
                }
                !decodes::<AeRequest>(bytes)
            }
            4 => {
                let from = mesh_core::dissemination::Dissemination::unwrap_datagram(bytes)
                    .ok()
                    .and_then(|(swim, _)| peek_header(swim).ok())
                    .map_or_else(|| "n2".to_owned(), |h| h.src.name);
                let rejected =
                    |h: &Harness| -> u64 { h.node.membership().stats().rejected.values().sum() };
                let before = rejected(&h);
                h.node.handle_datagram(h.now, &from, bytes);
                // Malformed outside, or refused by SWIM: its piggyback is not trusted.
                mesh_core::dissemination::Dissemination::unwrap_datagram(bytes).is_err()
                    || rejected(&h) > before
            }
            5 => {
                if h.pending.is_empty() {
                    continue;
                }
                let tag = h.pending.remove(0);
                h.node
                    .handle_response(h.now, tag, Ok(Bytes::copy_from_slice(bytes)));
                false
            }
            _ => {
                h.tick(u64::from(bytes.first().copied().unwrap_or(1)) * 10);
                false
            }
        };
        h.after();
        if malformed {
            assert_eq!(
                h.node.registry().groups().state(),
                &groups_before,
                "N1: groups changed"
            );
            assert_eq!(
                h.node.registry().names().state(),
                &names_before,
                "N1: names changed"
            );
        }
    }
});
