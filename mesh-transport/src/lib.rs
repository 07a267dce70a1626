//! QUIC transport for mesh: one UDP endpoint per node that both accepts and dials,
//! mutual TLS against the cluster CA, SWIM datagrams, framed streams and requests.
//!
//! - [`certs`] makes the CA and node certificates; [`tls`] loads a node's identity.
//! - [`Transport::bind`] opens the endpoint and returns an [`Inbound`] receiver.
//! - [`Transport::send_datagram`] sends unreliable datagrams (what SWIM wants);
//!   [`Transport::send_frame`] sends length-prefixed [`frame`]s on one long-lived uni
//!   stream per (peer, [`Class`](frame::Class)), so frames of a class keep their order.
//! - [`Transport::request`] sends one request on a fresh bi stream and waits for its
//!   response on that stream (a push-pull exchange such as an anti-entropy round).
//!   The peer gets an [`Inbound::Request`] with a [`Responder`]; responding writes the
//!   answer, dropping the responder refuses the request at once. Requests and
//!   responses are single frames with their own size limits (`max_request_bytes`,
//!   `max_response_bytes`, 16 MiB by default), refused before buffering when a peer
//!   announces more; each peer may have `max_inbound_requests_per_peer` (32) in
//!   flight here, and more are refused. Requests are never retried: each ends once,
//!   with its response or a [`RequestError`] by its deadline.
//! - Every queue is bounded and every drop is counted with a reason ([`stats`]).
//!
//! Peers are identified by the DNS name in their certificate, never by what they say.
//! There is one connection per peer pair; when both sides dial at once, both keep the
//! connection dialed by the lexicographically smaller name (see [`Transport`]).
//!
//! ```no_run
//! # async fn demo(ca: &str, cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_transport::{tls::TlsIdentity, Inbound, PeerRef, Transport, TransportConfig};
//!
//! let tls = TlsIdentity::from_pem(ca, cert, key)?;
//! let (transport, mut inbound) =
//!     Transport::bind(TransportConfig::new("0.0.0.0:7946".parse()?, tls)).await?;
//! let seed = PeerRef { name: None, addr: "10.0.0.2:7946".parse()? };
//! transport.send_datagram(&seed, bytes::Bytes::from_static(b"ping"));
//! while let Some(item) = inbound.recv().await {
//!     match item {
//!         // An echo server: answer every request with its own payload.
//!         Inbound::Request { payload, responder, .. } => {
//!             let _ = responder.respond(payload);
//!         }
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod certs;
pub use mesh_types::frame;
pub mod stats;
pub mod tls;
mod transport;

pub use stats::{register_metrics, TransportStats};
pub use transport::{
    ConnectionInfo, Inbound, Part, PeerRef, Refusal, RequestError, RespondError, Responder,
    SendError, Transport, TransportConfig, TransportError, DATAGRAM_VERSION,
    DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER, DEFAULT_MAX_RESPONSE, REQUEST_DRAIN_MAX,
};
