//! Rewrites one client message for the server it is going to, and records
//! the answer the server will owe for it.
//!
//! Only Parse, Bind, Describe and Close of *named* statements, and SQL
//! `PREPARE`/`EXECUTE`/`DEALLOCATE`, are rewritten; everything else passes
//! through unchanged (unnamed statements live and die within one
//! transaction, so they need no tracking).

use bytes::{BufMut, BytesMut};

use std::sync::Arc;

use super::commands::{self, parse_named};
pub use super::ctx::{Ctx, Outcome};
use super::inject::{self, ensure, Form};
use super::{Action, Expect};
use crate::sql::statements::{self, Command};
use crate::state::{effect, pins, Effect};
use crate::wire::frontend as fe;
use crate::wire::{put_cstr, put_message, take_cstr};

/// A client's extended-protocol message answered in its place.
const EXTENDED: Form<'static> = Form::Extended { types: &[] };

/// Tags whose bodies [`message`] needs whole.
pub const WHOLE: &[u8] = &[
    fe::PARSE,
    fe::BIND,
    fe::DESCRIBE,
    fe::CLOSE,
    fe::QUERY,
    fe::EXECUTE,
];

/// Handles one client message. `body` is needed only for the tags in
/// [`WHOLE`]; pass an empty slice for the others.
pub fn message(ctx: &mut Ctx<'_>, tag: u8, body: &[u8], out: &mut BytesMut) -> Outcome {
    match tag {
        fe::PARSE => parse(ctx, body, out),
        fe::BIND => bind(ctx, body, out),
        fe::DESCRIBE if rewrites(ctx) => describe(ctx, body, out),
        fe::DESCRIBE if body.first() == Some(&b'S') => forward(ctx, Expect::DescribeStatement),
        fe::DESCRIBE => forward(ctx, Expect::DescribePortal),
        fe::CLOSE => {
            match body.split_first() {
                Some((b'S', rest)) => ctx.followed.closed_statement(name_in(rest)),
                Some((_, rest)) => ctx.followed.closed_portal(name_in(rest)),
                None => {}
            }
            match rewrites(ctx) {
                true => close(ctx, body),
                false => forward(ctx, Expect::CloseComplete),
            }
        }
        fe::EXECUTE => {
            forward(ctx, Expect::Execute);
            if let Some(effect) = ctx.followed.portal(name_in(body)).cloned() {
                if follows(ctx, &effect) {
                    ctx.queue.effect_last(effect);
                }
            }
            if body.first() == Some(&0) {
                if let Some(retag) = ctx.unnamed.portal.take() {
                    ctx.queue.retag_last(retag);
                }
            }
            Outcome::Verbatim
        }
        fe::SYNC => forward(ctx, Expect::Sync),
        fe::QUERY => {
            // A simple Query drops the unnamed statement.
            ctx.unnamed.statement = None;
            ctx.followed.closed_statement(b"");
            if !crate::state::may_matter(body) {
                return forward(ctx, Expect::Query);
            }
            if ctx.pooled {
                if let Some(cmd) = statements::read(body) {
                    if rewrites(ctx) {
                        return commands::run(ctx, cmd, Form::Simple, out);
                    }
                    if is_sql_prepare(body) {
                        // A statement left on a server outlives the
                        // transaction and would collide with another
                        // client's: refuse it, through the server so that
                        // the transaction state stays PostgreSQL's.
                        return refuse(ctx, REFUSE_SQL_PREPARE, out);
                    }
                }
            }
            let pin = pins::classify(body);
            if pin.pin != 0 && ctx.refuse_pins && ctx.pooled {
                let sql = format!(
                    "DO $pgwarden$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', \
                     MESSAGE = '{} is refused in transaction pooling for this database (pgwarden)', \
                     HINT = 'Set session_features = \"pin\" for the database, or use pool_mode = session.'; \
                     END $pgwarden$",
                    pin.feature()
                );
                return refuse(ctx, &sql, out);
            }
            *ctx.pins = pin.apply(*ctx.pins);
            if drops_statements(body) {
                // DISCARD ALL / DEALLOCATE: the server forgets its prepared
                // statements, and so does the client.
                ctx.server.clear();
                ctx.client.clear();
                ctx.followed.clear_statements();
            }
            let effect = effect(body);
            match follows(ctx, &effect) {
                true => {
                    ctx.queue
                        .push_effect_query(Action::Forward, Arc::new(effect));
                    Outcome::Verbatim
                }
                false => forward(ctx, Expect::Query),
            }
        }
        fe::FUNCTION_CALL => forward(ctx, Expect::Query),
        _ => Outcome::Verbatim,
    }
}

/// A client message too large to buffer, replaced by the server's raising
/// 54000 with `message`: as a Query for a Query, in the extended protocol's
/// way (skip to Sync) for the others.
pub fn refuse_oversized(ctx: &mut Ctx<'_>, tag: u8, message: &str, out: &mut BytesMut) -> Outcome {
    let form = match tag {
        fe::QUERY => Form::Simple,
        _ => EXTENDED,
    };
    inject::raise(ctx, form, "program_limit_exceeded", message, out)
}

/// Named statements are carried across servers (else they pass through).
fn rewrites(ctx: &Ctx<'_>) -> bool {
    ctx.pooled && ctx.max > 0
}

/// A statement with `effect` must be followed: it changes settings, or it
/// ends or splits a block that holds changes.
fn follows(ctx: &Ctx<'_>, effect: &Effect) -> bool {
    effect.changes() || (ctx.watching && !effect.is_empty())
}

/// The name a Close or Execute body starts with.
fn name_in(body: &[u8]) -> &[u8] {
    take_cstr(body).map_or(&[][..], |(name, _)| name)
}

/// Replaces a Query by one that makes the server raise pgwarden's error.
fn refuse(ctx: &mut Ctx<'_>, sql: &str, out: &mut BytesMut) -> Outcome {
    put_message(out, fe::QUERY, |b| put_cstr(b, sql.as_bytes()));
    ctx.queue.push(Expect::Query, Action::Forward, None);
    Outcome::Replaced
}

fn forward(ctx: &mut Ctx<'_>, expect: Expect) -> Outcome {
    ctx.queue.push(expect, Action::Forward, None);
    Outcome::Verbatim
}

fn parse(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Outcome {
    let Some((name, key)) = take_cstr(body) else {
        return forward(ctx, Expect::ParseComplete);
    };
    if name.is_empty() {
        ctx.unnamed.statement = None;
    }
    let matters = ctx.inert.may_matter(key);
    if matters && ctx.pooled {
        let (query, types) = take_cstr(key).unwrap_or((key, &[]));
        if let Some(cmd) = statements::read(query) {
            let form = Form::Extended { types };
            if rewrites(ctx) && name.is_empty() {
                return commands::run(ctx, cmd, form, out);
            }
            if let (true, Command::Execute { name: target, rest }) = (rewrites(ctx), &cmd) {
                // Drivers prepare a query they run often (psycopg after five
                // runs), SQL EXECUTE included.
                return commands::prepare_execute(ctx, name, target, rest, types, out);
            }
            if rewrites(ctx) || is_sql_prepare(query) {
                let message = match rewrites(ctx) {
                    true => {
                        "PREPARE, EXECUTE and DEALLOCATE cannot be a named prepared \
                             statement in transaction pooling (pgwarden)"
                    }
                    false => {
                        "SQL PREPARE is not supported in transaction pooling \
                              with max_prepared_statements = 0 (pgwarden)"
                    }
                };
                return inject::raise(ctx, form, "feature_not_supported", message, out);
            }
        }
    }
    if matters {
        // Pinned, not refused, through the extended protocol: a refused
        // Parse would fail later at its Bind with a misleading error.
        *ctx.pins = pins::classify(key).apply(*ctx.pins);
    }
    if matters {
        let query = take_cstr(key).map_or(key, |(q, _)| q);
        ctx.followed.parsed(name, effect(query));
    } else {
        ctx.followed.closed_statement(name);
    }
    if name.is_empty() || !rewrites(ctx) {
        return forward(ctx, Expect::ParseComplete);
    }
    if ctx.client.get(name).is_some() {
        // PostgreSQL keeps the first statement and refuses the second.
        return commands::duplicate(ctx, name, EXTENDED, out);
    }
    let stmt = ctx.registry.intern(key);
    parse_named(ctx, name, stmt, out)
}

fn bind(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Outcome {
    let Some((portal, rest)) = take_cstr(body) else {
        return forward(ctx, Expect::BindComplete);
    };
    let Some((name, rest)) = take_cstr(rest) else {
        return forward(ctx, Expect::BindComplete);
    };
    bind_parts(ctx, portal, name, BindRest::Here(rest), out)
}

/// The start of a Bind too large to buffer: `head` is its header and
/// `prefix` (portal and statement names) of a body of `body_len` bytes;
/// the rest streams through unchanged after what is written to `out`.
pub fn bind_head(
    ctx: &mut Ctx<'_>,
    head: &[u8],
    prefix: &[u8],
    body_len: usize,
    out: &mut BytesMut,
) -> Outcome {
    let Some((portal, rest)) = take_cstr(prefix) else {
        return forward(ctx, Expect::BindComplete);
    };
    let Some((name, _)) = take_cstr(rest) else {
        return forward(ctx, Expect::BindComplete);
    };
    let len = body_len.saturating_sub(portal.len() + name.len() + 2);
    bind_parts(ctx, portal, name, BindRest::Streams { len, head }, out)
}

/// What follows a Bind's statement name.
enum BindRest<'a> {
    /// All of it, in the buffer.
    Here(&'a [u8]),
    /// `len` bytes still to stream through; `head` is the message's start
    /// as the client sent it.
    Streams { len: usize, head: &'a [u8] },
}

fn bind_parts(
    ctx: &mut Ctx<'_>,
    portal: &[u8],
    name: &[u8],
    rest: BindRest<'_>,
    out: &mut BytesMut,
) -> Outcome {
    let values = match rest {
        BindRest::Here(r) => Some(r),
        BindRest::Streams { .. } => None,
    };
    ctx.followed.bound(portal, name, values);
    if portal.is_empty() {
        // The unnamed portal answers for the unnamed statement's command.
        ctx.unnamed.portal = match name.is_empty() {
            true => ctx.unnamed.statement,
            false => None,
        };
    }
    if name.is_empty() || !rewrites(ctx) {
        return forward(ctx, Expect::BindComplete);
    }
    let stmt = match commands::resolve(ctx, name) {
        Some(Ok(stmt)) => stmt,
        Some(Err(missing)) => return bind_missing(ctx, &missing, rest, out),
        None => return bind_missing(ctx, name, rest, out),
    };
    ensure(ctx, &stmt, out);
    let rest_len = match rest {
        BindRest::Here(r) => r.len(),
        BindRest::Streams { len, .. } => len,
    };
    out.put_u8(fe::BIND);
    out.put_u32((4 + portal.len() + 1 + stmt.server_name.len() + rest_len) as u32);
    put_cstr(out, portal);
    out.put_slice(&stmt.server_name);
    if let BindRest::Here(r) = rest {
        out.put_slice(r);
    }
    ctx.queue.push(Expect::BindComplete, Action::Forward, None);
    Outcome::Replaced
}

/// A Bind of a statement the client does not have: PostgreSQL's error,
/// raised by the server. A streaming Bind still goes through whole after
/// it, for the server to skip (an error skips everything to the Sync).
fn bind_missing(ctx: &mut Ctx<'_>, name: &[u8], rest: BindRest<'_>, out: &mut BytesMut) -> Outcome {
    let outcome = commands::missing(ctx, name, EXTENDED, out);
    if let BindRest::Streams { head, .. } = rest {
        out.put_slice(head);
        ctx.queue.push(Expect::BindComplete, Action::Forward, None);
    }
    outcome
}

fn describe(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Outcome {
    let (kind, name) = match body.split_first() {
        Some((&k, rest)) => (k, take_cstr(rest).map_or(&[][..], |(n, _)| n)),
        None => (0, &[][..]),
    };
    if kind != b'S' {
        return forward(ctx, Expect::DescribePortal);
    }
    if name.is_empty() {
        return forward(ctx, Expect::DescribeStatement);
    }
    let stmt = match commands::resolve(ctx, name) {
        Some(Ok(stmt)) => stmt,
        Some(Err(target)) => return commands::missing(ctx, &target, EXTENDED, out),
        None => return commands::missing(ctx, name, EXTENDED, out),
    };
    ensure(ctx, &stmt, out);
    put_message(out, fe::DESCRIBE, |b| {
        b.put_u8(b'S');
        b.put_slice(&stmt.server_name);
    });
    ctx.queue
        .push(Expect::DescribeStatement, Action::Forward, None);
    Outcome::Replaced
}

fn close(ctx: &mut Ctx<'_>, body: &[u8]) -> Outcome {
    let named_statement = match body.split_first() {
        Some((b'S', rest)) => take_cstr(rest).map(|(n, _)| n).filter(|n| !n.is_empty()),
        _ => None,
    };
    let Some(name) = named_statement else {
        return forward(ctx, Expect::CloseComplete);
    };
    // Other clients may share the server-side statement: only the client's
    // name goes. (Closing an unknown name is not an error in PostgreSQL.)
    ctx.client.remove(name);
    ctx.queue.push(Expect::CloseComplete, Action::Answer, None);
    Outcome::Replaced
}

/// Raises, on the server, the error a client gets for SQL `PREPARE`.
const REFUSE_SQL_PREPARE: &str = "DO $pgwarden$ BEGIN RAISE EXCEPTION USING \
    ERRCODE = 'feature_not_supported', \
    MESSAGE = 'SQL PREPARE is not supported in transaction pooling (pgwarden)', \
    HINT = 'Use protocol-level prepared statements (the driver''s prepare), which pgwarden \
    carries across servers, or pool_mode = session for this database.'; END $pgwarden$";

/// `PREPARE name AS ...`, but not two-phase commit's `PREPARE TRANSACTION`.
fn is_sql_prepare(sql: &[u8]) -> bool {
    if !starts_with_keyword(sql, b"PREPARE") {
        return false;
    }
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    !starts_with_keyword(&sql[start + b"PREPARE".len()..], b"TRANSACTION")
}

/// True for `DISCARD ...` / `DEALLOCATE ...` (which drop prepared statements).
fn drops_statements(body: &[u8]) -> bool {
    starts_with_keyword(body, b"DEALLOCATE") || starts_with_keyword(body, b"DISCARD")
}

/// True when the SQL text starts (after whitespace) with `keyword` as a word.
fn starts_with_keyword(sql: &[u8], keyword: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let rest = &sql[start..];
    rest.len() >= keyword.len()
        && rest[..keyword.len()].eq_ignore_ascii_case(keyword)
        && !rest
            .get(keyword.len())
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::inject::Unnamed;
    use crate::prepared::{ClientStatements, Followed, Outstanding, Registry, ServerStatements};
    use crate::state::ServerParams;

    fn parse_body(name: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.extend_from_slice(&[0, 0, 0]);
        b
    }

    fn bind_body(stmt: &str) -> Vec<u8> {
        let mut b = vec![0];
        b.extend_from_slice(stmt.as_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        b
    }

    struct World {
        registry: Registry,
        client: ClientStatements,
        servers: [ServerStatements; 2],
        queue: Outstanding,
        settings: ServerParams,
        followed: Followed,
        pins: u8,
        unnamed: Unnamed,
        inert: crate::state::InertMemo,
    }

    impl World {
        fn send(&mut self, server: usize, tag: u8, body: &[u8], max: usize) -> (Outcome, BytesMut) {
            let mut out = BytesMut::new();
            let since = self.servers[server].now();
            let mut ctx = Ctx {
                registry: &self.registry,
                client: &mut self.client,
                server: &mut self.servers[server],
                queue: &mut self.queue,
                max,
                since,
                settings: &mut self.settings,
                followed: &mut self.followed,
                watching: false,
                pins: &mut self.pins,
                refuse_pins: false,
                pooled: true,
                unnamed: &mut self.unnamed,
                inert: &mut self.inert,
            };
            let o = message(&mut ctx, tag, body, &mut out);
            (o, out)
        }
    }

    fn world() -> World {
        World {
            registry: Registry::default(),
            client: ClientStatements::default(),
            servers: Default::default(),
            queue: Outstanding::default(),
            settings: ServerParams::default(),
            followed: Followed::default(),
            pins: 0,
            unnamed: Unnamed::default(),
            inert: Default::default(),
        }
    }

    #[test]
    fn statement_follows_the_client_to_another_server() {
        let mut w = world();
        let (o, out) = w.send(0, fe::PARSE, &parse_body("s1", "SELECT 1"), 200);
        assert_eq!(o, Outcome::Replaced);
        assert!(out.windows(5).any(|x| x == b"pgw_1"), "renamed Parse");
        // Same client, other server: the Bind brings its Parse along.
        let (_, out) = w.send(1, fe::BIND, &bind_body("s1"), 200);
        assert_eq!(out[0], fe::PARSE);
        assert!(w.servers[1].contains(1));
        // Back on the first server nothing is re-sent.
        let (_, out) = w.send(0, fe::BIND, &bind_body("s1"), 200);
        assert_eq!(out[0], fe::BIND);
    }

    #[test]
    fn parse_of_a_statement_the_server_has_is_answered_locally() {
        let mut w = world();
        w.send(0, fe::PARSE, &parse_body("a", "SELECT 1"), 200);
        let (o, out) = w.send(0, fe::PARSE, &parse_body("b", "SELECT 1"), 200);
        assert_eq!(o, Outcome::Replaced);
        assert!(out.is_empty(), "identical text shares the server statement");
    }

    #[test]
    fn eviction_closes_the_least_recently_used() {
        let mut w = world();
        for (i, sql) in ["SELECT 1", "SELECT 2", "SELECT 3"].iter().enumerate() {
            let name = format!("s{i}");
            let (_, out) = w.send(0, fe::PARSE, &parse_body(&name, sql), 2);
            if i == 2 {
                assert_eq!(out[0], fe::CLOSE, "made room first");
            }
        }
        assert!(w.servers[0].len() <= 2);
    }

    #[test]
    fn unnamed_and_portal_messages_pass_through() {
        let mut w = world();
        assert_eq!(
            w.send(0, fe::PARSE, &parse_body("", "SELECT 1"), 200).0,
            Outcome::Verbatim
        );
        assert_eq!(
            w.send(0, fe::BIND, &bind_body(""), 200).0,
            Outcome::Verbatim
        );
        assert_eq!(w.send(0, fe::DESCRIBE, b"P\0", 200).0, Outcome::Verbatim);
        assert_eq!(w.send(0, fe::CLOSE, b"P\0", 200).0, Outcome::Verbatim);
    }

    fn text(out: &BytesMut) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn sql_prepare_is_shared_by_content_and_answered_when_the_server_has_it() {
        let mut w = world();
        let (o, out) = w.send(0, fe::QUERY, b"PREPARE a AS SELECT 1\0", 200);
        assert_eq!(o, Outcome::Replaced);
        assert!(
            text(&out).contains("PREPARE pgw_1  AS SELECT 1"),
            "{}",
            text(&out)
        );
        w.queue.on_message(b'C', &mut w.servers[0]);
        w.queue.on_message(b'Z', &mut w.servers[0]);
        // EXECUTE on a server without it prepares it in the same query.
        let (_, out) = w.send(1, fe::QUERY, b"execute A\0", 200);
        assert!(
            text(&out).contains("AS SELECT 1\n;EXECUTE pgw_1 "),
            "{}",
            text(&out)
        );
        // The same text under another name on a server that has it: no-op.
        let (_, out) = w.send(0, fe::QUERY, b"PREPARE b AS SELECT 1\0", 200);
        assert!(text(&out).starts_with("Q") && text(&out).contains("BEGIN NULL"));
        assert_eq!(w.client.get(b"b").map(|s| s.id), Some(1));
    }

    #[test]
    fn sql_prepare_of_a_taken_name_raises_42p05_through_the_server() {
        let mut w = world();
        w.send(0, fe::PARSE, &parse_body("a", "SELECT 1"), 200);
        let (_, out) = w.send(0, fe::QUERY, b"PREPARE A AS SELECT 2\0", 200);
        assert!(
            text(&out).contains("duplicate_prepared_statement"),
            "{}",
            text(&out)
        );
        let (_, out) = w.send(0, fe::PARSE, &parse_body("a", "SELECT 2"), 200);
        assert_eq!(out[0], fe::PARSE);
        assert!(text(&out).contains("duplicate_prepared_statement"));
        assert_eq!(w.client.get(b"a").map(|s| s.id), Some(1), "the first kept");
    }

    #[test]
    fn unknown_names_never_reach_the_server() {
        let mut w = world();
        w.send(0, fe::PARSE, &parse_body("a", "SELECT 1"), 200);
        // Another client binding the server-side name gets PostgreSQL's error.
        let (_, out) = w.send(0, fe::BIND, &bind_body("pgw_1"), 200);
        assert!(text(&out).contains("invalid_sql_statement_name"));
        let (_, out) = w.send(0, fe::QUERY, b"EXECUTE pgw_1\0", 200);
        assert!(text(&out).contains("invalid_sql_statement_name"));
    }

    #[test]
    fn two_phase_commit_and_lookalikes_pass_through() {
        let mut w = world();
        assert_eq!(
            w.send(0, fe::QUERY, b"PREPARED_TABLE\0", 200).0,
            Outcome::Verbatim
        );
        let two_phase = b"PREPARE  transaction 'x'\0";
        assert_eq!(w.send(0, fe::QUERY, two_phase, 200).0, Outcome::Verbatim);
    }

    #[test]
    fn discard_all_forgets_statements() {
        let mut w = world();
        w.send(0, fe::PARSE, &parse_body("s", "SELECT 1"), 200);
        w.send(0, fe::QUERY, b"discard all\0", 200);
        assert!(w.servers[0].is_empty());
        assert!(w.client.get(b"s").is_none());
    }
}
