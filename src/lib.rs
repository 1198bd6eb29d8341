//! pgwarden: a PostgreSQL connection proxy and pooler.
//!
//! Data flows one way: a client task ([`client`]) borrows a server from a
//! [`pool`], which opens connections through [`server`]; [`wire`] and
//! [`auth`] are pure protocol code used by both halves.

pub mod admin;
pub mod admission;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod handoff;
pub mod import;
pub mod intern;
pub mod localpg;
pub mod logging;
pub mod logline;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod peers;
pub mod pidfile;
pub mod pool;
pub mod prepared;
pub mod routing;
pub mod server;
pub mod shared;
pub mod sql;
pub mod state;
pub mod stats;
pub mod takeover;
pub mod topology;
pub mod trim;
pub mod wire;
pub mod worker;
