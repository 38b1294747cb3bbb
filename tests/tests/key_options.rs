//! `authorized_keys` options end to end, with the real `ssh` and
//! `ssh-keygen` on both runtimes: `from=` judged against the client's
//! address (the one a PROXY header carries, behind a balancer),
//! `expiry-time=`, `restrict` and the `no-*` flags accepted, a `command=`
//! line skipped with a warning naming it. A refusal is the usual publickey
//! failure for the client, and the reason is in the server's log.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitmouth_tests::{
    Runtime, Server, ServerOptions, Ssh, keygen, per_runtime, public_key, stderr,
};

const RELAY: &str = env!("CARGO_BIN_EXE_gitmouth-proxy-relay");

/// A key's `authorized_keys` line with `options` in front.
fn line(options: &str, key: &Path) -> String {
    let public = std::fs::read_to_string(public_key(key)).unwrap();
    if options.is_empty() {
        public.trim_end().to_owned()
    } else {
        format!("{options} {}", public.trim_end())
    }
}

/// Starts a server whose `authorized_keys` holds `lines`.
fn start(runtime: Runtime, dir: &Path, lines: &[String], args: &[&str]) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("authorized_keys"), lines.join("\n") + "\n").unwrap();
    Server::start_with(
        runtime,
        ServerOptions::default()
            .args(args)
            .data_dir(&data)
            .git_home(&dir.join("server-home")),
    )
}

/// `ssh -T` through `ssh`: the user greeted, or the client's stderr.
fn login(ssh: Ssh, key: &Path) -> Result<String, String> {
    let out = ssh.key(key).option("LogLevel=ERROR").arg("-T").run(&[]);
    let err = stderr(&out);
    match err.strip_prefix("Hi ") {
        Some(rest) if err.contains("successfully authenticated") => {
            Ok(rest.split('!').next().unwrap().to_owned())
        }
        _ => Err(err),
    }
}

/// `ssh` from the source address `from` (another 127.0.0.N).
fn from(server: &Server, from: &str) -> Ssh {
    server.ssh().option(&format!("BindAddress={from}"))
}

/// Asserts that the login is refused as a plain publickey failure, and
/// that the server logged why: the `reason` and words of the detail.
fn refused(server: &Server, result: Result<String, String>, reason: &str, detail: &str) {
    let err = result.expect_err(detail);
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    // The log quotes a field's value only when it must, escaping its
    // quotes.
    let logged = || {
        server.log().lines().any(|l| {
            let l = l.replace('\\', "");
            l.contains("key refused by its authorized_keys options")
                && (l.contains(&format!("reason={reason} "))
                    || l.contains(&format!("reason=\"{reason}\"")))
                && l.contains(detail)
        })
    };
    assert!(
        gitmouth_tests::wait_until(Duration::from_secs(5), logged),
        "no refusal {reason:?} with {detail:?} in:\n{}",
        server.log()
    );
}

per_runtime!(options_restrict_where_and_until_when_a_key_logs_in);
fn options_restrict_where_and_until_when_a_key_logs_in(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = |name: &str| keygen(dir, "ed25519", name, name);
    let (alice, bob, carol, dave, erin, frank, grace) = (
        key("alice"),
        key("bob"),
        key("carol"),
        key("dave"),
        key("erin"),
        key("frank"),
        key("grace"),
    );
    let lines = [
        "# line 1: a comment".to_owned(),
        line("from=\"127.0.0.2\"", &alice),
        line("from=\"!127.0.0.2,127.0.0.0/8\"", &bob),
        line(
            "restrict,no-pty,no-port-forwarding,permitopen=\"localhost:80\",permitlisten=\"8080\"",
            &carol,
        ),
        line("expiry-time=\"20200101\"", &dave),
        line("expiry-time=\"20991231235959Z\",no-agent-forwarding", &erin),
        line("command=\"git-shell -c ls\"", &frank),
        line("from=\"127.0.0.*\",expiry-time=\"209901010000\"", &grace),
    ];
    let server = start(runtime, dir, &lines, &[]);
    // The command= line (line 7) is skipped, and the log names it.
    assert!(
        server.wait_for_log("authorized_keys line skipped", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("authorized_keys line skipped")
                && l.contains("line=7")
                && l.contains("command= is not supported")),
        "{}",
        server.log()
    );

    // from="127.0.0.2": only from 127.0.0.2.
    refused(
        &server,
        login(from(&server, "127.0.0.1"), &alice),
        "from",
        "line 2: from=\"127.0.0.2\": client 127.0.0.1 matches no entry",
    );
    assert_eq!(
        login(from(&server, "127.0.0.2"), &alice).as_deref(),
        Ok("alice")
    );
    // The reverse, with `!`.
    assert_eq!(
        login(from(&server, "127.0.0.1"), &bob).as_deref(),
        Ok("bob")
    );
    refused(
        &server,
        login(from(&server, "127.0.0.2"), &bob),
        "from",
        "client 127.0.0.2 is excluded by !127.0.0.2",
    );
    // Options that restrict only what gitmouth never does.
    assert_eq!(login(server.ssh(), &carol).as_deref(), Ok("carol"));
    // expiry-time: past, future.
    refused(
        &server,
        login(server.ssh(), &dave),
        "expiry-time",
        "line 5: expiry-time passed at 2020-01-01 00:00:00 UTC",
    );
    assert_eq!(login(server.ssh(), &erin).as_deref(), Ok("erin"));
    // The skipped command= line lets nobody in.
    let err = login(server.ssh(), &frank).unwrap_err();
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    // A wildcard, and both options on one line.
    assert_eq!(
        login(from(&server, "127.0.0.3"), &grace).as_deref(),
        Ok("grace")
    );
}

/// `ssh` through a stand-in balancer whose PROXY header (v2) says the
/// connection comes from `client`.
fn via_proxy(server: &Server, client: &str) -> Ssh {
    let relay = format!(
        "{RELAY} --connect {} --client {client}:4000 --version 2",
        server.addr
    );
    server.ssh().option(&format!("ProxyCommand={relay}"))
}

per_runtime!(from_is_judged_against_the_address_a_proxy_header_carries);
fn from_is_judged_against_the_address_a_proxy_header_carries(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = |name: &str| -> PathBuf { keygen(dir, "ed25519", name, name) };
    let (office, elsewhere, balancer) = (key("office"), key("elsewhere"), key("balancer"));
    let lines = [
        line("from=\"192.0.2.7\"", &office),
        line("from=\"!192.0.2.7,*\"", &elsewhere),
        // The balancer's own address is not the client's.
        line("from=\"127.0.0.1\"", &balancer),
    ];
    let server = start(
        runtime,
        dir,
        &lines,
        &[
            "--proxy-protocol",
            "required",
            "--proxy-trusted",
            "127.0.0.1",
            "--admission-exempt",
            "192.0.2.0/24",
        ],
    );
    assert_eq!(
        login(via_proxy(&server, "192.0.2.7"), &office).as_deref(),
        Ok("office")
    );
    refused(
        &server,
        login(via_proxy(&server, "192.0.2.8"), &office),
        "from",
        "client 192.0.2.8 matches no entry",
    );
    assert_eq!(
        login(via_proxy(&server, "192.0.2.8"), &elsewhere).as_deref(),
        Ok("elsewhere")
    );
    refused(
        &server,
        login(via_proxy(&server, "192.0.2.7"), &elsewhere),
        "from",
        "client 192.0.2.7 is excluded by !192.0.2.7",
    );
    refused(
        &server,
        login(via_proxy(&server, "192.0.2.9"), &balancer),
        "from",
        "from=\"127.0.0.1\": client 192.0.2.9 matches no entry",
    );
}
