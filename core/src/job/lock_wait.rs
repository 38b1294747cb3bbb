//! A push's request for its repository's push lock, and its wait in turn
//! when another push holds it (`--push-lock-wait`).
//!
//! ```text
//! asked ─granted──────────────────────────────▶ (the task holds the lock)
//!   │ held, no waiting ─────────────────────▶ refused: "another push is in progress"
//!   └ held: queued ─▶ waiting ─ its turn ───▶ (the task holds the lock)
//!                       │ every few seconds: "waiting for the push by <user> (started …)"
//!                       └ the wait runs out ─▶ withdrawn, refused as above
//! ```
//!
//! The deadline and the progress lines are this request's timers; the
//! runtime's table only keeps the queue, and wakes the session when the
//! holder changes or the lock is its turn.

use std::time::{Duration, Instant};

use crate::actions::{LockHeld, Output, RequestId, ago};
use crate::app::command::GitCommand;
use crate::app::messages;
use crate::timer::{Timers, timer_kinds};

use super::JobCx;

/// How often a waiting pusher is told it still waits.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

timer_kinds! {
    /// A waiting push's deadlines.
    enum LockTimer {
        /// The wait has run out: the push is refused.
        GiveUp,
        /// Time for the next progress line.
        Progress,
    }
}

/// The push lock asked for, and the command parked until it comes.
pub(super) struct LockRequest {
    /// The request, and the lock's name once granted.
    pub(super) id: RequestId,
    /// The command that waits.
    pub(super) cmd: GitCommand,
    /// Who holds the lock, once the request waits in its queue.
    holder: Option<LockHeld>,
    timers: Timers<LockTimer, 2>,
}

impl LockRequest {
    /// Asks for the lock of `cmd`'s repository (to wait for it in turn if
    /// the server is configured to).
    pub(super) fn ask(cx: &mut JobCx<'_>, cmd: GitCommand) -> Self {
        let id = cx.next_id();
        // In standalone mode, names differing only in case share a lock:
        // the push that would create one while another creates its twin
        // waits, so that the check for a twin and the creation cannot
        // interleave.
        let repo = match cx.config.mode {
            crate::config::Mode::Standalone { .. } => cmd.repo.as_str().to_ascii_lowercase(),
            crate::config::Mode::Api { .. } => cmd.repo.as_str().to_owned(),
        };
        cx.push(Output::AcquireLock {
            id,
            repo,
            user: cx.user.to_owned(),
            wait: !cx.config.push_lock_wait.is_zero(),
        });
        Self {
            id,
            cmd,
            holder: None,
            timers: Timers::default(),
        }
    }

    /// Whether the request waits in the lock's queue (so the table holds
    /// a place for it, to be given up if the push goes).
    pub(super) fn is_queued(&self) -> bool {
        self.holder.is_some()
    }

    /// The request waits behind `held`: the first time, the wait starts
    /// (and the user is told at once); later, the holder changed.
    pub(super) fn on_waiting(&mut self, cx: &mut JobCx<'_>, held: LockHeld) {
        if self.holder.is_none() {
            tracing::info!(
                repo = self.cmd.repo.as_str(),
                holder = %crate::log_safe(held.user.as_bytes()),
                "push lock held: waiting in turn"
            );
            self.timers
                .set(LockTimer::GiveUp, cx.now + cx.config.push_lock_wait);
            self.holder = Some(held);
            self.progress(cx);
        } else {
            self.holder = Some(held);
        }
    }

    /// Tells the user who holds the lock and since when, and when the
    /// next line is due.
    fn progress(&mut self, cx: &mut JobCx<'_>) {
        if let Some(held) = &self.holder {
            let line = messages::waiting_for_push(
                self.cmd.repo.as_str(),
                &held.user,
                &ago(held.since, cx.now),
            );
            cx.notice(&line);
        }
        self.timers
            .set(LockTimer::Progress, cx.now + PROGRESS_EVERY);
    }

    /// A deadline may have come: a progress line, or the end of the wait
    /// (`Some`: who still holds the lock; the caller withdraws the request
    /// and refuses the push).
    pub(super) fn on_timeout(&mut self, cx: &mut JobCx<'_>) -> Option<LockHeld> {
        let mut gave_up = None;
        for timer in self.timers.take_due(cx.now) {
            match timer {
                LockTimer::GiveUp => {
                    self.timers.stop_all();
                    gave_up = self.holder.clone();
                }
                LockTimer::Progress if gave_up.is_none() => self.progress(cx),
                LockTimer::Progress => {}
            }
        }
        gave_up
    }

    /// The request's next deadline.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timers.next()
    }
}
