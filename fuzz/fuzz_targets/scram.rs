//! The SCRAM exchange as a hostile client drives it: any client-first and
//! client-final message, with and without channel binding offered; only
//! the right proof (and binding) may succeed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::auth::scram::{ChannelBinding, ScramSecret, ScramServer};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (first, fin) = rest.split_at(usize::from(split >> 2).min(rest.len()));
    let binding = match split & 3 {
        0 => ChannelBinding::Unsupported,
        1 => ChannelBinding::NotChosen,
        _ => ChannelBinding::EndPoint(vec![7; 32]),
    };
    let secret = ScramSecret::from_password("pw", b"0123456789abcdef".to_vec(), 16);
    let Ok((server, _server_first)) = ScramServer::start(secret, first, &binding) else {
        return;
    };
    // A proof from random bytes never passes.
    assert!(server.finish(fin).is_err());
});
