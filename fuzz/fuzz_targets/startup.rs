//! The startup-packet parser must never panic and never read past the
//! length it validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::wire::startup::decode_startup;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = decode_startup(data) {
        assert!(used <= data.len());
    }
});
