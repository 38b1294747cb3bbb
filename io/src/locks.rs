//! The in-process push-lock table: what answers the sessions'
//! `Output::AcquireLock` and `Output::ReleaseLock` when one instance
//! serves alone. The core's [`LockTable`] keeps who holds each lock and
//! who waits for it; this keeps it under a lock and wakes the waiters
//! when a lock changes hands. A grant, or a place in a queue, is a
//! [`PushLock`]; dropping it lets go of it, so a connection that ends
//! releases whatever it still holds or waits for.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use gitmouth_core::lock_table::{Acquired, LockTable, LockTicket, Standing};
use gitmouth_core::server::LockHeld;

/// The repositories being pushed to, and the pushes waiting for them.
#[derive(Debug, Default)]
pub struct PushLocks {
    table: Mutex<LockTable>,
    /// Notified whenever a lock changes hands. One event for all: the
    /// waiters are few (each holds a command slot), and each looks only at
    /// its own ticket.
    changed: event_listener::Event,
}

/// A held lock, or a place in a lock's queue; dropping it lets go.
#[derive(Debug)]
pub struct PushLock {
    locks: Arc<PushLocks>,
    ticket: LockTicket,
}

/// The answer to [`PushLocks::acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// The lock is this one's.
    Granted(PushLock),
    /// Another push holds it (and the request does not wait).
    Held(LockHeld),
    /// Another push holds it: this place in its queue waits
    /// ([`PushLocks::next_change`]).
    Queued(PushLock, LockHeld),
}

impl PushLocks {
    fn table(&self) -> MutexGuard<'_, LockTable> {
        // A poisoned lock is still usable: the table is consistent after
        // every call.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock of `repo` for `user`; when another push holds it,
    /// says so, or with `wait` queues the request behind the others.
    pub fn acquire(self: &Arc<Self>, repo: &str, user: &str, now: Instant, wait: bool) -> Acquire {
        let lock = |ticket| PushLock {
            locks: Arc::clone(self),
            ticket,
        };
        match self.table().acquire(repo, user, now, wait) {
            Acquired::Granted(ticket) => Acquire::Granted(lock(ticket)),
            Acquired::Held(held) => Acquire::Held(held),
            Acquired::Queued(ticket, held) => Acquire::Queued(lock(ticket), held),
        }
    }

    /// Takes the lock of `repo` without waiting, or says since when (and
    /// by whom) another push holds it.
    pub fn try_acquire(
        self: &Arc<Self>,
        repo: &str,
        user: &str,
        now: Instant,
    ) -> Result<PushLock, LockHeld> {
        match self.acquire(repo, user, now, false) {
            Acquire::Granted(lock) => Ok(lock),
            Acquire::Held(held) | Acquire::Queued(_, held) => Err(held),
        }
    }

    /// Whether `repo` is locked now.
    pub fn is_held(&self, repo: &str) -> bool {
        self.table().is_held(repo)
    }

    /// How many pushes wait for `repo`'s lock.
    pub fn waiting(&self, repo: &str) -> usize {
        self.table().waiting(repo)
    }

    /// Waits until `place` holds its lock, or its lock's holder is no
    /// longer `told`; says which. Woken by the table, never by a clock.
    pub async fn next_change(self: Arc<Self>, place: LockTicket, told: LockHeld) -> Standing {
        loop {
            // Armed before looking, so that a change in between is seen.
            let listener = self.changed.listen();
            match self.table().standing(place) {
                Standing::Waits(held) if held == told => {}
                other => return other,
            }
            listener.await;
        }
    }
}

impl PushLock {
    /// The table's name for this grant or place.
    pub fn ticket(&self) -> LockTicket {
        self.ticket
    }
}

impl Drop for PushLock {
    fn drop(&mut self) {
        let handed_on = self.locks.table().release(self.ticket, Instant::now());
        if handed_on {
            self.locks.changed.notify(usize::MAX);
        }
    }
}
