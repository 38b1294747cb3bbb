//! The session's vocabulary with the runtime: what it asks for
//! ([`Output`]) and what it is told ([`Input`]), each request tagged with a
//! [`RequestId`] that its answer carries back.
//!
//! Shared state (authorized keys, the push lock, admission) reaches a
//! session only this way, so that what a session does follows from its
//! seed and its inputs alone.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use crate::app::api::{HttpError, HttpRequest, HttpResponse};
use crate::app::dyno::DynoEnd;
use crate::transport::disconnect::CloseReason;

pub use crate::connection::{ExitStatus, Stream};

/// Tags an output and the input that answers it; an answer whose id is not
/// the one the session waits for (a late reply) is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

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

/// A program for the runtime to start: no shell, exactly these arguments,
/// and exactly this environment.
///
/// The process starts from an empty environment (the runtime clears the
/// server's): it gets the variables named in `inherit`, with the values
/// they have in the server's environment (those it has), then `env`.
/// Nothing else of the server's environment reaches it, so that no secret
/// of the server's (a database URL, a token) reaches a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program (looked up in the `PATH` it inherits).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables of the server's own environment passed on as they are
    /// there (one the server does not have stays unset).
    pub inherit: Vec<OsString>,
    /// Variables to set (after the inherited ones).
    pub env: Vec<(OsString, OsString)>,
}

/// Why a repository could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoError {
    /// It does not exist (and was not to be created).
    NotFound,
    /// It does not exist, and was not created: a repository whose name
    /// differs from its name only in case exists, named here (as
    /// `team/site`, without `.git`; see [`RepoInit::name`]).
    CaseTwin(String),
    /// Something failed; the text is for the operator's log.
    Failed(String),
}

/// Something that happened, fed to [`crate::server::Session::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from the client.
    Received(&'a [u8]),
    /// The client closed the connection (or reading or writing failed).
    PeerClosed,
    /// The instant given by [`crate::server::Session::poll_timeout`] has come.
    Timeout,
    /// The server is stopping now: end this session, telling the user.
    Shutdown,
    /// The server is draining for a restart: commands in progress may
    /// finish (up to [`crate::server::ServerConfig::drain_timeout`]), new
    /// ones are refused, and the connection closes once none runs.
    Drain,
    /// Admission ends this startup to make way for a newcomer from a
    /// source holding fewer (at `full`): it is disconnected with "too
    /// many connections" (nothing happens once it has authenticated).
    Evicted,
    /// The answer to [`Output::Authenticated`]: how many authenticated
    /// connections its user has now, this one included. Past
    /// [`crate::server::ServerConfig::per_user_max_connections`], the
    /// connection is ended, telling the user why.
    UserConnections(u32),
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
    /// Bytes the command wrote, at most [`crate::server::Session::backend_read_limit`],
    /// read into a buffer of the runtime's (they are copied into packets).
    /// Where [`crate::server::Session::lend_backend`] lends packets, the
    /// runtime reads into those instead, and nothing is copied.
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
        /// The access file's rules current at the lookup (`--access`);
        /// `None`: single-team mode, every key reaches every repository.
        access: Option<std::sync::Arc<crate::app::access::AccessRules>>,
    },
    /// The answer to [`Output::AcquireLock`]: granted, or held by another
    /// push. For a request that may wait, the grant comes when its turn
    /// does (after [`Input::LockWaiting`]).
    LockReply {
        /// The request.
        id: RequestId,
        /// Granted, or held by another push, or the lock service is
        /// unavailable.
        result: Result<(), LockRefusal>,
    },
    /// A first answer to [`Output::AcquireLock`] with `wait`: the lock is
    /// held, and the request waits in its queue ([`Input::LockReply`]
    /// grants it when its turn comes). Said again whenever the holder
    /// changes, so that what the user is told stays true.
    LockWaiting {
        /// The request.
        id: RequestId,
        /// Who holds the lock now, and since when.
        held: LockHeld,
    },
    /// The answer to [`Output::AcquireSlot`]: whether a command slot was
    /// given (false: `--max-commands` commands run already).
    SlotReply {
        /// The request.
        id: RequestId,
        /// Given.
        granted: bool,
    },
    /// The answer to [`Output::RunHelper`]: its stdout, or why it failed.
    HelperDone {
        /// The request.
        id: RequestId,
        /// Its standard output if it exited with status 0.
        result: Result<Vec<u8>, String>,
    },
}

/// How the names of temporary repositories begin ([`RepoInit::temp`]):
/// one left by a crash is found by it (and by its age) at start.
pub const INIT_PREFIX: &str = ".init-";

/// How git names a push's quarantine in the repository's `objects`
/// (`tmp_objdir_create("incoming")`): where receive-pack keeps what a push
/// sends until it is accepted.
pub const QUARANTINE_PREFIX: &str = "tmp_objdir-incoming-";

/// How a missing repository is created: initialised beside its final
/// place, then renamed into it, so that two first pushes at once cannot
/// trip over a half-made repository (the rename is atomic; the loser finds
/// the winner's repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInit {
    /// Where `init` makes the repository (a name starting with
    /// [`INIT_PREFIX`], which is never a repository's).
    pub temp: PathBuf,
    /// `git init --bare --quiet <format flags> <temp>`.
    pub init: ProcessSpec,
    /// The directory of all repositories: the repository is
    /// `<root>/<name>.git`.
    pub root: PathBuf,
    /// The repository's name (`team/site`). Before creating it, the
    /// runtime looks under `root` for a repository whose name differs
    /// from this one only in case, each part compared without ASCII case
    /// (`Team/Site.git` for `team/site`, folder included); if there is
    /// one, it creates nothing and answers [`RepoError::CaseTwin`].
    pub name: String,
}

/// Something the runtime must do, from [`crate::server::Session::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Make sure a bare repository exists at `path`: answer `Ok(false)` if
    /// it does; if not and `create` says how, answer
    /// `Err(RepoError::CaseTwin(..))` if a repository of the same name but
    /// for case exists ([`RepoInit::name`]), else run its `init` (which
    /// makes a bare repository at its `temp`), rename `temp` to `path` and answer
    /// `Ok(true)` (or `Ok(false)` if another push's rename won: remove
    /// `temp` then); without `create`, answer `Err(RepoError::NotFound)`.
    /// Abandoned ([`Output::Cancel`]), the `init` is killed; the core
    /// then removes `temp` ([`Output::RemoveDir`]), as it does after an
    /// `Err` (the runtime may remove it first).
    OpenRepo {
        /// The request.
        id: RequestId,
        /// The repository's directory.
        path: PathBuf,
        /// How to create it when missing (a push), or `None` (a clone).
        create: Option<RepoInit>,
    },
    /// Remove the directory `path` and everything in it (nothing if it is
    /// missing), before the next output is performed: a push lock
    /// released after it is released once it is gone. No answer; a
    /// failure is for the log. What a push leaves behind: a repository
    /// being created, or one its first push left without a ref.
    RemoveDir {
        /// The directory.
        path: PathBuf,
    },
    /// Remove, as [`Output::RemoveDir`] does, every directory directly
    /// in `dir` whose name starts with `prefix`: git's quarantine
    /// directories (`objects/tmp_objdir-incoming-*`) after a push that
    /// ended abnormally, while its push lock is held.
    RemoveDirsIn {
        /// The directory searched (not removed).
        dir: PathBuf,
        /// The names' beginning.
        prefix: String,
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
    /// [`Input::HelperDone`] (its stdout, bounded to 64 KiB). If the core
    /// gives up on it ([`Output::Cancel`]), kill it.
    RunHelper {
        /// The request.
        id: RequestId,
        /// What to run.
        process: ProcessSpec,
    },
    /// Make this HTTP request and answer with [`Input::HttpDone`]. Its
    /// `timeout` is the core's to keep: the runtime sets no limit of its
    /// own, and is told to [`Output::Cancel`] when the time is up.
    Http {
        /// The request's id.
        id: RequestId,
        /// What to send.
        request: HttpRequest,
    },
    /// Abandon the work `id` (an HTTP request, a helper, a key lookup, a
    /// repository being created):
    /// its answer is no longer wanted, and whatever it holds (a connection,
    /// a process) is let go. The core decides every time limit; this is
    /// how one that passed reaches the runtime.
    Cancel {
        /// The request.
        id: RequestId,
    },
    /// Open TLS to `host:port`, verified as configured, and write `header`
    /// as the first record, alone; answer with [`Input::DynoConnected`].
    /// Then relay: what the dyno sends comes back as
    /// [`Input::BackendData`] (stdout), its end as [`Input::DynoClosed`];
    /// [`crate::server::Session::backend_stdin`] goes to it.
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
    /// session takes), or until the connection ends. With `wait`, a lock
    /// held by another push is waited for, in turn: answer
    /// [`Input::LockWaiting`] at once (and again whenever the holder
    /// changes), then [`Input::LockReply`] with the grant when the lock
    /// is this request's; the core keeps the time limit, and withdraws the
    /// request with [`Output::ReleaseLock`].
    AcquireLock {
        /// The request, and the lock's name from now on.
        id: RequestId,
        /// The repository.
        repo: String,
        /// Who pushes, for the next pusher's message and the log.
        user: String,
        /// Wait in turn when the lock is held, rather than be refused.
        wait: bool,
    },
    /// Release the lock granted to [`Output::AcquireLock`] `id`, or
    /// withdraw that request from the lock's queue (a grant then never
    /// comes); nothing if neither. Sent once per request that was granted
    /// or is waiting, whatever path the session takes.
    ReleaseLock {
        /// The grant.
        id: RequestId,
    },
    /// Take one of the server's command slots (`--max-commands`: git
    /// commands running at once in all, across connections) and answer
    /// with [`Input::SlotReply`]. A slot given is held until
    /// [`Output::ReleaseSlot`] with the same id (which always follows,
    /// whatever path the command takes), or until the connection ends.
    AcquireSlot {
        /// The request, and the slot's name from now on.
        id: RequestId,
    },
    /// Give back the slot given to [`Output::AcquireSlot`] `id`.
    ReleaseSlot {
        /// The slot.
        id: RequestId,
    },
    /// A user authenticated (admission stops counting the connection as
    /// unauthenticated); answer with [`Input::UserConnections`].
    Authenticated(Identity),
    /// The session is over: flush [`crate::server::Session::transmit`], then close.
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

/// Why a push lock was not granted (yet): another push holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHeld {
    /// When that push took it.
    pub since: Instant,
    /// Who pushes (for the message of a pusher waiting in turn).
    pub user: String,
    /// Which instance the push came through, when the lock is shared by
    /// several (`--push-lock postgres`); `None` for this one alone.
    pub instance: Option<String>,
}

/// Why a push lock was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRefusal {
    /// Another push holds it (and the request does not wait, or waited
    /// too long).
    Held(LockHeld),
    /// The service that keeps the lock (the database shared by several
    /// instances) cannot be reached: no push goes on without the lock.
    Unavailable,
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

/// Something that happened in a session, told to the runtime for its
/// metrics and audit log ([`crate::server::Session::poll_event`]). Nothing
/// is asked and nothing answers it: a runtime that ignores these loses
/// only its statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first key exchange ended, `elapsed` after the connection began.
    HandshakeDone {
        /// From accept to the first NEWKEYS.
        elapsed: std::time::Duration,
    },
    /// A user authentication attempt ended.
    Auth {
        /// The method (`publickey`; other methods are refused before
        /// they count).
        method: &'static str,
        /// Whether it let the user in.
        accepted: bool,
    },
    /// A command's git process or dyno is up, `elapsed` after its exec
    /// request.
    Provisioned {
        /// From the exec request to the backend running.
        elapsed: std::time::Duration,
    },
    /// A push began waiting in turn for its repository's push lock.
    LockWait,
    /// A push was refused because another held the lock.
    LockRefused,
    /// The client answered none of the keepalive probes: taken for dead.
    KeepaliveTimeout,
    /// A git command ended (or was refused): the audit record.
    CommandEnded(Audit),
}

/// One git command, from its exec request to its end: what the audit log
/// and the operation metrics say of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Who ran it.
    pub user: String,
    /// The SHA256 fingerprint of their key.
    pub fingerprint: String,
    /// The repository (the app, in API mode).
    pub repo: String,
    /// The dashed command, e.g. `git-receive-pack`.
    pub command: &'static str,
    /// `GIT_PROTOCOL` as the client sent it (`version=2`), if it did.
    pub protocol: Option<String>,
    /// Bytes from the client to the command.
    pub bytes_in: u64,
    /// Bytes from the command to the client (stdout and stderr).
    pub bytes_out: u64,
    /// From the exec request to the end.
    pub duration: std::time::Duration,
    /// The exit status the client was given, if any.
    pub exit: Option<ExitStatus>,
    /// How it went, in one word: `ok`, `failed` (non-zero exit),
    /// `stopped` (a signal, a limit, a hang-up) or `refused` (it never
    /// ran: busy, lock held, no such repository, draining).
    pub outcome: &'static str,
}
