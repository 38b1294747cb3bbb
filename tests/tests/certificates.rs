//! SSH user certificates (`--trusted-user-ca-keys`, `--revoked-keys`) end
//! to end: certificates signed by the real `ssh-keygen -s`, offered by the
//! real `ssh`; each is accepted as its first principal (the first one the
//! access file knows, when there is one) or refused, and the server's log
//! names the reason; `source-address` is judged against the address a
//! PROXY header carries.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gitmouth_tests::{
    Runtime, Server, ServerOptions, Ssh, keygen, per_runtime, public_key, run_with_timeout,
    server_command, start_git_server, stderr,
};

/// Signs `key`'s public half with the CA `ca` (`ssh-keygen -s`), with
/// these extra arguments (`-n`, `-V`, `-O` ...); returns the certificate's
/// path (`key-cert.pub`, where `ssh -i key` finds it).
fn sign(ca: &Path, key: &Path, args: &[&str]) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "test-id"])
        .args(args)
        .arg(public_key(key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    assert!(cert.exists());
    cert
}

/// `ssh -T` with `key` (and its certificate): the user greeted, or the
/// client's stderr.
fn login(server: &Server, key: &Path) -> Result<String, String> {
    login_with(server.ssh(), key)
}

/// [`login`] with this `ssh`.
fn login_with(ssh: Ssh, key: &Path) -> Result<String, String> {
    let cert = format!("CertificateFile={}-cert.pub", key.display());
    let out = ssh
        .key(key)
        .option(&cert)
        .option("LogLevel=ERROR")
        .arg("-T")
        .run(&[]);
    let err = stderr(&out);
    match err.strip_prefix("Hi ") {
        Some(rest) if err.contains("successfully authenticated") => {
            Ok(rest.split('!').next().unwrap().to_owned())
        }
        _ => Err(err),
    }
}

/// Whether the server logged a refusal with this reason.
fn refusal_logged(server: &Server, reason: &str) -> bool {
    server.wait_for_log(
        &format!("reason=\"{reason}\""),
        std::time::Duration::from_secs(5),
    ) || server
        .log()
        .lines()
        .any(|l| l.contains("key or certificate refused") && l.contains(reason))
}

per_runtime!(certificates_are_accepted_or_refused_with_their_reason);
fn certificates_are_accepted_or_refused_with_their_reason(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca = keygen(dir, "ed25519", "ca", "ca");
    let ca2 = keygen(dir, "ecdsa", "ca2", "second ca");
    let stranger_ca = keygen(dir, "ed25519", "stranger_ca", "unknown ca");
    let known = keygen(dir, "ed25519", "known", "bob");

    let user = |name: &str, kind: &str| keygen(dir, kind, name, name);
    let good = user("good", "ed25519");
    sign(&ca, &good, &["-n", "alice,carol", "-V", "-5m:+1h"]);
    let ecdsa = user("ecdsa", "ecdsa");
    sign(&ca2, &ecdsa, &["-n", "dave", "-V", "+0s:+1h"]);
    let rsa = user("rsa", "rsa");
    sign(&ca, &rsa, &["-n", "erin", "-V", "-1m:+1h"]);
    let from_here = user("from_here", "ed25519");
    sign(
        &ca,
        &from_here,
        &[
            "-n",
            "frank",
            "-O",
            "source-address=10.0.0.0/8,127.0.0.1/32",
        ],
    );
    let from_elsewhere = user("from_elsewhere", "ed25519");
    sign(
        &ca,
        &from_elsewhere,
        &["-n", "alice", "-O", "source-address=10.0.0.0/8"],
    );
    let forced = user("forced", "ed25519");
    sign(&ca, &forced, &["-n", "alice", "-O", "force-command=ls"]);
    let expired = user("expired", "ed25519");
    sign(&ca, &expired, &["-n", "alice", "-V", "20200101:20200102"]);
    let future = user("future", "ed25519");
    sign(&ca, &future, &["-n", "alice", "-V", "+1d:+2d"]);
    let nobody = user("nobody", "ed25519");
    sign(&ca, &nobody, &["-V", "-1m:+1h"]);
    let stranger = user("stranger", "ed25519");
    sign(&stranger_ca, &stranger, &["-n", "alice"]);
    let revoked = user("revoked", "ed25519");
    let revoked_cert = sign(&ca, &revoked, &["-n", "alice"]);
    let revoked_ca = keygen(dir, "ed25519", "revoked_ca", "revoked ca");
    let by_revoked_ca = user("by_revoked_ca", "ed25519");
    sign(&revoked_ca, &by_revoked_ca, &["-n", "alice"]);
    let revoked_plain = keygen(dir, "ed25519", "revoked_plain", "zoe");

    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let cas = dir.join("user_ca");
    std::fs::write(
        &cas,
        format!(
            "# trusted\n{}{}{}",
            read(public_key(&ca)),
            read(public_key(&ca2)),
            read(public_key(&revoked_ca))
        ),
    )
    .unwrap();
    let revoked_file = dir.join("revoked");
    std::fs::write(
        &revoked_file,
        format!(
            "{}{}{}",
            read(revoked_cert),
            read(public_key(&revoked_ca)),
            read(public_key(&revoked_plain))
        ),
    )
    .unwrap();
    let options = ServerOptions::default().args(&[
        "--trusted-user-ca-keys",
        cas.to_str().unwrap(),
        "--revoked-keys",
        revoked_file.to_str().unwrap(),
    ]);
    let server = start_git_server(runtime, dir, &[&known, &revoked_plain], options);

    assert_eq!(login(&server, &good).as_deref(), Ok("alice"));
    assert!(server.wait_for_log("certificate accepted", std::time::Duration::from_secs(5)));
    assert_eq!(login(&server, &ecdsa).as_deref(), Ok("dave"));
    assert_eq!(login(&server, &rsa).as_deref(), Ok("erin"));
    assert_eq!(login(&server, &from_here).as_deref(), Ok("frank"));
    // A plain key in authorized_keys still works.
    assert_eq!(login(&server, &known).as_deref(), Ok("bob"));

    for (key, reason) in [
        (&from_elsewhere, "source address"),
        (&forced, "force-command"),
        (&expired, "expired"),
        (&future, "not yet valid"),
        (&nobody, "no principals"),
        (&stranger, "unknown CA"),
        (&revoked, "revoked"),
        (&by_revoked_ca, "revoked"),
        (&revoked_plain, "revoked"),
    ] {
        let err = login(&server, key).expect_err(reason);
        assert!(err.contains("Permission denied"), "{reason}: {err}");
        assert!(
            refusal_logged(&server, reason),
            "{reason} not logged:\n{}",
            server.log()
        );
    }
}

per_runtime!(a_certificate_file_that_does_not_parse_stops_the_start);
fn a_certificate_file_that_does_not_parse_stops_the_start(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let bad = dir.join("bad_ca");
    std::fs::write(&bad, "not a key\n").unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut cmd = server_command(runtime, dir);
    cmd.arg("--trusted-user-ca-keys").arg(&bad);
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(30));
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("trusted-user-ca-keys") && err.contains("line 1"),
        "{err}"
    );
}

per_runtime!(certificate_algorithms_follow_pubkey_accepted_algorithms);
fn certificate_algorithms_follow_pubkey_accepted_algorithms(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca = keygen(dir, "ed25519", "ca", "ca");
    let key = keygen(dir, "ed25519", "key", "key");
    sign(&ca, &key, &["-n", "alice"]);
    let options = ServerOptions::default().args(&[
        "--trusted-user-ca-keys",
        public_key(&ca).to_str().unwrap(),
        "--pubkey-accepted-algorithms",
        "-*-cert-v01@openssh.com",
    ]);
    let server = start_git_server(runtime, dir, &[], options);
    let err = login(&server, &key).unwrap_err();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        server.wait_for_log(
            "user-key algorithm not accepted",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
}

per_runtime!(source_address_is_judged_against_the_address_a_proxy_header_carries);
fn source_address_is_judged_against_the_address_a_proxy_header_carries(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca = keygen(dir, "ed25519", "ca", "ca");
    let key = keygen(dir, "ed25519", "key", "key");
    sign(
        &ca,
        &key,
        &["-n", "alice", "-O", "source-address=192.0.2.0/24"],
    );
    let options = ServerOptions::default().args(&[
        "--trusted-user-ca-keys",
        public_key(&ca).to_str().unwrap(),
        "--proxy-protocol",
        "required",
        "--proxy-trusted",
        "127.0.0.1",
        "--admission-exempt",
        "198.51.100.0/24",
    ]);
    let server = start_git_server(runtime, dir, &[], options);
    // A stand-in balancer at 127.0.0.1 says where the client is.
    let via = |client: &str| {
        let relay = format!(
            "{} --connect {} --client {client}:4000 --version 1",
            env!("CARGO_BIN_EXE_gitmouth-proxy-relay"),
            server.addr
        );
        server.ssh().option(&format!("ProxyCommand={relay}"))
    };
    assert_eq!(login_with(via("192.0.2.7"), &key).as_deref(), Ok("alice"));
    let err = login_with(via("198.51.100.7"), &key).unwrap_err();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        refusal_logged(&server, "source address"),
        "{}",
        server.log()
    );
}

per_runtime!(the_user_is_the_first_principal_the_access_file_knows);
fn the_user_is_the_first_principal_the_access_file_knows(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca = keygen(dir, "ed25519", "ca", "ca");
    let known_second = keygen(dir, "ed25519", "known_second", "k2");
    sign(&ca, &known_second, &["-n", "unknown,bob"]);
    let none_known = keygen(dir, "ed25519", "none_known", "k3");
    sign(&ca, &none_known, &["-n", "unknown,stranger"]);
    let access = dir.join("access.toml");
    std::fs::write(&access, "[[repo]]\nname = \"team/*\"\nread = [\"bob\"]\n").unwrap();
    let options = ServerOptions::default().args(&[
        "--trusted-user-ca-keys",
        public_key(&ca).to_str().unwrap(),
        "--access",
        access.to_str().unwrap(),
    ]);
    let server = start_git_server(runtime, dir, &[], options);
    assert_eq!(login(&server, &known_second).as_deref(), Ok("bob"));
    // None known: the first principal, which the rules give nothing.
    assert_eq!(login(&server, &none_known).as_deref(), Ok("unknown"));
    let hello = server
        .ssh()
        .key(&none_known)
        .option(&format!(
            "CertificateFile={}-cert.pub",
            none_known.display()
        ))
        .arg("-T")
        .run(&[]);
    assert!(
        stderr(&hello).contains("(no repositories)"),
        "{}",
        stderr(&hello)
    );
}
