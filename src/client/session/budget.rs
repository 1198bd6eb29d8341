//! The client's read buffer: kept small while idle, grown towards a whole
//! message at most doubling at a time, and past its first bytes charged
//! against `max_total_client_buffer`, shared by every client.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use crate::net::{take_buffer, BUF_SIZE};
use crate::shared::Shared;

/// Each client's first bytes buffered are its own; beyond them it needs a
/// place under `max_total_client_buffer`.
const SHARED_FROM: usize = 64 * 1024;

/// How often a client held back by `max_total_client_buffer` looks again.
pub(super) const BUFFER_RETRY: Duration = Duration::from_millis(10);

/// One client's share of the buffering across all clients.
pub(super) struct Budget {
    /// `max_total_client_buffer / max_client_buffer`: how many clients may
    /// buffer past their first [`SHARED_FROM`] bytes at once.
    max_holders: usize,
    /// This client has one of those places.
    holding: bool,
    /// Its bytes past [`SHARED_FROM`], counted in `Shared::client_buffered`.
    charged: usize,
}

impl Budget {
    pub(super) fn new(max_buffer: usize, max_total: usize) -> Self {
        Self {
            max_holders: (max_total / max_buffer.max(1)).max(1),
            holding: false,
            charged: 0,
        }
    }

    /// Whether a client with `buffered` bytes may be read now. Past its
    /// first [`SHARED_FROM`] bytes it needs one of `max_holders` places
    /// (each allows up to `max_client_buffer`), and is not read until it
    /// has one. A holder is never held back, so holders always finish
    /// their message and give their place up: no one waits on a waiter.
    pub(super) fn may_read(&mut self, buffered: usize, shared: &Shared) -> bool {
        let over = buffered >= SHARED_FROM;
        let holders = &shared.buffer_holders;
        if over && !self.holding {
            let taken = holders.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_holders).then_some(n + 1)
            });
            if taken.is_err() {
                return false;
            }
            self.holding = true;
        } else if !over && self.holding {
            holders.fetch_sub(1, Ordering::AcqRel);
            self.holding = false;
        }
        // For SHOW MEM-like accounting and tests: bytes past the first ones.
        let want = buffered.saturating_sub(SHARED_FROM);
        let total = &shared.client_buffered;
        if want > self.charged {
            total.fetch_add(want - self.charged, Ordering::Relaxed);
        } else if want < self.charged {
            total.fetch_sub(self.charged - want, Ordering::Relaxed);
        }
        self.charged = want;
        true
    }

    /// Gives back what this client holds (when the session ends).
    pub(super) fn release(&mut self, shared: &Shared) {
        shared
            .client_buffered
            .fetch_sub(std::mem::take(&mut self.charged), Ordering::Relaxed);
        if std::mem::take(&mut self.holding) {
            shared.buffer_holders.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Keeps room to read into without growing on every read.
#[inline]
pub(super) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = take_buffer();
    } else if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUF_SIZE);
    }
}

/// Makes room towards a whole message of `total` bytes: at most doubling
/// at a time, so that an announced length is never allocated before the
/// bytes arrive.
pub(super) fn grow_for(buf: &mut BytesMut, total: Option<usize>) {
    let Some(total) = total else {
        return;
    };
    if total > buf.capacity() {
        let step = buf.capacity().max(BUF_SIZE);
        buf.reserve((total - buf.len()).min(step));
    }
}
