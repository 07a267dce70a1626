//! mesh-core: the mesh node.
//!
//! - [`identity`]: who a node is (`{name, addr, incarnation}`).
//! - [`pid`]: process identifiers `{node, incarnation, local_id}`.
//! - [`hlc`]: a hybrid logical clock (orders eventual name claims).
//! - [`codec`]: the SWIM wire codec.
//! - [`membership`]: SWIM membership as a sans-IO state machine around foca.
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
pub mod hlc;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod pid;
pub mod quorum;
pub mod runtime;
