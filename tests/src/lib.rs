//! Test harness for gitmouth: start the real server binary on loopback, run
//! the real `ssh` and `git` against it, and read what happened.
//!
//! Every end-to-end test is written once, as a function of the [`Runtime`],
//! and [`per_runtime!`] makes it one `#[test]` per runtime, so a failure on
//! one runtime does not hide the other's result.

#![allow(clippy::unwrap_used, missing_docs)]

pub mod load;
pub mod mux;
pub mod openruko;
pub mod postgres;
pub mod sunset_client;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The runtimes whose binaries the suite drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `gitmouth` (smol).
    Smol,
    /// `gitmouth-async-std`.
    AsyncStd,
}

impl Runtime {
    /// Every runtime with a working binary.
    pub const ALL: [Runtime; 2] = [Runtime::Smol, Runtime::AsyncStd];

    /// The binary's name.
    pub fn bin(self) -> &'static str {
        match self {
            Runtime::Smol => "gitmouth",
            Runtime::AsyncStd => "gitmouth-async-std",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Runtime::Smol => "gitmouth-smol",
            Runtime::AsyncStd => "gitmouth-async-std",
        }
    }

    /// Path of the binary, built on first use (cargo does nothing if it is
    /// up to date), so `cargo test -p gitmouth-tests` alone works too, and
    /// so does a binary of this crate run by `cargo run` (the load test).
    pub fn binary(self) -> PathBuf {
        // One build per runtime: the load test needs only one of them.
        static BUILD: [Once; 2] = [Once::new(), Once::new()];
        let profile = profile_dir();
        BUILD[self as usize].call_once(|| {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet"]);
            // Variables cargo set for this test process would make build
            // scripts (ring's) look changed and rebuild everything.
            for (name, _) in std::env::vars() {
                let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name.as_str())
                    || [
                        "CARGO_BUILD_",
                        "CARGO_NET_",
                        "CARGO_REGISTRIES_",
                        "CARGO_PROFILE_",
                        "CARGO_TERM_",
                    ]
                    .iter()
                    .any(|p| name.starts_with(p));
                if name.starts_with("CARGO_") && !keep || name == "RUST_TEST_THREADS" {
                    cmd.env_remove(&name);
                }
            }
            cmd.args(["-p", self.package()]);
            // Where this executable was built, even when it is run
            // directly rather than by cargo.
            cmd.arg("--target-dir").arg(profile.parent().unwrap());
            if profile.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the server binaries failed"
            );
        });
        profile.join(self.bin())
    }
}

/// `target/<profile>/` of the running executable: a test runs from
/// `target/<profile>/deps/<test>`, a binary from `target/<profile>/<bin>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Makes each named function `fn name(runtime: Runtime)` one `#[test]` per
/// runtime: `per_runtime!(clone_works);` gives `clone_works::smol` and
/// `clone_works::async_std` (a module and a function may share a name).
#[macro_export]
macro_rules! per_runtime {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn smol() {
                    super::$name($crate::Runtime::Smol)
                }

                #[test]
                fn async_std() {
                    super::$name($crate::Runtime::AsyncStd)
                }
            }
        )+
    };
}

/// A running server process; killed on drop.
pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its data directory (inside `dir`).
    pub data_dir: PathBuf,
    /// A scratch directory owned by this server's test.
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// The runtime it runs on.
    pub runtime: Runtime,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Run in this directory instead of the scratch directory.
    pub cwd: Option<PathBuf>,
    /// Use this data directory instead of a fresh one.
    pub data_dir: Option<PathBuf>,
    /// Apply admission control to loopback too (tests of admission control).
    pub strict_admission: bool,
    /// Pass no `--listen`: the configuration (a file, a variable) says
    /// where to listen (tests of the configuration).
    pub no_listen_flag: bool,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a fresh data directory.
    pub fn start(runtime: Runtime) -> Server {
        Self::start_with(runtime, ServerOptions::default())
    }

    /// Starts a server with extra arguments and environment.
    pub fn start_with(runtime: Runtime, options: ServerOptions) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let mut cmd = bare_server_command(runtime);
        if !options.no_listen_flag {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        cmd.arg("--data-dir").arg(&data_dir);
        if !options.strict_admission {
            // Every test client comes from 127.0.0.1: without this, the
            // failures tests provoke on purpose would get it penalised.
            cmd.args([
                "--admission-exempt",
                "127.0.0.0/8",
                "--admission-exempt",
                "::1",
            ]);
        }
        cmd.args(&options.args);
        cmd.current_dir(options.cwd.as_deref().unwrap_or(dir.path()));
        cmd.env("RUST_LOG", "debug,polling=info,async_io=info");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                // The human form, or the JSON one (`--log-format json`).
                let addr = line.split("listening address=").nth(1).or_else(|| {
                    line.split(r#""message":"listening","address":""#)
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                });
                if let Some(addr) = addr
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            data_dir,
            dir,
            log,
            runtime,
        }
    }

    /// Where the server serves `/metrics` (`--metrics 127.0.0.1:0`), as
    /// it logged it.
    pub fn metrics_addr(&self) -> SocketAddr {
        let log = self.log();
        let addr = log
            .split("serving metrics address=")
            .nth(1)
            .map(|rest| rest.split_whitespace().next().unwrap_or_default())
            .or_else(|| {
                log.split(r#""message":"serving metrics","address":""#)
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
            })
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        addr.parse().unwrap()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the log contains `needle`, waiting up to 30 s for it: the
    /// server logs a line before the client sees what follows it, but the
    /// thread that copies the server's output here may not have read it
    /// yet. Check lines the server logs at start with [`Server::log`].
    pub fn logged(&self, needle: &str) -> bool {
        self.wait_for_log(needle, Duration::from_secs(30))
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit;
    /// `None` if it was still running then. Once it has exited, everything
    /// the server would ever do has happened.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        kill(self.pid(), "TERM");
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    /// The exit status if the process has exited (it does not wait).
    pub fn child_try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An `ssh` command aimed at this server.
    pub fn ssh(&self) -> Ssh {
        Ssh::new(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A real OpenSSH `ssh` invocation with no user or system configuration.
#[derive(Clone)]
pub struct Ssh {
    addr: SocketAddr,
    args: Vec<String>,
    user: String,
}

impl Ssh {
    /// `ssh` to `git@addr`, with nothing from `~/.ssh` or an agent.
    pub fn new(addr: SocketAddr) -> Self {
        let args = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=20",
        ];
        Self {
            addr,
            args: args.iter().map(|s| s.to_string()).collect(),
            user: "git".into(),
        }
    }

    /// Adds an option such as `-c aes128-ctr` (each word one argument).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Replaces the default `ConnectTimeout` (20 s), which also bounds the
    /// banner exchange: a connection that admission control makes wait,
    /// unread, on a loaded machine needs longer (OpenSSH takes the first
    /// value of an option, so a second `-o ConnectTimeout` would be ignored).
    pub fn connect_timeout(mut self, secs: u32) -> Self {
        for a in &mut self.args {
            if a.starts_with("ConnectTimeout=") {
                *a = format!("ConnectTimeout={secs}");
            }
        }
        self
    }

    /// Adds `-o NAME=VALUE`.
    pub fn option(self, option: &str) -> Self {
        self.arg("-o").arg(option)
    }

    /// Uses this private key.
    pub fn key(self, path: &Path) -> Self {
        let p = path.to_str().unwrap().to_owned();
        self.arg("-i").arg(&p)
    }

    /// The command line, for `GIT_SSH_COMMAND`.
    pub fn git_ssh_command(&self) -> String {
        let mut words = vec!["ssh".to_owned(), "-p".into(), self.addr.port().to_string()];
        words.extend(self.args.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }

    /// The remote URL of repository `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://{}@{}:{}/{name}.git",
            self.user,
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// A `Command` running ssh with `remote` as the remote command (none
    /// when empty).
    pub fn command(&self, remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-p").arg(self.addr.port().to_string());
        cmd.args(&self.args);
        cmd.arg(format!("{}@{}", self.user, self.addr.ip()));
        cmd.args(remote);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs ssh to completion with a time limit.
    pub fn run(&self, remote: &[&str]) -> Output {
        run_with_timeout(self.command(remote), Duration::from_secs(60))
    }
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Variables of the test's own environment that would change what the
/// server reads (its log filter, API mode's key, the original's port and
/// host key): removed from every server a test starts.
pub const SERVER_ENV_REMOVED: [&str; 4] = [
    "RUST_LOG",
    "APISERVER_KEY",
    "GITMOUTH_PORT",
    "GITMOUTH_PRIVATE_KEY",
];

/// The server binary run in `dir`, with a data directory of its own
/// (`dir/data`), `--listen 127.0.0.1:0`, no colour and none of
/// [`SERVER_ENV_REMOVED`]: for tests of what a start refuses (run it with
/// [`run_with_timeout`]); [`Server::start_with`] starts one that serves.
pub fn server_command(runtime: Runtime, dir: &Path) -> Command {
    let mut cmd = bare_server_command(runtime);
    cmd.current_dir(dir)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"));
    cmd
}

/// The server binary with no colour and none of [`SERVER_ENV_REMOVED`],
/// and no argument yet: what every server a test runs starts from.
fn bare_server_command(runtime: Runtime) -> Command {
    let mut cmd = Command::new(runtime.binary());
    cmd.env("NO_COLOR", "1");
    for var in SERVER_ENV_REMOVED {
        cmd.env_remove(var);
    }
    cmd
}

/// Whether `ssh`'s stderr says the server ended the connection without a
/// word, as it does for a source it refuses before the version exchange.
/// ssh words it after what it was doing: reading ("Connection closed",
/// "closed by remote host", "Connection reset") or still writing its own
/// version line ("Broken pipe", seen through a `ProxyCommand`).
pub fn closed_without_a_word(stderr: &str) -> bool {
    [
        "Connection closed",
        "closed by remote host",
        "Connection reset",
        "Broken pipe",
    ]
    .iter()
    .any(|sign| stderr.contains(sign))
}

/// Runs `cmd`, killing it after `timeout` (a hang fails the test rather
/// than the suite).
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    run_killing(cmd, timeout, |id| {
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    })
}

/// Generates a user key with the real `ssh-keygen` (`kind` as `-t`, e.g.
/// "ed25519", "ecdsa", "rsa"), returning the private key's path.
pub fn keygen(dir: &Path, kind: &str, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-t", kind, "-C", comment, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Text of a process's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Text of a process's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates a user key of `bits` bits (`-b`), e.g. ECDSA 384 or 521.
pub fn keygen_bits(dir: &Path, kind: &str, bits: u32, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-N",
            "",
            "-t",
            kind,
            "-b",
            &bits.to_string(),
            "-C",
            comment,
            "-f",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The `.pub` file next to a private key made by [`keygen`].
pub fn public_key(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `file` as an authorized_keys file holding the public halves of
/// `private_keys` (each `.pub` line keeps its comment, the user's name).
/// The file is replaced by a rename, as editors and config tools do, so a
/// reader never sees half of it.
pub fn write_authorized_keys(file: &Path, private_keys: &[&Path]) {
    let mut text = String::new();
    for key in private_keys {
        text.push_str(std::fs::read_to_string(public_key(key)).unwrap().trim_end());
        text.push('\n');
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let tmp = file.with_extension("tmp-new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// Variables that keep git away from the machine's and the user's
/// configuration and make its commits reproducible. `home` becomes `HOME`.
pub fn git_isolation_env(home: &Path) -> Vec<(String, String)> {
    let home = home.to_str().unwrap();
    [
        ("HOME", home.to_owned()),
        ("XDG_CONFIG_HOME", format!("{home}/.config")),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_AUTHOR_NAME", "A U Thor".into()),
        ("GIT_AUTHOR_EMAIL", "author@example.test".into()),
        ("GIT_COMMITTER_NAME", "C O Mitter".into()),
        ("GIT_COMMITTER_EMAIL", "committer@example.test".into()),
        ("GIT_AUTHOR_DATE", "1700000000 +0000".into()),
        ("GIT_COMMITTER_DATE", "1700000000 +0000".into()),
        ("LC_ALL", "C".into()),
        ("LANG", "C".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Variables of the test's own environment that would point git elsewhere.
const GIT_ENV_CLEAR: [&str; 9] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_SSH",
    "GIT_PROTOCOL",
];

impl ServerOptions {
    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts the server with [`git_isolation_env`] of `home` (of which
    /// the server passes its git only `HOME`).
    pub fn git_home(mut self, home: &Path) -> Self {
        std::fs::create_dir_all(home).unwrap();
        self.env.extend(git_isolation_env(home));
        self
    }

    /// Uses this data directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }
}

/// The real `git`, isolated from the machine's configuration, reaching the
/// server through `GIT_SSH_COMMAND`.
#[derive(Clone)]
pub struct Git {
    home: PathBuf,
    ssh_command: Option<String>,
    env: Vec<(String, String)>,
    /// How long one git command may take.
    pub timeout: Duration,
}

impl Git {
    /// git with `home` as `HOME` (created if missing).
    pub fn new(home: &Path) -> Self {
        std::fs::create_dir_all(home).unwrap();
        Self {
            home: home.to_path_buf(),
            ssh_command: None,
            env: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Reaches remotes with this ssh command.
    pub fn ssh(mut self, ssh: &Ssh) -> Self {
        self.ssh_command = Some(ssh.git_ssh_command());
        self
    }

    /// Sets an extra environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// A `git` command in `cwd`, in its own process group (so a timeout can
    /// kill git with its ssh), stdin from /dev/null.
    pub fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(cwd).stdin(Stdio::null());
        for name in GIT_ENV_CLEAR {
            cmd.env_remove(name);
        }
        cmd.envs(git_isolation_env(&self.home));
        if let Some(ssh) = &self.ssh_command {
            cmd.env("GIT_SSH_COMMAND", ssh);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.process_group(0);
        cmd
    }

    /// Runs git to completion within [`Git::timeout`].
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        run_group_with_timeout(self.command(cwd, args), self.timeout)
    }

    /// Runs git, which must succeed; returns its stdout.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        assert!(
            out.status.success(),
            "git {args:?} in {} failed ({}):\n{}{}",
            cwd.display(),
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs git, which must fail; returns its output.
    pub fn fails(&self, cwd: &Path, args: &[&str]) -> Output {
        let out = self.run(cwd, args);
        assert!(
            !out.status.success(),
            "git {args:?} in {} should have failed:\n{}{}",
            cwd.display(),
            stdout(&out),
            stderr(&out)
        );
        out
    }
}

/// Like [`run_with_timeout`] for a command started in its own process group
/// (`process_group(0)`): a timeout kills the whole group.
pub fn run_group_with_timeout(cmd: Command, timeout: Duration) -> Output {
    run_killing(cmd, timeout, |id| kill_group(id, "KILL"))
}

/// Runs `cmd` to its end, or calls `kill` with its pid after `timeout`
/// and fails the test.
fn run_killing(mut cmd: Command, timeout: Duration, kill: impl FnOnce(u32)) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            kill(id);
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// Sends `signal` (a name such as "KILL" or "HUP") to process `pid`.
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// Sends `signal` to every process of group `pgid`.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .status();
}

/// Makes `hooks/pre-receive` of the bare repository `repo` hold each push
/// until `dir/go` exists, saying so by creating `dir/started`: a push in
/// flight, held for as long as a test needs.
pub fn hold_pushes(repo: &Path, dir: &Path) {
    let hook = repo.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho started > '{d}/started'\nwhile [ ! -e '{d}/go' ]; do sleep 0.05; done\nexit 0\n",
            d = dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its id.
    pub pid: u32,
    /// Its parent's id.
    pub ppid: u32,
    /// Its state letter (`Z` for a zombie).
    pub state: char,
    /// Its command line, arguments joined by spaces (the short name in
    /// brackets when it has none, as for a zombie).
    pub cmdline: String,
    /// Its working directory, when readable.
    pub cwd: Option<PathBuf>,
}

/// Every process visible in `/proc`.
pub fn processes() -> Vec<Process> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // The process may be gone between listing and reading.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmdline = if raw.is_empty() {
            format!("[{comm}]")
        } else {
            String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .replace('\0', " ")
        };
        let cwd = std::fs::read_link(dir.join("cwd")).ok();
        all.push(Process {
            pid,
            ppid,
            state,
            cmdline,
            cwd,
        });
    }
    all
}

/// Every descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<Process> {
    let all = processes();
    let mut found: Vec<Process> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            if !found.iter().any(|f| f.pid == p.pid) {
                parents.push(p.pid);
                found.push(p.clone());
            }
        }
    }
    found
}

/// Processes working in `dir` or naming it on their command line (a git
/// the server started, even one whose parent died and left it to init).
pub fn processes_using(dir: &Path) -> Vec<Process> {
    let name = dir.to_str().unwrap();
    processes()
        .into_iter()
        .filter(|p| p.pid != std::process::id())
        .filter(|p| p.cwd.as_ref().is_some_and(|c| c.starts_with(dir)) || p.cmdline.contains(name))
        .collect()
}

/// `len` bytes of a xorshift64* stream from `seed`: incompressible and the
/// same on every run.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // A splitmix64 step spreads the seed, so neighbouring seeds give
    // unrelated streams; xorshift needs a non-zero state.
    let mut state = {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) | 1
    };
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The session id of a ` ! (session <8 hex>)` line in `text`, if any.
pub fn session_id(text: &str) -> Option<String> {
    text.split(" ! (session ").skip(1).find_map(|rest| {
        let id = rest.get(..8)?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && rest[8..].starts_with(")\n"))
            .then(|| id.to_owned())
    })
}

/// Starts a server for git tests: its data directory is `scratch/data`,
/// its `authorized_keys` holds the public halves of `keys`, and its git
/// runs isolated from the machine's configuration (`HOME` is
/// `scratch/server-home`).
pub fn start_git_server(
    runtime: Runtime,
    scratch: &Path,
    keys: &[&Path],
    options: ServerOptions,
) -> Server {
    let data = scratch.join("data");
    write_authorized_keys(&data.join("authorized_keys"), keys);
    Server::start_with(
        runtime,
        options
            .data_dir(&data)
            .git_home(&scratch.join("server-home")),
    )
}

/// The instant the in-memory pairs' virtual clocks start from
/// (`gitmouth_core::test_util::Pair::new`): the core reads no clock, so
/// the tests read it once for it. Only differences from it matter.
pub fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// A TCP connection to `to` from the address `from` (another 127.0.0.N
/// stands for another source): what `ssh -o BindAddress` does.
pub fn tcp_from(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let family = if from.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket(family, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::new(from, 0))?;
    rustix::net::connect(&fd, &to)?;
    Ok(std::net::TcpStream::from(fd))
}

/// `GET path` on the metrics listener: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// The value of the sample `series` (`name` or `name{labels}`, exactly as
/// the text format writes it) in a `/metrics` body; 0 when absent.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
