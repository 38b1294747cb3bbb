//! The git command of one session channel: from the exec request to the
//! exit status, with one state machine per backend behind a small enum.
//!
//! ```text
//! Task ── exec ──▶ Backend::Local    (standalone: git on local repositories)
//!                  Backend::Platform (Openruko: access check, dyno, relay)
//! ```
//!
//! The mode is chosen once, at exec. Both machines speak one vocabulary:
//! they are started, answered ([`JobInput`], by request id), stopped,
//! timed out and settled; they ask for work as [`Output`]s and talk to the
//! user through the channel ([`JobCx`]). A state that cannot happen is a bug:
//! it ends the command with the server's failure message, never silently.
//!
//! The push lock is the task's: a machine asks for it when its command is a
//! push, and the task releases a grant exactly once, when the machine is
//! over, whatever path it took (a push may wait for the lock in turn:
//! [`lock_wait`]). So is the command slot (`--max-commands`): every git
//! command asks for one before it starts, and gives it back once over.
//!
//! Where git still waits for the server's first words (nothing went to
//! its stdout yet, and no process or dyno relays to it), a refusal also
//! goes to stdout as git's `ERR` pkt-line, so that git says
//! `remote error: …` rather than suspecting the user's access rights.

mod git_spec;
mod local;
mod lock_wait;
mod platform;

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::actions::{
    Audit, ExitStatus, LockHeld, LockRefusal, Output, RepoError, RequestId, SessionEvent, Stream,
    ago,
};
use crate::app::api::{ApiUser, HttpError, HttpResponse};
use crate::app::command::{self, GitCommand, InvalidCommand, parse_exec};
use crate::app::dyno::DynoEnd;
use crate::app::messages::{self, UserError};
use crate::config::{Mode, ServerConfig};
use crate::connection::{ChannelId, Connection};
use crate::transport::Transport;

pub use local::choose_head;

use self::local::LocalJob;
use self::lock_wait::LockRequest;
use self::platform::PlatformJob;

/// `git <args>` as standalone mode runs git's helpers: in git's minimal
/// environment (the server's `PATH` and `HOME` only).
pub fn git_process(args: Vec<std::ffi::OsString>) -> crate::actions::ProcessSpec {
    git_spec::git(args, Vec::new())
}

/// What a job may touch while it handles one thing.
pub struct JobCx<'a> {
    /// The current time.
    pub now: Instant,
    /// The session's id, for logs and users' messages.
    pub session: &'a str,
    /// The server's configuration.
    pub config: &'a ServerConfig,
    /// Who authenticated.
    pub user: &'a str,
    /// The SHA256 fingerprint of their key.
    pub fingerprint: &'a str,
    /// The client's address, if the runtime told it
    /// ([`crate::server::Session::set_client`]).
    pub client: Option<core::net::IpAddr>,
    /// What happened, for the runtime's metrics and audit log.
    pub events: &'a mut VecDeque<SessionEvent>,
    /// Their platform account (API mode).
    pub api_user: Option<&'a ApiUser>,
    /// The access file's rules (standalone mode with `--access`; `None`:
    /// single-team mode).
    pub access: Option<&'a crate::app::access::AccessRules>,
    /// Where requests for the runtime go.
    pub outputs: &'a mut VecDeque<Output>,
    /// The session's request counter.
    pub next_id: &'a mut u64,
    /// The channels.
    pub conn: &'a mut Connection,
    /// The transport the channel writes to.
    pub t: &'a mut Transport,
    /// The job's channel.
    pub ch: ChannelId,
    /// Whether the client's connection is gone.
    pub peer_gone: bool,
    /// Set by a machine that needs the push lock before it can go on
    /// ([`JobCx::park_for_lock`]); the task takes it.
    pub wants_lock: Option<GitCommand>,
    /// Lock requests withdrawn from their queue ([`Output::ReleaseLock`]
    /// before any grant): a grant already on its way for one of them was
    /// let go by the withdrawal, and needs no release of its own.
    pub withdrawn_locks: &'a mut BTreeSet<RequestId>,
}

impl JobCx<'_> {
    fn next_id(&mut self) -> RequestId {
        let id = RequestId(*self.next_id);
        *self.next_id += 1;
        id
    }

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Whether nobody is left to report to: the connection or the channel
    /// is gone.
    fn client_gone(&self) -> bool {
        self.peer_gone || self.conn.is_closed(self.ch)
    }

    /// Relays the command's output.
    fn deliver(&mut self, stream: Stream, data: &[u8]) {
        self.conn.deliver(self.t, self.ch, stream, data);
    }

    /// A message of ours on the user's stderr.
    fn notice(&mut self, text: &str) {
        self.conn.notice(self.ch, text.as_bytes().to_vec());
    }

    /// Reports how the command ended (the first report wins).
    fn exit(&mut self, status: ExitStatus) {
        self.conn.exit(self.ch, status);
    }

    /// Tells the user why the command does not run (or stopped), then ends
    /// the channel with the error's exit status.
    pub fn fail(&mut self, error: UserError) {
        let mut text = error.message(&self.config.public_host, self.config.mode.wording());
        if !matches!(error, UserError::NoShell { .. }) {
            text = messages::with_session_id(&text, self.session);
        }
        self.conn.notice(self.ch, text.into_bytes());
        self.exit(ExitStatus::Code(error.exit_status()));
    }

    /// As [`JobCx::fail`], and the same text as git's `ERR` pkt-line on
    /// stdout, for a git that still waits for the server's first words.
    fn fail_to_git(&mut self, error: UserError) {
        let message = error.message(&self.config.public_host, self.config.mode.wording());
        let text = messages::with_session_id(&message, self.session);
        self.conn.notice(self.ch, text.clone().into_bytes());
        self.conn
            .say_on_stdout(self.ch, messages::err_pkt_line(&text));
        self.exit(ExitStatus::Code(error.exit_status()));
    }

    /// A state that cannot happen did: a bug, logged, and the user told
    /// that the server failed.
    fn internal_error(&mut self, what: &'static str) {
        tracing::error!(what, "internal error");
        self.fail(UserError::ServerFailed);
    }

    /// Parks the machine until its task holds the push lock of `cmd`'s
    /// repository (then [`Backend`]'s `resume` gets `cmd` back).
    fn park_for_lock(&mut self, cmd: GitCommand) {
        self.wants_lock = Some(cmd);
    }
}

/// An answer for a job, its request id aside.
#[derive(Debug)]
pub enum JobInput<'a> {
    /// [`crate::actions::Input::RepoOpened`].
    RepoOpened(Result<bool, RepoError>),
    /// [`crate::actions::Input::Spawned`].
    Spawned(Result<(), String>),
    /// [`crate::actions::Input::BackendData`].
    Data(Stream, &'a [u8]),
    /// [`crate::actions::Input::BackendEof`].
    Eof(Stream),
    /// [`crate::actions::Input::BackendExited`].
    Exited(ExitStatus),
    /// [`crate::actions::Input::HelperDone`].
    Helper(Result<Vec<u8>, String>),
    /// [`crate::actions::Input::HttpDone`].
    Http(Result<HttpResponse, HttpError>),
    /// [`crate::actions::Input::DynoConnected`].
    DynoConnected(Result<(), String>),
    /// [`crate::actions::Input::DynoClosed`].
    DynoClosed(DynoEnd),
    /// [`crate::actions::Input::LockReply`].
    Lock(Result<(), LockRefusal>),
    /// [`crate::actions::Input::LockWaiting`].
    LockWaiting(LockHeld),
    /// [`crate::actions::Input::SlotReply`].
    Slot(bool),
}

/// The command's backend, chosen at exec by the mode.
enum Backend {
    Local(LocalJob),
    Platform(PlatformJob),
}

/// Calls the same method on whichever machine runs.
macro_rules! on_backend {
    ($backend:expr, $job:ident => $body:expr) => {
        match $backend {
            Backend::Local($job) => $body,
            Backend::Platform($job) => $body,
        }
    };
}

/// One channel's command.
pub struct Task {
    /// The channel the command belongs to.
    pub ch: ChannelId,
    /// `GIT_PROTOCOL`, if the client sent a valid one.
    git_protocol: Option<String>,
    /// Whether the exec string is a git command (git, on the other side,
    /// reads pkt-lines from stdout).
    git: bool,
    /// The command slot asked for, and the command held until it comes.
    awaiting_slot: Option<(RequestId, GitCommand)>,
    /// The command slot given to this command, given back exactly once.
    slot: Option<RequestId>,
    /// The push lock granted to this command, released exactly once.
    lock: Option<RequestId>,
    /// The push lock asked for (or waited for), and the command parked
    /// until it comes.
    awaiting: Option<LockRequest>,
    /// `None` until the command starts (and for a command that never ran).
    backend: Option<Backend>,
    /// The git command's audit record as it grows, told once it is over.
    audit: Option<AuditDraft>,
}

/// What the audit record of a command in progress holds so far.
struct AuditDraft {
    started: Instant,
    command: &'static str,
    repo: String,
    protocol: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    /// Whether the git process or dyno came up.
    provisioned: bool,
}

impl Task {
    /// A task for a channel just opened.
    pub fn new(ch: ChannelId) -> Self {
        Self {
            ch,
            git_protocol: None,
            git: false,
            awaiting_slot: None,
            slot: None,
            lock: None,
            awaiting: None,
            backend: None,
            audit: None,
        }
    }

    /// `n` bytes of the client's went to the command.
    pub fn count_in(&mut self, n: usize) {
        if let Some(a) = self.audit.as_mut() {
            a.bytes_in += n as u64;
        }
    }

    /// `n` bytes of the command's went to the client, without passing
    /// through [`Task::handle`] (lent straight into packets).
    pub fn count_out(&mut self, n: usize) {
        if let Some(a) = self.audit.as_mut() {
            a.bytes_out += n as u64;
        }
    }

    /// Where the bytes of the backend's `stream` go, if they go to the
    /// client as they are (so they may be read straight into packets):
    /// the channel's stream. `None` while they need looking at first (a
    /// dyno's first bytes choose their stream) or would not be relayed.
    pub fn passthrough(&self, stream: Stream) -> Option<Stream> {
        self.backend
            .as_ref()
            .and_then(|b| on_backend!(b, job => job.passthrough(stream)))
    }

    /// An `env` request: only a valid `GIT_PROTOCOL` is taken.
    pub fn on_env(&mut self, name: &[u8], value: &[u8]) -> bool {
        let valid = (name == b"GIT_PROTOCOL")
            .then(|| command::parse_git_protocol(value))
            .flatten();
        match valid {
            Some(v) => {
                self.git_protocol = Some(v.to_owned());
                true
            }
            None => {
                tracing::debug!(name = %crate::log_safe(name), "env request refused");
                false
            }
        }
    }

    /// The channel's command (`None`: a shell, refused with the greeting).
    /// A git command asks for a command slot first.
    pub fn exec(&mut self, cx: &mut JobCx<'_>, command: Option<&[u8]>) {
        let Some(command) = command else {
            tracing::info!("shell refused with the greeting");
            let access = cx.access.map(|rules| {
                let deploys = rules
                    .deploys_of(cx.user, cx.fingerprint)
                    .map(|d| d.repo.clone())
                    .collect();
                (deploys, rules.summary(cx.user, cx.fingerprint))
            });
            cx.fail(UserError::NoShell {
                user: cx.user.to_owned(),
                access,
            });
            return;
        };
        let verb = command.split(|b| *b == b' ').next().unwrap_or_default();
        if verb == b"git-lfs-authenticate" || verb == b"git-lfs-transfer" {
            tracing::info!(command = %crate::log_safe(verb), "git-lfs over SSH refused");
            cx.fail(UserError::LfsUnsupported);
            return;
        }
        let cmd = match parse_exec(command) {
            Ok(cmd) => cmd,
            Err(why) => {
                tracing::info!(command = %crate::log_safe(command), %why, "invalid command");
                cx.fail(UserError::InvalidPath(why));
                return;
            }
        };
        if matches!(cx.config.mode, Mode::Api { .. }) && !cmd.repo.is_app_name() {
            // API mode keeps Openruko's app names: no dots, no folders.
            tracing::info!(command = %crate::log_safe(command), "not an app name");
            cx.fail(UserError::InvalidPath(InvalidCommand::AppName));
            return;
        }
        self.git = true;
        self.audit = Some(AuditDraft {
            started: cx.now,
            command: cmd.verb.dashed(),
            repo: cmd.repo.as_str().to_owned(),
            protocol: self.git_protocol.clone(),
            bytes_in: 0,
            bytes_out: 0,
            provisioned: false,
        });
        tracing::info!(
            channel = cx.ch.0,
            command = cmd.verb.dashed(),
            repo = cmd.repo.as_str(),
            "git command"
        );
        let id = cx.next_id();
        cx.push(Output::AcquireSlot { id });
        self.awaiting_slot = Some((id, cmd));
    }

    /// The server will not run this exec (it drains): the user is told
    /// why, as git understands it if the exec string is a git command.
    pub fn refuse_exec(&mut self, cx: &mut JobCx<'_>, command: Option<&[u8]>, error: UserError) {
        self.git = command.is_some_and(|c| parse_exec(c).is_ok());
        self.refuse(cx, error);
    }

    /// Tells the user why the command does not run (or stopped): on
    /// stderr, and as git's `ERR` pkt-line where git still waits for the
    /// server's first words.
    pub fn refuse(&mut self, cx: &mut JobCx<'_>, error: UserError) {
        if self.git && self.relay_id().is_none() && !cx.conn.stdout_used(self.ch) {
            cx.fail_to_git(error);
        } else {
            cx.fail(error);
        }
    }

    /// The command slot is given: the command starts on the mode's
    /// backend.
    fn start(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand) {
        self.backend = Some(match &cx.config.mode {
            Mode::Standalone { repos } => Backend::Local(LocalJob::start(
                cx,
                cmd,
                repos.clone(),
                self.git_protocol.take(),
            )),
            Mode::Api {
                api,
                rendezvous_port,
            } => Backend::Platform(PlatformJob::start(cx, cmd, api.clone(), *rendezvous_port)),
        });
        self.take_lock_wish(cx);
    }

    /// A machine parked for the push lock: ask for it.
    fn take_lock_wish(&mut self, cx: &mut JobCx<'_>) {
        if let Some(cmd) = cx.wants_lock.take() {
            self.awaiting = Some(LockRequest::ask(cx, cmd));
        }
    }

    /// Whether an answer with this id is this command's.
    pub fn owns(&self, id: RequestId) -> bool {
        self.awaiting.as_ref().is_some_and(|req| req.id == id)
            || self
                .awaiting_slot
                .as_ref()
                .is_some_and(|(own, _)| *own == id)
            || self
                .backend
                .as_ref()
                .is_some_and(|b| on_backend!(b, job => job.owns(id)))
    }

    /// Whether the command waits in the push lock's queue.
    pub fn waits_for_lock(&self) -> bool {
        self.awaiting.as_ref().is_some_and(LockRequest::is_queued)
    }

    /// An answer for this command.
    pub fn handle(&mut self, cx: &mut JobCx<'_>, id: RequestId, input: JobInput<'_>) {
        match input {
            JobInput::Slot(granted) => self.on_slot(cx, id, granted),
            JobInput::LockWaiting(held) => {
                if let Some(req) = self.awaiting.as_mut().filter(|req| req.id == id) {
                    if !req.is_queued() {
                        cx.events.push_back(SessionEvent::LockWait);
                    }
                    req.on_waiting(cx, held);
                }
            }
            JobInput::Lock(result) => self.on_lock(cx, id, result),
            input => {
                let up = matches!(
                    input,
                    JobInput::Spawned(Ok(())) | JobInput::DynoConnected(Ok(()))
                );
                if let (JobInput::Data(_, data), Some(a)) = (&input, self.audit.as_mut()) {
                    a.bytes_out += data.len() as u64;
                }
                if let Some(backend) = self.backend.as_mut() {
                    on_backend!(backend, job => job.handle(cx, id, input));
                    self.take_lock_wish(cx);
                }
                if let Some(a) = self.audit.as_mut().filter(|a| up && !a.provisioned) {
                    a.provisioned = true;
                    let elapsed = cx.now.saturating_duration_since(a.started);
                    cx.events.push_back(SessionEvent::Provisioned { elapsed });
                }
            }
        }
    }

    /// The answer about a command slot: the command starts, or the user
    /// is told the server is busy.
    fn on_slot(&mut self, cx: &mut JobCx<'_>, id: RequestId, granted: bool) {
        let Some((_, cmd)) = self.awaiting_slot.take_if(|(own, _)| *own == id) else {
            return;
        };
        if granted {
            self.slot = Some(id);
            self.start(cx, cmd);
        } else {
            tracing::info!(
                repo = cmd.repo.as_str(),
                "too many git commands at once: refused"
            );
            self.refuse(cx, UserError::ServerBusy);
        }
    }

    /// The answer about the push lock: the push goes on, or is refused.
    fn on_lock(&mut self, cx: &mut JobCx<'_>, id: RequestId, result: Result<(), LockRefusal>) {
        let Some(req) = self.awaiting.take_if(|req| req.id == id) else {
            return;
        };
        let Some(backend) = self.backend.as_mut() else {
            // Only a started command asks for the lock.
            if result.is_ok() {
                cx.push(Output::ReleaseLock { id });
            }
            return;
        };
        match result {
            Ok(()) => {
                if req.is_queued() {
                    tracing::info!(
                        repo = req.cmd.repo.as_str(),
                        "push lock taken after waiting"
                    );
                }
                self.lock = Some(id);
                on_backend!(backend, job => job.resume(cx, req.cmd));
            }
            Err(LockRefusal::Held(held)) => {
                on_backend!(backend, job => job.stop(cx));
                self.refuse_push(cx, req.cmd, &held);
            }
            Err(LockRefusal::Unavailable) => {
                on_backend!(backend, job => job.stop(cx));
                let repo = req.cmd.repo.as_str().to_owned();
                tracing::warn!(repo, "push refused: the push lock service is unavailable");
                cx.events.push_back(SessionEvent::LockRefused);
                self.refuse(cx, UserError::LockUnavailable { app: repo });
            }
        }
    }

    /// Another push holds the lock (and waiting, if allowed, ran out).
    fn refuse_push(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand, held: &LockHeld) {
        let repo = cmd.repo.as_str().to_owned();
        tracing::info!(repo, "another push is in progress");
        cx.events.push_back(SessionEvent::LockRefused);
        self.refuse(
            cx,
            UserError::PushInProgress {
                app: repo,
                started: ago(held.since, cx.now),
                user: held.user.clone(),
                instance: held.instance.clone(),
            },
        );
    }

    /// Stops the command: the client went, or a limit or shutdown came.
    pub fn stop(&mut self, cx: &mut JobCx<'_>) {
        // A slot or grant that comes now is a late one: the session gives
        // it back.
        self.awaiting_slot = None;
        self.withdraw_lock_request(cx);
        if let Some(backend) = self.backend.as_mut() {
            on_backend!(backend, job => job.stop(cx));
        }
    }

    /// Gives up the push lock asked for: a place in its queue is given
    /// back at once (which also lets go of a grant already on its way).
    /// Returns the request.
    fn withdraw_lock_request(&mut self, cx: &mut JobCx<'_>) -> Option<LockRequest> {
        let req = self.awaiting.take()?;
        if req.is_queued() {
            tracing::info!(
                repo = req.cmd.repo.as_str(),
                "leaving the push lock's queue"
            );
            cx.push(Output::ReleaseLock { id: req.id });
            cx.withdrawn_locks.insert(req.id);
        }
        Some(req)
    }

    /// A deadline of this command may have come: its wait for the push
    /// lock may have run out.
    pub fn on_timeout(&mut self, cx: &mut JobCx<'_>) {
        if let Some(held) = self.awaiting.as_mut().and_then(|req| req.on_timeout(cx)) {
            tracing::info!(
                secs = cx.config.push_lock_wait.as_secs(),
                "push lock wait ran out"
            );
            if let Some(req) = self.withdraw_lock_request(cx) {
                if let Some(backend) = self.backend.as_mut() {
                    on_backend!(backend, job => job.stop(cx));
                }
                self.refuse_push(cx, req.cmd, &held);
            }
        }
        if let Some(backend) = self.backend.as_mut() {
            on_backend!(backend, job => job.on_timeout(cx));
        }
    }

    /// After every input: moves the command on, tells the channel whether
    /// its data still has a reader, and gives the push lock and the
    /// command slot back once the command is over.
    pub fn settle(&mut self, cx: &mut JobCx<'_>) {
        if let Some(backend) = self.backend.as_mut() {
            on_backend!(backend, job => job.settle(cx));
        }
        cx.conn.set_accepts_input(self.ch, !self.stdin_closed());
        if self.is_over() {
            if let Some(a) = self.audit.take() {
                let exit = cx.conn.exit_status(self.ch).cloned();
                let outcome = match &exit {
                    _ if !a.provisioned => "refused",
                    Some(ExitStatus::Code(0)) => "ok",
                    Some(ExitStatus::Code(_)) => "failed",
                    Some(ExitStatus::Signal { .. }) | None => "stopped",
                };
                cx.events.push_back(SessionEvent::CommandEnded(Audit {
                    user: cx.user.to_owned(),
                    fingerprint: cx.fingerprint.to_owned(),
                    repo: a.repo,
                    command: a.command,
                    protocol: a.protocol,
                    bytes_in: a.bytes_in,
                    bytes_out: a.bytes_out,
                    duration: cx.now.saturating_duration_since(a.started),
                    exit,
                    outcome,
                }));
            }
            if let Some(id) = self.lock.take() {
                cx.push(Output::ReleaseLock { id });
            }
            if let Some(id) = self.slot.take() {
                cx.push(Output::ReleaseSlot { id });
            }
        }
    }

    /// The command's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        let backend = self
            .backend
            .as_ref()
            .and_then(|b| on_backend!(b, job => job.deadline()));
        let lock = self.awaiting.as_ref().and_then(LockRequest::deadline);
        backend.into_iter().chain(lock).min()
    }

    /// The id of the process or dyno connection the channel relays to.
    pub fn relay_id(&self) -> Option<RequestId> {
        self.backend
            .as_ref()
            .and_then(|b| on_backend!(b, job => job.relay_id()))
    }

    /// Whether the command's output is being relayed.
    pub fn is_running(&self) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| on_backend!(b, job => job.is_running()))
    }

    /// Whether the client's data may go to the backend now.
    pub fn accepts_stdin(&self) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| on_backend!(b, job => job.accepts_stdin()))
    }

    /// Whether a process or connection may still be alive, so the session
    /// must not end.
    pub fn holds_backend(&self) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| on_backend!(b, job => job.holds_backend()))
    }

    /// Whether the client's data can no longer reach the backend.
    fn stdin_closed(&self) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| on_backend!(b, job => job.stdin_closed()))
    }

    /// Whether the command is over (or never ran), so nothing it holds
    /// remains.
    pub fn is_over(&self) -> bool {
        self.awaiting_slot.is_none()
            && self
                .backend
                .as_ref()
                .is_none_or(|b| on_backend!(b, job => job.is_over()))
    }

    /// Whether a push lock or a command slot is held by this command.
    pub fn holds_lock(&self) -> bool {
        self.lock.is_some() || self.slot.is_some()
    }
}
