//! mesh-agent: the one shell around the sans-IO core, and what applications embed.
//!
//! `mesh-core` decides; this crate does the IO. It feeds [`Node`](mesh_core::node::Node) from
//! the QUIC transport (`mesh-transport`) and a timer heap on tokio, carries out the
//! outputs, keeps the durable state and publishes what happens:
//!
//! - [`runtime`]: the tokio shell and the embedding API — [`runtime::Agent::builder`]
//!   (TLS from files or memory, the admin API optional) and [`runtime::Agent::start`]
//!   run a node, [`runtime::AgentHandle`] spawns processes, joins groups, registers
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
//! # Tutorial: starting an agent
//!
//! An application embeds a node in four steps; the example below runs all of them
//! (it is a doctest) on one node that sends a message to itself.
//!
//! 1. **An identity.** Every node has a certificate issued by the cluster CA, whose DNS
//!    name is the node's name. In production the PEM comes from files or a secret
//!    store; here [`mesh_transport::certs`] makes a CA and a certificate in memory.
//!    [`runtime::Tls`] says where the PEM comes from: [`Tls::Files`](runtime::Tls::Files),
//!    [`Tls::Pem`](runtime::Tls::Pem) (bytes in memory) or an already loaded
//!    [`TlsIdentity`](mesh_transport::tls::TlsIdentity).
//! 2. **A builder.** [`runtime::Agent::builder`] takes the name and the TLS source;
//!    its methods set the QUIC address, the seeds to join through, the voters and data
//!    directory of the quorum plane (for claims and strong names), and the admin API:
//!    [`no_admin`](runtime::AgentBuilder::no_admin) opens no TCP listener at all.
//!    (`meshctl agent` builds an [`config::AgentConfig`] instead and calls
//!    [`runtime::Agent::start`], which is
//!    [`AgentBuilder::from_config`](runtime::AgentBuilder::from_config)`(config).start()`.)
//! 3. **Start.** [`start`](runtime::AgentBuilder::start) checks the settings (every
//!    error names the key), loads TLS and binds, on a tokio runtime; a
//!    [`StartError`](runtime::StartError) leaves nothing running. It returns an
//!    [`runtime::AgentHandle`], cheap to clone.
//! 4. **Use it.** A process ([`AgentHandle::spawn`](runtime::AgentHandle::spawn)) is a
//!    mailbox with a PID; it joins groups, registers names and receives what is sent
//!    to it. [`leave`](runtime::AgentHandle::leave) says goodbye to the cluster.
//!
//! ```
//! use std::time::Duration;
//!
//! use mesh_agent::runtime::{Agent, Tls};
//! use mesh_core::node::{Dest, GroupMode};
//! use mesh_core::process::Delivery;
//! use mesh_transport::certs::{generate_ca, issue_node_cert};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. An identity, in memory.
//! let ca = generate_ca("tutorial")?;
//! let node = issue_node_cert(&ca, "n1")?;
//! let tls = Tls::Pem {
//!     ca: ca.cert_pem.into_bytes(),
//!     cert: node.cert_pem.into_bytes(),
//!     key: node.key_pem.into_bytes(),
//! };
//! // A UDP port for QUIC (a real deployment configures one).
//! let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
//!
//! tokio::runtime::Runtime::new()?.block_on(async move {
//!     // 2. and 3. A builder: one node, no seeds, no admin HTTP API. Start it.
//!     let agent = Agent::builder("n1", tls)
//!         .bind(([127, 0, 0, 1], port).into())
//!         .no_admin()
//!         .start()
//!         .await?;
//!     assert_eq!(agent.admin_api(), None); // nothing listens on TCP
//!
//!     // 4. A process joins the group `workers` in scope `default`...
//!     let worker = agent.spawn(None).await?;
//!     agent.join("default", &["workers".to_owned()], worker.pid(), None).await?;
//!     assert_eq!(agent.members_of("default", "workers").await?, vec![worker.pid().clone()]);
//!
//!     // ...and a message sent to the group reaches its mailbox.
//!     let to = Dest::Group { scope: "default".into(), group: "workers".into(), mode: GroupMode::All };
//!     let receipt = agent.send(None, to, "hello".into()).await?;
//!     assert_eq!(receipt.delivered_local, 1);
//!     match tokio::time::timeout(Duration::from_secs(5), worker.recv()).await? {
//!         Some(Delivery::Message { payload, .. }) => assert_eq!(&payload[..], b"hello"),
//!         other => panic!("expected the message, got {other:?}"),
//!     }
//!
//!     agent.leave(Duration::from_secs(1)).await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Runnable programs are in `mesh-agent/examples/`: a worker that answers messages, a
//! leader-elected singleton fenced by its claim's token, and a strong-name service
//! with its clients; `tests/examples.rs` runs each as real processes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod metrics;
pub mod redb_store;
pub mod runtime;
mod views;
