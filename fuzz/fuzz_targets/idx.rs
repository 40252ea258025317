//! Arbitrary bytes into the IDX reader (gzip or raw): an error is fine, a panic is a bug, and a
//! decoded array is exactly as long as its dimensions say.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = worker::data::idx::decode_idx(data) {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
});
