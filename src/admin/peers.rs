//! `SHOW PEERS` and `SHOW PEER_POOLS`, PgBouncer's columns: the other
//! instances cancels are forwarded to ([`crate::peers`]).

use std::sync::atomic::Ordering;

use super::table::{Kind, Table};
use crate::shared::Shared;

use Kind::{Int4, Text};

/// One row per `[peers]` entry. `pool_size` is 0: pgwarden opens one short
/// connection per forwarded cancel and caps none.
pub fn peers(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("peer_id", Int4),
        ("host", Text),
        ("port", Int4),
        ("pool_size", Int4),
    ]);
    for peer in shared.cancels.peering().peers.values() {
        let (host, port) = super::show::host_port(&peer.addr);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        t.push(vec![
            i64::from(peer.id).into(),
            host.into(),
            port.into(),
            0i64.into(),
        ]);
    }
    t
}

/// Forwards in progress per peer: each is a cancel request being sent
/// (`cl_active_cancel_req`) over its own connection (`sv_active_cancel`);
/// none ever waits for a connection.
pub fn peer_pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("peer_id", Int4),
        ("cl_active_cancel_req", Int4),
        ("cl_waiting_cancel_req", Int4),
        ("sv_active_cancel", Int4),
        ("sv_login", Int4),
    ]);
    for peer in shared.cancels.peering().peers.values() {
        let active = i64::from(peer.in_flight.load(Ordering::Relaxed));
        t.push(vec![
            i64::from(peer.id).into(),
            active.into(),
            0i64.into(),
            active.into(),
            0i64.into(),
        ]);
    }
    t
}
