//! Draining on SIGTERM, with the real server, `git` and `ssh`: a push in
//! flight when the server is told to stop completes and the server exits
//! 0; new connections are refused meanwhile; a second signal stops at once,
//! telling the user; a command still running at the drain timeout is
//! stopped with a message.
//!
//! The push is held in flight by a `pre-receive` hook in the server's
//! repository that waits for a file the test creates, so the test knows
//! the push is under way (the hook wrote its marker) without guessing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, hold_pushes, keygen, kill, per_runtime, start_git_server,
    stderr, wait_until,
};

/// A repository with one pushed commit, its hook holding the next push
/// until `dir/go` exists (and saying so in `dir/started`).
struct Held {
    server: Server,
    git: Git,
    src: std::path::PathBuf,
    dir: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

fn held_push(runtime: Runtime, args: &[&str]) -> (Held, Child) {
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
    git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let mut cmd = git.command(&src, &["push", &ssh.url("app"), "main"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let push = cmd.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || dir.join("started").exists()),
        "the push never reached the hook"
    );
    (
        Held {
            server,
            git,
            src,
            dir,
            _scratch: scratch,
        },
        push,
    )
}

fn exit_status(server: &mut Server, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = server.child_try_wait();
        status.is_some()
    });
    status
}

fn remote_head(held: &Held) -> String {
    let repo = held.server.data_dir.join("repos/app.git");
    held.git.ok(&repo, &["rev-parse", "main"])
}

fn refused(server: &Server, dir: &Path) -> bool {
    let key = dir.join("id");
    let out = server.ssh().key(&key).run(&[]);
    !out.status.success() && stderr(&out).contains("Connection refused")
}

per_runtime!(a_push_in_flight_at_sigterm_completes_and_the_server_exits_0);
fn a_push_in_flight_at_sigterm_completes_and_the_server_exits_0(runtime: Runtime) {
    let (mut held, push) = held_push(runtime, &[]);
    kill(held.server.pid(), "TERM");
    assert!(
        held.server
            .wait_for_log("draining", Duration::from_secs(10)),
        "{}",
        held.server.log()
    );
    // Nobody new gets in while the drain lasts.
    assert!(refused(&held.server, &held.dir), "a new connection got in");
    assert!(exit_status(&mut held.server, Duration::from_millis(200)).is_none());
    std::fs::write(held.dir.join("go"), "").unwrap();
    let out = push.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = exit_status(&mut held.server, Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}\n{}", held.server.log());
    assert_eq!(
        remote_head(&held),
        held.git.ok(&held.src, &["rev-parse", "main"])
    );
    assert!(held.server.logged("drained"), "{}", held.server.log());
}

per_runtime!(a_second_signal_stops_at_once_and_tells_the_user);
fn a_second_signal_stops_at_once_and_tells_the_user(runtime: Runtime) {
    let (mut held, push) = held_push(runtime, &[]);
    kill(held.server.pid(), "TERM");
    assert!(
        held.server
            .wait_for_log("draining", Duration::from_secs(10))
    );
    kill(held.server.pid(), "INT");
    let out = push.wait_with_output().unwrap();
    std::fs::write(held.dir.join("go"), "").unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("The server is restarting"), "{text}");
    let status = exit_status(&mut held.server, Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}");
    assert!(held.server.logged("second signal"), "{}", held.server.log());
}

per_runtime!(a_command_still_running_at_the_drain_timeout_is_stopped);
fn a_command_still_running_at_the_drain_timeout_is_stopped(runtime: Runtime) {
    let (mut held, push) = held_push(runtime, &["--drain-timeout", "1"]);
    kill(held.server.pid(), "TERM");
    let out = push.wait_with_output().unwrap();
    std::fs::write(held.dir.join("go"), "").unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("The server is restarting"), "{text}");
    let status = exit_status(&mut held.server, Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}");
    assert!(held.server.logged("drain timeout"), "{}", held.server.log());
}
