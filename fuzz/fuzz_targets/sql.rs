//! The SQL readers that see client text: the read/write classifier, the
//! settings and pin readers, and the PREPARE/EXECUTE/DEALLOCATE reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pgwarden::routing::classify(data, &["pg_catalog.now".to_owned()]);
    let _ = pgwarden::sql::statements::read(data);
    let _ = pgwarden::state::classify(data);
    let _ = pgwarden::state::effect(data);
    let _ = pgwarden::state::pins::classify(data);
    let _ = pgwarden::routing::control::parse(data);
});
