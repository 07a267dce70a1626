//! Length-prefixed frames carried on the long-lived uni streams, and as the single body
//! of a request or a response on a bi stream (see `Transport::request`).
//!
//! On the wire a frame is
//!
//! ```text
//! [body length: u32 big-endian][version: u8 = FRAME_VERSION][class: u8][payload ...]
//! ```
//!
//! where the length counts the *body* (version byte, class byte and payload) and never
//! the 4-byte prefix itself. Every limit in this module (`max`) applies to that body
//! length. What the payload holds (an `rmp-serde` envelope, for mesh) is the caller's
//! business.
//!
//! [`FrameDecoder`] reads frames back out of a byte stream delivered in arbitrary
//! chunks. It never panics on any input and refuses a length prefix larger than its
//! limit before buffering a single byte of that body.

use std::collections::VecDeque;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The frame format version written by [`encode_frame`] and accepted by [`FrameDecoder`].
pub const FRAME_VERSION: u8 = 1;

/// Default limit on a frame body (version + class + payload), 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Length of the big-endian length prefix.
const PREFIX_LEN: usize = 4;

/// Length of the body header (version byte + class byte).
const BODY_HEADER_LEN: usize = 2;

/// How much body memory the decoder reserves up front, whatever the prefix announces,
/// so that a peer announcing a large frame and then stalling does not pin `max` bytes.
const INITIAL_RESERVE: usize = 16 * 1024;

/// Traffic class: one long-lived uni stream per (peer, class) keeps per-class FIFO order.
///
/// Classes are independent: a slow `User` stream never holds back `Control` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Class {
    /// Protocol control traffic (membership side channels, handshakes between subsystems).
    Control = 0,
    /// Replicated state (CRDT deltas and digests).
    State = 1,
    /// Messages between user processes.
    User = 2,
}

impl Class {
    /// Every class, in wire order.
    pub const ALL: [Self; 3] = [Self::Control, Self::State, Self::User];

    /// A short lowercase name, used as a metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::State => "state",
            Self::User => "user",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<u8> for Class {
    type Error = FrameError;

    /// Reads a class byte; anything but 0, 1 or 2 is [`FrameError::UnknownClass`].
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Control),
            1 => Ok(Self::State),
            2 => Ok(Self::User),
            other => Err(FrameError::UnknownClass(other)),
        }
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame body is longer than the limit.
    ///
    /// From [`encode_frame`]: nothing was produced. From [`FrameDecoder`]: the body was
    /// not buffered, the frame boundary is lost and the decoder refuses all further
    /// input; the caller resets (stops) the stream.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// The body length announced (decode) or needed (encode).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame carries a version this build does not speak. The frame was skipped;
    /// the decoder stays usable.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// The frame names a traffic class this build does not know. The frame was skipped;
    /// the decoder stays usable.
    #[error("unknown traffic class {0}")]
    UnknownClass(u8),
    /// The frame is structurally wrong (for example its body is shorter than the
    /// version and class bytes). The frame was skipped; the decoder stays usable.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

impl FrameError {
    /// Every reason label [`FrameError::as_str`] can return.
    pub const REASONS: [&'static str; 4] =
        ["oversized", "unknown_version", "unknown_class", "malformed"];

    /// A short snake_case reason, used as a metric label value.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::UnknownVersion(_) => "unknown_version",
            Self::UnknownClass(_) => "unknown_class",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// Encodes one frame: `[body length u32 BE][FRAME_VERSION][class][payload]`.
///
/// `max` limits the body (`payload.len() + 2`); a larger frame is
/// [`FrameError::Oversized`] and nothing is produced.
pub fn encode_frame(class: Class, payload: &[u8], max: usize) -> Result<Bytes, FrameError> {
    let len = payload.len().saturating_add(BODY_HEADER_LEN);
    let oversized = FrameError::Oversized { len, max };
    if len > max {
        return Err(oversized);
    }
    let Ok(prefix) = u32::try_from(len) else {
        return Err(oversized);
    };
    let mut out = BytesMut::with_capacity(PREFIX_LEN + len);
    out.put_u32(prefix);
    out.put_u8(FRAME_VERSION);
    out.put_u8(class as u8);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Incremental decoder over a byte stream: [`push`](Self::push) chunks as they arrive,
/// then pull frames with [`next_frame`](Self::next_frame) until it returns `None`.
///
/// It never panics, whatever the input. At most one frame body (≤ `max` bytes) is
/// buffered at a time; a length prefix larger than `max` is refused as soon as its four
/// bytes are seen, before any of that body is stored.
///
/// After [`FrameError::Oversized`] the stream is unusable (the next frame boundary is
/// unknown): the decoder ignores further input and the caller is expected to reset the
/// stream. The other errors skip one frame and decoding continues.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Announced body length of the frame being read, once its prefix is complete.
    body_len: Option<usize>,
    body: BytesMut,
    ready: VecDeque<Result<(Class, Bytes), FrameError>>,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder that accepts frame bodies of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            body_len: None,
            body: BytesMut::new(),
            ready: VecDeque::new(),
            failed: false,
        }
    }

    /// Feeds the next chunk of the stream. Complete frames (and errors) become
    /// available from [`next_frame`](Self::next_frame). Ignored once the decoder has
    /// failed with [`FrameError::Oversized`].
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.failed {
            match self.body_len {
                None => {
                    let take = (PREFIX_LEN - self.prefix_len).min(data.len());
                    let (head, rest) = data.split_at(take);
                    self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(head);
                    self.prefix_len += take;
                    data = rest;
                    if self.prefix_len == PREFIX_LEN {
                        self.prefix_len = 0;
                        self.start_body(u32::from_be_bytes(self.prefix));
                    }
                }
                Some(len) => {
                    let take = (len - self.body.len()).min(data.len());
                    let (head, rest) = data.split_at(take);
                    self.body.extend_from_slice(head);
                    data = rest;
                }
            }
            self.finish_body_if_complete();
        }
    }

    /// The next decoded frame or error, in stream order; `None` when more input is
    /// needed.
    pub fn next_frame(&mut self) -> Option<Result<(Class, Bytes), FrameError>> {
        self.ready.pop_front()
    }

    /// Whether the decoder has hit [`FrameError::Oversized`] and refuses further input.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes held for the frame currently being read (prefix and partial body).
    pub fn buffered(&self) -> usize {
        self.prefix_len + self.body.len()
    }

    fn start_body(&mut self, announced: u32) {
        let len = usize::try_from(announced).unwrap_or(usize::MAX);
        if len > self.max {
            self.failed = true;
            self.body = BytesMut::new();
            self.ready
                .push_back(Err(FrameError::Oversized { len, max: self.max }));
            return;
        }
        self.body.reserve(len.min(INITIAL_RESERVE));
        self.body_len = Some(len);
    }

    fn finish_body_if_complete(&mut self) {
        let Some(len) = self.body_len else {
            return;
        };
        if self.body.len() < len {
            return;
        }
        self.body_len = None;
        let body = self.body.split().freeze();
        self.ready.push_back(decode_body(body));
    }
}

fn decode_body(body: Bytes) -> Result<(Class, Bytes), FrameError> {
    let [version, class, ..] = body[..] else {
        return Err(FrameError::Malformed(
            "frame body shorter than its version and class bytes",
        ));
    };
    if version != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(version));
    }
    let class = Class::try_from(class)?;
    Ok((class, body.slice(BODY_HEADER_LEN..)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(dec: &mut FrameDecoder) -> Vec<Result<(Class, Bytes), FrameError>> {
        std::iter::from_fn(|| dec.next_frame()).collect()
    }

    fn class_strategy() -> impl Strategy<Value = Class> {
        prop_oneof![Just(Class::Control), Just(Class::State), Just(Class::User)]
    }

    proptest! {
        #[test]
        fn frames_round_trip_across_arbitrary_chunking(
            frames in proptest::collection::vec(
                (class_strategy(), proptest::collection::vec(any::<u8>(), 0..300)),
                0..20,
            ),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let mut stream = Vec::new();
            for (class, payload) in &frames {
                let frame = encode_frame(*class, payload, DEFAULT_MAX_FRAME).expect("fits");
                stream.extend_from_slice(&frame);
            }
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut decoded = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                dec.push(chunk);
                decoded.extend(decode_all(&mut dec));
                rest = tail;
                i += 1;
            }
            let want: Vec<_> = frames
                .iter()
                .map(|(c, p)| Ok((*c, Bytes::copy_from_slice(p))))
                .collect();
            prop_assert_eq!(decoded, want);
            prop_assert_eq!(dec.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_respect_the_limit(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            max in 0usize..512,
        ) {
            let mut dec = FrameDecoder::new(max);
            for chunk in &chunks {
                dec.push(chunk);
                for (_, payload) in decode_all(&mut dec).into_iter().flatten() {
                    prop_assert!(payload.len() + 2 <= max);
                }
                prop_assert!(dec.buffered() <= max + 4);
            }
        }
    }

    #[test]
    fn oversized_length_is_refused_before_its_body_is_buffered() {
        let mut dec = FrameDecoder::new(100);
        // A prefix announcing 4 GiB, followed by some body bytes.
        dec.push(&[0xff, 0xff, 0xff, 0xff, FRAME_VERSION, 0, 1, 2, 3]);
        assert_eq!(
            dec.next_frame(),
            Some(Err(FrameError::Oversized {
                len: u32::MAX as usize,
                max: 100
            }))
        );
        assert!(dec.is_failed());
        assert_eq!(dec.buffered(), 0, "no body byte may be kept");
        // Further input, even a valid frame, is ignored: the boundary is lost.
        let valid = encode_frame(Class::User, b"x", 100).expect("fits");
        dec.push(&valid);
        assert_eq!(dec.next_frame(), None);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn limit_is_inclusive_and_applies_to_the_body() {
        let payload = vec![7u8; 98];
        let frame = encode_frame(Class::State, &payload, 100).expect("body of exactly 100 fits");
        let mut dec = FrameDecoder::new(100);
        dec.push(&frame);
        assert_eq!(
            dec.next_frame(),
            Some(Ok((Class::State, Bytes::from(payload))))
        );

        assert_eq!(
            encode_frame(Class::State, &[0u8; 99], 100),
            Err(FrameError::Oversized { len: 101, max: 100 })
        );
    }

    #[test]
    fn unknown_version_and_class_are_reported_and_skipped() {
        let mut dec = FrameDecoder::new(100);
        // version 9, class 0, payload "a"
        dec.push(&[0, 0, 0, 3, 9, 0, b'a']);
        // version 1, class 7, payload "b"
        dec.push(&[0, 0, 0, 3, FRAME_VERSION, 7, b'b']);
        // body of one byte: too short for version + class
        dec.push(&[0, 0, 0, 1, FRAME_VERSION]);
        // then a valid frame still decodes
        dec.push(&encode_frame(Class::Control, b"ok", 100).expect("fits"));
        assert_eq!(dec.next_frame(), Some(Err(FrameError::UnknownVersion(9))));
        assert_eq!(dec.next_frame(), Some(Err(FrameError::UnknownClass(7))));
        assert!(matches!(
            dec.next_frame(),
            Some(Err(FrameError::Malformed(_)))
        ));
        assert_eq!(
            dec.next_frame(),
            Some(Ok((Class::Control, Bytes::from_static(b"ok"))))
        );
        assert_eq!(dec.next_frame(), None);
        assert!(!dec.is_failed());
    }

    #[test]
    fn empty_payload_round_trips() {
        let mut dec = FrameDecoder::new(2);
        dec.push(&encode_frame(Class::User, b"", 2).expect("fits"));
        assert_eq!(dec.next_frame(), Some(Ok((Class::User, Bytes::new()))));
    }

    #[test]
    fn class_labels_and_bytes_agree() {
        for class in Class::ALL {
            assert_eq!(Class::try_from(class as u8), Ok(class));
        }
        assert_eq!(Class::try_from(3), Err(FrameError::UnknownClass(3)));
        let labels: Vec<_> = Class::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["control", "state", "user"]);
    }
}
