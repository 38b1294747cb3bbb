//! Several instances behind one balancer (`--push-lock postgres`), with
//! the real `ssh`, `git` and a private PostgreSQL cluster: two gitmouth
//! instances, A and B, share one data directory and one database. A push
//! through B while one through A runs is refused with the holder's name,
//! instance and start time, and goes through after; a lock whose instance
//! was killed with SIGKILL is free at once; a penalty and a user's
//! connections on A count on B; while the database is stopped clones go on
//! and pushes are refused (never let through), and they resume once it is
//! back; the lock connection breaking mid-push does not cut the push; a
//! database unreachable at start stops the server, and the password shows
//! nowhere.
//!
//! A and B run on different runtimes (smol and async-std, and the other
//! way round), so both runtimes drive the shared lock against each other.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::postgres::{Cluster, PASSWORD};
use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, closed_without_a_word, hold_pushes, http_get, keygen,
    kill, start_git_server, stderr, wait_until,
};

/// Two instances on one database and one data directory; `app` has one
/// commit, and its hook holds the next push until `dir/go` exists.
struct Pair {
    db: Cluster,
    a: Server,
    b: Server,
    key: PathBuf,
    src: PathBuf,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Pair {
    fn start(a: Runtime, b: Runtime, args: &[&str], strict: bool) -> Pair {
        let db = Cluster::start();
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let key = keygen(&dir, "ed25519", "id", "alice");
        let url = db.url();
        let instance = |name: &str, runtime| {
            let mut options = ServerOptions::default().args(&[
                "--push-lock",
                "postgres",
                "--database-url",
                &url,
                "--instance-name",
                name,
            ]);
            options = options.args(args);
            options.strict_admission = strict;
            start_git_server(runtime, &dir, &[&key], options)
        };
        let a = instance("A", a);
        let b = instance("B", b);
        let pair = Pair {
            db,
            a,
            b,
            key,
            src: dir.join("src"),
            dir,
            _scratch: scratch,
        };
        let git = pair.git(&pair.a);
        std::fs::create_dir_all(&pair.src).unwrap();
        git.ok(&pair.src, &["init", "-q", "-b", "main"]);
        git.ok(&pair.src, &["commit", "-q", "--allow-empty", "-m", "first"]);
        git.ok(
            &pair.src,
            &["push", "-q", &pair.ssh(&pair.a).url("app"), "main"],
        );
        hold_pushes(&pair.a.data_dir.join("repos/app.git"), &pair.dir);
        pair
    }

    fn ssh(&self, server: &Server) -> Ssh {
        server.ssh().key(&self.key)
    }

    fn git(&self, server: &Server) -> Git {
        Git::new(&self.dir.join("home")).ssh(&self.ssh(server))
    }

    /// Commits on `branch` and starts pushing it through `server`.
    fn push(&self, server: &Server, branch: &str) -> Child {
        let git = self.git(server);
        git.ok(&self.src, &["checkout", "-q", "-B", branch, "main"]);
        git.ok(&self.src, &["commit", "-q", "--allow-empty", "-m", branch]);
        let url = self.ssh(server).url("app");
        let mut cmd = git.command(&self.src, &["push", &url, branch]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    /// Starts a push through `server` and waits until its hook holds it.
    fn held_push(&self, server: &Server) -> Child {
        let push = self.push(server, "held");
        assert!(
            wait_until(Duration::from_secs(60), || self
                .dir
                .join("started")
                .exists()),
            "the push never reached the hook:\n{}",
            server.log()
        );
        push
    }

    fn release(&self) {
        std::fs::write(self.dir.join("go"), "").unwrap();
    }

    /// Advisory locks held in the database now.
    fn advisory_locks(&self) -> usize {
        self.db
            .psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
            .trim()
            .parse()
            .unwrap()
    }

    /// The password appears in no log of either instance.
    fn assert_no_password(&self) {
        for server in [&self.a, &self.b] {
            let log = server.log();
            assert!(!log.contains(PASSWORD), "the password in a log:\n{log}");
        }
    }
}

/// Waits for a git command, at most two minutes (then it is killed and
/// the test fails).
fn finish(mut child: Child) -> Output {
    let done = wait_until(Duration::from_secs(120), || {
        child.try_wait().unwrap().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(done, "git did not finish in two minutes: {}", stderr(&out));
    out
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        stderr(out)
    );
}

#[test]
fn a_push_through_b_while_a_pushes_is_refused_naming_the_holder_then_goes_through() {
    for (a, b) in [
        (Runtime::Smol, Runtime::AsyncStd),
        (Runtime::AsyncStd, Runtime::Smol),
    ] {
        let pair = Pair::start(a, b, &[], false);
        let first = pair.held_push(&pair.a);
        let out = finish(pair.push(&pair.b, "second"));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(" ! Another push to app is in progress (started ")
                && err.contains(" by alice through A)."),
            "{err}"
        );
        assert!(
            err.contains("remote error: Another push to app is in progress"),
            "{err}"
        );
        pair.release();
        assert_ok(&finish(first), "the push through A");
        assert_ok(
            &finish(pair.push(&pair.b, "second")),
            "the push through B after",
        );
        // Every lock was given back.
        assert!(
            wait_until(Duration::from_secs(10), || pair.advisory_locks() == 0),
            "locks left: {}",
            pair.db
                .psql("SELECT * FROM pg_locks WHERE locktype = 'advisory'")
        );
        pair.assert_no_password();
    }
}

#[test]
fn with_a_wait_a_push_through_b_waits_for_the_push_through_a_then_goes_through() {
    let pair = Pair::start(
        Runtime::AsyncStd,
        Runtime::Smol,
        &["--push-lock-wait", "60"],
        false,
    );
    let first = pair.held_push(&pair.a);
    let second = pair.push(&pair.b, "second");
    assert!(
        pair.b
            .wait_for_log("push lock held: waiting in turn", Duration::from_secs(60)),
        "the push through B never waited:\n{}",
        pair.b.log()
    );
    pair.release();
    assert_ok(&finish(first), "the push through A");
    let out = finish(second);
    assert_ok(&out, "the push through B, after waiting");
    let err = stderr(&out);
    assert!(
        err.contains("-----> Waiting for the push to app by alice (started "),
        "{err}"
    );
}

#[test]
fn a_lock_whose_instance_was_killed_is_free_within_seconds() {
    let mut pair = Pair::start(Runtime::Smol, Runtime::AsyncStd, &[], false);
    let first = pair.held_push(&pair.a);
    assert_eq!(pair.advisory_locks(), 1);
    kill(pair.a.pid(), "KILL");
    let killed = Instant::now();
    let _ = pair.a.child_try_wait();
    // PostgreSQL lets go of a session's advisory locks when its
    // connection ends: no lease runs out.
    assert!(
        wait_until(Duration::from_secs(5), || pair.advisory_locks() == 0),
        "the lock outlived its instance by 5 s"
    );
    let freed = killed.elapsed();
    // The hook is the shared repository's: it would hold B's push too.
    // (A's git, left behind by the kill, may finish now as well.)
    pair.release();
    let out = finish(pair.push(&pair.b, "second"));
    assert_ok(&out, "the push through B");
    eprintln!("lock free {freed:?} after SIGKILL");
    let _ = finish(first);
}

#[test]
fn the_lock_connection_breaking_mid_push_does_not_cut_the_push() {
    let pair = Pair::start(Runtime::AsyncStd, Runtime::Smol, &[], false);
    let first = pair.held_push(&pair.a);
    assert_eq!(pair.db.terminate_backends("gitmouth push-lock A"), 1);
    assert!(
        pair.a.wait_for_log(
            "push lock: lost the database connection",
            Duration::from_secs(30)
        ),
        "{}",
        pair.a.log()
    );
    // Reconnected, A takes the lock of the push in flight again.
    assert!(
        pair.a.wait_for_log(
            "push lock: taken again after the reconnection",
            Duration::from_secs(30)
        ),
        "{}",
        pair.a.log()
    );
    let out = finish(pair.push(&pair.b, "second"));
    assert!(
        stderr(&out).contains("Another push to app is in progress"),
        "{}",
        stderr(&out)
    );
    pair.release();
    assert_ok(&finish(first), "the push in flight");
    assert_ok(&finish(pair.push(&pair.b, "second")), "the push after");
}

#[test]
fn clones_go_on_while_the_database_is_stopped_and_pushes_resume_after() {
    let mut pair = Pair::start(
        Runtime::Smol,
        Runtime::AsyncStd,
        &["--metrics", "127.0.0.1:0"],
        false,
    );
    std::fs::remove_file(pair.a.data_dir.join("repos/app.git/hooks/pre-receive")).unwrap();
    let database_up = |server: &Server| {
        let (status, body) = http_get(server.metrics_addr(), "/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix("gitmouth_push_lock_database_up "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no gitmouth_push_lock_database_up in\n{body}"))
    };
    assert_eq!(database_up(&pair.b), "1");
    pair.db.stop();
    for server in [&pair.a, &pair.b] {
        let dest = pair.dir.join(format!("clone-{}", server.addr.port()));
        pair.git(server).ok(
            &pair.dir,
            &[
                "clone",
                "-q",
                &pair.ssh(server).url("app"),
                dest.to_str().unwrap(),
            ],
        );
    }
    let out = finish(pair.push(&pair.b, "second"));
    assert!(
        !out.status.success(),
        "a push went through without its lock"
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            " ! Pushes to app are refused for now: the push lock service is unavailable. Try again shortly."
        ),
        "{err}"
    );
    assert!(err.contains("(session "), "{err}");
    assert_eq!(database_up(&pair.b), "0");
    pair.db.start_again();
    // Reconnection is backed off up to 5 s; no restart of gitmouth.
    let start = Instant::now();
    let pushed = wait_until(Duration::from_secs(60), || {
        finish(pair.push(&pair.b, "second")).status.success()
    });
    assert!(pushed, "pushes never resumed:\n{}", pair.b.log());
    eprintln!("pushes resumed {:?} after the database", start.elapsed());
    assert!(pair.b.logged("push lock: the database is back"));
    assert_eq!(database_up(&pair.b), "1");
    pair.assert_no_password();
}

#[test]
fn a_source_penalised_on_a_is_refused_on_b_and_a_users_connections_count_on_both() {
    let pair = Pair::start(
        Runtime::AsyncStd,
        Runtime::Smol,
        &["--per-user-max-connections", "1"],
        true,
    );
    let stranger = keygen(&pair.dir, "ed25519", "stranger", "s");
    // Each failed login from 127.0.0.5 adds 5 s on A; from 15 s on, A
    // refuses the source.
    let from = |server: &Server, ip: &str, key: &std::path::Path| {
        server
            .ssh()
            .key(key)
            .option(&format!("BindAddress={ip}"))
            .arg("-T")
    };
    for _ in 0..3 {
        let err = stderr(&from(&pair.a, "127.0.0.5", &stranger).run(&[]));
        assert!(err.contains("Permission denied"), "{err}");
    }
    // B learns of it within two of its one-second rounds (a margin for a
    // loaded machine).
    let refused = wait_until(Duration::from_secs(15), || {
        let err = stderr(&from(&pair.b, "127.0.0.5", &stranger).run(&[]));
        closed_without_a_word(&err)
    });
    assert!(refused, "B never refused the source:\n{}", pair.b.log());
    assert!(pair.b.logged("source penalised"), "{}", pair.b.log());
    // Another source is still welcome on B.
    let err = stderr(&from(&pair.b, "127.0.0.6", &pair.key).run(&[]));
    assert!(err.contains("Hi alice!"), "{err}");

    // alice's one connection is a push held on A: B refuses her next one
    // once it knows.
    let first = pair.held_push(&pair.a);
    let capped = wait_until(Duration::from_secs(15), || {
        let err = stderr(&from(&pair.b, "127.0.0.7", &pair.key).run(&[]));
        err.contains("too many connections")
    });
    assert!(capped, "B never counted A's connection:\n{}", pair.b.log());
    pair.release();
    assert_ok(&finish(first), "the held push");
    // Once it ended (and A said so), B lets her in again.
    let welcome = wait_until(Duration::from_secs(30), || {
        stderr(&from(&pair.b, "127.0.0.7", &pair.key).run(&[])).contains("Hi alice!")
    });
    assert!(welcome, "B still counts the ended connection");
}

#[test]
fn a_database_unreachable_at_start_stops_the_server_naming_the_url_without_its_password() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("postgres://gitmouth:{PASSWORD}@127.0.0.1:{port}/gitmouth");
    for runtime in [Runtime::Smol, Runtime::AsyncStd] {
        let run = |extra: &[&str]| {
            let mut cmd = Command::new(runtime.binary());
            cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(scratch.path().join("data"))
                .args(["--push-lock", "postgres", "--database-url", &url])
                .args(extra)
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1")
                .current_dir(scratch.path());
            gitmouth_tests::run_with_timeout(cmd, Duration::from_secs(60))
        };
        let out = run(&[]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "cannot connect to postgres://gitmouth:********@127.0.0.1:{port}/gitmouth"
            )),
            "{err}"
        );
        assert!(!err.contains(PASSWORD), "{err}");
        assert!(!err.contains("listening"), "{err}");
        // --print-config masks it too.
        let out = run(&["--print-config"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = gitmouth_tests::stdout(&out);
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(
            text.contains(&format!(
                "database-url = \"postgres://gitmouth:********@127.0.0.1:{port}/gitmouth\""
            )),
            "{text}"
        );
    }
}
