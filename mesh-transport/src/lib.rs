//! QUIC transport for mesh: one UDP endpoint per node that both accepts and dials,
//! mutual TLS against the cluster CA, SWIM datagrams and framed streams.
//!
//! - [`certs`] makes the CA and node certificates; [`tls`] loads a node's identity.
//! - [`Transport::bind`] opens the endpoint and returns an [`Inbound`] receiver.
//! - [`Transport::send_datagram`] sends unreliable datagrams (what SWIM wants);
//!   [`Transport::send_frame`] sends length-prefixed [`frame`]s on one long-lived uni
//!   stream per (peer, [`Class`](frame::Class)), so frames of a class keep their order.
//! - Every queue is bounded and every drop is counted with a reason ([`stats`]).
//!
//! Peers are identified by the DNS name in their certificate, never by what they say.
//! There is one connection per peer pair; when both sides dial at once, both keep the
//! connection dialed by the lexicographically smaller name (see [`Transport`]).
//!
//! ```no_run
//! # async fn demo(ca: &str, cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_transport::{tls::TlsIdentity, PeerRef, Transport, TransportConfig};
//!
//! let tls = TlsIdentity::from_pem(ca, cert, key)?;
//! let (transport, mut inbound) =
//!     Transport::bind(TransportConfig::new("0.0.0.0:7946".parse()?, tls)).await?;
//! let seed = PeerRef { name: None, addr: "10.0.0.2:7946".parse()? };
//! transport.send_datagram(&seed, bytes::Bytes::from_static(b"ping"));
//! while let Some(item) = inbound.recv().await {
//!     println!("{item:?}");
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod certs;
pub mod frame;
pub mod stats;
pub mod tls;
mod transport;

pub use stats::{register_metrics, TransportStats};
pub use transport::{
    ConnectionInfo, Inbound, PeerRef, SendError, Transport, TransportConfig, TransportError,
    DATAGRAM_VERSION,
};
