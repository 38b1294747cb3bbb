//! What admission decides about connections other than the one at hand,
//! delivered: each connection waiting for a place, or holding a startup,
//! has a [`Mailbox`] in [`Shared::mailboxes`]; the core's
//! [`Event`]s are put in them while the admission lock is held
//! ([`Shared::admission`]), so a connection that stops waiting and a
//! decision to let it in never cross unseen.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use gitmouth_core::admission::{Admission, ConnId, Event, Outcome, Ticket};

use crate::Shared;

/// One connection's inbox for admission's decisions about it.
#[derive(Default)]
pub struct Mailbox {
    /// Its ticket, once a waiting connection is let in.
    admitted: Mutex<Option<Ticket>>,
    /// Its startup was ended to make way for a newcomer.
    evicted: AtomicBool,
    /// Notified when either arrives.
    pub event: event_listener::Event,
}

impl Mailbox {
    /// The ticket of a connection let in, once (None before).
    pub fn take_ticket(&self) -> Option<Ticket> {
        self.admitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the connection's startup was ended to make way for another.
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }
}

/// Every connection's mailbox, by its admission name.
pub type Mailboxes = Mutex<HashMap<ConnId, Arc<Mailbox>>>;

/// Puts the core's events in their connections' mailboxes. Runs with the
/// admission lock held: a connection let in after it gave up waiting (its
/// mailbox gone) is handed back at once.
pub(crate) fn deliver(admission: &mut Admission, mailboxes: &Mailboxes) {
    while let Some(event) = admission.poll_event() {
        let boxes = mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Admit(ticket) => match boxes.get(&ticket.id()) {
                Some(mailbox) => {
                    *mailbox.admitted.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticket);
                    mailbox.event.notify(usize::MAX);
                }
                None => {
                    drop(boxes);
                    // Nobody to serve: the place goes to the next.
                    admission.close(ticket, Outcome::Authenticated, Instant::now());
                }
            },
            Event::Evict(id) => {
                if let Some(mailbox) = boxes.get(&id) {
                    mailbox.evicted.store(true, Ordering::SeqCst);
                    mailbox.event.notify(usize::MAX);
                }
            }
        }
    }
}

/// A connection's registration in [`Shared::mailboxes`], removed when
/// dropped (however its task ends).
pub struct Registration {
    shared: Arc<Shared>,
    id: ConnId,
    /// The connection's mailbox.
    pub mailbox: Arc<Mailbox>,
}

impl Registration {
    /// Registers a new connection under a fresh name.
    pub fn new(shared: &Arc<Shared>) -> Self {
        let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        let mailbox = Arc::new(Mailbox::default());
        shared
            .mailboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, mailbox.clone());
        Self {
            shared: shared.clone(),
            id,
            mailbox,
        }
    }

    /// The connection's admission name.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Stops waiting: the connection is forgotten by admission, or, if it
    /// was let in meanwhile, its place is handed back. Its mailbox goes.
    pub fn abandon(self) {
        let id = self.id;
        let mailbox = self.mailbox.clone();
        let shared = self.shared.clone();
        shared.admission(|a| {
            shared
                .mailboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if !a.abandon(id)
                && let Some(ticket) = mailbox.take_ticket()
            {
                a.close(ticket, Outcome::Authenticated, Instant::now());
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared
            .mailboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// How often, at most, a source's refusals are logged.
pub const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Sources remembered by [`RefusalLog`]; past this, the oldest are
/// forgotten (at worst, one more line for a forgotten source).
const REFUSAL_LOG_SOURCES: usize = 4096;

/// Admission's refusals, logged once per source and
/// [`REFUSAL_LOG_INTERVAL`] in one fixed form that fail2ban's filter
/// (`contrib/fail2ban/filter.d/gitmouth.conf`) matches:
///
/// ```text
/// refused connection from 192.0.2.7: source penalised for earlier failures
/// ```
///
/// with the refusals not logged since the last line as `suppressed=N`.
#[derive(Default)]
pub struct RefusalLog {
    /// Per source: when its last line was logged, and the refusals since.
    sources: HashMap<std::net::IpAddr, (Instant, u64)>,
}

impl RefusalLog {
    /// A refusal of a connection from `ip`: logged unless this source's
    /// was within the interval.
    pub fn refused(&mut self, ip: std::net::IpAddr, why: &str, now: Instant) {
        // The address IPv4 clients have on a dual-stack listener.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        if let Some((at, suppressed)) = self.sources.get_mut(&ip)
            && now.saturating_duration_since(*at) < REFUSAL_LOG_INTERVAL
        {
            *suppressed += 1;
            return;
        }
        let suppressed = self.sources.get(&ip).map_or(0, |(_, n)| *n);
        if self.sources.len() >= REFUSAL_LOG_SOURCES && !self.sources.contains_key(&ip) {
            self.sources
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < REFUSAL_LOG_INTERVAL);
            if self.sources.len() >= REFUSAL_LOG_SOURCES {
                self.sources.clear();
            }
        }
        self.sources.insert(ip, (now, 0));
        // The message is the fixed form fail2ban matches; it is the one
        // log line whose values are in its text.
        tracing::info!(
            target: "gitmouth::refusal",
            suppressed,
            "refused connection from {ip}: {why}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_once_per_interval() {
        let mut log = RefusalLog::default();
        let ip: std::net::IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let t0 = Instant::now();
        log.refused(ip, "too many", t0);
        log.refused(ip, "too many", t0 + std::time::Duration::from_secs(1));
        assert_eq!(log.sources.get(&ip), Some(&(t0, 1)));
        let later = t0 + REFUSAL_LOG_INTERVAL;
        log.refused(ip, "too many", later);
        assert_eq!(log.sources.get(&ip), Some(&(later, 0)));
    }
}
