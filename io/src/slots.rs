//! The server's command slots (`--max-commands`): git commands running at
//! once in all, across connections. What answers the sessions'
//! `Output::AcquireSlot` and `Output::ReleaseSlot`. A slot given is a
//! [`CommandSlot`]; dropping it gives it back, so a connection that ends
//! gives back whatever it still holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The slots, and how many are given.
#[derive(Debug)]
pub struct CommandSlots {
    /// At most this many at once (0: no limit); changes on SIGHUP.
    max: AtomicUsize,
    used: AtomicUsize,
}

/// A slot given; dropping it gives it back.
#[derive(Debug)]
pub struct CommandSlot(Arc<CommandSlots>);

impl CommandSlots {
    /// Slots for at most `max` commands at once (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            max: AtomicUsize::new(max),
            used: AtomicUsize::new(0),
        }
    }

    /// Changes the limit (0: no limit). Commands running past a lowered
    /// limit go on; new ones wait for the count to fall under it.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::SeqCst);
    }

    /// A slot, if one is free.
    pub fn try_take(self: &Arc<Self>) -> Option<CommandSlot> {
        let max = self.max.load(Ordering::SeqCst);
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (max == 0 || used < max).then_some(used + 1)
            })
            .ok()
            .map(|_| CommandSlot(Arc::clone(self)))
    }

    /// How many are given now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

impl Drop for CommandSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
    }
}
