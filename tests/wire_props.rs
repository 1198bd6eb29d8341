//! Property tests of the framing and startup parsers (the same code the
//! `fuzz/` targets exercise): they never panic, and splitting input at any
//! point never changes what is read.
#![allow(clippy::unwrap_used)]

use pgwarden::wire::codec::{FrameError, Item, Scanner, Step, TagSet};
use pgwarden::wire::startup::decode_startup;
use proptest::prelude::*;

fn message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300))
}

fn encode(msgs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, body) in msgs {
        out.push(*tag);
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// Feeds `input` to a scanner in pieces ending at `cuts`, as reads would
/// deliver it, and returns (tag, body) of every message seen.
fn scan_in_pieces(
    input: &[u8],
    cuts: &[usize],
    whole: &TagSet,
) -> Result<Vec<(u8, Vec<u8>)>, FrameError> {
    let mut scanner = Scanner::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    for end in ends {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        let mut pos = 0;
        loop {
            match scanner.next(&buf[pos..], whole, 1 << 20)? {
                Step::Item(Item::Message { tag, body }, used) => {
                    out.push((tag, body.to_vec()));
                    pos += used;
                }
                Step::Item(Item::Header { tag, .. }, used) => {
                    out.push((tag, Vec::new()));
                    pos += used;
                }
                Step::Item(Item::Body(n), used) => {
                    let body = &buf[pos..pos + n];
                    if let Some(last) = out.last_mut() {
                        last.1.extend_from_slice(body);
                    }
                    pos += used;
                }
                Step::NeedMore(_) => break,
            }
        }
        buf.drain(..pos);
    }
    Ok(out)
}

proptest! {
    #[test]
    fn split_reads_see_the_same_messages(
        msgs in proptest::collection::vec(message(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        whole_tags in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let input = encode(&msgs);
        let whole = TagSet::of(&whole_tags);
        let seen = scan_in_pieces(&input, &cuts, &whole).unwrap();
        prop_assert_eq!(seen, msgs);
    }

    #[test]
    fn scanner_never_panics_on_garbage(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let _ = scan_in_pieces(&input, &cuts, &TagSet::of(b"ZQ"));
    }

    #[test]
    fn startup_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_startup(&input);
    }

    #[test]
    fn startup_params_round_trip(
        params in proptest::collection::vec(("[a-z_]{1,12}", "[ -~]{0,20}"), 0..6),
    ) {
        let mut buf = bytes::BytesMut::new();
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pgwarden::wire::frontend::startup_message(&mut buf, &pairs);
        let decoded = decode_startup(&buf).unwrap().unwrap().0;
        let expected = pgwarden::wire::startup::StartupPacket::Startup { minor: 0, params: params.clone() };
        prop_assert_eq!(decoded, expected);
    }
}
