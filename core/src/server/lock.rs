//! One push at a time per repository (DESIGN.md, "Locking"): a second push
//! is told plainly that another is in progress. Clones take no lock.
//!
//! The table lives in one server process; the lock is released exactly
//! once, when its holder is dropped, whatever path the session takes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub fn try_acquire(self: &Arc<Self>, repo: &str, now: Instant) -> Result<PushLock, Instant> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&since) = held.get(repo) {
            return Err(since);
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

/// "12 seconds ago", for the user's message.
pub fn ago(since: Instant, now: Instant) -> String {
    let secs = now.saturating_duration_since(since).as_secs();
    match secs {
        0 => "just now".into(),
        1 => "1 second ago".into(),
        s if s < 120 => format!("{s} seconds ago"),
        s => format!("{} minutes ago", s / 60),
    }
}
