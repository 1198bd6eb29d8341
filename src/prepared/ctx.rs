//! What rewriting one client message needs to know and may change, and
//! what it answers: shared by [`super::rewrite`] (which dispatches each
//! message), [`super::commands`] (SQL `PREPARE`/`EXECUTE`/`DEALLOCATE`)
//! and [`super::inject`] (the messages pgwarden adds for the server).

use super::inject::Unnamed;
use super::{ClientStatements, Followed, Outstanding, Registry, ServerStatements};
use crate::state::{InertMemo, ServerParams};

/// What pgwarden knows while rewriting one client's messages.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub queue: &'a mut Outstanding,
    /// `max_prepared_statements`.
    pub max: usize,
    /// Statements used since this tick belong to the running transaction.
    pub since: u64,
    /// The server's session settings.
    pub settings: &'a mut ServerParams,
    /// The client's statements and portals that change settings.
    pub followed: &'a mut Followed,
    /// Setting changes wait for their block to end (or are in flight):
    /// statements that end or split a block matter too.
    pub watching: bool,
    /// Why the client is pinned to its server (`state::pins::reason` bits).
    pub pins: &'a mut u8,
    /// Refuse session-only features instead of pinning.
    pub refuse_pins: bool,
    /// Transaction or statement mode: servers are shared between clients.
    pub pooled: bool,
    /// Command tags owed to the unnamed statement and portal.
    pub unnamed: &'a mut Unnamed,
    /// The last Parse text found to do nothing pgwarden follows.
    pub inert: &'a mut InertMemo,
}

/// The outcome for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the message as it is.
    Verbatim,
    /// The message was replaced by what was written to `out` (maybe nothing).
    Replaced,
}
