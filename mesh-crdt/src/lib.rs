//! Replicated state for mesh: an **owner-partitioned, delta-state ORSWOT** (an
//! observed-remove set without tombstones), with the sync primitives the mesh needs —
//! deltas, compact digests, anti-entropy replies, byte-bounded chunks, incarnations and
//! purge. No IO, no clock, no randomness: the runtime decides what to send to whom.
//!
//! # Model
//!
//! Every node is an *origin*. Only the origin adds or removes its own entries (a process
//! joins and leaves groups only on the node that hosts it), so there are no write
//! conflicts, only delivery problems.
//!
//! - An add mints a [`Dot`] `(origin, incarnation, seq)`, `seq = 1, 2, ...` per
//!   incarnation. A remove removes one live dot of the element; an element's
//!   *multiplicity* is its number of live dots (join twice, leave twice).
//! - State per origin ([`Orswot`]): its incarnation; its causal context, a
//!   [`SeqSet`] — the contiguous prefix `1..=n` (the version-vector entry) plus a *dot
//!   cloud* of ranges for what arrived out of order; and its live dots,
//!   `element -> {seq}`. No vector clock per entry.
//! - A dot in the context but not live was removed. That is all a removal leaves
//!   behind (see "Garbage collection").
//! - The join of two views of one incarnation keeps a dot live iff it is live on both
//!   sides, or live on one side and outside the other's context; contexts are unioned.
//!   Across incarnations the newer one wins whole, and a retirement marker (a purge)
//!   beats the live state of its incarnation.
//!
//! A [`Replica`] owns one origin: [`Replica::add`], [`Replica::remove`] and friends
//! change the local state and return a [`Delta`] — an [`Orswot`] whose context is
//! exactly the dots it adds or removes. [`Orswot::merge`] is the one join for deltas,
//! chunks, anti-entropy replies and full states.
//!
//! # Invariants
//!
//! Safety (each is a property test in `tests/`; `tests/t01_seqset.rs` checks the
//! context representation against a plain set):
//!
//! 1. **Merge is a join**: commutative, associative, idempotent, on any states
//!    (`tests/t10_lattice.rs`). Per dot the state moves up the chain
//!    *unknown < live < removed*; per origin, up `(incarnation, retired)`.
//! 2. **A removed dot never comes back**: once a replica's context covers a dot it does
//!    not hold, no merge makes it live again (`tests/t20_delivery.rs`).
//! 3. **No false removal**: a replica drops a dot only if the origin removed it or its
//!    incarnation was superseded or purged — never because another replica merely has
//!    not seen it. Equivalently: a replica never loses a dot another replica still
//!    holds unless its context covers it as removed (`tests/t20_delivery.rs`).
//! 4. **Partial deltas are causally safe**: a chunk or anti-entropy reply claims only
//!    the dots it carries, so applying any subset of the pieces of a state, in any
//!    order, never removes a dot — hence never an element held by that dot — that a
//!    replica holding the full state still has (`tests/t30_chunks.rs`; see
//!    [`Orswot::chunks`] and the delta_crdt_ex bug it avoids). The one element-level
//!    nuance: an element that was removed and later re-added lives on under a *new*
//!    dot, so a replica that applied the piece with the removal but not yet the one
//!    with the re-add shows it absent meanwhile — the owner's real history (leave,
//!    then join again), as with the same two deltas delivered out of order.
//! 5. **Incarnations**: a newer incarnation of an origin purges the older one's entries
//!    at once, and dots of older incarnations arriving later are ignored; a purged
//!    incarnation never returns (`tests/t40_incarnations.rs`).
//!
//! Liveness: replicas that exchanged all deltas, or ran push-pull anti-entropy
//! ([`Orswot::digest`] → [`Orswot::missing_for`] both ways) until digests match,
//! hold equal states — with deltas delivered in any order, duplicated, or dropped
//! (`tests/t20_delivery.rs`). The `crdts` crate's `Orswot` fed the same operations
//! agrees on the element set (`tests/t50_oracle.rs`).
//!
//! # Garbage collection
//!
//! Removed state needs no tombstone. With one writer per origin and per-origin
//! contexts, "dot `seq` was removed" is fully said by *"the context covers `seq` and the
//! entry is absent"*: the context **is** the tombstone. It is safe because
//!
//! - a dot is minted once, by its origin, so no later add can reuse it: covering it in
//!   the context is exactly "this add is known and settled";
//! - the join never revives a dot the context covers (invariant 2), so dropping the
//!   entry loses nothing;
//! - a replica that has not seen the removal either does not cover the dot (and takes
//!   the removal when it arrives) or holds it live (and loses it to any context that
//!   covers it without it).
//!
//! In the contiguous prefix a removed dot costs nothing — `1..=n` is one integer. It
//! costs something only in the dot cloud, and there runs of removed dots are single
//! ranges. The cloud is compacted (folded into the prefix) the moment the gap below it
//! fills, which anti-entropy guarantees: the owner's context is always contiguous, and
//! any reply covering the gap carries the missing dots' fate. A cloud range may not be
//! folded *before* the gap fills — the gap's dots are unknown, not removed, and treating
//! them as removed is the delta_crdt_ex bug.
//!
//! A new incarnation drops the old incarnation's context and entries whole. A purged
//! (retired) incarnation leaves one small marker per origin name — `(origin,
//! incarnation, retired)` — which must stay: without it, a late delta or a stale peer's
//! state would resurrect the purged entries. A returning node replaces it with its new
//! incarnation.
//!
//! # Purge, and hiding a down node
//!
//! [`Orswot::purge_origin`] (permdown) retires the origin's current incarnation: its
//! entries go at once and its marker spreads with the state. If the marker reaches the
//! node itself (it was alive but cut off), [`Replica::merge`] keeps the node's entries,
//! reports [`MergeReport::own_incarnation_superseded_by`], and the node calls
//! [`Replica::reincarnate`] — as a SWIM member refutes being declared dead.
//!
//! Hiding (the first phase of node failure) is a view concern and needs nothing here:
//! a view keeps the set of hidden origins and filters them out of queries; because
//! entries are partitioned by origin ([`Orswot::elements_of`]), hiding or unhiding is
//! one walk over that origin's elements to emit `Left{NodeDown}` / `Joined{NodeRestored}`
//! events. The state keeps merging the hidden origin's deltas meanwhile, so a node that
//! returns before permdown is unhidden without any transfer.
//!
//! # Sync
//!
//! - **Deltas** ride broadcasts; loss is fine, anti-entropy repairs it.
//! - **Digests** ([`Digest`]) are a few dozen bytes per origin; see [`digest`] for what
//!   they hold and why they hash the live set too.
//! - **Chunks**: [`Orswot::chunks`] cuts any delta into causally safe pieces of at
//!   most `max_bytes` encoded bytes ([`codec::encoded_len`]).
//! - **Encoding**: MessagePack via rmp-serde, named fields; decoding validates every
//!   invariant and never panics ([`codec`]).
//!
//! ```
//! use mesh_crdt::Replica;
//!
//! let mut n1: Replica<String, (String, u64)> = Replica::new("n1".into(), 7);
//! let mut n2: Replica<String, (String, u64)> = Replica::new("n2".into(), 3);
//! // Every broadcast is lost...
//! let _lost = n1.add(("workers".into(), 42));
//! let _lost = n2.add(("workers".into(), 9));
//! // ...and one push-pull anti-entropy round repairs it.
//! let to_n2 = n1.missing_for(&n2.digest());
//! let to_n1 = n2.missing_for(&n1.digest());
//! for chunk in to_n2.chunks(1200).expect("elements fit") {
//!     let bytes = chunk.encode().expect("encode");
//!     n2.merge(&mesh_crdt::Orswot::decode(&bytes).expect("valid"));
//! }
//! n1.merge(&to_n1);
//! assert_eq!(n1.state(), n2.state());
//! assert_eq!(n1.digest(), n2.digest());
//! assert_eq!(n1.state().elements().len(), 2);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunk;
pub mod codec;
pub mod digest;
mod dot;
mod origin;
mod orswot;
mod replica;
mod seqset;

pub use chunk::ChunkError;
pub use codec::{DecodeError, EncodeError};
pub use digest::{Digest, OriginDigest};
pub use dot::{Change, ChangeKind, Dot, MergeReport};
pub use origin::{FixedState, InvalidState};
pub use orswot::{Delta, Orswot, Purged};
pub use replica::{PurgeError, ReincarnateError, RemoveError, Replica};
pub use seqset::{InvalidRange, SeqSet};
