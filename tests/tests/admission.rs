//! Admission control and deadlines against the real server, over TCP.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Runtime, Server, ServerOptions, closed_without_a_word, keygen, per_runtime, stderr,
};

fn strict(args: &[&str]) -> ServerOptions {
    ServerOptions {
        strict_admission: true,
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Reads until the peer closes (or `limit` passes); true if it closed.
fn closes_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

per_runtime!(a_source_that_keeps_failing_is_refused_for_a_while);
fn a_source_that_keeps_failing_is_refused_for_a_while(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "ed25519", "stranger", "s");
    let server = Server::start_with(runtime, strict(&[]));
    // Each failed login adds 5 s; from 15 s on, the source is refused
    // before the version exchange.
    let mut refused_at = None;
    for attempt in 0..6 {
        let out = server.ssh().key(&stranger).arg("-T").run(&[]);
        let err = stderr(&out);
        if err.contains("Permission denied") {
            continue;
        }
        assert!(closed_without_a_word(&err), "attempt {attempt}: {err}");
        refused_at = Some(attempt);
        break;
    }
    let refused_at = refused_at.expect("never refused");
    assert!(
        (3..=4).contains(&refused_at),
        "refused at attempt {refused_at}"
    );
    assert!(
        server.wait_for_log("source penalised", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

per_runtime!(stalled_connections_all_close_by_the_grace_time);
fn stalled_connections_all_close_by_the_grace_time(runtime: Runtime) {
    // CVE-2024-6387's test: many connections stalled at different points
    // all close within the grace time plus a second.
    let server = Server::start_with(
        runtime,
        ServerOptions {
            args: vec!["--login-grace-time".into(), "2".into()],
            ..Default::default()
        },
    );
    let start = Instant::now();
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        match i % 4 {
            0 => {}
            1 => s.write_all(b"SSH-2.0-stall\r\n").unwrap(),
            2 => s.write_all(b"SSH-2.0-stall\r\n\0\0\0").unwrap(),
            _ => s.write_all(b"SSH-2.").unwrap(),
        }
        conns.push(s);
    }
    let deadline = Duration::from_secs(2) + Duration::from_secs(1) + start.elapsed();
    for (i, mut s) in conns.into_iter().enumerate() {
        let left = deadline.saturating_sub(start.elapsed()) + Duration::from_millis(500);
        assert!(
            closes_within(&mut s, left),
            "connection {i} still open after {:?}",
            start.elapsed()
        );
    }
    // And the server still serves.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"SSH-2.0-probe\r\n").unwrap();
    let mut line = [0u8; 8];
    if let Err(e) = s.read_exact(&mut line) {
        panic!(
            "probe failed: {e}\n{}",
            server
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(&line, b"SSH-2.0-");
}

per_runtime!(past_its_cap_a_source_waits_unread_then_past_its_queue_is_refused);
fn past_its_cap_a_source_waits_unread_then_past_its_queue_is_refused(runtime: Runtime) {
    let server = Server::start_with(
        runtime,
        strict(&[
            "--per-source-max-startups",
            "3",
            "--per-source-startup-queue",
            "1",
            "--max-startups",
            "100:30:200",
        ]),
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let mut line = [0u8; 8];
        s.read_exact(&mut line).unwrap();
        held.push(s);
    }
    // The fourth waits, unread: nothing is said to it yet.
    let mut fourth = TcpStream::connect(server.addr).unwrap();
    assert!(gitmouth_tests::wait_until(Duration::from_secs(20), || {
        server
            .log()
            .contains("waiting for a place among the startups")
    }));
    // The fifth is past the queue: closed before anything is said.
    let mut fifth = TcpStream::connect(server.addr).unwrap();
    assert!(closes_within(&mut fifth, Duration::from_secs(5)));
    // Once a held one ends, the waiting one starts.
    drop(held.pop());
    fourth
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut line = [0u8; 8];
    fourth.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"SSH-2.0-");
}
