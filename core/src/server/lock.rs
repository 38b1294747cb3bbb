//! One push at a time per repository: a second push
//! is told plainly that another is in progress. Clones take no lock.
//!
//! The lock is shared state, so the session never touches it: it asks
//! ([`super::Output::AcquireLock`]), is answered ([`super::Input::LockReply`])
//! and releases ([`super::Output::ReleaseLock`]) exactly once, on every
//! path. The table behind it lives in the runtime (`gitmouth-io`), in
//! process today, in a shared store later.

use std::time::Instant;

/// Why a lock was not granted: another push holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHeld {
    /// When that push took it.
    pub since: Instant,
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
