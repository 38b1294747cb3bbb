//! The configuration, against the real server binaries: a TOML file
//! (`--config`), `GITMOUTH_<FLAG>` variables in the environment and in
//! `./.env`, and flags, with one precedence (flags > environment > `.env` >
//! file > defaults). Each bad setting, from any of them, is refused at
//! start, before anything listens (and before a host key is generated),
//! with a message naming the setting, where it came from, the value and
//! what is allowed; `--print-config` names each value's source and masks
//! secrets; SIGHUP re-reads the file: a live limit changes, a listen
//! address change is logged as needing a restart.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Runtime, Server, ServerOptions, keygen, kill, per_runtime, run_with_timeout, server_command,
    stderr, stdout,
};

/// One way to start the server.
#[derive(Default, Clone)]
struct Start<'a> {
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    dotenv: Option<&'a str>,
    file: Option<&'a str>,
}

/// Runs the binary in a scratch directory (its `.env` and `gm.toml`
/// written from `start`) with a data directory of its own, `--listen
/// 127.0.0.1:0` and `extra`.
fn run(runtime: Runtime, start: &Start<'_>, scratch: &Path, extra: &[&str]) -> Output {
    if let Some(text) = start.dotenv {
        std::fs::write(scratch.join(".env"), text).unwrap();
    }
    let mut cmd = server_command(runtime, scratch);
    if let Some(text) = start.file {
        std::fs::write(scratch.join("gm.toml"), text).unwrap();
        cmd.args(["--config", "gm.toml"]);
    }
    cmd.args(start.args).args(extra);
    for (k, v) in start.env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, Duration::from_secs(30))
}

per_runtime!(misconfiguration_is_refused_before_anything_listens);
fn misconfiguration_is_refused_before_anything_listens(runtime: Runtime) {
    let keys = tempfile::tempdir().unwrap();
    let open_key = keygen(keys.path(), "ed25519", "open", "host");
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open_key = open_key.display().to_string();
    let open_key_args = ["--host-key", open_key.as_str()];
    let table: Vec<(Start<'_>, Vec<&str>)> = vec![
        // Flags.
        (
            Start {
                args: &["--login-grace-time", "0"],
                ..Start::default()
            },
            vec!["--login-grace-time", "'0'", "at least 1 second"],
        ),
        (
            Start {
                args: &["--rekey-limit", "10"],
                ..Start::default()
            },
            vec!["--rekey-limit", "'10'", "1M to 64G"],
        ),
        (
            Start {
                args: &["--max-auth-tries", "0"],
                ..Start::default()
            },
            vec!["--max-auth-tries", "'0'", "1.."],
        ),
        (
            Start {
                args: &["--legacy-algorithms=maybe"],
                ..Start::default()
            },
            vec!["--legacy-algorithms", "maybe", "yes, no"],
        ),
        (
            Start {
                args: &["--log", "gitmouth=loud"],
                ..Start::default()
            },
            vec!["--log", "not a log filter"],
        ),
        (
            Start {
                args: &open_key_args,
                ..Start::default()
            },
            vec!["host key", "permissions 0644 are too open", "chmod 600"],
        ),
        (
            Start {
                args: &["--authorized-keys", "missing_keys"],
                ..Start::default()
            },
            vec!["--authorized-keys missing_keys", "No such file"],
        ),
        (
            Start {
                args: &["--authorized-keys", "."],
                ..Start::default()
            },
            vec!["--authorized-keys .", "not a file"],
        ),
        (
            Start {
                args: &["--api-timeout", "5"],
                ..Start::default()
            },
            vec![
                "--api-timeout from the command line",
                "not used in standalone mode",
            ],
        ),
        // The environment.
        (
            Start {
                env: &[("GITMOUTH_MAX_STARTUPS", "x")],
                ..Start::default()
            },
            vec![
                "--max-startups from the environment (GITMOUTH_MAX_STARTUPS)",
                "\"x\"",
                "START:RATE:FULL",
            ],
        ),
        (
            Start {
                env: &[("GITMOUTH_MAX_SESSIONS", "0")],
                ..Start::default()
            },
            vec![
                "--max-sessions from the environment (GITMOUTH_MAX_SESSIONS)",
                "\"0\"",
                "1..",
            ],
        ),
        (
            Start {
                env: &[("APISERVER_KEY", "k")],
                args: &["--authorized-keys", "keys"],
                ..Start::default()
            },
            vec![
                "--authorized-keys from the command line",
                "not used in API mode",
                "APISERVER_KEY is set",
            ],
        ),
        (
            Start {
                env: &[("APISERVER_KEY", "k"), ("APISERVER_PROTOCOL", "ftp")],
                ..Start::default()
            },
            vec!["APISERVER_PROTOCOL", "\"ftp\""],
        ),
        (
            Start {
                env: &[("GITMOUTH_MAX_SESION", "3")],
                ..Start::default()
            },
            vec![
                "GITMOUTH_MAX_SESION in the environment (GITMOUTH_MAX_SESION)",
                "did you mean GITMOUTH_MAX_SESSIONS?",
            ],
        ),
        // ./.env.
        (
            Start {
                dotenv: Some("GITMOUTH_PER_SOURCE_PENALTIES=maybe\n"),
                ..Start::default()
            },
            vec![
                "--per-source-penalties from ./.env line 1 (GITMOUTH_PER_SOURCE_PENALTIES)",
                "\"maybe\"",
                "yes, no",
            ],
        ),
        (
            Start {
                dotenv: Some("APISERVER_KEY=abc\nthis is not an assignment\n"),
                ..Start::default()
            },
            vec!["./.env does not parse"],
        ),
        // The file.
        (
            Start {
                file: Some("log = \"info\"\nmax_sessions = 3\n"),
                ..Start::default()
            },
            vec![
                "gm.toml line 2",
                "unknown key \"max_sessions\"",
                "did you mean \"max-sessions\"",
            ],
        ),
        (
            Start {
                file: Some("[server]\nport = 22\n"),
                ..Start::default()
            },
            vec!["gm.toml line 1", "unknown key \"server\""],
        ),
        (
            Start {
                file: Some("\nidle-timeout = 60\nrekey-limit = \"10\"\n"),
                ..Start::default()
            },
            vec!["--rekey-limit from gm.toml line 3", "\"10\"", "1M to 64G"],
        ),
        (
            Start {
                file: Some("max-startups = [1, 2]\n"),
                ..Start::default()
            },
            vec!["--max-startups from gm.toml line 1", "not a list"],
        ),
        (
            Start {
                file: Some("authorized-keys = \"keys\"\n"),
                env: &[("APISERVER_KEY", "k")],
                ..Start::default()
            },
            vec![
                "--authorized-keys from gm.toml line 1",
                "not used in API mode",
            ],
        ),
        (
            Start {
                file: Some("max-sessions = \n"),
                ..Start::default()
            },
            vec!["gm.toml is not valid TOML"],
        ),
        (
            Start {
                args: &["--config", "missing.toml"],
                ..Start::default()
            },
            vec!["cannot read the configuration file missing.toml"],
        ),
        // Several instances: the database's settings (its password never
        // shown).
        (
            Start {
                args: &["--push-lock", "postgres"],
                ..Start::default()
            },
            vec!["--push-lock from the command line", "needs --database-url"],
        ),
        (
            Start {
                env: &[("GITMOUTH_DATABASE_URL", "postgres://gm:pw-s3cret@db/gm")],
                ..Start::default()
            },
            vec![
                "--database-url from the environment (GITMOUTH_DATABASE_URL)",
                "only used with --push-lock postgres",
            ],
        ),
        (
            Start {
                file: Some(
                    "push-lock = \"postgres\"\ndatabase-url = \"mysql://gm:pw-s3cret@db/gm\"\n",
                ),
                ..Start::default()
            },
            vec![
                "--database-url from gm.toml line 2",
                "postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                "mysql://gm:********@db/gm",
            ],
        ),
        (
            Start {
                args: &[
                    "--push-lock",
                    "postgres",
                    "--database-url",
                    "postgres://gm:pw-s3cret@db/gm?sslmode=require",
                ],
                ..Start::default()
            },
            vec!["sslmode=require", "TLS to the database is not supported"],
        ),
        (
            Start {
                dotenv: Some("GITMOUTH_DATABASE_SCHEMA=Bad-Name\n"),
                ..Start::default()
            },
            vec!["--database-schema from ./.env line 1", "plain identifier"],
        ),
    ];
    for (start, wanted) in table {
        let scratch = tempfile::tempdir().unwrap();
        let out = run(runtime, &start, scratch.path(), &[]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        let case = (start.args, start.env, start.dotenv, start.file);
        assert!(!out.status.success(), "{case:?} was accepted:\n{text}");
        assert!(
            !text.contains("pw-s3cret"),
            "{case:?} showed a password:\n{text}"
        );
        for w in &wanted {
            assert!(text.contains(w), "{case:?}: no {w:?} in:\n{text}");
        }
        assert!(!text.contains("listening"), "{case:?} listened:\n{text}");
        assert!(
            !scratch.path().join("data/ssh_host_ed25519_key").exists(),
            "{case:?} generated a host key before refusing"
        );
    }
}

/// The value of `key` in `--print-config`'s output, with its comment.
fn printed<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

fn print_config(runtime: Runtime, start: &Start<'_>) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let out = run(runtime, start, scratch.path(), &["--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("listening"));
    stdout(&out)
}

per_runtime!(the_same_setting_from_each_layer_the_right_one_wins_and_print_config_names_it);
fn the_same_setting_from_each_layer_the_right_one_wins_and_print_config_names_it(runtime: Runtime) {
    let file = Some("# the operator's\nmax-sessions = 2\n");
    let dotenv = Some("GITMOUTH_MAX_SESSIONS=3\n");
    let env: &[(&str, &str)] = &[("GITMOUTH_MAX_SESSIONS", "4")];
    let flag: &[&str] = &["--max-sessions", "5"];
    let steps: [(Start<'_>, &str); 5] = [
        (Start::default(), "max-sessions = 10  # default"),
        (
            Start {
                file,
                ..Start::default()
            },
            "max-sessions = 2  # gm.toml line 2",
        ),
        (
            Start {
                file,
                dotenv,
                ..Start::default()
            },
            "max-sessions = 3  # ./.env line 1 (GITMOUTH_MAX_SESSIONS)",
        ),
        (
            Start {
                file,
                dotenv,
                env,
                ..Start::default()
            },
            "max-sessions = 4  # the environment (GITMOUTH_MAX_SESSIONS)",
        ),
        (
            Start {
                file,
                dotenv,
                env,
                args: flag,
            },
            "max-sessions = 5  # the command line",
        ),
    ];
    for (start, wanted) in steps {
        let text = print_config(runtime, &start);
        assert_eq!(printed(&text, "max-sessions"), wanted, "{text}");
    }
    // --log beats RUST_LOG, which beats the file.
    let file = Some("log = \"warn\"\n");
    let text = print_config(
        runtime,
        &Start {
            file,
            ..Start::default()
        },
    );
    assert!(
        printed(&text, "log").starts_with("log = \"warn\""),
        "{text}"
    );
    let env: &[(&str, &str)] = &[("RUST_LOG", "debug")];
    let text = print_config(
        runtime,
        &Start {
            file,
            env,
            ..Start::default()
        },
    );
    assert_eq!(
        printed(&text, "log"),
        "log = \"debug\"  # the environment (RUST_LOG)"
    );
    let text = print_config(
        runtime,
        &Start {
            file,
            env,
            args: &["--log", "error"],
            ..Start::default()
        },
    );
    assert_eq!(printed(&text, "log"), "log = \"error\"  # the command line");
}

per_runtime!(print_config_masks_secrets);
fn print_config_masks_secrets(runtime: Runtime) {
    let secret = "s3cr3t-platform-key";
    for start in [
        Start {
            env: &[("APISERVER_KEY", secret)],
            ..Start::default()
        },
        Start {
            dotenv: Some("APISERVER_KEY=s3cr3t-platform-key\nAPISERVER_HOSTNAME=api.internal\n"),
            ..Start::default()
        },
    ] {
        let text = print_config(runtime, &start);
        assert!(!text.contains(secret), "the secret was printed:\n{text}");
        assert!(text.contains("APISERVER_KEY = \"********\""), "{text}");
        assert_eq!(
            printed(&text, "mode"),
            "mode = \"api\"  # default",
            "{text}"
        );
    }
    let text = print_config(
        runtime,
        &Start {
            dotenv: Some("APISERVER_KEY=s3cr3t-platform-key\nAPISERVER_HOSTNAME=api.internal\n"),
            ..Start::default()
        },
    );
    assert!(
        text.contains(
            "APISERVER_HOSTNAME = \"api.internal\"  # ./.env line 2 (APISERVER_HOSTNAME)"
        ),
        "{text}"
    );
}

per_runtime!(switches_take_yes_or_no_everywhere);
fn switches_take_yes_or_no_everywhere(runtime: Runtime) {
    let help = Command::new(runtime.binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&help);
    for switch in [
        "--legacy-algorithms [<yes|no>]",
        "--per-source-penalties [<yes|no>]",
    ] {
        assert!(help.contains(switch), "no {switch} in:\n{help}");
    }
    let cases: [(Start<'_>, &str, &str); 6] = [
        (
            Start {
                args: &["--legacy-algorithms"],
                ..Start::default()
            },
            "legacy-algorithms",
            "\"yes\"",
        ),
        (
            Start {
                args: &["--legacy-algorithms", "no"],
                ..Start::default()
            },
            "legacy-algorithms",
            "\"no\"",
        ),
        (
            Start {
                env: &[("GITMOUTH_LEGACY_ALGORITHMS", "yes")],
                ..Start::default()
            },
            "legacy-algorithms",
            "\"yes\"",
        ),
        (
            Start {
                file: Some("legacy-algorithms = \"yes\"\n"),
                ..Start::default()
            },
            "legacy-algorithms",
            "\"yes\"",
        ),
        (
            Start {
                args: &["--per-source-penalties=no"],
                ..Start::default()
            },
            "per-source-penalties",
            "\"no\"",
        ),
        (
            Start {
                dotenv: Some("GITMOUTH_PER_SOURCE_PENALTIES=no\n"),
                ..Start::default()
            },
            "per-source-penalties",
            "\"no\"",
        ),
    ];
    for (start, key, value) in cases {
        let text = print_config(runtime, &start);
        assert!(
            printed(&text, key).starts_with(&format!("{key} = {value}")),
            "{:?}: {text}",
            start.args
        );
    }
    // And the server acts on it.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("gm.toml"),
        "legacy-algorithms = \"yes\"\n",
    )
    .unwrap();
    let server = Server::start_with(
        runtime,
        ServerOptions {
            cwd: Some(scratch.path().to_path_buf()),
            ..ServerOptions::default()
        }
        .args(&["--config", "gm.toml"]),
    );
    assert!(server.log().contains("legacy=true"), "{}", server.log());
}

per_runtime!(the_start_logs_version_mode_and_the_absolute_data_directory);
fn the_start_logs_version_mode_and_the_absolute_data_directory(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        runtime,
        ServerOptions {
            cwd: Some(scratch.path().to_path_buf()),
            data_dir: Some("relative-data".into()),
            ..ServerOptions::default()
        },
    );
    let log = server.log();
    let absolute = scratch.path().join("relative-data");
    assert!(
        log.contains(&format!("data_dir={}", absolute.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{log}"
    );
    assert!(log.contains("mode=standalone"), "{log}");
}

/// How long the server keeps a connection that sends nothing: until it
/// closes it (the login grace time), at most `limit`.
fn silent_connection_lasts(server: &Server, limit: Duration) -> Duration {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

per_runtime!(sighup_rereads_the_file_a_live_limit_changes_and_a_listen_change_needs_a_restart);
fn sighup_rereads_the_file_a_live_limit_changes_and_a_listen_change_needs_a_restart(
    runtime: Runtime,
) {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("gm.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlogin-grace-time = 30\n").unwrap();
    let server = Server::start_with(
        runtime,
        ServerOptions {
            cwd: Some(scratch.path().to_path_buf()),
            no_listen_flag: true,
            ..ServerOptions::default()
        }
        .args(&["--config", "gm.toml"]),
    );
    assert!(
        silent_connection_lasts(&server, Duration::from_secs(3)) >= Duration::from_secs(3),
        "closed before its 30 s grace"
    );
    // Rewritten in place, as an editor may.
    let mut f = std::fs::File::create(&file).unwrap();
    f.write_all(b"listen = \"127.0.0.1:1\"\nlogin-grace-time = 1\n")
        .unwrap();
    drop(f);
    kill(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: configuration reloaded", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("setting=listen") && log.contains("needs a restart"),
        "{log}"
    );
    assert!(log.contains("login-grace-time"), "{log}");
    // Still on the same address, now with a one-second grace.
    let lasted = silent_connection_lasts(&server, Duration::from_secs(10));
    assert!(
        lasted < Duration::from_secs(5),
        "the grace time did not change: {lasted:?}"
    );
    // A file that does not parse changes nothing.
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlogin-grace-time = 0\n").unwrap();
    kill(server.pid(), "HUP");
    assert!(
        server.wait_for_log(
            "SIGHUP: the configuration is refused",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains("--login-grace-time from gm.toml line 2"),
        "{}",
        server.log()
    );
    let lasted = silent_connection_lasts(&server, Duration::from_secs(10));
    assert!(lasted < Duration::from_secs(5), "{lasted:?}");
}

per_runtime!(the_file_can_be_named_in_dotenv);
fn the_file_can_be_named_in_dotenv(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("gitmouth.toml"), "max-sessions = 7\n").unwrap();
    let start = Start {
        dotenv: Some("GITMOUTH_CONFIG=gitmouth.toml\n"),
        ..Start::default()
    };
    let out = run(runtime, &start, scratch.path(), &["--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        printed(&text, "max-sessions"),
        "max-sessions = 7  # gitmouth.toml line 1",
        "{text}"
    );
}
