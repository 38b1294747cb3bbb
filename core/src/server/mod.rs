//! The server session: one client connection, from version exchange to close.
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
//!       the backend's stdout/stderr, up to s.backend_read_limit() bytes
//!                                                          → Input::BackendData / BackendEof
//!       the backend's stdin writable, if !s.backend_stdin().is_empty()
//!                                                          → s.consume_backend_stdin(n)
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
//!   Connected: channel open → exec → parse → open repo → spawn → relay ⇄
//!              → exit → [set HEAD] → exit-status, EOF, CLOSE → end
//! ```

mod auth;
mod channel;
mod job;
mod lock;
mod remote;

pub use lock::{LockHeld, ago};

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::Rng;

use crate::app::api::{ApiServer, HttpError, HttpRequest, HttpResponse};
use crate::app::dyno::DynoEnd;
use crate::app::messages::UserError;
use crate::link::{Link, Upper};
use crate::timer::{Timers, timer_kinds};
use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::hostkey::HostKey;
use crate::transport::{Role, Transport, TransportConfig};
use crate::wire::{self, Parser, numbers};

use self::channel::Channel;
use self::job::Job;

/// Where users and repositories come from.
pub enum Mode {
    /// Keys from an `authorized_keys` file, looked up by the runtime
    /// ([`Output::LookupKey`]); git runs locally on repositories under
    /// `repos`.
    Standalone {
        /// The directory holding `<name>.git` repositories.
        repos: PathBuf,
    },
    /// Keys, access and dynos from an Openruko platform.
    Api {
        /// The API server.
        api: ApiServer,
        /// TLS port of every dyno host (`DYNOHOST_RENDEZVOUS_PORT`).
        rendezvous_port: u16,
    },
}

/// Everything a server session needs to know, shared by all connections.
pub struct ServerConfig {
    /// Transport algorithms and limits.
    pub transport: Arc<TransportConfig>,
    /// Host keys, in preference order.
    pub host_keys: Arc<[HostKey]>,
    /// Time from connect to successful authentication (OpenSSH `LoginGraceTime`).
    pub login_grace: Duration,
    /// Authentication attempts per connection (OpenSSH `MaxAuthTries`).
    pub max_auth_attempts: u32,
    /// The host name users push to, for messages.
    pub public_host: String,
    /// How long a stopped command has between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// After authentication: how long the connection may see no bytes in
    /// either direction.
    pub idle_timeout: Duration,
    /// After authentication: how long a connection may last in all.
    pub max_session: Duration,
    /// After authentication: how long the client may stay silent before
    /// a `keepalive@openssh.com` probes it (zero: never).
    pub keepalive_interval: Duration,
    /// Probes left unanswered after which the client is taken for dead.
    pub keepalive_count_max: u32,
    /// Users and repositories.
    pub mode: Mode,
}

impl ServerConfig {
    /// Standalone defaults around the given host keys.
    pub fn standalone(host_keys: Vec<HostKey>, repos: PathBuf) -> Self {
        Self {
            transport: Arc::new(TransportConfig::default()),
            host_keys: host_keys.into(),
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
            public_host: "localhost".into(),
            kill_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_session: Duration::from_secs(7200),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count_max: 3,
            mode: Mode::Standalone { repos },
        }
    }
}

/// Tags an output and the input that answers it; an answer whose id is not
/// the one the session waits for (a late reply) is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One of the command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output, relayed as channel data.
    Stdout,
    /// Standard error, relayed as extended data (type 1).
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// A signal ended it (the name without "SIG", as RFC 4254 §6.10 wants).
    Signal {
        /// Signal name, e.g. "TERM".
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

/// The RFC 4254 §6.10 name of a Linux signal number.
pub fn signal_name(number: i32) -> &'static str {
    match number {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        6 => "ABRT",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        _ => "UNKNOWN",
    }
}

/// A signal the session asks the runtime to send to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

/// A program for the runtime to start: no shell, exactly these arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program (looked up in `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables to set.
    pub env: Vec<(OsString, OsString)>,
    /// Variables to remove from the server's environment first.
    pub env_remove: Vec<OsString>,
}

/// Why a repository could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoError {
    /// It does not exist (and was not to be created).
    NotFound,
    /// Something failed; the text is for the operator's log.
    Failed(String),
}

/// Something that happened, fed to [`Session::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from the client.
    Received(&'a [u8]),
    /// The client closed the connection (or reading or writing failed).
    PeerClosed,
    /// The instant given by [`Session::poll_timeout`] has come.
    Timeout,
    /// The server is stopping: end this session, telling the user.
    Shutdown,
    /// The answer to [`Output::OpenRepo`]: `Ok(true)` if it was created now.
    RepoOpened {
        /// The request.
        id: RequestId,
        /// What happened.
        result: Result<bool, RepoError>,
    },
    /// The answer to [`Output::Spawn`].
    Spawned {
        /// The request.
        id: RequestId,
        /// Whether it started; the error is for the log.
        result: Result<(), String>,
    },
    /// Bytes the command wrote, at most [`Session::backend_read_limit`].
    BackendData {
        /// The command.
        id: RequestId,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        data: &'a [u8],
    },
    /// One of the command's output streams ended.
    BackendEof {
        /// The command.
        id: RequestId,
        /// Which stream.
        stream: Stream,
    },
    /// The command ended.
    BackendExited {
        /// The command.
        id: RequestId,
        /// How.
        status: ExitStatus,
    },
    /// The answer to [`Output::Http`].
    HttpDone {
        /// The request.
        id: RequestId,
        /// The reply, or why there is none.
        result: Result<HttpResponse, HttpError>,
    },
    /// The answer to [`Output::ConnectDyno`]: the TLS connection is up and
    /// the header was written, or why not.
    DynoConnected {
        /// The request.
        id: RequestId,
        /// Whether it worked; the error is for the log.
        result: Result<(), String>,
    },
    /// The dyno's connection ended (after its last
    /// [`Input::BackendData`]).
    DynoClosed {
        /// The dyno connection.
        id: RequestId,
        /// How it ended.
        end: DynoEnd,
    },
    /// The answer to [`Output::LookupKey`]: whose key it is, if anyone's.
    KeyLookedUp {
        /// The request.
        id: RequestId,
        /// The user's name, or `None` for a key nobody has.
        user: Option<String>,
    },
    /// The answer to [`Output::AcquireLock`].
    LockReply {
        /// The request.
        id: RequestId,
        /// Granted, or held by another push.
        result: Result<(), LockHeld>,
    },
    /// The answer to [`Output::RunHelper`]: its stdout, or why it failed.
    HelperDone {
        /// The request.
        id: RequestId,
        /// Its standard output if it exited with status 0.
        result: Result<Vec<u8>, String>,
    },
}

/// How a missing repository is created: initialised beside its final
/// place, then renamed into it, so that two first pushes at once cannot
/// trip over a half-made repository (the rename is atomic; the loser finds
/// the winner's repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInit {
    /// Where `init` makes the repository (a name starting with '.', which
    /// is never a repository's).
    pub temp: PathBuf,
    /// `git init --bare --quiet <temp>`.
    pub init: ProcessSpec,
}

/// Something the runtime must do, from [`Session::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Make sure a bare repository exists at `path`: answer `Ok(false)` if
    /// it does; if not and `create` says how, run its `init` (which makes
    /// a bare repository at its `temp`), rename `temp` to `path` and answer
    /// `Ok(true)` (or `Ok(false)` if another push's rename won: remove
    /// `temp` then); without `create`, answer `Err(RepoError::NotFound)`.
    OpenRepo {
        /// The request.
        id: RequestId,
        /// The repository's directory.
        path: PathBuf,
        /// How to create it when missing (a push), or `None` (a clone).
        create: Option<RepoInit>,
    },
    /// Start the command with its stdin, stdout and stderr piped; answer
    /// with [`Input::Spawned`], then relay.
    Spawn {
        /// The command's id for every later input.
        id: RequestId,
        /// What to run.
        process: ProcessSpec,
    },
    /// Close the command's stdin (the client sent EOF and all its data was
    /// written).
    CloseStdin {
        /// The command.
        id: RequestId,
    },
    /// Send a signal to the command.
    Signal {
        /// The command.
        id: RequestId,
        /// Which.
        signal: Signal,
    },
    /// Run a short git helper to completion and answer with
    /// [`Input::HelperDone`] (its stdout, bounded to 64 KiB).
    RunHelper {
        /// The request.
        id: RequestId,
        /// What to run.
        process: ProcessSpec,
    },
    /// Make this HTTP request and answer with [`Input::HttpDone`].
    Http {
        /// The request's id.
        id: RequestId,
        /// What to send.
        request: HttpRequest,
    },
    /// Abandon the request: its answer is no longer wanted.
    CancelHttp {
        /// The request.
        id: RequestId,
    },
    /// Open TLS to `host:port`, verified as configured, and write `header`
    /// as the first record, alone; answer with [`Input::DynoConnected`].
    /// Then relay: what the dyno sends comes back as
    /// [`Input::BackendData`] (stdout), its end as [`Input::DynoClosed`];
    /// [`Session::backend_stdin`] goes to it.
    ConnectDyno {
        /// The connection's id for every later input.
        id: RequestId,
        /// Dyno host.
        host: String,
        /// Rendezvous port.
        port: u16,
        /// The rendezvous header (holds a secret; its `Debug` hides it).
        header: crate::SecretBytes,
    },
    /// Close the dyno connection (a connection being opened included): the
    /// only stop signal the rendezvous protocol has.
    CloseDyno {
        /// The connection.
        id: RequestId,
    },
    /// Whose is this public key (standalone mode)? Answer from the current
    /// `authorized_keys` with [`Input::KeyLookedUp`]; every message after
    /// the request waits for the answer.
    LookupKey {
        /// The request.
        id: RequestId,
        /// The key, in SSH wire encoding.
        blob: Vec<u8>,
    },
    /// Take the push lock of `repo`, for this session, and answer with
    /// [`Input::LockReply`]. The lock is held until [`Output::ReleaseLock`]
    /// with the same id (which always follows a grant, whatever path the
    /// session takes), or until the connection ends.
    AcquireLock {
        /// The request, and the lock's name from now on.
        id: RequestId,
        /// The repository.
        repo: String,
        /// Who pushes, for the next pusher's message and the log.
        user: String,
    },
    /// Release the lock granted to [`Output::AcquireLock`] `id`.
    ReleaseLock {
        /// The grant.
        id: RequestId,
    },
    /// A user authenticated (admission stops counting the connection as
    /// unauthenticated).
    Authenticated(Identity),
    /// The session is over: flush [`Session::transmit`], then close.
    Close(CloseReason),
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name (the key's comment in standalone mode).
    pub user: String,
    /// The SHA256 fingerprint of the key whose signature was verified.
    pub fingerprint: String,
}

/// One client connection.
pub struct Session {
    link: Link,
    upper: ServerUpper,
}

/// Outgoing bytes above which we stop reading from the client and from the
/// command.
const HIGH_WATER: usize = 1024 * 1024;
/// How long to wait for the client's CHANNEL_CLOSE after ours.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Bytes read ahead while a key lookup holds the next message.
const BLOCKED_READ_LIMIT: usize = 64 * 1024;
/// How long a finished connection waits for the client to read what is
/// left (a DISCONNECT, an exit status) before it is dropped.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// How long the command's output streams may stay open after it exited
/// (a hook's stray background process must not hold the session).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct ServerUpper {
    config: Arc<ServerConfig>,
    /// A short random id, in every log line and in users' error messages.
    id: String,
    phase: Phase,
    auth: auth::AuthState,
    identity: Option<Identity>,
    /// The user's platform account (API mode).
    api_user: Option<crate::app::api::ApiUser>,
    login_deadline: Option<Instant>,
    channel: Option<Channel>,
    /// Whether a session channel was ever opened (one per connection).
    channel_used: bool,
    job: Job,
    outputs: VecDeque<Output>,
    next_id: u64,
    close_reported: bool,
    peer_gone: bool,
    grace_exceeded: bool,
    /// Once the connection is over: when to stop waiting for the client to
    /// take what is left to send.
    flush_deadline: Option<Instant>,
    /// After authentication: the idle and total time limits.
    limits: Option<Limits>,
    /// The repository lock of a push, held until its command is over:
    /// the id of the grant, released exactly once.
    push_lock: Option<RequestId>,
    /// The session's own deadlines.
    timers: Timers<SessionTimer, 1>,
    /// Keepalives sent since the client last sent anything.
    keepalives_unanswered: u32,
    /// A keepalive fell due during a key exchange: it goes out after.
    keepalive_due: bool,
}

timer_kinds! {
    /// The session's deadlines (the transport keeps its own table).
    enum SessionTimer {
        /// The client has been silent for the keepalive interval.
        Keepalive,
    }
}

/// The time limits of an authenticated connection.
#[derive(Debug, Clone, Copy)]
struct Limits {
    last_activity: Instant,
    end: Instant,
    /// Once a limit fired: when to cut the connection if the client will
    /// not even take the message.
    hard_stop: Option<Instant>,
}

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
        let login_deadline = Some(now + config.login_grace);
        Self {
            link: Link::new(t, false),
            upper: ServerUpper {
                config,
                id,
                phase: Phase::Handshake,
                auth: auth::AuthState::default(),
                identity: None,
                api_user: None,
                login_deadline,
                channel: None,
                channel_used: false,
                job: Job::Idle,
                outputs: VecDeque::new(),
                next_id: 1,
                close_reported: false,
                peer_gone: false,
                grace_exceeded: false,
                flush_deadline: None,
                limits: None,
                push_lock: None,
                timers: Timers::default(),
                keepalives_unanswered: 0,
                keepalive_due: false,
            },
        }
    }

    /// The session's id, as logged and as shown to users in error messages.
    pub fn id(&self) -> &str {
        &self.upper.id
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
        if let (Some(limits), Input::BackendData { .. }) = (upper.limits.as_mut(), &input) {
            limits.last_activity = now;
        }
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
                link.t.close_silently(CloseReason::PeerClosed);
                upper.stop_job(now);
            }
            Input::Timeout => {
                link.t.handle_timeout(now);
                upper.on_timeout(&mut link.t, now);
            }
            Input::Shutdown => upper.on_shutdown(&mut link.t, now),
            Input::RepoOpened { id, result } => upper.on_repo_opened(&mut link.t, now, id, result),
            Input::Spawned { id, result } => upper.on_spawned(&mut link.t, now, id, result),
            Input::BackendData { id, stream, data } => {
                upper.on_backend_data(&mut link.t, id, stream, data)
            }
            Input::BackendEof { id, stream } => upper.on_backend_eof(id, stream, now),
            Input::BackendExited { id, status } => upper.on_backend_exited(id, status, now),
            Input::HelperDone { id, result } => upper.on_helper_done(&mut link.t, id, result),
            Input::HttpDone { id, result } => {
                if upper.auth.is_pending() {
                    upper.on_lookup_done(&mut link.t, now, id, result);
                    // Messages held back during the lookup may go on now.
                    link.process(now, upper);
                } else {
                    upper.on_http_done(now, id, result);
                }
            }
            Input::KeyLookedUp { id, user } => {
                upper.on_key_looked_up(&mut link.t, now, id, user);
                link.process(now, upper);
            }
            Input::LockReply { id, result } => upper.on_lock_reply(now, id, result),
            Input::DynoConnected { id, result } => upper.on_dyno_connected(now, id, result),
            Input::DynoClosed { id, end } => upper.on_dyno_closed(&mut link.t, id, end),
        }
        upper.settle(&mut link.t, now);
        upper.send_deferred_keepalive(&mut link.t, now);
        if link.t.is_closed() {
            upper.stop_job(now);
            if let Some(id) = upper.auth.cancel() {
                tracing::info!(session = %upper.id, "abandoning the key lookup");
                upper.outputs.push_back(Output::CancelHttp { id });
            }
            if upper.flush_deadline.is_none() {
                upper.flush_deadline = Some(now + FLUSH_WAIT);
            }
            if upper.flush_deadline.is_some_and(|d| now >= d) && !upper.peer_gone {
                // A client that reads nothing cannot hold the connection
                // open: what is left unsent is dropped.
                tracing::info!(session = %upper.id, "client stopped reading; dropping what is unsent");
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

    /// When [`Input::Timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flush = self.upper.flush_deadline.filter(|_| !self.upper.peer_gone);
        let limit = if self.link.t.is_closed() {
            None
        } else {
            self.upper.limit_deadline()
        };
        let upper = [
            self.upper.login_deadline,
            self.upper.job.deadline(),
            self.upper.channel_deadline(),
            flush,
            limit,
            self.upper
                .timers
                .next()
                .filter(|_| !self.link.t.is_closed()),
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

    /// How many bytes of the command's output the session can take now:
    /// zero while the client's window is shut, while our output to the
    /// client piles up, and during key exchange.
    pub fn backend_read_limit(&self) -> usize {
        if self.link.t.in_kex() || self.link.t.is_closed() {
            return 0;
        }
        let room = HIGH_WATER.saturating_sub(self.link.t.pending().len());
        self.upper.backend_read_limit().min(room)
    }

    /// Bytes from the client waiting to be written to the command's stdin.
    pub fn backend_stdin(&self) -> &[u8] {
        self.upper
            .channel
            .as_ref()
            .filter(|_| self.upper.job.accepts_stdin())
            .map_or(&[], Channel::stdin)
    }

    /// Marks `n` bytes of [`Session::backend_stdin`] as written; the client's
    /// window reopens by as much.
    pub fn consume_backend_stdin(&mut self, now: Instant, n: usize) {
        if let Some(ch) = self.upper.channel.as_mut() {
            ch.consume_stdin(n);
        }
        self.upper.settle(&mut self.link.t, now);
    }

    /// Whether the session has ended: nothing left to send and no command
    /// left running. The runtime then closes the socket.
    pub fn is_finished(&self) -> bool {
        self.link.t.is_closed()
            && (self.upper.peer_gone || self.link.t.pending().is_empty())
            && !self.upper.job.holds_backend()
    }

    /// The transport, for tests and logs.
    pub fn transport(&self) -> &Transport {
        &self.link.t
    }
}

impl ServerUpper {
    fn next_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    fn on_timeout(&mut self, t: &mut Transport, now: Instant) {
        if self.login_deadline.is_some_and(|d| now >= d) {
            self.login_deadline = None;
            self.grace_exceeded = true;
            tracing::info!(session = %self.id, "login grace time exceeded");
            t.disconnect(DisconnectReason::ByApplication, "login grace time exceeded");
            if let Some(id) = self.auth.cancel() {
                self.outputs.push_back(Output::CancelHttp { id });
            }
        }
        self.job_timeout(t, now);
        self.limit_timeout(t, now);
        if self.timers.expire(SessionTimer::Keepalive, now) && !t.is_closed() {
            self.keepalive_fell_due(t, now);
        }
        if let Some(ch) = self.channel.as_mut()
            && ch.close_deadline.is_some_and(|d| now >= d)
        {
            // The client never answered our CHANNEL_CLOSE: end it anyway.
            ch.close_deadline = None;
            t.close_silently(CloseReason::Finished);
        }
    }

    /// The server is stopping: a command in progress is stopped with a
    /// message; anything else is disconnected.
    fn on_shutdown(&mut self, t: &mut Transport, now: Instant) {
        tracing::info!(session = %self.id, "server stopping: ending the session");
        match self.channel.as_ref() {
            Some(ch) if !ch.is_closed() => {
                self.fail_command(UserError::ServerStopping);
                self.stop_job(now);
                self.limits = Some(Limits {
                    last_activity: now,
                    end: now,
                    hard_stop: Some(now + CLOSE_WAIT),
                });
            }
            _ => t.disconnect(DisconnectReason::ByApplication, "the server is restarting"),
        }
    }

    fn limit_deadline(&self) -> Option<Instant> {
        let l = self.limits?;
        if let Some(at) = l.hard_stop {
            return Some(at);
        }
        Some((l.last_activity + self.config.idle_timeout).min(l.end))
    }

    /// Ends a connection that idled or lasted too long, telling the user
    /// why if a command was asked for.
    fn limit_timeout(&mut self, t: &mut Transport, now: Instant) {
        let Some(l) = self.limits else { return };
        if let Some(at) = l.hard_stop {
            if now >= at {
                self.limits = None;
                t.disconnect(DisconnectReason::ByApplication, "time limit exceeded");
            }
            return;
        }
        let error = if now >= l.end {
            UserError::SessionLimit {
                secs: self.config.max_session.as_secs(),
            }
        } else if now >= l.last_activity + self.config.idle_timeout {
            UserError::IdleTimeout {
                secs: self.config.idle_timeout.as_secs(),
            }
        } else {
            return;
        };
        self.limits = Some(Limits {
            hard_stop: Some(now + CLOSE_WAIT),
            ..l
        });
        tracing::info!(session = %self.id, ?error, "time limit");
        match self.channel.as_ref() {
            Some(ch) if !ch.is_closed() => {
                self.fail_command(error);
                self.stop_job(now);
            }
            _ => t.disconnect(DisconnectReason::ByApplication, "time limit exceeded"),
        }
    }

    fn channel_deadline(&self) -> Option<Instant> {
        self.channel.as_ref().and_then(|c| c.close_deadline)
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
                session = %self.id,
                unanswered = self.keepalives_unanswered,
                "dead client: no answer to keepalives; closing the connection"
            );
            t.disconnect(DisconnectReason::ByApplication, "keepalive timeout");
            // Nobody reads what is left: the connection ends as soon as
            // the command is stopped.
            self.peer_gone = true;
            self.stop_job(now);
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
        tracing::debug!(session = %self.id, unanswered = self.keepalives_unanswered, "keepalive sent");
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
    fn on_established(&mut self, _t: &mut Transport, _now: Instant) {
        self.phase = Phase::AwaitService;
    }

    fn on_message(&mut self, t: &mut Transport, now: Instant, _seq: u32, payload: &[u8]) {
        let number = payload[0];
        let liveness_only = matches!(
            number,
            numbers::REQUEST_SUCCESS | numbers::REQUEST_FAILURE | numbers::UNIMPLEMENTED
        );
        if let Some(limits) = self.limits.as_mut().filter(|_| !liveness_only) {
            limits.last_activity = now;
        }
        match (self.phase, number) {
            (_, numbers::EXT_INFO) => {}
            (_, numbers::UNIMPLEMENTED) => {
                tracing::debug!(session = %self.id, "client sent UNIMPLEMENTED");
            }
            (Phase::AwaitService, numbers::SERVICE_REQUEST) => self.on_service_request(t, payload),
            (Phase::Authenticating, numbers::USERAUTH_REQUEST) => self.on_userauth(t, now, payload),
            // RFC 4252 §5.1: requests after success are ignored.
            (Phase::Connected, numbers::USERAUTH_REQUEST) => {}
            (Phase::Connected, numbers::GLOBAL_REQUEST) => self.on_global_request(t, payload),
            // Answers to our keepalives: hearing anything was the point.
            (Phase::Connected, numbers::REQUEST_SUCCESS | numbers::REQUEST_FAILURE) => {}
            (Phase::Connected, 90..=100) => self.on_channel_message(t, now, payload),
            _ => {
                let name = wire::msg_info(number).map_or("unknown message", |m| m.name);
                let when = match self.phase {
                    Phase::Connected => "",
                    _ => " before authentication",
                };
                tracing::info!(session = %self.id, message = name, "protocol violation{when}");
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
        tracing::debug!(session = %self.id, request = %crate::log_safe(name), "global request refused");
        // We grant no global request: forwarding is refused, and a
        // keepalive only needs an answer of either kind (OpenSSH's sshd
        // answers failure too).
        if want_reply {
            t.send(|out| wire::put_u8(out, numbers::REQUEST_FAILURE));
        }
    }
}
