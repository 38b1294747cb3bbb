//! Limits on git commands, with the real server, `git` and `ssh`:
//! `--max-commands` (a clone past it is told the server is busy, and
//! succeeds once the push ahead of it ends), `--push-lock-wait` (a second
//! push waits, told who holds the lock, and completes after the first; with
//! a short wait it is refused), a push waiting for the lock at SIGTERM is
//! told the server is restarting as git understands it, and SIGHUP re-reads
//! the keys without dropping a push in flight.
//!
//! The first push is held in flight by a `pre-receive` hook in the
//! server's repository that waits for a file the test creates, so the test
//! knows the push is under way (the hook wrote its marker) without
//! guessing; the second is known to wait from the server's log.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, hold_pushes, keygen, kill, per_runtime,
    start_git_server, wait_until,
};

/// A server whose repository `app` has one commit, its hook holding the
/// next push until `dir/go` exists (and saying so in `dir/started`).
struct Held {
    server: Server,
    git: Git,
    ssh: Ssh,
    src: PathBuf,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Held {
    fn start(runtime: Runtime, args: &[&str]) -> Held {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_path_buf();
        let key = keygen(&dir, "ed25519", "id", "alice");
        let server = start_git_server(runtime, &dir, &[&key], ServerOptions::default().args(args));
        let ssh = server.ssh().key(&key);
        let git = Git::new(&dir.join("home")).ssh(&ssh);
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        git.ok(&src, &["init", "-q", "-b", "main"]);
        git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "first"]);
        git.ok(&src, &["push", "-q", &ssh.url("app"), "main"]);
        hold_pushes(&server.data_dir.join("repos/app.git"), &dir);
        Held {
            server,
            git,
            ssh,
            src,
            dir,
            _scratch: scratch,
        }
    }

    /// Starts a push of a new commit on `branch`, in the background.
    fn push(&self, branch: &str) -> Child {
        self.git
            .ok(&self.src, &["checkout", "-q", "-B", branch, "main"]);
        self.git
            .ok(&self.src, &["commit", "-q", "--allow-empty", "-m", branch]);
        let mut cmd = self
            .git
            .command(&self.src, &["push", &self.ssh.url("app"), branch]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    /// Starts a push and waits until its hook holds it.
    fn held_push(&self) -> Child {
        let push = self.push("held");
        assert!(
            wait_until(Duration::from_secs(30), || self
                .dir
                .join("started")
                .exists()),
            "the push never reached the hook:\n{}",
            self.server.log()
        );
        push
    }

    /// Lets the held push go on.
    fn release(&self) {
        std::fs::write(self.dir.join("go"), "").unwrap();
    }

    /// The repository's commit for `branch`, if it has the branch.
    fn remote(&self, branch: &str) -> String {
        let repo = self.server.data_dir.join("repos/app.git");
        self.git.ok(&repo, &["rev-parse", branch])
    }

    fn local(&self, branch: &str) -> String {
        self.git.ok(&self.src, &["rev-parse", branch])
    }
}

/// Waits for a background git, within a limit.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            gitmouth_tests::kill_group(pid, "KILL");
            panic!("git did not finish");
        }
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
}

per_runtime!(past_max_commands_a_clone_is_told_the_server_is_busy);
fn past_max_commands_a_clone_is_told_the_server_is_busy(runtime: Runtime) {
    let held = Held::start(runtime, &["--max-commands", "1"]);
    let push = held.held_push();
    let dest = held.dir.join("clone");
    let out = held.git.fails(
        &held.dir,
        &["clone", &held.ssh.url("app"), dest.to_str().unwrap()],
    );
    let err = text(&out);
    assert!(
        err.contains(
            " ! The server is busy (too many git commands at once); try again in a moment."
        ),
        "{err}"
    );
    // git read it as the server's own words, not as a problem with the
    // user's access rights.
    assert!(err.contains("remote error: The server is busy"), "{err}");
    assert!(!dest.join(".git").exists());
    held.release();
    assert_ok(&finish(push), "the held push");
    held.git.ok(
        &held.dir,
        &["clone", "-q", &held.ssh.url("app"), dest.to_str().unwrap()],
    );
    assert!(dest.join(".git").exists());
}

per_runtime!(a_second_push_waits_for_the_lock_then_completes);
fn a_second_push_waits_for_the_lock_then_completes(runtime: Runtime) {
    let held = Held::start(runtime, &["--push-lock-wait", "30"]);
    let first = held.held_push();
    let second = held.push("second");
    assert!(
        held.server
            .wait_for_log("push lock held: waiting in turn", Duration::from_secs(30)),
        "the second push never waited:\n{}",
        held.server.log()
    );
    held.release();
    assert_ok(&finish(first), "the first push");
    let out = finish(second);
    assert_ok(&out, "the waiting push");
    let err = text(&out);
    assert!(
        err.contains("-----> Waiting for the push to app by alice (started "),
        "{err}"
    );
    assert_eq!(held.remote("held"), held.local("held"));
    assert_eq!(held.remote("second"), held.local("second"));
}

per_runtime!(a_push_whose_wait_runs_out_is_refused);
fn a_push_whose_wait_runs_out_is_refused(runtime: Runtime) {
    let held = Held::start(runtime, &["--push-lock-wait", "1"]);
    let first = held.held_push();
    let out = finish(held.push("second"));
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("-----> Waiting for the push to app by alice"),
        "{err}"
    );
    assert!(
        err.contains(" ! Another push to app is in progress (started "),
        "{err}"
    );
    assert!(
        err.contains("remote error: Another push to app is in progress"),
        "{err}"
    );
    held.release();
    assert_ok(&finish(first), "the first push");
    assert_eq!(held.remote("held"), held.local("held"));
    // Nothing is left queued: the next push runs at once.
    assert_ok(&finish(held.push("third")), "a later push");
}

per_runtime!(a_push_waiting_for_the_lock_at_sigterm_is_told_the_server_restarts);
fn a_push_waiting_for_the_lock_at_sigterm_is_told_the_server_restarts(runtime: Runtime) {
    let mut held = Held::start(runtime, &["--push-lock-wait", "60"]);
    let first = held.held_push();
    let second = held.push("second");
    assert!(
        held.server
            .wait_for_log("push lock held: waiting in turn", Duration::from_secs(30))
    );
    kill(held.server.pid(), "TERM");
    let out = finish(second);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains(" ! The server is restarting; try again in a moment."),
        "{err}"
    );
    assert!(
        err.contains("remote error: The server is restarting"),
        "{err}"
    );
    // The push in flight finishes, and the server exits 0.
    held.release();
    assert_ok(&finish(first), "the push in flight");
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = held.server.child_try_wait();
        status.is_some()
    });
    let status = status.expect("the server exited");
    assert!(status.success(), "{status:?}\n{}", held.server.log());
}

per_runtime!(sighup_rereads_the_keys_without_dropping_a_push);
fn sighup_rereads_the_keys_without_dropping_a_push(runtime: Runtime) {
    let mut held = Held::start(runtime, &[]);
    let push = held.held_push();
    kill(held.server.pid(), "HUP");
    assert!(
        held.server.wait_for_log(
            "SIGHUP: re-reading the configuration and the authorized keys",
            Duration::from_secs(10)
        ),
        "{}",
        held.server.log()
    );
    held.release();
    assert_ok(&finish(push), "the push in flight at SIGHUP");
    assert_eq!(held.remote("held"), held.local("held"));
    assert!(held.server.child_try_wait().is_none(), "the server ended");
    // And it goes on serving.
    assert_ok(&finish(held.push("after")), "a push after SIGHUP");
}
