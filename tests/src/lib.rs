//! Test harness for gitmouth: start the real server binary on loopback, run
//! the real `ssh` and `git` against it, and read what happened.
//!
//! Every end-to-end test is written once and runs against each runtime
//! ([`Runtime::ALL`]).

#![allow(clippy::unwrap_used, missing_docs)]

pub mod pair;
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
    /// up to date), so `cargo test -p gitmouth-tests` alone works too.
    pub fn binary(self) -> PathBuf {
        static BUILD: Once = Once::new();
        let target = target_dir();
        BUILD.call_once(|| {
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
            for r in [Runtime::Smol, Runtime::AsyncStd] {
                cmd.args(["-p", r.package()]);
            }
            if profile_dir(&target).ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the server binaries failed"
            );
        });
        profile_dir(&target).join(self.bin())
    }
}

/// `target/` of the running test binary (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn profile_dir(target: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    target.join(profile.file_name().unwrap())
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
        let mut cmd = Command::new(runtime.binary());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir);
        cmd.args(&options.args);
        cmd.current_dir(options.cwd.as_deref().unwrap_or(dir.path()));
        cmd.env_remove("RUST_LOG")
            .env_remove("APISERVER_KEY")
            .env_remove("GITMOUTH_PORT");
        cmd.env_remove("GITMOUTH_PRIVATE_KEY");
        cmd.env("RUST_LOG", "debug,polling=info,async_io=info");
        cmd.env("NO_COLOR", "1");
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
                if let Some(addr) = line.split("listening address=").nth(1)
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

/// Runs `cmd`, killing it after `timeout` (a hang fails the test rather
/// than the suite).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
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
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
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
