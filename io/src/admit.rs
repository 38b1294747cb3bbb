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
