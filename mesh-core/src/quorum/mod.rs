//! The quorum plane's one primitive: a CASPaxos register (Rystsov 2018), sans-IO.
//!
//! # Properties
//!
//! **Safety** (whatever the network does — loss, duplication, reordering, partitions —
//! and whoever proposes):
//!
//! - *Linearizability per key*: every completed change (and read) takes effect atomically
//!   at one point between its call and its completion.
//! - *One value per ballot*: a proposer sends at most one value per ballot, and ballots
//!   are unique (`(round, node, incarnation)`, see [`Ballot`]).
//! - *Acceptor invariants*: an acceptor's promise only grows; its accepted ballot is
//!   never above its promise.
//! - *Durability*: a value accepted by a quorum survives the crash of any minority of
//!   voters **with their persisted state**: acceptors fsync before every reply (see
//!   [`acceptor`]). A wiped acceptor must come back with a new id, never its old one.
//!
//! **Liveness**: with a majority of the voters connected to a proposer, its changes
//! complete; duelling proposers back off with seeded jitter (and by request id a retry
//! never applies a change twice).
//!
//! # The protocol
//!
//! A change is a function `f(Option<V>) -> Result<Option<V>, Reject>` ([`Change`]).
//!
//! 1. *Prepare*: the proposer mints a ballot above any it saw and asks all voters for a
//!    promise; a quorum of [`Reply::Promise`]s reports their latest accepted values, and
//!    the one with the highest ballot is the register's current value.
//! 2. *Accept*: the proposer applies `f` and asks all voters to accept the new value at
//!    the same ballot; a quorum of [`Reply::Accepted`] completes the change.
//!
//! **Reads and refused conditional changes still run phase 2**, writing the current value
//! back at the new ballot. Skipping it (answering after phase 1) lets a value seen by a
//! single acceptor be returned by one read and then "un-happen" for the next — the
//! Cassandra LWT bug; `read_that_skips_phase_two_is_not_linearizable` in the tests shows
//! such a history.
//!
//! **One round trip**: every Accept also carries the proposer's *next* ballot, which the
//! acceptor promises in the same durable write (unless it promised higher). When a quorum
//! accepted *and* promised, the proposer caches `(next, value)` per key and its next change
//! on that key goes straight to phase 2. Any conflict, timeout or failed round drops the
//! cache; a conflict reply carries the higher ballot and the proposer climbs above it.
//!
//! **At-most-once**: the register value is a [`Slot`]: the client value plus, per client,
//! a compact [`Record`] of its last decided [`RequestId`] (a receipt such as the token a
//! claim got, or the refusal's reason — never a copy of the value). A retry with the same
//! id (after a [`ProposeError::Timeout`], on any proposer) finds it and is not applied
//! twice. Records of clients the value no longer needs ([`Change::live_clients`]) are
//! retired by the next applied change, so the slot is bounded by the live state, never by
//! history.
//!
//! # What the shell must do
//!
//! - Acceptors: run [`Acceptor::poll_output`] in order; persist, fsync, then release the
//!   replies (group commit across keys is fine). A failed fsync stops the process.
//! - Proposers: bump and fsync the node's incarnation at boot *before* building the
//!   [`Proposer`]; call [`Proposer::handle_timeout`] at [`Proposer::poll_timeout`]; hand
//!   in a seeded RNG for jitter.
//! - Route replies by key; messages are plain serde types.
//!
//! # Voters
//!
//! The voter set V (3 or 5 ids at formation) is tagged with an epoch that every request
//! carries; acceptors refuse other epochs ([`Reply::WrongEpoch`], which tells a proposer
//! on an old root that a newer one exists: [`Proposer::newer_epoch`]). Each root names
//! its quorum rules ([`Quorums`]: majorities for epoch-1 roots); changing V one voter at a
//! time is the [`reconfig`] procedure (raise the accept rule, rescan, raise the prepare
//! rule; the reverse to remove), of which this version has the core — the procedure's
//! planner, the proposer's and acceptor's epoch handling, and the model check — but not
//! yet the node, admin and CLI wiring. Any peer may propose; the [`preferred_proposer`]
//! of a key (HRW over `V ∩ alive`) is only a preference for load and caching — safety
//! never depends on it or on any SWIM view.
//!
//! # Driving it
//!
//! A whole write, with three in-memory acceptors that "fsync" at once:
//!
//! ```
//! use mesh_core::quorum::*;
//! use rand::{rngs::StdRng, SeedableRng};
//! use std::time::Instant;
//!
//! let voters = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut acceptors: Vec<Acceptor<&str, Slot<u32, CasMismatch>>> =
//!     voters.iter().map(|id| Acceptor::new(*id, 1)).collect();
//! // The incarnation (here 1) must have been bumped and fsynced at this boot.
//! let mut proposer = Proposer::new(NodeId(10), 1, 1, voters, ProposerConfig::default());
//! let (now, mut rng) = (Instant::now(), StdRng::seed_from_u64(1));
//!
//! let rid = RequestId { client: 10, seq: 1 };
//! let op = proposer.propose(now, "k", Some(rid), RegisterChange::Write(7));
//! let mut done = None;
//! while done.is_none() {
//!     let Some(out) = proposer.poll_output() else { break };
//!     match out {
//!         ProposerOutput::Send(env) => {
//!             let acceptor = &mut acceptors[(env.to.0 - 1) as usize];
//!             acceptor.handle_request(proposer.id(), env.msg);
//!             while let Some(out) = acceptor.poll_output() {
//!                 // A real shell writes `state` and fsyncs before releasing `then`.
//!                 let (AcceptorOutput::Persist { then, .. } | AcceptorOutput::Send(then)) = out;
//!                 proposer.handle_reply(now, acceptor.id(), then.msg, &mut rng);
//!             }
//!         }
//!         ProposerOutput::Complete(c) => done = Some(c),
//!     }
//! }
//! let done = done.expect("a quorum answered");
//! assert_eq!(done.op, op);
//! assert_eq!(done.result, Ok(Outcome::Applied { value: Some(7), receipt: 0 }));
//! assert!(proposer.has_cached_promise(&"k")); // the next change skips phase 1
//! ```
//!
//! ```text
//!   client ──propose──▶ Proposer ──Send(Prepare/Accept)──▶ net ──▶ Acceptor
//!      ▲                   ▲                                          │
//!      └──Complete─────────┴────────handle_reply◀── net ◀── Persist{then: reply} (fsync first)
//! ```

pub mod acceptor;
pub mod ballot;
pub mod messages;
pub mod proposer;
pub mod reconfig;
pub mod root;
pub mod store;

pub use acceptor::{Acceptor, AcceptorOutput, AcceptorState, AcceptorStats};
pub use ballot::{Ballot, NodeId};
pub use messages::{
    CasMismatch, Change, Envelope, Outcome, Record, RegisterChange, Reply, Request, RequestId,
    Slot, RECENT_RECORDS,
};
pub use proposer::{
    decide, Completion, OpId, ProposeError, Proposer, ProposerConfig, ProposerOutput, ProposerStats,
};
pub use reconfig::{Pending, QuorumRule, Quorums, ReconfigError, Step, VoterChange};
pub use root::{
    proposer_id, Formation, FormationConfig, FormationError, FormationOutput, FormationState,
    FormationStats, Hello, PersistedError, RootRecord, VoterNames, VotersError,
};
pub use store::{AcceptorStore, CommitStats, GroupCommit, MemStore, StoreError};

/// The size of a majority quorum of `voters` voters.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The preferred proposer of `key` among `candidates` (normally `V ∩ alive`): highest
/// random weight (rendezvous hashing) with a pinned hash, so every peer computes the same
/// answer from the same inputs, across versions and platforms. Only a preference.
pub fn preferred_proposer(key: &[u8], candidates: &[NodeId]) -> Option<NodeId> {
    candidates
        .iter()
        .copied()
        .max_by_key(|node| (hrw_weight(key, *node), *node))
}

/// The HRW weight of `node` for `key`: FNV-1a 64 over `key ‖ node (LE)`, then the
/// SplitMix64 finaliser to spread the low-entropy tail. Pinned: never change it without
/// a voter-set epoch bump.
pub fn hrw_weight(key: &[u8], node: NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain(node.0.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
