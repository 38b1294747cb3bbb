//! Local git processes (standalone mode): spawning, signals, repositories.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use async_io::Async;
use async_process::{Child, ChildStderr, ChildStdin, Command};
use futures_lite::AsyncReadExt;
use gitmouth_core::server::{
    ExitStatus, ProcessSpec, RepoError, RepoInit, RequestId, Signal, signal_name,
};

/// Largest helper output kept (`git for-each-ref` of a new repository).
const HELPER_OUTPUT_MAX: u64 = 64 * 1024;

/// Capacity asked for git's stdin and stdout pipes (Linux `F_SETPIPE_SZ`;
/// the default is 64 KiB). git writes its pack in 64 KiB pkt-lines: with
/// room for several of them, git and the relay each block and wake less
/// often, and the relay reads more per system call. Kept well under
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default), and small enough that
/// a server running git for many clients at once stays far from
/// `pipe-user-pages-soft` (64 MiB per user), past which the kernel gives
/// that user's new pipes a single page.
pub const PIPE_SIZE: usize = 256 * 1024;

type ExitFuture = Pin<Box<dyn Future<Output = std::io::Result<std::process::ExitStatus>> + Send>>;

/// A running git command.
pub struct Process {
    /// The session's id for it.
    pub id: RequestId,
    /// Its stdin, until closed.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, until EOF: the pipe as a file, whose vectored reads
    /// are one `readv` (`async-process`'s own stdout reads into one
    /// buffer only), so that one system call fills several packets.
    pub stdout: Option<Async<std::fs::File>>,
    /// Its stderr, until EOF.
    pub stderr: Option<ChildStderr>,
    /// Resolves when it exits.
    pub exit: Option<ExitFuture>,
    /// Killed if still running when dropped.
    _child: Child,
    pid: u32,
}

/// `spec` as a command to run, in its own process group.
fn std_command(spec: &ProcessSpec) -> std::process::Command {
    // The core's minimal environment: nothing of the server's but what it
    // names (its PATH, which decides which git runs, and HOME).
    let mut env: Vec<(OsString, OsString)> = spec
        .inherit
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var_os(name)?)))
        .collect();
    env.extend(spec.env.iter().cloned());
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v);
    // Its own process group, so that stopping git stops its hooks too.
    let mut cmd = std::process::Command::new(resolve(&spec.program, path.map(OsString::as_os_str)));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(&spec.args);
    cmd.env_clear();
    cmd.envs(env);
    cmd
}

/// `program` as a path: itself if it names one (holds a `/`), else the
/// first executable file of that name in the directories of `path` (the
/// child's `PATH`, searched as `execvp` would), or `program` unchanged if
/// there is none (the spawn then fails with the usual "not found").
///
/// Why not leave the search to the spawn: when the child's environment
/// sets `PATH` and the program is a bare name, the standard library cannot
/// use `posix_spawn` (which would search the parent's `PATH`) and forks
/// instead, copying the server's page tables for every git command; with
/// a path it spawns without copying them.
fn resolve(program: &OsStr, path: Option<&OsStr>) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return PathBuf::from(program);
    }
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    path.into_iter()
        .flat_map(std::env::split_paths)
        // An empty entry means the working directory, as for execvp.
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            }
        })
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .unwrap_or_else(|| PathBuf::from(program))
}

fn command(spec: &ProcessSpec) -> Command {
    Command::from(std_command(spec))
}

/// What `git --version` says, run as git commands are (same `PATH`, same
/// minimal environment), for the log at start; why not, if it fails.
pub fn git_version() -> Result<String, String> {
    let spec = gitmouth_core::server::git_process(vec!["--version".into()]);
    let out = std_command(&spec)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git --version: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Process {
    /// Starts `spec` with its three streams piped.
    pub fn spawn(id: RequestId, spec: &ProcessSpec) -> Result<Self, String> {
        let mut cmd = command(spec);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{:?}: {e}", spec.program))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // A pipe left at its default size only costs system calls.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            if let Some(pipe) = &stdin {
                let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE);
            }
            if let Some(pipe) = &stdout {
                let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE);
            }
        }
        let stdout = stdout
            .map(|pipe| {
                std::os::fd::OwnedFd::try_from(pipe)
                    .and_then(|fd| Async::new(std::fs::File::from(fd)))
            })
            .transpose()
            .map_err(|e| format!("git's stdout: {e}"))?;
        // `status()` only drops stdin, which was taken out above.
        let exit: ExitFuture = Box::pin(child.status());
        Ok(Self {
            id,
            stdin,
            stdout,
            stderr,
            exit: Some(exit),
            _child: child,
            pid,
        })
    }

    /// Sends a signal; one that already exited has nothing to stop.
    /// Sends a signal to git and its hooks (its process group); one that
    /// already exited has nothing to stop.
    pub fn signal(&self, signal: Signal) {
        let sig = match signal {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        };
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }
}

impl Drop for Process {
    /// A git still running when its connection ends is killed with its
    /// hooks (the exit was never seen: `exit` is still pending).
    fn drop(&mut self) {
        if self.exit.is_some() {
            self.signal(Signal::Kill);
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

/// Makes sure a bare repository exists at `path` (see
/// [`gitmouth_core::server::Output::OpenRepo`]): the core says how to
/// create it; this runs that and renames the result into place.
pub async fn open_repo(
    path: std::path::PathBuf,
    create: Option<RepoInit>,
) -> Result<bool, RepoError> {
    if path.join("HEAD").is_file() {
        return Ok(false);
    }
    let Some(RepoInit {
        temp,
        init,
        root,
        name,
    }) = create
    else {
        return Err(RepoError::NotFound);
    };
    if let Some(twin) = case_twin(&root, &name) {
        return Err(RepoError::CaseTwin(twin));
    }
    let parent = path
        .parent()
        .ok_or_else(|| RepoError::Failed(format!("{}: no parent", path.display())))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| RepoError::Failed(format!("{}: {e}", parent.display())))?;
    // Abandoned (`Output::Cancel`), this future is dropped: git init dies
    // with it, and the core removes what it made.
    let out = command(&init)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| RepoError::Failed(format!("git init: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(RepoError::Failed(format!(
            "git init: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    match std::fs::rename(&temp, &path) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            if path.join("HEAD").is_file() {
                Ok(false)
            } else {
                Err(RepoError::Failed(format!("{}: {e}", path.display())))
            }
        }
    }
}

/// A repository under `root` whose name differs from `name` only in case
/// (`Team/Site` for `team/site`: each part, the folder too, compared
/// without ASCII case), if one exists: the first in sorted order.
pub fn case_twin(root: &std::path::Path, name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('/').collect();
    // The directories matching the parts so far, with their names.
    let mut found = vec![(root.to_path_buf(), Vec::<String>::new())];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for (dir, names) in &found {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                // A repository is `<name>.git`, that suffix exactly.
                let stem = if last {
                    file.strip_suffix(".git")
                } else {
                    Some(file)
                };
                if stem.is_some_and(|stem| stem.eq_ignore_ascii_case(part)) {
                    let mut names = names.clone();
                    names.push(stem.unwrap_or_default().to_owned());
                    next.push((entry.path(), names));
                }
            }
        }
        found = next;
    }
    let mut twins: Vec<String> = found
        .into_iter()
        .filter(|(path, _)| path.join("HEAD").is_file())
        .map(|(_, names)| names.join("/"))
        .filter(|twin| gitmouth_core::app::repo_format::differ_only_in_case(twin, name))
        .collect();
    twins.sort();
    twins.into_iter().next()
}

/// Runs a short helper to completion; its stdout if it succeeded.
pub async fn run_helper(spec: ProcessSpec) -> Result<Vec<u8>, String> {
    let mut cmd = command(&spec);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{:?}: {e}", spec.program))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // No time limit here: the core gives up on a helper that takes too
    // long (`Output::Cancel`), and dropping this future kills it.
    // Both streams at once, so a helper filling one pipe cannot wait
    // forever on the other.
    let read = |pipe: Option<Box<dyn futures_lite::AsyncRead + Unpin + Send>>| async move {
        let mut buf = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(HELPER_OUTPUT_MAX).read_to_end(&mut buf).await;
        }
        buf
    };
    let out = out.map(|p| Box::new(p) as Box<dyn futures_lite::AsyncRead + Unpin + Send>);
    let err = err.map(|p| Box::new(p) as Box<dyn futures_lite::AsyncRead + Unpin + Send>);
    let (stdout, stderr) = futures_lite::future::zip(read(out), read(err)).await;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn case_twins_are_found_at_every_level() {
        let root = std::env::temp_dir().join(format!(
            "gitmouth-case-twin-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let repo = |name: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        };
        repo("myapp.git");
        repo("team/site.git");
        repo("Other/Thing.git");
        // Not repositories: no HEAD, or not `.git` exactly.
        std::fs::create_dir_all(root.join("empty.git")).unwrap();
        repo("loud.GIT");
        let twin = |name: &str| case_twin(&root, name);
        assert_eq!(twin("MyApp").as_deref(), Some("myapp"));
        assert_eq!(twin("myapp"), None);
        assert_eq!(twin("Team/site").as_deref(), Some("team/site"));
        assert_eq!(twin("TEAM/SITE").as_deref(), Some("team/site"));
        assert_eq!(twin("team/Site").as_deref(), Some("team/site"));
        assert_eq!(twin("other/thing").as_deref(), Some("Other/Thing"));
        assert_eq!(twin("Team/other"), None);
        assert_eq!(twin("Empty"), None);
        assert_eq!(twin("Loud"), None);
        assert_eq!(twin("nothing/here"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_bare_program_is_found_in_the_childs_path_as_execvp_would() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!(
            "gitmouth-resolve-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let (first, second) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // Not executable, or a directory: skipped.
        std::fs::write(first.join("tool"), "").unwrap();
        std::fs::create_dir_all(first.join("dir-tool")).unwrap();
        for name in ["tool", "dir-tool"] {
            let file = second.join(name);
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([&first, &second]).unwrap();
        let found = |program: &str| resolve(OsStr::new(program), Some(&path));
        assert_eq!(found("tool"), second.join("tool"));
        assert_eq!(found("dir-tool"), second.join("dir-tool"));
        // Not found, no PATH, or already a path: unchanged.
        assert_eq!(found("missing"), PathBuf::from("missing"));
        assert_eq!(resolve(OsStr::new("tool"), None), PathBuf::from("tool"));
        assert_eq!(found("./tool"), PathBuf::from("./tool"));
        assert_eq!(found("/bin/sh"), PathBuf::from("/bin/sh"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
