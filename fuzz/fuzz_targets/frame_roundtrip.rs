//! Structure-aware: arbitrary frames are encoded, concatenated, optionally corrupted,
//! and decoded in arbitrary chunks. Uncorrupted, every frame comes back exactly;
//! corrupted, the decoder still agrees with the reference parser and never panics.
#![no_main]
use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::check_frame_stream;
use mesh_transport::frame::{encode_frame, Class, FrameDecoder, FrameError};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ArbClass {
    Control,
    State,
    User,
}

impl From<ArbClass> for Class {
    fn from(c: ArbClass) -> Self {
        match c {
            ArbClass::Control => Class::Control,
            ArbClass::State => Class::State,
            ArbClass::User => Class::User,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    max: u16,
    frames: Vec<(ArbClass, Vec<u8>)>,
    sizes: Vec<u8>,
    /// (position, xor mask) edits applied to the encoded stream.
    corrupt: Vec<(u16, u8)>,
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max);
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for (class, payload) in &input.frames {
        match encode_frame((*class).into(), payload, max) {
            Ok(frame) => {
                assert_eq!(frame.len(), 4 + 2 + payload.len());
                stream.extend_from_slice(&frame);
                want.push(Ok(((*class).into(), Bytes::copy_from_slice(payload))));
            }
            Err(FrameError::Oversized { len, max: m }) => {
                assert_eq!((len, m), (payload.len() + 2, max));
                assert!(len > max);
            }
            Err(other) => panic!("encode_frame failed with {other:?}"),
        }
    }
    let mut dec = FrameDecoder::new(max);
    let mut got = Vec::new();
    for chunk in mesh_fuzz::chunked(&stream, &input.sizes) {
        dec.push(chunk);
        got.extend(std::iter::from_fn(|| dec.next_frame()));
    }
    assert_eq!(got, want, "frames did not round-trip");
    assert_eq!(dec.buffered(), 0);
    assert!(!dec.is_failed());

    if !input.corrupt.is_empty() && !stream.is_empty() {
        for &(pos, mask) in &input.corrupt {
            let i = usize::from(pos) % stream.len();
            stream[i] ^= mask;
        }
        check_frame_stream(&stream, max, &input.sizes);
    }
});
