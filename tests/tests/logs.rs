//! The log, from the real server with the real `ssh` and `git`: a JSON
//! audit line per git operation with every field; the session id a user
//! sees in an error message is in the log; admission's refusals are in
//! the fixed form the fail2ban filter in `contrib/` matches, checked with
//! the real `fail2ban-regex` (Debian's `fail2ban`, which `.ci/run`
//! installs).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, per_runtime, session_id, start_git_server, stderr,
    wait_until,
};

/// The JSON objects of the log lines whose message is `message`.
fn json_lines(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

per_runtime!(json_audit_lines_for_a_push_and_a_clone);
fn json_audit_lines_for_a_push_and_a_clone(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "Frank Smith");
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--log-format", "json"]),
    );
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "first"]);
    git.ok(&src, &["push", "-q", &ssh.url("app"), "main"]);
    let clone = dir.join("clone");
    git.ok(
        dir,
        &["clone", "-q", &ssh.url("app"), clone.to_str().unwrap()],
    );
    // A refused clone: the id the user is shown is in the log.
    let missing = dir.join("missing");
    let out = git.fails(
        dir,
        &["clone", "-q", &ssh.url("nope"), missing.to_str().unwrap()],
    );
    let id = session_id(&stderr(&out)).unwrap_or_else(|| panic!("{}", stderr(&out)));
    assert!(
        wait_until(Duration::from_secs(30), || json_lines(
            &server.log(),
            "git operation"
        )
        .len()
            >= 3),
        "{}",
        server.log()
    );
    let log = server.log();
    let audit = json_lines(&log, "git operation");
    let fingerprint = audit[0]["fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let expect = [
        ("git-receive-pack", "app", "ok", "0"),
        ("git-upload-pack", "app", "ok", "0"),
        ("git-upload-pack", "nope", "refused", "1"),
    ];
    for (line, (command, repo, outcome, exit)) in audit.iter().zip(expect) {
        assert_eq!(line["target"], "gitmouth::audit", "{line}");
        assert_eq!(line["command"], command, "{line}");
        assert_eq!(line["repo"], repo, "{line}");
        assert_eq!(line["outcome"], outcome, "{line}");
        assert_eq!(line["exit"], exit, "{line}");
        assert_eq!(line["user"], "Frank Smith", "{line}");
        assert_eq!(line["fingerprint"], fingerprint.as_str(), "{line}");
        assert_eq!(line["source"], "127.0.0.1", "{line}");
        assert!(
            line["protocol"].as_str().unwrap().starts_with("version="),
            "{line}"
        );
        assert!(
            line["duration"].as_str().unwrap().parse::<f64>().is_ok(),
            "{line}"
        );
        assert!(
            line["bytes_in"].is_u64() && line["bytes_out"].is_u64(),
            "{line}"
        );
        let session = line["span"]["session"].as_str().unwrap();
        assert_eq!(session.len(), 8, "{line}");
    }
    // What was relayed: a push sends, a clone receives.
    assert!(audit[0]["bytes_in"].as_u64().unwrap() > 0);
    assert!(audit[1]["bytes_out"].as_u64().unwrap() > 0);
    // git over OpenSSH clones with protocol v2 and pushes with v0.
    assert_eq!(audit[1]["protocol"], "version=2");
    assert_eq!(audit[2]["span"]["session"], id.as_str());
    // Every line is JSON, and no field is Rust's debug output.
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    let closed = json_lines(&log, "connection closed");
    assert!(
        closed
            .iter()
            .any(|l| l["span"]["session"] == id.as_str() && l["bytes_in"].is_u64()),
        "{log}"
    );
}

per_runtime!(fail2ban_matches_the_refusal_lines);
fn fail2ban_matches_the_refusal_lines(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "ed25519", "stranger", "s");
    let server = Server::start_with(
        runtime,
        ServerOptions {
            strict_admission: true,
            ..Default::default()
        },
    );
    // Failed logins until the source is refused, then a few more refusals:
    // one line for them all (one per source and minute).
    let mut refusals = 0;
    for _ in 0..12 {
        let out = server.ssh().key(&stranger).arg("-T").run(&[]);
        if !stderr(&out).contains("Permission denied") {
            refusals += 1;
            if refusals == 3 {
                break;
            }
        }
    }
    assert_eq!(refusals, 3, "{}", server.log());
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused connection from"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0]
            .contains("refused connection from 127.0.0.1: source penalised for earlier failures"),
        "{}",
        lines[0]
    );
    let file = dir.path().join("gitmouth.log");
    std::fs::write(&file, &log).unwrap();
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/fail2ban/filter.d/gitmouth.conf"
    );
    let out = std::process::Command::new("fail2ban-regex")
        .arg("--print-all-matched")
        .arg(&file)
        .arg(filter)
        .output()
        .expect("fail2ban-regex (Debian's fail2ban) must be installed");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    // "Lines: N lines, 0 ignored, 1 matched, N-1 missed"
    assert!(report.contains(", 1 matched,"), "{report}");
    assert!(
        report.contains("refused connection from 127.0.0.1"),
        "{report}"
    );
}
