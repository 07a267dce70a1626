//! The transport's shared state and its background tasks:
//!
//! - one accept loop, and one handshake task per incoming connection;
//! - one dial task per address being dialed;
//! - per connection, a driver that reads datagrams and accepts uni and bi streams, a
//!   frame reader per accepted uni stream and a server task per accepted request
//!   (`request.rs`);
//! - per (peer, class), a writer that owns the outgoing stream.
//!
//! The lock (`Inner::state`) is a plain mutex, never held across an await; every task
//! waiting for a connection waits on `Inner::changed`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use quinn::{ConnectionError, SendDatagramError, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};

use super::state::{DialFailure, DialState, Peer, State, Target, Writer};
use super::{Inbound, PeerRef, SendError, TransportConfig, TransportError, DATAGRAM_VERSION};
use crate::frame::{encode_frame, Class, FrameDecoder, FrameError};
use crate::stats::{Counters, DatagramDrop, Direction, FrameDrop, HandshakeFailure, RateLimit};
use crate::tls::{cert_name, DIAL_SERVER_NAME};

/// How long a duplicate connection stays open (and read) after losing to another.
const DUPLICATE_GRACE: Duration = Duration::from_secs(1);
/// Bad frames on one connection before it is closed for abuse.
const ABUSE_LIMIT: u32 = 100;
/// Largest chunk read from a stream at once.
pub(super) const READ_CHUNK: usize = 64 * 1024;
/// Longest a writer waits before looking at its peer again without a notification.
const RECHECK: Duration = Duration::from_secs(1);
/// At most one warning per reason per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams buffered for the application per connection.
const DATAGRAM_BUFFER: usize = 1 << 20;
/// Concurrent incoming uni streams per connection (three classes, plus streams being
/// replaced).
const MAX_UNI_STREAMS: u32 = 32;

/// Application close codes.
mod code {
    use quinn::VarInt;
    pub(super) const SHUTDOWN: VarInt = VarInt::from_u32(0);
    pub(super) const DUPLICATE: VarInt = VarInt::from_u32(1);
    pub(super) const DISCONNECT: VarInt = VarInt::from_u32(2);
    pub(super) const AUTH: VarInt = VarInt::from_u32(3);
    pub(super) const ABUSE: VarInt = VarInt::from_u32(4);
    pub(super) const SELF_CONNECTION: VarInt = VarInt::from_u32(5);
    /// Stream stop code for an oversized frame.
    pub(super) const OVERSIZED: VarInt = VarInt::from_u32(6);
    /// The name is bound to a live connection from another address.
    pub(super) const NAME_CONFLICT: VarInt = VarInt::from_u32(7);
}

/// Limits copied out of the config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    max_frame: usize,
    pub(super) max_request: usize,
    pub(super) max_response: usize,
    pub(super) requests_per_peer: usize,
    outbound_per_class: usize,
    pending_datagrams: usize,
    handshake_timeout: Duration,
}

/// Why a handshake did not give a usable connection.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// Counted as a handshake failure of this kind.
    Handshake(HandshakeFailure),
    /// We reached ourselves (our own address among the seeds): not an error, but
    /// not worth redialing soon.
    Myself,
    /// The endpoint is shutting down.
    Stopping,
}

/// What a task that needs a connection does when the address backs off after failed
/// dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnBackoff {
    /// Keep waiting (a writer: its frames wait for the peer).
    Wait,
    /// Fail at once (a request: like a datagram, it is not held through a backoff).
    Fail,
}

/// Why [`Inner::connection_for`] gave no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoConnection {
    /// The transport closed.
    Closed,
    /// The target went away (a writer's queue was discarded).
    Gone,
    /// The address backs off after a dial that failed (with [`OnBackoff::Fail`]).
    Unreachable { addr: SocketAddr, why: DialFailure },
}

/// Shared by the handle and every task.
pub(crate) struct Inner {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) local_name: String,
    pub(crate) local_addr: SocketAddr,
    pub(crate) counters: Counters,
    /// What the endpoint's UDP socket received (see `udp.rs`).
    pub(super) udp: Arc<super::udp::UdpCounts>,
    pub(super) limits: Limits,
    pub(super) inbound: mpsc::Sender<Inbound>,
    state: Mutex<State>,
    /// Notified whenever a connection is registered or removed, a dial ends, or the
    /// transport closes.
    changed: Notify,
    /// Notified whenever the last request stream open on a connection ends.
    pub(super) drained: Notify,
    warnings: RateLimit,
    pub(super) runtime: tokio::runtime::Handle,
    closed: AtomicBool,
}

impl Inner {
    pub(super) fn bind(
        cfg: TransportConfig,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Inbound>), TransportError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;

        let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout).map_err(|_| {
            TransportError::InvalidConfig {
                field: "idle_timeout",
                reason: "too large".to_owned(),
            }
        })?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(cfg.keep_alive))
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
            .datagram_send_buffer_size(DATAGRAM_BUFFER)
            .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
            // Twice the per-peer request limit: requests over the limit still reach us
            // and are refused (and counted) instead of waiting unseen for stream credit,
            // while a peer cannot hold an unbounded number of streams open.
            .max_concurrent_bidi_streams(
                VarInt::from_u64(cfg.max_inbound_requests_per_peer as u64 * 2)
                    .unwrap_or(VarInt::MAX),
            );
        let transport = Arc::new(transport);

        let server_crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(cfg.tls.server_config()?)
                .map_err(|e| crate::tls::TlsError::Config(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let client_crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(cfg.tls.client_config()?)
                .map_err(|e| crate::tls::TlsError::Config(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);

        let addr = cfg.bind;
        let udp = Arc::new(super::udp::UdpCounts::default());
        let mut endpoint = bind_counted(server, addr, udp.clone()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                TransportError::AddrInUse { addr }
            } else {
                TransportError::Bind { addr, source }
            }
        })?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;

        let (tx, rx) = mpsc::channel(cfg.inbound_capacity);
        let inner = Arc::new(Self {
            endpoint,
            local_name: cfg.tls.name().to_owned(),
            local_addr,
            counters: Counters::default(),
            udp,
            limits: Limits {
                max_frame: cfg.max_frame_bytes,
                max_request: cfg.max_request_bytes,
                max_response: cfg.max_response_bytes,
                requests_per_peer: cfg.max_inbound_requests_per_peer,
                outbound_per_class: cfg.outbound_frames_per_class,
                pending_datagrams: cfg.pending_datagrams_per_peer,
                handshake_timeout: cfg.handshake_timeout,
            },
            inbound: tx,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            drained: Notify::new(),
            warnings: RateLimit::new(WARN_INTERVAL),
            runtime,
            closed: AtomicBool::new(false),
        });
        inner.runtime.spawn(inner.clone().accept_loop());
        tracing::info!(name = %inner.local_name, addr = %local_addr, "transport bound");
        Ok((inner, rx))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops everything: no new dials or sends, all connections and the endpoint
    /// closed, writers told to drain.
    pub(super) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.endpoint.close(code::SHUTDOWN, b"shutdown");
        // Dropping the queues' senders wakes idle writers (which hold this state and
        // would otherwise wait forever); busy ones drain and count what they hold.
        self.lock().writers.clear();
        self.changed.notify_waiters();
    }

    /// Logs a warning unless one for `key` was logged within the last second.
    pub(super) fn warn_limited(&self, key: &'static str, message: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.warnings.allow(key, Instant::now()) {
            tracing::warn!(reason = key, suppressed, "{message}");
        }
    }

    // ---- sending -------------------------------------------------------------------

    pub(super) fn send_datagram(self: &Arc<Self>, to: &PeerRef, data: Bytes) {
        if self.is_closed() {
            self.counters.datagram_dropped(DatagramDrop::Shutdown, 1);
            return;
        }
        let mut wire = BytesMut::with_capacity(1 + data.len());
        wire.put_u8(DATAGRAM_VERSION);
        wire.put_slice(&data);
        let wire = wire.freeze();

        let conn = {
            let mut st = self.lock();
            match st.lookup(to) {
                Some(peer) => peer.conn.clone(),
                None => {
                    self.hold_for_dial(&mut st, to, wire);
                    return;
                }
            }
        };
        self.send_on(&conn, wire);
    }

    /// Holds a datagram until the dial to `to` finishes, starting one if needed.
    fn hold_for_dial(self: &Arc<Self>, st: &mut State, to: &PeerRef, wire: Bytes) {
        if let DialState::Backoff { .. } = self.start_dial(st, to) {
            self.counters.datagram_dropped(DatagramDrop::Backoff, 1);
            return;
        }
        let queue = st.dials.entry(to.addr).or_default();
        while queue.len() >= self.limits.pending_datagrams {
            queue.pop_front();
            self.counters.datagram_dropped(DatagramDrop::PendingFull, 1);
        }
        queue.push_back(wire);
    }

    fn send_on(&self, conn: &quinn::Connection, wire: Bytes) {
        let len = wire.len();
        match conn.send_datagram(wire) {
            Ok(()) => self.counters.datagram(Direction::Out, len),
            Err(SendDatagramError::TooLarge) => {
                self.counters.datagram_dropped(DatagramDrop::TooLarge, 1);
                self.warn_limited(
                    "datagram_too_large",
                    format_args!(
                        "dropping a {len}-byte datagram: the connection to {} allows {:?}; \
                         lower packet_size (--packet-size) to fit the path MTU",
                        conn.remote_address(),
                        conn.max_datagram_size()
                    ),
                );
            }
            Err(_) => self.counters.datagram_dropped(DatagramDrop::SendFailed, 1),
        }
    }

    pub(super) fn send_frame(
        self: &Arc<Self>,
        to: &PeerRef,
        class: Class,
        payload: Bytes,
    ) -> Result<(), SendError> {
        if self.is_closed() {
            self.counters
                .frame_dropped(Some(class), FrameDrop::Shutdown, 1);
            return Err(SendError::Shutdown);
        }
        let max = self.limits.max_frame;
        let frame = encode_frame(class, &payload, max).map_err(|e| {
            self.counters
                .frame_dropped(Some(class), FrameDrop::TooLarge, 1);
            match e {
                FrameError::Oversized { len, max } => SendError::TooLarge { len, max },
                // encode_frame fails only for size; keep the numbers honest anyway.
                _ => SendError::TooLarge {
                    len: payload.len().saturating_add(2),
                    max,
                },
            }
        })?;

        let mut st = self.lock();
        let key = (st.target(to), class);
        let existing = st.writers.get_mut(&key).map(|writer| {
            if to.name.is_some() {
                // The latest address given for a name is where to dial it.
                writer.addr = to.addr;
            }
            writer.tx.clone()
        });
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let (tx, rx) = mpsc::channel(self.limits.outbound_per_class);
                let id = st.next_writer_id;
                st.next_writer_id += 1;
                let writer = Writer {
                    id,
                    tx: tx.clone(),
                    addr: to.addr,
                };
                st.writers.insert(key.clone(), writer);
                self.runtime.spawn(self.clone().write_frames(key, id, rx));
                tx
            }
        };
        drop(st);
        match tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counters
                    .frame_dropped(Some(class), FrameDrop::QueueFull, 1);
                Err(SendError::QueueFull { class })
            }
            Err(TrySendError::Closed(_)) => {
                self.counters
                    .frame_dropped(Some(class), FrameDrop::Shutdown, 1);
                Err(SendError::Shutdown)
            }
        }
    }

    /// Owns the (peer, class) stream: takes frames in order and writes them on the
    /// stream of the connection in use, opening a new stream when that connection
    /// changes. Ends, counting what it still holds, when its queue is discarded
    /// (disconnect) or the transport closes.
    async fn write_frames(
        self: Arc<Self>,
        key: (Target, Class),
        id: u64,
        mut rx: mpsc::Receiver<Bytes>,
    ) {
        let class = key.1;
        let mut stream: Option<(usize, quinn::SendStream)> = None;
        while let Some(frame) = rx.recv().await {
            let Some(conn) = self.wait_for_connection(&key, id).await else {
                let reason = if self.is_closed() {
                    FrameDrop::Shutdown
                } else {
                    FrameDrop::Disconnected
                };
                rx.close();
                let mut left = 1;
                while rx.try_recv().is_ok() {
                    left += 1;
                }
                self.counters.frame_dropped(Some(class), reason, left);
                if let Some((_, mut s)) = stream.take() {
                    let _ = s.finish();
                }
                return;
            };
            if stream.as_ref().map(|(conn_id, _)| *conn_id) != Some(conn.stable_id()) {
                if let Some((_, mut old)) = stream.take() {
                    // Frames already written on the old stream are still delivered
                    // while the old connection lasts.
                    let _ = old.finish();
                }
                match conn.open_uni().await {
                    Ok(s) => {
                        let _ = s.set_priority(priority(class));
                        stream = Some((conn.stable_id(), s));
                    }
                    Err(_) => {
                        self.counters
                            .frame_dropped(Some(class), FrameDrop::WriteFailed, 1);
                        continue;
                    }
                }
            }
            let Some((_, s)) = stream.as_mut() else {
                continue;
            };
            let len = frame.len();
            match s.write_all(&frame).await {
                Ok(()) => {
                    self.counters.frame(Direction::Out, class);
                    self.counters.bytes(Direction::Out, len);
                }
                Err(e) => {
                    tracing::debug!(%class, error = %e, "frame write failed");
                    self.counters
                        .frame_dropped(Some(class), FrameDrop::WriteFailed, 1);
                    stream = None;
                }
            }
        }
    }

    /// The connection a writer should use, dialing (with backoff) until there is one.
    /// `None` when the writer's queue was discarded or the transport closed.
    async fn wait_for_connection(
        self: &Arc<Self>,
        key: &(Target, Class),
        id: u64,
    ) -> Option<quinn::Connection> {
        let target = |st: &State| {
            let writer = st.writers.get(key).filter(|w| w.id == id)?;
            Some(PeerRef {
                name: match &key.0 {
                    Target::Name(name) => Some(name.clone()),
                    Target::Addr(_) => None,
                },
                addr: writer.addr,
            })
        };
        self.connection_for(target, OnBackoff::Wait).await.ok()
    }

    /// The open connection to `target` (looked up afresh each time, `None` when the
    /// target is gone), dialing when there is none and waiting for the dial. What
    /// happens while the address backs off after failed dials is `on_backoff`.
    pub(super) async fn connection_for(
        self: &Arc<Self>,
        mut target: impl FnMut(&State) -> Option<PeerRef>,
        on_backoff: OnBackoff,
    ) -> Result<quinn::Connection, NoConnection> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                if self.is_closed() {
                    return Err(NoConnection::Closed);
                }
                let mut st = self.lock();
                let to = target(&st).ok_or(NoConnection::Gone)?;
                if let Some(peer) = st.lookup(&to) {
                    return Ok(peer.conn.clone());
                }
                match (self.start_dial(&mut st, &to), on_backoff) {
                    (DialState::Backoff { why, .. }, OnBackoff::Fail) => {
                        return Err(NoConnection::Unreachable { addr: to.addr, why });
                    }
                    (DialState::Backoff { left, .. }, OnBackoff::Wait) => left.min(RECHECK),
                    (DialState::Started | DialState::InProgress, _) => RECHECK,
                }
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub(super) fn disconnect(&self, name: &str) {
        let peer = {
            let mut st = self.lock();
            // Dropping the writers' entries makes them drain and count their queues,
            // whether they were keyed by this name or by one of its addresses.
            let addrs: Vec<SocketAddr> = st
                .by_addr
                .iter()
                .filter(|(_, n)| *n == name)
                .map(|(a, _)| *a)
                .collect();
            st.writers.retain(|(target, _), _| match target {
                Target::Name(n) => n != name,
                Target::Addr(a) => !addrs.contains(a),
            });
            let peer = st.remove_peer(name);
            if peer.is_some() {
                self.counters.set_connections(st.peers.len());
                self.emit(Inbound::Disconnected {
                    name: name.to_owned(),
                });
            }
            peer
        };
        if let Some(peer) = peer {
            tracing::debug!(peer = name, "disconnecting");
            peer.conn.close(code::DISCONNECT, b"peer declared down");
        }
        self.changed.notify_waiters();
    }

    // ---- dialing and accepting -----------------------------------------------------

    /// Starts a dial to `to.addr` unless one is running or the address backs off.
    pub(super) fn start_dial(self: &Arc<Self>, st: &mut State, to: &PeerRef) -> DialState {
        if st.dials.contains_key(&to.addr) {
            return DialState::InProgress;
        }
        if let Some((left, why)) = st.backoff.remaining(to.addr, Instant::now()) {
            return DialState::Backoff { left, why };
        }
        st.dials.insert(to.addr, Default::default());
        self.runtime.spawn(self.clone().dial(to.clone()));
        DialState::Started
    }

    async fn dial(self: Arc<Self>, to: PeerRef) {
        let addr = to.addr;
        let result = self.connect(&to).await;
        match result {
            Ok((conn, name)) => {
                let (primary, pending) = {
                    let mut st = self.lock();
                    st.backoff.succeeded(addr);
                    let pending = st.dials.remove(&addr).unwrap_or_default();
                    let primary =
                        self.register(&mut st, conn.clone(), &name, self.local_name.clone());
                    (primary, pending)
                };
                if refused_here(&conn) {
                    // Refused (a name conflict): what was queued for this address was
                    // for the agent that answered here, which is not let in.
                    if !pending.is_empty() {
                        self.counters
                            .datagram_dropped(DatagramDrop::DialFailed, pending.len() as u64);
                    }
                } else {
                    self.runtime.spawn(self.clone().drive(conn, name));
                    for wire in pending {
                        self.send_on(&primary, wire);
                    }
                }
            }
            Err(failure) => {
                let dropped = {
                    let mut st = self.lock();
                    let dropped = st.dials.remove(&addr).map_or(0, |q| q.len());
                    let now = Instant::now();
                    match failure {
                        Failure::Handshake(kind) => {
                            st.backoff.failed(addr, DialFailure::Handshake(kind), now);
                        }
                        Failure::Myself => {
                            st.backoff.failed(addr, DialFailure::Myself, now);
                        }
                        Failure::Stopping => {}
                    }
                    dropped
                };
                let reason = match failure {
                    Failure::Stopping => DatagramDrop::Shutdown,
                    Failure::Handshake(_) | Failure::Myself => DatagramDrop::DialFailed,
                };
                if dropped > 0 {
                    self.counters.datagram_dropped(reason, dropped as u64);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Dials `to` and checks who answered.
    async fn connect(&self, to: &PeerRef) -> Result<(quinn::Connection, String), Failure> {
        let connecting = match self.endpoint.connect(to.addr, DIAL_SERVER_NAME) {
            Ok(c) => c,
            Err(quinn::ConnectError::EndpointStopping) => return Err(Failure::Stopping),
            Err(e) => {
                tracing::debug!(addr = %to.addr, error = %e, "cannot dial");
                return Err(self.handshake_failed(HandshakeFailure::Other, to.addr, "dial", &e));
            }
        };
        let conn = match tokio::time::timeout(self.limits.handshake_timeout, connecting).await {
            Err(_) => {
                return Err(self.handshake_failed(
                    HandshakeFailure::Timeout,
                    to.addr,
                    "dial",
                    &"handshake timed out",
                ));
            }
            Ok(Err(e)) => return Err(self.handshake_failed(classify(&e), to.addr, "dial", &e)),
            Ok(Ok(conn)) => conn,
        };
        let name = self.check_peer(&conn, to.name.as_deref(), "dial")?;
        Ok((conn, name))
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            self.runtime.spawn(self.clone().accept(incoming));
        }
    }

    async fn accept(self: Arc<Self>, incoming: quinn::Incoming) {
        let addr = incoming.remote_address();
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                self.handshake_failed(classify(&e), addr, "accept", &e);
                return;
            }
        };
        let conn = match tokio::time::timeout(self.limits.handshake_timeout, connecting).await {
            Err(_) => {
                self.handshake_failed(
                    HandshakeFailure::Timeout,
                    addr,
                    "accept",
                    &"handshake timed out",
                );
                return;
            }
            Ok(Err(e)) => {
                self.handshake_failed(classify(&e), addr, "accept", &e);
                return;
            }
            Ok(Ok(conn)) => conn,
        };
        let Ok(name) = self.check_peer(&conn, None, "accept") else {
            return;
        };
        {
            let mut st = self.lock();
            self.register(&mut st, conn.clone(), &name, name.clone());
        }
        // A refused connection (a name conflict) is closed already and never read:
        // quinn would still hand out datagrams it buffered before the close.
        if !refused_here(&conn) {
            self.runtime.spawn(self.clone().drive(conn, name));
        }
        self.changed.notify_waiters();
    }

    /// Counts and logs a failed handshake; returns it as a [`Failure`].
    fn handshake_failed(
        &self,
        kind: HandshakeFailure,
        addr: SocketAddr,
        side: &'static str,
        error: &dyn std::fmt::Display,
    ) -> Failure {
        self.counters.handshake_failure(kind);
        if kind == HandshakeFailure::Auth {
            self.warn_limited(
                "handshake_auth",
                format_args!(
                    "{side} {addr}: authentication failed: {error}; check that its \
                     certificate is signed by this cluster's CA (--ca) and names the node \
                     (`meshctl cert issue --name NAME`)"
                ),
            );
        } else {
            tracing::debug!(%addr, side, kind = kind.as_str(), %error, "handshake failed");
        }
        Failure::Handshake(kind)
    }

    /// Reads the peer's name from its verified certificate and checks it; closes the
    /// connection when it is unusable.
    fn check_peer(
        &self,
        conn: &quinn::Connection,
        expected: Option<&str>,
        side: &'static str,
    ) -> Result<String, Failure> {
        let addr = conn.remote_address();
        let Some(name) = peer_name(conn) else {
            conn.close(code::AUTH, b"certificate has no usable name");
            return Err(self.handshake_failed(
                HandshakeFailure::Auth,
                addr,
                side,
                &"certificate has no DNS name",
            ));
        };
        if name == self.local_name {
            conn.close(code::SELF_CONNECTION, b"connected to itself");
            tracing::debug!(%addr, "reached ourselves; not dialing this address again for a while");
            return Err(Failure::Myself);
        }
        if let Some(expected) = expected {
            if expected != name {
                conn.close(code::AUTH, b"unexpected certificate name");
                return Err(self.handshake_failed(
                    HandshakeFailure::Auth,
                    addr,
                    side,
                    &format_args!("expected {expected:?}, the certificate says {name:?}"),
                ));
            }
        }
        Ok(name)
    }

    /// Makes `conn` the connection in use for `name`, or keeps the one in use and
    /// schedules `conn` to close, by [`super::state::new_replaces_old`]. Returns the
    /// connection in use afterwards.
    fn register(
        self: &Arc<Self>,
        st: &mut State,
        conn: quinn::Connection,
        name: &str,
        dialer: String,
    ) -> quinn::Connection {
        let now = Instant::now();
        let addr = conn.remote_address();
        let new = Peer {
            conn,
            dialer,
            since: now,
        };
        let (primary, loser) = match st.peers.get(name) {
            Some(old) if super::state::is_name_conflict(old.meta(), new.meta()) => {
                let keep = old.conn.clone();
                self.refuse_name_conflict(&new.conn, name, keep.remote_address());
                return keep;
            }
            None => {
                self.emit(Inbound::Connected {
                    name: name.to_owned(),
                    addr,
                });
                (new.conn.clone(), None)
            }
            Some(old) if super::state::new_replaces_old(old.meta(), new.meta(), now) => {
                (new.conn.clone(), Some(old.conn.clone()))
            }
            Some(old) => {
                let keep = old.conn.clone();
                if new.conn.close_reason().is_none() {
                    self.close_duplicate(new.conn, name);
                }
                return keep;
            }
        };
        st.by_addr.insert(addr, name.to_owned());
        st.peers.insert(name.to_owned(), new);
        self.counters.set_connections(st.peers.len());
        if let Some(loser) = loser {
            if loser.close_reason().is_none() {
                self.close_duplicate(loser, name);
            }
        }
        primary
    }

    /// Refuses `conn`, a second live connection for `name` from another address than
    /// `bound` (see [`super::state::is_name_conflict`]): closed at once, counted,
    /// logged (rate-limited) with both addresses.
    fn refuse_name_conflict(&self, conn: &quinn::Connection, name: &str, bound: SocketAddr) {
        conn.close(
            code::NAME_CONFLICT,
            b"this name is in use by a live connection from another address",
        );
        self.counters
            .handshake_failure(HandshakeFailure::NameConflict);
        self.warn_limited(
            "name_conflict",
            format_args!(
                "refused a connection from {} presenting the name {name:?}: that name is in \
                 use by a live connection from {bound}. Two agents hold a certificate for \
                 one name (a copied config?); the first stays, the other is refused until \
                 the first's connection closes",
                conn.remote_address()
            ),
        );
    }

    /// Closes a duplicate connection after a grace period during which it is still
    /// read, so nothing already sent on it is lost, and once no request stream is open
    /// on it, so requests in flight finish there.
    fn close_duplicate(self: &Arc<Self>, conn: quinn::Connection, name: &str) {
        self.counters.duplicate_connection();
        tracing::debug!(peer = name, addr = %conn.remote_address(), "closing duplicate connection after grace");
        let inner = self.clone();
        self.runtime.spawn(async move {
            tokio::select! {
                _ = conn.closed() => return,
                () = tokio::time::sleep(DUPLICATE_GRACE) => {}
            }
            inner.requests_drained(&conn).await;
            conn.close(code::DUPLICATE, b"duplicate connection");
        });
    }

    fn unregister(&self, name: &str, conn: &quinn::Connection) {
        {
            let mut st = self.lock();
            let in_use = st
                .peers
                .get(name)
                .is_some_and(|p| p.conn.stable_id() == conn.stable_id());
            if in_use {
                st.remove_peer(name);
                self.counters.set_connections(st.peers.len());
                self.emit(Inbound::Disconnected {
                    name: name.to_owned(),
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// Delivers a connection event; a full channel loses it (counted).
    fn emit(&self, event: Inbound) {
        if self.inbound.try_send(event).is_err() {
            self.counters.event_dropped();
        }
    }

    // ---- receiving -----------------------------------------------------------------

    /// Reads datagrams and accepts streams on one connection until it closes, then
    /// removes it (if it was the one in use).
    async fn drive(self: Arc<Self>, conn: quinn::Connection, name: String) {
        let from: Arc<str> = Arc::from(name.as_str());
        let abuse = Arc::new(AtomicU32::new(0));
        loop {
            tokio::select! {
                datagram = conn.read_datagram() => match datagram {
                    Ok(data) => self.on_datagram(&from, data),
                    Err(_) => break,
                },
                stream = conn.accept_uni() => match stream {
                    Ok(recv) => {
                        let task = self.clone().read_frames(conn.clone(), from.clone(), recv, abuse.clone());
                        self.runtime.spawn(task);
                    }
                    Err(_) => break,
                },
                stream = conn.accept_bi() => match stream {
                    Ok(stream) => self.accept_request(&conn, &from, stream, &abuse),
                    Err(_) => break,
                },
            }
        }
        let reason = conn.closed().await;
        let refused_as_duplicate_name = conn.side() == quinn::Side::Client
            && matches!(&reason, ConnectionError::ApplicationClosed(c)
                if c.error_code == code::NAME_CONFLICT);
        if refused_as_duplicate_name {
            // The peer keeps our name bound to another live agent: wait before dialing
            // it again, and say so (this is the log the second agent's operator reads).
            let addr = conn.remote_address();
            self.lock().backoff.failed(
                addr,
                DialFailure::Handshake(HandshakeFailure::NameConflict),
                Instant::now(),
            );
            self.counters
                .handshake_failure(HandshakeFailure::NameConflict);
            self.warn_limited(
                "name_conflict",
                format_args!(
                    "{addr} refused this node: another live agent is connected to it under \
                     this node's name {:?}. Two agents must not share a name (or a \
                     certificate); stop one of them",
                    self.local_name
                ),
            );
        } else if is_crypto_close(&reason) {
            // With TLS 1.3 the server checks the client certificate after the
            // client has finished its side: a rejection arrives as a close.
            let side = match conn.side() {
                quinn::Side::Client => "dial",
                quinn::Side::Server => "accept",
            };
            self.handshake_failed(HandshakeFailure::Auth, conn.remote_address(), side, &reason);
        } else {
            tracing::debug!(peer = %from, error = %reason, "connection closed");
        }
        self.unregister(&name, &conn);
    }

    fn on_datagram(&self, from: &Arc<str>, data: Bytes) {
        match data.first() {
            Some(&DATAGRAM_VERSION) => {
                self.counters.datagram(Direction::In, data.len());
                let item = Inbound::Datagram {
                    from: from.to_string(),
                    data: data.slice(1..),
                };
                if let Err(e) = self.inbound.try_send(item) {
                    let reason = match e {
                        TrySendError::Full(_) => DatagramDrop::InboundFull,
                        TrySendError::Closed(_) => DatagramDrop::InboundClosed,
                    };
                    self.counters.datagram_dropped(reason, 1);
                }
            }
            Some(&version) => {
                self.counters
                    .datagram_dropped(DatagramDrop::UnknownVersion, 1);
                self.warn_limited(
                    "datagram_unknown_version",
                    format_args!(
                        "dropping datagram from {from} with unknown version {version}; the \
                         peer runs an incompatible mesh version: upgrade one of the two"
                    ),
                );
            }
            None => self.counters.datagram_dropped(DatagramDrop::Malformed, 1),
        }
    }

    /// Decodes frames from one incoming stream until it ends.
    async fn read_frames(
        self: Arc<Self>,
        conn: quinn::Connection,
        from: Arc<str>,
        mut recv: quinn::RecvStream,
        abuse: Arc<AtomicU32>,
    ) {
        let mut decoder = FrameDecoder::new(self.limits.max_frame);
        loop {
            let chunk = match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => chunk.bytes,
                Ok(None) | Err(_) => return,
            };
            self.counters.bytes(Direction::In, chunk.len());
            decoder.push(&chunk);
            while let Some(item) = decoder.next_frame() {
                match item {
                    Ok((class, payload)) => self.on_frame(&from, class, payload),
                    Err(e) => {
                        self.bad_frame(&conn, &from, &e, &abuse);
                        if decoder.is_failed() {
                            // The frame boundary is lost: nothing more on this stream
                            // can be read.
                            let _ = recv.stop(code::OVERSIZED);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn on_frame(&self, from: &Arc<str>, class: Class, payload: Bytes) {
        self.counters.frame(Direction::In, class);
        let item = Inbound::Frame {
            from: from.to_string(),
            class,
            payload,
        };
        if let Err(e) = self.inbound.try_send(item) {
            let reason = match e {
                TrySendError::Full(_) => FrameDrop::InboundFull,
                TrySendError::Closed(_) => FrameDrop::InboundClosed,
            };
            self.counters.frame_dropped(Some(class), reason, 1);
        }
    }

    fn bad_frame(
        &self,
        conn: &quinn::Connection,
        from: &str,
        error: &FrameError,
        abuse: &AtomicU32,
    ) {
        // A frame that does not decode has no trustworthy class.
        self.counters.frame_dropped(None, FrameDrop::from(error), 1);
        self.note_bad_input(conn, from, "frame", error, abuse);
    }

    /// Logs (rate-limited) a frame or request that did not decode and counts it
    /// against the connection; closes the connection at [`ABUSE_LIMIT`]. The caller
    /// counts the drop itself.
    pub(super) fn note_bad_input(
        &self,
        conn: &quinn::Connection,
        from: &str,
        what: &str,
        error: &FrameError,
        abuse: &AtomicU32,
    ) {
        self.warn_limited(
            error.as_str(),
            format_args!(
                "dropping {what} from {from}: {error}; if it repeats, check that the peer \
                 runs a compatible mesh version"
            ),
        );
        if abuse.fetch_add(1, Ordering::Relaxed) + 1 == ABUSE_LIMIT {
            tracing::warn!(
                peer = from,
                "closing connection after {ABUSE_LIMIT} bad frames or requests; the peer \
                 sends data this version cannot read: check its version (`meshctl info`) \
                 and its logs"
            );
            conn.close(code::ABUSE, b"too many bad frames");
        }
    }
}

/// The certificate name of the peer on `conn`, if it presented a certificate with one.
fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    cert_name(certs.first()?)
}

/// Whether a close carries a TLS alert (QUIC crypto error codes 0x100..=0x1ff).
pub(super) fn is_crypto_close(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::TransportError(t) => t.code,
        ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (0x100..=0x1ff).contains(&u64::from(code))
}

/// Whether `register` refused `conn` (closed it locally at once, a name
/// conflict); a connection the peer closed is still driven, so its close is handled.
fn refused_here(conn: &quinn::Connection) -> bool {
    matches!(conn.close_reason(), Some(ConnectionError::LocallyClosed))
}

/// `quinn::Endpoint::server`, with the socket wrapped in a [`super::udp::CountingSocket`].
fn bind_counted(
    server: quinn::ServerConfig,
    addr: SocketAddr,
    counts: Arc<super::udp::UdpCounts>,
) -> std::io::Result<quinn::Endpoint> {
    use quinn::Runtime as _;
    let socket = std::net::UdpSocket::bind(addr)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = runtime.wrap_udp_socket(socket)?;
    let counted = Arc::new(super::udp::CountingSocket::new(socket, counts));
    // No fixed-bit greasing (RFC 9287): peers then always set the bit toward us, so a
    // datagram without it is garbage (quinn drops it unparsed) and is counted as such.
    let mut config = quinn::EndpointConfig::default();
    config.grease_quic_bit(false);
    quinn::Endpoint::new_with_abstract_socket(config, Some(server), counted, runtime)
}

/// Sorts a handshake error into a failure kind.
fn classify(e: &ConnectionError) -> HandshakeFailure {
    if is_crypto_close(e) {
        return HandshakeFailure::Auth;
    }
    match e {
        ConnectionError::ApplicationClosed(c) if c.error_code == code::AUTH => {
            HandshakeFailure::Auth
        }
        ConnectionError::TimedOut => HandshakeFailure::Timeout,
        ConnectionError::ConnectionClosed(_)
        | ConnectionError::ApplicationClosed(_)
        | ConnectionError::Reset => HandshakeFailure::Reset,
        ConnectionError::TransportError(_)
        | ConnectionError::VersionMismatch
        | ConnectionError::LocallyClosed
        | ConnectionError::CidsExhausted => HandshakeFailure::Other,
    }
}

/// Stream priority per class: control first, user last.
pub(super) fn priority(class: Class) -> i32 {
    match class {
        Class::Control => 2,
        Class::State => 1,
        Class::User => 0,
    }
}
