//! A small SQL lexer: just enough to see keywords, function calls and
//! statement ends past comments, string literals, quoted identifiers and
//! dollar quotes, so that none of them can hide or fake a keyword.
//!
//! It never allocates. Anything it cannot read with certainty (an
//! unterminated literal, a backslash in a plain string that
//! `standard_conforming_strings = off` would read differently) is reported
//! as [`Token::Unsure`], which the classifier sends to the primary.

/// One token; words are borrowed from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted identifier or keyword, as written.
    Word(&'a [u8]),
    /// A quoted identifier (its text, quotes off): never a keyword.
    Quoted(&'a [u8]),
    /// A string, number, parameter or operator: nothing to look at.
    Literal,
    LParen,
    RParen,
    Dot,
    Semicolon,
    /// A comment's text (hints live there).
    Comment(&'a [u8]),
    Unsure,
}

pub struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }

    /// Where the next token starts (or whitespace before it).
    pub fn offset(&self) -> usize {
        self.i
    }

    fn peek(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    /// Skips to the end of a quoted run closed by `q` (doubled `q` escapes
    /// it; `backslash` also escapes). False when unterminated.
    fn skip_quoted(&mut self, q: u8, backslash: bool) -> bool {
        self.i += 1;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if backslash && c == b'\\' {
                self.i += 1;
            } else if c == q {
                if self.peek(0) == Some(q) {
                    self.i += 1;
                } else {
                    return true;
                }
            }
        }
        false
    }

    /// `$tag$` at the cursor: the tag's length including both `$`.
    fn dollar_tag(&self) -> Option<usize> {
        let rest = &self.s[self.i + 1..];
        let end = rest
            .iter()
            .position(|&c| !(is_ident_start(c) || c.is_ascii_digit()))?;
        if rest.get(end) != Some(&b'$') || rest.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        Some(end + 2)
    }
}

/// Byte classes, one table lookup per byte: the lexer runs on every
/// routed transaction's text, and the chains of comparisons it replaces
/// were most of its cost.
const START: u8 = 1;
const IDENT: u8 = 2;
const SPACE: u8 = 4;
/// Bytes that may open a comment, a literal or a quoted name (`e`/`E` only
/// before a quote, which the lexer checks itself).
const QUOTING: u8 = 8;
/// What continues a number: `1.5e10`, `0x1F`, `1_000`.
const NUMBER: u8 = 16;

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let start = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        if start {
            t[c] |= START | IDENT;
        }
        if b.is_ascii_digit() || b == b'$' {
            t[c] |= IDENT;
        }
        // NUL ends a C string inside a message body: skipped as space.
        if b.is_ascii_whitespace() || b == 0 {
            t[c] |= SPACE;
        }
        if matches!(b, b'-' | b'/' | b'\'' | b'"' | b'$') {
            t[c] |= QUOTING;
        }
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' {
            t[c] |= NUMBER;
        }
        c += 1;
    }
    t
}

fn is_ident_start(c: u8) -> bool {
    CLASS[c as usize] & START != 0
}

/// A byte that continues a name, a `$tag$` or a `$1`: a digit after one
/// belongs to that token, not to a number.
pub(crate) fn is_ident(c: u8) -> bool {
    CLASS[c as usize] & IDENT != 0
}

/// How many bytes at the start of `s` are in `class`.
fn run_of(s: &[u8], class: u8) -> usize {
    s.iter()
        .position(|&c| CLASS[c as usize] & class == 0)
        .unwrap_or(s.len())
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    /// Words, numbers and one-byte punctuation, which are nearly every
    /// token of a routed query, are read here, inlined into the caller's
    /// loop; comments, literals and quoted names go through
    /// [`Lexer::quoted`], out of line, so that this stays small.
    #[inline(always)]
    fn next(&mut self) -> Option<Token<'a>> {
        self.i += run_of(self.s.get(self.i..)?, SPACE);
        let c = self.peek(0)?;
        let start = self.i;
        let class = CLASS[c as usize];
        if class & START != 0 {
            if c | 0x20 == b'e' && self.peek(1) == Some(b'\'') {
                return Some(self.quoted(c));
            }
            self.i += run_of(&self.s[start..], IDENT);
            return Some(Token::Word(&self.s[start..self.i]));
        }
        if class & QUOTING != 0 {
            return Some(self.quoted(c));
        }
        self.i += 1;
        Some(match c {
            b'(' => Token::LParen,
            b')' => Token::RParen,
            b';' => Token::Semicolon,
            b'.' if !self.peek(0).is_some_and(|c| c.is_ascii_digit()) => Token::Dot,
            c if c.is_ascii_digit() || c == b'.' => {
                self.i += run_of(&self.s[self.i..], NUMBER);
                Token::Literal
            }
            // Operators and other punctuation, one byte at a time (so `-`
            // or `/` never swallows a comment start after it).
            _ => Token::Literal,
        })
    }
}

impl<'a> Lexer<'a> {
    /// A token starting with a byte that may open a comment, a literal, a
    /// quoted name or a parameter: `-`, `/`, `'`, `e`/`E` before `'`,
    /// `"`, `$`.
    #[inline(never)]
    fn quoted(&mut self, c: u8) -> Token<'a> {
        let start = self.i;
        match c {
            b'-' if self.peek(1) == Some(b'-') => {
                let end = self.s[start..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.s.len(), |p| start + p);
                self.i = end;
                Token::Comment(&self.s[start + 2..end])
            }
            b'/' if self.peek(1) == Some(b'*') => {
                // Comments nest in PostgreSQL.
                let mut depth = 0usize;
                loop {
                    match (self.peek(0), self.peek(1)) {
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            self.i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            self.i += 2;
                            if depth == 0 {
                                break Token::Comment(&self.s[start + 2..self.i - 2]);
                            }
                        }
                        (Some(_), _) => self.i += 1,
                        (None, _) => break Token::Unsure,
                    }
                }
            }
            b'\'' => {
                // With standard_conforming_strings off a backslash escapes
                // the quote; which reading holds is the session's business.
                let ok = self.skip_quoted(b'\'', false);
                if !ok || self.s[start..self.i].contains(&b'\\') {
                    Token::Unsure
                } else {
                    Token::Literal
                }
            }
            b'e' | b'E' => {
                // Only reached before a quote: `E'...'`.
                self.i += 1;
                match self.skip_quoted(b'\'', true) {
                    true => Token::Literal,
                    false => Token::Unsure,
                }
            }
            b'"' => match self.skip_quoted(b'"', false) {
                true => Token::Quoted(&self.s[start + 1..self.i - 1]),
                false => Token::Unsure,
            },
            b'$' => match self.dollar_tag() {
                Some(len) => {
                    let tag = &self.s[start..start + len];
                    let body = start + len;
                    match self.s[body..].windows(len).position(|w| w == tag) {
                        Some(p) => {
                            self.i = body + p + len;
                            Token::Literal
                        }
                        None => {
                            self.i = self.s.len();
                            Token::Unsure
                        }
                    }
                }
                None => {
                    // $1: a parameter.
                    self.i += 1;
                    while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.i += 1;
                    }
                    Token::Literal
                }
            },
            _ => {
                // `-` or `/` opening no comment: an operator.
                self.i += 1;
                Token::Literal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        Lexer::new(s.as_bytes())
            .filter_map(|t| match t {
                Token::Word(w) => Some(String::from_utf8_lossy(w).into_owned()),
                Token::Unsure => Some("?".into()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn literals_and_comments_hide_words() {
        assert_eq!(
            words("select 'delete' , \"update\", $$insert$$, $a$ x $a$ /* drop /* nested */ */ -- into\n from t"),
            ["select", "from", "t"]
        );
        assert_eq!(words("select E'\\'' ; delete"), ["select", "delete"]);
        assert_eq!(words("select $1, $2::int"), ["select", "int"]);
    }

    #[test]
    fn byte_classes_match_their_definitions() {
        for c in 0..=255u8 {
            let start = c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
            assert_eq!(is_ident_start(c), start, "{c}");
            assert_eq!(is_ident(c), start || c.is_ascii_digit() || c == b'$', "{c}");
            let space = c.is_ascii_whitespace() || c == 0;
            assert_eq!(run_of(&[c], SPACE) == 1, space, "{c}");
            let quoting = b"-/'\"$".contains(&c);
            assert_eq!(run_of(&[c], QUOTING) == 1, quoting, "{c}");
            let number = c.is_ascii_alphanumeric() || c == b'.' || c == b'_';
            assert_eq!(run_of(&[c], NUMBER) == 1, number, "{c}");
        }
        assert_eq!(
            words(" \t\n\0select\0\0a_1$b\x0cfrom"),
            ["select", "a_1$b", "from"]
        );
    }

    #[test]
    fn unsure_when_unterminated_or_ambiguous() {
        assert_eq!(words("select 'abc"), ["select", "?"]);
        assert_eq!(
            words("select 'a\\' ; delete from t; --'"),
            ["select", "?", "delete", "from", "t"]
        );
        assert_eq!(words("select /* open"), ["select", "?"]);
        assert_eq!(words("select $q$ open"), ["select", "?"]);
    }
}
