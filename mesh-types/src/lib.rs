//! mesh-types: the few pure pieces that both the sans-IO core (`mesh-core`) and the QUIC
//! transport (`mesh-transport`) need, so that the core does not depend on the transport.
//!
//! - [`frame`]: the length-prefixed stream frame format and its traffic [`Class`](frame::Class)es.
//! - [`PeerRef`]: how to reach a peer (its certificate name when known, its address).
//! - [`node_name`]: the node-name rules (a name is also a certificate DNS name).
//! - [`tags`]: node tags and tag selectors (`region=eu,role!=edge`).
//!
//! No IO, no async runtime, no TLS: only `bytes` and `thiserror`. `mesh-transport`
//! re-exports everything here under its old paths (`mesh_transport::frame`,
//! `mesh_transport::PeerRef`, `mesh_transport::certs::MAX_NODE_NAME_LEN`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod frame;
pub mod node_name;
mod peer;
pub mod tags;

pub use peer::PeerRef;
