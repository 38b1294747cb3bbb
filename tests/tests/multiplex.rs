//! Several sessions over one SSH connection (OpenSSH's ControlMaster) and
//! the per-connection session cap (`--max-sessions`), against the real
//! server binaries with the real `ssh` and `git`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Child, Stdio};

use gitmouth_tests::mux::{LIMIT, Master, control, muxed, peers, server_with_repo};
use gitmouth_tests::{
    Git, Runtime, Ssh, per_runtime, run_with_timeout, stderr, stdout, wait_until,
};

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

    // A fourth is refused; the connection and its sessions go on. (Told
    // "refused", OpenSSH's mux client falls back to a connection of its
    // own: `ProxyCommand=false` makes that fail, so that what this shows
    // is the refusal alone.)
    let fourth_ssh = server
        .ssh()
        .key(&key)
        .option("ControlMaster=no")
        .option(&format!("ControlPath={}/cm-%C", dir.display()))
        .option("ProxyCommand=false");
    let mut cmd = fourth_ssh.command(&["git-upload-pack 'shared.git'"]);
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
    assert!(
        !stdout(&fourth).contains("refs/heads/main"),
        "{}\n{err}",
        stdout(&fourth)
    );
    assert!(
        server
            .log()
            .contains("too many sessions on this connection"),
        "{}",
        server.log()
    );
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
