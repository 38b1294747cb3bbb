//! Performing the session's outputs: repositories, git processes, signals.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Instant;

use async_process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use futures_lite::AsyncReadExt;
use gitmouth_core::server::{
    ExitStatus, Input, Output, ProcessSpec, RepoError, RequestId, Session, Signal, signal_name,
};

/// Largest helper output kept (`git for-each-ref` of a new repository).
const HELPER_OUTPUT_MAX: u64 = 64 * 1024;

type ExitFuture = Pin<Box<dyn Future<Output = std::io::Result<std::process::ExitStatus>> + Send>>;

/// The running git command of a connection.
pub struct Backend {
    /// The session's id for it.
    pub id: RequestId,
    /// Its stdin, until closed.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, until EOF.
    pub stdout: Option<ChildStdout>,
    /// Its stderr, until EOF.
    pub stderr: Option<ChildStderr>,
    /// Resolves when it exits.
    pub exit: Option<ExitFuture>,
    /// Killed if still running when dropped.
    _child: Child,
    pid: u32,
}

/// The result of work done off the connection's loop.
pub enum Completion {
    /// [`Output::OpenRepo`] finished.
    RepoOpened(RequestId, Result<bool, RepoError>),
    /// [`Output::RunHelper`] finished.
    Helper(RequestId, Result<Vec<u8>, String>),
    /// [`Output::Spawn`] finished.
    Spawned(RequestId, Result<Backend, String>),
}

fn command(spec: &ProcessSpec) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    for name in &spec.env_remove {
        cmd.env_remove(name);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts doing `output`; its result comes back through `done`.
pub fn perform(
    output: Output,
    backend: &mut Option<Backend>,
    done: &async_channel::Sender<Completion>,
) {
    match output {
        Output::OpenRepo { id, path, create } => {
            let done = done.clone();
            smol::spawn(async move {
                let result = open_repo(&path, create).await;
                let _ = done.send(Completion::RepoOpened(id, result)).await;
            })
            .detach();
        }
        Output::Spawn { id, process } => {
            let mut cmd = command(&process);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let result = cmd
                .spawn()
                .map_err(|e| format!("{:?}: {e}", process.program))
                .map(|mut child| {
                    let pid = child.id();
                    let stdin = child.stdin.take();
                    let stdout = child.stdout.take();
                    let stderr = child.stderr.take();
                    let exit: ExitFuture = Box::pin(child.status());
                    Backend {
                        id,
                        stdin,
                        stdout,
                        stderr,
                        exit: Some(exit),
                        _child: child,
                        pid,
                    }
                });
            let _ = done.try_send(Completion::Spawned(id, result));
        }
        Output::CloseStdin { id } => {
            if let Some(b) = backend.as_mut().filter(|b| b.id == id) {
                b.stdin = None;
            }
        }
        Output::Signal { id, signal } => {
            if let Some(b) = backend.as_ref().filter(|b| b.id == id) {
                let sig = match signal {
                    Signal::Term => rustix::process::Signal::TERM,
                    Signal::Kill => rustix::process::Signal::KILL,
                };
                if let Some(pid) = rustix::process::Pid::from_raw(b.pid as i32) {
                    // It may have exited already; then there is nothing to stop.
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
        Output::RunHelper { id, process } => {
            let done = done.clone();
            smol::spawn(async move {
                let result = run_helper(&process).await;
                let _ = done.send(Completion::Helper(id, result)).await;
            })
            .detach();
        }
        Output::Http { .. }
        | Output::CancelHttp { .. }
        | Output::ConnectDyno { .. }
        | Output::CloseDyno { .. } => {
            tracing::error!("API mode is not available in this build");
        }
        Output::Close(_) => {}
    }
}

/// Feeds a completion into the session.
pub fn complete(
    session: &mut Session,
    backend: &mut Option<Backend>,
    completion: Completion,
    now: Instant,
) {
    match completion {
        Completion::RepoOpened(id, result) => {
            session.handle_input(now, Input::RepoOpened { id, result })
        }
        Completion::Helper(id, result) => {
            session.handle_input(now, Input::HelperDone { id, result })
        }
        Completion::Spawned(id, result) => {
            let result = result.map(|b| {
                *backend = Some(b);
            });
            session.handle_input(now, Input::Spawned { id, result });
        }
    }
}

/// Translates a process's end for the session.
pub fn exit_status(result: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match result {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code as u32),
            (None, Some(sig)) => ExitStatus::Signal {
                name: signal_name(sig).to_owned(),
                core_dumped: status.core_dumped(),
            },
            (None, None) => ExitStatus::Code(1),
        },
        Err(_) => ExitStatus::Code(1),
    }
}

async fn open_repo(path: &std::path::Path, create: bool) -> Result<bool, RepoError> {
    if path.join("HEAD").is_file() {
        return Ok(false);
    }
    if !create {
        return Err(RepoError::NotFound);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RepoError::Failed(format!("{}: {e}", parent.display())))?;
    }
    let out = Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| RepoError::Failed(format!("git init: {e}")))?;
    if !out.status.success() {
        return Err(RepoError::Failed(format!(
            "git init: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(true)
}

async fn run_helper(spec: &ProcessSpec) -> Result<Vec<u8>, String> {
    let mut cmd = command(spec);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{:?}: {e}", spec.program))?;
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(HELPER_OUTPUT_MAX)
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut stderr = Vec::new();
    if let Some(err) = child.stderr.take() {
        let _ = err.take(HELPER_OUTPUT_MAX).read_to_end(&mut stderr).await;
    }
    let status = child.status().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        ))
    }
}
