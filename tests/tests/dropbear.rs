//! Dropbear's client (`dbclient`, Debian's `dropbear-bin`) against the real
//! server binaries: it connects (it sends a guessed key-exchange packet
//! right after its KEXINIT, which the server must drop when the two sides'
//! first choices differ, as RFC 4253 §7 says), clones, pushes and fetches,
//! and exits when its command ends.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, ServerOptions, per_runtime, public_key, run_with_timeout, start_git_server,
    stderr, stdout,
};

/// A failure bound only: a client that does not exit fails the test here.
const LIMIT: Duration = Duration::from_secs(30);

/// An ed25519 key in Dropbear's format, with its public half in OpenSSH's
/// format beside it (`<key>.pub`, comment `alice`) for `authorized_keys`.
fn dropbear_key(dir: &Path) -> PathBuf {
    let key = dir.join("id_dropbear");
    let made = Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&key)
        .output()
        .expect("dropbearkey (Debian package dropbear-bin) must be installed");
    assert!(made.status.success(), "dropbearkey: {}", stderr(&made));
    let shown = Command::new("dropbearkey")
        .arg("-y")
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    let line = stdout(&shown)
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .expect("dropbearkey -y prints the public key");
    std::fs::write(public_key(&key), format!("{line} alice\n")).unwrap();
    key
}

/// `dbclient` as git's ssh: no host key prompt, this key, this port.
fn dbclient_command(key: &Path, port: u16) -> String {
    format!("dbclient -y -i {} -p {port}", key.display())
}

per_runtime!(dbclient_clones_pushes_and_fetches);
fn dbclient_clones_pushes_and_fetches(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = dropbear_key(dir);
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let git = Git::new(&dir.join("home"))
        .env(
            "GIT_SSH_COMMAND",
            &dbclient_command(&key, server.addr.port()),
        )
        .env("GIT_SSH_VARIANT", "simple");
    let url = "git@127.0.0.1:shared.git";

    let src = dir.join("src");
    git.ok(dir, &["init", "-q", "-b", "main", src.to_str().unwrap()]);
    std::fs::write(src.join("README"), "through dropbear\n").unwrap();
    git.ok(&src, &["add", "README"]);
    git.ok(&src, &["commit", "-q", "-m", "first"]);
    git.ok(&src, &["push", "-q", url, "main"]);
    let tip = git.ok(&src, &["rev-parse", "HEAD"]).trim().to_owned();

    let clone = dir.join("clone");
    git.ok(dir, &["clone", "-q", url, clone.to_str().unwrap()]);
    assert_eq!(git.ok(&clone, &["rev-parse", "HEAD"]).trim(), tip);

    std::fs::write(src.join("README"), "again\n").unwrap();
    git.ok(&src, &["commit", "-q", "-am", "second"]);
    git.ok(&src, &["push", "-q", url, "main"]);
    let second = git.ok(&src, &["rev-parse", "HEAD"]).trim().to_owned();
    git.ok(&clone, &["pull", "-q", "--ff-only"]);
    assert_eq!(git.ok(&clone, &["rev-parse", "HEAD"]).trim(), second);

    let log = server.log();
    assert!(!log.contains("out of sequence"), "{log}");
    assert!(log.contains("SSH-2.0-dropbear"), "{log}");
}

per_runtime!(dbclient_exits_when_its_command_ends);
fn dbclient_exits_when_its_command_ends(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = dropbear_key(dir);
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let repo = server.data_dir.join("repos/empty.git");
    let made = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    // upload-pack's advertisement, then the client's flush (it wants
    // nothing) and EOF: git exits, and dbclient must exit too.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "printf 0000 | {} git@127.0.0.1 \"git-upload-pack 'empty.git'\"",
        dbclient_command(&key, server.addr.port())
    ));
    cmd.stdin(Stdio::null());
    let out = run_with_timeout(cmd, LIMIT);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).ends_with("0000"), "{}", stdout(&out));
}
