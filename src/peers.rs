//! Peering, PgBouncer 1.19's model: several pgwardens behind one load
//! balancer, each with its own `peer_id`, each knowing the others'
//! addresses (`[peers]`). A client's cancel key says which instance issued
//! it, so a CancelRequest that the load balancer sends to another instance
//! is forwarded there (one short connection, as PostgreSQL's own cancel
//! is) instead of being lost.
//!
//! The key layout is PgBouncer's, so pgwardens and PgBouncers can peer
//! with each other: the process id's 2nd and 3rd bytes (big-endian on the
//! wire) hold the peer id, low byte first; the secret's last two bits are
//! a time-to-live that each forward decrements, so a misconfigured ring of
//! peers stops after three hops. That leaves 45 random bits per key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// The secret's bits that count forwards left.
pub const TTL_MASK: i32 = 0x03;

/// Who this instance is and where the others are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// 0: peering off (keys are all random, cancels are only local).
    pub me: u16,
    /// Peer id → `host:port`; this instance's own entry may be listed.
    pub peers: BTreeMap<u16, String>,
}

/// One peer and what forwarding to it has done.
#[derive(Debug, Default)]
pub struct Peer {
    pub id: u16,
    pub addr: String,
    /// Forwards connecting or waiting for the peer to close.
    pub in_flight: AtomicU32,
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
}

/// The peering in force, with counters that survive a reload.
#[derive(Debug, Default)]
pub struct Peering {
    pub me: u16,
    pub peers: BTreeMap<u16, Arc<Peer>>,
}

impl Peering {
    /// The new settings, keeping the counters of peers whose id stays.
    pub fn from_settings(settings: &PeerSettings, previous: &Peering) -> Peering {
        let peers = settings
            .peers
            .iter()
            .map(|(&id, addr)| {
                let peer = match previous.peers.get(&id) {
                    Some(old) if old.addr == *addr => old.clone(),
                    Some(old) => Arc::new(Peer {
                        id,
                        addr: addr.clone(),
                        in_flight: AtomicU32::new(old.in_flight.load(Ordering::Relaxed)),
                        forwarded: AtomicU64::new(old.forwarded.load(Ordering::Relaxed)),
                        failed: AtomicU64::new(old.failed.load(Ordering::Relaxed)),
                    }),
                    None => Arc::new(Peer {
                        id,
                        addr: addr.clone(),
                        ..Peer::default()
                    }),
                };
                (id, peer)
            })
            .collect();
        Peering {
            me: settings.me,
            peers,
        }
    }
}

/// A fresh key's process id and secret with this instance's peer id and
/// a full time-to-live written in (unchanged when peering is off).
pub fn stamp(process_id: i32, secret_key: i32, me: u16) -> (i32, i32) {
    if me == 0 {
        return (process_id, secret_key);
    }
    let [lo, hi] = me.to_le_bytes();
    let mut pid = process_id.to_be_bytes();
    pid[1] = lo;
    pid[2] = hi;
    // Positive, as real process ids are (pg_basebackup once choked on a
    // negative one, PgBouncer notes).
    pid[0] &= 0x7F;
    (i32::from_be_bytes(pid), secret_key | TTL_MASK)
}

/// The peer id a key was issued by.
pub fn owner(process_id: i32) -> u16 {
    let pid = process_id.to_be_bytes();
    u16::from_le_bytes([pid[1], pid[2]])
}

/// Forwards left in a key as it arrived.
pub fn ttl(secret_key: i32) -> i32 {
    secret_key & TTL_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncers_layout() {
        // PgBouncer: cancel_key[1] = id & 0xFF, cancel_key[2] = id >> 8,
        // cancel_key[7] |= 3, over the 8 bytes pid ++ secret on the wire.
        let (pid, secret) = stamp(-1, 0x1234_5670, 0x0102);
        let mut wire = pid.to_be_bytes().to_vec();
        wire.extend(secret.to_be_bytes());
        assert_eq!(&wire[..4], &[0x7F, 0x02, 0x01, 0xFF]);
        assert_eq!(wire[7] & 0x03, 0x03);
        assert_eq!(owner(pid), 0x0102);
        assert_eq!(ttl(secret), 3);
        assert_eq!(stamp(5, 6, 0), (5, 6), "off: untouched");
        for id in [1u16, 2, 255, 256, 65535] {
            let (pid, _) = stamp(i32::MAX, 0, id);
            assert_eq!(owner(pid), id);
            assert!(pid > 0);
        }
    }

    #[test]
    fn a_reload_keeps_the_counters_of_a_peer_that_stays() {
        let mut s = PeerSettings {
            me: 1,
            peers: [(2, "a:1".to_string()), (3, "b:1".to_string())].into(),
        };
        let first = Peering::from_settings(&s, &Peering::default());
        first.peers[&2].forwarded.store(7, Ordering::Relaxed);
        s.peers.insert(3, "c:1".into());
        let second = Peering::from_settings(&s, &first);
        assert_eq!(second.peers[&2].forwarded.load(Ordering::Relaxed), 7);
        assert_eq!(second.peers[&3].addr, "c:1");
    }
}
