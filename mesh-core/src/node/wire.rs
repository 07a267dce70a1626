//! What the node puts in stream frames and requests.
//!
//! The transport frames every payload with a version byte and a class
//! ([`mesh_types::frame`]); inside, each class carries one MessagePack enum with
//! named fields (`rmp_serde::to_vec_named`), so fields can be added later with
//! `#[serde(default)]` and older peers ignore keys they do not know. Decoding never
//! panics: a payload that does not decode is dropped and counted with a reason.
//!
//! | class     | payload            | what                                                |
//! |-----------|--------------------|-----------------------------------------------------|
//! | `State`   | [`StateFrame`]     | delta batches, anti-entropy pushes                  |
//! | `State`   | [`AeRequest`] / [`AeResponse`] | the anti-entropy request/response (bi stream) |
//! | `User`    | [`UserFrame`]      | messages between processes, and their acks          |
//! | `Control` | [`ControlFrame`]   | the quorum plane                                    |

use bytes::Bytes;
use mesh_crdt::{Delta, Digest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::pid::Pid;
use crate::registry::{GroupEntry, NameClaim};
use crate::tags::TagsItem;

/// A groups delta together with the processes whose exit it records, so that
/// receivers can report those removals as `ProcessExit` rather than `Left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupsItem {
    /// The delta.
    #[serde(rename = "d")]
    pub delta: Delta<String, GroupEntry>,
    /// Processes that exited (their removals in `delta` are exits).
    #[serde(rename = "x", default, skip_serializing_if = "Vec::is_empty")]
    pub exited: Vec<Pid>,
    /// The origin's wall clock (ms since the Unix epoch) when it made the change, for
    /// the propagation-lag histogram. Only meaningful between hosts with synchronised
    /// clocks (and exact on one machine).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

/// State-class frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFrame {
    /// A batch of dissemination items (encoded by
    /// [`crate::dissemination::encode_batch`]).
    Batch(#[serde(with = "bytes_as_bin")] Bytes),
    /// The second half of a push-pull anti-entropy round: what the requester found the
    /// responder lacking.
    Push {
        /// Groups state the peer lacks.
        #[serde(rename = "g")]
        groups: Delta<String, GroupEntry>,
        /// Names state the peer lacks.
        #[serde(rename = "n")]
        names: Delta<String, NameClaim>,
        /// Node tags, sent when the peer's tags digest differs from ours ([`crate::tags`]).
        #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<TagsItem>,
    },
}

/// The first half of an anti-entropy round: the requester's digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AeRequest {
    /// Digest of the requester's groups replica.
    #[serde(rename = "g")]
    pub groups: Digest<String>,
    /// Digest of the requester's names replica.
    #[serde(rename = "n")]
    pub names: Digest<String>,
    /// Digest of the requester's tag table ([`crate::tags::TagTable::digest`]); absent
    /// from peers that predate tags.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<u64>,
}

/// The answer to an [`AeRequest`]: what the requester lacks (possibly cut to a size
/// bound; the rest comes in later rounds) and the responder's own digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AeResponse {
    /// Groups state the requester lacks.
    #[serde(rename = "g")]
    pub groups: Delta<String, GroupEntry>,
    /// Names state the requester lacks.
    #[serde(rename = "n")]
    pub names: Delta<String, NameClaim>,
    /// The responder's groups digest.
    #[serde(rename = "gd")]
    pub groups_digest: Digest<String>,
    /// The responder's names digest.
    #[serde(rename = "nd")]
    pub names_digest: Digest<String>,
    /// Every tags item the responder holds, when the requester's tags digest differed
    /// from its own (or was absent).
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagsItem>,
    /// The responder's tags digest (after it answered).
    #[serde(rename = "td", default, skip_serializing_if = "Option::is_none")]
    pub tags_digest: Option<u64>,
}

/// Why a message to a process was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Undeliverable {
    /// No such process on the node (it exited, or belongs to an earlier boot).
    #[error("no such process")]
    NoProcess,
    /// The process's mailbox is full.
    #[error("the mailbox is full")]
    MailboxFull,
    /// The message named a strong name at a version the node no longer holds.
    #[error("stale strong-name version")]
    StaleVersion,
}

impl Undeliverable {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoProcess => "no_process",
            Self::MailboxFull => "mailbox_full",
            Self::StaleVersion => "stale_version",
        }
    }
}

/// User-class frames: messages to processes, one frame per destination node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserFrame {
    /// A message for some processes of the receiving node.
    Send {
        /// Sender-chosen id; with `ack` the receiver answers with [`UserFrame::Ack`].
        #[serde(rename = "i")]
        id: u64,
        /// Whether the sender waits for the outcome.
        #[serde(rename = "a", default)]
        ack: bool,
        /// The sending process, if any.
        #[serde(rename = "f", default)]
        from: Option<Pid>,
        /// The receiving node's boot incarnation the targets belong to.
        #[serde(rename = "b")]
        incarnation: u64,
        /// Local ids of the target processes on the receiving node.
        #[serde(rename = "t")]
        targets: Vec<u64>,
        /// A strong name and the version the sender resolved it at: the receiver
        /// refuses the message unless the name is still at that version there.
        #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
        strong: Option<(String, u64)>,
        /// The payload.
        #[serde(rename = "p", with = "bytes_as_bin")]
        payload: Bytes,
    },
    /// The outcome of an acknowledged [`UserFrame::Send`].
    Ack {
        /// The send's id.
        #[serde(rename = "i")]
        id: u64,
        /// Targets delivered to.
        #[serde(rename = "d")]
        delivered: u32,
        /// Targets not delivered to, and why.
        #[serde(rename = "f", default)]
        failed: Vec<(u64, Undeliverable)>,
    },
}

/// Control-class frames: the quorum plane's messages (opaque here; the quorum module
/// encodes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlFrame {
    /// A quorum-plane message.
    Quorum(#[serde(with = "bytes_as_bin")] Bytes),
}

/// Encodes any wire value (named fields). Encoding owned plain data cannot fail in
/// practice; the error is kept for honesty.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value).map(Bytes::from)
}

/// The MessagePack header of an encoded `ControlFrame::Quorum`: a one-entry map, the
/// variant's name, and the bin marker of its payload (at most 5 bytes).
const QUORUM_TAG: &[u8] = &[0x81, 0xa6, b'q', b'u', b'o', b'r', b'u', b'm'];
const QUORUM_HEADER_MAX: usize = QUORUM_TAG.len() + 5;

/// Encodes `msg` as the [`ControlFrame::Quorum`] frame that carries it, in one pass:
/// the message is written once, after room for the frame's header, which is then put
/// right in front of it with the shortest bin marker — the same bytes as encoding the
/// message and then the frame around it, without the second encoding and copy.
/// Returns the frame and the message's own length.
pub(crate) fn encode_quorum_frame<T: Serialize>(
    msg: &T,
) -> Result<(Bytes, usize), rmp_serde::encode::Error> {
    let mut buf = vec![0u8; QUORUM_HEADER_MAX];
    rmp_serde::encode::write_named(&mut buf, msg)?;
    let len = buf.len() - QUORUM_HEADER_MAX;
    let mut marker = Vec::with_capacity(5);
    if let Ok(n) = u8::try_from(len) {
        marker.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(len) {
        marker.push(0xc5);
        marker.extend_from_slice(&n.to_be_bytes());
    } else {
        let n = u32::try_from(len).map_err(|_| {
            rmp_serde::encode::Error::Syntax("a quorum message over 4 GiB".to_owned())
        })?;
        marker.push(0xc6);
        marker.extend_from_slice(&n.to_be_bytes());
    }
    let start = QUORUM_HEADER_MAX - QUORUM_TAG.len() - marker.len();
    buf[start..start + QUORUM_TAG.len()].copy_from_slice(QUORUM_TAG);
    buf[start + QUORUM_TAG.len()..QUORUM_HEADER_MAX].copy_from_slice(&marker);
    Ok((Bytes::from(buf).slice(start..), len))
}

/// Decodes a wire value; never panics.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// `Bytes` as a MessagePack bin.
pub(crate) mod bytes_as_bin {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let v: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        Ok(Bytes::from(v.0))
    }

    /// Accepts a MessagePack bin (or an array of bytes) without an extra crate.
    mod serde_bytes_buf {
        use serde::de::{self, SeqAccess, Visitor};
        use serde::{Deserialize, Deserializer};

        pub(crate) struct Buf(pub(crate) Vec<u8>);

        impl<'de> Deserialize<'de> for Buf {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Buf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Buf, E> {
                        Ok(Buf(v.to_vec()))
                    }
                    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Buf, E> {
                        Ok(Buf(v))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Buf, A::Error> {
                        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                        while let Some(b) = seq.next_element::<u8>()? {
                            out.push(b);
                        }
                        Ok(Buf(out))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass frame is byte for byte the two-step one, for messages whose length
    /// takes each bin marker width (8, 16 and 32 bits), and decodes back.
    #[test]
    fn a_quorum_frame_encoded_in_one_pass_is_the_two_step_encoding() {
        for len in [0usize, 1, 200, 255, 256, 300, 65_535, 65_536, 70_000] {
            let msg = serde_bytes_like(len);
            let (frame, inner) = encode_quorum_frame(&msg).expect("encodes");
            let two_step =
                encode(&ControlFrame::Quorum(encode(&msg).expect("inner"))).expect("outer");
            assert_eq!(frame, two_step, "payload of {len} bytes");
            assert_eq!(inner, encode(&msg).expect("inner").len());
            match decode::<ControlFrame>(&frame) {
                Ok(ControlFrame::Quorum(b)) => {
                    assert_eq!(decode::<Vec<u8>>(&b).expect("inner decodes"), msg);
                }
                Err(e) => panic!("does not decode: {e}"),
            }
        }
    }

    fn serde_bytes_like(len: usize) -> Vec<u8> {
        // A Vec<u8> encodes as an array of small ints: its encoded length tracks `len`
        // closely enough to cross each marker width.
        (0..len).map(|i| (i % 100) as u8).collect()
    }
}
