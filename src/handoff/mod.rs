//! What a running pgwarden hands a new one in an online restart
//! (`pgwarden run --takeover PATH`): its listening sockets, then each
//! client's socket with the state that makes it the same session on the
//! new process (who it is, its cancel key, its settings, its prepared
//! statements, its routing preferences and read-your-writes position).
//!
//! Owns: the messages and their framing ([`channel`]), and the [`Outbox`]
//! sessions put themselves into. Must not: know how sessions are built or
//! run (that is [`crate::takeover`], above the client half): this module
//! is a leaf the client half and [`crate::shared`] can name.

pub mod channel;

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The version of these messages: a process speaking another is refused.
pub const VERSION: u32 = 1;

/// One message on the hand-over socket.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// The new process's first word: nothing is handed to a connection
    /// that is not a pgwarden of this version asking for it.
    Hello { version: u32, pid: u32 },
    /// The listening sockets, attached in this order: `listen`, then
    /// `admin_listen` when `admin` is true.
    Listeners { admin: bool },
    /// One client, its socket attached.
    Client(Box<HandedClient>),
    /// Every client has been handed over or has left: the old process
    /// exits, and the new one may listen on the hand-over path itself.
    Done { handed: usize, refused: usize },
}

/// A logged-in client between two transactions, as the new process needs
/// it to carry on: nothing it does not know already is sent to the client.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedClient {
    pub user: String,
    pub database: String,
    /// Its tracked startup parameters as it sent them (`application_name`
    /// included, `options` expanded).
    pub startup: Vec<(String, String)>,
    /// Its cancel key: it keeps cancelling its own queries.
    pub process_id: i32,
    pub secret_key: i32,
    /// When it logged in (milliseconds since the epoch), for `SHOW CLIENTS`.
    pub connected_ms: u64,
    /// Its session settings, startup ones and those it set since (`None`:
    /// it has run no transaction; its startup parameters say it all).
    pub settings: Option<Vec<Setting>>,
    /// Its named prepared statements (protocol and SQL `PREPARE`).
    pub statements: Vec<HandedStatement>,
    /// Its routing state, for a database with replicas.
    pub route: Option<HandedRoute>,
    /// The SCRAM keys recovered from its login, when servers are logged in
    /// to with them (an `auth_file` of SCRAM secrets and no server
    /// password): without them the new process could not open a server
    /// for it. The hand-over socket is the owner's alone (mode 0600).
    pub scram: Option<HandedScram>,
}

/// SCRAM keys as a server login uses them (see `auth::backend`).
#[derive(Serialize, Deserialize)]
pub struct HandedScram {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for HandedScram {
    // Never the keys: they log in as the user.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandedScram(..)")
    }
}

/// One session setting: its value as SQL text (`SET name = value`) or as
/// a plain string (`set_config`, startup parameters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub raw: bool,
}

/// A named statement: the client's name and what a Parse (or, for `sql`,
/// a SQL `PREPARE`) of it carries after the name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandedStatement {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    pub sql: bool,
}

/// A routed session's own choices, over its startup parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HandedRoute {
    /// `SET pgwarden.route`: `auto`, `primary` or `replica`.
    pub route: Option<String>,
    pub consistency: Option<crate::config::Consistency>,
    pub max_staleness_ms: Option<u64>,
    pub min_lsn: Option<u64>,
    /// Its tenant, and whether a query has run since it was set.
    pub tenant: Option<String>,
    pub tenant_used: bool,
    /// Where its last write ended (read-your-writes).
    pub last_write_lsn: u64,
    /// Its last write's position is not known yet (`ryw_commit_lsn =
    /// "monitor"`).
    pub write_unplaced: bool,
}

/// A client leaving this process for the new one: its state and socket.
pub type Parcel = (Box<HandedClient>, OwnedFd);

/// Where sessions put themselves once an online restart has begun; the
/// hand-over task sends each on. Empty until then.
#[derive(Default)]
pub struct Outbox {
    tx: Mutex<Option<std::sync::mpsc::Sender<Parcel>>>,
}

impl Outbox {
    /// Opens the box: from now on, [`Outbox::put`] hands clients over.
    pub fn open(&self) -> std::sync::mpsc::Receiver<Parcel> {
        let (tx, rx) = std::sync::mpsc::channel();
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Whether an online restart is under way.
    pub fn is_open(&self) -> bool {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Hands a client over; gives it back if the new process is gone.
    pub fn put(&self, parcel: Parcel) -> Result<(), Parcel> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(parcel).map_err(|e| e.0),
            None => Err(parcel),
        }
    }

    /// Closes the box once every session has ended: the receiver then
    /// sees the end of the stream.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
