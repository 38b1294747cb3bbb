//! Who gets in: keys from `authorized_keys` (re-read while the server runs
//! and on SIGHUP), every user key type OpenSSH makes, and what a user who
//! gets in without a git command sees.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use gitmouth_tests::{
    Runtime, Server, ServerOptions, keygen, keygen_bits, kill, per_runtime, run_with_timeout,
    start_git_server, stderr, wait_until, write_authorized_keys,
};

const DENIED: &str = "Permission denied (publickey)";

fn greeting(user: &str) -> String {
    format!(
        "Hi {user}! You've successfully authenticated, but gitmouth does not provide shell access.\n"
    )
}

/// `ssh -T` with `key`: Ok(stderr) when the greeting came back (the key
/// was accepted), Err(stderr) otherwise.
fn shell(server: &Server, key: &Path) -> Result<String, String> {
    let out = server
        .ssh()
        .key(key)
        .option("LogLevel=ERROR")
        .arg("-T")
        .run(&[]);
    let err = stderr(&out);
    if err.contains("successfully authenticated") {
        assert_eq!(out.status.code(), Some(1), "the greeting exits 1:\n{err}");
        Ok(err)
    } else {
        Err(err)
    }
}

fn accepted(server: &Server, key: &Path) -> bool {
    shell(server, key).is_ok()
}

per_runtime!(every_user_key_type_is_greeted_by_its_comment);
fn every_user_key_type_is_greeted_by_its_comment(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let keys = [
        keygen(dir, "ed25519", "ed25519", "ed@example.test"),
        keygen(dir, "ecdsa", "ecdsa256", "ecdsa-256 user"),
        keygen_bits(dir, "ecdsa", 384, "ecdsa384", "ecdsa384"),
        keygen_bits(dir, "ecdsa", 521, "ecdsa521", "ecdsa521"),
        keygen(dir, "rsa", "rsa2048", "rsa2048"),
        keygen_bits(dir, "rsa", 3072, "rsa3072", "rsa3072"),
    ];
    let refs: Vec<&Path> = keys.iter().map(|k| k.as_path()).collect();
    let server = start_git_server(runtime, dir, &refs, ServerOptions::default());
    for (key, user) in keys.iter().zip([
        "ed@example.test",
        "ecdsa-256 user",
        "ecdsa384",
        "ecdsa521",
        "rsa2048",
        "rsa3072",
    ]) {
        let err = shell(&server, key).unwrap_or_else(|e| panic!("{user}: refused:\n{e}"));
        assert_eq!(err, greeting(user), "{user}");
    }
}

per_runtime!(a_shell_gets_the_greeting_and_a_pty_is_refused);
fn a_shell_gets_the_greeting_and_a_pty_is_refused(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());

    // `ssh -T git@host`: exactly the greeting on stderr, exit 1,
    // nothing on stdout.
    let out = server
        .ssh()
        .key(&key)
        .option("LogLevel=ERROR")
        .arg("-T")
        .run(&[]);
    assert_eq!(stderr(&out), greeting("alice"));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);

    // Plain `ssh git@host` from a terminal asks for a pty: it is
    // refused, and the shell request that follows gets the greeting.
    let ssh = server.ssh().key(&key);
    let line = format!("{} git@{}", ssh.git_ssh_command(), server.addr.ip());
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    let out = run_with_timeout(script, Duration::from_secs(60));
    let all = format!("{}{}", gitmouth_tests::stdout(&out), stderr(&out));
    assert!(all.contains("PTY allocation request failed"), "{all}");
    assert!(all.contains(greeting("alice").trim_end()), "{all}");
    assert_eq!(out.status.code(), Some(1), "{all}");

    // `ssh -tt` makes a refused pty fatal in the client (OpenSSH's
    // clientloop.c): it says so and fails; the server stays usable.
    let out = server.ssh().key(&key).arg("-tt").run(&[]);
    let err = stderr(&out);
    assert!(err.contains("PTY allocation request failed"), "{err}");
    assert!(!out.status.success(), "{err}");
    assert_eq!(shell(&server, &key).unwrap(), greeting("alice"));
}

per_runtime!(unknown_keys_are_denied);
fn unknown_keys_are_denied(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let known = keygen(dir, "ed25519", "known", "alice");
    let unknown = keygen(dir, "ed25519", "unknown", "mallory");
    let unknown_rsa = keygen(dir, "rsa", "unknown_rsa", "mallory");
    let server = start_git_server(runtime, dir, &[&known], ServerOptions::default());
    for key in [&unknown, &unknown_rsa] {
        for remote in [&[][..], &["git-upload-pack 'x.git'"][..]] {
            let out = server.ssh().key(key).arg("-T").run(remote);
            let err = stderr(&out);
            assert!(err.contains(DENIED), "{err}");
            assert_eq!(out.status.code(), Some(255), "{err}");
        }
    }
    // No key at all.
    let out = server
        .ssh()
        .option("PubkeyAuthentication=no")
        .arg("-T")
        .run(&[]);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!out.status.success());
    // Several keys: the unknown ones are skipped, the known one is used.
    let out = server
        .ssh()
        .key(&unknown)
        .key(&unknown_rsa)
        .key(&known)
        .option("LogLevel=ERROR")
        .arg("-T")
        .run(&[]);
    assert_eq!(stderr(&out), greeting("alice"));
}

per_runtime!(authorized_keys_changes_apply_without_a_restart);
fn authorized_keys_changes_apply_without_a_restart(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    let bob = keygen(dir, "ecdsa", "bob", "bob");
    let server = start_git_server(runtime, dir, &[&alice], ServerOptions::default());
    let file = server.data_dir.join("authorized_keys");
    assert!(accepted(&server, &alice));
    assert!(!accepted(&server, &bob));

    // Added while running: usable within a few seconds.
    write_authorized_keys(&file, &[&alice, &bob]);
    assert!(
        wait_until(Duration::from_secs(6), || accepted(&server, &bob)),
        "a key added to authorized_keys is still refused"
    );
    assert_eq!(shell(&server, &bob).unwrap(), greeting("bob"));

    // Removed: refused again.
    write_authorized_keys(&file, &[&bob]);
    assert!(
        wait_until(Duration::from_secs(6), || !accepted(&server, &alice)),
        "a key removed from authorized_keys is still accepted"
    );
    assert!(accepted(&server, &bob));
    let out = server.ssh().key(&alice).arg("-T").run(&[]);
    assert!(stderr(&out).contains(DENIED), "{}", stderr(&out));

    // The file disappearing leaves nobody in (not the last keys).
    std::fs::remove_file(&file).unwrap();
    assert!(
        wait_until(Duration::from_secs(6), || !accepted(&server, &bob)),
        "keys of a deleted authorized_keys file are still accepted"
    );
    // And coming back works.
    write_authorized_keys(&file, &[&alice]);
    assert!(wait_until(Duration::from_secs(6), || accepted(
        &server, &alice
    )));
}

per_runtime!(sighup_rereads_authorized_keys);
fn sighup_rereads_authorized_keys(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // Same type and same comment length: the two lines are the same
    // length, so the rewritten file has the same size, inode and (set
    // back below) modification time; only a re-read can notice it.
    let old = keygen(dir, "ed25519", "old", "user1");
    let new = keygen(dir, "ed25519", "new", "user2");
    let server = start_git_server(runtime, dir, &[&old], ServerOptions::default());
    let file = server.data_dir.join("authorized_keys");
    assert!(accepted(&server, &old));

    let stamp = dir.join("stamp");
    std::fs::write(&stamp, "").unwrap();
    let touch = |args: &[&Path]| {
        let ok = std::process::Command::new("touch")
            .arg("-r")
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    touch(&[&file, &stamp]);
    let before = std::fs::metadata(&file).unwrap();
    let line = std::fs::read_to_string(dir.join("new.pub")).unwrap();
    assert_eq!(line.len() as u64, before.len());
    std::fs::write(&file, &line).unwrap(); // in place: same inode
    touch(&[&stamp, &file]);
    let after = std::fs::metadata(&file).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()),
        (
            before.ino(),
            before.len(),
            before.mtime(),
            before.mtime_nsec()
        )
    );

    kill(server.pid(), "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || accepted(&server, &new)),
        "after SIGHUP the new key is still refused"
    );
    assert!(
        !accepted(&server, &old),
        "after SIGHUP the old key still works"
    );
    // The server is alive and well after the signal.
    assert_eq!(shell(&server, &new).unwrap(), greeting("user2"));
}

per_runtime!(a_pub_file_named_by_authorized_keys_option_works);
fn a_pub_file_named_by_authorized_keys_option_works(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "rsa", "id", "from-pub-file");
    let other = keygen(dir, "ed25519", "other", "other");
    let pub_file = gitmouth_tests::public_key(&key);
    // A key in the data directory's default file must not count when
    // another file is named.
    write_authorized_keys(&dir.join("data/authorized_keys"), &[&other]);
    let server = Server::start_with(
        runtime,
        ServerOptions::default()
            .data_dir(&dir.join("data"))
            .args(&["--authorized-keys", pub_file.to_str().unwrap()]),
    );
    assert_eq!(shell(&server, &key).unwrap(), greeting("from-pub-file"));
    assert!(!accepted(&server, &other));
}

per_runtime!(a_silent_connection_is_closed_at_the_login_grace_time);
fn a_silent_connection_is_closed_at_the_login_grace_time(runtime: Runtime) {
    use std::io::Read;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--login-grace-time", "2"]),
    );
    let start = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The banner comes at once; then nothing from us until the server
    // gives up. Reading to the end returns when it closes.
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let waited = start.elapsed();
    assert!(
        got.starts_with(b"SSH-2.0-"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(4),
        "closed after {waited:?}, the grace time is 2 s"
    );
    // A real client in time is unaffected.
    assert_eq!(shell(&server, &key).unwrap(), greeting("alice"));
}

per_runtime!(authorized_keys_options_comments_and_line_endings);
fn authorized_keys_options_comments_and_line_endings(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let names = [
        "from",
        "command",
        "restricted",
        "windows",
        "bare",
        "rsa_sha1",
    ];
    let keys: Vec<_> = names
        .iter()
        .map(|n| {
            let kind = if *n == "rsa_sha1" { "rsa" } else { "ed25519" };
            keygen(dir, kind, n, n)
        })
        .collect();
    let line = |i: usize| {
        let text = std::fs::read_to_string(gitmouth_tests::public_key(&keys[i])).unwrap();
        text.trim_end().to_owned()
    };
    let blob = |i: usize| line(i).split(' ').take(2).collect::<Vec<_>>().join(" ");
    let file = dir.join("data/authorized_keys");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let text = [
        "# gitmouth keys".to_owned(),
        String::new(),
        // A restriction the client (127.0.0.1) does not meet, and one
        // gitmouth cannot enforce (the line is skipped).
        format!("from=\"10.0.0.0/8\" {}", line(0)),
        format!("command=\"/bin/false\" {}", line(1)),
        // Restrictions on what gitmouth never offers: fine.
        format!("restrict,no-pty,no-port-forwarding {}", line(2)),
        // Edited on Windows.
        format!("{}\r", line(3)),
        // No comment: the user is the key's fingerprint.
        format!("{}\r", blob(4)),
        // The same key again: the first line wins.
        format!("{} someone-else", blob(2)),
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP== old".to_owned(),
        "not a key at all".to_owned(),
        line(5),
    ]
    .join("\n");
    std::fs::write(&file, text + "\n").unwrap();
    let server = Server::start_with(
        runtime,
        ServerOptions::default().data_dir(&dir.join("data")),
    );
    assert!(!accepted(&server, &keys[0]), "from= must not be ignored");
    assert!(!accepted(&server, &keys[1]), "command= must not be ignored");
    assert_eq!(shell(&server, &keys[2]).unwrap(), greeting("restricted"));
    assert_eq!(shell(&server, &keys[3]).unwrap(), greeting("windows"));
    let fingerprint = {
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(gitmouth_tests::public_key(&keys[4]))
            .output()
            .unwrap();
        gitmouth_tests::stdout(&out)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(shell(&server, &keys[4]).unwrap(), greeting(&fingerprint));
    // An RSA key signing with SHA-1 (`ssh-rsa`) is refused; the same
    // key with SHA-2 gets in.
    let out = server
        .ssh()
        .key(&keys[5])
        .option("PubkeyAcceptedAlgorithms=ssh-rsa")
        .arg("-T")
        .run(&[]);
    assert!(stderr(&out).contains(DENIED), "{}", stderr(&out));
    assert_eq!(shell(&server, &keys[5]).unwrap(), greeting("rsa_sha1"));
}
