//! MessagePack encoding (rmp-serde, named fields) with an exact size helper.
//!
//! Named fields cost a byte or two per struct field (the keys are one letter) and let
//! later versions add fields that older peers ignore, as in the rest of mesh. Decoding
//! never panics: malformed bytes, inconsistent states and trailing bytes are errors.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be encoded. Nothing is sent and nothing changes.
#[derive(Debug, thiserror::Error)]
#[error("encode: {0}")]
pub struct EncodeError(#[from] rmp_serde::encode::Error);

/// Why bytes did not decode. The input is discarded and nothing changes; a caller
/// should count it and drop the frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid encoding of the type, or the decoded state breaks an
    /// invariant (a dot outside its context, a dot listed twice, an empty range, ...).
    #[error("decode: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// A valid value was followed by more bytes.
    #[error("{extra} trailing bytes after a valid value")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes `value` as MessagePack with named fields.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Decodes one value that must span all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = T::deserialize(&mut de)?;
    let used = usize::try_from(de.position()).unwrap_or(usize::MAX);
    let extra = bytes.len().saturating_sub(used);
    if extra > 0 {
        return Err(DecodeError::TrailingBytes { extra });
    }
    Ok(value)
}

/// The exact length of [`encode`]'s output, computed without keeping the bytes.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, EncodeError> {
    let mut counter = Counter(0);
    rmp_serde::encode::write_named(&mut counter, value)?;
    Ok(counter.0)
}

/// A writer that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_the_encoding() {
        let value = (1u64, "mesh", vec![(7u8, u64::MAX)]);
        assert_eq!(
            encoded_len(&value).expect("len"),
            encode(&value).expect("encode").len()
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&5u32).expect("encode");
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }
}
