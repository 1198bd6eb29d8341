//! Statements pgwarden sends in place of, or before, a client's message:
//! an error PostgreSQL itself raises (so that the transaction and the
//! extended protocol's skip-to-Sync behave as PostgreSQL's own), a no-op
//! that answers for a command pgwarden carried out itself, and the unnamed
//! Parse/Bind/Execute that runs a statement inside an extended batch; and
//! the Parse and Close that keep a server's statements what its clients
//! need (prepare on first use, evict the least recently used).

use bytes::{BufMut, BytesMut};

use super::ctx::{Ctx, Outcome};
use super::{Action, Expect, Retag, Statement};
use crate::wire::frontend as fe;
use crate::wire::{put_cstr, put_message};

/// How the client sent the statement being answered.
#[derive(Clone, Copy, Debug)]
pub enum Form<'a> {
    /// A simple Query.
    Simple,
    /// An unnamed Parse; `types` is its body after the query text.
    Extended { types: &'a [u8] },
}

/// Retags owed to the client's unnamed statement and unnamed portal: a
/// no-op Parse stands for its command, and the Execute of a portal bound
/// from it must answer with the command's tag.
#[derive(Debug, Default)]
pub struct Unnamed {
    pub statement: Option<Retag>,
    pub portal: Option<Retag>,
}

/// Runs nothing, in a transaction state PostgreSQL checks like any other
/// statement (so it fails in an aborted transaction, as the command would).
const NO_OP: &[u8] = b"DO $pgwarden$BEGIN NULL; END$pgwarden$";

/// Makes the server raise `condition` (a PL/pgSQL condition name) with
/// `message` in place of the client's message.
pub fn raise(
    ctx: &mut Ctx<'_>,
    form: Form<'_>,
    condition: &str,
    message: &str,
    out: &mut BytesMut,
) -> Outcome {
    // The message travels hex-encoded: no quoting of client bytes.
    let hex: String = message.bytes().map(|b| format!("{b:02x}")).collect();
    let sql = format!(
        "DO $pgwarden$BEGIN RAISE EXCEPTION USING ERRCODE = '{condition}', \
         MESSAGE = convert_from(decode('{hex}', 'hex'), 'UTF8'); END$pgwarden$"
    );
    match form {
        Form::Simple => {
            put_message(out, fe::QUERY, |b| put_cstr(b, sql.as_bytes()));
            ctx.queue.push(Expect::Query, Action::Forward, None);
        }
        Form::Extended { .. } => {
            ctx.unnamed.statement = None;
            run_unnamed(ctx, sql.as_bytes(), Action::Forward, None, out);
        }
    }
    Outcome::Replaced
}

/// Answers the client's statement with a no-op whose command tag becomes
/// `retag`: pgwarden carried the command out itself.
pub fn no_op(ctx: &mut Ctx<'_>, form: Form<'_>, retag: Retag, out: &mut BytesMut) -> Outcome {
    match form {
        Form::Simple => {
            put_message(out, fe::QUERY, |b| put_cstr(b, NO_OP));
            ctx.queue.push(Expect::Query, Action::Forward, None);
            ctx.queue.retag_last(retag);
        }
        Form::Extended { types } => {
            put_parse(out, NO_OP, types);
            ctx.queue.push(Expect::ParseComplete, Action::Forward, None);
            ctx.unnamed.statement = Some(retag);
        }
    }
    Outcome::Replaced
}

/// Sends `sql` as an unnamed Parse (with `types`: the client's Parse body
/// after its query text).
pub fn put_parse(out: &mut BytesMut, sql: &[u8], types: &[u8]) {
    put_message(out, fe::PARSE, |b| {
        put_cstr(b, b"");
        put_cstr(b, sql);
        b.put_slice(types);
    });
}

/// Runs `sql` through the unnamed statement and portal. Parse and Bind
/// answers are dropped; the Execute's is handled as `action` (an error is
/// always forwarded, and the server then skips to the client's Sync).
/// `stmt` is the statement it prepares, if any.
pub fn run_unnamed(
    ctx: &mut Ctx<'_>,
    sql: &[u8],
    action: Action,
    stmt: Option<u64>,
    out: &mut BytesMut,
) {
    put_parse(out, sql, &[0, 0]);
    ctx.queue.push(Expect::ParseComplete, Action::Swallow, None);
    // Unnamed portal and statement, no parameters, default result format.
    put_message(out, fe::BIND, |b| b.put_slice(&[0, 0, 0, 0, 0, 0, 0, 0]));
    ctx.queue.push(Expect::BindComplete, Action::Swallow, None);
    put_message(out, fe::EXECUTE, |b| b.put_slice(&[0, 0, 0, 0, 0]));
    ctx.queue.push(Expect::Execute, action, stmt);
}

/// A Sync whose ReadyForQuery the client does not get: ends extended
/// messages pgwarden put before a client's simple Query, so that their
/// error cannot make the server skip that Query.
pub fn sync(ctx: &mut Ctx<'_>, out: &mut BytesMut) {
    put_message(out, fe::SYNC, |_| {});
    ctx.queue.push(Expect::Sync, Action::Swallow, None);
}

/// Prepares `stmt` on the server first if it does not have it (and the
/// statement it runs, if any).
pub fn ensure(ctx: &mut Ctx<'_>, stmt: &Statement, out: &mut BytesMut) {
    if let Some(dep) = &stmt.depends {
        ensure(ctx, dep, out);
    }
    if !ctx.server.touch_if_present(stmt.id) {
        prepare(ctx, stmt, Action::Swallow, out);
    }
}

/// Prepares `stmt` on the server under its server name, making room
/// first: a Parse (answered as `action`), or for a statement made by SQL
/// `PREPARE` an unnamed run of that `PREPARE` (its answer dropped).
pub fn prepare(ctx: &mut Ctx<'_>, stmt: &Statement, action: Action, out: &mut BytesMut) {
    evict(ctx, out);
    ctx.server.touch(stmt.id);
    if stmt.sql {
        run_unnamed(
            ctx,
            &stmt.sql_prepare(),
            Action::Swallow,
            Some(stmt.id),
            out,
        );
    } else {
        stmt.put_parse(out);
        ctx.queue.push(Expect::ParseComplete, action, Some(stmt.id));
    }
}

/// Closes least recently used statements until one more fits.
pub fn evict(ctx: &mut Ctx<'_>, out: &mut BytesMut) {
    while let Some(old) = ctx.server.evict_one(ctx.max.saturating_sub(1), ctx.since) {
        put_message(out, fe::CLOSE, |b| {
            b.put_u8(b'S');
            put_cstr(b, format!("pgw_{old}").as_bytes());
        });
        ctx.queue
            .push(Expect::CloseComplete, Action::Swallow, Some(old));
    }
}
