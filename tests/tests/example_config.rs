//! `contrib/gitmouth.toml`, the example configuration file: every key a
//! configuration file takes appears in it once, with a comment (the list
//! is the one the file parser accepts, `gitmouth_io::layers::file_keys`,
//! so an option added without being documented there fails here); a line
//! that shows a default shows the real one; and `gitmouth --print-config
//! --config` accepts the file as shipped and with every key uncommented
//! (in each mode, the keys that mode takes).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gitmouth_io::config::{Env, Settings, command, parse_with_file};
use gitmouth_tests::{Runtime, run_with_timeout, stderr, stdout};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/gitmouth.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

/// The keys a configuration file takes, from the parser itself.
fn file_keys() -> Vec<String> {
    let cmd = command("gitmouth");
    gitmouth_io::layers::file_keys(&cmd)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// One `key = value` line of the file, commented out (`# key = value`) or
/// not.
#[derive(Debug)]
struct Assignment {
    /// Its index among the file's lines.
    index: usize,
    key: String,
    /// Whether it shows an example rather than the default: its value is
    /// followed by `# default: ...`.
    example: bool,
}

fn assignments(text: &str) -> Vec<Assignment> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let body = line.strip_prefix("# ").unwrap_or(line);
            let (key, value) = body.split_once(" = ")?;
            let is_key = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            is_key.then(|| Assignment {
                index,
                key: key.to_owned(),
                example: value.contains("# default:"),
            })
        })
        .collect()
}

/// `text` with the lines at `indices` uncommented.
fn uncommented(text: &str, indices: &BTreeSet<usize>) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = match line.strip_prefix("# ") {
            Some(rest) if indices.contains(&i) => rest,
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Api,
    /// Standalone, with the push lock in PostgreSQL (whose URL the file
    /// gives).
    Shared,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Standalone, Mode::Api, Mode::Shared];

    /// The command line's arguments for this mode, after the program name.
    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Standalone => &["--mode", "standalone"],
            Mode::Api => &["--mode", "api"],
            Mode::Shared => &["--mode", "standalone", "--push-lock", "postgres"],
        }
    }

    /// The variables this mode needs (API mode: the API server's key).
    fn vars(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Mode::Standalone | Mode::Shared => &[],
            Mode::Api => &[("APISERVER_KEY", "not-a-real-key")],
        }
    }
}

/// The settings `file` (if any) gives in `mode`, without the record of
/// where each came from, or the refusal.
fn settings(mode: Mode, file: Option<&str>) -> Result<String, String> {
    let args = std::iter::once("gitmouth")
        .chain(mode.args().iter().copied())
        .map(OsString::from);
    let env = Env::new(
        mode.vars()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        None,
    )
    .unwrap();
    let path = example_path();
    let file = file.map(|text| (path.as_path(), text));
    let mut s: Settings =
        parse_with_file("gitmouth", args, &env, file, "host").map_err(|e| e.to_string())?;
    s.origins.clear();
    s.config_file = None;
    Ok(format!("{s:?}"))
}

/// For each mode, the lines that mode accepts uncommented one at a time;
/// checks on the way that each line shown as a default changes nothing
/// when uncommented, and that every line is accepted in some mode.
fn accepted_lines() -> [(Mode, BTreeSet<usize>); 3] {
    let text = example_text();
    let lines = assignments(&text);
    let mut refused: Vec<(String, Vec<String>)> = Vec::new();
    let mut accepted = Mode::ALL.map(|mode| (mode, BTreeSet::new()));
    let mut wrong_defaults = Vec::new();
    // (Mode::Shared starts only with the file's database URL: it has no
    // defaults of its own to compare with.)
    let defaults = Mode::ALL.map(|mode| settings(mode, None).ok());
    for a in &lines {
        let one = uncommented(&text, &BTreeSet::from([a.index]));
        let mut why = Vec::new();
        for ((mode, set), defaults) in accepted.iter_mut().zip(&defaults) {
            match settings(*mode, Some(&one)) {
                Ok(s) => {
                    set.insert(a.index);
                    if !a.example && defaults.as_ref().is_some_and(|d| s != *d) {
                        wrong_defaults.push(format!(
                            "line {}: {:?} is shown as the default ({:?} mode) but changes the settings",
                            a.index + 1,
                            text.lines().nth(a.index).unwrap(),
                            mode,
                        ));
                    }
                }
                Err(e) => why.push(format!("{mode:?} mode: {e}")),
            }
        }
        if why.len() == Mode::ALL.len() {
            refused.push((text.lines().nth(a.index).unwrap().to_owned(), why));
        }
    }
    assert!(
        refused.is_empty(),
        "lines of {} refused in every mode when uncommented: {refused:#?}",
        example_path().display()
    );
    assert!(
        wrong_defaults.is_empty(),
        "lines that show a wrong default (give the real one, or mark the value as an example with a trailing \"# default: ...\"):\n{}",
        wrong_defaults.join("\n")
    );
    accepted
}

#[test]
fn every_option_is_in_the_example_once_with_a_comment() {
    let text = example_text();
    let lines: Vec<&str> = text.lines().collect();
    let found = assignments(&text);
    let keys = file_keys();
    assert!(keys.len() > 30, "the file keys came out too few: {keys:?}");
    let mut problems = Vec::new();
    for key in &keys {
        let n = found.iter().filter(|a| &a.key == key).count();
        if n != 1 {
            problems.push(format!("{key}: {n} lines (expected exactly one)"));
        }
    }
    for a in &found {
        if !keys.contains(&a.key) {
            problems.push(format!(
                "line {}: {:?} is no key of the configuration file",
                a.index + 1,
                a.key
            ));
        }
        // The comment that explains it: the line before is prose.
        let before = a.index.checked_sub(1).map(|i| lines[i]);
        let explained = before
            .is_some_and(|l| l.starts_with("# ") && !found.iter().any(|b| b.index + 1 == a.index));
        if !explained {
            problems.push(format!(
                "line {}: {} has no comment above it",
                a.index + 1,
                a.key
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} against the options gitmouth takes:\n{}",
        example_path().display(),
        problems.join("\n")
    );
}

#[test]
fn each_default_shown_is_the_default() {
    accepted_lines();
}

/// `gitmouth --print-config --config FILE` in a scratch directory, with no
/// variables but `vars`.
fn print_config(file: &Path, args: &[&str], vars: &[(&str, &str)]) -> (bool, String) {
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(Runtime::Smol.binary());
    cmd.current_dir(scratch.path())
        .env_clear()
        .env("NO_COLOR", "1")
        .envs(vars.iter().copied())
        .arg("--print-config")
        .arg("--config")
        .arg(file)
        .args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

#[test]
fn print_config_accepts_the_example_as_shipped_and_uncommented() {
    let (ok, out) = print_config(&example_path(), &[], &[]);
    assert!(ok, "the example as shipped is refused:\n{out}");

    let text = example_text();
    let lines = assignments(&text);
    for (mode, accepted) in accepted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gitmouth.toml");
        std::fs::write(&file, uncommented(&text, &accepted)).unwrap();
        let (ok, out) = print_config(&file, mode.args(), mode.vars());
        assert!(
            ok,
            "the example with every key {mode:?} mode takes uncommented is refused:\n{out}"
        );
        // Each uncommented key is taken from the file (but mode and
        // push-lock: the command line's wins).
        for a in lines.iter().filter(|a| accepted.contains(&a.index)) {
            if a.key == "mode" || (a.key == "push-lock" && mode == Mode::Shared) {
                continue;
            }
            let from = format!("# {} line {}", file.display(), a.index + 1);
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&format!("{} = ", a.key)) && l.ends_with(&from)),
                "{mode:?} mode: {} is not taken from {from:?}:\n{out}",
                a.key
            );
        }
    }
}
