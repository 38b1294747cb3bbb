//! `contrib/systemd/gitmouth.service`, checked with systemd's own tools
//! (Debian's `systemd` package, which `.ci/run` installs; a missing tool
//! fails these tests):
//!
//! - `systemd-analyze verify` accepts the unit, without a warning, with the
//!   gitmouth binary installed at its `ExecStart` path. The installation is
//!   in a scratch root directory (`--root`) holding the unit, the programs
//!   it runs and a copy of the system's unit directory, so that the
//!   machine's own `/usr/local/bin` is left alone;
//! - `systemd-analyze security --offline=true` rates its sandbox no worse
//!   than "OK";
//! - `contrib/systemd/gitmouth.sysusers` creates the user the unit runs as,
//!   with the state directory as its home;
//! - what the unit says agrees with the program: it takes the unit's
//!   command line, the data directory is the state directory (absolute)
//!   and the working directory, and the stop timeout outlasts a drain at
//!   the default `--drain-timeout`.
//!
//! Running the server under systemd needs systemd as PID 1, which the test
//! machines do not have; the unit's command line (an absolute data
//! directory, a configuration file) is what the other suites run.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gitmouth_tests::{Runtime, run_with_timeout, stderr, stdout};

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd")
}

fn unit_path() -> PathBuf {
    contrib().join("gitmouth.service")
}

/// The unit's `Key=Value` lines, in order (a key may repeat).
fn directives() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .map(|l| {
            assert!(
                !l.ends_with('\\'),
                "continued lines are not read here: {l:?}"
            );
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The one value of `key`.
fn directive(key: &str) -> String {
    let values: Vec<String> = directives()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{key}= in the unit: {values:?}");
    values.into_iter().next().unwrap()
}

/// `%S`, the state directories' root of a system unit, expanded.
fn expand(value: &str) -> String {
    value.replace("%S", "/var/lib")
}

/// The program of an `Exec*=` command line, without its prefixes.
fn program(command_line: &str) -> &str {
    command_line
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches(['-', '@', ':', '+', '!'])
}

/// A tool of Debian's `systemd` package, failing with what to install when
/// it is missing.
fn systemd_tool(name: &str) -> Command {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("{name} --version failed: {}", stderr(&out)),
        Err(e) => panic!(
            "{name} cannot be run ({e}): it is in Debian's systemd package \
             (apt-get install systemd; .ci/run installs it)"
        ),
    }
    let mut cmd = Command::new(name);
    cmd.env("SYSTEMD_COLORS", "0").env("SYSTEMD_PAGER", "cat");
    cmd
}

fn run(cmd: Command) -> Output {
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// `systemd-analyze verify --root=ROOT UNIT`.
fn verify(root: &Path, unit: &Path) -> Output {
    let mut cmd = systemd_tool("systemd-analyze");
    cmd.arg("verify").arg("--root").arg(root).arg(unit);
    run(cmd)
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_with_the_binary_installed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // The system's units: the targets the unit is ordered against, and a
    // service's default dependencies.
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .expect("no systemd unit directory on this machine (Debian: apt-get install systemd)");
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let out = run({
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(system_units)
            .arg(root.join("usr/lib/systemd/system"));
        cp
    });
    assert!(
        out.status.success(),
        "copying {system_units:?}: {}",
        stderr(&out)
    );

    // Every program the unit runs, at its path: the gitmouth just built,
    // the others from this machine.
    let mut installed = None;
    for (key, value) in directives() {
        if !key.starts_with("Exec") {
            continue;
        }
        let path = Path::new(program(&value));
        assert!(path.is_absolute(), "{key}={value}: not an absolute path");
        let dest = root.join(path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if path.file_name().is_some_and(|n| n == "gitmouth") {
            std::fs::copy(Runtime::Smol.binary(), &dest).unwrap();
            installed = Some(dest);
        } else {
            std::fs::copy(path, &dest).unwrap_or_else(|e| {
                panic!(
                    "{key}= runs {}, which this machine lacks: {e}",
                    path.display()
                )
            });
        }
    }
    let installed = installed.expect("no Exec line of the unit runs gitmouth");
    assert_eq!(
        Path::new(program(&directive("ExecStart"))).file_name(),
        Some("gitmouth".as_ref())
    );

    let unit = root.join("etc/systemd/system/gitmouth.service");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::copy(unit_path(), &unit).unwrap();

    let out = verify(root, &unit);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );

    // Without the binary it fails: the check above did look for it.
    std::fs::remove_file(&installed).unwrap();
    let out = verify(root, &unit);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    let exec_start = program(&directive("ExecStart")).to_owned();
    assert!(
        !out.status.success() && said.contains(&exec_start),
        "systemd-analyze verify without {exec_start}: {}\n{said}",
        out.status
    );
}

/// `systemd-analyze security`'s ratings, best first.
const RATINGS: [&str; 7] = [
    "PERFECT",
    "SAFE",
    "OK",
    "MEDIUM",
    "EXPOSED",
    "UNSAFE",
    "DANGEROUS",
];

#[test]
fn systemd_analyze_security_rates_the_sandbox_ok_or_better() {
    let mut cmd = systemd_tool("systemd-analyze");
    cmd.args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path());
    let out = run(cmd);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "systemd-analyze security: {}\n{text}{}",
        out.status,
        stderr(&out)
    );
    // "→ Overall exposure level for gitmouth.service: 1.4 OK 🙂"
    let verdict = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(_, verdict)| verdict.to_owned())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    let mut words = verdict.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    let rating = words.next().unwrap();
    let rank = RATINGS
        .iter()
        .position(|r| *r == rating)
        .unwrap_or_else(|| panic!("unknown rating {rating:?} in:\n{text}"));
    eprintln!("systemd-analyze security --offline=true: exposure {score} {rating}");
    assert!(
        rank <= RATINGS.iter().position(|r| *r == "OK").unwrap(),
        "the sandbox is rated {score} {rating}, worse than OK:\n{text}"
    );
}

#[test]
fn the_sysusers_snippet_creates_the_units_user() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let conf = root.join("usr/lib/sysusers.d/gitmouth.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(contrib().join("gitmouth.sysusers"), &conf).unwrap();
    let mut cmd = systemd_tool("systemd-sysusers");
    cmd.arg("--root").arg(root);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "systemd-sysusers: {}\n{}",
        out.status,
        stderr(&out)
    );
    let user = directive("User");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let entry: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|fields| fields[0] == user)
        .unwrap_or_else(|| panic!("no user {user} in:\n{passwd}"));
    assert_eq!(
        entry[5],
        expand(&format!("%S/{}", directive("StateDirectory"))),
        "the home of {user}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let group_name = directive("Group");
    assert!(
        group
            .lines()
            .any(|l| l.split(':').next() == Some(&group_name)),
        "no group {group_name} in:\n{group}"
    );
}

#[test]
fn the_unit_fixes_the_data_directory_and_outlasts_a_drain() {
    let state = format!("%S/{}", directive("StateDirectory"));
    let exec_start = directive("ExecStart");
    let args: Vec<String> = exec_start.split_whitespace().map(expand).collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("ExecStart={exec_start}: no {flag}"))
            .clone()
    };
    let data_dir = after("--data-dir");
    let config = after("--config");
    assert_eq!(
        data_dir,
        expand(&state),
        "--data-dir is the state directory"
    );
    assert_eq!(directive("WorkingDirectory"), state);
    assert!(
        directives()
            .iter()
            .any(|(k, v)| k == "ReadWritePaths" && v.split_whitespace().any(|p| p == state)),
        "ReadWritePaths= names the data directory"
    );

    // The program takes this command line (the file aside: it is read at
    // start, and the example's own test checks it).
    let settings = gitmouth_io::config::parse(
        "gitmouth",
        args.iter().map(Into::into),
        &gitmouth_io::config::Env::default(),
        "host",
    )
    .unwrap_or_else(|e| panic!("ExecStart={exec_start}: {e}"));
    assert!(settings.data_dir.is_absolute());
    assert_eq!(settings.data_dir, Path::new(&data_dir));
    assert_eq!(settings.config_file.as_deref(), Some(Path::new(&config)));
    assert_eq!(
        settings.host_keys,
        [gitmouth_io::config::HostKeySource::Default(
            Path::new(&data_dir).join("ssh_host_ed25519_key")
        )],
        "the host key lives in the state directory"
    );

    // SIGTERM to gitmouth alone, and time for the whole drain before
    // systemd kills what is left.
    assert_eq!(directive("KillMode"), "mixed");
    assert!(directive("ExecReload").ends_with("-HUP $MAINPID"));
    let config = gitmouth_io::config::server_config(
        &settings,
        Vec::new().into(),
        gitmouth_core::server::Mode::Standalone {
            repos: settings.data_dir.join("repos"),
        },
    );
    let stop: u64 = directive("TimeoutStopSec").parse().unwrap();
    assert!(
        Duration::from_secs(stop) > config.drain_wait(),
        "TimeoutStopSec={stop} does not outlast a drain ({:?}) at the default --drain-timeout",
        config.drain_wait()
    );
}
