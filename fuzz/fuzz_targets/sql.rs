//! The SQL readers that see client text: the read/write classifier and its
//! memo by shape, the settings and pin readers, and the
//! PREPARE/EXECUTE/DEALLOCATE reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let functions = ["pg_catalog.now".to_owned()];
    let class = pgwarden::routing::classify(data, &functions);
    // The memo, primed with the first half and with every digit changed
    // (the same shape when all of them are in numbers), answers for the
    // text as the classifier does.
    let _ = pgwarden::routing::classify_remembered(&data[..data.len() / 2], &functions);
    let renumbered: Vec<u8> = data
        .iter()
        .map(|&c| match c {
            b'0'..=b'8' => c + 1,
            b'9' => b'0',
            _ => c,
        })
        .collect();
    let _ = pgwarden::routing::classify_remembered(&renumbered, &functions);
    assert_eq!(pgwarden::routing::classify_remembered(data, &functions), class);
    let _ = pgwarden::sql::statements::read(data);
    let _ = pgwarden::state::classify(data);
    let _ = pgwarden::state::effect(data);
    let _ = pgwarden::state::pins::classify(data);
    let _ = pgwarden::routing::control::parse(data);
});
