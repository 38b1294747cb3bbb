//! Target `exec_command`: the git command of an `exec` request and the
//! `GIT_PROTOCOL` value of an `env` request (RFC 4254 §6.5, §6.4).
//!
//! The invariant that matters: any accepted repository name is one part or
//! two joined by `/`, each `[a-zA-Z0-9][a-zA-Z0-9._@-]{0,99}` with no `..`
//! and not ending in `.lock` or `.git` (so it is safe to join under the
//! repositories' directory), checked here by code written apart from the
//! core's; and it is an API-mode app name exactly when it matches
//! `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}`. Also: an accepted command re-parses to the
//! same command in every quoting a client may use, and an accepted
//! `GIT_PROTOCOL` value is returned unchanged and is `version=` and one or
//! two digits.

use gitmouth_core::app::command::{
    GitCommand, MAX_EXEC_LEN, RepoName, parse_exec, parse_git_protocol,
};

/// The standalone name rule, the whole string.
fn is_repo_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let bytes = part.as_bytes();
            let Some((first, rest)) = bytes.split_first() else {
                return false;
            };
            bytes.len() <= 100
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(b))
                && !part.contains("..")
                && !part.ends_with(".lock")
                && !part.ends_with(".git")
                && *part != "."
        })
}

/// `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}`, the whole string: an app name.
fn is_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= 100
        && first.is_ascii_alphanumeric()
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"@_-".contains(b))
}

/// The body of the `exec_command` target.
pub fn exec_command(data: &[u8]) {
    if let Ok(command) = parse_exec(data) {
        let name = command.repo.as_str();
        assert!(is_repo_name(name), "accepted repository name {name:?}");
        assert_eq!(command.repo.is_app_name(), is_app_name(name), "{name:?}");
        assert!(data.len() <= MAX_EXEC_LEN);
        assert!(data.starts_with(b"git-") || data.starts_with(b"git "));
        assert!(
            !data
                .iter()
                .any(|b| matches!(b, 0 | b'\n' | b';' | b'`' | b'$')),
            "{data:?}"
        );
        round_trip(&command);
    }
    if let Some(value) = parse_git_protocol(data) {
        assert_eq!(value.as_bytes(), data, "GIT_PROTOCOL value changed");
        let digits = value.strip_prefix("version=").unwrap_or_default();
        assert!(
            (1..=2).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
            "{value:?}"
        );
    }
    let text = String::from_utf8_lossy(data);
    if let Some(name) = RepoName::parse(&text) {
        assert!(
            is_repo_name(name.as_str()),
            "RepoName::parse accepted {text:?}"
        );
        assert_eq!(name.as_str(), text);
    }
}

/// Every spelling of an accepted command names the same repository.
fn round_trip(command: &GitCommand) {
    let (dashed, sub, name) = (
        command.verb.dashed(),
        command.verb.subcommand(),
        command.repo.as_str(),
    );
    for spelled in [
        format!("{dashed} '{name}.git'"),
        format!("{dashed} '/{name}.git'"),
        format!("git {sub} '~/{name}'"),
        format!("{dashed} \"{name}\""),
        format!("git {sub} {name}.git"),
    ] {
        assert_eq!(
            parse_exec(spelled.as_bytes()).as_ref(),
            Ok(command),
            "{spelled:?}"
        );
    }
}
