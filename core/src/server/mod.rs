//! The server session: one client connection, from version exchange to close.
//!
//! The session composes layers that each own their state: the transport
//! (`crate::transport`, through [`Link`]), user authentication (`auth`),
//! the connection protocol's channels ([`crate::connection`]) and one git
//! command per channel ([`crate::job`]). It routes messages and answers
//! between them and keeps the connection-wide limits (login grace, idle and
//! total time, keepalives).
//!
//! The drive loop, written once (every runtime does exactly this):
//!
//! ```text
//! let mut s = Session::new(config, seed, now);
//! loop {
//!     while let Some(out) = s.poll_output() { start doing it }
//!     if s.is_finished() { close the socket; break }
//!     wait for whichever comes first:
//!       the socket writable, if !s.transmit().is_empty()  → s.consume_transmit(n)
//!       the socket readable, if s.wants_read()             → Input::Received
//!       for each backend (process or dyno) by its id:
//!         its stdout, into s.lend_backend(id, Stdout, max)'s packets
//!                                                          → lend.commit(now, n) / BackendEof
//!         its stdout when nothing is lent, and its stderr, up to
//!           s.backend_read_limit(id) bytes                 → Input::BackendData / BackendEof
//!         its stdin writable, if !s.backend_stdin(id).is_empty()
//!                                                          → s.consume_backend_stdin(now, id, n)
//!       the result of an output                            → Input::RepoOpened, Spawned, …
//!       s.poll_timeout()                                   → Input::Timeout
//!     feed it in with the current time
//! }
//! ```
//!
//! Lifecycle, as the session sees it:
//!
//! ```text
//! Handshake → AwaitService → Authenticating → Connected
//!   Connected: per channel: open → exec → job (see crate::job) → exit-status, EOF, CLOSE
//!              the connection goes on until the client closes it
//! ```

pub use crate::actions::{
    Audit, ExitStatus, Identity, Input, LockHeld, LockRefusal, Output, ProcessSpec, RepoError,
    RepoInit, RequestId, SessionEvent, Signal, Stream, ago, signal_name,
};
pub use crate::config::{Mode, ServerConfig};
pub use crate::job::{choose_head, git_process};

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::Rng;

use crate::app::access::AccessRules;
use crate::app::api::{self, ApiUser, HttpError, HttpResponse, LookupResult};
use crate::app::fingerprint;
use crate::app::messages::{self, UserError};
use crate::auth::server::{Found, Outcome, UserAuth};
use crate::connection::hostkeys::{self, HostKeyUpdate};
use crate::connection::{self, ChannelId, Connection, Event};
use crate::job::{JobCx, JobInput, Task};
use crate::link::{Link, Upper};
use crate::timer::{Timers, timer_kinds};
use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::packet::{Lend, LentSlices};
use crate::transport::{Role, Transport};
use crate::wire::{self, Parser, numbers};

impl ServerConfig {
    /// How long a stopping server waits for its sessions: the longest a
    /// session takes to end after [`Input::Shutdown`] by its own deadlines
    /// (its users told and its commands stopped, the client's close or
    /// git's SIGKILL awaited, then what is left flushed). The runtime keeps
    /// no limit of its own.
    pub fn stop_wait(&self) -> Duration {
        CLOSE_WAIT.max(self.kill_grace) + FLUSH_WAIT
    }

    /// How long a draining server waits for its sessions: the drain, then
    /// what a stop takes after it.
    pub fn drain_wait(&self) -> Duration {
        self.drain_timeout + self.stop_wait()
    }
}

/// One client connection.
pub struct Session {
    link: Link,
    upper: ServerUpper,
}

/// Outgoing bytes above which we stop reading from the client and from the
/// command.
const HIGH_WATER: usize = 1024 * 1024;
/// How long a limit or shutdown waits for the client to close its
/// channels before the connection is cut.
const CLOSE_WAIT: Duration = connection::CLOSE_WAIT;
/// How much output of a command nobody reads any more is taken (and
/// dropped) at a time.
const DISCARD_CHUNK: usize = 64 * 1024;
/// Bytes read ahead while a key lookup holds the next message.
const BLOCKED_READ_LIMIT: usize = 64 * 1024;
/// How long a finished connection waits for the client to read what is
/// left (a DISCONNECT, an exit status) before it is dropped.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct ServerUpper {
    config: Arc<ServerConfig>,
    /// A short random id, in every log line and in users' error messages.
    id: String,
    phase: Phase,
    auth: UserAuth<Option<ApiUser>>,
    /// The key lookup in flight, if any.
    lookup: Option<RequestId>,
    identity: Option<Identity>,
    /// The client's address, as the runtime told it
    /// ([`Session::set_client`]): for git's hooks (`GITMOUTH_REMOTE_ADDR`).
    client: Option<core::net::IpAddr>,
    /// The user's platform account (API mode).
    api_user: Option<crate::app::api::ApiUser>,
    /// The access file's rules, as the key lookup found them (standalone
    /// mode with `--access`).
    access: Option<Arc<AccessRules>>,
    /// The channels.
    conn: Connection,
    /// One git command per channel.
    tasks: Vec<Task>,
    /// A limit or shutdown is ending the connection: once no channel is
    /// left, it closes.
    ending: bool,
    /// The server drains: no new command; once none runs, the connection
    /// closes.
    draining: bool,
    outputs: VecDeque<Output>,
    /// What happened, for the runtime's metrics and audit log.
    events: VecDeque<SessionEvent>,
    /// When the connection began (the handshake time counts from then).
    started: Instant,
    /// Authentication failures already told as events.
    auth_failures_told: u32,
    next_id: u64,
    /// Push-lock requests withdrawn from their queue: a grant for one
    /// that was already on its way needs no release. (At most one entry
    /// per wait given up on this connection.)
    withdrawn_locks: BTreeSet<RequestId>,
    close_reported: bool,
    peer_gone: bool,
    grace_exceeded: bool,
    /// Whether the wait for the client to take what is left (once the
    /// connection is over) has begun.
    flushing: bool,
    /// The session's own deadlines (jobs and channels keep theirs).
    timers: Timers<SessionTimer, 9>,
    /// Keepalives sent since the client last sent anything.
    keepalives_unanswered: u32,
    /// A keepalive fell due during a key exchange: it goes out after.
    keepalive_due: bool,
    /// The host-key announcement and the proofs asked for (OpenSSH
    /// `PROTOCOL` §2.5).
    hostkey_update: HostKeyUpdate,
}

timer_kinds! {
    /// The session's deadlines (the transport keeps its own table; each
    /// job and channel its own).
    enum SessionTimer {
        /// From connect to authentication (`--login-grace-time`).
        LoginGrace,
        /// The platform's answer to a key lookup.
        Lookup,
        /// After authentication: no git traffic for `--idle-timeout`.
        Idle,
        /// After authentication: `--max-session-time` in all.
        SessionLimit,
        /// A limit or shutdown told the users: cut the connection if the
        /// client will not even take the message.
        HardStop,
        /// The connection is over: stop waiting for the client to take
        /// what is left to send.
        Flush,
        /// The client has been silent for the keepalive interval.
        Keepalive,
        /// The drain's end: commands still running are stopped.
        Drain,
        /// After authentication: no channel open for
        /// `--unused-connection-timeout`.
        Unused,
    }
}

/// The deadlines that mean nothing once the connection is closed.
const WHILE_OPEN: [SessionTimer; 8] = [
    SessionTimer::Drain,
    SessionTimer::Unused,
    SessionTimer::LoginGrace,
    SessionTimer::Lookup,
    SessionTimer::Idle,
    SessionTimer::SessionLimit,
    SessionTimer::HardStop,
    SessionTimer::Keepalive,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    AwaitService,
    Authenticating,
    Connected,
}

impl Session {
    /// A session for a client that has just connected.
    pub fn new(config: Arc<ServerConfig>, seed: [u8; 32], now: Instant) -> Self {
        let role = Role::Server {
            host_keys: config.host_keys.clone(),
        };
        let mut t = Transport::new(role, config.transport.clone(), seed, now);
        let mut id_bytes = [0u8; 4];
        t.rng().fill_bytes(&mut id_bytes);
        let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut timers = Timers::default();
        timers.set(SessionTimer::LoginGrace, now + config.login_grace);
        let max_sessions = config.max_sessions;
        let conn = Connection::new(max_sessions);
        let auth = UserAuth::new(config.max_auth_attempts, config.pubkey_algs.clone());
        Self {
            link: Link::new(t, false),
            upper: ServerUpper {
                config,
                id,
                phase: Phase::Handshake,
                auth,
                lookup: None,
                identity: None,
                client: None,
                api_user: None,
                access: None,
                conn,
                tasks: Vec::new(),
                ending: false,
                draining: false,
                outputs: VecDeque::new(),
                events: VecDeque::new(),
                started: now,
                auth_failures_told: 0,
                next_id: 1,
                withdrawn_locks: BTreeSet::new(),
                close_reported: false,
                peer_gone: false,
                grace_exceeded: false,
                flushing: false,
                timers,
                keepalives_unanswered: 0,
                keepalive_due: false,
                hostkey_update: HostKeyUpdate::new(),
            },
        }
    }

    /// The session's id, as logged and as shown to users in error messages.
    pub fn id(&self) -> &str {
        &self.upper.id
    }

    /// Tells the session its client's address (the real client's, after
    /// a PROXY header), which git's hooks are told. The runtime calls it
    /// once, before the first input.
    pub fn set_client(&mut self, client: core::net::IpAddr) {
        self.upper.client = Some(client);
    }

    /// Who authenticated, once someone has.
    pub fn identity(&self) -> Option<&Identity> {
        self.upper.identity.as_ref()
    }

    /// How the connection fared, for admission penalties.
    pub fn outcome(&self) -> crate::admission::Outcome {
        use crate::admission::Outcome;
        if self.upper.identity.is_some() {
            Outcome::Authenticated
        } else if self.upper.grace_exceeded {
            Outcome::GraceExceeded
        } else if self.upper.auth.failures() > 0 {
            Outcome::AuthFailed
        } else {
            Outcome::NoAuth
        }
    }

    /// Feeds one event.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let Self { link, upper } = self;
        // Idle means no git traffic: what the client sends counts when it
        // reaches a channel or a request (see `on_message`), not when it
        // only answers our keepalives.
        if let Input::BackendData { .. } = &input {
            upper.active(now);
        }
        let t = &mut link.t;
        match input {
            Input::Received(data) => {
                if !data.is_empty() {
                    // The client is alive: whatever it sent (a keepalive
                    // reply, other traffic) counts.
                    upper.heard_from_client(now);
                }
                link.receive(now, data, upper)
            }
            Input::PeerClosed => {
                upper.peer_gone = true;
                t.close_silently(CloseReason::PeerClosed);
                upper.stop_all(t, now);
            }
            Input::Timeout => {
                t.handle_timeout(now);
                let blocked = upper.is_blocked();
                upper.on_timeout(t, now);
                if blocked && !upper.is_blocked() {
                    // A lookup that timed out held messages back.
                    link.process(now, upper);
                }
            }
            Input::Shutdown => upper.on_shutdown(t, now),
            Input::Drain => upper.on_drain(t, now),
            Input::Evicted => upper.on_evicted(t),
            Input::UserConnections(n) => upper.on_user_connections(t, n),
            Input::RepoOpened { id, result } => {
                upper.route(t, now, id, JobInput::RepoOpened(result));
            }
            Input::Spawned { id, result } => {
                upper.route(t, now, id, JobInput::Spawned(result));
            }
            Input::BackendData { id, stream, data } => {
                upper.route(t, now, id, JobInput::Data(stream, data));
            }
            Input::BackendEof { id, stream } => {
                upper.route(t, now, id, JobInput::Eof(stream));
            }
            Input::BackendExited { id, status } => {
                upper.route(t, now, id, JobInput::Exited(status));
            }
            Input::HelperDone { id, result } => {
                upper.route(t, now, id, JobInput::Helper(result));
            }
            Input::HttpDone { id, result } => {
                if upper.lookup == Some(id) {
                    upper.on_lookup_done(t, now, result);
                    // Messages held back during the lookup may go on now.
                    link.process(now, upper);
                } else {
                    upper.route(t, now, id, JobInput::Http(result));
                }
            }
            Input::KeyLookedUp { id, user, access } => {
                upper.on_key_looked_up(t, now, id, user, access);
                link.process(now, upper);
            }
            Input::LockReply { id, result } => {
                let granted = result.is_ok();
                let routed = upper.route(&mut link.t, now, id, JobInput::Lock(result));
                // A late grant for a push that was abandoned: give it back
                // (unless withdrawing it from the queue already did).
                if !routed && granted && !upper.withdrawn_locks.remove(&id) {
                    upper.outputs.push_back(Output::ReleaseLock { id });
                }
            }
            Input::LockWaiting { id, held } => {
                let routed = upper.route(t, now, id, JobInput::LockWaiting(held));
                if !routed && upper.withdrawn_locks.insert(id) {
                    // Queued for a push abandoned before the answer came:
                    // its place is given up (once).
                    upper.outputs.push_back(Output::ReleaseLock { id });
                }
            }
            Input::SlotReply { id, granted } => {
                if !upper.route(t, now, id, JobInput::Slot(granted)) && granted {
                    // A late slot for a command that was abandoned.
                    upper.outputs.push_back(Output::ReleaseSlot { id });
                }
            }
            Input::DynoConnected { id, result } => {
                upper.route(t, now, id, JobInput::DynoConnected(result));
            }
            Input::DynoClosed { id, end } => {
                upper.route(t, now, id, JobInput::DynoClosed(end));
            }
        }
        self.after_input(now);
    }

    /// What follows every input: commands moved on, channels flushed, and
    /// a connection that is over wound down.
    fn after_input(&mut self, now: Instant) {
        let Self { link, upper } = self;
        let t = &mut link.t;
        upper.settle(t, now);
        upper.send_deferred_keepalive(t, now);
        if t.is_closed() {
            upper.stop_all(t, now);
            upper.settle(t, now);
            if upper.cancel_lookup() {
                tracing::info!("abandoning the key lookup");
            }
            for timer in WHILE_OPEN {
                upper.timers.stop(timer);
            }
            if !upper.flushing {
                upper.flushing = true;
                upper.timers.set(SessionTimer::Flush, now + FLUSH_WAIT);
            }
            if upper.timers.expire(SessionTimer::Flush, now) && !upper.peer_gone {
                // A client that reads nothing cannot hold the connection
                // open: what is left unsent is dropped.
                tracing::info!("client stopped reading; dropping what is unsent");
                upper.peer_gone = true;
            }
        }
    }

    /// The next thing for the runtime to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.upper.outputs.pop_front() {
            return Some(output);
        }
        if self.is_finished() && !self.upper.close_reported {
            self.upper.close_reported = true;
            let reason = self
                .link
                .t
                .close_reason()
                .cloned()
                .unwrap_or(CloseReason::Finished);
            return Some(Output::Close(reason));
        }
        None
    }

    /// The next thing that happened, for the runtime's metrics and audit
    /// log (drain it with the outputs; ignoring it changes nothing).
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.upper.events.pop_front()
    }

    /// When [`Input::Timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Once nothing is left to wait for the client for, only the jobs'
        // deadlines (stopping git) remain.
        let flush_done = self.upper.peer_gone;
        let session = self
            .upper
            .timers
            .next()
            .filter(|_| !(flush_done && self.link.t.is_closed()));
        let upper = [
            session,
            self.upper.tasks.iter().filter_map(Task::deadline).min(),
            self.upper.conn.deadline(),
        ];
        let transport = if self.link.t.is_closed() {
            None
        } else {
            self.link.t.poll_timeout()
        };
        upper.into_iter().flatten().chain(transport).min()
    }

    /// Bytes to write to the client.
    pub fn transmit(&self) -> &[u8] {
        if self.upper.peer_gone {
            &[]
        } else {
            self.link.t.pending()
        }
    }

    /// Marks `n` bytes of [`Session::transmit`] as written.
    pub fn consume_transmit(&mut self, n: usize) {
        self.link.t.consume(n);
    }

    /// Whether to read from the client now. False while our replies pile up
    /// unread (a client that floods requests without reading the answers
    /// is not served), while a lookup holds the next message, and once the
    /// connection is over.
    pub fn wants_read(&self) -> bool {
        // While a lookup holds the next message, reading goes on (so a
        // client that hangs up is noticed at once) until a little is
        // buffered: a well-behaved client sends nothing while it waits.
        let held = self.upper.is_blocked() && self.link.rx.buffered() >= BLOCKED_READ_LIMIT;
        !self.link.t.is_closed() && self.link.t.pending().len() < HIGH_WATER && !held
    }

    /// How many bytes of backend `id`'s output the session can take now:
    /// zero while its channel's window is shut, while our output to the
    /// client piles up, and during key exchange; once nobody will read the
    /// output (the client or its channel is gone), a chunk to be dropped.
    pub fn backend_read_limit(&self, id: RequestId) -> usize {
        let Some(task) = self.upper.relaying(id).filter(|task| task.is_running()) else {
            return 0;
        };
        if self.link.t.is_closed() || !self.upper.conn.is_open(task.ch) {
            // Nobody will read it: it is taken and dropped, so that the
            // command's end is seen at once (and a push's upkeep and lock
            // release need not wait for the drain limit).
            return DISCARD_CHUNK;
        }
        if self.link.t.in_kex() {
            return 0;
        }
        let room = HIGH_WATER.saturating_sub(self.link.t.pending().len());
        self.upper.conn.read_limit(task.ch).min(room)
    }

    /// Lends the payload areas of the next data packets to backend `id`'s
    /// output on `stream` (its stdout or stderr pipe; a dyno's one stream
    /// is `Stdout`): read up to [`BackendLend::len`] bytes straight into
    /// [`BackendLend::bufs`], in order (as `readv` fills them), then
    /// [`BackendLend::commit`] how many were read. The bytes are framed
    /// and sealed where they lie: nothing is copied. What a commit sends
    /// is what [`Input::BackendData`] with the same bytes would have sent.
    ///
    /// At most `max` bytes are lent, and no more than
    /// [`Session::backend_read_limit`] allows. `None` when the output
    /// cannot go straight out now: nothing may be read at all (window
    /// shut, output piling up, a key exchange), the output is dropped
    /// unread (read into a buffer of the runtime's and give it as
    /// [`Input::BackendData`], up to [`Session::backend_read_limit`]), or
    /// the core must look at it first (a dyno's first bytes): then too.
    pub fn lend_backend(
        &mut self,
        id: RequestId,
        stream: Stream,
        max: usize,
    ) -> Option<BackendLend<'_>> {
        let task = self.upper.relaying(id).filter(|task| task.is_running())?;
        let to = task.passthrough(stream)?;
        let ch = task.ch;
        let t = &mut self.link.t;
        if t.is_closed() || t.in_kex() || !self.upper.conn.is_open(ch) {
            return None;
        }
        let max = max.min(HIGH_WATER.saturating_sub(t.pending().len()));
        let lend = self.upper.conn.lend(t, ch, to, max)?;
        Some(BackendLend {
            session: self,
            id,
            ch,
            stream: to,
            lend,
        })
    }

    /// Bytes from the client waiting to be written to backend `id`.
    pub fn backend_stdin(&self, id: RequestId) -> &[u8] {
        self.upper
            .relaying(id)
            .filter(|task| task.accepts_stdin())
            .map_or(&[], |task| self.upper.conn.stdin(task.ch))
    }

    /// Marks `n` bytes of [`Session::backend_stdin`] as written; the
    /// client's window reopens by as much.
    pub fn consume_backend_stdin(&mut self, now: Instant, id: RequestId, n: usize) {
        if let Some(task) = self
            .upper
            .tasks
            .iter_mut()
            .find(|t| t.relay_id() == Some(id))
        {
            task.count_in(n);
            let ch = task.ch;
            self.upper.conn.consume_stdin(ch, n);
        }
        self.upper.settle(&mut self.link.t, now);
    }

    /// Whether the session has ended: nothing left to send and no command
    /// left running. The runtime then closes the socket.
    pub fn is_finished(&self) -> bool {
        self.link.t.is_closed()
            && (self.upper.peer_gone || self.link.t.pending().is_empty())
            && !self.upper.tasks.iter().any(Task::holds_backend)
    }

    /// The transport, for tests and logs.
    pub fn transport(&self) -> &Transport {
        &self.link.t
    }
}

/// Room for a backend's output in the next data packets, from
/// [`Session::lend_backend`]: read into [`BackendLend::bufs`], then
/// [`BackendLend::commit`]. Dropped without a commit, it sends nothing.
pub struct BackendLend<'a> {
    session: &'a mut Session,
    id: RequestId,
    ch: ChannelId,
    stream: Stream,
    lend: Lend,
}

impl BackendLend<'_> {
    /// How many bytes may be read (at least one).
    pub fn len(&self) -> usize {
        self.lend.len()
    }

    /// Whether nothing may be read (never, for a lend given out).
    pub fn is_empty(&self) -> bool {
        self.lend.is_empty()
    }

    /// The areas to read into, in order: the payload of one packet each,
    /// as large as the client's packets may be (the last one smaller).
    /// Bytes read fill them in this order; their total is
    /// [`BackendLend::len`].
    pub fn bufs(&mut self) -> LentSlices<'_> {
        self.session.link.t.lent_slices(&self.lend)
    }

    /// The first `n` bytes of [`BackendLend::bufs`] were read from the
    /// backend (at most [`BackendLend::len`]): they go to the client as
    /// [`Input::BackendData`] would send them. Zero (the end of the
    /// stream, or nothing read) sends nothing; report an end as before,
    /// with [`Input::BackendEof`].
    pub fn commit(self, now: Instant, n: usize) {
        let Self {
            session,
            id,
            ch,
            stream,
            lend,
        } = self;
        debug_assert!(n <= lend.len(), "{n} bytes committed of {}", lend.len());
        if n == 0 {
            return;
        }
        let upper = &mut session.upper;
        let sent = upper.conn.commit(&mut session.link.t, ch, stream, &lend, n);
        if sent == 0 {
            return;
        }
        upper.active(now);
        if let Some(task) = upper.tasks.iter_mut().find(|t| t.relay_id() == Some(id)) {
            task.count_out(sent);
        }
        session.after_input(now);
    }
}

impl ServerUpper {
    fn next_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// What a job may touch while it handles one thing.
    fn job_cx<'a>(&'a mut self, t: &'a mut Transport, now: Instant, ch: ChannelId) -> JobCx<'a> {
        JobCx {
            now,
            session: &self.id,
            config: &self.config,
            user: self.identity.as_ref().map_or("", |i| i.user.as_str()),
            fingerprint: self
                .identity
                .as_ref()
                .map_or("", |i| i.fingerprint.as_str()),
            client: self.client,
            events: &mut self.events,
            api_user: self.api_user.as_ref(),
            access: self.access.as_deref(),
            outputs: &mut self.outputs,
            next_id: &mut self.next_id,
            conn: &mut self.conn,
            t,
            ch,
            peer_gone: self.peer_gone,
            wants_lock: None,
            withdrawn_locks: &mut self.withdrawn_locks,
        }
    }

    /// Runs `f` on every task (the table is moved out meanwhile, so the
    /// task and the rest of the session can be borrowed at once).
    fn each_task(
        &mut self,
        t: &mut Transport,
        now: Instant,
        mut f: impl FnMut(&mut Task, &mut JobCx<'_>),
    ) {
        let mut tasks = std::mem::take(&mut self.tasks);
        for task in &mut tasks {
            let mut cx = self.job_cx(t, now, task.ch);
            f(task, &mut cx);
        }
        self.tasks = tasks;
    }

    /// Runs `f` on the task of channel `ch`, if there is one.
    fn with_task(
        &mut self,
        t: &mut Transport,
        now: Instant,
        ch: ChannelId,
        f: impl FnOnce(&mut Task, &mut JobCx<'_>),
    ) {
        let mut tasks = std::mem::take(&mut self.tasks);
        if let Some(task) = tasks.iter_mut().find(|task| task.ch == ch) {
            let mut cx = self.job_cx(t, now, ch);
            f(task, &mut cx);
        }
        self.tasks = tasks;
    }

    /// Hands an answer to the command that asked for it; false if none did
    /// (a late answer for something abandoned, dropped).
    fn route(
        &mut self,
        t: &mut Transport,
        now: Instant,
        id: RequestId,
        input: JobInput<'_>,
    ) -> bool {
        let Some(ch) = self
            .tasks
            .iter()
            .find(|task| task.owns(id))
            .map(|task| task.ch)
        else {
            return false;
        };
        self.with_task(t, now, ch, |task, cx| task.handle(cx, id, input));
        true
    }

    /// The task relaying to or from backend `id`.
    fn relaying(&self, id: RequestId) -> Option<&Task> {
        self.tasks.iter().find(|task| task.relay_id() == Some(id))
    }

    /// Stops every command (the connection is gone or going).
    fn stop_all(&mut self, t: &mut Transport, now: Instant) {
        self.each_task(t, now, |task, cx| task.stop(cx));
    }

    /// Ends every command still open with `error` (telling its user why);
    /// false if there was none.
    fn end_commands(&mut self, t: &mut Transport, now: Instant, error: &UserError) -> bool {
        let mut any = false;
        self.each_task(t, now, |task, cx| {
            if !cx.conn.is_closed(task.ch) {
                any = true;
                task.refuse(cx, error.clone());
                task.stop(cx);
            }
        });
        any
    }

    /// After every input: moves every command on, flushes the channels,
    /// forgets channels that are over, and ends a connection that a limit
    /// or shutdown is ending once its last channel is gone.
    fn settle(&mut self, t: &mut Transport, now: Instant) {
        self.each_task(t, now, |task, cx| task.settle(cx));
        self.conn.flush(t, now);
        let conn = &mut self.conn;
        self.tasks.retain(|task| {
            let over = conn.is_closed(task.ch) && !task.holds_backend() && !task.holds_lock();
            if over {
                conn.remove(task.ch);
            }
            !over
        });
        if self.ending && self.conn.is_empty() && !t.is_closed() {
            t.close_silently(CloseReason::Finished);
        }
        // Drained once no command runs and every channel is over (its exit
        // status and close delivered), so that the client sees its command
        // end before the connection does.
        if self.draining && !self.ending && !self.busy() && self.conn.is_empty() && !t.is_closed() {
            tracing::info!("drained: closing the connection");
            t.disconnect(DisconnectReason::ByApplication, "the server is restarting");
        }
        self.watch_unused(now);
    }

    /// Keeps the unused-connection deadline: armed while an authenticated
    /// connection has no channel open, from the moment it has none.
    fn watch_unused(&mut self, now: Instant) {
        let unused = self.phase == Phase::Connected
            && self.conn.is_empty()
            && !self.ending
            && !self.config.unused_timeout.is_zero();
        if !unused {
            self.timers.stop(SessionTimer::Unused);
        } else if !self.timers.is_set(SessionTimer::Unused) {
            self.timers
                .set(SessionTimer::Unused, now + self.config.unused_timeout);
        }
    }

    /// Admission gave this startup's place to a newcomer.
    fn on_evicted(&mut self, t: &mut Transport) {
        if self.identity.is_some() || t.is_closed() {
            return;
        }
        tracing::info!("making way for a connection from a source holding fewer: closing");
        t.disconnect(DisconnectReason::TooManyConnections, "too many connections");
        self.cancel_lookup();
    }

    /// How many connections the user who just authenticated holds.
    fn on_user_connections(&mut self, t: &mut Transport, n: u32) {
        let limit = self.config.per_user_max_connections;
        if limit == 0 || n <= limit || t.is_closed() {
            return;
        }
        let user = self.identity.as_ref().map_or("", |i| i.user.as_str());
        tracing::info!(%user, connections = n, limit, "too many connections for this user: closing");
        t.disconnect(
            DisconnectReason::TooManyConnections,
            &format!("too many connections for user {user} (at most {limit} at once)"),
        );
    }

    /// Whether a command is in progress (parked for the push lock, starting,
    /// running or finishing).
    fn busy(&self) -> bool {
        self.tasks.iter().any(|task| !task.is_over())
    }

    fn on_timeout(&mut self, t: &mut Transport, now: Instant) {
        if self.timers.expire(SessionTimer::LoginGrace, now) {
            self.grace_exceeded = true;
            tracing::info!("login grace time exceeded");
            t.disconnect(DisconnectReason::ByApplication, "login grace time exceeded");
            self.cancel_lookup();
        }
        if self.timers.expire(SessionTimer::Lookup, now)
            && let Some(id) = self.lookup
        {
            tracing::info!("the platform did not answer the key lookup in time");
            self.outputs.push_back(Output::Cancel { id });
            self.on_lookup_done(t, now, Err(HttpError::Timeout));
        }
        self.each_task(t, now, |task, cx| task.on_timeout(cx));
        if self.timers.expire(SessionTimer::Drain, now) && !t.is_closed() {
            tracing::info!("drain timeout: stopping the commands still running");
            self.on_shutdown(t, now);
        }
        if self.timers.expire(SessionTimer::Unused, now) && !t.is_closed() {
            tracing::info!(
                secs = self.config.unused_timeout.as_secs(),
                "unused connection timeout: no channel opened"
            );
            t.disconnect(DisconnectReason::ByApplication, "unused connection timeout");
        }
        self.limit_timeout(t, now);
        if self.timers.expire(SessionTimer::Keepalive, now) && !t.is_closed() {
            self.keepalive_fell_due(t, now);
        }
        self.conn.on_timeout(t, now);
    }

    /// The server drains: a connection with no command in progress is
    /// disconnected at once; one with commands lets them finish within
    /// the drain timeout, refuses new ones, and closes after the last.
    fn on_drain(&mut self, t: &mut Transport, now: Instant) {
        if self.draining || self.ending || t.is_closed() {
            return;
        }
        self.draining = true;
        // A push waiting for another's lock has not started: rather than
        // start it now and maybe cut it at the drain timeout, its user is
        // told to try again (the next server takes it), and its place in
        // the queue is given up.
        let mut refused = false;
        self.each_task(t, now, |task, cx| {
            if task.waits_for_lock() {
                tracing::info!("draining: a push waiting for the lock is refused");
                refused = true;
                task.refuse(cx, UserError::ServerStopping);
                task.stop(cx);
            }
        });
        if self.busy() || refused {
            // (A refused push's channel closes once its user has the
            // message; the drain timeout bounds the wait for that.)
            tracing::info!("server draining: waiting for the commands in progress");
            self.timers
                .set(SessionTimer::Drain, now + self.config.drain_timeout);
        } else {
            t.disconnect(DisconnectReason::ByApplication, "the server is restarting");
        }
    }

    /// The server is stopping: commands in progress are stopped with a
    /// message; a connection without any is disconnected.
    fn on_shutdown(&mut self, t: &mut Transport, now: Instant) {
        self.timers.stop(SessionTimer::Drain);
        if self.ending || t.is_closed() {
            return;
        }
        tracing::info!("server stopping: ending the session");
        if self.end_commands(t, now, &UserError::ServerStopping) {
            self.ending = true;
            self.hard_stop(now);
        } else {
            t.disconnect(DisconnectReason::ByApplication, "the server is restarting");
        }
    }

    /// Git traffic: the idle limit starts again (unless a limit already
    /// fired).
    fn active(&mut self, now: Instant) {
        if self.timers.is_set(SessionTimer::Idle) {
            self.timers
                .set(SessionTimer::Idle, now + self.config.idle_timeout);
        }
    }

    /// The users were told the connection ends: it is cut if the client
    /// has not closed it within [`CLOSE_WAIT`].
    fn hard_stop(&mut self, now: Instant) {
        self.timers.stop(SessionTimer::Idle);
        self.timers.stop(SessionTimer::SessionLimit);
        self.timers.set(SessionTimer::HardStop, now + CLOSE_WAIT);
    }

    /// Ends a connection that idled or lasted too long, telling the users
    /// of its commands why.
    fn limit_timeout(&mut self, t: &mut Transport, now: Instant) {
        if self.timers.expire(SessionTimer::HardStop, now) {
            t.disconnect(DisconnectReason::ByApplication, "time limit exceeded");
            return;
        }
        let error = if self.timers.expire(SessionTimer::SessionLimit, now) {
            UserError::SessionLimit {
                secs: self.config.max_session.as_secs(),
            }
        } else if self.timers.expire(SessionTimer::Idle, now) {
            if self.tasks.iter().any(Task::waits_for_lock) {
                // A push waiting in turn for the push lock is silent by the
                // server's doing, not the user's; its wait has its own
                // limit (`--push-lock-wait`).
                self.timers
                    .set(SessionTimer::Idle, now + self.config.idle_timeout);
                return;
            }
            UserError::IdleTimeout {
                secs: self.config.idle_timeout.as_secs(),
            }
        } else {
            return;
        };
        self.hard_stop(now);
        let limit = match &error {
            UserError::SessionLimit { .. } => "max-session-time",
            _ => "idle-timeout",
        };
        tracing::info!(limit, "time limit");
        if self.end_commands(t, now, &error) {
            self.ending = true;
        } else {
            t.disconnect(DisconnectReason::ByApplication, "time limit exceeded");
        }
    }
}

impl ServerUpper {
    /// Re-arms the keepalive probe: the client just spoke.
    fn heard_from_client(&mut self, now: Instant) {
        self.keepalives_unanswered = 0;
        self.keepalive_due = false;
        if self.phase == Phase::Connected {
            self.arm_keepalive(now);
        }
    }

    pub(super) fn arm_keepalive(&mut self, now: Instant) {
        if self.config.keepalive_interval.is_zero() {
            return;
        }
        self.timers.set(
            SessionTimer::Keepalive,
            now + self.config.keepalive_interval,
        );
    }

    /// The client has been silent for a whole interval: probe it, or give
    /// it up once enough probes went unanswered.
    fn keepalive_fell_due(&mut self, t: &mut Transport, now: Instant) {
        if self.keepalives_unanswered >= self.config.keepalive_count_max {
            tracing::info!(
                unanswered = self.keepalives_unanswered,
                "dead client: no answer to keepalives; closing the connection"
            );
            t.disconnect(DisconnectReason::ByApplication, "keepalive timeout");
            self.events.push_back(SessionEvent::KeepaliveTimeout);
            // Nobody reads what is left: the connection ends as soon as
            // the command is stopped.
            self.peer_gone = true;
            self.stop_all(t, now);
            return;
        }
        if t.in_kex() {
            // Never in the middle of a key exchange: it goes out after.
            self.keepalive_due = true;
            return;
        }
        self.send_keepalive(t, now);
    }

    fn send_keepalive(&mut self, t: &mut Transport, now: Instant) {
        self.keepalive_due = false;
        self.keepalives_unanswered += 1;
        tracing::debug!(unanswered = self.keepalives_unanswered, "keepalive sent");
        t.send(|out| {
            wire::put_u8(out, numbers::GLOBAL_REQUEST);
            wire::put_string(out, b"keepalive@openssh.com");
            wire::put_bool(out, true);
        });
        self.arm_keepalive(now);
    }

    /// A keepalive that waited for a key exchange goes out once it ended.
    fn send_deferred_keepalive(&mut self, t: &mut Transport, now: Instant) {
        if self.keepalive_due && !t.in_kex() && !t.is_closed() {
            self.send_keepalive(t, now);
        }
    }
}

impl Upper for ServerUpper {
    fn on_established(&mut self, _t: &mut Transport, now: Instant) {
        if self.phase == Phase::Handshake {
            let elapsed = now.saturating_duration_since(self.started);
            self.events
                .push_back(SessionEvent::HandshakeDone { elapsed });
        }
        self.phase = Phase::AwaitService;
    }

    fn on_message(&mut self, t: &mut Transport, now: Instant, _seq: u32, payload: &[u8]) {
        let number = payload[0];
        // Keepalives either way (the client's are global requests) and
        // their replies show the client is alive, not that it uses the
        // connection (IGNORE and DEBUG never get here: the transport
        // takes them).
        let liveness_only = matches!(
            number,
            numbers::REQUEST_SUCCESS
                | numbers::REQUEST_FAILURE
                | numbers::UNIMPLEMENTED
                | numbers::GLOBAL_REQUEST
        );
        if !liveness_only {
            self.active(now);
        }
        match (self.phase, number) {
            (_, numbers::EXT_INFO) => {}
            (_, numbers::UNIMPLEMENTED) => {
                tracing::debug!("client sent UNIMPLEMENTED");
            }
            (Phase::AwaitService, numbers::SERVICE_REQUEST) => self.on_service_request(t, payload),
            (Phase::Authenticating, numbers::USERAUTH_REQUEST) => self.on_userauth(t, now, payload),
            // RFC 4252 §5.1: requests after success are ignored.
            (Phase::Connected, numbers::USERAUTH_REQUEST) => {}
            (Phase::Connected, numbers::GLOBAL_REQUEST) => self.on_global_request(t, payload),
            // Answers to our keepalives: hearing anything was the point.
            (Phase::Connected, numbers::REQUEST_SUCCESS | numbers::REQUEST_FAILURE) => {}
            (Phase::Connected, n) if connection::is_channel_message(n) => {
                self.on_channel_message(t, now, payload)
            }
            _ => {
                let name = wire::msg_info(number).map_or("unknown message", |m| m.name);
                let when = match self.phase {
                    Phase::Connected => "",
                    _ => " before authentication",
                };
                tracing::info!(message = name, "protocol violation{when}");
                t.disconnect(
                    DisconnectReason::ProtocolError,
                    &format!("unexpected {name}{when}"),
                );
            }
        }
    }

    fn is_blocked(&self) -> bool {
        self.auth.is_pending()
    }

    fn answers_unknown(&self) -> bool {
        self.phase == Phase::Connected
    }
}

impl ServerUpper {
    fn on_service_request(&mut self, t: &mut Transport, payload: &[u8]) {
        let mut p = Parser::new(payload);
        let service = p.u8().and_then(|_| p.string());
        if service == Ok(b"ssh-userauth".as_slice()) && p.finish().is_ok() {
            t.send(|out| {
                wire::put_u8(out, numbers::SERVICE_ACCEPT);
                wire::put_string(out, b"ssh-userauth");
            });
            self.phase = Phase::Authenticating;
        } else {
            t.disconnect(
                DisconnectReason::ServiceNotAvailable,
                "service not available",
            );
        }
    }

    fn on_global_request(&mut self, t: &mut Transport, payload: &[u8]) {
        let mut p = Parser::new(payload);
        let parsed = p.u8().and_then(|_| Ok((p.string()?, p.bool()?)));
        let Ok((name, want_reply)) = parsed else {
            t.disconnect(DisconnectReason::ProtocolError, "malformed GLOBAL_REQUEST");
            return;
        };
        if name == hostkeys::HOSTKEYS_PROVE.as_bytes() {
            let keys = &self.config.host_keys;
            match self.hostkey_update.on_prove(t, keys, p.rest(), want_reply) {
                Ok(proven) => {
                    tracing::debug!(keys = proven, "host keys proven");
                }
                Err(why) => {
                    tracing::info!(reason = %why, "host-key proof refused");
                }
            }
            return;
        }
        tracing::debug!(request = %crate::log_safe(name), "global request refused");
        // We grant no other global request: forwarding is refused, and a
        // keepalive only needs an answer of either kind (OpenSSH's sshd
        // answers failure too).
        if want_reply {
            t.send(|out| wire::put_u8(out, numbers::REQUEST_FAILURE));
        }
    }
}

impl ServerUpper {
    /// A channel message: the connection layer handles the protocol and
    /// hands over what concerns the channel's command.
    fn on_channel_message(&mut self, t: &mut Transport, now: Instant, payload: &[u8]) {
        let Some(event) = self.conn.on_message(t, payload) else {
            return;
        };
        match event {
            Event::Opened(ch) => self.tasks.push(Task::new(ch)),
            Event::Env {
                ch,
                name,
                value,
                want_reply,
            } => {
                let accepted = self
                    .tasks
                    .iter_mut()
                    .find(|task| task.ch == ch)
                    .is_some_and(|task| task.on_env(name, value));
                self.conn.reply(t, ch, want_reply, accepted);
            }
            Event::Exec { ch, command } if self.draining => {
                tracing::info!(command = %crate::log_safe(command.unwrap_or_default()), "draining: command refused");
                self.with_task(t, now, ch, |task, cx| {
                    task.refuse_exec(cx, command, UserError::ServerStopping)
                });
            }
            Event::Exec { ch, command } => {
                self.with_task(t, now, ch, |task, cx| task.exec(cx, command));
            }
            Event::Signal { ch, name } => {
                tracing::info!(signal = %crate::log_safe(name), "client signal: stopping the command");
                self.with_task(t, now, ch, |task, cx| task.stop(cx));
            }
            Event::Closed(ch) => self.with_task(t, now, ch, |task, cx| task.stop(cx)),
        }
    }
}

impl ServerUpper {
    /// A USERAUTH_REQUEST, for the authentication layer.
    fn on_userauth(&mut self, t: &mut Transport, now: Instant, payload: &[u8]) {
        let outcome = self.auth.on_request(t, payload);
        self.auth_outcome(t, now, outcome);
    }

    /// Acts on what authentication asks: a lookup, by the mode's means,
    /// or the connected state once a user is verified.
    fn auth_outcome(&mut self, t: &mut Transport, now: Instant, outcome: Outcome<Option<ApiUser>>) {
        // Each failure the authentication layer counted is one attempt
        // refused.
        while self.auth_failures_told < self.auth.failures() {
            self.auth_failures_told += 1;
            self.events.push_back(SessionEvent::Auth {
                method: "publickey",
                accepted: false,
            });
        }
        match outcome {
            Outcome::Nothing => {}
            Outcome::Lookup { blob, fingerprint } => {
                let id = self.next_id();
                let output = match &self.config.mode {
                    Mode::Standalone { .. } => Output::LookupKey { id, blob },
                    Mode::Api { api, .. } => {
                        tracing::info!(key = %fingerprint, "looking the key up");
                        let request = api::lookup_request(api, &fingerprint::md5_hex(&blob));
                        self.timers.set(SessionTimer::Lookup, now + request.timeout);
                        Output::Http { id, request }
                    }
                };
                self.outputs.push_back(output);
                self.lookup = Some(id);
            }
            Outcome::Authenticated(verified) => {
                let identity = Identity {
                    user: verified.user,
                    fingerprint: verified.fingerprint,
                };
                self.outputs
                    .push_back(Output::Authenticated(identity.clone()));
                self.events.push_back(SessionEvent::Auth {
                    method: "publickey",
                    accepted: true,
                });
                self.identity = Some(identity);
                self.api_user = verified.account;
                self.phase = Phase::Connected;
                self.timers.stop(SessionTimer::LoginGrace);
                t.allow_rekey(now);
                // Zero is no limit (sshd's meaning): the timer is never
                // armed, and `active` re-arms only an armed one.
                if !self.config.idle_timeout.is_zero() {
                    self.timers
                        .set(SessionTimer::Idle, now + self.config.idle_timeout);
                }
                if !self.config.max_session.is_zero() {
                    self.timers
                        .set(SessionTimer::SessionLimit, now + self.config.max_session);
                }
                self.arm_keepalive(now);
                self.announce_host_keys(t);
            }
        }
    }

    /// Right after authentication: tells the client every host key in
    /// service, so that one with `UpdateHostKeys` learns a new key before
    /// it signs (USERAUTH_SUCCESS has gone out already).
    fn announce_host_keys(&mut self, t: &mut Transport) {
        if let Some(n) = self.hostkey_update.announce(t, &self.config.host_keys) {
            tracing::debug!(session = %self.id, keys = n, "host keys announced");
        }
        // Who still knows the server only by a retiring key: until nobody
        // does, removing it would lock them out.
        let retiring = t
            .negotiated()
            .and_then(|n| self.config.host_keys.retiring_signer(n.host_key));
        if let Some(key) = retiring {
            let user = self.identity.as_ref().map_or("", |i| i.user.as_str());
            tracing::info!(
                session = %self.id,
                user = %user,
                key_type = %key.key_type(),
                fingerprint = %key.fingerprint_sha256(),
                "client verified the server by a retiring host key"
            );
        }
    }

    /// Abandons the key lookup in flight; true if there was one.
    fn cancel_lookup(&mut self) -> bool {
        let Some(id) = self.lookup.take() else {
            return false;
        };
        self.timers.stop(SessionTimer::Lookup);
        self.auth.cancel();
        self.outputs.push_back(Output::Cancel { id });
        true
    }

    /// The runtime answered a standalone key lookup.
    fn on_key_looked_up(
        &mut self,
        t: &mut Transport,
        now: Instant,
        id: RequestId,
        user: Option<String>,
        access: Option<Arc<AccessRules>>,
    ) {
        if self.lookup != Some(id) {
            return;
        }
        self.lookup = None;
        self.access = access;
        let found = match user {
            Some(user) => Found::Known {
                user,
                account: None,
            },
            None => Found::Unknown,
        };
        let outcome = self.auth.answer(t, found);
        self.auth_outcome(t, now, outcome);
    }

    /// The platform answered the key lookup.
    fn on_lookup_done(
        &mut self,
        t: &mut Transport,
        now: Instant,
        result: Result<HttpResponse, HttpError>,
    ) {
        self.lookup = None;
        self.timers.stop(SessionTimer::Lookup);
        let found = match api::parse_lookup(&result) {
            LookupResult::Found(user) => Found::Known {
                user: user.id.clone(),
                account: Some(user),
            },
            LookupResult::Unknown => Found::Unknown,
            LookupResult::Unavailable(why) => {
                tracing::error!(error = %why, "the platform did not answer the key lookup");
                Found::Unavailable {
                    banner: messages::with_session_id(messages::platform_unavailable(), &self.id),
                }
            }
        };
        let outcome = self.auth.answer(t, found);
        self.auth_outcome(t, now, outcome);
    }
}
