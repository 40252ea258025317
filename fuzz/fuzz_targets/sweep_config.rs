//! Arbitrary bytes into the sweep-config parser (YAML or JSON): an error is fine, a panic is a
//! bug, and every error must name a field path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = coordinator::config::SweepSpec::parse(&text) {
        assert!(!e.path.is_empty(), "an error without a field path: {e}");
    }
});
