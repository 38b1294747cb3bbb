//! The in-process push-lock table: what answers the sessions'
//! `Output::AcquireLock` and `Output::ReleaseLock` when one instance
//! serves alone. A grant is a [`PushLock`]; dropping it releases the
//! repository, so a connection that ends releases whatever it still holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gitmouth_core::server::LockHeld;

/// The repositories being pushed to.
#[derive(Debug, Default)]
pub struct PushLocks {
    held: Mutex<BTreeMap<String, Instant>>,
}

/// A held lock; dropping it releases the repository.
#[derive(Debug)]
pub struct PushLock {
    locks: Arc<PushLocks>,
    repo: String,
}

impl PushLocks {
    /// Takes the lock of `repo`, or says since when another push holds it.
    pub fn try_acquire(self: &Arc<Self>, repo: &str, now: Instant) -> Result<PushLock, LockHeld> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&since) = held.get(repo) {
            return Err(LockHeld { since });
        }
        held.insert(repo.to_owned(), now);
        Ok(PushLock {
            locks: Arc::clone(self),
            repo: repo.to_owned(),
        })
    }

    /// Whether `repo` is locked now.
    pub fn is_held(&self, repo: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(repo)
    }
}

impl Drop for PushLock {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.repo);
    }
}
