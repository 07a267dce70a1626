//! Request/response over QUIC bi streams: one request per stream, answered on the
//! same stream.
//!
//! # Wire
//!
//! The requester opens a bi stream on the connection in use, writes the request as one
//! [frame](crate::frame) (`[len u32][version][class][payload]`) and finishes its side.
//! The server answers with one frame of the same class and finishes, or resets the
//! stream with a [`Refusal`] code. The requester resets and stops the stream with
//! `CANCELLED` when it gives up. A body is exactly one frame followed by the end of
//! the stream: anything after the frame, or a stream that ends inside or before it, is
//! malformed.
//!
//! # Safety
//!
//! 1. **A response answers only its own request.** Each request has its own stream
//!    and the response is read from that stream, so concurrent requests never receive
//!    each other's responses, whatever order they are answered in.
//! 2. **Size limits hold before buffering.** No request over `max_request_bytes` and no
//!    response over `max_response_bytes` is sent; a length prefix over the limit is
//!    refused as soon as its four bytes arrive, before any byte of its body is stored
//!    ([`FrameDecoder`]), and the stream is stopped.
//! 3. **In-flight requests per peer are bounded.** At most
//!    `max_inbound_requests_per_peer` requests from one peer (over all its
//!    connections) are held at once — being read, waiting in the `Inbound` channel, or
//!    being answered; more are refused with [`Refusal::Busy`] before they are read.
//! 4. **Only authenticated peers are served.** Requests are read only on connections
//!    whose certificate verified, and `Inbound::Request::from` is its name.
//! 5. **Every request is counted exactly once on each side**, with how it ended
//!    ([`RequestResult`], [`ServedResult`]); nothing ends silently. A [`Responder`]
//!    answers at most once (it is consumed, and cannot be cloned).
//!
//! # Liveness
//!
//! 1. **Every request future completes by its deadline** (plus scheduling), with the
//!    response or an error: the deadline covers the dial, the write and the response.
//! 2. **A refusal is prompt.** A dropped [`Responder`], a full inbound channel, the
//!    in-flight limit or an oversized body resets the stream at once: the requester
//!    gets [`RequestError::Refused`] one round trip later, not a timeout.
//! 3. **A requester that gives up frees the server.** Timing out or dropping the
//!    request future resets the stream; the server then releases the in-flight slot,
//!    counts `cancelled`, and a later [`Responder::respond`] returns
//!    [`RespondError::Gone`].
//! 4. **Requests survive a connection replacement.** When a duplicate connection
//!    replaces the one in use, the old one is closed only once no request stream is
//!    open on it (after the usual grace, at most [`REQUEST_DRAIN_MAX`]), so requests
//!    already on it finish there. Requests still open after that fail with
//!    [`RequestError::ConnectionLost`], as do requests on a connection that closes for
//!    any other reason (disconnect, idle timeout, the peer shutting down): a request
//!    is never retried on another connection, because it may already have been
//!    handled.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{ConnectionError, ReadError, StoppedError, VarInt, WriteError};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

use super::inner::{is_crypto_close, priority, Inner, NoConnection, OnBackoff, READ_CHUNK};
use super::state::DialFailure;
use super::{Inbound, PeerRef};
use crate::frame::{encode_frame, Class, FrameDecoder, FrameError};
use crate::stats::{Direction, HandshakeFailure, RequestResult, ServedResult};

/// Default limit on a response body (version + class + payload), 16 MiB.
pub const DEFAULT_MAX_RESPONSE: usize = 16 << 20;

/// Default number of requests one peer may have in flight at this node.
pub const DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER: usize = 32;

/// Longest a connection that lost to a duplicate stays open for request streams still
/// open on it; requests still open then fail with [`RequestError::ConnectionLost`].
pub const REQUEST_DRAIN_MAX: Duration = Duration::from_secs(30);

/// Stream error codes (their own space, apart from the connection close codes).
pub(super) mod code {
    use quinn::VarInt;
    /// The requester gave up (timeout, or the request future was dropped).
    pub(crate) const CANCELLED: VarInt = VarInt::from_u32(1);
    pub(crate) const BUSY: VarInt = VarInt::from_u32(2);
    pub(crate) const INBOUND_FULL: VarInt = VarInt::from_u32(3);
    pub(crate) const REQUEST_TOO_LARGE: VarInt = VarInt::from_u32(4);
    pub(crate) const MALFORMED: VarInt = VarInt::from_u32(5);
    pub(crate) const NO_RESPONSE: VarInt = VarInt::from_u32(6);
    pub(crate) const RESPONSE_TOO_LARGE: VarInt = VarInt::from_u32(7);
    pub(crate) const UNAVAILABLE: VarInt = VarInt::from_u32(8);
}

/// Which body of an exchange an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The request.
    Request,
    /// The response.
    Response,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

/// Why a peer refused a request, as it said in the stream reset code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The peer already serves `max_inbound_requests_per_peer` requests from this
    /// node. Retry later or send fewer at once.
    Busy,
    /// The peer's `Inbound` channel was full: its application is not keeping up.
    InboundFull,
    /// The request is over the peer's `max_request_bytes`.
    RequestTooLarge,
    /// The peer could not read the request as one well-formed frame.
    Malformed,
    /// The peer's application dropped the [`Responder`] without answering (it has no
    /// handler for requests of that class, or chose not to answer).
    NoResponse,
    /// The response the peer's application gave is over the peer's
    /// `max_response_bytes`.
    ResponseTooLarge,
    /// The peer's application no longer reads its `Inbound` channel (it is shutting
    /// down).
    Unavailable,
    /// A code this build does not know: a newer peer, or one that ended the stream
    /// without a reason (code 0).
    Unknown(u64),
}

impl Refusal {
    /// The reason a reset code stands for.
    fn from_code(code: VarInt) -> Self {
        match code {
            code::BUSY => Self::Busy,
            code::INBOUND_FULL => Self::InboundFull,
            code::REQUEST_TOO_LARGE => Self::RequestTooLarge,
            code::MALFORMED => Self::Malformed,
            code::NO_RESPONSE => Self::NoResponse,
            code::RESPONSE_TOO_LARGE => Self::ResponseTooLarge,
            code::UNAVAILABLE => Self::Unavailable,
            other => Self::Unknown(other.into_inner()),
        }
    }

    /// The reset code that says this reason. Only the server's own reasons are ever
    /// sent; `Unknown` is what a requester makes of any other code.
    fn code(self) -> VarInt {
        match self {
            Self::Busy => code::BUSY,
            Self::InboundFull => code::INBOUND_FULL,
            Self::RequestTooLarge => code::REQUEST_TOO_LARGE,
            Self::Malformed => code::MALFORMED,
            Self::NoResponse => code::NO_RESPONSE,
            Self::ResponseTooLarge => code::RESPONSE_TOO_LARGE,
            Self::Unavailable => code::UNAVAILABLE,
            Self::Unknown(n) => VarInt::from_u64(n).unwrap_or(VarInt::MAX),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("too many requests in flight"),
            Self::InboundFull => f.write_str("its inbound channel is full"),
            Self::RequestTooLarge => f.write_str("the request is over its size limit"),
            Self::Malformed => f.write_str("the request is malformed"),
            Self::NoResponse => f.write_str("it dropped the request without answering"),
            Self::ResponseTooLarge => f.write_str("its response is over its size limit"),
            Self::Unavailable => f.write_str("it is shutting down"),
            Self::Unknown(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// Why [`Transport::request`](super::Transport::request) gave no response. Each variant
/// says how far the request got; every one is counted once in
/// `mesh_transport_requests_total`. A connection dialed for the request stays open (as
/// for datagrams and frames) and a failed dial backs off; nothing else changes here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No complete response by the deadline (which covers dialing, sending and the
    /// response). The stream was reset; the peer may have handled the request.
    #[error("no response within the timeout")]
    Timeout,
    /// The peer refused the request or dropped it without answering; `reason` is
    /// what it said. Retrying makes sense for `Busy` and `InboundFull`.
    #[error("the peer refused the request: {reason}")]
    Refused {
        /// The peer's reason.
        reason: Refusal,
    },
    /// A body is over this node's limit: a request over `max_request_bytes` (nothing
    /// was sent, no dial started), or a response announcing more than
    /// `max_response_bytes` (the stream was stopped; none of it was buffered).
    #[error("{part} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Which body.
        part: Part,
        /// Its body length (payload + 2), as needed or announced.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The connection closed while the request was in flight (the peer shut down or
    /// restarted, [`disconnect`](super::Transport::disconnect), idle timeout). The peer
    /// may have handled the request; it is not retried.
    #[error("the connection closed while the request was in flight")]
    ConnectionLost,
    /// No connection to `addr`: the dial failed with `kind`, or the address is still
    /// backing off after a dial that did (no new dial is tried during backoff, as for
    /// datagrams). A certificate from another CA or with another name is `Auth`.
    /// Nothing was sent.
    #[error("cannot reach {addr}: {} handshake failure", kind.as_str())]
    Unreachable {
        /// The address dialed.
        addr: SocketAddr,
        /// How the (last) handshake failed.
        kind: HandshakeFailure,
    },
    /// `addr` answered with this node's own certificate: a request to oneself.
    /// Nothing was sent.
    #[error("{addr} is this node itself")]
    SelfAddress {
        /// The address dialed.
        addr: SocketAddr,
    },
    /// The transport is shut down (before or during the request).
    #[error("transport is shut down")]
    Shutdown,
    /// The response is not one well-formed frame of the request's class (an unknown
    /// version or class, data after the frame, a stream that ended early). The stream
    /// was stopped. Never [`FrameError::Oversized`]: that is [`Self::TooLarge`].
    #[error("malformed response: {0}")]
    Malformed(FrameError),
}

impl RequestError {
    /// The counter label for a request that ended with this error.
    fn result(&self) -> RequestResult {
        match self {
            Self::Timeout => RequestResult::Timeout,
            Self::Refused { .. } => RequestResult::Refused,
            Self::TooLarge { .. } => RequestResult::TooLarge,
            Self::ConnectionLost => RequestResult::ConnectionLost,
            Self::Unreachable { .. } | Self::SelfAddress { .. } => RequestResult::Unreachable,
            Self::Shutdown => RequestResult::Shutdown,
            Self::Malformed(_) => RequestResult::Malformed,
        }
    }

    fn unreachable(addr: SocketAddr, why: DialFailure) -> Self {
        match why {
            DialFailure::Handshake(kind) => Self::Unreachable { addr, kind },
            DialFailure::Myself => Self::SelfAddress { addr },
        }
    }
}

/// Why [`Responder::respond`] sent nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// The response body (payload + 2) is over this node's `max_response_bytes`.
    /// Nothing was sent; the stream is reset and the requester gets
    /// [`Refusal::ResponseTooLarge`]. Counted `response_too_large`.
    #[error("response of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body length (payload + 2).
        len: usize,
        /// `max_response_bytes`.
        max: usize,
    },
    /// Nobody waits for this response any more: the requester gave up (timed out or
    /// cancelled), the connection closed or the transport shut down. Nothing was sent;
    /// the end was already counted.
    #[error("the requester no longer waits for this response")]
    Gone,
}

/// What a [`Responder`] hands to the task that owns the stream.
#[derive(Debug)]
enum Reply {
    /// The encoded response frame.
    Frame(Bytes),
    /// The application's response was over the limit.
    TooLarge,
}

/// The way to answer one [`Inbound::Request`]: `Send + Sync`, not `Clone`, answers
/// once.
///
/// Dropping it without calling [`respond`](Self::respond) refuses the request: the
/// stream is reset and the requester gets [`Refusal::NoResponse`] at once, not a
/// timeout. While it is held, the request counts against the peer's
/// `max_inbound_requests_per_peer`.
pub struct Responder {
    tx: oneshot::Sender<Reply>,
    peer: Arc<str>,
    class: Class,
    max: usize,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("peer", &self.peer)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Writes the response and finishes the stream; never waits (a task writes it).
    /// Responses may be large, up to `max_response_bytes` (default 16 MiB), and are
    /// encoded (copied once) here.
    pub fn respond(self, payload: Bytes) -> Result<(), RespondError> {
        if self.tx.is_closed() {
            return Err(RespondError::Gone);
        }
        match encode_frame(self.class, &payload, self.max) {
            Ok(frame) => self
                .tx
                .send(Reply::Frame(frame))
                .map_err(|_| RespondError::Gone),
            Err(_) => {
                let len = payload.len().saturating_add(2);
                // If nobody waits any more, there is nobody to tell either.
                let _ = self.tx.send(Reply::TooLarge);
                Err(RespondError::TooLarge { len, max: self.max })
            }
        }
    }

    /// The peer that asked (its certificate name).
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

/// Reads one body: exactly one frame, then the end of the stream.
///
/// Built on [`FrameDecoder`], so a length prefix over the limit is refused
/// ([`FrameError::Oversized`]) before any of its body is stored.
#[derive(Debug)]
pub(crate) struct OneFrame {
    decoder: FrameDecoder,
    frame: Option<(Class, Bytes)>,
}

impl OneFrame {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max),
            frame: None,
        }
    }

    /// Feeds the next chunk. An error ends the body: the caller stops the stream.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.frame.is_some() {
            return Err(FrameError::Malformed("data after the frame"));
        }
        self.decoder.push(data);
        match self.decoder.next_frame() {
            None => Ok(()),
            Some(Err(e)) => Err(e),
            Some(Ok(frame)) => {
                self.frame = Some(frame);
                if self.decoder.buffered() > 0 || self.decoder.next_frame().is_some() {
                    return Err(FrameError::Malformed("data after the frame"));
                }
                Ok(())
            }
        }
    }

    /// The frame, once the stream has ended.
    pub(crate) fn finish(&mut self) -> Result<(Class, Bytes), FrameError> {
        match self.frame.take() {
            Some(frame) => Ok(frame),
            None if self.decoder.buffered() == 0 => {
                Err(FrameError::Malformed("the stream ended before any frame"))
            }
            None => Err(FrameError::Malformed("the stream ended inside the frame")),
        }
    }

    /// Bytes held for the frame being read.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.decoder.buffered()
    }
}

/// A request's place in the bookkeeping: the request stream open on `conn` and, on the
/// serving side, the peer's in-flight slot. Given back when dropped.
struct RequestSlot {
    inner: Arc<Inner>,
    /// Held so that the connection's `stable_id` stays unique while counted.
    conn: quinn::Connection,
    serving: Option<Arc<str>>,
}

impl RequestSlot {
    /// A stream this node opens to ask.
    fn asking(inner: &Arc<Inner>, conn: &quinn::Connection) -> Self {
        inner
            .lock()
            .request_streams
            .try_add(conn.stable_id(), usize::MAX);
        Self {
            inner: inner.clone(),
            conn: conn.clone(),
            serving: None,
        }
    }

    /// A stream `peer` opened to ask us, if the peer is below its in-flight limit.
    fn serving(inner: &Arc<Inner>, conn: &quinn::Connection, peer: &Arc<str>) -> Option<Self> {
        {
            let mut st = inner.lock();
            if !st
                .serving
                .try_add(peer.clone(), inner.limits.requests_per_peer)
            {
                return None;
            }
            st.request_streams.try_add(conn.stable_id(), usize::MAX);
        }
        Some(Self {
            inner: inner.clone(),
            conn: conn.clone(),
            serving: Some(peer.clone()),
        })
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let drained = {
            let mut st = self.inner.lock();
            if let Some(peer) = &self.serving {
                st.serving.remove(peer);
            }
            st.request_streams.remove(&self.conn.stable_id()) == 0
        };
        if drained {
            self.inner.drained.notify_waiters();
        }
    }
}

/// The requester's stream: reset and stopped with `CANCELLED` when dropped before the
/// exchange ended (timeout, or the request future dropped), so the server lets go.
struct OpenStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    ended: bool,
    _slot: RequestSlot,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.send.reset(code::CANCELLED);
            let _ = self.recv.stop(code::CANCELLED);
        }
    }
}

/// Counts how a request ended, exactly once: `cancelled` if the future is dropped
/// before it settles.
struct Tally<'a> {
    inner: &'a Inner,
    class: Class,
    settled: bool,
}

impl Tally<'_> {
    fn settle(&mut self, result: &Result<Bytes, RequestError>) {
        let label = result
            .as_ref()
            .map_or_else(RequestError::result, |_| RequestResult::Ok);
        self.inner.counters.request(self.class, label);
        self.settled = true;
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.inner
                .counters
                .request(self.class, RequestResult::Cancelled);
        }
    }
}

/// Refuses a request stream: resets our side and stops theirs with the reason.
fn refuse(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, reason: Refusal) {
    let _ = send.reset(reason.code());
    let _ = recv.stop(reason.code());
}

/// What a requester stopping the stream means for the server's count.
fn served_stopped(code: VarInt) -> ServedResult {
    if code == code::RESPONSE_TOO_LARGE {
        ServedResult::ResponseTooLarge
    } else {
        ServedResult::Cancelled
    }
}

impl Inner {
    // ---- asking --------------------------------------------------------------------

    /// One request, from the call to its end, counted once.
    pub(super) async fn request(
        self: Arc<Self>,
        to: PeerRef,
        class: Class,
        payload: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Bytes, RequestError> {
        let mut tally = Tally {
            inner: &self,
            class,
            settled: false,
        };
        let exchange = self.exchange(&to, class, &payload);
        let result = tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(RequestError::Timeout));
        tally.settle(&result);
        if let Err(e) = &result {
            tracing::debug!(peer = ?to.name, addr = %to.addr, %class, error = %e, "request failed");
        }
        result
    }

    async fn exchange(
        self: &Arc<Self>,
        to: &PeerRef,
        class: Class,
        payload: &[u8],
    ) -> Result<Bytes, RequestError> {
        if self.is_closed() {
            return Err(RequestError::Shutdown);
        }
        let max = self.limits.max_request;
        let frame = encode_frame(class, payload, max).map_err(|_| RequestError::TooLarge {
            part: Part::Request,
            len: payload.len().saturating_add(2),
            max,
        })?;
        let conn = self
            .connection_for(|_| Some(to.clone()), OnBackoff::Fail)
            .await
            .map_err(|e| match e {
                NoConnection::Closed | NoConnection::Gone => RequestError::Shutdown,
                NoConnection::Unreachable { addr, why } => RequestError::unreachable(addr, why),
            })?;
        let slot = RequestSlot::asking(self, &conn);
        let (send, recv) = conn.open_bi().await.map_err(|e| self.lost(&conn, &e))?;
        let mut stream = OpenStream {
            send,
            recv,
            ended: false,
            _slot: slot,
        };
        let _ = stream.send.set_priority(priority(class));

        let len = frame.len();
        if let Err(e) = stream.send.write_chunk(frame).await {
            return Err(match e {
                WriteError::Stopped(code) => {
                    stream.ended = true;
                    RequestError::Refused {
                        reason: Refusal::from_code(code),
                    }
                }
                WriteError::ConnectionLost(e) => self.lost(&conn, &e),
                WriteError::ClosedStream | WriteError::ZeroRttRejected => {
                    RequestError::ConnectionLost
                }
            });
        }
        let _ = stream.send.finish();
        self.counters.bytes(Direction::Out, len);

        let mut reader = OneFrame::new(self.limits.max_response);
        loop {
            let chunk = match stream.recv.read_chunk(READ_CHUNK, true).await {
                Ok(chunk) => chunk,
                Err(ReadError::Reset(code)) => {
                    stream.ended = true;
                    return Err(RequestError::Refused {
                        reason: Refusal::from_code(code),
                    });
                }
                Err(ReadError::ConnectionLost(e)) => return Err(self.lost(&conn, &e)),
                Err(_) => return Err(RequestError::ConnectionLost),
            };
            let Some(chunk) = chunk else {
                stream.ended = true;
                let (got, payload) = reader.finish().map_err(RequestError::Malformed)?;
                if got != class {
                    return Err(RequestError::Malformed(FrameError::Malformed(
                        "the response's class differs from the request's",
                    )));
                }
                return Ok(payload);
            };
            self.counters.bytes(Direction::In, chunk.bytes.len());
            if let Err(e) = reader.push(&chunk.bytes) {
                let (code, error) = match e {
                    FrameError::Oversized { len, max } => (
                        code::RESPONSE_TOO_LARGE,
                        RequestError::TooLarge {
                            part: Part::Response,
                            len,
                            max,
                        },
                    ),
                    other => (code::MALFORMED, RequestError::Malformed(other)),
                };
                let _ = stream.recv.stop(code);
                let _ = stream.send.reset(code);
                stream.ended = true;
                return Err(error);
            }
        }
    }

    /// What a connection error means for a request in flight.
    fn lost(&self, conn: &quinn::Connection, e: &ConnectionError) -> RequestError {
        if self.is_closed() {
            RequestError::Shutdown
        } else if is_crypto_close(e) {
            // TLS 1.3: the server checks our certificate after we finished our side,
            // so its refusal arrives as a close of a connection we already use.
            RequestError::Unreachable {
                addr: conn.remote_address(),
                kind: HandshakeFailure::Auth,
            }
        } else {
            RequestError::ConnectionLost
        }
    }

    // ---- serving -------------------------------------------------------------------

    /// Takes a bi stream `from` opened on `conn`: refuses it at once when the peer is
    /// at its in-flight limit, else serves it in a task of its own.
    pub(super) fn accept_request(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        from: &Arc<str>,
        (mut send, mut recv): (quinn::SendStream, quinn::RecvStream),
        abuse: &Arc<AtomicU32>,
    ) {
        let Some(slot) = RequestSlot::serving(self, conn, from) else {
            refuse(&mut send, &mut recv, Refusal::Busy);
            self.counters.request_served(None, ServedResult::Busy);
            self.warn_limited(
                "request_busy",
                format_args!(
                    "refusing a request from {from}: {} already in flight",
                    self.limits.requests_per_peer
                ),
            );
            return;
        };
        let task = self
            .clone()
            .serve(conn.clone(), from.clone(), send, recv, abuse.clone(), slot);
        self.runtime.spawn(task);
    }

    async fn serve(
        self: Arc<Self>,
        conn: quinn::Connection,
        from: Arc<str>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        abuse: Arc<AtomicU32>,
        slot: RequestSlot,
    ) {
        let (class, result) = self
            .serve_one(&conn, &from, &mut send, &mut recv, &abuse)
            .await;
        // Released before counted: once a request shows in the counters, its slot is
        // free again.
        drop(slot);
        self.counters.request_served(class, result);
    }

    /// Reads the request, hands it to the application and writes its answer; returns
    /// the class (once known) and how it ended.
    async fn serve_one(
        &self,
        conn: &quinn::Connection,
        from: &Arc<str>,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        abuse: &AtomicU32,
    ) -> (Option<Class>, ServedResult) {
        let mut reader = OneFrame::new(self.limits.max_request);
        let (class, payload) = loop {
            let chunk = match recv.read_chunk(READ_CHUNK, true).await {
                Ok(chunk) => chunk,
                Err(ReadError::Reset(_)) => return (None, ServedResult::Cancelled),
                Err(_) => return (None, self.served_lost()),
            };
            let step = match chunk {
                Some(chunk) => {
                    self.counters.bytes(Direction::In, chunk.bytes.len());
                    reader.push(&chunk.bytes).map(|()| None)
                }
                None => reader.finish().map(Some),
            };
            match step {
                Ok(None) => {}
                Ok(Some(frame)) => break frame,
                Err(e) => {
                    let (reason, result) = match e {
                        FrameError::Oversized { .. } => {
                            (Refusal::RequestTooLarge, ServedResult::TooLarge)
                        }
                        _ => (Refusal::Malformed, ServedResult::Malformed),
                    };
                    refuse(send, recv, reason);
                    self.note_bad_input(conn, from, "request", &e, abuse);
                    return (None, result);
                }
            }
        };

        let (tx, rx) = oneshot::channel();
        let responder = Responder {
            tx,
            peer: from.clone(),
            class,
            max: self.limits.max_response,
        };
        let item = Inbound::Request {
            from: from.to_string(),
            class,
            payload,
            responder,
        };
        if let Err(e) = self.inbound.try_send(item) {
            let (reason, result) = match e {
                TrySendError::Full(_) => (Refusal::InboundFull, ServedResult::InboundFull),
                TrySendError::Closed(_) => (Refusal::Unavailable, ServedResult::InboundClosed),
            };
            refuse(send, recv, reason);
            return (Some(class), result);
        }

        let stopped = send.stopped();
        let reply = tokio::select! {
            reply = rx => reply.ok(),
            stop = stopped => return (Some(class), self.served_stop(stop)),
        };
        let frame = match reply {
            Some(Reply::Frame(frame)) => frame,
            Some(Reply::TooLarge) => {
                refuse(send, recv, Refusal::ResponseTooLarge);
                return (Some(class), ServedResult::ResponseTooLarge);
            }
            None => {
                refuse(send, recv, Refusal::NoResponse);
                return (Some(class), ServedResult::NoResponse);
            }
        };
        let _ = send.set_priority(priority(class));
        let len = frame.len();
        if let Err(e) = send.write_chunk(frame).await {
            let result = match e {
                WriteError::Stopped(code) => served_stopped(code),
                _ => self.served_lost(),
            };
            return (Some(class), result);
        }
        let _ = send.finish();
        self.counters.bytes(Direction::Out, len);
        // Hold the slot, and so keep a duplicate connection open, until the peer has
        // acknowledged the whole response. The bytes are written: unless the peer
        // stopped the stream, a close from here on still counts as answered.
        let result = match send.stopped().await {
            Ok(Some(code)) => served_stopped(code),
            Ok(None) | Err(_) => ServedResult::Answered,
        };
        (Some(class), result)
    }

    /// How a request ended when `stopped` fired before the application answered.
    fn served_stop(&self, stop: Result<Option<VarInt>, StoppedError>) -> ServedResult {
        match stop {
            Ok(Some(code)) => served_stopped(code),
            Ok(None) => ServedResult::Cancelled,
            Err(_) => self.served_lost(),
        }
    }

    fn served_lost(&self) -> ServedResult {
        if self.is_closed() {
            ServedResult::Shutdown
        } else {
            ServedResult::ConnectionLost
        }
    }

    // ---- connection replacement ----------------------------------------------------

    /// Waits until no request stream is open on `conn` (at most [`REQUEST_DRAIN_MAX`]),
    /// or until it closes.
    pub(super) async fn requests_drained(&self, conn: &quinn::Connection) {
        let id = conn.stable_id();
        let give_up = tokio::time::Instant::now() + REQUEST_DRAIN_MAX;
        let mut delayed = false;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let open = self.lock().request_streams.get(&id);
            if open == 0 {
                return;
            }
            if !delayed {
                delayed = true;
                self.counters.duplicate_close_delayed();
                tracing::debug!(addr = %conn.remote_address(), open, "duplicate connection stays open for its requests");
            }
            tokio::select! {
                () = &mut drained => {}
                _ = conn.closed() => return,
                () = tokio::time::sleep_until(give_up) => {
                    // Nothing for an operator to do: the requests fail and are retried
                    // on the connection that stays.
                    tracing::info!(
                        addr = %conn.remote_address(),
                        open,
                        "closing a duplicate connection with requests still open on it"
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::FRAME_VERSION;

    fn class_strategy() -> impl Strategy<Value = Class> {
        prop_oneof![Just(Class::Control), Just(Class::State), Just(Class::User)]
    }

    /// Feeds `bytes` in chunks of the given sizes; the first error, if any.
    fn feed(reader: &mut OneFrame, bytes: &[u8], cuts: &[usize]) -> Result<(), FrameError> {
        let mut rest = bytes;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            reader.push(chunk)?;
            rest = tail;
            i += 1;
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn one_frame_reads_exactly_the_frame_whatever_the_chunking(
            class in class_strategy(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..80, 1..20),
        ) {
            let frame = encode_frame(class, &payload, 1024).expect("fits");
            let mut reader = OneFrame::new(1024);
            prop_assert_eq!(feed(&mut reader, &frame, &cuts), Ok(()));
            prop_assert_eq!(reader.finish(), Ok((class, Bytes::from(payload))));
        }

        #[test]
        fn anything_after_the_frame_is_malformed(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            extra in proptest::collection::vec(any::<u8>(), 1..50),
            cuts in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let mut bytes = encode_frame(Class::User, &payload, 1024).expect("fits").to_vec();
            bytes.extend_from_slice(&extra);
            let mut reader = OneFrame::new(1024);
            prop_assert!(matches!(
                feed(&mut reader, &bytes, &cuts),
                Err(FrameError::Malformed(_))
            ));
        }

        #[test]
        fn a_stream_that_ends_before_the_frame_is_complete_is_malformed(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            keep in any::<proptest::sample::Index>(),
        ) {
            let frame = encode_frame(Class::State, &payload, 1024).expect("fits");
            let cut = keep.index(frame.len()); // strictly shorter than the frame
            let mut reader = OneFrame::new(1024);
            prop_assert_eq!(reader.push(&frame[..cut]), Ok(()));
            prop_assert!(matches!(reader.finish(), Err(FrameError::Malformed(_))));
        }

        #[test]
        fn a_prefix_over_the_limit_is_refused_before_any_body_byte_is_kept(
            max in 2usize..4096,
            over in 1u64..u64::from(u32::MAX),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let announced = u32::try_from((max as u64).saturating_add(over).min(u64::from(u32::MAX)))
                .expect("clamped to u32");
            let mut bytes = announced.to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let mut reader = OneFrame::new(max);
            prop_assert_eq!(
                reader.push(&bytes),
                Err(FrameError::Oversized { len: announced as usize, max })
            );
            prop_assert_eq!(reader.buffered(), 0);
        }

        #[test]
        fn refusal_codes_round_trip_and_other_codes_stay_unknown(n in 0u32..1000) {
            let refusal = Refusal::from_code(VarInt::from_u32(n));
            prop_assert_eq!(refusal.code(), VarInt::from_u32(n));
            let known = (2..=8).contains(&n);
            prop_assert_eq!(!matches!(refusal, Refusal::Unknown(_)), known);
        }
    }

    #[test]
    fn an_empty_stream_and_an_unknown_version_are_malformed() {
        assert_eq!(
            OneFrame::new(16).finish(),
            Err(FrameError::Malformed("the stream ended before any frame"))
        );
        let mut reader = OneFrame::new(16);
        assert_eq!(
            reader.push(&[0, 0, 0, 3, FRAME_VERSION + 1, 0, b'x']),
            Err(FrameError::UnknownVersion(FRAME_VERSION + 1))
        );
    }

    #[test]
    fn the_cancel_code_is_never_read_as_a_refusal_the_server_gives() {
        assert_eq!(Refusal::from_code(code::CANCELLED), Refusal::Unknown(1));
    }

    #[test]
    fn every_request_error_has_its_own_result_label() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let errors = [
            RequestError::Timeout,
            RequestError::Refused {
                reason: Refusal::Busy,
            },
            RequestError::TooLarge {
                part: Part::Request,
                len: 3,
                max: 2,
            },
            RequestError::ConnectionLost,
            RequestError::Unreachable {
                addr,
                kind: HandshakeFailure::Auth,
            },
            RequestError::Shutdown,
            RequestError::Malformed(FrameError::Malformed("x")),
        ];
        let labels: Vec<_> = errors.iter().map(|e| e.result().as_str()).collect();
        assert_eq!(
            labels,
            [
                "timeout",
                "refused",
                "too_large",
                "connection_lost",
                "unreachable",
                "shutdown",
                "malformed"
            ]
        );
        assert_eq!(
            RequestError::SelfAddress { addr }.result(),
            RequestResult::Unreachable
        );
    }
}
