//! Limits that never turn away a real user, against the real server with
//! the real `ssh`, at the defaults (admission applies to loopback here:
//! 127.0.0.N stand for different sources):
//!
//! - a burst from one address waits its turn instead of being dropped;
//! - connections held unauthenticated, from one address or from a crowd
//!   of them, do not keep another address's login waiting;
//! - one user cannot take every connection (`--per-user-max-connections`);
//! - a connection that never opens a channel is closed
//!   (`--unused-connection-timeout`).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Runtime, Server, ServerOptions, Ssh, keygen, per_runtime, start_git_server, stderr, tcp_from,
    wait_until,
};

fn strict(args: &[&str]) -> ServerOptions {
    ServerOptions {
        strict_admission: true,
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn greeting(user: &str) -> String {
    format!(
        "Hi {user}! You've successfully authenticated, but gitmouth does not provide shell access.\n"
    )
}

/// `ssh -T` from `from` with `key`.
fn ssh_t(server: &Server, key: &Path, from: u8) -> std::process::Command {
    let mut cmd = server
        .ssh()
        .key(key)
        // Waiting in admission's queues counts against the login grace
        // time (120 s), not against the client's patience.
        .connect_timeout(110)
        .option(&format!("BindAddress=127.0.0.{from}"))
        .arg("-T")
        .command(&[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// How many connections the server has taken in or put to wait so far.
fn arrived(server: &Server) -> usize {
    server
        .log()
        .lines()
        .filter(|l| {
            l.ends_with(" connected") || l.contains("waiting for a place among the startups")
        })
        .count()
}

/// Holds `count` unauthenticated connections from `from`, each having
/// sent its version line and nothing more.
fn hold(server: &Server, from: u8, count: usize, held: &mut Vec<TcpStream>) {
    for _ in 0..count {
        let mut s = tcp_from(source(from), server.addr).unwrap();
        s.write_all(b"SSH-2.0-Idle_1.0\r\n").unwrap();
        held.push(s);
    }
}

per_runtime!(a_hundred_concurrent_logins_from_one_address_each_get_the_greeting);
fn a_hundred_concurrent_logins_from_one_address_each_get_the_greeting(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir.path(), &[&key], strict(&[]));
    // A CI runner behind NAT: 100 at once, ten times the per-source cap.
    let children: Vec<Child> = (0..100)
        .map(|_| ssh_t(&server, &key, 7).spawn().unwrap())
        .collect();
    let mut failures = Vec::new();
    for child in children {
        let out = wait_or_kill(child, Duration::from_secs(120));
        let err = stderr(&out);
        if out.status.code() != Some(1) || !err.ends_with(&greeting("alice")) {
            failures.push(format!("{:?}: {err}", out.status));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 100 failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(
        server
            .log()
            .contains("waiting for a place among the startups"),
        "the burst must have gone past the cap and waited"
    );
}

per_runtime!(idle_unauthenticated_crowds_do_not_keep_another_address_waiting);
fn idle_unauthenticated_crowds_do_not_keep_another_address_waiting(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir.path(), &[&key], strict(&[]));
    let mut held = Vec::new();
    // One address holds its maximum (10) of idle startups...
    hold(&server, 2, 10, &mut held);
    let login = |from: u8| {
        let start = Instant::now();
        let out = wait_or_kill(
            ssh_t(&server, &key, from).spawn().unwrap(),
            Duration::from_secs(60),
        );
        (start.elapsed(), out)
    };
    assert!(wait_until(Duration::from_secs(30), || arrived(&server) >= 10));
    let (took, out) = login(100);
    assert!(
        stderr(&out).ends_with(&greeting("alice")),
        "{}",
        stderr(&out)
    );
    assert!(
        took < Duration::from_secs(2),
        "one holder: the login took {took:?}"
    );
    // ...and 50 addresses hold 500 between them, far past FULL (100).
    for n in 0..50 {
        hold(&server, 10 + n, 10, &mut held);
    }
    assert!(
        wait_until(Duration::from_secs(60), || arrived(&server) >= 511),
        "the server took in {} of 511:\n{}",
        arrived(&server),
        server.log()
    );
    let (took, out) = login(101);
    assert!(
        stderr(&out).ends_with(&greeting("alice")),
        "{}",
        stderr(&out)
    );
    assert!(
        took < Duration::from_secs(2),
        "a crowd: the login took {took:?}"
    );
    assert!(
        server
            .log()
            .contains("making way for a connection from a source holding fewer"),
        "at FULL, the newcomer took an idle startup's place"
    );
    drop(held);
}

per_runtime!(one_user_cannot_take_every_connection);
fn one_user_cannot_take_every_connection(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let alice = keygen(dir.path(), "ed25519", "alice", "alice");
    let bob = keygen(dir.path(), "ed25519", "bob", "bob");
    let server = start_git_server(
        runtime,
        dir.path(),
        &[&alice, &bob],
        ServerOptions::default().args(&["--per-user-max-connections", "2"]),
    );
    // Alice holds two connections with no channel (`ssh -N`).
    let hold = |key: &Path| {
        let mut cmd = server.ssh().key(key).arg("-N").command(&[]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut first = hold(&alice);
    let mut second = hold(&alice);
    assert!(wait_until(Duration::from_secs(30), || {
        server.log().matches("admission: authenticated").count() >= 2
    }));
    // A third is ended right after authentication, and says why.
    let out = server.ssh().key(&alice).arg("-T").run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(
        err.contains("too many connections for user alice (at most 2 at once)"),
        "{err}"
    );
    // Another user is served.
    let out = server.ssh().key(&bob).arg("-T").run(&[]);
    assert!(stderr(&out).ends_with(&greeting("bob")), "{}", stderr(&out));
    // Once one of hers ends, alice is served again.
    let closed = server.log().matches("connection closing").count();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        server.log().matches("connection closing").count() > closed
    }));
    let out = server.ssh().key(&alice).arg("-T").run(&[]);
    assert!(
        stderr(&out).ends_with(&greeting("alice")),
        "{}",
        stderr(&out)
    );
    // Not a failure: the source is not penalised.
    assert!(!server.log().contains("penalised"));
    second.kill().unwrap();
    second.wait().unwrap();
}

per_runtime!(a_connection_without_a_channel_is_closed_after_the_unused_timeout);
fn a_connection_without_a_channel_is_closed_after_the_unused_timeout(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "ed25519", "id", "alice");
    let server = start_git_server(
        runtime,
        dir.path(),
        &[&key],
        ServerOptions::default().args(&["--unused-connection-timeout", "2"]),
    );
    // `ssh -N` opens no channel, and its keepalives every second are not use.
    let mut cmd = Ssh::new(server.addr)
        .key(&key)
        .option("ServerAliveInterval=1")
        .arg("-N")
        .command(&[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let out = wait_or_kill(cmd.spawn().unwrap(), Duration::from_secs(60));
    let err = stderr(&out);
    assert!(err.contains("unused connection timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    // A command is use: served as ever.
    let out = server.ssh().key(&key).arg("-T").run(&[]);
    assert!(
        stderr(&out).ends_with(&greeting("alice")),
        "{}",
        stderr(&out)
    );
}

/// Waits for `child` to exit (killing it after `limit`), with its output.
fn wait_or_kill(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            gitmouth_tests::kill(pid, "KILL");
            rx.recv().unwrap().unwrap()
        }
    }
}
