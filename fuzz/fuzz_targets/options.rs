//! The `options` startup parameter (libpq's escaping) and the console's
//! command parser: text a client chooses, before and after login.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pgwarden::state::options::parse(text);
    let _ = pgwarden::admin::command::parse(text);
});
