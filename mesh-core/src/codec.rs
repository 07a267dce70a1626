//! The SWIM wire codec: foca headers and member updates as MessagePack.
//!
//! foca writes into a size-limited buffer whose `put_slice` panics when full, so every
//! encode first serializes into a scratch vector and checks `remaining_mut()`. Decoding
//! reads from the front of the buffer and advances by exactly what it consumed; any
//! malformed input is an error, never a panic.

use bytes::{Buf, BufMut};
use foca::{Header, Member};

use crate::identity::NodeId;

/// Why a SWIM packet could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The encoded item does not fit in what is left of the packet.
    #[error("no room in the packet: need {need} bytes, {left} left")]
    NoRoom {
        /// Bytes the item needs.
        need: usize,
        /// Bytes left in the packet.
        left: usize,
    },
    /// Serialization failed.
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The bytes are not a valid item.
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// foca's codec for [`NodeId`] over MessagePack (named fields).
#[derive(Debug, Default, Clone, Copy)]
pub struct SwimCodec;

fn put<T: serde::Serialize>(item: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
    let bytes = rmp_serde::to_vec_named(item)?;
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::NoRoom {
            need: bytes.len(),
            left: buf.remaining_mut(),
        });
    }
    buf.put_slice(&bytes);
    Ok(())
}

fn take<T: serde::de::DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
    // foca hands us contiguous slices; copy only if a caller ever does not.
    let owned;
    let slice: &[u8] = if buf.chunk().len() == buf.remaining() {
        buf.chunk()
    } else {
        owned = buf.copy_to_bytes(buf.remaining());
        &owned
    };
    let mut cursor = std::io::Cursor::new(slice);
    let value = {
        let mut de = rmp_serde::Deserializer::new(&mut cursor);
        T::deserialize(&mut de)?
    };
    let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    if slice.len() == buf.remaining() {
        buf.advance(used.min(buf.remaining()));
    }
    Ok(value)
}

impl foca::Codec<NodeId> for SwimCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        take(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        take(buf)
    }
}

/// Decodes only the header of a SWIM packet, to learn who claims to have sent it.
pub fn peek_header(data: &[u8]) -> Result<Header<NodeId>, CodecError> {
    let mut slice = data;
    foca::Codec::decode_header(&mut SwimCodec, &mut slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Codec, Message, State};
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn id(name: &str, inc: u64) -> NodeId {
        NodeId::new(name, SocketAddr::from(([127, 0, 0, 1], 7000)), inc)
    }

    #[test]
    fn header_and_members_round_trip_and_consume_exactly_their_bytes() {
        let header = Header {
            src: id("a", 1),
            src_incarnation: 3,
            dst: id("b", 2),
            message: Message::Ping(7),
        };
        let mut buf = Vec::new();
        SwimCodec.encode_header(&header, &mut buf).expect("encode");
        let m = Member::new(id("c", 4), 2, State::Suspect);
        SwimCodec.encode_member(&m, &mut buf).expect("encode");
        let mut slice = &buf[..];
        assert_eq!(SwimCodec.decode_header(&mut slice).expect("decode"), header);
        assert_eq!(SwimCodec.decode_member(&mut slice).expect("decode"), m);
        assert!(slice.is_empty());
    }

    #[test]
    fn encoding_into_a_full_buffer_is_an_error_not_a_panic() {
        let header = Header {
            src: id("a", 1),
            src_incarnation: 3,
            dst: id("b", 2),
            message: Message::Announce,
        };
        let mut small = [0u8; 8];
        let err = SwimCodec
            .encode_header(&header, &mut small[..])
            .expect_err("must not fit");
        assert!(matches!(err, CodecError::NoRoom { .. }));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = peek_header(&data);
            let mut slice = &data[..];
            let _ = SwimCodec.decode_member(&mut slice);
        }
    }
}
