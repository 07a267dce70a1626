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
