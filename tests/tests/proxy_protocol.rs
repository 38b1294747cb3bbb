//! The PROXY protocol on the SSH listener, end to end: the real `ssh`
//! behind a relay that sends a v1 or v2 header (a stand-in balancer), raw
//! TCP clients sending headers they may not, and the real HAProxy with
//! `send-proxy-v2` in front of the server (`contrib/haproxy.cfg`).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, closed_without_a_word, keygen, per_runtime,
    start_git_server, stderr, tcp_from, wait_until,
};

const RELAY: &str = env!("CARGO_BIN_EXE_gitmouth-proxy-relay");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn options(args: &[&str]) -> ServerOptions {
    ServerOptions {
        // Admission judges the carried addresses: nothing is exempt but
        // what a test says.
        strict_admission: true,
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// `ssh` to `server` through the relay, which tells the server the
/// connection comes from `client` with a header of `version` ("1", "2").
fn ssh_as(server: &Server, client: &str, version: &str) -> Ssh {
    let relay = format!(
        "{RELAY} --connect {} --client {client} --version {version}",
        server.addr
    );
    server.ssh().option(&format!("ProxyCommand={relay}"))
}

/// Everything the peer sends until it closes (or `limit` passes: `None`).
fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

/// Fails ssh logins as `client` (a key the server does not know) until
/// the server refuses the address; returns how many logins failed first.
fn fail_until_refused(server: &Server, client: &str, version: &str, stranger: &Path) -> usize {
    for attempt in 0..8 {
        let out = ssh_as(server, client, version)
            .key(stranger)
            .arg("-T")
            .run(&[]);
        let err = stderr(&out);
        if !err.contains("Permission denied") {
            // The caller checks the server's log for the refusal itself.
            assert!(
                closed_without_a_word(&err),
                "{client}, attempt {attempt}: {err}"
            );
            return attempt;
        }
    }
    panic!("{client} was never refused; log:\n{}", server.log());
}

per_runtime!(v1_and_v2_headers_set_the_address_admission_penalties_and_logs_see);
fn v1_and_v2_headers_set_the_address_admission_penalties_and_logs_see(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    let stranger = keygen(dir, "ed25519", "stranger", "stranger");
    let server = start_git_server(
        runtime,
        dir,
        &[&alice],
        options(&[
            "--proxy-protocol",
            "required",
            "--proxy-trusted",
            "127.0.0.1",
            // Exempt by its carried address only.
            "--admission-exempt",
            "127.0.0.20",
        ]),
    );
    // Failing logins from 127.0.0.9 (v1) and 127.0.0.11 (v2), all through
    // the one balancer at 127.0.0.1: each address is penalised on its own.
    for (client, version) in [("127.0.0.9:5555", "1"), ("127.0.0.11:5556", "2")] {
        let failed = fail_until_refused(&server, client, version, &stranger);
        assert!(
            (3..=4).contains(&failed),
            "{client}: refused after {failed}"
        );
        let refusal = format!("connection refused peer={client} via=127.0.0.1:");
        assert!(
            server.wait_for_log(&refusal, Duration::from_secs(5)),
            "no {refusal:?} in:\n{}",
            server.log()
        );
    }
    // The balancer itself is not penalised: another client through it gets
    // in, by v1 and by v2, and its lines carry its own address.
    for (client, version) in [("127.0.0.10:6000", "1"), ("127.0.0.12:6001", "2")] {
        let out = ssh_as(&server, client, version).key(&alice).run(&[]);
        assert!(
            stderr(&out).contains("Hi alice!"),
            "{client}: {}",
            stderr(&out)
        );
        let kind = if version == "1" { "v1" } else { "v2" };
        let span = format!(" peer={client} via=127.0.0.1:");
        assert!(
            server.wait_for_log(&span, Duration::from_secs(5)),
            "no {span:?} in:\n{}",
            server.log()
        );
        assert!(
            server.log().contains(&format!("proxy={kind}}}"))
                || server.log().contains(&format!("proxy={kind}"))
        );
    }
    // --admission-exempt applies to the carried address.
    for attempt in 0..6 {
        let out = ssh_as(&server, "127.0.0.20:7000", "2")
            .key(&stranger)
            .arg("-T")
            .run(&[]);
        assert!(
            stderr(&out).contains("Permission denied"),
            "exempt address refused at attempt {attempt}: {}",
            stderr(&out)
        );
    }
    // Nothing was ever logged against the balancer's own address.
    assert!(
        !server.log().contains("connection refused peer=127.0.0.1:"),
        "{}",
        server.log()
    );
}

per_runtime!(a_header_from_an_untrusted_peer_ends_the_connection_before_any_ssh_byte);
fn a_header_from_an_untrusted_peer_ends_the_connection_before_any_ssh_byte(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    for mode in ["optional", "required"] {
        let server = start_git_server(
            runtime,
            dir,
            &[&alice],
            options(&["--proxy-protocol", mode, "--proxy-trusted", "127.0.0.2"]),
        );
        let to = server.addr;
        let headers = [
            gitmouth_core::proxy::v1_header("127.0.0.9:1".parse().unwrap(), to),
            gitmouth_core::proxy::v2_header("127.0.0.9:1".parse().unwrap(), to),
        ];
        for header in &headers {
            let mut stream = tcp_from(ip("127.0.0.3"), to).unwrap();
            // In required mode the server may already have closed.
            let _ = stream.write_all(header);
            let got = read_to_close(&mut stream, Duration::from_secs(10))
                .expect("the server kept the connection open");
            assert!(got.is_empty(), "{mode}: the server sent {got:?}");
        }
        let reason = match mode {
            "optional" => "PROXY header from a peer that is not a trusted proxy",
            _ => "PROXY header required, and the peer is not a trusted proxy",
        };
        let line = "connection refused before SSH peer=127.0.0.3:";
        assert!(
            server.wait_for_log(line, Duration::from_secs(5))
                && server.wait_for_log(reason, Duration::from_secs(5)),
            "{mode}: no {line:?} with {reason:?} in:\n{}",
            server.log()
        );
        // Where headers are optional, an untrusted peer's own SSH is
        // served as its own.
        if mode == "optional" {
            let out = server
                .ssh()
                .key(&alice)
                .option("BindAddress=127.0.0.3")
                .run(&[]);
            assert!(stderr(&out).contains("Hi alice!"), "{}", stderr(&out));
            assert!(server.logged(" peer=127.0.0.3:"));
        }
    }
}

per_runtime!(required_without_a_header_and_malformed_headers_are_refused);
fn required_without_a_header_and_malformed_headers_are_refused(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&alice],
        options(&[
            "--proxy-protocol",
            "required",
            "--proxy-trusted",
            "127.0.0.0/8",
            "--proxy-header-timeout",
            "2",
        ]),
    );
    // The real ssh, straight to the server: no header.
    let out = server.ssh().key(&alice).run(&[]);
    assert!(!stderr(&out).contains("Hi alice!"), "{}", stderr(&out));
    assert!(
        server.wait_for_log(
            "no PROXY header, and one is required",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    let cases: [(&[u8], &str); 4] = [
        (b"SSH-2.0-raw\r\n", "no PROXY header, and one is required"),
        (
            b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n",
            "malformed PROXY header",
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
            "malformed PROXY header",
        ),
        // Half a header, then silence: refused at the header timeout.
        (
            b"PROXY TCP4 1.2.3.4",
            "PROXY header incomplete at the header timeout",
        ),
    ];
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        let from = ip(&format!("127.0.0.{}", 40 + i));
        let mut stream = tcp_from(from, server.addr).unwrap();
        stream.write_all(bytes).unwrap();
        let got = read_to_close(&mut stream, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{bytes:?}: the server kept the connection open"));
        assert!(got.is_empty(), "{bytes:?}: the server sent {got:?}");
        let line = format!("connection refused before SSH peer={from}:");
        assert!(
            server.wait_for_log(&line, Duration::from_secs(5)),
            "{bytes:?}: no {line:?} in:\n{}",
            server.log()
        );
        let log = server.log();
        let logged = log.lines().find(|l| l.contains(&line)).unwrap();
        assert!(logged.contains(reason), "{bytes:?}: {logged}");
    }
    // A silent connection is closed at the header timeout, unanswered.
    let mut silent = tcp_from(ip("127.0.0.50"), server.addr).unwrap();
    let got = read_to_close(&mut silent, Duration::from_secs(10)).expect("kept open");
    assert!(got.is_empty());
}

#[test]
fn required_without_a_trusted_network_is_refused_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let out = gitmouth_tests::run_with_timeout(
        {
            let mut cmd = Command::new(Runtime::Smol.binary());
            cmd.args(["--listen", "127.0.0.1:0", "--proxy-protocol", "required"])
                .arg("--data-dir")
                .arg(scratch.path().join("data"))
                .current_dir(scratch.path())
                .stdin(Stdio::null());
            cmd
        },
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--proxy-trusted"), "{err}");
    assert!(!err.contains("listening"), "{err}");
    // Nothing was created: it stopped before preparing anything.
    assert!(!scratch.path().join("data").exists());
}

/// `contrib/haproxy.cfg`.
fn haproxy_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/haproxy.cfg")
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_haproxy_example_is_valid() {
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(haproxy_cfg())
        .output()
        .expect("haproxy is not installed (Debian: apt-get install haproxy)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// HAProxy, killed on drop.
struct HaProxy(std::process::Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

per_runtime!(git_through_haproxy_with_proxy_v2_shows_the_real_client);
fn git_through_haproxy_with_proxy_v2_shows_the_real_client(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&alice],
        options(&[
            "--proxy-protocol",
            "required",
            "--proxy-trusted",
            "127.0.0.1",
            // HAProxy's health checks (v2 LOCAL) are the balancer's own.
            "--admission-exempt",
            "127.0.0.1",
        ]),
    );
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut haproxy = HaProxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(haproxy_cfg())
            .env("GITMOUTH_HAPROXY_BIND", front.to_string())
            .env("GITMOUTH_HAPROXY_SERVER", server.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is not installed (Debian: apt-get install haproxy)"),
    );
    // Ready once its frontend accepts.
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(front)
            .is_ok()),
        "HAProxy never listened on {front}"
    );
    // The real client comes from 127.0.0.7; HAProxy reaches the server
    // from 127.0.0.1.
    let ssh = Ssh::new(front).key(&alice).option("BindAddress=127.0.0.7");
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "one"]);
    git.ok(&src, &["push", "-q", &ssh.url("app"), "main"]);
    let clone = dir.join("clone");
    git.ok(
        dir,
        &["clone", "-q", &ssh.url("app"), clone.to_str().unwrap()],
    );
    assert!(clone.join(".git").exists());
    // The log shows the real client, through HAProxy, for the clone.
    assert!(
        server.wait_for_log("proxy=\"v2\"", Duration::from_secs(5))
            || server.wait_for_log("proxy=v2", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    let command = log
        .lines()
        .find(|l| l.contains("git-upload-pack") && l.contains("git command"))
        .unwrap_or_else(|| panic!("no clone in the log:\n{log}"));
    assert!(
        command.contains("peer=127.0.0.7:") && command.contains("via=127.0.0.1:"),
        "{command}"
    );
    // Stopped by its process id; it exits.
    gitmouth_tests::kill(haproxy.0.id(), "TERM");
    assert!(
        wait_until(Duration::from_secs(10), || haproxy
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "HAProxy did not stop"
    );
}

#[test]
fn public_host_with_a_port_shapes_the_invalid_path_hint() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    // Behind a balancer on port 22: the scp-like form, no port.
    let server = start_git_server(
        Runtime::Smol,
        dir,
        &[&alice],
        options(&["--public-host", "git.example.org:22"]),
    );
    let out = server
        .ssh()
        .key(&alice)
        .option("LogLevel=ERROR")
        .run(&["git-upload-pack 'a/b/c.git'"]);
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "\n ! Invalid path.\n ! Syntax is: git@git.example.org:<repo>.git where <repo> is your repository's name.\n ! A name starts with a letter or digit"
        ),
        "{err}"
    );
    drop(server);
    // Without a port: the one listened on.
    let server = start_git_server(
        Runtime::Smol,
        dir,
        &[&alice],
        options(&["--public-host", "git.example.org"]),
    );
    let out = server
        .ssh()
        .key(&alice)
        .option("LogLevel=ERROR")
        .run(&["sh"]);
    let err = stderr(&out);
    let port = server.addr.port();
    assert!(
        err.contains(&format!(
            " ! Syntax is: ssh://git@git.example.org:{port}/<repo>.git where <repo> is your repository's name.\n ! Only git-upload-pack"
        )),
        "{err}"
    );
}
