//! gitmouth's I/O that needs no particular executor, shared by both
//! runtimes (`gitmouth-smol`, `gitmouth-async-std`).
//!
//! Everything here *does*; nothing decides. [`driver::drive`] runs one
//! connection: it feeds the socket, the git process or the dyno, HTTP
//! replies and timers to the core's [`gitmouth_core::server::Session`] and
//! performs the outputs the session asks for. It needs no spawner: the work
//! a connection waits for (an HTTP request, a TLS handshake, `git init`) is
//! polled in the connection's own loop. It is built on `futures-io` traits,
//! `async-io` timers, `async-process` and `futures-rustls`, all of
//! which run under smol and async-std alike; a runtime crate brings the
//! executor, the listener and the signals.

pub mod admit;
pub mod config;
pub mod database;
pub mod driver;
pub mod dyno;
pub mod files;
pub mod http;
pub mod layers;
pub mod locks;
pub mod logfmt;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod server;
pub mod shared_limits;
pub mod shared_lock;
pub mod slots;
pub mod startup;
pub mod tls;

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use gitmouth_core::admission::Admission;
use gitmouth_core::server::ServerConfig;

/// What every connection of a server shares.
pub struct Shared {
    /// The core's configuration, replaced when SIGHUP reloads it (each
    /// new connection takes the one current then).
    pub config: std::sync::RwLock<Arc<ServerConfig>>,
    /// HTTP client for the API server (API mode).
    pub http: Option<http::Client>,
    /// TLS for dyno hosts (API mode).
    pub dyno_tls: Option<dyno::Connector>,
    /// Standalone mode's authorized keys, which answer key lookups.
    pub keys: Option<Arc<files::KeyStore>>,
    /// Pushes in progress, one per repository, and those waiting in turn.
    pub push_locks: Arc<locks::PushLocks>,
    /// Git commands running at once in all (`--max-commands`).
    pub command_slots: Arc<slots::CommandSlots>,
    /// Limits on unauthenticated connections and penalties.
    pub admission: Mutex<Admission>,
    /// Where admission's decisions about waiting connections and startups
    /// are delivered ([`admit::Mailbox`]).
    pub mailboxes: admit::Mailboxes,
    /// The next connection's admission name.
    pub next_conn: AtomicU64,
    /// How far the server is in stopping: [`RUNNING`], [`DRAINING`] (the
    /// first SIGTERM: commands in progress may finish) or [`STOPPING`] (the
    /// drain is over, or a second signal: every session ends now).
    pub stop_level: AtomicU8,
    /// Notified whenever `stop_level` rises.
    pub shutdown: event_listener::Event,
    /// Connections being served.
    pub active: AtomicUsize,
    /// What the server counts, for `/metrics` and `/ready`.
    pub metrics: metrics::Metrics,
    /// Admission's refusal lines for fail2ban, once per source and
    /// interval (the accept loop and the PROXY header readers share it).
    pub refusals: std::sync::Mutex<admit::RefusalLog>,
    /// PROXY protocol on the listener: who may send a header, and whether
    /// one is required.
    pub proxy: gitmouth_core::proxy::ProxyPolicy,
    /// The push lock shared with other instances (`--push-lock
    /// postgres`), taken after the in-process one.
    pub shared_locks: Option<shared_lock::SharedLocks>,
    /// Other instances' user counts (`--push-lock postgres`).
    pub elsewhere: Option<Arc<shared_limits::Elsewhere>>,
}

/// [`Shared::stop_level`]: serving.
pub const RUNNING: u8 = 0;
/// [`Shared::stop_level`]: draining for a restart.
pub const DRAINING: u8 = 1;
/// [`Shared::stop_level`]: stopping now.
pub const STOPPING: u8 = 2;

impl Shared {
    /// The core's configuration as it is now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the core's configuration for new connections.
    pub fn set_config(&self, config: ServerConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// Raises the stop level to `level` (never lowers it) and wakes every
    /// session.
    pub fn stop_to(&self, level: u8) {
        self.stop_level
            .fetch_max(level, std::sync::atomic::Ordering::SeqCst);
        self.shutdown.notify(usize::MAX);
    }

    /// Runs `f` on the admission state, then delivers what it decided
    /// about other connections (a poisoned lock is still usable: the state
    /// is counts, consistent after every call).
    pub fn admission<T>(&self, f: impl FnOnce(&mut Admission) -> T) -> T {
        let mut guard = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut guard);
        admit::deliver(&mut guard, &self.mailboxes);
        result
    }
}

/// A fresh random seed from the operating system.
pub fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // Without OS randomness nothing here can be secure: stop rather than
    // run with a predictable seed.
    if let Err(e) = getrandom::fill(&mut seed) {
        panic!("the operating system gave no randomness: {e}");
    }
    seed
}
