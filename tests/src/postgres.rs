//! A private PostgreSQL cluster per test, on 127.0.0.1.
//!
//! [`Cluster::start`] runs `initdb` in a fresh temporary directory and
//! starts the `postgres` server as a child of the test, so the test knows
//! its PID and ends it by that PID: [`Cluster::stop`], [`Cluster::kill`],
//! and in any case [`Drop`], which also runs while a panic unwinds and
//! removes the directory.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does),
//! every PostgreSQL program runs as the unprivileged system user
//! [`OS_USER`] (created with `useradd` on first use when missing), through
//! `setpriv`, which `exec`s the program: the child's PID is the
//! postmaster's. Otherwise they run as the current user.
//!
//! The programs come from the newest `/usr/lib/postgresql/<version>/bin`
//! (where Debian's `postgresql` package puts them, off `PATH`), else from
//! `PATH`. Without them, [`Cluster::start`] fails the test, saying to
//! install that package.
//!
//! Authentication: over the Unix socket (in the cluster's directory only),
//! everyone is trusted; over TCP on 127.0.0.1, the superuser
//! [`SUPERUSER`] is trusted and every other role must give its password
//! (SCRAM). The role [`USER`], password [`PASSWORD`], owns the database
//! [`DATABASE`]: [`Cluster::url`] names them.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The role the URL names; it must give its password over TCP.
pub const USER: &str = "gitmouth";
/// [`USER`]'s password.
pub const PASSWORD: &str = "s3cret-pw";
/// The database the URL names, owned by [`USER`].
pub const DATABASE: &str = "gitmouth";
/// The cluster's superuser, trusted over the socket and 127.0.0.1.
pub const SUPERUSER: &str = "postgres";
/// The system user the PostgreSQL programs run as when the tests run as
/// root.
pub const OS_USER: &str = "gitmouth-pg";

/// Where Debian installs each PostgreSQL version's programs
/// (`<version>/bin`).
pub const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// How long the server has to accept connections once started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast or immediate shutdown may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `initdb` or one `psql` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at a free port: another process may take the one we found
/// before the server binds it.
const PORT_ATTEMPTS: u32 = 5;

/// The PostgreSQL programs the harness runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// `initdb`.
    pub initdb: PathBuf,
    /// The server, `postgres`.
    pub postgres: PathBuf,
    /// `psql`.
    pub psql: PathBuf,
    /// `pg_isready`.
    pub pg_isready: PathBuf,
}

impl Binaries {
    /// Finds the programs in the newest [`DEBIAN_LIB`]`/<version>/bin`, else
    /// on `PATH`; the error says what is missing and to install Debian's
    /// `postgresql` package.
    pub fn find() -> Result<Binaries, String> {
        Self::find_in(Path::new(DEBIAN_LIB), std::env::var_os("PATH"))
    }

    /// [`Binaries::find`] with another library directory (holding
    /// `<version>/bin`) and `PATH`.
    pub fn find_in(lib: &Path, path: Option<OsString>) -> Result<Binaries, String> {
        let path_dirs: Vec<PathBuf> = path
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let server_dir = version_bin_dirs(lib)
            .into_iter()
            .chain(path_dirs.iter().cloned())
            .find(|dir| executable(&dir.join("initdb")) && executable(&dir.join("postgres")))
            .ok_or_else(|| {
                format!(
                    "PostgreSQL's server programs (initdb, postgres) are neither in \
                     {DEBIAN_LIB}/<version>/bin nor on PATH: install Debian's `postgresql` \
                     package (`apt-get install postgresql`; scripts/test does it)"
                )
            })?;
        // The clients of the same version when they are there (Debian's),
        // else whichever PATH has.
        let tool = |name: &str| {
            std::iter::once(&server_dir)
                .chain(path_dirs.iter())
                .map(|dir| dir.join(name))
                .find(|p| executable(p))
                .ok_or_else(|| {
                    format!(
                        "PostgreSQL's `{name}` is neither in {} nor on PATH: install Debian's \
                         `postgresql` package (`apt-get install postgresql`; scripts/test does it)",
                        server_dir.display()
                    )
                })
        };
        Ok(Binaries {
            initdb: server_dir.join("initdb"),
            postgres: server_dir.join("postgres"),
            psql: tool("psql")?,
            pg_isready: tool("pg_isready")?,
        })
    }
}

/// `lib/<version>/bin` for every numeric version, newest first.
fn version_bin_dirs(lib: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The programs, found once per test process; panics (failing the test)
/// when they are missing.
fn binaries() -> Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINARIES.get_or_init(Binaries::find) {
        Ok(binaries) => binaries.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Who the PostgreSQL programs run as.
#[derive(Debug, Clone, Copy)]
enum RunAs {
    /// The current (unprivileged) user.
    Me,
    /// [`OS_USER`], through `setpriv`.
    User { uid: u32, gid: u32 },
}

fn run_as() -> RunAs {
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = os_user();
        RunAs::User { uid, gid }
    } else {
        RunAs::Me
    }
}

/// Serialises the creation of [`OS_USER`] between test processes: two
/// `useradd` at once can each fail half-way (each takes some of the
/// `/etc/passwd`, `/etc/group` and shadow locks), or one see a user the
/// other then rolls back.
pub const USERADD_LOCK: &str = "/run/lock/gitmouth-pg-useradd.lock";

/// [`OS_USER`]'s uid and gid, creating the user when missing.
fn os_user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let lock_path = Path::new(USERADD_LOCK);
        if let Some(parent) = lock_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .unwrap_or_else(|e| panic!("opening {USERADD_LOCK}: {e}"));
        lock.lock()
            .unwrap_or_else(|e| panic!("locking {USERADD_LOCK}: {e}"));
        // Released when `lock` is closed, at the end of this closure.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(ids) = lookup_user(OS_USER) {
                return ids;
            }
            // Where Debian has it, which root's PATH may lack (su without -).
            let useradd = ["/usr/sbin/useradd", "/sbin/useradd"]
                .into_iter()
                .find(|p| executable(Path::new(p)))
                .unwrap_or("useradd");
            let out = Command::new(useradd)
                .args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    OS_USER,
                ])
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL refuses to run as root, and useradd, to create the \
                         unprivileged user {OS_USER} to run it as, did not start: {e}"
                    )
                });
            if let Some(ids) = lookup_user(OS_USER) {
                return ids;
            }
            // Something else (apt, an admin) may hold /etc/passwd's lock:
            // try again for a while.
            assert!(
                Instant::now() < deadline,
                "could not create the unprivileged user {OS_USER} to run PostgreSQL as \
                 (it refuses to run as root): useradd said: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Sends `signal` to `pid`; false if there is no such process.
fn signal(pid: u32, signal: Signal) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|pid| kill_process(pid, signal).is_ok())
}

/// State letter and start time (in clock ticks since boot) of `pid`, from
/// `/proc/<pid>/stat`: the pair names one process even if its PID is later
/// reused.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 3.. of proc(5) follow the state; the start time is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// Whether the process `pid` that started at `start` still runs (a zombie
/// does not).
fn running(pid: u32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(state, s)| s == start && !matches!(state, 'Z' | 'X'))
}

/// Waits up to `timeout` for `child` to exit, reaping it.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    crate::wait_until(timeout, || !matches!(child.try_wait(), Ok(None)))
}

/// SIGKILLs the postmaster `child` and then what remains of its children.
///
/// The postmaster is stopped first, so it forks no child between the
/// listing of its children and its death. Its children would exit on their
/// own once they notice it is gone, but a restart must not find them still
/// attached to the shared memory.
fn kill_family(child: &mut Child) {
    let pid = child.id();
    signal(pid, Signal::STOP);
    crate::wait_until(Duration::from_secs(2), || {
        proc_stat(pid).is_none_or(|(state, _)| matches!(state, 'T' | 'Z' | 'X'))
    });
    let family: Vec<(u32, u64)> = crate::descendants(pid)
        .into_iter()
        .filter_map(|p| proc_stat(p.pid).map(|(_, start)| (p.pid, start)))
        .collect();
    signal(pid, Signal::KILL);
    let _ = child.wait();
    for &(pid, start) in &family {
        if running(pid, start) {
            signal(pid, Signal::KILL);
        }
    }
    crate::wait_until(Duration::from_secs(10), || {
        family.iter().all(|&(pid, start)| !running(pid, start))
    });
}

/// A private PostgreSQL cluster on 127.0.0.1, stopped (immediate mode) and
/// its directory removed on drop.
pub struct Cluster {
    binaries: Binaries,
    run_as: RunAs,
    /// The cluster's directory: the data directory `data`, the Unix
    /// socket, the server's log. `None` once removed (on drop).
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    port: u16,
    /// The running postmaster.
    child: Option<Child>,
}

impl Cluster {
    /// Creates and starts a cluster with [`USER`] and [`DATABASE`], and
    /// waits until it accepts connections; panics with the reason (and the
    /// server's log) otherwise, having cleaned up.
    pub fn start() -> Cluster {
        let binaries = binaries();
        let run_as = run_as();
        let dir = tempfile::Builder::new()
            .prefix("gitmouth-pg-")
            .tempdir()
            .expect("creating the cluster's temporary directory");
        if let RunAs::User { uid, gid } = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("giving the cluster's directory to the PostgreSQL user");
        }
        // From here on, a panic drops the cluster, which cleans up.
        let mut cluster = Cluster {
            binaries,
            run_as,
            path: dir.path().to_owned(),
            dir: Some(dir),
            port: 0,
            child: None,
        };
        cluster.initdb();
        let mut attempt = 1;
        loop {
            cluster.port = free_port();
            match cluster.spawn() {
                Ok(()) => break,
                Err(log) if attempt < PORT_ATTEMPTS && port_taken(&log) => attempt += 1,
                Err(log) => panic!(
                    "PostgreSQL did not start on 127.0.0.1:{}; its log:\n{log}",
                    cluster.port
                ),
            }
        }
        cluster.psql_in(
            "postgres",
            &format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}';\n\
                 CREATE DATABASE {DATABASE} OWNER {USER};\n"
            ),
        );
        cluster
    }

    /// `postgres://gitmouth:s3cret-pw@127.0.0.1:PORT/gitmouth`: [`USER`]
    /// with its password over TCP.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// The TCP port on 127.0.0.1; the same after [`Cluster::start_again`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// [`USER`]'s password, the one in [`Cluster::url`] (to check that it
    /// appears in no log).
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The postmaster's PID; panics when the cluster is not running.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the cluster is not running")
            .id()
    }

    /// Whether the postmaster runs (it was started and neither stopped
    /// nor killed since, and has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The cluster's directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The data directory, `data` in [`Cluster::dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    /// Everything the server has logged (its standard error) since the
    /// cluster was created.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: connections are ended, and the
    /// data is checkpointed) and waits for it to exit. Does nothing if it
    /// is not running.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        signal(child.id(), Signal::INT);
        assert!(
            wait_exit(child, STOP_TIMEOUT),
            "PostgreSQL (pid {}) did not stop within {STOP_TIMEOUT:?}",
            child.id()
        );
        self.child = None;
    }

    /// Starts the server again, on the same data directory and port, after
    /// [`Cluster::stop`] or [`Cluster::kill`] (then it recovers from its
    /// WAL), and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: the cluster still runs (pid {})",
            self.pid()
        );
        if let Err(log) = self.spawn() {
            panic!(
                "PostgreSQL did not start again on 127.0.0.1:{}; its log:\n{log}",
                self.port
            );
        }
    }

    /// SIGKILLs the postmaster, as a crash would, then its remaining
    /// children, and waits until they are all gone. Connections break; the
    /// data directory stays, for [`Cluster::start_again`].
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the cluster is not running");
        kill_family(&mut child);
    }

    /// Runs `sql` (one or more statements, stopping at the first error)
    /// with `psql` as the superuser on [`DATABASE`], over the Unix socket,
    /// and returns what it printed: rows only, unaligned, fields separated
    /// by `|` (`select 1` gives "1\n"). Panics with psql's errors if it
    /// fails. What it creates is owned by [`SUPERUSER`]: begin with
    /// `SET ROLE gitmouth;` for objects [`USER`] must own.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// Terminates every backend (but psql's own) whose `application_name`
    /// is `LIKE` the pattern `application_name_like` (e.g. "gitmouth%"),
    /// waiting up to 5 s for each to end; returns how many ended.
    pub fn terminate_backends(&self, application_name_like: &str) -> usize {
        let pattern = application_name_like.replace('\'', "''");
        let out = self.psql(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) AS ended \
             FROM pg_stat_activity WHERE application_name LIKE '{pattern}' \
             AND pid <> pg_backend_pid()) AS t WHERE ended;"
        ));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("terminate_backends: psql printed {out:?}"))
    }

    fn log_path(&self) -> PathBuf {
        self.path.join("postgres.log")
    }

    /// A command running `program` as the PostgreSQL user, in the cluster's
    /// directory, with no `PG*` variable of the test's environment.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = match self.run_as {
            RunAs::Me => Command::new(program),
            RunAs::User { uid, gid } => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        };
        clean_env(&mut cmd);
        cmd.current_dir(&self.path).env("HOME", &self.path);
        cmd
    }

    fn initdb(&self) {
        let mut cmd = self.command(&self.binaries.initdb);
        cmd.arg("--pgdata")
            .arg(self.data_dir())
            .args([
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        let out = run(cmd, None, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let data = self.data_dir();
        // Appended, so these win over initdb's own lines. fsync=off makes
        // commits cheap; synchronous_commit stays on, so what a commit
        // returned for survives `kill` (written to the kernel, which
        // outlives the processes).
        let conf = format!(
            "\n# gitmouth-tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             shared_buffers = 32MB\n\
             max_connections = 100\n\
             autovacuum = off\n\
             jit = off\n\
             huge_pages = off\n\
             logging_collector = off\n\
             log_destination = 'stderr'\n\
             log_line_prefix = '%m [%p] %q%a '\n\
             password_encryption = 'scram-sha-256'\n",
            self.path.display().to_string().replace('\'', "''")
        );
        write_existing(&data.join("postgresql.conf"), &conf, true);
        let hba = format!(
            "# gitmouth-tests\n\
             # TYPE DATABASE USER ADDRESS METHOD\n\
             local all all trust\n\
             host all {SUPERUSER} 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n"
        );
        write_existing(&data.join("pg_hba.conf"), &hba, false);
    }

    /// Starts the postmaster and waits until it accepts connections; the
    /// error is what it logged if it exited first.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("opening the server's log");
        let mut cmd = self.command(&self.binaries.postgres);
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("opening the server's log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.child = Some(child);
        let new_log = || {
            let log = std::fs::read(&log_path).unwrap_or_default();
            let start = usize::try_from(log_start).unwrap_or(0).min(log.len());
            String::from_utf8_lossy(&log[start..]).into_owned()
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(new_log());
            }
            if self.accepts_connections() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections on 127.0.0.1:{} within \
                 {READY_TIMEOUT:?}; its log:\n{}",
                self.port,
                new_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // setpriv exec'd the server: the child is the postmaster.
        let pid = self.pid();
        let recorded = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .unwrap_or_default()
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok());
        assert_eq!(
            recorded,
            Some(pid),
            "postmaster.pid does not name the process the harness started"
        );
        Ok(())
    }

    /// `pg_isready` over TCP: the server accepts connections (not just
    /// TCP ones, during its startup or recovery).
    fn accepts_connections(&self) -> bool {
        let mut cmd = Command::new(&self.binaries.pg_isready);
        clean_env(&mut cmd);
        cmd.args(["-q", "-h", "127.0.0.1", "-t", "2", "-U", SUPERUSER, "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null());
        run(cmd, None, Duration::from_secs(10)).status.success()
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let mut cmd = self.command(&self.binaries.psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.path)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-f", "-"])
            .env("PGCONNECT_TIMEOUT", "10");
        let out = run(cmd, Some(sql), COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "psql failed ({}) on:\n{sql}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster ends its children and exits.
            signal(child.id(), Signal::QUIT);
            if !wait_exit(&mut child, STOP_TIMEOUT) {
                kill_family(&mut child);
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(100)..];
            eprintln!(
                "--- PostgreSQL log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// Removes the test's `PG*` variables, which would redirect the programs
/// elsewhere, and makes messages English (the C locale).
fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env("LC_ALL", "C");
}

/// Writes to a file `initdb` created, keeping its owner.
fn write_existing(path: &Path, text: &str, append: bool) {
    let mut file = OpenOptions::new()
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A port free on 127.0.0.1 at this moment.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Whether the server's log says another process has its port.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind IPv4 address")
}

/// Runs `cmd` with `stdin` as its input, killing it (by its PID) and
/// failing the test after `timeout`.
fn run(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let id = child.id();
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let text = text.to_owned();
        // Written from another thread, so a large output cannot block it.
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            signal(id, Signal::KILL);
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}
