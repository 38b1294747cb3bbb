//! The SSH transport against the real OpenSSH client: every cipher, every
//! key exchange it offers, ed25519 and RSA host keys.

#![allow(clippy::unwrap_used)]

use gitmouth_tests::{Runtime, Server, ServerOptions, keygen, per_runtime, stderr};

const CIPHERS: [&str; 5] = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
];
const MACS: [&str; 2] = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
];
/// What OpenSSH 9.2 offers of ours (it has no mlkem768x25519-sha256).
const KEX: [&str; 4] = [
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512",
];

/// Runs `ssh -v` with extra options and checks that the key exchange
/// completed with the expected algorithm and authentication was reached.
fn handshake(server: &Server, key: &std::path::Path, options: &[&str], expect: &[&str]) {
    let mut ssh = server.ssh().key(key).arg("-v");
    for o in options {
        ssh = ssh.arg(o);
    }
    let out = ssh.run(&["git-upload-pack 'x.git'"]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{options:?}: authentication cannot succeed without keys"
    );
    for needle in expect {
        assert!(
            err.contains(needle),
            "{options:?}: missing {needle:?} in:\n{err}"
        );
    }
    assert!(
        err.contains("SSH2_MSG_NEWKEYS received"),
        "{options:?}:\n{err}"
    );
}

fn kex_name_available(name: &str) -> bool {
    let out = std::process::Command::new("ssh")
        .args(["-Q", "kex"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == name)
}

per_runtime!(every_cipher_kex_and_host_key_reaches_authentication);
fn every_cipher_kex_and_host_key_reaches_authentication(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let user = keygen(dir.path(), "ed25519", "user", "someone");
    // An RSA host key in PEM PKCS#1 (as the original shipped) next to
    // the default ed25519 key, which the server generates.
    let rsa = keygen(dir.path(), "rsa", "rsa_host", "host");
    let pem = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "", "-m", "PEM", "-f"])
        .arg(&rsa)
        .output()
        .unwrap();
    assert!(pem.status.success());
    assert!(
        std::fs::read_to_string(&rsa)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let ed25519 = keygen(dir.path(), "ed25519", "ed25519_host", "host");
    let server = Server::start_with(
        runtime,
        ServerOptions {
            args: vec![
                "--host-key".into(),
                rsa.to_str().unwrap().into(),
                "--host-key".into(),
                ed25519.to_str().unwrap().into(),
            ],
            ..Default::default()
        },
    );
    let denied = [
        "Authentications that can continue: publickey",
        "Permission denied (publickey)",
    ];
    for cipher in CIPHERS {
        let macs: &[&str] = if cipher.contains("ctr") {
            &MACS
        } else {
            &MACS[..1]
        };
        for mac in macs {
            let expect = format!("kex: server->client cipher: {cipher} MAC: ");
            let opts = ["-c", cipher, "-m", mac];
            let mut all = denied.to_vec();
            all.push(&expect);
            handshake(&server, &user, &opts, &all);
        }
    }
    for kex in KEX.iter().filter(|k| kex_name_available(k)) {
        let expect = format!("kex: algorithm: {kex}");
        let opt = format!("KexAlgorithms={kex}");
        handshake(
            &server,
            &user,
            &["-o", &opt],
            &[&expect, denied[0], denied[1]],
        );
    }
    for (alg, key_type) in [
        ("ssh-ed25519", "ssh-ed25519"),
        ("rsa-sha2-512", "ssh-rsa"),
        ("rsa-sha2-256", "ssh-rsa"),
    ] {
        let expect = format!("kex: host key algorithm: {alg}");
        let shown = format!("Server host key: {key_type} SHA256:");
        let opt = format!("HostKeyAlgorithms={alg}");
        handshake(
            &server,
            &user,
            &["-o", &opt],
            &[&expect, &shown, denied[0], denied[1]],
        );
    }
    // SHA-1 RSA signatures are never offered.
    let out = server
        .ssh()
        .key(&user)
        .arg("-v")
        .option("HostKeyAlgorithms=ssh-rsa")
        .run(&["x"]);
    assert!(
        stderr(&out).contains("no matching host key type found"),
        "{}",
        stderr(&out)
    );
    let log = server.log();
    assert!(log.contains("fingerprint=SHA256:"), "{log}");
}

per_runtime!(the_default_host_key_is_generated_once_and_a_named_missing_key_is_an_error);
fn the_default_host_key_is_generated_once_and_a_named_missing_key_is_an_error(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let options = ServerOptions {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    };
    let server = Server::start_with(runtime, options.clone());
    let key = data_dir.join("ssh_host_ed25519_key");
    let meta = std::fs::metadata(&key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // ssh-keygen reads it and shows the fingerprint the server logged.
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        server.log().contains(&fingerprint),
        "{fingerprint} not in log"
    );
    let before = std::fs::read(&key).unwrap();
    drop(server);
    let again = Server::start_with(runtime, options);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key must not change"
    );
    drop(again);

    let missing = tempfile::tempdir().unwrap().path().join("nope");
    let out = std::process::Command::new(runtime.binary())
        .args(["--listen", "127.0.0.1:0", "--host-key"])
        .arg(&missing)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("does not exist"),
        "{err}"
    );
}
