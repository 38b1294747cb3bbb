//! Several sessions over one SSH connection (OpenSSH's ControlMaster), the
//! per-connection session cap (`--max-sessions`) and client keepalives
//! (`--keepalive-interval`, `--keepalive-count-max`), against the real
//! server binaries with the real `ssh` and `git`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, Ssh, keygen, kill, per_runtime, run_with_timeout,
    start_git_server, stderr, stdout, wait_until,
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

/// `ssh` sharing one master connection through `dir/cm-%C`, the master
/// staying on in the background for 30 s after its last session.
fn muxed(server: &Server, key: &Path, dir: &Path) -> Ssh {
    foreground_muxed(server, key, dir).option("ControlPersist=30")
}

/// Like [`muxed`], but the first one stays the master in the foreground
/// (no `ControlPersist`, which would fork it off after authentication).
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

/// A `git-upload-pack` session kept open: its ref advertisement was read,
/// and upload-pack waits for the client's wants on the open stdin.
struct Held {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Held {
    fn open(ssh: &Ssh) -> Result<Held, String> {
        let mut cmd = ssh.command(&["git-upload-pack 'shared.git'"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut advert = Vec::new();
            let mut buf = [0u8; 4096];
            while !advert.ends_with(b"0000") {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => advert.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(advert);
            // Keep the pipe open (and drained) while the session lives.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let mut held = Held { child, stdin };
        match rx.recv_timeout(LIMIT) {
            Ok(advert) if advert.ends_with(b"0000") => Ok(held),
            Ok(advert) => {
                let _ = held.child.kill();
                let mut err = String::new();
                let _ = held.child.stderr.take().unwrap().read_to_string(&mut err);
                Err(format!("{}{err}", String::from_utf8_lossy(&advert)))
            }
            Err(_) => Err("no ref advertisement in time".into()),
        }
    }

    /// Ends the session the way git does after `ls-remote`: a flush, EOF;
    /// waits for the client to exit and returns its status.
    fn end(mut self) -> std::process::ExitStatus {
        let mut stdin = self.stdin.take().unwrap();
        let _ = stdin.write_all(b"0000");
        drop(stdin);
        let mut status = None;
        let ended = wait_until(LIMIT, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(ended, "the held session did not end after its EOF");
        status.unwrap()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

per_runtime!(git_commands_share_one_controlmaster_connection);
fn git_commands_share_one_controlmaster_connection(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key, tip) = server_with_repo(runtime, dir, &[]);
    let before = peers(&server);
    let ssh = muxed(&server, &key, dir);
    let _master = Master(ssh.clone());
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("shared");

    // In sequence: two ls-remote, a clone.
    for _ in 0..2 {
        let refs = git.ok(dir, &["ls-remote", &url]);
        assert!(refs.contains(&format!("{tip}\trefs/heads/main")), "{refs}");
    }
    git.ok(dir, &["clone", "-q", &url, "clone-0"]);
    let head = git.ok(&dir.join("clone-0"), &["rev-parse", "HEAD"]);
    assert_eq!(head.trim(), tip);

    // Three at once.
    let clones: Vec<_> = (1..=3)
        .map(|i| {
            let git = git.clone();
            let dir = dir.to_path_buf();
            let url = url.clone();
            std::thread::spawn(move || {
                let name = format!("clone-{i}");
                let out = git.run(&dir, &["clone", "-q", &url, &name]);
                (name, out)
            })
        })
        .collect();
    for clone in clones {
        let (name, out) = clone.join().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let head = git.ok(&dir.join(&name), &["rev-parse", "HEAD"]);
        assert_eq!(head.trim(), tip, "{name}");
    }

    // All of it over one TCP connection, whose master still runs.
    let check = control(&ssh, "check");
    assert!(check.status.success(), "ssh -O check: {}", stderr(&check));
    let new: Vec<_> = peers(&server).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "connections: {new:?}\n{}", server.log());
    let exit = control(&ssh, "exit");
    assert!(exit.status.success(), "ssh -O exit: {}", stderr(&exit));
}

per_runtime!(sessions_per_connection_are_capped_by_max_sessions);
fn sessions_per_connection_are_capped_by_max_sessions(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key, _tip) = server_with_repo(runtime, dir, &["--max-sessions", "3"]);
    let before = peers(&server);
    let ssh = muxed(&server, &key, dir);
    let _master = Master(ssh.clone());
    // The master first, with no session of its own: every session below
    // is a mux client's.
    let mut cmd = ssh.clone().arg("-N").arg("-f").command(&[]);
    cmd.stdin(Stdio::null());
    let started = run_with_timeout(cmd, LIMIT);
    assert!(started.status.success(), "master: {}", stderr(&started));
    let check = control(&ssh, "check");
    assert!(check.status.success(), "ssh -O check: {}", stderr(&check));

    let mut held: Vec<Held> = (0..3)
        .map(|i| Held::open(&ssh).unwrap_or_else(|e| panic!("session {i}: {e}")))
        .collect();

    // A fourth is refused; the connection and its sessions go on.
    let mut cmd = ssh.command(&["git-upload-pack 'shared.git'"]);
    cmd.stdin(Stdio::null());
    let fourth = run_with_timeout(cmd, LIMIT);
    let err = stderr(&fourth);
    assert!(!fourth.status.success(), "a fourth session was allowed");
    assert!(
        ["administratively prohibited", "open failed", "refused"]
            .iter()
            .any(|m| err.contains(m)),
        "{err}"
    );
    assert!(!stdout(&fourth).contains("refs/heads/main"));
    let check = control(&ssh, "check");
    assert!(check.status.success(), "ssh -O check: {}", stderr(&check));

    // One ends: a new one works.
    let status = held.remove(0).end();
    assert!(status.success(), "{status}");
    let again = Held::open(&ssh).unwrap_or_else(|e| panic!("after one ended: {e}"));
    let status = again.end();
    assert!(status.success(), "{status}");
    for h in held {
        let status = h.end();
        assert!(status.success(), "{status}");
    }

    let new: Vec<_> = peers(&server).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "connections: {new:?}\n{}", server.log());
    let exit = control(&ssh, "exit");
    assert!(exit.status.success(), "ssh -O exit: {}", stderr(&exit));
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
