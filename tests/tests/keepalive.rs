//! Server keepalives (`--keepalive-interval`, `--keepalive-count-max`)
//! against the real server binaries with the real `ssh`: a frozen client
//! is dropped, a live idle one stays.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::mux::{
    LIMIT, Master, control, foreground_muxed, lines_of, new_peer_with, peers, server_with_repo,
};
use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, keygen, kill, per_runtime, start_git_server, stderr,
    stdout, wait_until,
};

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
    let (server, key, tip) = server_with_repo(
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
    // And the connection still serves: a command through the same master,
    // over the same TCP connection.
    let before = peers(&server);
    let refs = Git::new(&dir.join("home"))
        .ssh(&ssh)
        .run(dir, &["ls-remote", &ssh.url("shared")]);
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
    assert!(refs.status.success(), "{}", stderr(&refs));
    assert!(stdout(&refs).contains(&format!("{tip}\trefs/heads/main")));
    assert!(still, "the idle client's master exited");
    assert_eq!(
        peers(&server),
        before,
        "ls-remote did not go through the idle connection:\n{}",
        server.log()
    );
}
