//! The load test of admission control: real users cloning and pushing with
//! the real `git` over the real OpenSSH `ssh`, from many loopback
//! addresses at once, while a crowd holds unauthenticated connections open
//! and one more address fails authentication in a loop, against the server
//! at its defaults. Every real user's operation must succeed.
//!
//! Addresses (Linux loopback accepts any source in 127.0.0.0/8, and each
//! address is a source of its own for admission):
//!
//! - real users: `127.0.1.1`, `127.0.1.2`, ... (one worker each, its own key);
//! - holders of unauthenticated connections: `127.0.2.1`, `127.0.2.2`, ...;
//! - the attacker: `127.0.3.1`.
//!
//! [`run`] is used by the `gitmouth-load` binary (the full run,
//! [`LoadConfig::full`]) and by `tests/tests/load.rs` (the short one,
//! [`LoadConfig::short`]). Everything is bounded: the number of operations,
//! each operation's time, the whole run's time ([`LoadConfig::time_limit`]);
//! the server is stopped by its process id and the scratch directory removed
//! at the end, on failure too (both by `Drop`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    Git, Runtime, Server, ServerOptions, Ssh, keygen, kill_group, pseudo_random_bytes, tcp_from,
    wait_until, write_authorized_keys,
};

/// The size and limits of a run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server binary's runtime.
    pub runtime: Runtime,
    /// Real users, one address and one key each, working at once.
    pub users: u8,
    /// Clones each user makes, of the users' repositories in turn.
    pub clones_per_user: usize,
    /// Addresses holding unauthenticated connections.
    pub holder_addresses: u8,
    /// Unauthenticated connections each holder address keeps open.
    pub held_per_address: usize,
    /// Whether one more address fails authentication in a loop.
    pub attacker: bool,
    /// The most one git command may take before it counts as an error.
    pub op_timeout: Duration,
    /// The most the whole run may take, setup included (building the
    /// server is not); operations not started by then count as errors.
    pub time_limit: Duration,
    /// Print progress lines while running.
    pub progress: bool,
}

impl LoadConfig {
    /// The load test of the issue: 200 clones and 20 pushes from 20
    /// addresses, under 500 unauthenticated connections held from 50
    /// other addresses, and one attacker.
    pub fn full(runtime: Runtime) -> Self {
        Self {
            runtime,
            users: 20,
            clones_per_user: 10,
            holder_addresses: 50,
            held_per_address: 10,
            attacker: true,
            op_timeout: Duration::from_secs(120),
            time_limit: Duration::from_secs(600),
            progress: true,
        }
    }

    /// The short version for the test suite: 40 clones and 8 pushes from 8
    /// addresses under 100 held connections from 10 addresses, and the
    /// attacker. Its limits are generous: a loaded CI machine is slow.
    pub fn short(runtime: Runtime) -> Self {
        Self {
            runtime,
            users: 8,
            clones_per_user: 5,
            holder_addresses: 10,
            held_per_address: 10,
            attacker: true,
            op_timeout: Duration::from_secs(120),
            time_limit: Duration::from_secs(300),
            progress: false,
        }
    }
}

/// The address of real user `i` (from 0).
fn user_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i + 1)
}

/// The address of holder `i` (from 0).
fn holder_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 2, i + 1)
}

/// The attacker's address.
const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);

/// Who an address in the server's log belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    User,
    Holder,
    Attacker,
    Other,
}

fn group_of(ip: Ipv4Addr) -> Group {
    match ip.octets() {
        [127, 0, 1, _] => Group::User,
        [127, 0, 2, _] => Group::Holder,
        _ if ip == ATTACKER_IP => Group::Attacker,
        _ => Group::Other,
    }
}

/// What a real user does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    /// `git clone` of one of the users' repositories.
    Clone,
    /// `git push` creating a repository (push-to-create).
    PushCreate,
    /// `git push` of a new commit to an existing repository.
    PushUpdate,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Clone => "clone",
            OpKind::PushCreate => "push (create)",
            OpKind::PushUpdate => "push (update)",
        })
    }
}

/// One real user's git command and how it went.
#[derive(Debug, Clone)]
pub struct Op {
    /// What it was.
    pub kind: OpKind,
    /// The user's number (from 0).
    pub user: u8,
    /// The repository.
    pub repo: String,
    /// From spawning git to its exit.
    pub took: Duration,
    /// Its error's kind (the telling stderr line, numbers as `N`), if it failed.
    pub error: Option<String>,
    /// Its whole stderr, if it failed.
    pub stderr: String,
}

/// What the holders of unauthenticated connections saw.
#[derive(Debug, Default)]
pub struct HolderStats {
    /// Connections opened (TCP connected, version line sent).
    pub opened: AtomicU64,
    /// Of them, answered with the server's version line (let in as startups).
    pub answered: AtomicU64,
    /// Ended with "too many connections": evicted for a newcomer.
    pub evicted: AtomicU64,
    /// Ended with "login grace time exceeded".
    pub grace: AtomicU64,
    /// Closed by the server with nothing sent: refused (penalised), or
    /// waited unread until the login grace time ran out.
    pub closed_unread: AtomicU64,
    /// Closed by the server otherwise (its version sent, no disconnect).
    pub closed_other: AtomicU64,
    /// Connection attempts that failed locally (connect errors).
    pub connect_errors: AtomicU64,
    /// Open now.
    pub open: AtomicUsize,
    /// Open now and answered: holding a startup, not waiting unread.
    pub startups: AtomicUsize,
}

/// What the attacker saw.
#[derive(Debug, Default)]
pub struct AttackerStats {
    /// `ssh` runs with the unregistered key.
    pub attempts: AtomicU64,
    /// Reached authentication and were refused (`Permission denied`): each
    /// adds to the address's penalty.
    pub auth_failed: AtomicU64,
    /// Closed before the handshake: refused at once, the address penalised.
    pub refused: AtomicU64,
    /// Ended with "too many connections".
    pub evicted: AtomicU64,
    /// Ended otherwise (kinds in [`AttackerStats::other_kinds`]).
    pub other: AtomicU64,
    /// The stderr kinds of the attempts that ended otherwise.
    pub other_kinds: Mutex<BTreeMap<String, u64>>,
}

/// Server log lines, by the group of the address they name.
#[derive(Debug, Default)]
pub struct LogCounts {
    /// `connection refused` lines, by group and reason.
    pub refused: BTreeMap<(String, String), u64>,
    /// Startups ended for a newcomer ("making way ..."), by group.
    pub evicted: BTreeMap<String, u64>,
    /// Login grace time exceeded while holding a startup, by group.
    pub grace: BTreeMap<String, u64>,
    /// Login grace time exceeded while waiting unread, by group.
    pub grace_waiting: BTreeMap<String, u64>,
    /// Per-user cap reached (should be none).
    pub user_cap: u64,
    /// Warnings and errors the server logged.
    pub warnings: Vec<String>,
}

/// Everything a run measured.
pub struct Report {
    /// The run's size.
    pub config: LoadConfig,
    /// The server command line, as run.
    pub server_command: String,
    /// The open-files limit (soft, hard) the run had.
    pub nofile: (Option<u64>, Option<u64>),
    /// How long setting up the repositories took.
    pub setup: Duration,
    /// Held connections open when the users started, and how many of
    /// those the server had answered.
    pub held_at_start: (usize, usize),
    /// Whether every held connection was open at once before the users
    /// started.
    pub held_all_open: bool,
    /// The held connections while the users worked.
    pub held_during: Sampled,
    /// Every real user's operation.
    pub ops: Vec<Op>,
    /// From the users' start to the last one's end.
    pub users_took: Duration,
    /// The holders' view.
    pub holders: Arc<HolderStats>,
    /// The attacker's view.
    pub attacker: Arc<AttackerStats>,
    /// The server's view.
    pub log: LogCounts,
    /// How the server ended on SIGTERM (exit status, time), or why not.
    pub server_exit: String,
    /// The whole run's time (the server's build not included).
    pub total: Duration,
}

impl Report {
    /// Real users' failed operations.
    pub fn errors(&self) -> Vec<&Op> {
        self.ops.iter().filter(|op| op.error.is_some()).collect()
    }

    /// Whether every real user's operation succeeded.
    pub fn passed(&self) -> bool {
        self.errors().is_empty() && self.ops.len() == self.expected_ops()
    }

    fn expected_ops(&self) -> usize {
        usize::from(self.config.users) * (self.config.clones_per_user + 1)
    }
}

/// Raises the open-files limit to its hard limit (the run holds hundreds
/// of sockets, and so does the server, which inherits it); returns the
/// limits then in force.
pub fn raise_nofile() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Not fatal: the run reports the limit it had.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let now = getrlimit(Resource::Nofile);
    (now.current, now.maximum)
}

/// Runs the load test. `Err` only when the run could not be set up (no
/// server, no repositories); the report says whether real users failed.
pub fn run(config: &LoadConfig) -> Result<Report, String> {
    // Built (if need be) before the clock starts: a first release build
    // takes minutes, which are not the run's.
    if config.progress {
        eprintln!("building the server binary if needed (cargo build)");
    }
    let binary = config.runtime.binary();
    let started = Instant::now();
    let deadline = started + config.time_limit;
    let progress = |text: &str| {
        if config.progress {
            eprintln!("[{:6.1} s] {text}", started.elapsed().as_secs_f64());
        }
    };
    let nofile = raise_nofile();
    let scratch = tempfile::Builder::new()
        .prefix("gitmouth-load-")
        .tempdir()
        .map_err(|e| format!("scratch directory: {e}"))?;
    let dir = scratch.path();
    let keys: Vec<PathBuf> = (0..config.users)
        .map(|i| {
            keygen(
                dir,
                "ed25519",
                &format!("key-user{i:02}"),
                &format!("user{i:02}"),
            )
        })
        .collect();
    let attacker_key = keygen(dir, "ed25519", "attacker", "attacker");
    let data = dir.join("data");
    let key_refs: Vec<&Path> = keys.iter().map(PathBuf::as_path).collect();
    write_authorized_keys(&data.join("authorized_keys"), &key_refs);

    // The server at its defaults: only where it listens and keeps its
    // data (the host key is generated there, authorized_keys read from
    // there) is set. Admission applies to loopback: nothing is exempt.
    let server_command = format!(
        "{} --listen 127.0.0.1:0 --data-dir {} (host key generated in the data directory, \
         {} users' keys in its authorized_keys; every other setting at its default, \
         log level info)",
        binary.display(),
        data.display(),
        config.users
    );
    progress(&format!("starting {server_command}"));
    let mut server = Server::start_with(
        config.runtime,
        ServerOptions {
            strict_admission: true,
            // Each refusal is a DEBUG line (INFO has one per source and minute).
            env: vec![("RUST_LOG".into(), "info,gitmouth_io::server=debug".into())],
            ..ServerOptions::default()
        }
        .data_dir(&data)
        .git_home(&dir.join("server-home")),
    );

    let users: Vec<User> = (0..config.users)
        .map(|i| User::new(&server, dir, i, &keys[usize::from(i)], config))
        .collect();
    progress(&format!(
        "setup: pushing {} repositories, one from each user's address",
        users.len()
    ));
    let setup_started = Instant::now();
    thread::scope(|s| {
        let handles: Vec<_> = users.iter().map(|u| s.spawn(|| u.seed())).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("setup panicked".into())))
            .collect::<Result<Vec<()>, String>>()
    })?;
    let setup = setup_started.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    // However this function ends, the holders and the attacker stop.
    let _stop_on_return = StopOnDrop(stop.clone());
    let users_done = Arc::new(AtomicBool::new(false));
    let holders = Arc::new(HolderStats::default());
    let held_total = usize::from(config.holder_addresses) * config.held_per_address;
    progress(&format!(
        "holding {held_total} unauthenticated connections from {} addresses",
        config.holder_addresses
    ));
    let mut threads = Vec::new();
    for a in 0..config.holder_addresses {
        for _ in 0..config.held_per_address {
            let (stats, stop, to) = (holders.clone(), stop.clone(), server.addr);
            threads.push(
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || hold(holder_ip(a), to, &stats, &stop))
                    .map_err(|e| format!("holder thread: {e}"))?,
            );
        }
    }
    // The pressure is on once every holder has its connection open.
    let held_all_open = wait_until(Duration::from_secs(60), || {
        holders.open.load(Ordering::SeqCst) >= held_total
    });
    let held_at_start = (
        holders.open.load(Ordering::SeqCst),
        holders.startups.load(Ordering::SeqCst),
    );
    let attacker = Arc::new(AttackerStats::default());
    if config.attacker {
        progress("the attacker starts failing authentication in a loop");
        let (stats, stop) = (attacker.clone(), stop.clone());
        let ssh = server
            .ssh()
            .key(&attacker_key)
            .option(&format!("BindAddress={ATTACKER_IP}"))
            .arg("-T");
        threads.push(
            thread::Builder::new()
                .spawn(move || attack(&ssh, &stats, &stop))
                .map_err(|e| format!("attacker thread: {e}"))?,
        );
        // Users start under an attacker already at work.
        wait_until(Duration::from_secs(60), || {
            attacker.attempts.load(Ordering::SeqCst) >= 2
        });
    }

    progress(&format!(
        "{} users start: {} clones and 1 push each ({} open held connections, {} answered by the server)",
        users.len(),
        config.clones_per_user,
        held_at_start.0,
        held_at_start.1
    ));
    let users_started = Instant::now();
    let sampler = {
        let (holders, stop) = (holders.clone(), users_done.clone());
        thread::spawn(move || sample(&holders, &stop))
    };
    let done = AtomicUsize::new(0);
    let user_count = users.len();
    let ops: Vec<Op> = thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .map(|u| {
                let done = &done;
                let progress = &progress;
                s.spawn(move || {
                    let ops = u.work(deadline);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let failed = ops.iter().filter(|o| o.error.is_some()).count();
                    progress(&format!(
                        "user {} ({}) done: {} operations, {failed} failed ({n} of {} users done)",
                        u.index,
                        user_ip(u.index),
                        ops.len(),
                        user_count
                    ));
                    ops
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let users_took = users_started.elapsed();
    users_done.store(true, Ordering::SeqCst);
    let held_during = sampler.join().unwrap_or_default();

    if config.attacker {
        // The report shows the attacker's penalty at work: in a short run
        // the users may finish before its failures add up to a refusal.
        wait_until(Duration::from_secs(60), || {
            attacker.refused.load(Ordering::SeqCst) >= 1
        });
    }
    progress("stopping the holders and the attacker");
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    // The server's account of the run, then its end.
    let log = count_log(&server.log());
    let stopping = Instant::now();
    let server_exit = match server.terminate(Duration::from_secs(60)) {
        Some(status) => format!("{status} after SIGTERM, in {:.1?}", stopping.elapsed()),
        None => "still running 60 s after SIGTERM: killed".into(),
    };
    drop(server);
    drop(scratch);
    Ok(Report {
        config: config.clone(),
        server_command,
        nofile,
        setup,
        held_at_start,
        held_all_open,
        held_during,
        ops,
        users_took,
        holders,
        attacker,
        log,
        server_exit,
        total: started.elapsed(),
    })
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One real user: an address, a key, a repository of its own.
struct User {
    index: u8,
    git: Git,
    ssh: Ssh,
    home: PathBuf,
    clones: usize,
    users: u8,
    op_timeout: Duration,
}

/// The repository user `i` seeds; clones go to all of them in turn.
fn repo_name(i: u8) -> String {
    format!("repo-{i:02}")
}

impl User {
    fn new(server: &Server, dir: &Path, index: u8, key: &Path, config: &LoadConfig) -> Self {
        let home = dir.join(format!("user{index:02}"));
        let ssh = server
            .ssh()
            .key(key)
            // A real client waits as long as the server's login grace time
            // (OpenSSH sets no ConnectTimeout by default): a loaded machine
            // must not turn a wait in admission's queue into an error.
            .connect_timeout(110)
            .option(&format!("BindAddress={}", user_ip(index)));
        Self {
            index,
            git: Git::new(&home).ssh(&ssh),
            ssh,
            home,
            clones: config.clones_per_user,
            users: config.users,
            op_timeout: config.op_timeout,
        }
    }

    fn src(&self) -> PathBuf {
        self.home.join("src")
    }

    /// A local git command that must succeed (setup).
    fn local(&self, args: &[&str]) -> Result<(), String> {
        match run_bounded(self.git.command(&self.src(), args), Duration::from_secs(60)) {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "user {}: git {args:?}: {}",
                self.index,
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("user {}: git {args:?}: {e}", self.index)),
        }
    }

    /// Makes the user's repository (three commits, 64 KiB of data) and
    /// pushes it to the server, creating it there.
    fn seed(&self) -> Result<(), String> {
        let src = self.src();
        std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        self.local(&["init", "-q", "-b", "main"])?;
        for round in 0..3u64 {
            let name = format!("load test repository {}, round {round}\n", self.index);
            std::fs::write(src.join("README"), name).map_err(|e| e.to_string())?;
            let data = pseudo_random_bytes(u64::from(self.index) * 16 + round, 64 * 1024);
            std::fs::write(src.join("data.bin"), data).map_err(|e| e.to_string())?;
            self.local(&["add", "-A"])?;
            self.local(&["commit", "-q", "-m", &format!("round {round}")])?;
        }
        let url = self.ssh.url(&repo_name(self.index));
        self.local(&["push", "-q", &url, "main"])
    }

    /// The user's operations, one after another: `clones` clones of the
    /// repositories in turn, and one push placed among them (a different
    /// place for each user, so that pushes happen all through the run).
    /// Users with an even number push to create a repository, the others
    /// push a new commit to their own.
    fn work(&self, deadline: Instant) -> Vec<Op> {
        let push_at = usize::from(self.index) % (self.clones + 1);
        let mut ops = Vec::new();
        let mut clone = 0;
        for step in 0..=self.clones {
            let op = if step == push_at {
                self.push(deadline)
            } else {
                let repo =
                    repo_name(((usize::from(self.index) + clone) % usize::from(self.users)) as u8);
                clone += 1;
                self.clone_of(&repo, clone, deadline)
            };
            ops.push(op);
        }
        ops
    }

    fn push(&self, deadline: Instant) -> Op {
        let (kind, repo) = if self.index.is_multiple_of(2) {
            (OpKind::PushCreate, format!("new-{:02}", self.index))
        } else {
            (OpKind::PushUpdate, repo_name(self.index))
        };
        if kind == OpKind::PushUpdate {
            let commit = std::fs::write(self.src().join("README"), "pushed under load\n")
                .map_err(|e| e.to_string())
                .and_then(|()| self.local(&["commit", "-q", "-a", "-m", "under load"]));
            if let Err(e) = commit {
                return self.failed(kind, &repo, Duration::ZERO, format!("local commit: {e}"));
            }
        }
        let url = self.ssh.url(&repo);
        let src = self.src();
        self.measure(
            kind,
            &repo,
            deadline,
            &src,
            &["push", "-q", &url, "main"],
            |_| Ok(()),
        )
    }

    fn clone_of(&self, repo: &str, n: usize, deadline: Instant) -> Op {
        let into = self.home.join(format!("clone-{n}"));
        let into_arg = into.to_string_lossy().into_owned();
        let url = self.ssh.url(repo);
        let op = self.measure(
            OpKind::Clone,
            repo,
            deadline,
            &self.home,
            &["clone", "-q", &url, &into_arg],
            |_| {
                // A clone that exits 0 must have checked out the files.
                if into.join("README").is_file() && into.join("data.bin").is_file() {
                    Ok(())
                } else {
                    Err("clone exited 0 without the repository's files".into())
                }
            },
        );
        let _ = std::fs::remove_dir_all(&into);
        op
    }

    /// Runs one git command against the server, timing it.
    fn measure(
        &self,
        kind: OpKind,
        repo: &str,
        deadline: Instant,
        cwd: &Path,
        args: &[&str],
        check: impl FnOnce(&Output) -> Result<(), String>,
    ) -> Op {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return self.failed(kind, repo, Duration::ZERO, "not run: time limit".into());
        }
        let limit = self.op_timeout.min(left);
        let start = Instant::now();
        let result = run_bounded(self.git.command(cwd, args), limit);
        let took = start.elapsed();
        match result {
            Ok(out) if out.status.success() => match check(&out) {
                Ok(()) => Op {
                    kind,
                    user: self.index,
                    repo: repo.into(),
                    took,
                    error: None,
                    stderr: String::new(),
                },
                Err(e) => self.failed(kind, repo, took, e),
            },
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr).into_owned();
                let mut op = self.failed(kind, repo, took, error_kind(&text, &out));
                op.stderr = text;
                op
            }
            Err(e) => self.failed(kind, repo, took, e),
        }
    }

    fn failed(&self, kind: OpKind, repo: &str, took: Duration, error: String) -> Op {
        Op {
            kind,
            user: self.index,
            repo: repo.into(),
            took,
            error: Some(error),
            stderr: String::new(),
        }
    }
}

/// The held connections open, and the startups among them, sampled every
/// 100 ms while the users work: (min, mean, max) of each.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sampled {
    /// Held connections open.
    pub open: (usize, usize, usize),
    /// Held connections the server answered (holding a startup).
    pub startups: (usize, usize, usize),
}

fn sample(holders: &HolderStats, until: &AtomicBool) -> Sampled {
    let mut open = Vec::new();
    let mut startups = Vec::new();
    while !until.load(Ordering::SeqCst) {
        open.push(holders.open.load(Ordering::SeqCst));
        startups.push(holders.startups.load(Ordering::SeqCst));
        // A gauge read at a steady pace; nothing waits on it.
        thread::sleep(Duration::from_millis(100));
    }
    let stats = |v: &[usize]| {
        let min = v.iter().copied().min().unwrap_or(0);
        let max = v.iter().copied().max().unwrap_or(0);
        let mean = v.iter().sum::<usize>() / v.len().max(1);
        (min, mean, max)
    };
    Sampled {
        open: stats(&open),
        startups: stats(&startups),
    }
}

/// Runs `cmd` (started in its own process group) to its end, or kills the
/// group after `limit`: `Err` says which.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| format!("wait: {e}")),
        Err(_) => {
            kill_group(id, "KILL");
            let _ = rx.recv();
            Err(format!("timed out after {} s (killed)", limit.as_secs()))
        }
    }
}

/// The kind of a failed command's error: its most telling stderr line,
/// with numbers (ports, counts, ids) as `N`, so equal errors count together.
fn error_kind(stderr: &str, out: &Output) -> String {
    const TELLING: [&str; 10] = [
        "kex_exchange_identification",
        "banner exchange",
        "Connection closed",
        "Connection reset",
        "Connection refused",
        "Received disconnect",
        "Permission denied",
        " ! ",
        "fatal:",
        "error:",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Warning: Permanently added"))
        .collect();
    let line = TELLING
        .iter()
        .find_map(|t| lines.iter().find(|l| l.contains(t)))
        .or(lines.first())
        .copied();
    match line {
        Some(line) => {
            let mut kind = String::new();
            let mut in_number = false;
            for c in line.trim().chars().take(120) {
                if c.is_ascii_digit() {
                    if !in_number {
                        kind.push('N');
                    }
                    in_number = true;
                } else {
                    in_number = false;
                    kind.push(c);
                }
            }
            kind
        }
        None => format!("{}, nothing on stderr", out.status),
    }
}

/// One held connection slot: connects from `from`, sends a version line and
/// nothing more, and waits; when the server ends it (login grace time,
/// eviction, a refusal), opens another, until `stop`.
fn hold(from: Ipv4Addr, to: SocketAddr, stats: &HolderStats, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut stream = match tcp_from(IpAddr::V4(from), to) {
            Ok(s) => s,
            Err(_) => {
                stats.connect_errors.fetch_add(1, Ordering::SeqCst);
                // Out of ports or descriptors: try again a little later.
                thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        // Wakes the reader now and then to look at `stop`.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
        let opened = Instant::now();
        if stream.write_all(b"SSH-2.0-LoadHolder_1.0\r\n").is_err() {
            stats.closed_unread.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        stats.opened.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        let ended = read_until_closed(&mut stream, stats, stop);
        stats.open.fetch_sub(1, Ordering::SeqCst);
        match ended {
            Ended::Stopped => break,
            Ended::Disconnect(text) if text.contains("too many connections") => {
                stats.evicted.fetch_add(1, Ordering::SeqCst);
            }
            Ended::Disconnect(text) if text.contains("login grace time") => {
                stats.grace.fetch_add(1, Ordering::SeqCst);
            }
            Ended::Disconnect(_) | Ended::Closed { answered: true } => {
                stats.closed_other.fetch_add(1, Ordering::SeqCst);
            }
            Ended::Closed { answered: false } => {
                stats.closed_unread.fetch_add(1, Ordering::SeqCst);
                if opened.elapsed() < Duration::from_secs(1) {
                    // Refused at once (the address is penalised): an
                    // attacker would retry at once, but the load test
                    // must not spend the machine's CPU on connect loops.
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

enum Ended {
    /// The run is over.
    Stopped,
    /// The server sent DISCONNECT with this description.
    Disconnect(String),
    /// The server closed the connection; `answered` if it had sent its
    /// version line.
    Closed { answered: bool },
}

/// Reads what the server sends (its version line, its KEXINIT, perhaps a
/// DISCONNECT: all in the clear, no key exchange having happened) until it
/// closes the connection or the run stops.
fn read_until_closed(stream: &mut TcpStream, stats: &HolderStats, stop: &AtomicBool) -> Ended {
    let mut got = Vec::new();
    let mut answered = false;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // The server's version, KEXINIT and DISCONNECT fit well
                // under 64 KiB; more would be a bug, not worth keeping.
                if got.len() < 64 * 1024 {
                    got.extend_from_slice(&buf[..n]);
                }
                if !answered && got.windows(2).any(|w| w == b"\r\n") {
                    answered = true;
                    stats.answered.fetch_add(1, Ordering::SeqCst);
                    stats.startups.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if answered {
        stats.startups.fetch_sub(1, Ordering::SeqCst);
    }
    if stop.load(Ordering::SeqCst) {
        return Ended::Stopped;
    }
    match disconnect_text(&got) {
        Some(text) => Ended::Disconnect(text),
        None => Ended::Closed { answered },
    }
}

/// The description of a DISCONNECT among the clear-text packets that
/// follow the server's version line in `got`, if there is one.
fn disconnect_text(got: &[u8]) -> Option<String> {
    let at = got.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut rest = &got[at..];
    while rest.len() >= 6 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let packet = rest.get(4..4 + len)?;
        let padding = usize::from(*packet.first()?);
        let payload = packet.get(1..len.checked_sub(padding)?)?;
        // SSH_MSG_DISCONNECT: reason code, then the description string.
        if payload.first() == Some(&1) && payload.len() >= 9 {
            let n = u32::from_be_bytes(payload[5..9].try_into().ok()?) as usize;
            let text = payload.get(9..9 + n)?;
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = &rest[4 + len..];
    }
    None
}

/// The attacker: the real `ssh` with a key the server does not know, in a
/// loop, until `stop`.
fn attack(ssh: &Ssh, stats: &AttackerStats, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        stats.attempts.fetch_add(1, Ordering::SeqCst);
        let mut cmd = ssh.command(&[]);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let text = match run_bounded(cmd, Duration::from_secs(60)) {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e,
        };
        if text.contains("Permission denied") {
            stats.auth_failed.fetch_add(1, Ordering::SeqCst);
        } else if text.contains("too many connections") {
            stats.evicted.fetch_add(1, Ordering::SeqCst);
        } else if text.contains("kex_exchange_identification")
            || text.contains("Connection closed by")
            || text.contains("Connection reset by")
        {
            stats.refused.fetch_add(1, Ordering::SeqCst);
        } else {
            stats.other.fetch_add(1, Ordering::SeqCst);
            let kind = error_kind(&text, &fake_output());
            *stats
                .other_kinds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(kind)
                .or_default() += 1;
        }
        // A real attacker would not pause; the pause keeps this one from
        // spending the machine's CPU on ssh processes, not the server's.
        thread::sleep(Duration::from_millis(100));
    }
}

fn fake_output() -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(0),
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

/// Counts the server log's admission lines by the group of the address
/// they name (`peer=ADDR:PORT`, in the line or its connection's span).
fn count_log(log: &str) -> LogCounts {
    let mut counts = LogCounts::default();
    for line in log.lines() {
        if line.contains(" WARN ") || line.contains(" ERROR ") {
            if counts.warnings.len() < 20 {
                counts.warnings.push(line.to_owned());
            }
            continue;
        }
        let group = match peer_of(line) {
            Some(ip) => format!("{:?}", group_of(ip)).to_lowercase(),
            None => continue,
        };
        if line.contains("connection refused") {
            let why = line
                .split("why=")
                .nth(1)
                .map(|w| w.trim().trim_matches('"').to_owned())
                .unwrap_or_default();
            *counts.refused.entry((group, why)).or_default() += 1;
        } else if line.contains("making way for a connection") {
            *counts.evicted.entry(group).or_default() += 1;
        } else if line.contains("login grace time exceeded while waiting") {
            *counts.grace_waiting.entry(group).or_default() += 1;
        } else if line.contains("login grace time exceeded") && !line.contains("connection closing")
        {
            *counts.grace.entry(group).or_default() += 1;
        } else if line.contains("too many connections for this user") {
            counts.user_cap += 1;
        }
    }
    counts
}

fn peer_of(line: &str) -> Option<Ipv4Addr> {
    let rest = line.split("peer=").nth(1)?;
    let addr = rest.split([':', ' ', '}']).next()?;
    addr.parse().ok()
}

/// `p` (0-100) percentile of sorted `v`, nearest rank.
fn percentile(v: &[Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let clones = usize::from(c.users) * c.clones_per_user;
        let held = usize::from(c.holder_addresses) * c.held_per_address;
        writeln!(
            f,
            "gitmouth load test: {clones} clones and {} pushes from {} addresses at once \
             (127.0.1.1-{}), under {held} unauthenticated connections held from {} addresses \
             (127.0.2.1-{}){}",
            c.users,
            c.users,
            c.users,
            c.holder_addresses,
            c.holder_addresses,
            if c.attacker {
                format!(" and an attacker failing authentication in a loop ({ATTACKER_IP})")
            } else {
                String::new()
            }
        )?;
        writeln!(f, "server: {}", self.server_command)?;
        let limit = |v: Option<u64>| v.map_or("unlimited".into(), |n| n.to_string());
        writeln!(
            f,
            "open files limit: {} (hard {}), for this run and the server",
            limit(self.nofile.0),
            limit(self.nofile.1)
        )?;
        writeln!(
            f,
            "setup: {} repositories pushed in {}",
            c.users,
            secs(self.setup)
        )?;
        writeln!(
            f,
            "at the users' start: {} held connections open, {} of them answered by the server \
             (startups), the rest waiting unread",
            self.held_at_start.0, self.held_at_start.1
        )?;
        let d = &self.held_during;
        writeln!(
            f,
            "while the users worked (min/mean/max): {}/{}/{} held connections open, \
             {}/{}/{} of them startups",
            d.open.0, d.open.1, d.open.2, d.startups.0, d.startups.1, d.startups.2
        )?;
        writeln!(f)?;
        let errors = self.errors();
        writeln!(
            f,
            "real users: {} operations of {} in {}, {} errors",
            self.ops.len(),
            self.expected_ops(),
            secs(self.users_took),
            errors.len()
        )?;
        let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for op in &self.ops {
            let kind = match op.kind {
                OpKind::Clone => "clone",
                _ => "push",
            };
            by_kind.entry(kind.into()).or_default().push(op.took);
            if op.kind != OpKind::Clone {
                by_kind
                    .entry(op.kind.to_string())
                    .or_default()
                    .push(op.took);
            }
        }
        writeln!(
            f,
            "  latency          count     p50      p90      p99      max"
        )?;
        for kind in ["clone", "push", "push (create)", "push (update)"] {
            let Some(v) = by_kind.get_mut(kind) else {
                continue;
            };
            v.sort();
            writeln!(
                f,
                "  {kind:<15} {:>6} {:>8} {:>8} {:>8} {:>8}",
                v.len(),
                secs(percentile(v, 50)),
                secs(percentile(v, 90)),
                secs(percentile(v, 99)),
                secs(percentile(v, 100))
            )?;
        }
        if errors.is_empty() {
            writeln!(f, "  errors by kind: none")?;
        } else {
            let mut kinds: BTreeMap<(String, String), usize> = BTreeMap::new();
            for op in &errors {
                let kind = match op.kind {
                    OpKind::Clone => "clone",
                    _ => "push",
                };
                *kinds
                    .entry((kind.into(), op.error.clone().unwrap_or_default()))
                    .or_default() += 1;
            }
            writeln!(f, "  errors by kind:")?;
            for ((op, kind), n) in &kinds {
                writeln!(f, "    {n:>4} {op}: {kind}")?;
            }
            if let Some(first) = errors.first() {
                let mut text = String::new();
                for line in first.stderr.lines().take(10) {
                    let _ = writeln!(text, "      | {line}");
                }
                writeln!(
                    f,
                    "    first: user {} {} of {}, after {}:\n{text}",
                    first.user,
                    first.kind,
                    first.repo,
                    secs(first.took)
                )?;
            }
        }
        writeln!(f)?;
        let h = &self.holders;
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        writeln!(
            f,
            "held connections in all: {} opened ({} answered by the server); ended by the server: \
             {} evicted (\"too many connections\"), {} at the login grace time, {} closed unread \
             (refused, or waited unread until the login grace time), {} otherwise; \
             {} connect errors",
            n(&h.opened),
            n(&h.answered),
            n(&h.evicted),
            n(&h.grace),
            n(&h.closed_unread),
            n(&h.closed_other),
            n(&h.connect_errors)
        )?;
        if c.attacker {
            let a = &self.attacker;
            writeln!(
                f,
                "attacker ({ATTACKER_IP}): {} attempts: {} failed authentication (each adds 5 s \
                 to the address's penalty), {} refused before the handshake (penalised), \
                 {} evicted, {} otherwise {:?}",
                n(&a.attempts),
                n(&a.auth_failed),
                n(&a.refused),
                n(&a.evicted),
                n(&a.other),
                a.other_kinds.lock().unwrap_or_else(|p| p.into_inner())
            )?;
        }
        let l = &self.log;
        writeln!(f, "server log:")?;
        for ((group, why), n) in &l.refused {
            writeln!(f, "  connection refused, {group}: {n} ({why})")?;
        }
        if l.refused.is_empty() {
            writeln!(f, "  connection refused: none")?;
        }
        let line = |name: &str, m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m.iter().map(|(g, n)| format!("{g} {n}")).collect();
            format!(
                "  {name}: {}",
                if parts.is_empty() {
                    "none".into()
                } else {
                    parts.join(", ")
                }
            )
        };
        writeln!(
            f,
            "{}",
            line("startups ended for a newcomer (evicted)", &l.evicted)
        )?;
        writeln!(f, "{}", line("login grace time exceeded", &l.grace))?;
        writeln!(
            f,
            "{}",
            line(
                "login grace time exceeded while waiting unread",
                &l.grace_waiting
            )
        )?;
        writeln!(f, "  per-user cap reached: {}", l.user_cap)?;
        writeln!(f, "  warnings and errors: {}", l.warnings.len())?;
        for w in &l.warnings {
            writeln!(f, "    {w}")?;
        }
        writeln!(f, "server stopped: {}", self.server_exit)?;
        writeln!(f, "whole run: {}", secs(self.total))?;
        writeln!(
            f,
            "{}",
            if self.passed() {
                "PASS: every real user's operation succeeded"
            } else {
                "FAIL: real users' operations failed"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnect_after_the_version_and_kexinit_is_read() {
        let mut got = b"SSH-2.0-gitmouth\r\n".to_vec();
        // A KEXINIT-like packet (payload 20, 3 bytes), padding 4.
        got.extend_from_slice(&[0, 0, 0, 8, 4, 20, 0, 0, 9, 9, 9, 9]);
        let text = b"too many connections";
        let mut payload = vec![1, 0, 0, 0, 7];
        payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
        payload.extend_from_slice(text);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        let len = (payload.len() + 1 + 4) as u32;
        got.extend_from_slice(&len.to_be_bytes());
        got.push(4);
        got.extend_from_slice(&payload);
        got.extend_from_slice(&[0; 4]);
        assert_eq!(
            disconnect_text(&got).as_deref(),
            Some("too many connections")
        );
        assert_eq!(disconnect_text(b"SSH-2.0-x\r\n"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&v, 50), Duration::from_secs(50));
        assert_eq!(percentile(&v, 99), Duration::from_secs(99));
        assert_eq!(percentile(&v, 100), Duration::from_secs(100));
        assert_eq!(percentile(&v[..1], 90), Duration::from_secs(1));
    }

    #[test]
    fn peers_and_groups_are_read_from_log_lines() {
        let line = "INFO gitmouth_io::server: connection refused peer=127.0.3.1:4242 why=\"source penalised for earlier failures\"";
        assert_eq!(peer_of(line), Some(ATTACKER_IP));
        let span = "INFO conn{peer=127.0.2.7:5555}: gitmouth_core::server: making way for a connection from a source holding fewer: closing";
        assert_eq!(peer_of(span).map(group_of), Some(Group::Holder));
        let counts = count_log(&format!("{line}\n{span}\n"));
        assert_eq!(counts.evicted.get("holder"), Some(&1));
        assert_eq!(
            counts.refused.get(&(
                "attacker".into(),
                "source penalised for earlier failures".into()
            )),
            Some(&1)
        );
    }
}
