//! The first unit of work in a client's buffered bytes: one simple Query,
//! or extended-protocol messages up to their Sync. A unit is what one
//! ReadyForQuery answers; between units an idle server may change.
//!
//! A unit may go to a replica only when all of it has arrived: the
//! classifier must have seen every statement in it before the first byte
//! is sent, since nothing can move a half-run unit to the primary.

use super::classify::{classify_remembered, Classified, Intent};
use crate::sql::statements::{self, Command};
use crate::wire::codec::whole_at;
use crate::wire::frontend as fe;
use crate::wire::take_cstr;

/// What the buffered bytes allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The unit has not all arrived yet; read more before deciding.
    NeedMore,
    Unit {
        /// Its length in bytes, when it is all in the buffer.
        len: Option<usize>,
        class: Classified,
    },
}

/// Looks at the unit at the start of `buf`. `named` gives the class of a
/// client's named statement; a unit longer than `max_wait` bytes is
/// decided without waiting for its end (as a write).
pub fn first_unit(
    buf: &[u8],
    max_wait: usize,
    read_only_functions: &[String],
    named: impl Fn(&[u8]) -> Option<Classified>,
) -> Scan {
    let read = Classified {
        intent: Intent::Read,
        hint: None,
    };
    let mut class = read;
    // The class of the unnamed statement parsed in this unit, if any.
    let mut unnamed: Option<Classified> = None;
    let mut flushed = false;
    let mut pos = 0;
    loop {
        // Malformed (the session's framing refuses it), or too long to
        // wait for: decide now.
        let Ok(found) = whole_at(buf, pos, max_wait.saturating_sub(1)) else {
            return Scan::Unit {
                len: None,
                class: Classified::WRITE.and(class),
            };
        };
        let Some((tag, body, end)) = found else {
            // A client that sent Flush waits for answers before it sends
            // the rest: decide now, safely.
            if flushed || buf.len() >= max_wait {
                return Scan::Unit {
                    len: None,
                    class: Classified::WRITE.and(class),
                };
            }
            return Scan::NeedMore;
        };
        match tag {
            fe::QUERY => {
                return Scan::Unit {
                    len: Some(end),
                    class: class.and(text_class(cstr(body), read_only_functions, &named)),
                }
            }
            fe::PARSE => {
                let name = cstr(body);
                let query = cstr(body.get(name.len() + 1..).unwrap_or_default());
                let c = text_class(query, read_only_functions, &named);
                if name.is_empty() {
                    unnamed = Some(c);
                }
                class = class.and(c);
            }
            fe::BIND => {
                let portal = cstr(body);
                let stmt = cstr(body.get(portal.len() + 1..).unwrap_or_default());
                let c = match stmt.is_empty() {
                    true => unnamed,
                    false => named(stmt),
                };
                class = class.and(c.unwrap_or(Classified::WRITE));
            }
            fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
            fe::FLUSH => flushed = true,
            fe::SYNC => {
                return Scan::Unit {
                    len: Some(end),
                    class,
                }
            }
            _ => {
                // FunctionCall, COPY data, or something unexpected.
                return Scan::Unit {
                    len: None,
                    class: Classified::WRITE,
                };
            }
        }
        pos = end;
    }
}

/// The class of a query text; SQL `EXECUTE` of a client's statement has
/// the class of that statement.
fn text_class(
    sql: &[u8],
    read_only_functions: &[String],
    named: &impl Fn(&[u8]) -> Option<Classified>,
) -> Classified {
    let first = sql.iter().find(|b| !b.is_ascii_whitespace());
    // Only a text starting with `E` or a comment can be an EXECUTE.
    if matches!(first, Some(b'e' | b'E' | b'/' | b'-')) {
        if let Some(Command::Execute { name, .. }) = statements::read(sql) {
            return named(&name).unwrap_or(Classified::WRITE);
        }
    }
    classify_remembered(sql, read_only_functions)
}

/// Bytes up to the first NUL, all of them if there is none.
fn cstr(b: &[u8]) -> &[u8] {
    take_cstr(b).map_or(b, |(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
        out.put_u8(tag);
        out.put_u32(4 + body.len() as u32);
        out.put_slice(body);
    }

    fn none(_: &[u8]) -> Option<Classified> {
        None
    }

    #[test]
    fn simple_query() {
        let mut b = BytesMut::new();
        msg(&mut b, b'Q', b"SELECT 1\0");
        let n = b.len();
        msg(&mut b, b'Q', b"INSERT INTO t VALUES (1)\0");
        match first_unit(&b, 1 << 20, &[], none) {
            Scan::Unit { len, class } => {
                assert_eq!(len, Some(n));
                assert_eq!(class.intent, Intent::Read);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(first_unit(&b[..n - 1], 1 << 20, &[], none), Scan::NeedMore);
    }

    #[test]
    fn extended_batch_up_to_sync() {
        let mut b = BytesMut::new();
        msg(&mut b, b'P', b"\0SELECT 1\0\0\0");
        msg(&mut b, b'B', b"\0\0\0\0\0\0\0\0");
        msg(&mut b, b'E', b"\0\0\0\0\0");
        msg(&mut b, b'P', b"\0UPDATE t SET x = 1\0\0\0");
        let before_sync = b.len();
        msg(&mut b, b'S', b"");
        assert_eq!(
            first_unit(&b[..before_sync], 1 << 20, &[], none),
            Scan::NeedMore
        );
        match first_unit(&b, 1 << 20, &[], none) {
            Scan::Unit { len, class } => {
                assert_eq!(len, Some(b.len()));
                assert_eq!(class.intent, Intent::Write);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn named_statements_and_flush() {
        let mut b = BytesMut::new();
        msg(&mut b, b'B', b"\0s1\0\0\0\0\0\0\0");
        msg(&mut b, b'E', b"\0\0\0\0\0");
        msg(&mut b, b'S', b"");
        let read = |n: &[u8]| {
            (n == b"s1").then_some(Classified {
                intent: Intent::Read,
                hint: None,
            })
        };
        assert!(matches!(
            first_unit(&b, 1 << 20, &[], read),
            Scan::Unit { class, .. } if class.intent == Intent::Read
        ));
        assert!(matches!(
            first_unit(&b, 1 << 20, &[], none),
            Scan::Unit { class, .. } if class.intent == Intent::Write
        ));
        let mut f = BytesMut::new();
        msg(&mut f, b'P', b"s2\0SELECT 1\0\0\0");
        msg(&mut f, b'D', b"Ss2\0");
        msg(&mut f, b'H', b"");
        assert_eq!(
            first_unit(&f, 1 << 20, &[], none),
            Scan::Unit {
                len: None,
                class: Classified::WRITE
            }
        );
    }

    #[test]
    fn sql_execute_has_the_class_of_its_statement() {
        let read = |n: &[u8]| {
            (n == b"q").then_some(Classified {
                intent: Intent::Read,
                hint: None,
            })
        };
        let mut b = BytesMut::new();
        msg(&mut b, b'Q', b"EXECUTE Q(1)\0");
        assert!(matches!(
            first_unit(&b, 1 << 20, &[], read),
            Scan::Unit { class, .. } if class.intent == Intent::Read
        ));
        let mut w = BytesMut::new();
        msg(&mut w, b'Q', b"EXECUTE other\0");
        assert!(matches!(
            first_unit(&w, 1 << 20, &[], read),
            Scan::Unit { class, .. } if class.intent == Intent::Write
        ));
    }
}
