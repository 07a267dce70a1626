//! mesh-core: the mesh node.
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
//! - [`quorum`]: the CASPaxos register of the quorum plane.
//! - [`claims`]: task claims and strong names on the register (sans-IO).
//! - [`config`]: agent configuration and validation.
//! - [`runtime`]: the tokio shell (transport, timers, events).
//! - [`admin`]: the admin HTTP API (`/v1/members`, `/metrics`, `/livez`, `/readyz`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod claims;
pub mod codec;
pub mod config;
pub mod dissemination;
pub mod hlc;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pid;
pub mod process;
pub mod quorum;
pub mod registry;
pub mod runtime;
