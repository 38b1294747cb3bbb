//! The git command's lifecycle in standalone mode: open (or create) the
//! repository, run git locally, relay, stop it when the client goes, and
//! report how it ended.
//!
//! ```text
//! Idle ─exec─▶ OpeningRepo ─ok─▶ Spawning ─ok─▶ Running ─exit + EOFs─▶ [SettingHead] ─▶ Done
//!                  │ not found        │ failed      │ client gone: TERM, then KILL
//!                  └──────────────────┴─────────────┴──────────────▶ Done (message, status 1)
//! ```
//!
//! After every push, a repository whose `HEAD` names no branch gets it
//! pointed at one the push created, so that a clone checks out `main` rather than a missing
//! `master`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use crate::app::command::{GitCommand, GitVerb};
use crate::app::messages::UserError;
use crate::transport::Transport;

use super::{
    DRAIN_WAIT, ExitStatus, Mode, Output, ProcessSpec, RepoError, RequestId, ServerUpper, Signal,
    Stream,
};

/// The command's state.
pub(super) enum Job {
    /// No command yet.
    Idle,
    /// A push waits for its repository's lock.
    AwaitingLock { id: RequestId, cmd: GitCommand },
    /// Waiting for the repository.
    OpeningRepo {
        id: RequestId,
        cmd: GitCommand,
        path: PathBuf,
    },
    /// Waiting for git to start.
    Spawning {
        id: RequestId,
        cmd: GitCommand,
        path: PathBuf,
    },
    /// git runs.
    Running(Running),
    /// A push ended: does HEAD name an existing branch?
    CheckingHead {
        id: RequestId,
        path: PathBuf,
        after: After,
    },
    /// HEAD names nothing: finding the repository's branches.
    ListingBranches {
        id: RequestId,
        path: PathBuf,
        after: After,
    },
    /// Pointing HEAD at the chosen branch.
    SettingHead { id: RequestId, after: After },
    /// API mode: asking whether the user may use the app.
    CheckingAccess { id: RequestId, cmd: GitCommand },
    /// API mode: asking for a build dyno.
    Provisioning {
        id: RequestId,
        cmd: GitCommand,
        progress_at: Instant,
    },
    /// API mode: connecting to the dyno.
    Connecting { id: RequestId, cmd: GitCommand },
    /// API mode: relaying to and from the dyno.
    Relaying(Relay),
    /// Over; the exit is reported (or was never due, if the client left).
    Done,
}

/// What follows the repository's upkeep after a push: the exit status to
/// report, unless the client has gone.
#[derive(Debug, Clone)]
pub(super) struct After {
    status: ExitStatus,
    report: bool,
}

/// The dyno connection while it relays.
pub(super) struct Relay {
    pub(super) id: RequestId,
    pub(super) stream: crate::app::dyno::DynoStream,
}

pub(super) struct Running {
    id: RequestId,
    cmd: GitCommand,
    path: PathBuf,
    stdout_open: bool,
    stderr_open: bool,
    exit: Option<ExitStatus>,
    stdin_closed: bool,
    /// Once stopping: when to escalate to SIGKILL.
    kill_at: Option<Instant>,
    killed: bool,
    /// After exit: how long the output streams may stay open.
    drain_until: Option<Instant>,
}

impl Job {
    /// Whether the command's output is being relayed.
    pub(super) fn is_running(&self) -> bool {
        match self {
            Job::Running(r) => r.exit.is_none() || r.stdout_open || r.stderr_open,
            Job::Relaying(_) => true,
            _ => false,
        }
    }

    /// Whether the client's data may go to the command now: to git while it
    /// runs, to a dyno only once it has spoken first.
    pub(super) fn accepts_stdin(&self) -> bool {
        match self {
            Job::Running(r) => r.exit.is_none() && !r.stdin_closed,
            Job::Relaying(relay) => relay.stream.started(),
            _ => false,
        }
    }

    /// Whether a process or connection may still be alive, so the session
    /// must not end.
    pub(super) fn holds_backend(&self) -> bool {
        match self {
            // The repository's upkeep finishes even if the client has gone.
            Job::Spawning { .. }
            | Job::Connecting { .. }
            | Job::Relaying(_)
            | Job::CheckingHead { .. }
            | Job::ListingBranches { .. }
            | Job::SettingHead { .. } => true,
            Job::Running(r) => r.exit.is_none(),
            _ => false,
        }
    }

    /// Whether data from the client can no longer reach git.
    pub(super) fn stdin_closed(&self) -> bool {
        match self {
            Job::Running(r) => r.stdin_closed || r.exit.is_some(),
            Job::Idle
            | Job::AwaitingLock { .. }
            | Job::OpeningRepo { .. }
            | Job::Spawning { .. }
            | Job::CheckingAccess { .. }
            | Job::Provisioning { .. }
            | Job::Connecting { .. }
            | Job::Relaying(_) => false,
            _ => true,
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Job::Running(r) => [
                r.kill_at.filter(|_| !r.killed && r.exit.is_none()),
                r.drain_until,
            ]
            .into_iter()
            .flatten()
            .min(),
            Job::Provisioning { progress_at, .. } => Some(*progress_at),
            _ => None,
        }
    }
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

/// Variables a spawned git must not inherit from the server's environment:
/// they would point it at another repository or configuration.
const GIT_ENV_REMOVE: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_PROTOCOL",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
];

fn git(args: Vec<OsString>, git_protocol: Option<&str>) -> ProcessSpec {
    let env = git_protocol
        .map(|v| ("GIT_PROTOCOL".into(), v.into()))
        .into_iter()
        .collect();
    ProcessSpec {
        program: "git".into(),
        args,
        env,
        env_remove: GIT_ENV_REMOVE.iter().map(OsString::from).collect(),
    }
}

/// `git --git-dir <path> <args…>`, for the repository's upkeep.
fn git_dir(path: &std::path::Path, args: &[&str]) -> ProcessSpec {
    let mut all: Vec<OsString> = vec!["--git-dir".into(), path.as_os_str().to_owned()];
    all.extend(args.iter().map(OsString::from));
    git(all, None)
}

impl ServerUpper {
    pub(super) fn start_job(&mut self, cmd: GitCommand, _now: Instant) {
        if let Mode::Api { .. } = &self.config.mode {
            // The lock comes after the access check there: a stranger
            // must not learn that someone is pushing to an app.
            return self.start_remote(cmd);
        }
        if cmd.verb.is_push() {
            self.request_push_lock(cmd);
        } else {
            self.open_repo(cmd);
        }
    }

    /// Standalone: asks for the repository, creating it for a push.
    fn open_repo(&mut self, cmd: GitCommand) {
        let Mode::Standalone { repos } = &self.config.mode else {
            return self.internal_error("a local repository asked for in API mode");
        };
        let path = repos.join(format!("{}.git", cmd.repo.as_str()));
        let id = self.next_id();
        let create = cmd.verb.is_push().then(|| {
            let name = format!(".init-{}-{}", self.id, id.0);
            let temp = path.with_file_name(name);
            let init = git(
                vec![
                    "init".into(),
                    "--bare".into(),
                    "--quiet".into(),
                    temp.clone().into_os_string(),
                ],
                None,
            );
            super::RepoInit { temp, init }
        });
        self.outputs.push_back(Output::OpenRepo {
            id,
            path: path.clone(),
            create,
        });
        self.job = Job::OpeningRepo { id, cmd, path };
    }

    /// Asks for the repository's push lock; the job goes on when it is
    /// granted ([`ServerUpper::on_lock_reply`]).
    pub(super) fn request_push_lock(&mut self, cmd: GitCommand) {
        let id = self.next_id();
        let user = self
            .identity
            .as_ref()
            .map_or_else(String::new, |i| i.user.clone());
        self.outputs.push_back(Output::AcquireLock {
            id,
            repo: cmd.repo.as_str().to_owned(),
            user,
        });
        self.job = Job::AwaitingLock { id, cmd };
    }

    /// The lock table answered.
    pub(super) fn on_lock_reply(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<(), super::LockHeld>,
    ) {
        let awaited =
            matches!(&self.job, Job::AwaitingLock { id: expected, .. } if *expected == id);
        if !awaited {
            // A late grant for a push that was abandoned: give it back.
            if result.is_ok() {
                self.outputs.push_back(Output::ReleaseLock { id });
            }
            return;
        }
        let Job::AwaitingLock { cmd, .. } = std::mem::replace(&mut self.job, Job::Done) else {
            return self.internal_error("the awaited lock vanished");
        };
        match result {
            Ok(()) => {
                self.push_lock = Some(id);
                match &self.config.mode {
                    Mode::Standalone { .. } => self.open_repo(cmd),
                    Mode::Api { .. } => self.provision(cmd, now),
                }
            }
            Err(held) => {
                let started = super::lock::ago(held.since, now);
                tracing::info!(session = %self.id, repo = cmd.repo.as_str(), "another push is in progress");
                self.fail_command(UserError::PushInProgress {
                    app: cmd.repo.as_str().to_owned(),
                    started,
                });
            }
        }
    }

    /// A state that cannot happen did: a bug. The command ends with the
    /// server's failure message (and the session id), never silently.
    pub(super) fn internal_error(&mut self, what: &'static str) {
        tracing::error!(session = %self.id, what, "internal error");
        self.job = Job::Done;
        self.fail_command(UserError::ServerFailed);
    }

    /// Once the job is over, its lock goes back (exactly once).
    pub(super) fn release_push_lock(&mut self) {
        if matches!(self.job, Job::Done | Job::Idle)
            && let Some(id) = self.push_lock.take()
        {
            self.outputs.push_back(Output::ReleaseLock { id });
        }
    }

    pub(super) fn on_repo_opened(
        &mut self,
        _t: &mut Transport,
        _now: Instant,
        id: RequestId,
        result: Result<bool, RepoError>,
    ) {
        let Job::OpeningRepo { id: expected, .. } = &self.job else {
            return;
        };
        if *expected != id {
            return;
        }
        let Job::OpeningRepo { cmd, path, .. } = std::mem::replace(&mut self.job, Job::Done) else {
            return;
        };
        match result {
            Ok(created) => {
                if created {
                    tracing::info!(session = %self.id, repo = cmd.repo.as_str(), "created repository");
                }
                let spawn_id = self.next_id();
                let process = git(
                    vec![cmd.verb.subcommand().into(), path.clone().into_os_string()],
                    self.channel
                        .as_ref()
                        .and_then(|c| c.git_protocol.as_deref()),
                );
                self.outputs.push_back(Output::Spawn {
                    id: spawn_id,
                    process,
                });
                self.job = Job::Spawning {
                    id: spawn_id,
                    cmd,
                    path,
                };
            }
            Err(RepoError::NotFound) => {
                tracing::info!(session = %self.id, repo = cmd.repo.as_str(), "no such repository");
                self.fail_command(UserError::NoSuchApp {
                    app: cmd.repo.as_str().to_owned(),
                });
            }
            Err(RepoError::Failed(why)) => {
                tracing::error!(session = %self.id, repo = cmd.repo.as_str(), error = %why, "cannot open repository");
                self.fail_command(UserError::ServerFailed);
            }
        }
    }

    pub(super) fn on_spawned(
        &mut self,
        _t: &mut Transport,
        now: Instant,
        id: RequestId,
        result: Result<(), String>,
    ) {
        let Job::Spawning { id: expected, .. } = &self.job else {
            return;
        };
        if *expected != id {
            return;
        }
        let Job::Spawning { cmd, path, .. } = std::mem::replace(&mut self.job, Job::Done) else {
            return;
        };
        match result {
            Ok(()) => {
                self.job = Job::Running(Running {
                    id,
                    cmd,
                    path,
                    stdout_open: true,
                    stderr_open: true,
                    exit: None,
                    stdin_closed: false,
                    kill_at: None,
                    killed: false,
                    drain_until: None,
                });
                // The client left while git was starting.
                if self.peer_gone || self.channel.as_ref().is_none_or(|c| c.is_closed()) {
                    self.stop_job(now);
                }
            }
            Err(why) => {
                tracing::error!(session = %self.id, error = %why, "cannot start git");
                self.fail_command(UserError::ServerFailed);
            }
        }
    }

    pub(super) fn on_backend_data(
        &mut self,
        t: &mut Transport,
        id: RequestId,
        stream: Stream,
        data: &[u8],
    ) {
        match &self.job {
            Job::Running(r) if r.id == id => self.deliver(t, stream, data),
            Job::Relaying(relay) if relay.id == id => self.on_dyno_data(t, data),
            _ => {}
        }
    }

    pub(super) fn on_backend_eof(&mut self, id: RequestId, stream: Stream, _now: Instant) {
        let Job::Running(r) = &mut self.job else {
            return;
        };
        if r.id != id {
            return;
        }
        match stream {
            Stream::Stdout => r.stdout_open = false,
            Stream::Stderr => r.stderr_open = false,
        }
    }

    pub(super) fn on_backend_exited(&mut self, id: RequestId, status: ExitStatus, now: Instant) {
        let Job::Running(r) = &mut self.job else {
            return;
        };
        if r.id != id || r.exit.is_some() {
            return;
        }
        tracing::info!(session = %self.id, ?status, "git exited");
        r.exit = Some(status);
        r.drain_until = Some(now + DRAIN_WAIT);
    }

    pub(super) fn on_helper_done(
        &mut self,
        _t: &mut Transport,
        id: RequestId,
        result: Result<Vec<u8>, String>,
    ) {
        match std::mem::replace(&mut self.job, Job::Done) {
            Job::CheckingHead {
                id: expected,
                path,
                after,
            } if expected == id => match result {
                // HEAD resolves: nothing to repair.
                Ok(_) => self.finish_push(after),
                Err(_) => {
                    let process = git_dir(
                        &path,
                        &["for-each-ref", "--format=%(refname)", "refs/heads/"],
                    );
                    let id = self.next_id();
                    self.outputs.push_back(Output::RunHelper { id, process });
                    self.job = Job::ListingBranches { id, path, after };
                }
            },
            Job::ListingBranches {
                id: expected,
                path,
                after,
            } if expected == id => {
                let branches = match &result {
                    Ok(out) => String::from_utf8_lossy(out).into_owned(),
                    Err(why) => {
                        tracing::warn!(session = %self.id, error = %why, "cannot list branches");
                        String::new()
                    }
                };
                let names: Vec<&str> = branches
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("refs/heads/"))
                    .collect();
                match choose_head(&names) {
                    Some(branch) => {
                        tracing::info!(session = %self.id, branch, "pointing HEAD at the pushed branch");
                        let target = format!("refs/heads/{branch}");
                        let process = git_dir(&path, &["symbolic-ref", "HEAD", &target]);
                        let id = self.next_id();
                        self.outputs.push_back(Output::RunHelper { id, process });
                        self.job = Job::SettingHead { id, after };
                    }
                    // No branch yet (tags only): a later push repairs it.
                    None => self.finish_push(after),
                }
            }
            Job::SettingHead {
                id: expected,
                after,
            } if expected == id => {
                if let Err(why) = result {
                    tracing::warn!(session = %self.id, error = %why, "cannot set HEAD");
                }
                self.finish_push(after);
            }
            other => self.job = other,
        }
    }

    /// Stops git: SIGTERM now, SIGKILL after the grace period.
    pub(super) fn stop_job(&mut self, now: Instant) {
        match &mut self.job {
            Job::Running(r) if r.exit.is_none() && r.kill_at.is_none() => {
                tracing::info!(session = %self.id, "stopping git");
                r.kill_at = Some(now + self.config.kill_grace);
                let id = r.id;
                self.outputs.push_back(Output::Signal {
                    id,
                    signal: Signal::Term,
                });
            }
            Job::OpeningRepo { .. } | Job::AwaitingLock { .. } => self.job = Job::Done,
            Job::CheckingAccess { id, .. } | Job::Provisioning { id, .. } => {
                tracing::info!(session = %self.id, "abandoning the platform request");
                self.outputs.push_back(Output::CancelHttp { id: *id });
                self.job = Job::Done;
            }
            Job::Connecting { id, .. } | Job::Relaying(Relay { id, .. }) => {
                tracing::info!(session = %self.id, "closing the dyno connection");
                self.outputs.push_back(Output::CloseDyno { id: *id });
                self.job = Job::Done;
            }
            _ => {}
        }
    }

    pub(super) fn job_timeout(&mut self, _t: &mut Transport, now: Instant) {
        if let Job::Provisioning { progress_at, .. } = &mut self.job
            && now >= *progress_at
        {
            // Provisioning waits for a dyno host: tell the user it is
            // not stuck.
            *progress_at = now + super::remote::PROGRESS_EVERY;
            if let Some(ch) = self.channel.as_mut() {
                ch.push_notice(
                    crate::app::messages::waiting_for_build_server()
                        .as_bytes()
                        .to_vec(),
                );
            }
            return;
        }
        let Job::Running(r) = &mut self.job else {
            return;
        };
        if r.exit.is_none() && !r.killed && r.kill_at.is_some_and(|at| now >= at) {
            r.killed = true;
            tracing::warn!(session = %self.id, "git ignored SIGTERM: killing it");
            let id = r.id;
            self.outputs.push_back(Output::Signal {
                id,
                signal: Signal::Kill,
            });
        }
        if let Job::Running(r) = &mut self.job
            && r.drain_until.is_some_and(|at| now >= at)
        {
            // Something (a hook's background child) holds git's output
            // open after git exited: stop waiting for it.
            r.stdout_open = false;
            r.stderr_open = false;
        }
    }

    /// Moves the job on once git has exited and its output is drained; closes
    /// git's stdin once the client's EOF and data have all gone through.
    pub(super) fn settle_job(&mut self, _now: Instant) {
        let stdin_done = self
            .channel
            .as_ref()
            .is_some_and(|c| c.eof_in && c.stdin().is_empty());
        let Job::Running(r) = &mut self.job else {
            return;
        };
        if stdin_done && !r.stdin_closed && r.exit.is_none() {
            r.stdin_closed = true;
            let id = r.id;
            self.outputs.push_back(Output::CloseStdin { id });
        }
        let Job::Running(r) = &mut self.job else {
            return;
        };
        if r.exit.is_none() || r.stdout_open || r.stderr_open {
            return;
        }
        let Job::Running(r) = std::mem::replace(&mut self.job, Job::Done) else {
            return;
        };
        let status = r.exit.unwrap_or(ExitStatus::Code(1));
        // If the client went away there is nobody to report to.
        let report = !(self.peer_gone || self.channel.as_ref().is_none_or(|c| c.is_closed()));
        let after = After { status, report };
        if r.cmd.verb == GitVerb::ReceivePack {
            // Whatever this push did (created the repository, pushed only
            // tags, was cut short), HEAD must end up naming a branch that
            // exists, so a clone checks something out.
            let process = git_dir(
                &r.path,
                &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            );
            let id = self.next_id();
            self.outputs.push_back(Output::RunHelper { id, process });
            self.job = Job::CheckingHead {
                id,
                path: r.path,
                after,
            };
            return;
        }
        self.finish_push(after);
    }

    fn finish_push(&mut self, after: After) {
        if after.report {
            self.report_exit(after.status);
        }
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
