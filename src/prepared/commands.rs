//! SQL-level `PREPARE`, `EXECUTE` and `DEALLOCATE` in transaction pooling.
//!
//! They name the same statements as protocol-level Parse (one namespace per
//! client in PostgreSQL), so they are tracked the same way: the client's
//! name maps to a statement shared by content ([`Registry::intern_sql`]),
//! servers know it as `pgw_<id>`, and it is prepared on a server the first
//! time a client runs it there. The client's `PREPARE` and `DEALLOCATE`
//! change only pgwarden's books when the server needs nothing; a no-op
//! runs in their place so that the transaction state stays the server's,
//! and the client sees the command tag it sent.
//!
//! [`Registry::intern_sql`]: super::Registry::intern_sql

use std::sync::Arc;

use bytes::BytesMut;

use super::ctx::{Ctx, Outcome};
use super::inject::{self, ensure, evict, prepare, Form};
use super::{Action, Expect, Retag, Statement};
use crate::sql::statements::{Command, Name};
use crate::wire::frontend as fe;
use crate::wire::{put_cstr, put_message};

/// Carries out one command the client sent as `form`.
pub fn run(ctx: &mut Ctx<'_>, cmd: Command<'_>, form: Form<'_>, out: &mut BytesMut) -> Outcome {
    match cmd {
        Command::Prepare { name, tail, body } => sql_prepare(ctx, &name, tail, body, form, out),
        Command::Execute { name, rest } => execute(ctx, &name, rest, form, out),
        Command::Deallocate(Some(name)) => {
            if ctx.client.get(&name).is_none() {
                return missing(ctx, &name, form, out);
            }
            ctx.client.remove(&name);
            inject::no_op(ctx, form, Retag::Deallocate, out)
        }
        Command::Deallocate(None) => {
            ctx.client.clear();
            inject::no_op(ctx, form, Retag::DeallocateAll, out)
        }
        Command::Unsupported => inject::raise(
            ctx,
            form,
            "feature_not_supported",
            "PREPARE, EXECUTE and DEALLOCATE must each be sent as a query of their own \
             in transaction pooling (pgwarden)",
            out,
        ),
    }
}

/// PostgreSQL's error for a name the client has not prepared.
pub fn missing(ctx: &mut Ctx<'_>, name: &[u8], form: Form<'_>, out: &mut BytesMut) -> Outcome {
    let message = format!(
        "prepared statement \"{}\" does not exist",
        String::from_utf8_lossy(name)
    );
    inject::raise(ctx, form, "invalid_sql_statement_name", &message, out)
}

/// PostgreSQL's error for a name the client has prepared already.
pub fn duplicate(ctx: &mut Ctx<'_>, name: &[u8], form: Form<'_>, out: &mut BytesMut) -> Outcome {
    let message = format!(
        "prepared statement \"{}\" already exists",
        String::from_utf8_lossy(name)
    );
    inject::raise(ctx, form, "duplicate_prepared_statement", &message, out)
}

fn sql_prepare(
    ctx: &mut Ctx<'_>,
    name: &Name,
    tail: &[u8],
    body: &[u8],
    form: Form<'_>,
    out: &mut BytesMut,
) -> Outcome {
    if ctx.client.get(name).is_some() {
        return duplicate(ctx, name, form, out);
    }
    let stmt = ctx.registry.intern_sql(tail, body);
    ctx.client.insert(name, stmt.clone());
    match form {
        Form::Simple if !ctx.server.contains(stmt.id) => {
            // The server runs the client's PREPARE under the shared name:
            // its answer (or error) is the client's.
            evict(ctx, out);
            ctx.server.touch(stmt.id);
            put_message(out, fe::QUERY, |b| put_cstr(b, &stmt.sql_prepare()));
            ctx.queue
                .push(Expect::Query, Action::Forward, Some(stmt.id));
        }
        Form::Simple => {
            ctx.server.touch(stmt.id);
            inject::no_op(ctx, form, Retag::Prepare, out);
        }
        Form::Extended { .. } => {
            ensure(ctx, &stmt, out);
            inject::no_op(ctx, form, Retag::Prepare, out);
        }
    }
    // Forgotten again if the server refuses the statement.
    ctx.queue.name_last(name, stmt.id);
    Outcome::Replaced
}

fn execute(
    ctx: &mut Ctx<'_>,
    name: &Name,
    rest: &[u8],
    form: Form<'_>,
    out: &mut BytesMut,
) -> Outcome {
    let Some(stmt) = ctx.client.get(name).cloned() else {
        return missing(ctx, name, form, out);
    };
    if stmt.changes_settings {
        // Runs a SET pgwarden does not follow: wipe the server after.
        ctx.settings.mark_dirty();
    }
    let text = [b"EXECUTE ", stmt.name(), b" ", rest].concat();
    match form {
        Form::Simple if stmt.sql && !ctx.server.contains(stmt.id) => {
            // One query prepares and runs it: if the PREPARE fails, the
            // client gets that error and nothing runs.
            evict(ctx, out);
            ctx.server.touch(stmt.id);
            let sql = [&stmt.sql_prepare()[..], b";", &text].concat();
            put_message(out, fe::QUERY, |b| put_cstr(b, &sql));
            ctx.queue
                .push(Expect::Query, Action::Forward, Some(stmt.id));
            ctx.queue.retag_last(Retag::Drop);
        }
        Form::Simple => {
            if !ctx.server.contains(stmt.id) {
                prepare(ctx, &stmt, Action::Swallow, out);
                inject::sync(ctx, out);
            }
            ctx.server.touch(stmt.id);
            put_message(out, fe::QUERY, |b| put_cstr(b, &text));
            ctx.queue.push(Expect::Query, Action::Forward, None);
        }
        Form::Extended { types } => {
            ensure(ctx, &stmt, out);
            inject::put_parse(out, &text, types);
            ctx.queue.push(Expect::ParseComplete, Action::Forward, None);
        }
    }
    Outcome::Replaced
}

/// A named Parse of `EXECUTE target <rest>`: a statement that runs the
/// client's `target`, shared by content like any other.
pub fn prepare_execute(
    ctx: &mut Ctx<'_>,
    name: &[u8],
    target: &Name,
    rest: &[u8],
    types: &[u8],
    out: &mut BytesMut,
) -> Outcome {
    let form = Form::Extended { types: &[] };
    if ctx.client.get(name).is_some() {
        return duplicate(ctx, name, form, out);
    }
    let Some(dep) = ctx.client.get(target).cloned() else {
        return missing(ctx, target, form, out);
    };
    let key = [b"EXECUTE ", dep.name(), b" ", rest, b"\0", types].concat();
    let stmt = ctx.registry.intern_running(&key, Some(dep.clone()));
    ensure(ctx, &dep, out);
    let outcome = parse_named(ctx, name, stmt.clone(), out);
    ctx.client.insert_running(name, stmt, target);
    outcome
}

/// The client's statement `name` as it runs now: a statement running SQL
/// `EXECUTE target` follows `target` (re-pointed if the client prepared it
/// anew). `Err` names a target the client no longer has.
pub fn resolve(ctx: &mut Ctx<'_>, name: &[u8]) -> Option<Result<Arc<Statement>, Name>> {
    let stmt = ctx.client.get(name)?.clone();
    let (Some(target), Some(dep)) = (ctx.client.target(name), &stmt.depends) else {
        return Some(Ok(stmt));
    };
    let Some(now) = ctx.client.get(target).cloned() else {
        return Some(Err(target.into()));
    };
    if now.id == dep.id {
        return Some(Ok(stmt));
    }
    let target: Name = target.into();
    let rest = stmt.key.get(b"EXECUTE ".len() + dep.name().len()..)?;
    let key = [b"EXECUTE ", now.name(), rest].concat();
    let moved = ctx.registry.intern_running(&key, Some(now));
    ctx.client.insert_running(name, moved.clone(), &target);
    Some(Ok(moved))
}

/// The client's Parse of `name` as `stmt`: answered by pgwarden when the
/// server has the statement, else sent under its server name.
pub fn parse_named(
    ctx: &mut Ctx<'_>,
    name: &[u8],
    stmt: std::sync::Arc<Statement>,
    out: &mut BytesMut,
) -> Outcome {
    ctx.client.insert(name, stmt.clone());
    if ctx.server.contains(stmt.id) {
        ctx.server.touch(stmt.id);
        ctx.queue.push(Expect::ParseComplete, Action::Answer, None);
    } else {
        prepare(ctx, &stmt, Action::Forward, out);
    }
    // Forgotten again if the server refuses the statement.
    ctx.queue.name_last(name, stmt.id);
    Outcome::Replaced
}
