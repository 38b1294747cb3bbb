//! The git command in standalone mode: open (or create) the repository,
//! run git locally, relay, stop it when the client goes, and report how it
//! ended.
//!
//! ```text
//! start ─▶ [Parked: the task takes the push lock] ─▶ OpeningRepo ─ok─▶ Spawning ─ok─▶ Running ─exit + EOFs─▶ [upkeep] ─▶ Done
//!              │ held             │ not found     │ failed       │ stopped: TERM, then KILL
//!              └──────────────────┴───────────────┴──────────────┴──────────────▶ Done (message, status)
//! ```
//!
//! A push that may create its repository says how it would be made: its
//! format (the server's default, or the access file's object format for
//! it), and that a repository whose name differs only in case must not
//! exist. When the push creates it, the pusher is told its name and
//! object format on stderr before git's advertisement (their git gives up
//! on a hash mismatch right after it); when a case twin exists, the
//! pusher is told which, if they may read it (otherwise, as for any
//! repository they may not touch, that there is no such repository).
//!
//! After every push, a repository whose `HEAD` names no branch gets it
//! pointed at one the push created (the upkeep: CheckingHead,
//! ListingBranches, SettingHead), so that a clone checks out `main` rather
//! than a missing `master`.
//!
//! No debris: a push that creates its repository leaves nothing behind
//! unless it created a ref. The temporary repository of `git init` is
//! removed on every path that did not rename it into place (a connection
//! that ends while `git init` runs waits for it first, so that nothing
//! writes into it after the removal); a repository this push created and
//! left without a ref (it failed, a hook rejected it, `--dry-run`) is
//! removed; after a push that ended abnormally, git's quarantine
//! directories are removed. All of it before the push lock is released
//! (the task releases it once the job is over, after these outputs).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::actions::{
    ExitStatus, INIT_PREFIX, Output, ProcessSpec, QUARANTINE_PREFIX, RepoError, RepoInit,
    RequestId, Signal, Stream,
};
use crate::app::access::Operation;
use crate::app::command::{GitCommand, GitVerb};
use crate::app::messages::{self, UserError};
use crate::app::repo_format::{RefFormat, RepoFormat};
use crate::timer::{Timers, timer_kinds};

use super::{JobCx, JobInput};

/// How long the command's output streams may stay open after it exited
/// (a hook's stray background process must not hold the session).
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a helper of the repository's upkeep (or `git init`) may run.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

timer_kinds! {
    /// The local command's deadlines.
    enum LocalTimer {
        /// git was sent SIGTERM: SIGKILL when this comes.
        Kill,
        /// git exited: stop waiting for its output streams.
        Drain,
        /// The upkeep's helper (or `git init`) is taking too long: give up
        /// on it.
        Helper,
    }
}

/// The local command's state.
enum State {
    /// A push waits while its task takes the repository's lock.
    Parked,
    /// Waiting for the repository.
    OpeningRepo {
        id: RequestId,
        cmd: GitCommand,
        path: PathBuf,
        /// Where `git init` makes it, for a push (which creates it).
        temp: Option<PathBuf>,
        /// The format it is created in, if this push creates it.
        format: RepoFormat,
        /// Stopped while `git init` runs: what it made is removed once it
        /// is done, and nothing else happens.
        abandoned: bool,
    },
    /// Waiting for git to start.
    Spawning {
        id: RequestId,
        cmd: GitCommand,
        path: PathBuf,
        /// This push created the repository.
        created: bool,
    },
    /// git runs.
    Running(Running),
    /// A push ended: does HEAD name an existing branch?
    CheckingHead {
        id: RequestId,
        path: PathBuf,
        after: After,
    },
    /// HEAD names nothing: finding the repository's branches (all its
    /// refs, if this push created it: none, and it is removed).
    ListingBranches {
        id: RequestId,
        path: PathBuf,
        after: After,
    },
    /// Pointing HEAD at the chosen branch.
    SettingHead { id: RequestId, after: After },
    /// Over; the exit is reported (or was never due, if the client left).
    Done,
}

/// What follows the repository's upkeep after a push: the exit status to
/// report, unless the client has gone.
#[derive(Debug, Clone)]
struct After {
    status: ExitStatus,
    report: bool,
    /// This push created the repository.
    created: bool,
}

struct Running {
    id: RequestId,
    cmd: GitCommand,
    path: PathBuf,
    /// This push created the repository.
    created: bool,
    stdout_open: bool,
    stderr_open: bool,
    exit: Option<ExitStatus>,
    stdin_closed: bool,
    /// SIGTERM was sent.
    stopping: bool,
    /// SIGKILL was sent.
    killed: bool,
}

/// git on a local repository.
pub(super) struct LocalJob {
    /// Where repositories live.
    repos: PathBuf,
    /// `GIT_PROTOCOL` for git, if the client sent a valid one.
    git_protocol: Option<String>,
    /// The user may run the command on the repository if it exists (the
    /// access file's read or write right; always, in single-team mode).
    may_use: bool,
    /// A push may create the repository (the create right; every push, in
    /// single-team mode).
    may_create: bool,
    state: State,
    timers: Timers<LocalTimer, 3>,
}

/// What `git init`ed repositories should point HEAD at, given the branches
/// the first push created: `main`, else `master`, else the first in order.
pub fn choose_head(branches: &[&str]) -> Option<String> {
    for preferred in ["main", "master"] {
        if branches.contains(&preferred) {
            return Some(preferred.to_owned());
        }
    }
    let mut sorted = branches.to_vec();
    sorted.sort_unstable();
    sorted.first().map(|b| (*b).to_owned())
}

/// `git <args>` in git's minimal environment ([`super::git_spec`]), with
/// `GIT_PROTOCOL` if given.
fn git(args: Vec<OsString>, git_protocol: Option<&str>) -> ProcessSpec {
    let env = git_protocol
        .map(|v| ("GIT_PROTOCOL".into(), v.into()))
        .into_iter()
        .collect();
    super::git_spec::git(args, env)
}

/// `git --git-dir <path> <args…>`, for the repository's upkeep.
fn git_dir(path: &Path, args: &[&str]) -> ProcessSpec {
    let mut all: Vec<OsString> = vec!["--git-dir".into(), path.as_os_str().to_owned()];
    all.extend(args.iter().map(OsString::from));
    git(all, None)
}

impl LocalJob {
    /// Starts the command: a push asks for its lock first.
    pub(super) fn start(
        cx: &mut JobCx<'_>,
        cmd: GitCommand,
        repos: PathBuf,
        git_protocol: Option<String>,
    ) -> Self {
        let push = cmd.verb.is_push();
        let (may_use, may_create) = match cx.access {
            None => (true, push),
            Some(rules) => {
                let allows = |op| rules.allows(cx.user, cx.fingerprint, cmd.repo.as_str(), op);
                if push {
                    (allows(Operation::Write), allows(Operation::Create))
                } else {
                    (allows(Operation::Read), false)
                }
            }
        };
        let mut job = Self {
            repos,
            git_protocol,
            may_use,
            may_create,
            state: State::Done,
            timers: Timers::default(),
        };
        if !may_use && !may_create {
            // Told exactly as a missing repository is, before the push
            // lock (whose holder a refusal would name).
            tracing::info!(repo = cmd.repo.as_str(), "no access to the repository");
            no_such_repo(cx, &cmd);
            return job;
        }
        if push {
            cx.park_for_lock(cmd);
            job.state = State::Parked;
        } else {
            job.open_repo(cx, cmd);
        }
        job
    }

    /// The push lock is granted: the repository is next.
    pub(super) fn resume(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand) {
        if matches!(self.state, State::Parked) {
            self.open_repo(cx, cmd);
        } else {
            self.impossible(cx, "a lock granted to a job not waiting for one");
        }
    }

    /// A bug: the user is told the server failed, and git is stopped.
    fn impossible(&mut self, cx: &mut JobCx<'_>, what: &'static str) {
        cx.internal_error(what);
        self.stop(cx);
    }

    /// Asks for the repository, creating it for a push.
    fn open_repo(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand) {
        let path = self.repos.join(format!("{}.git", cmd.repo.as_str()));
        let id = cx.next_id();
        let format = cx.config.repo_format.for_new_repo(
            cx.access
                .and_then(|rules| rules.object_format_for(cmd.repo.as_str())),
        );
        let create = (cmd.verb.is_push() && self.may_create).then(|| {
            let name = format!("{INIT_PREFIX}{}-{}", cx.session, id.0);
            let temp = path.with_file_name(name);
            let mut args: Vec<OsString> = vec!["init".into(), "--bare".into(), "--quiet".into()];
            args.extend(format.init_flags().into_iter().map(OsString::from));
            args.push(temp.clone().into_os_string());
            RepoInit {
                temp,
                init: git(args, None),
                root: self.repos.clone(),
                name: cmd.repo.as_str().to_owned(),
            }
        });
        let temp = create.as_ref().map(|c| c.temp.clone());
        if temp.is_some() {
            // `git init` that hangs is given up like a helper.
            self.timers.set(LocalTimer::Helper, cx.now + HELPER_TIMEOUT);
        }
        cx.push(Output::OpenRepo {
            id,
            path: path.clone(),
            create,
        });
        self.state = State::OpeningRepo {
            id,
            cmd,
            path,
            temp,
            format,
            abandoned: false,
        };
    }

    pub(super) fn owns(&self, id: RequestId) -> bool {
        match &self.state {
            State::OpeningRepo { id: own, .. }
            | State::Spawning { id: own, .. }
            | State::CheckingHead { id: own, .. }
            | State::ListingBranches { id: own, .. }
            | State::SettingHead { id: own, .. } => *own == id,
            State::Running(r) => r.id == id,
            State::Parked | State::Done => false,
        }
    }

    pub(super) fn handle(&mut self, cx: &mut JobCx<'_>, id: RequestId, input: JobInput<'_>) {
        if !self.owns(id) {
            return;
        }
        match input {
            JobInput::RepoOpened(result) => self.on_repo_opened(cx, result),
            JobInput::Spawned(result) => self.on_spawned(cx, id, result),
            JobInput::Data(stream, data) => {
                if matches!(self.state, State::Running(_)) {
                    cx.deliver(stream, data);
                }
            }
            JobInput::Eof(stream) => {
                if let State::Running(r) = &mut self.state {
                    match stream {
                        Stream::Stdout => r.stdout_open = false,
                        Stream::Stderr => r.stderr_open = false,
                    }
                }
            }
            JobInput::Exited(status) => {
                if let State::Running(r) = &mut self.state
                    && r.exit.is_none()
                {
                    tracing::info!(status = %status, "git exited");
                    r.exit = Some(status);
                    self.timers.stop(LocalTimer::Kill);
                    self.timers.set(LocalTimer::Drain, cx.now + DRAIN_WAIT);
                }
            }
            JobInput::Helper(result) => self.on_helper_done(cx, result),
            // Answers only the platform asks for, or the lock (the task's).
            JobInput::Http(_)
            | JobInput::DynoConnected(_)
            | JobInput::DynoClosed(_)
            | JobInput::Lock(_)
            | JobInput::LockWaiting(_)
            | JobInput::Slot(_) => self.impossible(cx, "a platform answer for a local job"),
        }
    }

    fn on_repo_opened(&mut self, cx: &mut JobCx<'_>, result: Result<bool, RepoError>) {
        if !matches!(self.state, State::OpeningRepo { .. }) {
            return self.impossible(cx, "a repository opened for a job not waiting for one");
        }
        let State::OpeningRepo {
            cmd,
            path,
            temp,
            format,
            abandoned,
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        self.timers.stop(LocalTimer::Helper);
        // Renamed into place, the temporary repository is gone; found (or
        // made by another push first), the runtime removed it. After a
        // failure, it must go.
        if let Some(temp) = temp
            && result.is_err()
        {
            cx.push(Output::RemoveDir { path: temp });
        }
        if abandoned {
            if result == Ok(true) {
                tracing::info!(
                    repo = cmd.repo.as_str(),
                    "removing the repository created for a push that was stopped"
                );
                cx.push(Output::RemoveDir { path });
            }
            return;
        }
        match result {
            Ok(false) if !self.may_use => {
                // May create it, but it exists: as if it did not.
                tracing::info!(repo = cmd.repo.as_str(), "no access to the repository");
                no_such_repo(cx, &cmd);
            }
            Ok(created) => {
                if created {
                    tracing::info!(
                        repo = cmd.repo.as_str(),
                        object_format = format.objects.name(),
                        ref_format = format.refs.name(),
                        "created repository"
                    );
                    // Before git's advertisement, which a client of
                    // another hash algorithm gives up on.
                    let refs = (format.refs != RefFormat::Files).then(|| format.refs.name());
                    cx.notice(&messages::creating_repository(
                        cmd.repo.as_str(),
                        format.objects.name(),
                        refs,
                    ));
                }
                let id = cx.next_id();
                let caller = super::git_spec::Caller {
                    user: cx.user,
                    fingerprint: cx.fingerprint,
                    session: cx.session,
                    client: cx.client,
                };
                let process = super::git_spec::git_command(
                    cmd.verb,
                    &path,
                    self.git_protocol.as_deref(),
                    &caller,
                );
                cx.push(Output::Spawn { id, process });
                self.state = State::Spawning {
                    id,
                    cmd,
                    path,
                    created,
                };
            }
            Err(RepoError::NotFound) => {
                tracing::info!(repo = cmd.repo.as_str(), "no such repository");
                no_such_repo(cx, &cmd);
            }
            Err(RepoError::CaseTwin(existing)) => {
                tracing::info!(
                    repo = cmd.repo.as_str(),
                    existing = existing.as_str(),
                    "not creating a repository whose name differs only in case from an existing one"
                );
                case_collision(cx, &cmd, existing);
            }
            Err(RepoError::Failed(why)) => {
                tracing::error!(repo = cmd.repo.as_str(), error = %why, "cannot open repository");
                cx.fail(UserError::ServerFailed);
            }
        }
    }

    fn on_spawned(&mut self, cx: &mut JobCx<'_>, id: RequestId, result: Result<(), String>) {
        if !matches!(self.state, State::Spawning { .. }) {
            return self.impossible(cx, "a process started for a job not starting one");
        }
        let State::Spawning {
            cmd, path, created, ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        match result {
            Ok(()) => {
                self.state = State::Running(Running {
                    id,
                    cmd,
                    path,
                    created,
                    stdout_open: true,
                    stderr_open: true,
                    exit: None,
                    stdin_closed: false,
                    stopping: false,
                    killed: false,
                });
                // The client left while git was starting.
                if cx.client_gone() {
                    self.stop(cx);
                }
            }
            Err(why) => {
                tracing::error!(error = %why, "cannot start git");
                if created {
                    // Nothing was pushed into it.
                    cx.push(Output::RemoveDir { path });
                }
                cx.fail(UserError::ServerFailed);
            }
        }
    }

    /// Runs a helper of the repository's upkeep, within its time limit.
    fn run_helper(&mut self, cx: &mut JobCx<'_>, process: ProcessSpec) -> RequestId {
        let id = cx.next_id();
        cx.push(Output::RunHelper { id, process });
        self.timers.set(LocalTimer::Helper, cx.now + HELPER_TIMEOUT);
        id
    }

    fn on_helper_done(&mut self, cx: &mut JobCx<'_>, result: Result<Vec<u8>, String>) {
        self.timers.stop(LocalTimer::Helper);
        match std::mem::replace(&mut self.state, State::Done) {
            State::CheckingHead { path, after, .. } => match result {
                // HEAD resolves: nothing to repair.
                Ok(_) => finish_push(cx, after),
                Err(_) => {
                    // A repository this push created holds only what the
                    // push made: all its refs are listed, to see if any is.
                    let mut args = vec!["for-each-ref", "--format=%(refname)"];
                    if !after.created {
                        args.push("refs/heads/");
                    }
                    let process = git_dir(&path, &args);
                    let id = self.run_helper(cx, process);
                    self.state = State::ListingBranches { id, path, after };
                }
            },
            State::ListingBranches { path, after, .. } => {
                let refs = match &result {
                    Ok(out) => String::from_utf8_lossy(out).into_owned(),
                    Err(why) => {
                        tracing::warn!(error = %why, "cannot list branches");
                        String::new()
                    }
                };
                if after.created && result.is_ok() && refs.trim().is_empty() {
                    // Failed, rejected, or a `--dry-run`: the first push
                    // made no ref, so no repository is left behind (a
                    // later clone finds none rather than an empty one).
                    tracing::info!(path = %path.display(), "the first push created no ref: removing the repository");
                    cx.push(Output::RemoveDir { path });
                    return finish_push(cx, after);
                }
                let names: Vec<&str> = refs
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("refs/heads/"))
                    .collect();
                match choose_head(&names) {
                    Some(branch) => {
                        tracing::info!(branch, "pointing HEAD at the pushed branch");
                        let target = format!("refs/heads/{branch}");
                        let process = git_dir(&path, &["symbolic-ref", "HEAD", &target]);
                        let id = self.run_helper(cx, process);
                        self.state = State::SettingHead { id, after };
                    }
                    // No branch yet (tags only): a later push repairs it.
                    None => finish_push(cx, after),
                }
            }
            State::SettingHead { after, .. } => {
                if let Err(why) = result {
                    tracing::warn!(error = %why, "cannot set HEAD");
                }
                finish_push(cx, after);
            }
            other => {
                self.state = other;
                self.impossible(cx, "a helper's answer for a job running none");
            }
        }
    }

    /// Stops git: SIGTERM now, SIGKILL after the grace period. Before git
    /// runs, nothing is left to wait for.
    pub(super) fn stop(&mut self, cx: &mut JobCx<'_>) {
        match &mut self.state {
            State::Running(r) if r.exit.is_none() && !r.stopping => {
                tracing::info!("stopping git");
                r.stopping = true;
                self.timers
                    .set(LocalTimer::Kill, cx.now + cx.config.kill_grace);
                let id = r.id;
                cx.push(Output::Signal {
                    id,
                    signal: Signal::Term,
                });
            }
            // `git init` runs: once it is done, what it made is removed
            // (removing it now could race with it).
            State::OpeningRepo {
                temp: Some(_),
                abandoned,
                ..
            } => {
                if !*abandoned {
                    tracing::info!(
                        "push stopped while git init runs: waiting for it, to remove what it makes"
                    );
                }
                *abandoned = true;
            }
            State::OpeningRepo { .. } | State::Parked => self.state = State::Done,
            _ => {}
        }
    }

    pub(super) fn on_timeout(&mut self, cx: &mut JobCx<'_>) {
        for timer in self.timers.take_due(cx.now) {
            match (timer, &mut self.state) {
                (LocalTimer::Kill, State::Running(r)) if r.exit.is_none() && !r.killed => {
                    r.killed = true;
                    tracing::warn!("git ignored SIGTERM: killing it");
                    let id = r.id;
                    cx.push(Output::Signal {
                        id,
                        signal: Signal::Kill,
                    });
                }
                (LocalTimer::Drain, State::Running(r)) => {
                    // Something (a hook's background child) holds git's
                    // output open after git exited: stop waiting for it.
                    r.stdout_open = false;
                    r.stderr_open = false;
                }
                (LocalTimer::Helper, State::OpeningRepo { temp: Some(_), .. }) => {
                    let State::OpeningRepo {
                        id,
                        temp: Some(temp),
                        abandoned,
                        ..
                    } = std::mem::replace(&mut self.state, State::Done)
                    else {
                        continue;
                    };
                    tracing::error!(
                        secs = HELPER_TIMEOUT.as_secs(),
                        "git init did not finish in time; giving it up"
                    );
                    // The runtime kills it, then removes what it made.
                    cx.push(Output::Cancel { id });
                    cx.push(Output::RemoveDir { path: temp });
                    if !abandoned {
                        cx.fail(UserError::ServerFailed);
                    }
                }
                (LocalTimer::Helper, _) => {
                    let (id, after) = match std::mem::replace(&mut self.state, State::Done) {
                        State::CheckingHead { id, after, .. }
                        | State::ListingBranches { id, after, .. }
                        | State::SettingHead { id, after } => (id, after),
                        other => {
                            self.state = other;
                            continue;
                        }
                    };
                    // The upkeep is a courtesy: a hung helper is given up,
                    // and the push reports as it ended.
                    tracing::warn!(
                        secs = HELPER_TIMEOUT.as_secs(),
                        "a repository helper did not finish in time; giving it up"
                    );
                    cx.push(Output::Cancel { id });
                    finish_push(cx, after);
                }
                // A deadline of a state already left.
                _ => {}
            }
        }
    }

    /// Closes git's stdin once the client's EOF and data have all gone
    /// through; moves on once git has exited and its output is drained.
    pub(super) fn settle(&mut self, cx: &mut JobCx<'_>) {
        let State::Running(r) = &mut self.state else {
            return;
        };
        if cx.conn.stdin_done(cx.ch) && !r.stdin_closed && r.exit.is_none() {
            r.stdin_closed = true;
            let id = r.id;
            cx.push(Output::CloseStdin { id });
        }
        if r.exit.is_none() || r.stdout_open || r.stderr_open {
            return;
        }
        let State::Running(r) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        self.timers.stop(LocalTimer::Kill);
        self.timers.stop(LocalTimer::Drain);
        let status = r.exit.unwrap_or(ExitStatus::Code(1));
        // If the client went away there is nobody to report to.
        let after = After {
            status,
            report: !cx.client_gone(),
            created: r.created,
        };
        if r.cmd.verb == GitVerb::ReceivePack {
            // A push cut short (stopped, killed, or its client gone) may
            // leave git's quarantine behind: no other push of ours uses
            // it while the lock is held.
            if r.stopping || !after.report || after.status != ExitStatus::Code(0) {
                cx.push(Output::RemoveDirsIn {
                    dir: r.path.join("objects"),
                    prefix: QUARANTINE_PREFIX.to_owned(),
                });
            }
            // Whatever this push did (created the repository, pushed only
            // tags, was cut short), HEAD must end up naming a branch that
            // exists, so a clone checks something out.
            let process = git_dir(
                &r.path,
                &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            );
            let id = self.run_helper(cx, process);
            self.state = State::CheckingHead {
                id,
                path: r.path,
                after,
            };
            return;
        }
        finish_push(cx, after);
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub(super) fn relay_id(&self) -> Option<RequestId> {
        match &self.state {
            State::Running(r) => Some(r.id),
            _ => None,
        }
    }

    /// Running, git's output is relayed as it comes, on its own stream.
    pub(super) fn passthrough(&self, stream: Stream) -> Option<Stream> {
        matches!(self.state, State::Running(_)).then_some(stream)
    }

    pub(super) fn is_running(&self) -> bool {
        match &self.state {
            State::Running(r) => r.exit.is_none() || r.stdout_open || r.stderr_open,
            _ => false,
        }
    }

    pub(super) fn accepts_stdin(&self) -> bool {
        match &self.state {
            State::Running(r) => r.exit.is_none() && !r.stdin_closed,
            _ => false,
        }
    }

    pub(super) fn holds_backend(&self) -> bool {
        match &self.state {
            // The repository's upkeep finishes even if the client has gone.
            State::Spawning { .. }
            | State::CheckingHead { .. }
            | State::ListingBranches { .. }
            | State::SettingHead { .. } => true,
            // Until git's exit is seen and its output drained (bounded by
            // the drain wait): a push's upkeep follows, so the session may
            // not end (and report its close) before.
            State::Running(_) => true,
            // `git init` is waited for, so that what it made is renamed
            // into place or removed, never left behind.
            State::OpeningRepo { temp, .. } => temp.is_some(),
            State::Parked | State::Done => false,
        }
    }

    pub(super) fn stdin_closed(&self) -> bool {
        match &self.state {
            State::Running(r) => r.stdin_closed || r.exit.is_some(),
            State::Parked | State::OpeningRepo { .. } | State::Spawning { .. } => false,
            _ => true,
        }
    }

    pub(super) fn is_over(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// The one refusal for a repository that does not exist and one the user
/// may not touch, so that nobody learns which names exist.
fn no_such_repo(cx: &mut JobCx<'_>, cmd: &GitCommand) {
    cx.fail(UserError::NoSuchApp {
        app: cmd.repo.as_str().to_owned(),
    });
}

/// A push may not create `cmd`'s repository: `existing` has the same name
/// but for case. The pusher learns which repository it collides with if
/// they may read it; otherwise that name stays unsaid, as with any
/// repository they may not touch.
fn case_collision(cx: &mut JobCx<'_>, cmd: &GitCommand, existing: String) {
    let may_read = cx
        .access
        .is_none_or(|rules| rules.allows(cx.user, cx.fingerprint, &existing, Operation::Read));
    if may_read {
        cx.fail(UserError::CaseCollision {
            repo: cmd.repo.as_str().to_owned(),
            existing,
        });
    } else {
        no_such_repo(cx, cmd);
    }
}

fn finish_push(cx: &mut JobCx<'_>, after: After) {
    if after.report {
        cx.exit(after.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_prefers_main_then_master_then_the_first_name() {
        assert_eq!(
            choose_head(&["feature", "main", "master"]),
            Some("main".into())
        );
        assert_eq!(choose_head(&["master", "dev"]), Some("master".into()));
        assert_eq!(choose_head(&["zeta", "alpha"]), Some("alpha".into()));
        assert_eq!(choose_head(&[]), None);
    }
}
