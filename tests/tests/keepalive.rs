//! Server keepalives (`--keepalive-interval`, `--keepalive-count-max`)
//! against the real server binaries with the real `ssh`: a frozen client
//! is dropped, a live idle one stays.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, keygen, kill, per_runtime, run_with_timeout,
    start_git_server, wait_until,
};

/// A failure bound only: every wait below ends on an event.
const LIMIT: Duration = Duration::from_secs(30);

/// The peers (`127.0.0.1:PORT`) of every connection the server logged: one
/// per TCP connection.
fn peers(server: &Server) -> BTreeSet<String> {
    server
        .log()
        .lines()
        .filter_map(|l| l.split("conn{peer=").nth(1))
        .filter_map(|rest| rest.split('}').next())
        .map(str::to_owned)
        .collect()
}

/// The peer of the connection whose log line contains `needle`, the first
/// such line not of a peer in `known`.
fn new_peer_with(server: &Server, needle: &str, known: &BTreeSet<String>) -> Option<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split("conn{peer=").nth(1))
        .filter_map(|rest| rest.split('}').next())
        .find(|p| !known.contains(*p))
        .map(str::to_owned)
}

/// Log lines of connection `peer` containing `needle`.
fn lines_of(server: &Server, peer: &str, needle: &str) -> usize {
    let span = format!("conn{{peer={peer}}}");
    server
        .log()
        .lines()
        .filter(|l| l.contains(&span) && l.contains(needle))
        .count()
}

/// A git server with repository `shared` pushed (one commit on `main`),
/// reached with `key`; returns the server, the key and the pushed commit.
fn server_with_repo(
    runtime: Runtime,
    dir: &Path,
    args: &[&str],
) -> (Server, std::path::PathBuf, String) {
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default().args(args));
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let src = dir.join("src");
    git.ok(dir, &["init", "-q", "-b", "main", src.to_str().unwrap()]);
    std::fs::write(src.join("README"), "one connection, many sessions\n").unwrap();
    git.ok(&src, &["add", "README"]);
    git.ok(&src, &["commit", "-q", "-m", "first"]);
    git.ok(&src, &["push", "-q", &ssh.url("shared"), "main"]);
    let tip = git.ok(&src, &["rev-parse", "HEAD"]).trim().to_owned();
    (server, key, tip)
}

/// `ssh` sharing one master connection through `dir/cm-%C`; the first one
/// stays the master in the foreground (no `ControlPersist`, which would
/// fork it off after authentication).
fn foreground_muxed(server: &Server, key: &Path, dir: &Path) -> Ssh {
    server
        .ssh()
        .key(key)
        .option("ControlMaster=auto")
        .option(&format!("ControlPath={}/cm-%C", dir.display()))
}

/// `ssh -O <command>` for the master of `ssh`.
fn control(ssh: &Ssh, command: &str) -> std::process::Output {
    let mut cmd = ssh.clone().arg("-O").arg(command).command(&[]);
    cmd.stdin(Stdio::null());
    run_with_timeout(cmd, LIMIT)
}

/// Stops the master (`ssh -O exit`) when dropped, even on a failure.
struct Master(Ssh);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = control(&self.0, "exit");
    }
}

/// Starts `ssh -N` (authenticated, no channel) and returns it with the peer
/// of its connection, once the server logged its authentication.
fn idle_client(server: &Server, ssh: Ssh) -> (Child, String) {
    let known = peers(server);
    let mut cmd = ssh.arg("-N").command(&[]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut peer = None;
    let authenticated = wait_until(LIMIT, || {
        peer = new_peer_with(server, "authenticated", &known);
        peer.is_some()
    });
    if !authenticated {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ssh -N never authenticated:\n{}", server.log());
    }
    (child, peer.unwrap())
}

per_runtime!(a_frozen_client_is_dropped_after_unanswered_keepalives);
fn a_frozen_client_is_dropped_after_unanswered_keepalives(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--keepalive-interval", "2", "--keepalive-count-max", "2"]),
    );
    let (mut client, peer) = idle_client(&server, server.ssh().key(&key));
    kill(client.id(), "STOP");
    let frozen = Instant::now();
    // Probes at 2 s and 4 s go unanswered; at 6 s it is dead.
    let dropped = wait_until(Duration::from_secs(20), || {
        lines_of(&server, &peer, "dead client") > 0
    });
    let after = frozen.elapsed();
    let closed = wait_until(LIMIT, || lines_of(&server, &peer, "connection closing") > 0);
    kill(client.id(), "CONT");
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        dropped,
        "the frozen client was never dropped:\n{}",
        server.log()
    );
    assert!(
        after < Duration::from_secs(12),
        "dropped only after {after:?}:\n{}",
        server.log()
    );
    assert!(closed, "{}", server.log());
}

per_runtime!(a_live_idle_client_answers_keepalives_and_stays);
fn a_live_idle_client_answers_keepalives_and_stays(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key, _tip) = server_with_repo(
        runtime,
        dir,
        &["--keepalive-interval", "2", "--keepalive-count-max", "2"],
    );
    let ssh = foreground_muxed(&server, &key, dir);
    let _master = Master(ssh.clone());
    // The master: this ssh -N, which we hold.
    let (mut client, peer) = idle_client(&server, ssh.clone());
    // Five probes (about 10 s): more than the two a silent client is
    // allowed, so each was answered.
    let probed = wait_until(Duration::from_secs(40), || {
        lines_of(&server, &peer, "keepalive") >= 5
    });
    let still = client.try_wait().unwrap().is_none();
    let _ = control(&ssh, "exit");
    let _ = client.kill();
    let _ = client.wait();
    assert!(probed, "fewer than 5 keepalives:\n{}", server.log());
    assert_eq!(
        lines_of(&server, &peer, "dead client"),
        0,
        "{}",
        server.log()
    );
    assert!(still, "the idle client's master exited");
}
