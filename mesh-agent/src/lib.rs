//! mesh-agent: the one shell around the sans-IO core, and what applications embed.
//!
//! `mesh-core` decides; this crate does the IO. It feeds [`Node`](mesh_core::node::Node) from
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
//!   names, send/listen, claims, strong names); its request and answer bodies are
//!   `mesh-api`'s types (re-exported in [`admin`]), which `meshctl`'s client commands
//!   speak without depending on this crate.
//!
//! An application embeds an agent by building an [`config::AgentConfig`], calling
//! [`runtime::Agent::start`] on a tokio runtime and using the [`runtime::AgentHandle`]
//! it returns:
//!
//! ```no_run
//! use mesh_agent::config::AgentConfig;
//! use mesh_agent::runtime::Agent;
//! use mesh_core::process::Delivery;
//!
//! # async fn worker() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = AgentConfig::new("n1", "ca.pem".into(), "n1.pem".into(), "n1.key".into());
//! config.seeds = vec!["10.0.0.2:7946".parse()?];
//! let agent = Agent::start(config).await?;
//! // A process: a mailbox with a PID. It joins a group and answers what arrives.
//! let worker = agent.spawn(None).await?;
//! agent.join("default", &["workers".to_owned()], worker.pid(), None).await?;
//! while let Some(delivery) = worker.recv().await {
//!     if let Delivery::Message { payload, .. } = delivery {
//!         println!("got {} bytes", payload.len());
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod metrics;
pub mod redb_store;
pub mod runtime;
mod views;
