//! Algorithm lists (`--kex-algorithms`, `--ciphers`, `--macs`,
//! `--host-key-algorithms`, `--pubkey-accepted-algorithms`), against the
//! real server binaries: bad settings are refused at start, before anything
//! listens, with a message naming the setting and the name; good ones
//! decide what real `ssh` can negotiate; `--legacy-algorithms` adds the
//! NIST curves, the MODP groups and the encrypt-and-MAC HMACs, each of
//! which real `ssh` then negotiates and moves git data through.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use gitmouth_tests::{
    Git, Runtime, ServerOptions, keygen, keygen_bits, per_runtime, pseudo_random_bytes, public_key,
    run_with_timeout, start_git_server, stderr,
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

const LEGACY_KEX: [&str; 5] = [
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group14-sha256",
];
const LEGACY_MACS: [&str; 2] = ["hmac-sha2-256", "hmac-sha2-512"];

per_runtime!(legacy_algorithms_only_when_asked_for);
fn legacy_algorithms_only_when_asked_for(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ed = keygen(dir, "ed25519", "id_ed", "alice");
    let server = start_git_server(runtime, dir, &[&ed], ServerOptions::default());
    for kex in LEGACY_KEX {
        let out = server
            .ssh()
            .key(&ed)
            .option(&format!("KexAlgorithms={kex}"))
            .run(&[]);
        assert!(
            stderr(&out).contains("no matching key exchange method"),
            "{kex} offered by default: {}",
            stderr(&out)
        );
    }
    for mac in LEGACY_MACS {
        let out = server
            .ssh()
            .key(&ed)
            .option("Ciphers=aes128-ctr")
            .option(&format!("MACs={mac}"))
            .run(&[]);
        assert!(
            stderr(&out).contains("no matching MAC"),
            "{mac} offered by default: {}",
            stderr(&out)
        );
    }
    drop(server);

    // A list setting may name one without the switch.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ed = keygen(dir, "ed25519", "id_ed", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&ed],
        ServerOptions::default().args(&[
            "--kex-algorithms",
            "+ecdh-sha2-nistp256",
            "--macs",
            "+hmac-sha2-256",
        ]),
    );
    let out = server
        .ssh()
        .key(&ed)
        .arg("-v")
        .option("KexAlgorithms=ecdh-sha2-nistp256")
        .option("Ciphers=aes128-ctr")
        .option("MACs=hmac-sha2-256")
        .run(&[]);
    let text = stderr(&out);
    assert!(text.contains("Hi alice"), "{text}");
    assert!(
        text.contains("kex: algorithm: ecdh-sha2-nistp256"),
        "{text}"
    );
    assert!(text.contains("MAC: hmac-sha2-256 compression"), "{text}");
    let out = server
        .ssh()
        .key(&ed)
        .option("KexAlgorithms=ecdh-sha2-nistp384")
        .run(&[]);
    assert!(
        stderr(&out).contains("no matching key exchange method"),
        "{}",
        stderr(&out)
    );
}

per_runtime!(legacy_algorithms_negotiate_with_real_ssh_and_carry_git);
fn legacy_algorithms_negotiate_with_real_ssh_and_carry_git(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ed = keygen(dir, "ed25519", "id_ed", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&ed],
        ServerOptions::default().args(&["--legacy-algorithms"]),
    );
    assert!(server.log().contains("legacy=true"), "{}", server.log());
    // Each key exchange, as real ssh negotiates it.
    for kex in LEGACY_KEX {
        let out = server
            .ssh()
            .key(&ed)
            .arg("-v")
            .option(&format!("KexAlgorithms={kex}"))
            .run(&[]);
        let text = stderr(&out);
        assert!(text.contains("Hi alice"), "{kex}: {text}");
        assert!(
            text.contains(&format!("kex: algorithm: {kex}")),
            "{kex}: {text}"
        );
    }
    // The defaults still come first: a modern client gets post-quantum.
    let out = server.ssh().key(&ed).arg("-v").run(&[]);
    assert!(
        stderr(&out).contains("kex: algorithm: mlkem768x25519-sha256")
            || stderr(&out).contains("kex: algorithm: sntrup761x25519-sha512"),
        "{}",
        stderr(&out)
    );

    // A push and a clone of a repository big enough for many packets and a
    // re-key-free stream, through each encrypt-and-MAC HMAC with each CTR
    // cipher, on the NIST and MODP exchanges.
    let git = Git::new(&dir.join("home"));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("blob"), pseudo_random_bytes(9, 2 << 20)).unwrap();
    git.ok(&src, &["add", "blob"]);
    git.ok(&src, &["commit", "-q", "-m", "first"]);
    let head = git.ok(&src, &["rev-parse", "HEAD"]);
    let cases = [
        ("ecdh-sha2-nistp256", "aes128-ctr", "hmac-sha2-256"),
        (
            "diffie-hellman-group14-sha256",
            "aes256-ctr",
            "hmac-sha2-512",
        ),
    ];
    for (i, (kex, cipher, mac)) in cases.into_iter().enumerate() {
        let ssh = server
            .ssh()
            .key(&ed)
            .option(&format!("KexAlgorithms={kex}"))
            .option(&format!("Ciphers={cipher}"))
            .option(&format!("MACs={mac}"));
        let git = Git::new(&dir.join("home")).ssh(&ssh);
        let name = format!("legacy{i}");
        git.ok(&src, &["push", "-q", &server.ssh().url(&name), "main"]);
        let clone = dir.join(format!("clone{i}"));
        git.ok(
            dir,
            &[
                "clone",
                "-q",
                &server.ssh().url(&name),
                clone.to_str().unwrap(),
            ],
        );
        assert_eq!(
            git.ok(&clone, &["rev-parse", "HEAD"]),
            head,
            "{kex} {cipher} {mac}"
        );
        assert_eq!(
            std::fs::read(clone.join("blob")).unwrap(),
            std::fs::read(src.join("blob")).unwrap()
        );
    }
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` says it.
fn fingerprint(public: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

per_runtime!(ecdsa_host_keys_serve_clients_that_ask_for_them);
fn ecdsa_host_keys_serve_clients_that_ask_for_them(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ed = keygen(dir, "ed25519", "id_ed", "alice");
    let host_ed = keygen(dir, "ed25519", "host_ed", "host");
    let hosts = [
        (
            "ecdsa-sha2-nistp256",
            keygen_bits(dir, "ecdsa", 256, "host_p256", "host"),
        ),
        (
            "ecdsa-sha2-nistp384",
            keygen_bits(dir, "ecdsa", 384, "host_p384", "host"),
        ),
        (
            "ecdsa-sha2-nistp521",
            keygen_bits(dir, "ecdsa", 521, "host_p521", "host"),
        ),
    ];
    let mut args = vec!["--host-key".to_owned(), host_ed.display().to_string()];
    for (_, key) in &hosts {
        args.extend(["--host-key".to_owned(), key.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_git_server(runtime, dir, &[&ed], ServerOptions::default().args(&args));
    for (_, key) in &hosts {
        assert!(
            server.log().contains(&fingerprint(&public_key(key))),
            "{}",
            server.log()
        );
    }
    // A client that asks for an ECDSA host key gets it, signed so that
    // real ssh verifies it; one that asks for nothing special gets ed25519.
    for (alg, key) in &hosts {
        let out = server
            .ssh()
            .key(&ed)
            .arg("-v")
            .option(&format!("HostKeyAlgorithms={alg}"))
            .run(&[]);
        let text = stderr(&out);
        assert!(text.contains("Hi alice"), "{alg}: {text}");
        assert!(
            text.contains(&format!(
                "Server host key: {alg} {}",
                fingerprint(&public_key(key))
            )),
            "{alg}: {text}"
        );
    }
    let out = server.ssh().key(&ed).arg("-v").run(&[]);
    assert!(
        stderr(&out).contains(&format!(
            "Server host key: ssh-ed25519 {}",
            fingerprint(&public_key(&host_ed))
        )),
        "{}",
        stderr(&out)
    );
}
