//! Is this SQL safe on a replica? One pass of the [lexer](crate::sql::lexer)
//! over the text, no parser: a statement is a read only when it starts
//! with a reading verb and nothing in it may write. Anything else, and
//! anything the lexer is unsure of, goes to the primary.

use crate::sql::lexer::{Lexer, Token};

mod memo;

pub use memo::classify_remembered;

/// What a text may do, from safest to least safe (so `max` combines them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Intent {
    /// Runs on a hot standby and changes nothing there.
    Read,
    /// A read, but it calls functions pgwarden does not know to be
    /// read-only: a replica only when the client says so.
    Uncertain,
    /// May write, or pgwarden cannot tell.
    Write,
}

/// An explicit `/* pgwarden:route=... */` comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub intent: Intent,
    pub hint: Option<Hint>,
}

impl Classified {
    pub const WRITE: Classified = Classified {
        intent: Intent::Write,
        hint: None,
    };

    /// Both texts run as one transaction: the less safe decides, and a
    /// primary hint anywhere wins over a replica hint.
    pub fn and(self, other: Classified) -> Classified {
        let hint = match (self.hint, other.hint) {
            (Some(Hint::Primary), _) | (_, Some(Hint::Primary)) => Some(Hint::Primary),
            (a, b) => a.or(b),
        };
        Classified {
            intent: self.intent.max(other.intent),
            hint,
        }
    }
}

/// Classifies a query text (several statements allowed).
/// `read_only_functions` are lower-case names, optionally `schema.name`.
pub fn classify(sql: &[u8], read_only_functions: &[String]) -> Classified {
    let mut out = Classified {
        intent: Intent::Read,
        hint: None,
    };
    let mut stmt = Statement::Start;
    // The last three tokens, for `name (` and `schema . name (`.
    let mut last: [Option<Token>; 3] = [None; 3];
    for token in Lexer::new(sql) {
        match token {
            Token::Comment(text) => {
                if let Some(h) = hint_in(text) {
                    out = out.and(Classified {
                        intent: Intent::Read,
                        hint: Some(h),
                    });
                }
                continue;
            }
            Token::Unsure => return Classified::WRITE.and(out),
            Token::Semicolon => {
                out.intent = out.intent.max(stmt.finish());
                stmt = Statement::Start;
            }
            // Inside a reading statement only a write word changes
            // anything: most words are dismissed by the prefilter, without
            // being lower-cased or compared.
            Token::Word(w) if stmt.scans() => {
                let writes =
                    may_be_write_word(w) && is_write_word(keyword(w, &mut [0u8; KEYWORD_MAX]));
                if writes {
                    out.intent = Intent::Write;
                }
            }
            Token::Word(w) => {
                let mut buf = [0u8; KEYWORD_MAX];
                let word = keyword(w, &mut buf);
                stmt = stmt.word(word);
                if stmt.scans() && is_write_word(word) {
                    out.intent = Intent::Write;
                }
            }
            Token::LParen => {
                if stmt == Statement::Start {
                    // `(SELECT ...) UNION ...`
                    stmt = Statement::Scan;
                } else if stmt.scans() {
                    out.intent = out.intent.max(call_at(&last, read_only_functions));
                }
            }
            _ => {}
        }
        last = [Some(token), last[0], last[1]];
    }
    out.intent = out.intent.max(stmt.finish());
    out
}

/// Where one statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    /// Nothing seen yet.
    Start,
    /// A reading verb: read unless something in it writes.
    Scan,
    /// Read-only by what it is (`SHOW`, `SET`, `COMMIT`, `BEGIN READ ONLY`).
    Read,
    /// `SET`: read unless it changes the role.
    Set,
    /// `BEGIN`/`START`: read only if `READ ONLY` follows.
    Begin,
    BeginRead,
    BeginReadOnly,
    Write,
}

impl Statement {
    fn word(self, w: &[u8]) -> Statement {
        match self {
            Statement::Start => match w {
                b"select" | b"with" | b"values" | b"table" | b"explain" => Statement::Scan,
                b"set" => Statement::Set,
                b"show" | b"reset" | b"commit" | b"end" | b"rollback" | b"abort" => Statement::Read,
                b"begin" | b"start" => Statement::Begin,
                _ => Statement::Write,
            },
            // `SET ROLE` and `SET SESSION AUTHORIZATION` pin the client to
            // its server: that must be the primary, where its writes go.
            Statement::Set => match w {
                b"role" | b"session" => Statement::Write,
                b"local" => Statement::Set,
                _ => Statement::Read,
            },
            Statement::Begin | Statement::BeginRead => match w {
                b"read" => Statement::BeginRead,
                b"only" if self == Statement::BeginRead => Statement::BeginReadOnly,
                _ => Statement::Begin,
            },
            other => other,
        }
    }

    fn scans(self) -> bool {
        self == Statement::Scan
    }

    fn finish(self) -> Intent {
        match self {
            Statement::Start
            | Statement::Scan
            | Statement::Read
            | Statement::Set
            | Statement::BeginReadOnly => Intent::Read,
            _ => Intent::Write,
        }
    }
}

/// Words that make a reading statement a write wherever they appear:
/// data-modifying CTEs, `SELECT ... INTO`, `FOR UPDATE`/`FOR SHARE`.
const WRITE_WORDS: [&[u8]; 18] = [
    b"insert",
    b"update",
    b"delete",
    b"merge",
    b"into",
    b"share",
    b"truncate",
    b"create",
    b"drop",
    b"alter",
    b"grant",
    b"revoke",
    b"call",
    b"copy",
    b"lock",
    b"do",
    b"nextval",
    b"setval",
];

fn is_write_word(w: &[u8]) -> bool {
    WRITE_WORDS.contains(&w)
}

/// One bit per (length, first letter, last letter) of the write words, in
/// any case: a word whose bit is clear is not one of them. (Write words
/// are all letters, and `| 0x20` lower-cases an ASCII letter.) The
/// multipliers give the 18 words 18 bits and leave clear the bits of 65
/// common SQL keywords and column names: `where`, `from`, `limit`...
static WRITE_WORD_BITS: u128 = write_word_bits();

const fn write_word_bits() -> u128 {
    let mut bits = 0u128;
    let mut i = 0;
    while i < WRITE_WORDS.len() {
        bits |= 1 << word_bit(WRITE_WORDS[i]);
        i += 1;
    }
    bits
}

const fn word_bit(w: &[u8]) -> u32 {
    let (first, last) = ((w[0] | 0x20) as u32, (w[w.len() - 1] | 0x20) as u32);
    (first * 8 + last * 15 + w.len() as u32 * 6) % 128
}

/// False when `w` (as written) cannot be a write word in any case.
fn may_be_write_word(w: &[u8]) -> bool {
    (2..=8).contains(&w.len()) && WRITE_WORD_BITS & (1 << word_bit(w)) != 0
}

/// What a `(` after `last` (newest first) is: a call, or syntax.
fn call_at(last: &[Option<Token>; 3], read_only_functions: &[String]) -> Intent {
    let name = match last[0] {
        Some(Token::Word(w)) => w,
        // A quoted name is the same function when written in lower case.
        Some(Token::Quoted(q)) => q,
        _ => return Intent::Read,
    };
    let schema = match (last[1], last[2]) {
        (Some(Token::Dot), Some(Token::Word(s) | Token::Quoted(s))) => Some(s),
        (Some(Token::Dot), _) => Some(&b"?"[..]),
        // `WITH name (cols) AS`, `AS alias (cols)`: column lists.
        (Some(Token::Word(w)), _)
            if [&b"with"[..], b"recursive", b"as"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            return Intent::Read
        }
        _ => None,
    };
    let quoted = matches!(last[0], Some(Token::Quoted(_)));
    if quoted && ((schema.is_none() && is_syntax(name)) || name.iter().any(u8::is_ascii_uppercase))
    {
        // `"select"(...)` is a function named select, not the keyword;
        // `"Lower"(...)` is not the built-in `lower`.
        return match writes(name) {
            true => Intent::Write,
            false => Intent::Uncertain,
        };
    }
    call(schema, name, read_only_functions)
}

/// What calling `schema.name` (or plain `name`) does.
fn call(schema: Option<&[u8]>, name: &[u8], read_only_functions: &[String]) -> Intent {
    let mut buf = [0u8; 64];
    let name = lower(name, &mut buf);
    let mut sbuf = [0u8; 64];
    let schema = schema.map(|s| lower(s, &mut sbuf));
    if schema.is_none() && is_syntax(name) {
        return Intent::Read;
    }
    if writes(name) {
        return Intent::Write;
    }
    let listed = read_only_functions
        .iter()
        .any(|f| match (f.rsplit_once('.'), schema) {
            (Some((fs, fname)), Some(s)) => fs.as_bytes() == s && fname.as_bytes() == name,
            (None, _) => f.as_bytes() == name,
            (Some(_), None) => false,
        });
    let builtin = matches!(schema, None | Some(b"pg_catalog")) && is_builtin_read(name);
    if listed || builtin {
        Intent::Read
    } else {
        Intent::Uncertain
    }
}

/// Keywords and type names that take parentheses without being calls.
fn is_syntax(w: &[u8]) -> bool {
    matches!(
        w,
        b"select"
            | b"from"
            | b"where"
            | b"and"
            | b"or"
            | b"not"
            | b"in"
            | b"exists"
            | b"any"
            | b"all"
            | b"some"
            | b"as"
            | b"on"
            | b"using"
            | b"join"
            | b"lateral"
            | b"values"
            | b"array"
            | b"row"
            | b"over"
            | b"filter"
            | b"within"
            | b"case"
            | b"when"
            | b"then"
            | b"else"
            | b"cast"
            | b"coalesce"
            | b"nullif"
            | b"greatest"
            | b"least"
            | b"with"
            | b"recursive"
            | b"union"
            | b"intersect"
            | b"except"
            | b"by"
            | b"having"
            | b"limit"
            | b"offset"
            | b"is"
            | b"between"
            | b"like"
            | b"ilike"
            | b"similar"
            | b"distinct"
            | b"partition"
            | b"range"
            | b"rows"
            | b"groups"
            | b"extract"
            | b"position"
            | b"substring"
            | b"overlay"
            | b"trim"
            | b"explain"
            | b"analyze"
            | b"grouping"
            | b"cube"
            | b"rollup"
            | b"sets"
            | b"materialized"
            | b"only"
            | b"numeric"
            | b"decimal"
            | b"varchar"
            | b"char"
            | b"character"
            | b"varying"
            | b"bit"
            | b"timestamp"
            | b"timestamptz"
            | b"time"
            | b"timetz"
            | b"interval"
            | b"float"
            | b"precision"
            | b"xmlelement"
            | b"xmlforest"
            | b"table"
            | b"returning"
            | b"order"
            | b"group"
            | b"fetch"
            | b"first"
            | b"next"
            | b"ordinality"
            | b"escape"
    )
}

/// Functions that write or need the primary's session (sequences,
/// advisory locks, transaction ids, large objects, `set_config`).
fn writes(w: &[u8]) -> bool {
    matches!(
        w,
        b"nextval"
            | b"setval"
            | b"currval"
            | b"lastval"
            | b"txid_current"
            | b"pg_current_xact_id"
            | b"set_config"
            | b"pg_notify"
            | b"pg_switch_wal"
            | b"pg_create_restore_point"
    ) || w.starts_with(b"pg_advisory")
        || w.starts_with(b"pg_try_advisory")
        || w.starts_with(b"lo_")
        || w.starts_with(b"dblink")
}

/// Built-in functions that only read.
fn is_builtin_read(w: &[u8]) -> bool {
    matches!(
        w,
        b"count"
            | b"sum"
            | b"avg"
            | b"min"
            | b"max"
            | b"abs"
            | b"ceil"
            | b"ceiling"
            | b"floor"
            | b"round"
            | b"trunc"
            | b"mod"
            | b"power"
            | b"sqrt"
            | b"exp"
            | b"ln"
            | b"log"
            | b"sign"
            | b"random"
            | b"lower"
            | b"upper"
            | b"length"
            | b"char_length"
            | b"octet_length"
            | b"substr"
            | b"replace"
            | b"concat"
            | b"concat_ws"
            | b"format"
            | b"left"
            | b"right"
            | b"lpad"
            | b"rpad"
            | b"ltrim"
            | b"rtrim"
            | b"btrim"
            | b"split_part"
            | b"strpos"
            | b"md5"
            | b"encode"
            | b"decode"
            | b"to_char"
            | b"to_date"
            | b"to_timestamp"
            | b"to_number"
            | b"now"
            | b"date_trunc"
            | b"date_part"
            | b"age"
            | b"clock_timestamp"
            | b"statement_timestamp"
            | b"transaction_timestamp"
            | b"make_date"
            | b"make_interval"
            | b"make_timestamp"
            | b"array_agg"
            | b"string_agg"
            | b"json_agg"
            | b"jsonb_agg"
            | b"json_build_object"
            | b"jsonb_build_object"
            | b"json_build_array"
            | b"jsonb_build_array"
            | b"json_object_agg"
            | b"jsonb_object_agg"
            | b"row_to_json"
            | b"to_json"
            | b"to_jsonb"
            | b"jsonb_set"
            | b"jsonb_extract_path"
            | b"json_extract_path"
            | b"jsonb_extract_path_text"
            | b"json_extract_path_text"
            | b"jsonb_array_elements"
            | b"json_array_elements"
            | b"jsonb_each"
            | b"json_each"
            | b"jsonb_typeof"
            | b"jsonb_array_length"
            | b"jsonb_path_query"
            | b"array_length"
            | b"unnest"
            | b"generate_series"
            | b"array_to_string"
            | b"string_to_array"
            | b"regexp_replace"
            | b"regexp_matches"
            | b"regexp_match"
            | b"pg_is_in_recovery"
            | b"pg_last_wal_replay_lsn"
            | b"pg_last_wal_receive_lsn"
            | b"pg_last_xact_replay_timestamp"
            | b"version"
            | b"current_setting"
            | b"current_database"
            | b"current_schema"
            | b"pg_backend_pid"
            | b"inet_server_port"
            | b"inet_server_addr"
            | b"inet_client_addr"
            | b"inet_client_port"
            | b"pg_postmaster_start_time"
            | b"row_number"
            | b"rank"
            | b"dense_rank"
            | b"lag"
            | b"lead"
            | b"first_value"
            | b"last_value"
            | b"ntile"
            | b"percent_rank"
            | b"cume_dist"
            | b"percentile_cont"
            | b"percentile_disc"
            | b"mode"
            | b"bool_and"
            | b"bool_or"
            | b"every"
            | b"gen_random_uuid"
            | b"pg_sleep"
            | b"pg_typeof"
            | b"pg_size_pretty"
            | b"pg_relation_size"
            | b"pg_total_relation_size"
            | b"pg_database_size"
            | b"pg_table_size"
            | b"pg_indexes_size"
            | b"has_table_privilege"
            | b"has_schema_privilege"
            | b"format_type"
            | b"obj_description"
            | b"col_description"
            | b"array_position"
            | b"array_remove"
            | b"array_append"
            | b"cardinality"
            | b"to_tsvector"
            | b"to_tsquery"
            | b"plainto_tsquery"
            | b"websearch_to_tsquery"
            | b"ts_rank"
            | b"ts_headline"
            | b"setweight"
            | b"date"
            | b"int4"
            | b"int8"
            | b"text"
            | b"bool"
            | b"stddev"
            | b"variance"
            | b"corr"
            | b"width_bucket"
            | b"initcap"
            | b"reverse"
            | b"repeat"
            | b"chr"
            | b"ascii"
            | b"quote_ident"
            | b"quote_literal"
            | b"hashtext"
            | b"isfinite"
            | b"justify_interval"
            | b"pg_get_viewdef"
            | b"pg_get_indexdef"
            | b"pi"
    )
}

/// `pgwarden:route=primary|replica` inside a comment.
fn hint_in(comment: &[u8]) -> Option<Hint> {
    const KEY: &[u8] = b"pgwarden:route=";
    let at = comment
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))?;
    let rest = &comment[at + KEY.len()..];
    let value_end = rest
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let value = &rest[..value_end];
    if value.eq_ignore_ascii_case(b"primary") {
        Some(Hint::Primary)
    } else if value.eq_ignore_ascii_case(b"replica") {
        Some(Hint::Replica)
    } else {
        None
    }
}

/// Lower-cases into `buf`; longer words are cut, which only makes them
/// unknown (and so never read-only by mistake: no listed word is that long).
/// Longer than any word [`Statement::word`] or [`is_write_word`] knows.
const KEYWORD_MAX: usize = 16;

/// A word in lower case for the keyword matches, or nothing for a word too
/// long to be one (most identifiers): no 64-byte buffer per word.
fn keyword<'b>(w: &[u8], buf: &'b mut [u8; KEYWORD_MAX]) -> &'b [u8] {
    if w.len() > KEYWORD_MAX {
        return &[];
    }
    for (d, s) in buf.iter_mut().zip(w) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..w.len()]
}

fn lower<'b>(w: &[u8], buf: &'b mut [u8; 64]) -> &'b [u8] {
    let n = w.len().min(buf.len());
    for (d, s) in buf.iter_mut().zip(&w[..n]) {
        *d = s.to_ascii_lowercase();
    }
    if w.len() > n {
        // Cannot equal any listed word.
        buf[63] = b'#';
    }
    &buf[..n]
}

#[cfg(test)]
mod tests;
