//! [`Flow`] fed byte fixtures: what the client sends is framed and noted
//! as sent, what the server answers is framed and its ReadyForQuery
//! noted, exactly as the session's I/O loop does.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::prepared::Registry;
use crate::server::statements::ServerStatements;
use crate::state::ServerParams;
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

/// What the session lends the flow when nothing is tracked or routed.
fn plain(registry: &Registry) -> Outbound<'_> {
    Outbound {
        tracker: None,
        server: None,
        registry,
        one_unit: false,
        routed: false,
        queries: None,
    }
}

/// The client sends `bytes`, as the session's loop hands them over.
fn send(flow: &mut Flow, bytes: &[u8]) -> ClientStep {
    let registry = Registry::default();
    let step = flow.on_client(bytes, plain(&registry));
    step.unwrap_or_else(|e| panic!("refused: {e}"))
}

/// The server answers `bytes`: every request answered? (`Some(idle)`)
fn answer(flow: &mut Flow, bytes: &[u8]) -> Option<bool> {
    let step = answer_step(flow, bytes);
    assert_eq!(step.forward, bytes.len(), "all of it reaches the client");
    step.answered
}

fn answer_step(flow: &mut Flow, bytes: &[u8]) -> ServerStep {
    let step = try_answer(flow, bytes);
    step.unwrap_or_else(|e| panic!("malformed: {e}"))
}

fn try_answer(flow: &mut Flow, bytes: &[u8]) -> Result<ServerStep, FrameError> {
    let mut prepared = ServerStatements::default();
    let mut settings = ServerParams::default();
    let inbound = Inbound {
        tracker: None,
        prepared: &mut prepared,
        settings: &mut settings,
    };
    flow.on_server(bytes, inbound)
}

#[test]
fn a_pipeline_is_answered_request_by_request() {
    let mut flow = Flow::new(MAX, MAX);
    let sent = join(&[extended("SELECT 1", true), query("SELECT 2")]);
    let step = send(&mut flow, &sent);
    assert_eq!((step.forward, step.requests), (sent.len(), 2));
    assert!(step.started && !step.hold && !step.terminate);
    assert_eq!(flow.pending(), 2);
    assert!(!flow.mid_batch());
    let first = join(&[complete("SELECT 1"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &first), None, "one request still owed");
    assert!(!flow.quiet());
    assert_eq!(answer(&mut flow, &ready(be::TX_IDLE)), Some(true));
    assert!(flow.quiet());
    assert_eq!(
        flow.next(PoolMode::Transaction, false, false),
        Next::Release(Rest::Clean)
    );
}

#[test]
fn a_batch_without_sync_keeps_the_server() {
    let mut flow = Flow::new(MAX, MAX);
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
    let mut flow = Flow::new(MAX, MAX);
    send(&mut flow, &extended("SELECT 1/0", true));
    // The server skips to the Sync: one ErrorResponse, one ReadyForQuery.
    let answered = join(&[error("22012"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &answered), Some(true));
    assert!(flow.quiet() && !flow.in_transaction());
}

#[test]
fn a_transaction_keeps_its_server_until_it_ends() {
    let mut flow = Flow::new(MAX, MAX);
    send(&mut flow, &query("BEGIN; INSERT INTO t VALUES (1)"));
    let open = join(&[complete("BEGIN"), complete("INSERT 0 1"), ready(b'T')]);
    assert_eq!(answer(&mut flow, &open), Some(false));
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
    assert_eq!(answer(&mut flow, &failed), Some(false));
    assert_eq!(flow.left(true, false, true), Rest::NeedsRollback);
    send(&mut flow, &query("ROLLBACK"));
    let ended = join(&[complete("ROLLBACK"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &ended), Some(true));
    assert_eq!(
        flow.next(PoolMode::Transaction, false, true),
        Next::Release(Rest::NeedsReset),
        "server_reset_query_always"
    );
}

#[test]
fn a_pinned_or_session_mode_client_keeps_its_server() {
    let mut flow = Flow::new(MAX, MAX);
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
    let mut flow = Flow::new(MAX, MAX);
    send(&mut flow, &query("SELECT 1"));
    let answered = join(&[complete("SELECT 1"), ready(be::TX_IDLE)]);
    let (head, tail) = answered.split_at(answered.len() - 3);
    // The CommandComplete whole, the ReadyForQuery's first bytes only.
    let step = answer_step(&mut flow, head);
    let used = step.forward;
    assert_eq!(used, complete("SELECT 1").len(), "whole messages go on");
    assert_eq!(step.answered, None);
    assert_eq!(flow.pending(), 1, "the ReadyForQuery has not arrived whole");
    assert!(!flow.quiet());
    let rest: Vec<u8> = head[used..].iter().chain(tail).copied().collect();
    assert_eq!(answer(&mut flow, &rest), Some(true));
    assert!(flow.quiet());
}

#[test]
fn copy_data_streams_through_without_ending_the_request() {
    let mut flow = Flow::new(MAX, MAX);
    send(&mut flow, &query("COPY t FROM STDIN"));
    let mut copy = BytesMut::new();
    put_message(&mut copy, b'G', |b| {
        b.put_u8(0);
        b.put_u16(0);
    });
    assert_eq!(answer(&mut flow, &copy), None);
    let mut data = BytesMut::new();
    put_message(&mut data, fe::COPY_DATA, |b| b.put_slice(b"1\n"));
    put_message(&mut data, fe::COPY_DONE, |_| {});
    let step = send(&mut flow, &data);
    assert_eq!((step.forward, step.requests), (data.len(), 0));
    assert_eq!(flow.pending(), 1, "COPY data is not a request");
    let done = join(&[complete("COPY 1"), ready(be::TX_IDLE)]);
    assert_eq!(answer(&mut flow, &done), Some(true));
}

#[test]
fn notices_and_notifications_change_nothing() {
    let mut flow = Flow::new(MAX, MAX);
    let mut notice = BytesMut::new();
    be::notice_response(&mut notice, "hello", None);
    assert_eq!(answer(&mut flow, &notice), None);
    assert!(flow.quiet());
}

#[test]
fn oversized_and_foreign_messages_are_refused_before_a_server_is_borrowed() {
    let flow = Flow::new(64, 64);
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

#[test]
fn a_message_cut_mid_header_waits_for_the_rest() {
    let mut flow = Flow::new(MAX, MAX);
    let q = query("SELECT 1");
    let step = send(&mut flow, &q[..3]);
    assert_eq!((step.forward, step.grow_to), (0, Some(5)));
    assert!(flow.client_at_boundary());
    // A body cut short streams on: only headers are read.
    let step = send(&mut flow, &q[..7]);
    assert_eq!((step.forward, step.requests), (7, 1));
    assert!(!flow.client_at_boundary() && !flow.quiet());
    let step = send(&mut flow, &q[7..]);
    assert_eq!((step.forward, step.requests), (q.len() - 7, 0));
    assert!(flow.client_at_boundary());
}

#[test]
fn a_terminate_ends_what_is_forwarded() {
    let mut flow = Flow::new(MAX, MAX);
    let mut bytes = query("SELECT 1");
    let q = bytes.len();
    put_message(&mut bytes, fe::TERMINATE, |_| {});
    let step = send(&mut flow, &bytes);
    assert_eq!((step.forward, step.requests, step.terminate), (q, 1, true));
}

#[test]
fn foreign_and_oversized_messages_end_the_session() {
    let registry = Registry::default();
    let mut flow = Flow::new(MAX, MAX);
    let mut bytes = query("SELECT 1");
    bytes.put_slice(&[0, 0, 0, 8, 4, 210, 22, 47]);
    assert!(matches!(
        flow.on_client(&bytes, plain(&registry)),
        Err(FrameError::UnknownType { tag: 0 })
    ));
    let mut flow = Flow::new(64, 64);
    assert!(matches!(
        flow.on_client(&query(&"x".repeat(100)), plain(&registry)),
        Err(FrameError::TooLarge { .. })
    ));
    let mut flow = Flow::new(64, 64);
    assert!(matches!(
        flow.on_client(&[b'Q', 0, 0, 0, 2], plain(&registry)),
        Err(FrameError::BadLength { .. })
    ));
}

/// Where the flow stops forwarding `first` then `second`, sent together.
fn stops_after(first: &[u8], second: &str, one_unit: bool, routed: bool) -> ClientStep {
    let registry = Registry::default();
    let mut flow = Flow::new(MAX, MAX);
    let bytes = join(&[BytesMut::from(first), query(second)]);
    let outbound = Outbound {
        one_unit,
        routed,
        ..plain(&registry)
    };
    let step = flow.on_client(&bytes, outbound);
    step.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_replica_gets_one_unit_at_a_time() {
    let first = query("SELECT 1");
    let step = stops_after(&first, "UPDATE t SET x = 1", true, true);
    assert_eq!((step.forward, step.hold), (first.len(), true));
}

#[test]
fn a_pipelined_routing_control_waits_for_the_work_before_it() {
    let first = query("SELECT 1");
    let step = stops_after(&first, "SET pgwarden.route = primary", false, true);
    assert_eq!((step.forward, step.hold), (first.len(), true));
    // Without routing it is only a placeholder setting: it goes on.
    let step = stops_after(&first, "SET pgwarden.route = primary", false, false);
    assert!(step.forward > first.len() && !step.hold);
}

#[test]
fn a_fatal_error_marks_the_server_and_a_malformed_one_is_refused() {
    let mut flow = Flow::new(MAX, MAX);
    send(&mut flow, &query("SELECT 1"));
    let mut fatal = BytesMut::new();
    be::error_response(&mut fatal, be::Severity::Fatal, "57P01", "bye", None);
    let step = answer_step(&mut flow, &fatal);
    assert!(step.fatal && step.answered.is_none());
    assert!(!answer_step(&mut flow, &error("22012")).fatal);
    assert!(try_answer(&mut flow, &[b'Z', 0, 0, 0, 1]).is_err());
}
