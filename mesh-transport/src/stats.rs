//! Counters: published as Prometheus metrics through the `metrics` facade (the host
//! process installs the recorder) and kept in atomics so that tests and callers can
//! read a [`TransportStats`] snapshot without a recorder.
//!
//! Every label value comes from a fixed set (no peer names), and
//! [`register_metrics`] creates every series at zero so that a missing series means
//! "not deployed", never "nothing happened yet".
//!
//! | metric | labels |
//! |---|---|
//! | `mesh_transport_connections` (gauge) | |
//! | `mesh_transport_datagrams_total` | `direction` = `in`, `out` |
//! | `mesh_transport_datagrams_dropped_total` | `reason` = [`DatagramDrop::as_str`] |
//! | `mesh_transport_frames_total` | `direction`, `class` = [`Class::as_str`] |
//! | `mesh_transport_frames_dropped_total` | `class` (or `unknown`), `reason` = [`FrameDrop::as_str`] |
//! | `mesh_transport_handshake_failures_total` | `kind` = [`HandshakeFailure::as_str`] |
//! | `mesh_transport_bytes_total` | `direction` |
//! | `mesh_transport_events_dropped_total` | |
//! | `mesh_transport_duplicate_connections_total` | |
//! | `mesh_transport_duplicate_closes_delayed_total` | |
//! | `mesh_transport_requests_total` | `class`, `result` = [`RequestResult::as_str`] |
//! | `mesh_transport_requests_served_total` | `class` (or `unknown`), `result` = [`ServedResult::as_str`] |
//! | `mesh_transport_udp_datagrams_received_total` | |
//! | `mesh_transport_udp_dropped_total` | `reason` = `not_quic`, `kernel_receive_buffer` |
//!
//! Every request is counted exactly once on each side when it ends: in
//! `requests_total` by the node that asked, in `requests_served_total` by the node
//! that was asked. A served request refused before its class byte was read (over the
//! in-flight limit, oversized, malformed) has class `unknown`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::frame::Class;

const CONNECTIONS: &str = "mesh_transport_connections";
pub(crate) const UDP_RECEIVED: &str = "mesh_transport_udp_datagrams_received_total";
pub(crate) const UDP_DROPPED: &str = "mesh_transport_udp_dropped_total";
const DATAGRAMS: &str = "mesh_transport_datagrams_total";
const DATAGRAMS_DROPPED: &str = "mesh_transport_datagrams_dropped_total";
const FRAMES: &str = "mesh_transport_frames_total";
const FRAMES_DROPPED: &str = "mesh_transport_frames_dropped_total";
const HANDSHAKE_FAILURES: &str = "mesh_transport_handshake_failures_total";
const BYTES: &str = "mesh_transport_bytes_total";
const EVENTS_DROPPED: &str = "mesh_transport_events_dropped_total";
const DUPLICATES: &str = "mesh_transport_duplicate_connections_total";
const DUPLICATES_DELAYED: &str = "mesh_transport_duplicate_closes_delayed_total";
const REQUESTS: &str = "mesh_transport_requests_total";
const REQUESTS_SERVED: &str = "mesh_transport_requests_served_total";

/// Class label for frames whose class is not known (decode errors).
const UNKNOWN_CLASS: &str = "unknown";

/// Traffic direction label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    In,
    Out,
}

impl Direction {
    const ALL: [Self; 2] = [Self::In, Self::Out];

    const fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The metric label value.
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $label, )+ }
            }

            const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// Why a handshake (dialing or accepting) failed.
    pub enum HandshakeFailure {
        /// TLS or certificate failure: a certificate from another CA, no usable name,
        /// a name other than the one dialed, no common ALPN. Backs off for 60 s.
        Auth => "auth",
        /// No answer within the handshake timeout.
        Timeout => "timeout",
        /// Refused, reset or closed by the peer.
        Reset => "reset",
        /// Anything else (local errors, version mismatch).
        Other => "other",
        /// The peer's name is bound to a live connection from another address: two
        /// agents hold a certificate for one name (see `state::is_name_conflict`).
        /// Counted by the side that refuses the newcomer and by the refused dialer,
        /// which backs off as after a reset.
        NameConflict => "name_conflict",
    }
}

label_enum! {
    /// Why a datagram was dropped.
    pub enum DatagramDrop {
        /// Received with a version byte this build does not speak.
        UnknownVersion => "unknown_version",
        /// Received empty (no version byte).
        Malformed => "malformed",
        /// Larger than the connection's maximum datagram size.
        TooLarge => "too_large",
        /// The inbound channel was full.
        InboundFull => "inbound_full",
        /// The inbound receiver was dropped.
        InboundClosed => "inbound_closed",
        /// Held while dialing, pushed out by a newer datagram (drop-oldest).
        PendingFull => "pending_full",
        /// Held while dialing, and the dial failed.
        DialFailed => "dial_failed",
        /// No connection, and the address is backing off after failed dials.
        Backoff => "backoff",
        /// The connection was lost or refuses datagrams.
        SendFailed => "send_failed",
        /// The transport is shut down.
        Shutdown => "shutdown",
    }
}

label_enum! {
    /// Why a frame was dropped.
    pub enum FrameDrop {
        /// The (peer, class) send queue was full; the caller got `SendError::QueueFull`.
        QueueFull => "queue_full",
        /// Larger than the frame limit; the caller got `SendError::TooLarge`.
        TooLarge => "too_large",
        /// The inbound channel was full.
        InboundFull => "inbound_full",
        /// The inbound receiver was dropped.
        InboundClosed => "inbound_closed",
        /// Received structurally wrong.
        Malformed => "malformed",
        /// Received with an unknown frame version.
        UnknownVersion => "unknown_version",
        /// Received with an unknown class.
        UnknownClass => "unknown_class",
        /// Received with a length over the limit; the stream was stopped.
        Oversized => "oversized",
        /// Queued for a peer that was disconnected.
        Disconnected => "disconnected",
        /// The stream broke while writing it.
        WriteFailed => "write_failed",
        /// Queued when the transport shut down.
        Shutdown => "shutdown",
    }
}

label_enum! {
    /// How a request this node sent ended (one per request, by the requester).
    pub enum RequestResult {
        /// A response arrived.
        Ok => "ok",
        /// No response by the deadline.
        Timeout => "timeout",
        /// The peer refused the request or dropped it without answering.
        Refused => "refused",
        /// The request or the response was over this node's limit.
        TooLarge => "too_large",
        /// The connection closed while the request was in flight.
        ConnectionLost => "connection_lost",
        /// No connection could be made (failed dial, backoff, or our own address).
        Unreachable => "unreachable",
        /// The transport was shut down.
        Shutdown => "shutdown",
        /// The response was not one well-formed frame of the request's class.
        Malformed => "malformed",
        /// The caller dropped the request future before it finished.
        Cancelled => "cancelled",
    }
}

label_enum! {
    /// How a request a peer sent to this node ended (one per request, by the server).
    pub enum ServedResult {
        /// The response was written in full.
        Answered => "answered",
        /// Refused: the peer already had `max_inbound_requests_per_peer` in flight.
        Busy => "busy",
        /// Refused: the inbound channel was full.
        InboundFull => "inbound_full",
        /// Refused: the inbound receiver was dropped.
        InboundClosed => "inbound_closed",
        /// Refused: the request announced more than `max_request_bytes`.
        TooLarge => "too_large",
        /// Refused: the request was not one well-formed frame.
        Malformed => "malformed",
        /// The application dropped the `Responder` without answering.
        NoResponse => "no_response",
        /// The response was over `max_response_bytes`: this node's (refused when the
        /// application gave it), or the requester's (it stopped the stream; seen only
        /// when its stop arrives before it acknowledged the whole response, else the
        /// request counts as `answered`).
        ResponseTooLarge => "response_too_large",
        /// The requester gave up (timed out or cancelled) before the response was
        /// written.
        Cancelled => "cancelled",
        /// The connection closed before the response was written.
        ConnectionLost => "connection_lost",
        /// The transport shut down before the response was written.
        Shutdown => "shutdown",
    }
}

impl From<&crate::frame::FrameError> for FrameDrop {
    fn from(e: &crate::frame::FrameError) -> Self {
        use crate::frame::FrameError;
        match e {
            FrameError::Oversized { .. } => Self::Oversized,
            FrameError::UnknownVersion(_) => Self::UnknownVersion,
            FrameError::UnknownClass(_) => Self::UnknownClass,
            FrameError::Malformed(_) => Self::Malformed,
        }
    }
}

const HANDSHAKE_KINDS: usize = HandshakeFailure::ALL.len();
const DATAGRAM_REASONS: usize = DatagramDrop::ALL.len();
const FRAME_REASONS: usize = FrameDrop::ALL.len();
const REQUEST_RESULTS: usize = RequestResult::ALL.len();
const SERVED_RESULTS: usize = ServedResult::ALL.len();

/// A snapshot of the transport's counters (the same numbers the metrics carry, for
/// this transport alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    handshake_failures: [u64; HANDSHAKE_KINDS],
    datagrams_dropped: [u64; DATAGRAM_REASONS],
    frames_dropped: [u64; FRAME_REASONS],
    requests: [u64; REQUEST_RESULTS],
    requests_served: [u64; SERVED_RESULTS],
    /// Connections closed because another connection to the same peer was kept.
    pub duplicate_connections: u64,
    /// Duplicate connections whose close waited past the grace period for request
    /// streams still open on them.
    pub duplicate_closes_delayed: u64,
    /// `Connected`/`Disconnected` events lost because the inbound channel was full.
    pub events_dropped: u64,
    /// Datagrams received and delivered.
    pub datagrams_in: u64,
    /// Datagrams handed to QUIC.
    pub datagrams_out: u64,
    /// Frames received and delivered.
    pub frames_in: u64,
    /// Frames written to a stream.
    pub frames_out: u64,
    /// UDP datagrams the endpoint's socket received, QUIC or not.
    pub udp_received: u64,
    /// Of those, datagrams that are not QUIC (no fixed bit), which quinn drops unparsed.
    pub udp_not_quic: u64,
}

impl TransportStats {
    /// Handshakes that failed with `kind`, dialing and accepting.
    pub fn handshake_failures(&self, kind: HandshakeFailure) -> u64 {
        self.handshake_failures[kind.index()]
    }

    /// Datagrams dropped for `reason`.
    pub fn datagrams_dropped(&self, reason: DatagramDrop) -> u64 {
        self.datagrams_dropped[reason.index()]
    }

    /// Frames dropped for `reason`, all classes together.
    pub fn frames_dropped(&self, reason: FrameDrop) -> u64 {
        self.frames_dropped[reason.index()]
    }

    /// Requests this node sent that ended with `result`, all classes together.
    pub fn requests(&self, result: RequestResult) -> u64 {
        self.requests[result.index()]
    }

    /// Requests from peers that ended with `result`, all classes together.
    pub fn requests_served(&self, result: ServedResult) -> u64 {
        self.requests_served[result.index()]
    }
}

/// The live counters behind [`TransportStats`]; every method also updates the metric.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    handshake_failures: [AtomicU64; HANDSHAKE_KINDS],
    datagrams_dropped: [AtomicU64; DATAGRAM_REASONS],
    frames_dropped: [AtomicU64; FRAME_REASONS],
    requests: [AtomicU64; REQUEST_RESULTS],
    requests_served: [AtomicU64; SERVED_RESULTS],
    duplicate_connections: AtomicU64,
    duplicate_closes_delayed: AtomicU64,
    events_dropped: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

impl Counters {
    pub(crate) fn handshake_failure(&self, kind: HandshakeFailure) {
        bump(&self.handshake_failures[kind.index()], 1);
        counter!(HANDSHAKE_FAILURES, "kind" => kind.as_str()).increment(1);
    }

    pub(crate) fn datagram_dropped(&self, reason: DatagramDrop, n: u64) {
        bump(&self.datagrams_dropped[reason.index()], n);
        counter!(DATAGRAMS_DROPPED, "reason" => reason.as_str()).increment(n);
    }

    pub(crate) fn frame_dropped(&self, class: Option<Class>, reason: FrameDrop, n: u64) {
        bump(&self.frames_dropped[reason.index()], n);
        let class = class.map_or(UNKNOWN_CLASS, Class::as_str);
        counter!(FRAMES_DROPPED, "class" => class, "reason" => reason.as_str()).increment(n);
    }

    pub(crate) fn request(&self, class: Class, result: RequestResult) {
        bump(&self.requests[result.index()], 1);
        counter!(REQUESTS, "class" => class.as_str(), "result" => result.as_str()).increment(1);
    }

    pub(crate) fn request_served(&self, class: Option<Class>, result: ServedResult) {
        bump(&self.requests_served[result.index()], 1);
        let class = class.map_or(UNKNOWN_CLASS, Class::as_str);
        counter!(REQUESTS_SERVED, "class" => class, "result" => result.as_str()).increment(1);
    }

    pub(crate) fn datagram(&self, direction: Direction, bytes: usize) {
        bump(
            match direction {
                Direction::In => &self.datagrams_in,
                Direction::Out => &self.datagrams_out,
            },
            1,
        );
        counter!(DATAGRAMS, "direction" => direction.as_str()).increment(1);
        self.bytes(direction, bytes);
    }

    pub(crate) fn frame(&self, direction: Direction, class: Class) {
        bump(
            match direction {
                Direction::In => &self.frames_in,
                Direction::Out => &self.frames_out,
            },
            1,
        );
        counter!(FRAMES, "direction" => direction.as_str(), "class" => class.as_str()).increment(1);
    }

    /// Stream bytes (frames count their bytes here, as they arrive in chunks).
    pub(crate) fn bytes(&self, direction: Direction, bytes: usize) {
        counter!(BYTES, "direction" => direction.as_str())
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    pub(crate) fn duplicate_connection(&self) {
        bump(&self.duplicate_connections, 1);
        counter!(DUPLICATES).increment(1);
    }

    pub(crate) fn duplicate_close_delayed(&self) {
        bump(&self.duplicate_closes_delayed, 1);
        counter!(DUPLICATES_DELAYED).increment(1);
    }

    pub(crate) fn event_dropped(&self) {
        bump(&self.events_dropped, 1);
        counter!(EVENTS_DROPPED).increment(1);
    }

    pub(crate) fn set_connections(&self, n: usize) {
        gauge!(CONNECTIONS).set(n as f64);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            handshake_failures: read(&self.handshake_failures),
            datagrams_dropped: read(&self.datagrams_dropped),
            frames_dropped: read(&self.frames_dropped),
            requests: read(&self.requests),
            requests_served: read(&self.requests_served),
            duplicate_connections: load(&self.duplicate_connections),
            duplicate_closes_delayed: load(&self.duplicate_closes_delayed),
            events_dropped: load(&self.events_dropped),
            datagrams_in: load(&self.datagrams_in),
            datagrams_out: load(&self.datagrams_out),
            frames_in: load(&self.frames_in),
            frames_out: load(&self.frames_out),
            // The socket's counts live with the socket; `Transport::stats` fills them.
            udp_received: 0,
            udp_not_quic: 0,
        }
    }
}

/// Describes every transport metric and sets each bounded label combination to zero.
/// Call once after installing the recorder.
pub fn register_metrics() {
    describe_counter!(
        UDP_RECEIVED,
        Unit::Count,
        "UDP datagrams the QUIC socket received, QUIC or not (garbage included)."
    );
    describe_counter!(
        UDP_DROPPED,
        Unit::Count,
        "UDP datagrams dropped before any connection: not QUIC (no fixed bit), or by the \
         kernel because the socket's receive buffer was full."
    );
    counter!(UDP_RECEIVED).absolute(0);
    for reason in ["not_quic", "kernel_receive_buffer"] {
        counter!(UDP_DROPPED, "reason" => reason).absolute(0);
    }
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Open peer connections (one per peer)."
    );
    describe_counter!(DATAGRAMS, Unit::Count, "QUIC datagrams sent and received.");
    describe_counter!(
        DATAGRAMS_DROPPED,
        Unit::Count,
        "Datagrams dropped, by reason."
    );
    describe_counter!(
        FRAMES,
        Unit::Count,
        "Stream frames sent and received, by class."
    );
    describe_counter!(
        FRAMES_DROPPED,
        Unit::Count,
        "Stream frames dropped, by class and reason."
    );
    describe_counter!(
        HANDSHAKE_FAILURES,
        Unit::Count,
        "Failed QUIC/TLS handshakes, dialing and accepting, by kind."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Datagram and stream payload bytes, by direction."
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Connected/Disconnected events lost to a full inbound channel."
    );
    describe_counter!(
        DUPLICATES,
        Unit::Count,
        "Connections closed because another connection to the same peer was kept."
    );
    describe_counter!(
        DUPLICATES_DELAYED,
        Unit::Count,
        "Duplicate connections whose close waited for request streams still open on them."
    );
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests this node sent, by class and how they ended."
    );
    describe_counter!(
        REQUESTS_SERVED,
        Unit::Count,
        "Requests peers sent to this node, by class and how they ended."
    );

    gauge!(CONNECTIONS).set(0.0);
    for direction in Direction::ALL {
        counter!(DATAGRAMS, "direction" => direction.as_str()).increment(0);
        counter!(BYTES, "direction" => direction.as_str()).increment(0);
        for class in Class::ALL {
            counter!(FRAMES, "direction" => direction.as_str(), "class" => class.as_str())
                .increment(0);
        }
    }
    for reason in DatagramDrop::ALL {
        counter!(DATAGRAMS_DROPPED, "reason" => reason.as_str()).increment(0);
    }
    let classes = Class::ALL.iter().map(|c| c.as_str()).chain([UNKNOWN_CLASS]);
    for class in classes {
        for reason in FrameDrop::ALL {
            counter!(FRAMES_DROPPED, "class" => class, "reason" => reason.as_str()).increment(0);
        }
        for result in ServedResult::ALL {
            counter!(REQUESTS_SERVED, "class" => class, "result" => result.as_str()).increment(0);
        }
    }
    for class in Class::ALL {
        for result in RequestResult::ALL {
            counter!(REQUESTS, "class" => class.as_str(), "result" => result.as_str()).increment(0);
        }
    }
    for kind in HandshakeFailure::ALL {
        counter!(HANDSHAKE_FAILURES, "kind" => kind.as_str()).increment(0);
    }
    counter!(EVENTS_DROPPED).increment(0);
    counter!(DUPLICATES).increment(0);
    counter!(DUPLICATES_DELAYED).increment(0);
}

/// Lets a hot-path warning through at most once per interval per key, and says how
/// many were held back in between. The counters carry the full numbers.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLimit {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when a warning for `key` may be logged now (with the number
    /// held back since the last one), `None` when it should be held back.
    pub(crate) fn allow(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get_mut(key) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_match_their_array_sizes() {
        assert_eq!(HandshakeFailure::ALL.len(), HANDSHAKE_KINDS);
        assert_eq!(DatagramDrop::ALL.len(), DATAGRAM_REASONS);
        assert_eq!(FrameDrop::ALL.len(), FRAME_REASONS);
        assert_eq!(RequestResult::ALL.len(), REQUEST_RESULTS);
        assert_eq!(ServedResult::ALL.len(), SERVED_RESULTS);
        for (i, r) in FrameDrop::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn every_frame_error_has_a_drop_reason_with_the_same_label() {
        use crate::frame::FrameError;
        for e in [
            FrameError::Oversized { len: 2, max: 1 },
            FrameError::UnknownVersion(9),
            FrameError::UnknownClass(9),
            FrameError::Malformed("x"),
        ] {
            assert_eq!(FrameDrop::from(&e).as_str(), e.as_str());
        }
    }

    #[test]
    fn counters_show_in_the_snapshot() {
        let c = Counters::default();
        c.handshake_failure(HandshakeFailure::Auth);
        c.datagram_dropped(DatagramDrop::TooLarge, 2);
        c.frame_dropped(None, FrameDrop::Oversized, 1);
        c.request(Class::State, RequestResult::Timeout);
        c.request_served(None, ServedResult::Busy);
        c.request_served(Some(Class::User), ServedResult::Busy);
        let s = c.snapshot();
        assert_eq!(s.requests(RequestResult::Timeout), 1);
        assert_eq!(s.requests(RequestResult::Ok), 0);
        assert_eq!(s.requests_served(ServedResult::Busy), 2);
        assert_eq!(s.handshake_failures(HandshakeFailure::Auth), 1);
        assert_eq!(s.handshake_failures(HandshakeFailure::Timeout), 0);
        assert_eq!(s.datagrams_dropped(DatagramDrop::TooLarge), 2);
        assert_eq!(s.frames_dropped(FrameDrop::Oversized), 1);
    }

    #[test]
    fn rate_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let rl = RateLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(rl.allow("a", t0), Some(0));
        assert_eq!(rl.allow("a", t0 + Duration::from_millis(10)), None);
        assert_eq!(rl.allow("a", t0 + Duration::from_millis(20)), None);
        assert_eq!(rl.allow("b", t0 + Duration::from_millis(20)), Some(0));
        assert_eq!(rl.allow("a", t0 + Duration::from_millis(1001)), Some(2));
    }
}
