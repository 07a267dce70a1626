//! mesh-agent: the one shell around the sans-IO core, and what applications embed.
//!
//! `mesh-core` decides; this crate does the IO. It feeds `mesh_core::node::Node` from
//! the QUIC transport (`mesh-transport`) and a timer heap on tokio, carries out the
//! outputs, keeps the durable state and publishes what happens:
//!
//! - [`runtime`]: the tokio shell and the embedding API — [`runtime::Agent::start`]
//!   runs a node, [`runtime::AgentHandle`] spawns processes, joins groups, registers
//!   names, sends, claims tasks and holds strong names.
//! - [`config`]: [`config::AgentConfig`] and its validation (every error names the key).
//! - [`redb_store`]: the production acceptor store (one redb file, fsynced commits)
//!   behind mesh-core's [`AcceptorStore`](mesh_core::quorum::AcceptorStore) trait.
//! - [`metrics`]: the Prometheus metrics (registered at zero at start).
//! - [`admin`]: the admin HTTP API (`/v1/members`, `/metrics`, `/livez`, `/readyz`, groups,
//!   names, send/listen, claims, strong names); its request and answer bodies are what
//!   `meshctl`'s client commands speak.
//!
//! An application embeds an agent by building an [`config::AgentConfig`], calling
//! [`runtime::Agent::start`] on a tokio runtime and using the [`runtime::AgentHandle`]
//! it returns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod metrics;
pub mod redb_store;
pub mod runtime;
