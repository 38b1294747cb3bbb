//! The push-lock table: who holds each repository's lock, and who waits
//! for it, in turn. The table behind the sessions' `Output::AcquireLock`
//! and `Output::ReleaseLock`: plain data with time as an argument, kept by
//! the runtime (under its own lock, waking the waiters it names); the
//! core's sessions never touch it.
//!
//! A released lock goes straight to the first waiter (first come, first
//! served), so that a pusher who did not wait cannot slip in ahead of
//! those who do, and nobody waits behind a stream of newcomers.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::actions::LockHeld;

/// The key of `repo`'s push lock where several instances share it (a
/// PostgreSQL advisory lock): the first eight bytes of the SHA-256 of a
/// fixed label and the name, so that every instance and version agrees.
/// Names may collide (about one pair in 2^32 among 2^32 names); the
/// holder table tells them apart.
pub fn shared_lock_key(repo: &str) -> i64 {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"gitmouth push lock\0");
    hash.update(repo.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// One request's name in the table, for as long as it holds or waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockTicket(u64);

/// The answer to [`LockTable::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lock is the ticket's.
    Granted(LockTicket),
    /// Another push holds it, and the request does not wait.
    Held(LockHeld),
    /// Another push holds it: the ticket waits in the queue.
    Queued(LockTicket, LockHeld),
}

/// Where a ticket stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds its lock.
    Holds,
    /// It waits; the holder is this one.
    Waits(LockHeld),
    /// It neither holds nor waits (released, withdrawn, or never known).
    Gone,
}

#[derive(Debug)]
struct Holder {
    ticket: LockTicket,
    user: String,
    since: Instant,
}

#[derive(Debug)]
struct RepoLock {
    holder: Holder,
    queue: VecDeque<(LockTicket, String)>,
}

impl RepoLock {
    fn held(&self) -> LockHeld {
        LockHeld {
            since: self.holder.since,
            user: self.holder.user.clone(),
            instance: None,
        }
    }
}

/// Every repository's push lock.
#[derive(Debug, Default)]
pub struct LockTable {
    repos: BTreeMap<String, RepoLock>,
    next: u64,
}

impl LockTable {
    /// Takes the lock of `repo` for `user`; when it is held, says so, or
    /// with `wait` queues the request behind the others.
    pub fn acquire(&mut self, repo: &str, user: &str, now: Instant, wait: bool) -> Acquired {
        let ticket = LockTicket(self.next);
        match self.repos.get_mut(repo) {
            Some(lock) if wait => {
                self.next += 1;
                lock.queue.push_back((ticket, user.to_owned()));
                Acquired::Queued(ticket, lock.held())
            }
            Some(lock) => Acquired::Held(lock.held()),
            None => {
                self.next += 1;
                let holder = Holder {
                    ticket,
                    user: user.to_owned(),
                    since: now,
                };
                self.repos.insert(
                    repo.to_owned(),
                    RepoLock {
                        holder,
                        queue: VecDeque::new(),
                    },
                );
                Acquired::Granted(ticket)
            }
        }
    }

    /// Lets go of whatever `ticket` has: a lock held goes to the first
    /// waiter (from `now`) or is free; a place in a queue is given up.
    /// True if the lock changed hands, so that its waiters must look again.
    pub fn release(&mut self, ticket: LockTicket, now: Instant) -> bool {
        let Some((repo, lock)) = self.repos.iter_mut().find(|(_, lock)| {
            lock.holder.ticket == ticket || lock.queue.iter().any(|(t, _)| *t == ticket)
        }) else {
            return false;
        };
        if lock.holder.ticket != ticket {
            lock.queue.retain(|(t, _)| *t != ticket);
            return false;
        }
        match lock.queue.pop_front() {
            Some((next, user)) => {
                lock.holder = Holder {
                    ticket: next,
                    user,
                    since: now,
                };
            }
            None => {
                let repo = repo.clone();
                self.repos.remove(&repo);
            }
        }
        true
    }

    /// Where `ticket` stands now.
    pub fn standing(&self, ticket: LockTicket) -> Standing {
        for lock in self.repos.values() {
            if lock.holder.ticket == ticket {
                return Standing::Holds;
            }
            if lock.queue.iter().any(|(t, _)| *t == ticket) {
                return Standing::Waits(lock.held());
            }
        }
        Standing::Gone
    }

    /// Whether `repo` is locked now.
    pub fn is_held(&self, repo: &str) -> bool {
        self.repos.contains_key(repo)
    }

    /// How many requests wait for `repo`'s lock.
    pub fn waiting(&self, repo: &str) -> usize {
        self.repos.get(repo).map_or(0, |lock| lock.queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::shared_lock_key;

    /// Every instance and every version must agree on a name's key: a
    /// change here would let two versions' pushes to one repository run
    /// at once during an upgrade.
    #[test]
    fn the_shared_key_of_a_name_never_changes() {
        assert_eq!(shared_lock_key("app"), 1_124_174_565_146_198_165);
        assert_ne!(shared_lock_key("app"), shared_lock_key("app2"));
    }
}
