//! The transport frame decoder on arbitrary bytes: `[max u16 BE][n][n chunk sizes][stream]`.
//!
//! The stream is pushed in the chunks given and the result compared with a whole-buffer
//! reference parser written from the format's docs: same frames and errors in the same
//! order, the same bytes left buffered, no frame over the limit, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesh_fuzz::check_frame_stream;

fuzz_target!(|data: &[u8]| {
    let Some((&[m0, m1, n], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let max = usize::from(u16::from_be_bytes([m0, m1]));
    let n = usize::from(n).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    check_frame_stream(stream, max, sizes);
});
