//! [`Flow`] fed byte fixtures: what the client sends is framed and noted
//! as sent, what the server answers is framed and its ReadyForQuery
//! noted, exactly as the session's I/O loop does.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::wire::codec::Item;
use crate::wire::{put_cstr, put_message};

const MAX: usize = 1 << 20;

fn query(sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    put_message(&mut b, fe::QUERY, |b| put_cstr(b, sql.as_bytes()));
    b
}

/// Parse, Bind, Execute of an unnamed statement, then Sync.
fn extended(sql: &str, sync: bool) -> BytesMut {
    let mut b = BytesMut::new();
    put_message(&mut b, fe::PARSE, |b| {
        put_cstr(b, b"");
        put_cstr(b, sql.as_bytes());
        b.put_u16(0);
    });
    put_message(&mut b, fe::BIND, |b| {
        put_cstr(b, b"");
        put_cstr(b, b"");
        b.put_u16(0);
        b.put_u16(0);
        b.put_u16(0);
    });
    put_message(&mut b, fe::EXECUTE, |b| {
        put_cstr(b, b"");
        b.put_u32(0);
    });
    if sync {
        put_message(&mut b, fe::SYNC, |_| {});
    }
    b
}

fn ready(status: u8) -> BytesMut {
    let mut b = BytesMut::new();
    be::ready_for_query(&mut b, status);
    b
}

fn complete(tag: &str) -> BytesMut {
    let mut b = BytesMut::new();
    be::command_complete(&mut b, tag);
    b
}

fn error(code: &str) -> BytesMut {
    let mut b = BytesMut::new();
    be::error_response(&mut b, be::Severity::Error, code, "boom", None);
    b
}

fn join(parts: &[BytesMut]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// Frames `bytes` from the client as the session does; returns the tags.
fn send(flow: &mut Flow, bytes: &[u8]) -> Vec<u8> {
    let mut tags = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match flow.next_client(&bytes[pos..], &TagSet::EMPTY) {
            Ok(Step::Item(Item::Header { tag, .. }, used)) => {
                flow.sent(tag);
                tags.push(tag);
                pos += used;
            }
            Ok(Step::Item(Item::Body(_), used)) => pos += used,
            Ok(Step::Item(Item::Message { tag, .. }, used)) => {
                flow.sent(tag);
                tags.push(tag);
                pos += used;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    tags
}

/// Frames the server's `bytes`; returns each `ready()` answer.
fn answer(flow: &mut Flow, bytes: &[u8]) -> Vec<Option<bool>> {
    let whole = TagSet::of(&[be::READY_FOR_QUERY]);
    let mut done = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match flow.next_server(&bytes[pos..], &whole) {
            Ok(Step::Item(Item::Message { tag, body }, used)) => {
                if tag == be::READY_FOR_QUERY {
                    done.push(flow.ready(body[0]));
                }
                pos += used;
            }
            Ok(Step::Item(_, used)) => pos += used,
            other => panic!("unexpected {other:?}"),
        }
    }
    done
}

#[test]
fn a_pipeline_is_answered_request_by_request() {
    let mut flow = Flow::new(MAX);
    let sent = join(&[extended("SELECT 1", true), query("SELECT 2")]);
    assert_eq!(
        send(&mut flow, &sent),
        [fe::PARSE, fe::BIND, fe::EXECUTE, fe::SYNC, fe::QUERY]
    );
    assert_eq!(flow.pending(), 2);
    assert!(!flow.mid_batch());
    let first = join(&[complete("SELECT 1"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &first), [None], "one request still owed");
    assert!(!flow.quiet());
    assert_eq!(answer(&mut flow, &ready(be::TX_IDLE)), [Some(true)]);
    assert!(flow.quiet());
    assert_eq!(
        flow.next(PoolMode::Transaction, false, false),
        Next::Release(Rest::Clean)
    );
}

#[test]
fn a_batch_without_sync_keeps_the_server() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &extended("SELECT 1", false));
    assert!(flow.mid_batch() && !flow.quiet());
    assert_eq!(flow.pending(), 0);
    assert_eq!(
        flow.left(true, false, false),
        Rest::Broken,
        "a batch left open"
    );
    send(&mut flow, &{
        let mut b = BytesMut::new();
        put_message(&mut b, fe::SYNC, |_| {});
        b
    });
    assert_eq!(flow.pending(), 1);
}

#[test]
fn an_error_before_sync_is_answered_at_the_sync() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &extended("SELECT 1/0", true));
    // The server skips to the Sync: one ErrorResponse, one ReadyForQuery.
    let answered = join(&[error("22012"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &answered), [Some(true)]);
    assert!(flow.quiet() && !flow.in_transaction());
}

#[test]
fn a_transaction_keeps_its_server_until_it_ends() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &query("BEGIN; INSERT INTO t VALUES (1)"));
    let open = join(&[complete("BEGIN"), complete("INSERT 0 1"), ready(b'T')]);
    assert_eq!(answer(&mut flow, &open), [Some(false)]);
    assert!(flow.in_transaction());
    assert_eq!(flow.next(PoolMode::Transaction, false, false), Next::Keep);
    assert_eq!(
        flow.next(PoolMode::Statement, false, false),
        Next::RefuseTransaction
    );
    // The client leaves here: the server is rolled back before reuse.
    assert_eq!(flow.left(true, false, false), Rest::NeedsRollback);
    // A failed transaction too.
    send(&mut flow, &query("SELECT 1/0"));
    let failed = join(&[error("22012"), ready(b'E')]);
    assert_eq!(answer(&mut flow, &failed), [Some(false)]);
    assert_eq!(flow.left(true, false, true), Rest::NeedsRollback);
    send(&mut flow, &query("ROLLBACK"));
    let ended = join(&[complete("ROLLBACK"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &ended), [Some(true)]);
    assert_eq!(
        flow.next(PoolMode::Transaction, false, true),
        Next::Release(Rest::NeedsReset),
        "server_reset_query_always"
    );
}

#[test]
fn a_pinned_or_session_mode_client_keeps_its_server() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &query("LISTEN x"));
    answer(&mut flow, &join(&[complete("LISTEN"), ready(be::TX_IDLE)]));
    assert_eq!(flow.next(PoolMode::Transaction, true, false), Next::Keep);
    assert_eq!(flow.next(PoolMode::Session, false, false), Next::Keep);
    assert_eq!(
        flow.left(true, true, false),
        Rest::Broken,
        "pinned state dies with it"
    );
    assert_eq!(flow.left(true, false, true), Rest::NeedsReset);
}

#[test]
fn an_answer_split_across_reads_is_not_at_rest() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &query("SELECT 1"));
    let answered = join(&[complete("SELECT 1"), ready(be::TX_IDLE)]);
    let (head, tail) = answered.split_at(answered.len() - 3);
    // The CommandComplete whole, the ReadyForQuery's first bytes only.
    let whole = TagSet::of(&[be::READY_FOR_QUERY]);
    let mut used = 0;
    loop {
        match flow.next_server(&head[used..], &whole) {
            Ok(Step::Item(_, n)) => used += n,
            Ok(Step::NeedMore(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(flow.pending(), 1, "the ReadyForQuery has not arrived whole");
    assert!(!flow.quiet());
    let rest: Vec<u8> = head[used..].iter().chain(tail).copied().collect();
    assert_eq!(answer(&mut flow, &rest), [Some(true)]);
    assert!(flow.quiet());
}

#[test]
fn copy_data_streams_through_without_ending_the_request() {
    let mut flow = Flow::new(MAX);
    send(&mut flow, &query("COPY t FROM STDIN"));
    let mut copy = BytesMut::new();
    put_message(&mut copy, b'G', |b| {
        b.put_u8(0);
        b.put_u16(0);
    });
    assert_eq!(answer(&mut flow, &copy), Vec::<Option<bool>>::new());
    let mut data = BytesMut::new();
    put_message(&mut data, fe::COPY_DATA, |b| b.put_slice(b"1\n"));
    put_message(&mut data, fe::COPY_DONE, |_| {});
    assert_eq!(send(&mut flow, &data), [fe::COPY_DATA, fe::COPY_DONE]);
    assert_eq!(flow.pending(), 1, "COPY data is not a request");
    let done = join(&[complete("COPY 1"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &done), [Some(true)]);
}

#[test]
fn notices_and_notifications_change_nothing() {
    let mut flow = Flow::new(MAX);
    let mut notice = BytesMut::new();
    be::notice_response(&mut notice, "hello", None);
    assert!(answer(&mut flow, &notice).is_empty());
    assert!(flow.quiet());
}

#[test]
fn oversized_and_foreign_messages_are_refused_before_a_server_is_borrowed() {
    let flow = Flow::new(64);
    let mut big = BytesMut::new();
    put_message(&mut big, fe::QUERY, |b| b.put_slice(&[b'x'; 100]));
    assert!(flow.check_client_header(&big).is_err());
    assert!(flow.check_client_header(&query("SELECT 1")).is_ok());
    // A second StartupMessage starts with a zero byte.
    assert!(matches!(
        flow.check_client_header(&[0, 0, 0, 8, 4, 210, 22, 47]),
        Err(FrameError::UnknownType { tag: 0 })
    ));
    assert!(flow.check_client_header(&[]).is_ok());
}
