//! SQL-level prepared statements as a query text names them: `PREPARE`,
//! `EXECUTE` and `DEALLOCATE`, read with the [lexer](super::lexer) so that
//! a comment or a literal cannot fake one.
//!
//! Names come out as PostgreSQL stores them (unquoted names folded to
//! lower case, quoted ones as written), because SQL `EXECUTE foo` and a
//! protocol-level Bind of `"foo"` name the same statement.

use super::lexer::{Lexer, Token};

/// A statement name as PostgreSQL stores it.
pub type Name = Box<[u8]>;

/// One of the three commands, alone in its query text.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `PREPARE name <tail>`; `tail` is `[ (types) ] AS statement`, and
    /// `body` the statement after `AS`.
    Prepare {
        name: Name,
        tail: &'a [u8],
        body: &'a [u8],
    },
    /// `EXECUTE name <rest>`; `rest` is the parameter list, if any.
    Execute { name: Name, rest: &'a [u8] },
    /// `DEALLOCATE [PREPARE] name`, or `ALL` (`None`).
    Deallocate(Option<Name>),
    /// One of them among other statements, or not readable with
    /// certainty: nothing a pooler can carry between servers.
    Unsupported,
}

/// Reads `sql` when it starts with `PREPARE` (not two-phase commit's
/// `PREPARE TRANSACTION`), `EXECUTE` or `DEALLOCATE`. A text too broken to
/// name a statement is `None`: PostgreSQL answers it with its syntax error.
pub fn read(sql: &[u8]) -> Option<Command<'_>> {
    let mut lx = Lexer::new(sql);
    let verb = word(significant(&mut lx)?)?;
    let (name, after) = if verb.eq_ignore_ascii_case(b"deallocate") {
        let mut t = significant(&mut lx)?;
        if word(t).is_some_and(|w| w.eq_ignore_ascii_case(b"prepare")) {
            t = significant(&mut lx)?;
        }
        let all = word(t).is_some_and(|w| w.eq_ignore_ascii_case(b"all"));
        let name = if all { None } else { Some(name_of(t)?) };
        return Some(match end_of_statement(&mut lx) {
            Some(_) => Command::Deallocate(name),
            None => Command::Unsupported,
        });
    } else if verb.eq_ignore_ascii_case(b"prepare") || verb.eq_ignore_ascii_case(b"execute") {
        let t = significant(&mut lx)?;
        if verb.eq_ignore_ascii_case(b"prepare")
            && word(t).is_some_and(|w| w.eq_ignore_ascii_case(b"transaction"))
        {
            let mut peek = Lexer::new(&sql[lx.offset()..]);
            if matches!(significant(&mut peek), Some(Token::Literal | Token::Unsure)) {
                return None;
            }
        }
        (name_of(t)?, lx.offset())
    } else {
        return None;
    };
    let Some(end) = end_of_statement(&mut lx) else {
        return Some(Command::Unsupported);
    };
    let tail = &sql[after..end.max(after)];
    Some(if verb.eq_ignore_ascii_case(b"prepare") {
        Command::Prepare {
            name,
            tail,
            body: prepared_body(tail),
        }
    } else {
        Command::Execute { name, rest: tail }
    })
}

/// The next token that is not a comment.
fn significant<'a>(lx: &mut Lexer<'a>) -> Option<Token<'a>> {
    lx.find(|t| !matches!(t, Token::Comment(_)))
}

fn word(t: Token<'_>) -> Option<&[u8]> {
    match t {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

/// A statement name token as PostgreSQL stores it.
fn name_of(t: Token<'_>) -> Option<Name> {
    match t {
        Token::Word(w) => Some(w.to_ascii_lowercase().into_boxed_slice()),
        Token::Quoted(q) => {
            let mut out = Vec::with_capacity(q.len());
            let mut i = 0;
            while i < q.len() {
                out.push(q[i]);
                // `""` inside a quoted identifier is one `"`.
                i += if q[i] == b'"' { 2 } else { 1 };
            }
            Some(out.into_boxed_slice())
        }
        _ => None,
    }
}

/// Walks to the end of the statement; returns where its text ends (before
/// a closing `;` and trailing comments), or `None` when another statement
/// follows or the lexer is unsure.
fn end_of_statement(lx: &mut Lexer<'_>) -> Option<usize> {
    let mut end = lx.offset();
    let mut closed = false;
    while let Some(t) = lx.next() {
        match t {
            Token::Comment(_) => {}
            Token::Unsure => return None,
            _ if closed => return None,
            Token::Semicolon => closed = true,
            _ => end = lx.offset(),
        }
    }
    Some(end)
}

/// The statement proper of a `PREPARE`'s tail (after its `AS`).
pub fn prepared_body(tail: &[u8]) -> &[u8] {
    &tail[after_as(tail)..]
}

/// Where the statement after the first top-level `AS` of a `PREPARE`'s
/// tail starts (0 when there is none).
fn after_as(tail: &[u8]) -> usize {
    let mut lx = Lexer::new(tail);
    let mut depth = 0usize;
    while let Some(t) = lx.next() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w.eq_ignore_ascii_case(b"as") => return lx.offset(),
            _ => {}
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        s.as_bytes().into()
    }

    #[test]
    fn prepare_with_types_comments_and_a_closing_semicolon() {
        let sql = b"/* app */ PREPARE Foo (int, text) AS SELECT $1 + 1 ; -- done";
        let Some(Command::Prepare {
            name: n,
            tail,
            body,
        }) = read(sql)
        else {
            panic!("not read");
        };
        assert_eq!(n, name("foo"));
        assert_eq!(tail, b" (int, text) AS SELECT $1 + 1");
        assert_eq!(body, b" SELECT $1 + 1");
    }

    #[test]
    fn quoted_names_keep_their_case_and_quotes() {
        let r = read(br#"execute "My ""Stmt""" (1, 'a')"#);
        assert_eq!(
            r,
            Some(Command::Execute {
                name: name(r#"My "Stmt""#),
                rest: b" (1, 'a')"
            })
        );
    }

    #[test]
    fn deallocate_forms() {
        assert_eq!(
            read(b"DEALLOCATE x"),
            Some(Command::Deallocate(Some(name("x"))))
        );
        assert_eq!(
            read(b"deallocate prepare X;"),
            Some(Command::Deallocate(Some(name("x"))))
        );
        assert_eq!(read(b"DEALLOCATE ALL"), Some(Command::Deallocate(None)));
        assert_eq!(
            read(br#"DEALLOCATE "all""#),
            Some(Command::Deallocate(Some(name("all"))))
        );
        assert_eq!(read(b"DEALLOCATE a; SELECT 1"), Some(Command::Unsupported));
    }

    #[test]
    fn other_statements_and_two_phase_commit_are_not_read() {
        assert_eq!(read(b"SELECT 1"), None);
        assert_eq!(read(b"PREPARE TRANSACTION 'gid'"), None);
        assert_eq!(read(b"-- PREPARE x AS SELECT 1\nSELECT 1"), None);
        assert_eq!(read(b"PREPARE (int) AS SELECT 1"), None);
        assert!(matches!(
            read(b"PREPARE transaction AS SELECT 1"),
            Some(Command::Prepare { .. })
        ));
    }

    #[test]
    fn several_statements_or_doubt_are_unsupported() {
        assert_eq!(
            read(b"PREPARE a AS SELECT 1; EXECUTE a"),
            Some(Command::Unsupported)
        );
        assert_eq!(read(b"EXECUTE a('it\\'s')"), Some(Command::Unsupported));
    }
}
