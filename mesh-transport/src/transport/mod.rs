//! The QUIC transport: one endpoint, one connection per peer, datagrams, framed
//! streams and requests. See the crate documentation for the model.

mod inner;
mod request;
mod state;
mod udp;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::frame::{self, Class};
use crate::stats::TransportStats;
use crate::tls::{TlsError, TlsIdentity};

use inner::Inner;

pub use request::{
    Part, Refusal, RequestError, RespondError, Responder, DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER,
    DEFAULT_MAX_RESPONSE, REQUEST_DRAIN_MAX,
};

/// The version byte that starts every datagram on the wire: `[1][payload]`.
pub const DATAGRAM_VERSION: u8 = 1;

/// Largest `max_inbound_requests_per_peer` accepted.
const MAX_REQUESTS_PER_PEER: usize = 1 << 16;

/// Deadline horizon for a timeout too large to add to the current instant.
const FOREVER: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// Transport settings. [`TransportConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The UDP address to listen on and dial from (port 0 picks a free port).
    pub bind: SocketAddr,
    /// This node's CA, certificate and key.
    pub tls: TlsIdentity,
    /// Largest frame body accepted or sent (version + class + payload). Default
    /// [`frame::DEFAULT_MAX_FRAME`].
    pub max_frame_bytes: usize,
    /// Largest request body accepted or sent (version + class + payload). Default
    /// [`frame::DEFAULT_MAX_FRAME`], the same as `max_frame_bytes`.
    pub max_request_bytes: usize,
    /// Largest response body accepted or sent (version + class + payload). Default
    /// [`DEFAULT_MAX_RESPONSE`] (16 MiB).
    pub max_response_bytes: usize,
    /// Requests one peer may have in flight here (being read, waiting in [`Inbound`],
    /// or being answered); more are refused with [`Refusal::Busy`]. Default
    /// [`DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER`] (32).
    pub max_inbound_requests_per_peer: usize,
    /// Capacity of the [`Inbound`] channel; when full, new items are dropped and
    /// counted (`inbound_full`). Default 4096.
    pub inbound_capacity: usize,
    /// Capacity of each (peer, class) send queue; when full, [`Transport::send_frame`]
    /// returns [`SendError::QueueFull`]. Default 1024.
    pub outbound_frames_per_class: usize,
    /// Datagrams held for a peer while dialing it; the oldest is dropped when full
    /// (`pending_full`). Default 64.
    pub pending_datagrams_per_peer: usize,
    /// A connection with no traffic for this long is closed. Default 10 s.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below `idle_timeout`. Default 2 s.
    pub keep_alive: Duration,
    /// A handshake that has not finished after this long fails as `timeout`.
    /// Default 5 s.
    pub handshake_timeout: Duration,
}

impl TransportConfig {
    /// Defaults for everything but the address and identity.
    pub fn new(bind: SocketAddr, tls: TlsIdentity) -> Self {
        Self {
            bind,
            tls,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME,
            max_request_bytes: frame::DEFAULT_MAX_FRAME,
            max_response_bytes: DEFAULT_MAX_RESPONSE,
            max_inbound_requests_per_peer: DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER,
            inbound_capacity: 4096,
            outbound_frames_per_class: 1024,
            pending_datagrams_per_peer: 64,
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
        }
    }

    fn validate(&self) -> Result<(), TransportError> {
        let invalid = |field, reason: &str| {
            Err(TransportError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        for (field, value) in [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
        ] {
            if value < 2 || u32::try_from(value).is_err() {
                return invalid(field, "must be between 2 and 4294967295");
            }
        }
        if !(1..=MAX_REQUESTS_PER_PEER).contains(&self.max_inbound_requests_per_peer) {
            return invalid(
                "max_inbound_requests_per_peer",
                "must be between 1 and 65536",
            );
        }
        for (field, value) in [
            ("inbound_capacity", self.inbound_capacity),
            ("outbound_frames_per_class", self.outbound_frames_per_class),
            (
                "pending_datagrams_per_peer",
                self.pending_datagrams_per_peer,
            ),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1");
            }
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return invalid("keep_alive", "must be above zero and below idle_timeout");
        }
        if self.handshake_timeout.is_zero() {
            return invalid("handshake_timeout", "must be above zero");
        }
        Ok(())
    }
}

/// How to reach a peer (defined in `mesh-types`, which the sans-IO core shares).
pub use mesh_types::PeerRef;

/// What the transport delivers, in arrival order per connection and stream.
///
/// Not `Clone`: a [`Request`](Self::Request) carries the one [`Responder`] that can
/// answer it. Match on items rather than compare them.
#[derive(Debug)]
pub enum Inbound {
    /// A datagram (version byte removed).
    Datagram {
        /// The certificate name of the connection it came on.
        from: String,
        /// The payload.
        data: Bytes,
    },
    /// A frame from a stream; frames of one class from one peer arrive in the order
    /// they were sent (while the connection lasts).
    Frame {
        /// The certificate name of the connection it came on.
        from: String,
        /// Its traffic class.
        class: Class,
        /// The payload.
        payload: Bytes,
    },
    /// A request from a peer (see [`Transport::request`]). Answer it with
    /// [`Responder::respond`]; dropping the responder refuses it. While it is
    /// unanswered it counts against the peer's `max_inbound_requests_per_peer`.
    Request {
        /// The certificate name of the connection it came on.
        from: String,
        /// Its traffic class (the response is sent with the same).
        class: Class,
        /// The request payload.
        payload: Bytes,
        /// Answers this request, once.
        responder: Responder,
    },
    /// A peer went from no connection to one (not repeated when a duplicate connection
    /// replaces the one in use).
    Connected {
        /// The peer's certificate name.
        name: String,
        /// The peer's address as seen on the connection.
        addr: SocketAddr,
    },
    /// A peer's connection closed and no other replaced it (including after
    /// [`Transport::disconnect`]).
    Disconnected {
        /// The peer's certificate name.
        name: String,
    },
}

/// Why [`Transport::bind`] failed. Nothing is left bound.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Another socket already holds the address. Pick another port or stop the other
    /// process.
    #[error("address {addr} is already in use")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Binding the UDP socket failed for another reason (permission, no such local
    /// address, ...).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The TLS identity could not be turned into a configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A configuration value is out of range.
    #[error("invalid transport setting {field}: {reason}")]
    InvalidConfig {
        /// The [`TransportConfig`] field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `bind` was called outside a tokio runtime.
    #[error("the transport needs a tokio runtime")]
    NoRuntime,
}

/// Why [`Transport::send_frame`] refused a frame. The frame was not queued and is
/// counted as dropped; nothing else changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The (peer, class) queue is full: the peer is slow or unreachable. Retry later or
    /// shed load.
    #[error("send queue for class {class} is full")]
    QueueFull {
        /// The class whose queue is full.
        class: Class,
    },
    /// The frame body is over the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body length (payload + 2).
        len: usize,
        /// [`TransportConfig::max_frame_bytes`].
        max: usize,
    },
    /// The transport has been shut down.
    #[error("transport is shut down")]
    Shutdown,
}

/// The connection in use for a peer, as seen from this side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer's address on this connection.
    pub addr: SocketAddr,
    /// The name of the node that dialed the connection (this node or the peer).
    pub dialer: String,
    /// How long ago this side started using it.
    pub age: Duration,
}

/// A handle to the transport: cheap to clone, `Send + Sync`. The endpoint closes when
/// [`Transport::shutdown`] is called or the last handle is dropped.
///
/// # Connections
///
/// One QUIC endpoint (one UDP port) accepts and dials. Connections are keyed by the
/// peer's certificate name, dialed lazily by the first send that needs one, and kept
/// until they idle out, fail, or [`disconnect`](Self::disconnect) closes them.
///
/// There is one connection per peer pair. When a second connection to the same peer
/// is established (typically both sides dialed at once), the new one replaces the one
/// in use if the old one is closed, or at least 5 s old (the peer restarted or lost
/// it), or was dialed by a node whose name sorts after the new one's dialer, or both
/// were dialed by the same node. Otherwise the old one stays. Both sides apply the
/// same rule to the same two connections, so after a simultaneous dial both keep the
/// one dialed by the lexicographically smaller name. The other is still read and is
/// closed after a one-second grace.
///
/// # Delivery
///
/// Datagrams are unreliable. Frames of one (peer, class) go in order on one stream
/// while the connection lasts; a frame written just before a connection breaks may be
/// lost (at most once, never duplicated). A [`request`](Self::request) gets its
/// response or an error by its deadline and is never retried; requests are not
/// ordered with each other or with frames. Everything dropped is counted in
/// [`stats`](Self::stats) and the metrics.
///
/// A connection that loses to a duplicate stays open, after the grace, until the
/// requests on it finish (at most [`REQUEST_DRAIN_MAX`]), so requests survive a
/// connection replacement; a connection that closes for any other reason fails its
/// requests with [`RequestError::ConnectionLost`].
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    _guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("name", &self.inner.local_name)
            .field("addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

/// Closes the endpoint when the last [`Transport`] handle goes, so that the background
/// tasks (which hold the inner state, not a handle) stop.
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Transport {
    /// Binds the UDP port and starts accepting. Returns the handle and the receiver of
    /// everything peers send.
    pub async fn bind(
        cfg: TransportConfig,
    ) -> Result<(Self, mpsc::Receiver<Inbound>), TransportError> {
        cfg.validate()?;
        let (inner, rx) = Inner::bind(cfg)?;
        let guard = Arc::new(CloseOnDrop(inner.clone()));
        Ok((
            Self {
                inner,
                _guard: guard,
            },
            rx,
        ))
    }

    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This node's name, from its certificate.
    pub fn local_name(&self) -> &str {
        &self.inner.local_name
    }

    /// Sends a datagram (`[DATAGRAM_VERSION][data]`). Never waits.
    ///
    /// With a connection, the datagram goes out now; one larger than the connection's
    /// maximum is dropped (`too_large`). Without one, it is held (up to
    /// `pending_datagrams_per_peer`, dropping the oldest) and a dial starts in the
    /// background, unless one is already running or the address is backing off after
    /// failures (then it is dropped, `backoff`). QUIC itself may still drop datagrams
    /// under congestion.
    pub fn send_datagram(&self, to: &PeerRef, data: Bytes) {
        self.inner.send_datagram(to, data);
    }

    /// Queues a frame on the (peer, class) stream. Never waits.
    ///
    /// A writer task per (peer, class) owns one long-lived uni stream on the current
    /// connection and writes frames in order, dialing when needed. Frames to a name-less
    /// [`PeerRef`] with no connection yet queue under the address until a connection
    /// names the peer.
    pub fn send_frame(&self, to: &PeerRef, class: Class, payload: Bytes) -> Result<(), SendError> {
        self.inner.send_frame(to, class, payload)
    }

    /// Sends one request to `to` on a fresh bi stream and waits for its response.
    ///
    /// Dials if needed (never blocks the caller's loop: it is a future the caller
    /// spawns; it holds no [`Transport`] handle, so it ends with
    /// [`RequestError::Shutdown`] when the transport goes). A name-less [`PeerRef`]
    /// works as for datagrams: a connection to `addr` is used or made, and whoever
    /// answers there with a valid certificate is asked. As for datagrams, an address
    /// that backs off after failed dials fails at once
    /// ([`RequestError::Unreachable`]).
    ///
    /// `timeout` counts from this call and covers dialing, sending and the response;
    /// when it passes, or when the future is dropped, the stream is reset so the peer
    /// lets go. The request body (`payload` + 2) may be up to `max_request_bytes`,
    /// the response up to `max_response_bytes`; the peer's own limits apply on its
    /// side. A peer refuses rather than queues what it cannot take
    /// ([`RequestError::Refused`] with a [`Refusal`]). Every request is counted once
    /// in `mesh_transport_requests_total{class,result}`.
    pub fn request(
        &self,
        to: &PeerRef,
        class: Class,
        payload: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = Result<Bytes, RequestError>> + Send + 'static {
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now + FOREVER);
        self.inner
            .clone()
            .request(to.clone(), class, payload, deadline)
    }

    /// The largest datagram payload that can be sent to `name` now (the connection's
    /// maximum minus the version byte); `None` without a connection.
    pub fn max_datagram_size(&self, name: &str) -> Option<usize> {
        let st = self.inner.lock();
        let peer = st.peers.get(name).filter(|p| p.is_open())?;
        peer.conn.max_datagram_size()?.checked_sub(1)
    }

    /// Closes the connection to `name` and discards its queued frames (counted
    /// `disconnected`). Membership calls it when a peer is declared down; a later send
    /// dials again.
    pub fn disconnect(&self, name: &str) {
        self.inner.disconnect(name);
    }

    /// Names of the peers with an open connection, sorted.
    pub fn connected_peers(&self) -> Vec<String> {
        let st = self.inner.lock();
        let mut names: Vec<_> = st
            .peers
            .iter()
            .filter(|(_, p)| p.is_open())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The connection in use for `name`, if any.
    pub fn connection_info(&self, name: &str) -> Option<ConnectionInfo> {
        let st = self.inner.lock();
        let peer = st.peers.get(name).filter(|p| p.is_open())?;
        Some(ConnectionInfo {
            addr: peer.conn.remote_address(),
            dialer: peer.dialer.clone(),
            age: peer.since.elapsed(),
        })
    }

    /// QUIC connections the endpoint holds, including duplicates not yet closed and
    /// connections still draining.
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// A snapshot of this transport's counters.
    pub fn stats(&self) -> TransportStats {
        use std::sync::atomic::Ordering;
        let mut stats = self.inner.counters.snapshot();
        stats.udp_received = self.inner.udp.received.load(Ordering::Relaxed);
        stats.udp_not_quic = self.inner.udp.not_quic.load(Ordering::Relaxed);
        stats
    }

    /// Datagrams the kernel dropped at this transport's UDP socket because its receive
    /// buffer was full (Linux: `/proc/self/net/udp`; `None` elsewhere), published as
    /// `mesh_transport_udp_dropped_total{reason="kernel_receive_buffer"}` by each call.
    /// The host calls it periodically (the agent: with its other metrics).
    pub fn kernel_udp_drops(&self) -> Option<u64> {
        let drops = udp::kernel_drops(self.inner.local_addr)?;
        metrics::counter!(crate::stats::UDP_DROPPED, "reason" => "kernel_receive_buffer")
            .absolute(drops);
        Some(drops)
    }

    /// Closes every connection and the endpoint, then waits (at most one second) for
    /// peers to be told. Later sends are dropped (`shutdown`).
    pub async fn shutdown(&self) {
        self.inner.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests;
