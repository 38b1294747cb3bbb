//! `/metrics`, `/health` and `/ready` on the real server (`--metrics
//! 127.0.0.1:0`), with the real `ssh` and `git`: each metric is scraped
//! before and after the event that moves it. (API calls are counted by
//! the driver where it carries them; their route labels are unit-tested
//! in `io::metrics`, and API mode's traffic in `api_mode.rs`.)

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, hold_pushes, http_get, keygen, kill, metric, per_runtime,
    start_git_server, stderr, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

fn scrape(server: &Server) -> String {
    let (status, body) = http_get(server.metrics_addr(), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `series` has grown past `before` (scraping, never
/// sleeping blindly); the last scrape.
fn grows(server: &Server, series: &str, before: &str) -> String {
    let was = metric(before, series);
    let mut body = String::new();
    let grew = wait_until(WAIT, || {
        body = scrape(server);
        metric(&body, series) > was
    });
    assert!(grew, "{series} stayed at {was}:\n{body}\n{}", server.log());
    body
}

/// Waits until the gauge `series` is back at zero: a connection the
/// client has already left may still be closing on the server, and a
/// "before" scrape taken then would count it.
fn settles(server: &Server, series: &str) {
    let mut body = String::new();
    let settled = wait_until(WAIT, || {
        body = scrape(server);
        metric(&body, series) == 0.0
    });
    assert!(
        settled,
        "{series} never came back to 0:\n{body}\n{}",
        server.log()
    );
}

struct Setup {
    server: Server,
    git: Git,
    key: PathBuf,
    src: PathBuf,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

fn setup(runtime: Runtime, args: &[&str]) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let key = keygen(&dir, "ed25519", "id", "alice");
    let mut all = vec!["--metrics", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = start_git_server(runtime, &dir, &[&key], ServerOptions::default().args(&all));
    let git = Git::new(&dir.join("home")).ssh(&server.ssh().key(&key));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "first"]);
    Setup {
        server,
        git,
        key,
        src,
        dir,
        _scratch: scratch,
    }
}

fn push(s: &Setup) -> Child {
    let url = s.server.ssh().key(&s.key).url("app");
    let mut cmd = s.git.command(&s.src, &["push", &url, "main"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

per_runtime!(every_metric_moves_when_its_event_happens);
fn every_metric_moves_when_its_event_happens(runtime: Runtime) {
    let s = setup(runtime, &["--push-lock-wait", "1"]);
    let server = &s.server;
    assert_eq!(http_get(server.metrics_addr(), "/health").0, 200);
    assert_eq!(http_get(server.metrics_addr(), "/ready").0, 200);
    assert_eq!(http_get(server.metrics_addr(), "/nothing").0, 404);
    let ssh = server.ssh().key(&s.key);

    // A push, then a clone, then a clone of nothing.
    let before = scrape(server);
    s.git.ok(&s.src, &["push", "-q", &ssh.url("app"), "main"]);
    let clone = s.dir.join("clone");
    s.git.ok(
        &s.dir,
        &["clone", "-q", &ssh.url("app"), clone.to_str().unwrap()],
    );
    let missing = s.dir.join("missing");
    s.git.fails(
        &s.dir,
        &["clone", "-q", &ssh.url("nope"), missing.to_str().unwrap()],
    );
    let after = grows(
        server,
        r#"gitmouth_git_operations_total{command="git-upload-pack",outcome="refused"}"#,
        &before,
    );
    for series in [
        "gitmouth_connections_accepted_total",
        r#"gitmouth_authentications_total{method="publickey",result="accepted"}"#,
        r#"gitmouth_git_operations_total{command="git-receive-pack",outcome="ok"}"#,
        r#"gitmouth_git_operations_total{command="git-upload-pack",outcome="ok"}"#,
        r#"gitmouth_relayed_bytes_total{direction="in"}"#,
        r#"gitmouth_relayed_bytes_total{direction="out"}"#,
        "gitmouth_handshake_seconds_count",
        "gitmouth_provisioning_seconds_count",
        "gitmouth_session_seconds_count",
    ] {
        assert!(
            metric(&after, series) > metric(&before, series),
            "{series} did not move:\n{after}"
        );
    }

    // A key nobody has.
    let stranger = keygen(&s.dir, "ed25519", "stranger", "s");
    let before = scrape(server);
    let out = server.ssh().key(&stranger).arg("-T").run(&[]);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    grows(
        server,
        r#"gitmouth_authentications_total{method="publickey",result="rejected"}"#,
        &before,
    );

    // A connection that says nothing is unauthenticated while it lasts
    // (the stranger's connection may still be closing: wait for it).
    settles(
        server,
        r#"gitmouth_connections_in_progress{state="unauthenticated"}"#,
    );
    let before = scrape(server);
    let idle = std::net::TcpStream::connect(server.addr).unwrap();
    grows(
        server,
        r#"gitmouth_connections_in_progress{state="unauthenticated"}"#,
        &before,
    );
    drop(idle);

    // A push held in its hook is an authenticated connection; a second
    // push waits for its lock (1 s), then is refused.
    hold_pushes(&server.data_dir.join("repos/app.git"), &s.dir);
    s.git
        .ok(&s.src, &["commit", "-q", "--allow-empty", "-m", "second"]);
    settles(
        server,
        r#"gitmouth_connections_in_progress{state="authenticated"}"#,
    );
    let before = scrape(server);
    let first = push(&s);
    assert!(wait_until(WAIT, || s.dir.join("started").exists()));
    grows(
        server,
        r#"gitmouth_connections_in_progress{state="authenticated"}"#,
        &before,
    );
    let second = push(&s);
    grows(server, "gitmouth_push_lock_waits_total", &before);
    grows(server, "gitmouth_push_lock_refusals_total", &before);
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    std::fs::write(s.dir.join("go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

per_runtime!(a_client_that_answers_no_keepalive_is_counted);
fn a_client_that_answers_no_keepalive_is_counted(runtime: Runtime) {
    // Its own server: a 1 s keepalive would also end a busy machine's
    // slow but live clients in the test above.
    let s = setup(
        runtime,
        &["--keepalive-interval", "1", "--keepalive-count-max", "1"],
    );
    let server = &s.server;
    let ssh = server.ssh().key(&s.key);
    s.git.ok(&s.src, &["push", "-q", &ssh.url("app"), "main"]);
    // A client that stops answering keepalives (its ssh is stopped once
    // git's advertisement arrived, so it had authenticated).
    let before = scrape(server);
    let mut cmd = ssh.command(&["git-upload-pack", "'app'"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    let mut first_byte = [0u8; 1];
    client
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first_byte)
        .unwrap();
    kill(client.id(), "STOP");
    grows(server, "gitmouth_keepalive_timeouts_total", &before);
    kill(client.id(), "CONT");
    let _ = client.kill();
    let _ = client.wait();
}

per_runtime!(refusals_and_penalties_are_counted);
fn refusals_and_penalties_are_counted(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "ed25519", "stranger", "s");
    let server = Server::start_with(
        runtime,
        ServerOptions {
            strict_admission: true,
            args: vec!["--metrics".into(), "127.0.0.1:0".into()],
            ..Default::default()
        },
    );
    let before = scrape(&server);
    // Each failed login adds a penalty; past a few, the source is refused.
    let mut refused = false;
    for _ in 0..8 {
        let out = server.ssh().key(&stranger).arg("-T").run(&[]);
        if !stderr(&out).contains("Permission denied") {
            refused = true;
            break;
        }
    }
    assert!(refused, "{}", server.log());
    let after = grows(
        &server,
        r#"gitmouth_connections_refused_total{reason="source penalised for earlier failures"}"#,
        &before,
    );
    assert!(metric(&after, "gitmouth_penalties") >= 1.0, "{after}");
}

per_runtime!(ready_turns_503_during_a_drain);
fn ready_turns_503_during_a_drain(runtime: Runtime) {
    let s = setup(runtime, &[]);
    let ssh = s.server.ssh().key(&s.key);
    s.git.ok(&s.src, &["push", "-q", &ssh.url("app"), "main"]);
    hold_pushes(&s.server.data_dir.join("repos/app.git"), &s.dir);
    s.git
        .ok(&s.src, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let held = push(&s);
    assert!(wait_until(WAIT, || s.dir.join("started").exists()));
    let metrics = s.server.metrics_addr();
    assert_eq!(http_get(metrics, "/ready").0, 200);
    kill(s.server.pid(), "TERM");
    assert!(
        wait_until(WAIT, || http_get(metrics, "/ready").0 == 503),
        "{}",
        s.server.log()
    );
    // Alive all the same, while the push finishes.
    assert_eq!(http_get(metrics, "/health").0, 200);
    std::fs::write(s.dir.join("go"), "").unwrap();
    let out = held.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

per_runtime!(api_calls_are_counted_and_an_unreachable_api_is_not_ready);
fn api_calls_are_counted_and_an_unreachable_api_is_not_ready(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let host_key = keygen(dir.path(), "ed25519", "host", "");
    let user = keygen(dir.path(), "ed25519", "user", "alice");
    // A port nothing listens on: every API call fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let env = [
        ("APISERVER_KEY", "k"),
        ("APISERVER_PROTOCOL", "http"),
        ("APISERVER_HOSTNAME", "127.0.0.1"),
        ("APISERVER_PORT", port.as_str()),
    ];
    let server = Server::start_with(
        runtime,
        ServerOptions {
            args: [
                "--metrics",
                "127.0.0.1:0",
                "--host-key",
                host_key.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
            ..Default::default()
        },
    );
    let metrics = server.metrics_addr();
    assert_eq!(http_get(metrics, "/ready").0, 200);
    let lookups =
        r#"gitmouth_api_calls_total{route="/internal/lookupUserByPublicKey",status="error"}"#;
    let mut body = String::new();
    let unready = wait_until(WAIT, || {
        let _ = server.ssh().key(&user).arg("-T").run(&[]);
        body = scrape(&server);
        http_get(metrics, "/ready").0 == 503
    });
    assert!(unready, "{body}\n{}", server.log());
    assert!(metric(&body, lookups) >= 1.0, "{body}");
}
