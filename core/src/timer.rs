//! Deadline tables: one enum of timer kinds over a fixed array of optional
//! instants (quinn-proto's `connection/timer.rs` is the model).
//!
//! A new deadline is one variant, not a new field plus an edit to every
//! `poll_timeout`: the earliest of a table is its [`Timers::next`], and a
//! handler walks the kinds that are due with [`Timers::expire`].

use std::time::Instant;

/// A kind of timer: a small enum whose variants index a table.
pub trait TimerKind: Copy + Eq + std::fmt::Debug + 'static {
    /// How many kinds there are.
    const COUNT: usize;
    /// Every kind, in the order their handlers run when several are due.
    const ALL: &'static [Self];
    /// This kind's slot in the table.
    fn index(self) -> usize;
}

/// One optional deadline per timer kind.
#[derive(Debug, Clone)]
pub struct Timers<K: TimerKind, const N: usize> {
    at: [Option<Instant>; N],
    _kind: std::marker::PhantomData<K>,
}

impl<K: TimerKind, const N: usize> Default for Timers<K, N> {
    fn default() -> Self {
        debug_assert_eq!(K::COUNT, N, "timer table sized for its kinds");
        Self {
            at: [None; N],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<K: TimerKind, const N: usize> Timers<K, N> {
    /// Arms `kind` for `at`, replacing any earlier setting.
    pub fn set(&mut self, kind: K, at: Instant) {
        self.at[kind.index()] = Some(at);
    }

    /// Disarms `kind`.
    pub fn stop(&mut self, kind: K) {
        self.at[kind.index()] = None;
    }

    /// When `kind` fires, if armed.
    pub fn get(&self, kind: K) -> Option<Instant> {
        self.at[kind.index()]
    }

    /// Whether `kind` is armed.
    pub fn is_set(&self, kind: K) -> bool {
        self.at[kind.index()].is_some()
    }

    /// Disarms every kind.
    pub fn stop_all(&mut self) {
        self.at = [None; N];
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms `kind` and returns true if it was due at `now`.
    pub fn expire(&mut self, kind: K, now: Instant) -> bool {
        let slot = &mut self.at[kind.index()];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// The kinds due at `now`, disarmed, in [`TimerKind::ALL`] order.
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = K> + use<K, N> {
        let mut due = [None; N];
        for (i, kind) in K::ALL.iter().enumerate() {
            if self.expire(*kind, now) {
                due[i] = Some(*kind);
            }
        }
        due.into_iter().flatten()
    }
}

/// Declares a timer-kind enum and its [`TimerKind`] impl in one go.
macro_rules! timer_kinds {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::timer::TimerKind for $name {
            const COUNT: usize = [$($name::$variant),+].len();
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use timer_kinds;
