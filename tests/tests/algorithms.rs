//! Algorithm lists (`--kex-algorithms`, `--ciphers`, `--macs`,
//! `--host-key-algorithms`, `--pubkey-accepted-algorithms`), against the
//! real server binaries: bad settings are refused at start, before anything
//! listens, with a message naming the setting and the name; good ones
//! decide what real `ssh` can negotiate.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use gitmouth_tests::{
    Runtime, ServerOptions, keygen, per_runtime, run_with_timeout, start_git_server, stderr,
};

/// Runs the server with `args` (and a data directory of its own), which
/// must refuse to start.
fn refused(runtime: Runtime, args: &[&str]) -> (String, bool) {
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(runtime.binary());
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.path().join("data"))
        .args(args)
        .env("NO_COLOR", "1");
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(30));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    (text, out.status.success())
}

per_runtime!(bad_algorithm_settings_are_refused_before_anything_listens);
fn bad_algorithm_settings_are_refused_before_anything_listens(runtime: Runtime) {
    let table: [(&[&str], &[&str]); 9] = [
        (
            &["--kex-algorithms", "curve25519-sha256,bogus-kex"],
            &["--kex-algorithms", "unknown algorithm \"bogus-kex\""],
        ),
        (
            &["--kex-algorithms", "+diffie-hellman-group14-sha1"],
            &["--kex-algorithms", "diffie-hellman-group14-sha1"],
        ),
        (&["--kex-algorithms", ""], &["--kex-algorithms", "empty"]),
        (
            &["--kex-algorithms", "-*"],
            &["--kex-algorithms", "leaves no algorithm"],
        ),
        (
            &["--ciphers", "3des-cbc"],
            &["--ciphers", "unknown algorithm \"3des-cbc\""],
        ),
        (
            &["--macs", "^hmac-sha1"],
            &["--macs", "unknown algorithm \"hmac-sha1\""],
        ),
        (
            &["--host-key-algorithms", "ssh-rsa"],
            &["--host-key-algorithms", "unknown algorithm \"ssh-rsa\""],
        ),
        (
            // The generated host key is ed25519: it signs no RSA.
            &["--host-key-algorithms", "rsa-sha2-512"],
            &["--host-key-algorithms", "no host key can sign"],
        ),
        (
            &["--pubkey-accepted-algorithms", "ssh-dss"],
            &[
                "--pubkey-accepted-algorithms",
                "unknown algorithm \"ssh-dss\"",
            ],
        ),
    ];
    for (args, wanted) in table {
        let (text, ok) = refused(runtime, args);
        assert!(!ok, "{args:?} was accepted:\n{text}");
        for w in wanted {
            assert!(text.contains(w), "{args:?}: no {w:?} in:\n{text}");
        }
        assert!(!text.contains("listening"), "{args:?} listened:\n{text}");
    }
}

per_runtime!(the_lists_decide_what_ssh_can_negotiate);
fn the_lists_decide_what_ssh_can_negotiate(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ed = keygen(dir, "ed25519", "id_ed", "alice");
    let ec = keygen(dir, "ecdsa", "id_ec", "bob");
    let server = start_git_server(
        runtime,
        dir,
        &[&ed, &ec],
        ServerOptions::default().args(&[
            "--kex-algorithms",
            "-sntrup*,mlkem*",
            "--ciphers",
            "^aes256-gcm@openssh.com",
            "--pubkey-accepted-algorithms",
            "-ecdsa-*",
        ]),
    );
    // Offered: curve25519 only, of the key exchanges; a client that wants
    // only post-quantum ones gets none.
    let pq = server
        .ssh()
        .key(&ed)
        .option("KexAlgorithms=sntrup761x25519-sha512@openssh.com")
        .run(&[]);
    assert!(!pq.status.success());
    assert!(
        stderr(&pq).contains("no matching key exchange method"),
        "{}",
        stderr(&pq)
    );
    let classical = server
        .ssh()
        .key(&ed)
        .option("KexAlgorithms=curve25519-sha256")
        .run(&[]);
    assert!(
        stderr(&classical).contains("Hi alice"),
        "{}",
        stderr(&classical)
    );
    // ECDSA user keys are no longer accepted; ed25519 ones are.
    let ecdsa = server.ssh().key(&ec).run(&[]);
    assert!(
        stderr(&ecdsa).contains("Permission denied"),
        "{}",
        stderr(&ecdsa)
    );
    // The cipher put first is the one chosen when the client offers it
    // too (the client's order decides; it offers this one first as well).
    let verbose = server
        .ssh()
        .key(&ed)
        .arg("-v")
        .option("Ciphers=aes256-gcm@openssh.com,chacha20-poly1305@openssh.com")
        .run(&[]);
    assert!(
        stderr(&verbose).contains("cipher: aes256-gcm@openssh.com"),
        "{}",
        stderr(&verbose)
    );
}
