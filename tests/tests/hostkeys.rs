//! Host-key rotation with the real OpenSSH client and the real server
//! binaries, restarted as an operator would: a client that knows only the
//! old key learns the new one through `UpdateHostKeys=yes` (OpenSSH
//! `PROTOCOL` §2.5, the client itself editing its `known_hosts`), and once
//! the old key is retiring, clients that learned still connect and drop it,
//! and clients that know only a retiring RSA key still connect. The same
//! for an ed25519 key replaced by a new ed25519 key.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gitmouth_tests::{
    Runtime, Server, ServerOptions, keygen, per_runtime, public_key, run_with_timeout,
    start_git_server, stderr,
};

/// The name clients file the server's keys under in `known_hosts`, so that
/// a restart on another port is the same host to them.
const ALIAS: &str = "gitmouth-rotation";

/// An RSA host key in PEM (PKCS#1), as `ssh-keygen -m PEM` writes it and
/// as the original gitmouth kept its key.
fn rsa_pem_host_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "rsa", "-b", "2048", "-m", "PEM"])
        .args(["-C", "host", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    path
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` says it.
fn fingerprint(private: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public_key(private))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// The base64 body of a public key file (what a `known_hosts` line holds).
fn key_body(private: &Path) -> String {
    std::fs::read_to_string(public_key(private))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A `known_hosts` file that holds exactly these host keys for [`ALIAS`].
fn known_hosts_with(path: &Path, keys: &[&Path]) {
    let mut text = String::new();
    for key in keys {
        let public = std::fs::read_to_string(public_key(key)).unwrap();
        let mut words = public.split_whitespace();
        let (kind, body) = (words.next().unwrap(), words.next().unwrap());
        text.push_str(&format!("{ALIAS} {kind} {body}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// Which of `keys` a `known_hosts` file holds.
fn holds(known_hosts: &Path, key: &Path) -> bool {
    std::fs::read_to_string(known_hosts)
        .unwrap()
        .lines()
        .any(|line| line.starts_with(ALIAS) && line.contains(&key_body(key)))
}

/// A server whose host keys are `keys` (in service) and `retiring`.
fn serve(
    runtime: Runtime,
    scratch: &Path,
    user: &Path,
    keys: &[&Path],
    retiring: &[&Path],
) -> Server {
    let mut args = Vec::new();
    for key in keys {
        args.extend(["--host-key".to_owned(), key.display().to_string()]);
    }
    for key in retiring {
        args.extend(["--host-key-retiring".to_owned(), key.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_git_server(
        runtime,
        scratch,
        &[user],
        ServerOptions::default().args(&args),
    )
}

/// The real `ssh` checking the server against `known_hosts` strictly, as a
/// user's would, with `options` (`-o` values) and `-v`; its output.
fn ssh(server: &Server, user: &Path, known_hosts: &Path, options: &[&str]) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-v", "-p"])
        .arg(server.addr.port().to_string());
    // ssh takes the first value of each option: the test's come first.
    for option in options {
        cmd.args(["-o", option]);
    }
    for option in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        &format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null",
        &format!("HostKeyAlias={ALIAS}"),
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "ConnectTimeout=20",
    ] {
        cmd.args(["-o", option]);
    }
    cmd.arg("-i").arg(user);
    cmd.arg(format!("git@{}", server.addr.ip()));
    cmd.stdin(Stdio::null());
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// `ssh` got in: the server greeted the user by name.
fn logged_in(out: &Output) -> String {
    let text = stderr(out);
    assert!(text.contains("Hi alice!"), "{text}");
    text
}

/// `ssh` saw this host key.
fn saw_key(text: &str, kind: &str, key: &Path) {
    let line = format!("Server host key: {kind} {}", fingerprint(key));
    assert!(text.contains(&line), "{line} not in:\n{text}");
}

per_runtime!(a_client_that_knows_only_rsa_learns_ed25519_and_rsa_retires);
fn a_client_that_knows_only_rsa_learns_ed25519_and_rsa_retires(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let user = keygen(dir, "ed25519", "id_alice", "alice");
    let rsa = rsa_pem_host_key(dir, "host_rsa");
    let ed = keygen(dir, "ed25519", "host_ed25519", "host");
    let known = dir.join("known_hosts");
    let rsa_only = dir.join("known_hosts_rsa_only");

    // 1. The server has only its old RSA key; the client trusts it on
    // first use, and then knows only that key.
    let server = serve(runtime, dir, &user, &[&rsa], &[]);
    std::fs::write(&known, "").unwrap();
    let out = ssh(
        &server,
        &user,
        &known,
        &["StrictHostKeyChecking=accept-new"],
    );
    saw_key(&logged_in(&out), "ssh-rsa", &rsa);
    assert!(holds(&known, &rsa) && !holds(&known, &ed));
    std::fs::copy(&known, &rsa_only).unwrap();
    drop(server);

    // 2. The new ed25519 key is added: RSA still signs for this client (its
    // known_hosts says RSA), the server announces both, proves ed25519,
    // and the client learns it.
    let server = serve(runtime, dir, &user, &[&rsa, &ed], &[]);
    let log = server.log();
    assert!(
        log.contains(&format!("fingerprint={}", fingerprint(&ed))),
        "{log}"
    );
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    let text = logged_in(&out);
    saw_key(&text, "ssh-rsa", &rsa);
    let learned = format!("Learned new hostkey: ED25519 {}", fingerprint(&ed));
    assert!(text.contains(&learned), "{learned} not in:\n{text}");
    assert!(holds(&known, &rsa) && holds(&known, &ed));
    assert!(server.wait_for_log("host keys proven", Duration::from_secs(10)));
    // Without UpdateHostKeys nothing changes in known_hosts.
    let before = std::fs::read_to_string(&rsa_only).unwrap();
    let out = ssh(&server, &user, &rsa_only, &["UpdateHostKeys=no"]);
    saw_key(&logged_in(&out), "ssh-rsa", &rsa);
    assert_eq!(std::fs::read_to_string(&rsa_only).unwrap(), before);
    drop(server);

    // 3. RSA retires: ed25519 alone is announced and signs for clients that
    // prefer it; RSA still signs for clients that know nothing else.
    let server = serve(runtime, dir, &user, &[&ed], &[&rsa]);
    let log = server.log();
    for (key, role) in [
        (&ed, "signs key exchanges, announced"),
        (
            &rsa,
            "retiring: not announced, signs key exchanges for clients that know only it",
        ),
    ] {
        let line = format!("fingerprint={} role=\"{role}\"", fingerprint(key));
        assert!(log.contains(&line), "{line} not in:\n{log}");
    }
    // The client that learned ed25519 gets it, and drops the retired key.
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    let text = logged_in(&out);
    saw_key(&text, "ssh-ed25519", &ed);
    assert!(text.contains("Deprecating obsolete hostkey: RSA"), "{text}");
    assert!(holds(&known, &ed) && !holds(&known, &rsa));
    // It still connects with ed25519 alone.
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    saw_key(&logged_in(&out), "ssh-ed25519", &ed);
    let retiring_used = "client verified the server by a retiring host key";
    assert!(!server.log().contains(retiring_used), "{}", server.log());
    // A client pinned to RSA (it takes no other host key type) connects,
    // signed by the retiring key, and is told of nothing it can use; the
    // log says who still relies on the retiring key.
    let pinned = dir.join("known_hosts_pinned");
    std::fs::copy(&rsa_only, &pinned).unwrap();
    let out = ssh(
        &server,
        &user,
        &pinned,
        &[
            "HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256",
            "UpdateHostKeys=yes",
        ],
    );
    saw_key(&logged_in(&out), "ssh-rsa", &rsa);
    assert!(server.wait_for_log(retiring_used, Duration::from_secs(10)));
    let line = server
        .log()
        .lines()
        .find(|l| l.contains(retiring_used))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("user=alice") && line.contains(&fingerprint(&rsa)),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(&pinned).unwrap(),
        std::fs::read_to_string(&rsa_only).unwrap()
    );
    // A client that still knows only RSA connects as well (OpenSSH asks
    // first for the key types it knows), and learns ed25519 in passing.
    let out = ssh(&server, &user, &rsa_only, &["UpdateHostKeys=yes"]);
    let text = logged_in(&out);
    saw_key(&text, "ssh-rsa", &rsa);
    assert!(text.contains(&learned), "{text}");
    assert!(holds(&rsa_only, &ed) && !holds(&rsa_only, &rsa));
    drop(server);

    // 4. RSA removed: the clients that learned connect.
    let server = serve(runtime, dir, &user, &[&ed], &[]);
    for file in [&known, &rsa_only] {
        let out = ssh(&server, &user, file, &["UpdateHostKeys=yes"]);
        saw_key(&logged_in(&out), "ssh-ed25519", &ed);
    }
}

per_runtime!(an_ed25519_key_is_replaced_by_a_new_ed25519_key);
fn an_ed25519_key_is_replaced_by_a_new_ed25519_key(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let user = keygen(dir, "ed25519", "id_alice", "alice");
    let old = keygen(dir, "ed25519", "host_old", "host");
    let new = keygen(dir, "ed25519", "host_new", "host");
    let known = dir.join("known_hosts");
    let stale = dir.join("known_hosts_stale");
    known_hosts_with(&known, &[&old]);
    known_hosts_with(&stale, &[&old]);

    // 1. The new key after the old one: the old one, first of its type,
    // signs; the new one is announced and learned.
    let server = serve(runtime, dir, &user, &[&old, &new], &[]);
    let log = server.log();
    for (key, role) in [
        (&old, "signs key exchanges, announced"),
        (&new, "announced only"),
    ] {
        let line = format!("fingerprint={} role=\"{role}\"", fingerprint(key));
        assert!(log.contains(&line), "{line} not in:\n{log}");
    }
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    let text = logged_in(&out);
    saw_key(&text, "ssh-ed25519", &old);
    let learned = format!("Learned new hostkey: ED25519 {}", fingerprint(&new));
    assert!(text.contains(&learned), "{learned} not in:\n{text}");
    assert!(holds(&known, &old) && holds(&known, &new));
    drop(server);

    // 2. The new key first, the old one retiring: the new one signs, and
    // the client drops the old one.
    let server = serve(runtime, dir, &user, &[&new], &[&old]);
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    let text = logged_in(&out);
    saw_key(&text, "ssh-ed25519", &new);
    assert!(
        text.contains("Deprecating obsolete hostkey: ED25519"),
        "{text}"
    );
    assert!(holds(&known, &new) && !holds(&known, &old));
    // Only one key of a type can sign: a client that never learned the new
    // key is refused by its own ssh (as the README warns), here as when the
    // old key is simply removed.
    let out = ssh(&server, &user, &stale, &["UpdateHostKeys=yes"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&out)
    );
    drop(server);

    // 3. The old key removed.
    let server = serve(runtime, dir, &user, &[&new], &[]);
    let out = ssh(&server, &user, &known, &["UpdateHostKeys=yes"]);
    saw_key(&logged_in(&out), "ssh-ed25519", &new);
}

per_runtime!(a_key_given_twice_or_a_missing_retiring_key_is_refused_at_start);
fn a_key_given_twice_or_a_missing_retiring_key_is_refused_at_start(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "host", "host");
    let copy = dir.join("host_copy");
    std::fs::copy(&key, &copy).unwrap();
    let key = key.display().to_string();
    let copy = copy.display().to_string();
    let missing = dir.join("no_such_key").display().to_string();
    let table: [(&[&str], &str); 4] = [
        (&["--host-key", &key, "--host-key", &key], "is given twice"),
        (
            &["--host-key", &key, "--host-key-retiring", &copy],
            "is the same key as",
        ),
        (
            &["--host-key-retiring", &key, "--host-key-retiring", &copy],
            "is the same key as",
        ),
        (
            &["--host-key", &key, "--host-key-retiring", &missing],
            "does not exist",
        ),
    ];
    for (args, needle) in table {
        let mut cmd = Command::new(runtime.binary());
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("GITMOUTH_PRIVATE_KEY");
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        let text = stderr(&out);
        assert!(!out.status.success(), "{args:?} started: {text}");
        assert!(text.contains(needle), "{args:?}: {needle} not in {text}");
        assert!(!text.contains("listening"), "{text}");
    }
}
