//! mesh-core: the mesh node as a sans-IO state machine.
//!
//! Every protocol here takes inputs with an explicit `now` and returns outputs to drain;
//! it does no IO, spawns nothing, reads no clock and uses the seeded RNG it is handed.
//! The compiler keeps it so: the crate's normal dependencies include no tokio, quinn,
//! rustls, axum, metrics or redb (`scripts/check-sans-io` checks it in CI). The tokio
//! shell that drives [`node::Node`] over QUIC, the redb acceptor store, metrics, config
//! and the admin HTTP API are in `mesh-agent`; the deterministic simulator in `tests/`
//! drives the same `Node`.
//!
//! - [`identity`]: who a node is (`{name, addr, incarnation}`).
//! - [`pid`]: process identifiers `{node, incarnation, local_id}`.
//! - [`hlc`]: a hybrid logical clock (orders eventual name claims).
//! - [`process`]: processes' mailboxes (bounded, FIFO, shared with their owner).
//! - [`codec`]: the SWIM wire codec.
//! - [`membership`]: SWIM membership as a sans-IO state machine around foca.
//! - [`dissemination`]: the CRDT dissemination scheduler (datagram trailers, batches,
//!   anti-entropy rounds), sans-IO.
//! - [`registry`]: process groups (Erlang `pg` semantics) and eventual names, sans-IO,
//!   on the owner-partitioned delta-ORSWOT of `mesh-crdt`.
//! - [`node`]: every protocol of one peer composed into one sans-IO state machine.
//! - [`quorum`]: the CASPaxos register of the quorum plane, and the acceptor store's
//!   contract ([`quorum::store`]: the `AcceptorStore` trait, `MemStore`, group commit).
//! - [`claims`]: task claims and strong names on the register (sans-IO).
//! - [`tags`]: node tags, replicated (newest version per node wins).
//! - [`placement`]: placement by capability (HRW over members matching a tag selector).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod claims;
pub mod codec;
pub mod discovery;
pub mod dissemination;
pub mod hlc;
pub mod identity;
pub mod membership;
pub mod node;
pub mod pid;
pub mod placement;
pub mod process;
pub mod quorum;
mod reason;
pub mod registry;
pub mod tags;
