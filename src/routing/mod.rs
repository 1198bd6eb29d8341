//! Where a transaction runs: the classifier that tells reads from writes,
//! and the choice among the database's nodes.
//!
//! Owns: pure decisions over text and a topology snapshot. Must not: do
//! I/O or wait; the client's session carries the decisions out.

pub mod classify;
pub mod control;
pub mod nodeset;
pub mod residency;
pub mod route;
pub mod select;
pub mod unit;

pub use classify::{classify, classify_remembered, Classified, Hint, Intent};
