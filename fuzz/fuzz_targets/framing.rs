//! The framing reader, fed in arbitrary pieces: never panics, never
//! consumes more than it was given, and never returns a message longer
//! than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgwarden::wire::codec::{Item, Scanner, Step, TagSet};

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let whole = TagSet::of(b"ZQPBES");
    let mut scanner = Scanner::new();
    let mut buf = Vec::new();
    for piece in rest.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            match scanner.next(&buf[pos..], &whole, CAP) {
                Ok(Step::Item(item, used)) => {
                    assert!(used <= buf.len() - pos);
                    if let Item::Message { body, .. } = item {
                        assert!(body.len() + 4 <= CAP);
                    }
                    pos += used;
                }
                Ok(Step::NeedMore(_)) => break,
                Err(_) => return,
            }
        }
        buf.drain(..pos);
    }
});
