//! The PostgreSQL harness (`gitmouth_tests::postgres`) itself: a private
//! cluster starts, answers over its socket and over TCP with the password,
//! keeps its data across a stop and a crash, and leaves neither a process
//! nor a directory behind, panic or not. Without PostgreSQL's programs
//! these tests fail, saying to install Debian's `postgresql` package.

#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gitmouth_tests::postgres::{Binaries, Cluster, DATABASE, PASSWORD, USER};
use gitmouth_tests::{descendants, processes, processes_using, run_with_timeout, wait_until};

/// `psql` as a client of the test's own user, by URL, over TCP.
fn psql_command(url: &str, sql: &str) -> Command {
    let binaries = Binaries::find().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(binaries.psql);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env("PGPASSFILE", "/nonexistent")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null());
    cmd
}

fn psql_url(url: &str, sql: &str) -> Output {
    run_with_timeout(psql_command(url, sql), Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a PostgreSQL process with this PID is alive (not a zombie).
fn postgres_alive(pid: u32) -> bool {
    processes()
        .iter()
        .any(|p| p.pid == pid && p.state != 'Z' && p.cmdline.contains("postgres"))
}

/// A child process killed (by its PID) and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What must be gone once a cluster is dropped: its directory, its
/// postmaster and the postmaster's children.
struct Traces {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Traces {
    fn of(cluster: &Cluster) -> Traces {
        let pid = cluster.pid();
        let mut pids = vec![pid];
        pids.extend(descendants(pid).iter().map(|p| p.pid));
        Traces {
            dir: cluster.dir().to_owned(),
            pids,
        }
    }

    fn assert_gone(&self) {
        assert!(!self.dir.exists(), "{} is still there", self.dir.display());
        for &pid in &self.pids {
            assert!(!postgres_alive(pid), "postgres pid {pid} is still alive");
        }
        let users = processes_using(&self.dir);
        assert!(
            users.is_empty(),
            "processes still use the cluster: {users:?}"
        );
    }
}

#[test]
fn postgresql_is_installed() {
    if let Err(e) = Binaries::find() {
        panic!("{e}");
    }
}

#[test]
fn missing_programs_fail_saying_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let err = Binaries::find_in(empty.path(), Some("".into())).unwrap_err();
    assert!(
        err.contains("`postgresql` package") && err.contains("apt-get install postgresql"),
        "{err}"
    );

    // A version with only some of the programs does not count; the newest
    // complete one does, with its own clients.
    let lib = tempfile::tempdir().unwrap();
    let fake = |version: &str, names: &[&str]| {
        let bin = lib.path().join(version).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in names {
            let path = bin.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    };
    let all = ["initdb", "postgres", "psql", "pg_isready"];
    fake("9.6", &all);
    let v15 = fake("15", &all);
    fake("16", &["initdb", "psql", "pg_isready"]);
    fake("notaversion", &all);
    let found = Binaries::find_in(lib.path(), Some("".into())).unwrap();
    assert_eq!(found.initdb, v15.join("initdb"));
    assert_eq!(found.postgres, v15.join("postgres"));
    assert_eq!(found.psql, v15.join("psql"));
    assert_eq!(found.pg_isready, v15.join("pg_isready"));

    // The server without the clients: they are looked for on PATH.
    let lib = tempfile::tempdir().unwrap();
    let server = lib.path().join("17/bin");
    std::fs::create_dir_all(&server).unwrap();
    for name in ["initdb", "postgres"] {
        let path = server.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let err = Binaries::find_in(lib.path(), Some("".into())).unwrap_err();
    assert!(
        err.contains("`psql`") && err.contains("apt-get install postgresql"),
        "{err}"
    );
}

#[test]
fn starts_and_answers_psql() {
    let cluster = Cluster::start();
    assert_eq!(cluster.psql("select 1"), "1\n");
    assert_eq!(
        cluster.psql("select 1, 'a';\nselect 2;"),
        "1|a\n2\n",
        "every statement's rows"
    );
    assert!(postgres_alive(cluster.pid()));
    // TCP on 127.0.0.1 only; the socket in the cluster's directory only.
    assert_eq!(cluster.psql("show listen_addresses"), "127.0.0.1\n");
    assert_eq!(
        cluster.psql("show unix_socket_directories").trim(),
        cluster.dir().to_str().unwrap()
    );
    assert!(
        cluster
            .dir()
            .join(format!(".s.PGSQL.{}", cluster.port()))
            .exists()
    );
    assert_eq!(cluster.psql("show fsync"), "off\n");
    assert!(cluster.dir().starts_with(std::env::temp_dir()));
    assert!(cluster.data_dir().join("PG_VERSION").exists());
}

#[test]
fn url_with_the_password_over_tcp() {
    let cluster = Cluster::start();
    assert_eq!(cluster.password(), PASSWORD);
    assert_eq!(
        cluster.url(),
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            cluster.port()
        )
    );
    let out = psql_url(
        &cluster.url(),
        "select current_user, current_database(), host(inet_server_addr())",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "gitmouth|gitmouth|127.0.0.1\n");

    // The password is checked: a wrong one and none are refused.
    let wrong = cluster.url().replace(PASSWORD, "wrong-pw");
    let out = psql_url(&wrong, "select 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password authentication failed"),
        "{}",
        text(&out.stderr)
    );
    let none = cluster.url().replace(&format!(":{PASSWORD}"), "");
    let out = psql_url(&none, "select 1");
    assert!(!out.status.success());

    // USER owns the database: it can create what it needs.
    let out = psql_url(
        &cluster.url(),
        "create table t (x int); insert into t values (7); select x from t",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "7\n");
    assert_eq!(cluster.psql("select x from t"), "7\n");

    let log = cluster.log();
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password is in the server's log:\n{log}"
    );
}

#[test]
fn stop_and_start_again_keep_the_data() {
    let mut cluster = Cluster::start();
    cluster.psql("create table kept (x int); insert into kept values (1), (2);");
    let port = cluster.port();
    let pid = cluster.pid();
    let traces = Traces::of(&cluster);

    cluster.stop();
    assert!(!cluster.is_running());
    for &pid in &traces.pids {
        assert!(!postgres_alive(pid), "pid {pid} outlived the stop");
    }
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    cluster.stop(); // again: nothing to do

    cluster.start_again();
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.pid(), pid);
    assert_eq!(cluster.psql("select sum(x) from kept"), "3\n");
    let out = psql_url(&cluster.url(), "select 1");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let traces = Traces::of(&cluster);
    drop(cluster);
    traces.assert_gone();
}

#[test]
fn kill_then_start_again_recovers_and_drop_cleans_up() {
    let mut cluster = Cluster::start();
    cluster.psql("create table kept (x int); insert into kept values (42);");
    // A session in the middle of a query when the server dies.
    let held = Reaped(
        psql_command(&cluster.url(), "select pg_sleep(60)")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(30), || {
        cluster.psql("select count(*) from pg_stat_activity where query like 'select pg_sleep%'")
            == "1\n"
    }));
    let traces = Traces::of(&cluster);
    assert!(traces.pids.len() > 2, "the postmaster and its children");

    cluster.kill();
    assert!(!cluster.is_running());
    for &pid in &traces.pids {
        assert!(!postgres_alive(pid), "pid {pid} outlived the kill");
    }
    assert!(TcpStream::connect(("127.0.0.1", cluster.port())).is_err());
    let mut held = held;
    assert!(
        wait_until(Duration::from_secs(10), || {
            held.0.try_wait().unwrap().is_some()
        }),
        "the session outlived the server"
    );
    assert!(!held.0.wait().unwrap().success());
    // The directory stays, for a restart, which recovers.
    assert!(cluster.data_dir().join("postmaster.pid").exists());

    cluster.start_again();
    assert_eq!(cluster.psql("select x from kept"), "42\n");

    let traces = Traces::of(&cluster);
    cluster.kill();
    drop(cluster);
    traces.assert_gone();
}

#[test]
fn drop_during_a_panic_cleans_up() {
    let mut traces = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = Cluster::start();
        traces = Some(Traces::of(&cluster));
        panic!("on purpose, with the cluster running");
    }));
    let Some(traces) = traces else {
        // The cluster did not start: that failure, not this one.
        std::panic::resume_unwind(result.unwrap_err());
    };
    assert!(result.is_err());
    traces.assert_gone();
}

#[test]
#[should_panic(expected = "syntax error")]
fn a_failing_statement_panics_with_psql_errors() {
    let cluster = Cluster::start();
    cluster.psql("selec 1");
}

#[test]
fn terminate_backends_ends_the_matching_sessions() {
    let cluster = Cluster::start();
    let session = |name: &str| {
        Reaped(
            psql_command(
                &format!("{}?application_name={name}", cluster.url()),
                "select pg_sleep(60)",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        )
    };
    let mut victims = [session("gitmouth-a"), session("gitmouth-b")];
    let mut bystander = session("bystander");
    assert!(wait_until(Duration::from_secs(30), || {
        cluster.psql(
            "select count(*) from pg_stat_activity \
             where application_name in ('gitmouth-a', 'gitmouth-b', 'bystander')",
        ) == "3\n"
    }));

    assert_eq!(cluster.terminate_backends("gitmouth-%"), 2);
    for victim in &mut victims {
        assert!(wait_until(Duration::from_secs(10), || {
            victim.0.try_wait().unwrap().is_some()
        }));
        assert!(!victim.0.wait().unwrap().success());
    }
    assert!(bystander.0.try_wait().unwrap().is_none());
    assert_eq!(cluster.terminate_backends("gitmouth-%"), 0);
    // Quotes in the pattern are SQL-escaped, not SQL.
    assert_eq!(cluster.terminate_backends("x' or 'a' like 'a"), 0);
    assert!(bystander.0.try_wait().unwrap().is_none());
    assert_eq!(cluster.terminate_backends("bystander"), 1);
    assert!(wait_until(Duration::from_secs(10), || {
        bystander.0.try_wait().unwrap().is_some()
    }));
}

#[test]
fn two_clusters_at_once() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Cluster::start);
        let b = s.spawn(Cluster::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.pid(), b.pid());
    a.psql("create table only_in_a (x int)");
    assert_eq!(
        a.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "1\n"
    );
    assert_eq!(
        b.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "0\n"
    );
    for cluster in [&a, &b] {
        let out = psql_url(&cluster.url(), "select 1");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let traces = [Traces::of(&a), Traces::of(&b)];
    drop((a, b));
    for t in &traces {
        t.assert_gone();
    }
}
