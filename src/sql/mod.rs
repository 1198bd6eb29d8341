//! Reading SQL text without a parser: a lexer that knows quoting, comments
//! and dollar quotes, and the few statements pgwarden must understand
//! (`PREPARE`/`EXECUTE`/`DEALLOCATE`).
//!
//! Owns: text in, tokens and names out. Must not: decide anything; the
//! classifier (`routing`), settings tracking (`state`) and statement
//! renaming (`prepared`) build on it, so it sits below all three.

pub mod lexer;
pub mod shape;
pub mod statements;
