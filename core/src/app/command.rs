//! The git command of an RFC 4254 §6.5 `exec` request, and the
//! `GIT_PROTOCOL` value of an RFC 4254 §6.4 `env` request.
//!
//! The exec string is parsed here, never handed to a shell.
//! The whole grammar:
//!
//! ```text
//! command = verb SP path                 ; exactly one space
//! verb    = "git-receive-pack" / "git-upload-pack" / "git-upload-archive"
//!         / "git receive-pack" / "git upload-pack" / "git upload-archive"
//! path    = "'" sq-text "'" / DQUOTE dq-text DQUOTE / bare
//!           ; sq-text may contain git's '\'' for a quote; dq-text has no
//!           ; escapes at all (no '\', no '"')
//! unquoted path = [ "/" / "~/" ] name [ ".git" ]
//! name    = part [ "/" part ]            ; one level of folders at most
//! part    = [a-zA-Z0-9] [a-zA-Z0-9._@-]{0,99}
//!           ; and no "..", and not ending in ".lock" or ".git"
//! ```
//!
//! Nothing else is a command: no trailing text, no second command, no other
//! byte. An exec string over [`MAX_EXEC_LEN`] bytes is refused unread.
//!
//! That is the standalone grammar (`team/site`, `my.app`). API mode keeps
//! Openruko's app names, `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}`: a parsed name
//! outside it is refused there ([`RepoName::is_app_name`],
//! [`InvalidCommand::AppName`]).

use core::fmt;

/// The longest exec string looked at; longer ones are refused before parsing
/// so a hostile client cannot make the parser walk megabytes.
pub const MAX_EXEC_LEN: usize = 1024;

/// The longest part of a repository name (the grammar's `{0,99}` plus the
/// first character); a name has at most two parts.
pub const MAX_NAME_LEN: usize = 100;

/// The git service a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GitVerb {
    /// `git-receive-pack`: a push.
    ReceivePack,
    /// `git-upload-pack`: a fetch or clone.
    UploadPack,
    /// `git-upload-archive`: `git archive --remote`.
    UploadArchive,
}

impl GitVerb {
    /// Every verb, for tests and tables.
    pub const ALL: [GitVerb; 3] = [
        GitVerb::ReceivePack,
        GitVerb::UploadPack,
        GitVerb::UploadArchive,
    ];

    /// The dashed program name, e.g. `git-receive-pack`: what the Openruko
    /// provisioning call takes as `command=`, unchanged.
    pub fn dashed(self) -> &'static str {
        match self {
            GitVerb::ReceivePack => "git-receive-pack",
            GitVerb::UploadPack => "git-upload-pack",
            GitVerb::UploadArchive => "git-upload-archive",
        }
    }

    /// The subcommand of `git <sub>`, e.g. `receive-pack`.
    pub fn subcommand(self) -> &'static str {
        match self {
            GitVerb::ReceivePack => "receive-pack",
            GitVerb::UploadPack => "upload-pack",
            GitVerb::UploadArchive => "upload-archive",
        }
    }

    /// Whether the command writes to the repository (and so takes the
    /// per-repository push lock).
    pub fn is_push(self) -> bool {
        matches!(self, GitVerb::ReceivePack)
    }
}

/// A validated repository name: one or two parts joined by `/`, each
/// `[a-zA-Z0-9][a-zA-Z0-9._@-]{0,99}` without `..` and not ending in
/// `.lock` or `.git`; without the optional leading `/` or `~/` and trailing
/// `.git`.
///
/// Holding one proves the name is safe to join under the repositories'
/// directory and to put in an argv: it is ASCII, has no `..`, `%` or space,
/// no part is `.` or `..` or starts with `-` or `.`, and `NAME.git` never
/// lies inside another repository's directory (no folder ends in `.git`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// The name, e.g. `app` for `git-upload-pack 'app.git'`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validates a bare name (no prefix, no `.git`).
    pub fn parse(s: &str) -> Option<RepoName> {
        is_valid_name(s.as_bytes()).then(|| RepoName(s.to_owned()))
    }

    /// Whether the name is also an Openruko app name,
    /// `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}` (no dots, no folders): the only
    /// names API mode takes.
    pub fn is_app_name(&self) -> bool {
        is_app_name(self.0.as_bytes())
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed, validated git command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitCommand {
    /// The service asked for.
    pub verb: GitVerb,
    /// The repository it names.
    pub repo: RepoName,
}

/// The exec string is not a git command this server runs, and which rule
/// it broke: the user is told the rule (never their string back), and the
/// caller logs the (escaped, truncated) string itself if it wants to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidCommand {
    /// Over [`MAX_EXEC_LEN`] bytes.
    TooLong,
    /// Not `VERB PATH` with one of the three git verbs.
    NotGit,
    /// The path's quoting is not git's.
    Quoting,
    /// The name breaks the name rule (or the path has more than a name).
    Name,
    /// API mode: the name is not an Openruko app name (it has a dot or a
    /// folder).
    AppName,
}

impl InvalidCommand {
    /// The rule broken, in a sentence for the user.
    pub fn rule(self) -> &'static str {
        match self {
            Self::TooLong => "The command is longer than 1024 bytes.",
            Self::NotGit => {
                "Only git-upload-pack, git-receive-pack and git-upload-archive run here, with one path."
            }
            Self::Quoting => "The path must be quoted as git quotes it: 'NAME.git'.",
            Self::Name => {
                "A name starts with a letter or digit and holds only letters, digits, . _ @ and -, at most 100 characters, with no .. and not ending in .lock or .git; one folder at most (FOLDER/NAME); then an optional .git."
            }
            Self::AppName => {
                "A name starts with a letter or digit and holds only letters, digits, _ @ and -, at most 100 characters, then an optional .git; no folders."
            }
        }
    }
}

impl fmt::Display for InvalidCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "invalid git command: too long",
            Self::NotGit => "invalid git command: not a git command",
            Self::Quoting => "invalid git command: bad quoting",
            Self::Name | Self::AppName => "invalid git command: bad repository name",
        })
    }
}

impl std::error::Error for InvalidCommand {}

/// Parses the command of an `exec` request (any bytes) as a git command.
pub fn parse_exec(command: &[u8]) -> Result<GitCommand, InvalidCommand> {
    if command.len() > MAX_EXEC_LEN {
        return Err(InvalidCommand::TooLong);
    }
    let (verb, path) = split_verb(command).ok_or(InvalidCommand::NotGit)?;
    let unquoted = unquote(path).ok_or(InvalidCommand::Quoting)?;
    let name = strip_path(&unquoted).ok_or(InvalidCommand::Name)?;
    if !is_valid_name(name) {
        return Err(InvalidCommand::Name);
    }
    // is_valid_name admitted only ASCII, so this cannot fail; mapping the
    // impossible error keeps the function panic-free all the same.
    let name = core::str::from_utf8(name).map_err(|_| InvalidCommand::Name)?;
    Ok(GitCommand {
        verb,
        repo: RepoName(name.to_owned()),
    })
}

/// Validates a `GIT_PROTOCOL` value: accepted only when it is like
/// `version=2` (`version=` followed by one or two ASCII digits); returns it.
///
/// Anything else (other keys, `:`-separated lists, spaces) is refused rather
/// than forwarded, since the value ends up in the backend's environment.
pub fn parse_git_protocol(value: &[u8]) -> Option<&str> {
    let digits = value.strip_prefix(b"version=")?;
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(value).ok()
}

/// Splits `VERB SP PATH`, returning the verb and the path's raw bytes.
fn split_verb(command: &[u8]) -> Option<(GitVerb, &[u8])> {
    // "git-" or "git " then the subcommand: the two spellings differ only in
    // that one byte.
    let rest = command
        .strip_prefix(b"git-")
        .or_else(|| command.strip_prefix(b"git "))?;
    GitVerb::ALL.into_iter().find_map(|verb| {
        let path = rest
            .strip_prefix(verb.subcommand().as_bytes())?
            .strip_prefix(b" ")?;
        Some((verb, path))
    })
}

/// Removes one layer of quoting: git's single quotes (`'\''` for a quote
/// inside), double quotes without escapes, or none. The closing quote must
/// end the string.
fn unquote(path: &[u8]) -> Option<Vec<u8>> {
    match path.first() {
        Some(b'\'') => sq_dequote(path),
        Some(b'"') => {
            let inner = path.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
            // No escapes: a backslash or a quote inside is not a path we
            // could read the same way git's client meant it.
            if inner.iter().any(|&b| b == b'"' || b == b'\\') {
                return None;
            }
            Some(inner.to_vec())
        }
        _ => Some(path.to_vec()),
    }
}

/// git's `sq_dequote`: `'...'` segments joined by `\'` (so `'a'\''b'` is
/// `a'b`). Only the quote may be escaped, as the grammar says; git's `\!`
/// (for csh) is not accepted since no client sends it for a repository path.
fn sq_dequote(path: &[u8]) -> Option<Vec<u8>> {
    let mut rest = path.strip_prefix(b"'")?;
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let close = rest.iter().position(|&b| b == b'\'')?;
        out.extend_from_slice(&rest[..close]);
        rest = &rest[close + 1..];
        if rest.is_empty() {
            return Some(out);
        }
        // Between segments only `\'` followed by the next segment's `'`.
        rest = rest.strip_prefix(b"\\''")?;
        out.push(b'\'');
    }
}

/// Removes the optional `/` or `~/` prefix and `.git` suffix, returning the
/// bytes that must be a name.
fn strip_path(path: &[u8]) -> Option<&[u8]> {
    let path = path
        .strip_prefix(b"/")
        .or_else(|| path.strip_prefix(b"~/"))
        .unwrap_or(path);
    Some(path.strip_suffix(b".git").unwrap_or(path))
}

/// `part [ "/" part ]`, each part checked by [`is_valid_part`].
fn is_valid_name(name: &[u8]) -> bool {
    let mut parts = name.splitn(3, |&b| b == b'/');
    let (Some(first), second, None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    is_valid_part(first) && second.is_none_or(is_valid_part)
}

/// `[a-zA-Z0-9][a-zA-Z0-9._@-]{0,99}` without `..`, not ending in `.lock`
/// or `.git`, written out so no regex engine is needed and the check is
/// obviously ASCII-only.
fn is_valid_part(part: &[u8]) -> bool {
    match part.split_first() {
        Some((first, rest)) => {
            part.len() <= MAX_NAME_LEN
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-'))
                && !part.windows(2).any(|w| w == b"..")
                && !part.ends_with(b".lock")
                && !part.ends_with(b".git")
        }
        None => false,
    }
}

/// Openruko's `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}`, for API mode.
fn is_app_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            name.len() <= MAX_NAME_LEN
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn ok(command: &str) -> (GitVerb, String) {
        let parsed =
            parse_exec(command.as_bytes()).unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
        (parsed.verb, parsed.repo.as_str().to_owned())
    }

    #[test]
    fn accepts_what_real_clients_send() {
        use GitVerb::*;
        let cases: &[(&str, GitVerb, &str)] = &[
            ("git-receive-pack 'app.git'", ReceivePack, "app"),
            ("git-upload-pack '/app.git'", UploadPack, "app"),
            ("git upload-pack 'app.git'", UploadPack, "app"),
            ("git receive-pack 'app.git'", ReceivePack, "app"),
            ("git upload-archive 'app.git'", UploadArchive, "app"),
            ("git-upload-pack \"app.git\"", UploadPack, "app"),
            ("git-upload-pack app.git", UploadPack, "app"),
            ("git-upload-pack '~/app.git'", UploadPack, "app"),
            ("git-upload-pack 'app'", UploadPack, "app"),
            ("git-upload-archive 'app.git'", UploadArchive, "app"),
            ("git-upload-archive '/app.git'", UploadArchive, "app"),
            (
                "git-receive-pack '/my-app_2@x.git'",
                ReceivePack,
                "my-app_2@x",
            ),
            ("git-receive-pack 'A'", ReceivePack, "A"),
            ("git-receive-pack '9lives'", ReceivePack, "9lives"),
            ("git-upload-pack ~/app", UploadPack, "app"),
            ("git-upload-pack /app", UploadPack, "app"),
            ("git-upload-pack \"/app\"", UploadPack, "app"),
            // A name may end in "git" without the dot.
            ("git-upload-pack 'appgit'", UploadPack, "appgit"),
            ("git-upload-pack 'app-git.git'", UploadPack, "app-git"),
            ("git-upload-pack 'team/site.git'", UploadPack, "team/site"),
            (
                "git-receive-pack '/team/site.git'",
                ReceivePack,
                "team/site",
            ),
            ("git-upload-pack '~/team/site'", UploadPack, "team/site"),
            ("git-upload-pack 'my.app.git'", UploadPack, "my.app"),
            ("git-upload-pack 'my.app'", UploadPack, "my.app"),
            ("git-upload-pack 'a.b/c.d.git'", UploadPack, "a.b/c.d"),
            ("git-upload-pack 'v1.2.3.'", UploadPack, "v1.2.3."),
            ("git-upload-pack 'x@y.z/lock'", UploadPack, "x@y.z/lock"),
            ("git-upload-pack '/etc/passwd'", UploadPack, "etc/passwd"),
        ];
        for (command, verb, name) in cases {
            assert_eq!(ok(command), (*verb, (*name).to_owned()), "{command:?}");
        }
        let hundred = "a".repeat(100);
        assert_eq!(
            ok(&format!("git-upload-pack '{hundred}.git'")),
            (UploadPack, hundred.clone())
        );
        assert_eq!(
            ok(&format!("git-upload-pack '{hundred}/{hundred}.git'")),
            (UploadPack, format!("{hundred}/{hundred}"))
        );
    }

    #[test]
    fn refuses_everything_else() {
        let over_limit = format!("git-upload-pack '{}.git'", "a".repeat(MAX_EXEC_LEN));
        let name_101 = format!("git-upload-pack '{}.git'", "a".repeat(101));
        let cases: &[&[u8]] = &[
            b"git-upload-pack 'app.git'; rm -rf /",
            b"git-upload-pack 'app.git';rm -rf /",
            b"git-upload-pack $(id)",
            b"git-upload-pack '$(id)'",
            b"git-upload-pack \"$(id)\"",
            b"git-upload-pack `id`",
            b"git-upload-pack '`id`.git'",
            b"git-upload-pack 'app.git'\nrm -rf /",
            b"git-upload-pack 'app.git'\n",
            b"git-upload-pack app.git\nsh",
            b"git-upload-pack 'app\nx.git'",
            b"git-upload-pack 'app.git'\0",
            b"git-upload-pack 'app\0.git'",
            b"git-upload-pack \0'app.git'",
            b"git-upload-pack 'app.git",
            b"git-upload-pack app.git'",
            b"git-upload-pack \"app.git",
            b"git-upload-pack \"app.git'",
            b"git-upload-pack 'app.git\"",
            b"git-upload-pack '../../etc/passwd.git'",
            b"git-upload-pack '/../app.git'",
            b"git-upload-pack './app.git'",
            b"git-upload-pack 'app.git/'",
            b"git-upload-pack 'app/.git'",
            b"git-upload-pack '.git'",
            b"git-upload-pack 'a/b/c.git'",
            b"git-upload-pack 'a..b.git'",
            b"git-upload-pack 'a/..b.git'",
            b"git-upload-pack 'a/.b.git'",
            b"git-upload-pack '.a/b.git'",
            b"git-upload-pack 'a.lock'",
            b"git-upload-pack 'a.lock.git'",
            b"git-upload-pack 'a.lock/b.git'",
            b"git-upload-pack 'a.git/b.git'",
            b"git-upload-pack 'a/.git'",
            b"git-upload-pack 'a//b.git'",
            b"git-upload-pack 'a/'",
            b"git-upload-pack '/a/-b.git'",
            b"git-upload-pack 'a\\b.git'",
            b"git-upload-pack '/.git'",
            b"git-upload-pack '~user/app.git'",
            b"git-upload-pack '~/~/app.git'",
            b"git-upload-pack '//app.git'",
            b"git-upload-pack '~app.git'",
            b"git-upload-pack '%2e%2e/app.git'",
            b"git-upload-pack '%2e%2e'",
            b"git-upload-pack 'app%2egit'",
            b"git-upload-pack 'app.git.git'",
            over_limit.as_bytes(),
            name_101.as_bytes(),
            b"scp -t /",
            b"scp -f app.git",
            b"sh",
            b"sh -c 'git-upload-pack app.git'",
            b"",
            b" ",
            b"git-upload-pack",
            b"git-upload-pack ",
            b"git-upload-pack ''",
            b"git-upload-pack \"\"",
            b"git-upload-pack  'app.git'",
            b"git-upload-pack\t'app.git'",
            b"git-upload-pack 'app.git' ",
            b" git-upload-pack 'app.git'",
            b"git-upload-pack 'app.git'\r",
            b"git  upload-pack 'app.git'",
            b"git\tupload-pack 'app.git'",
            b"GIT-UPLOAD-PACK 'app.git'",
            b"Git-upload-pack 'app.git'",
            b"git-Upload-pack 'app.git'",
            b"git-upload pack 'app.git'",
            b"git upload pack 'app.git'",
            b"git-upload-packs 'app.git'",
            b"git-upload-pack2 'app.git'",
            b"git-upload-pack-x 'app.git'",
            b"git-shell -c 'git-upload-pack app.git'",
            b"git-lfs-authenticate 'app.git' download",
            b"git-upload-pack 'app.git' extra",
            b"git-upload-pack 'app.git''x'",
            // git's sq_dequote refuses adjacent segments without `\'`.
            b"git-upload-pack 'ap''p.git'",
            b"git-upload-pack '-app.git'",
            b"git-upload-pack '--upload-pack=sh'",
            b"git-upload-pack '_app.git'",
            b"git-upload-pack '@app.git'",
            b"git-upload-pack 'app name.git'",
            b"git-upload-pack 'a'\\''b'",
            b"git-upload-pack 'app'\\'",
            b"git-upload-pack 'app'\\''",
            b"git-upload-pack 'app'\\!''",
            b"git-upload-pack \"app\\\".git\"",
            b"git-upload-pack \"a\\pp.git\"",
            b"git-upload-pack app\\.git",
            b"git-upload-pack 'caf\xc3\xa9.git'",
            b"git-upload-pack '\xff\xfe.git'",
            b"git-upload-pack \xff",
            b"\xffgit-upload-pack 'app.git'",
            b"git-upload-pack '\xef\xbc\xa1pp.git'", // fullwidth 'A'
        ];
        for command in cases {
            assert!(
                parse_exec(command).is_err(),
                "{:?}",
                String::from_utf8_lossy(command)
            );
        }
    }

    #[test]
    fn length_limit_never_refuses_a_valid_command() {
        // The limit only bounds work on hostile input: the longest command
        // the grammar accepts is far shorter, and parses.
        let part = "a".repeat(MAX_NAME_LEN);
        let longest = format!("git upload-archive '~/{part}/{part}.git'");
        assert!(longest.len() < MAX_EXEC_LEN);
        assert!(parse_exec(longest.as_bytes()).is_ok());
        // Over the limit is refused whatever follows.
        let mut over = longest.into_bytes();
        over.resize(MAX_EXEC_LEN + 1, b' ');
        assert_eq!(parse_exec(&over), Err(InvalidCommand::TooLong));
    }

    #[test]
    fn dequoting_follows_git() {
        assert_eq!(sq_dequote(b"'a'\\''b'"), Some(b"a'b".to_vec()));
        assert_eq!(sq_dequote(b"'a'\\'''\\''b'"), Some(b"a''b".to_vec()));
        assert_eq!(sq_dequote(b"''"), Some(Vec::new()));
        assert_eq!(sq_dequote(b"'a'b"), None);
        assert_eq!(sq_dequote(b"'a"), None);
        assert_eq!(sq_dequote(b"'a'\\'"), None);
        assert_eq!(unquote(b"\"a b\""), Some(b"a b".to_vec()));
        assert_eq!(unquote(b"\"a\\\"b\""), None);
        assert_eq!(unquote(b"\""), None);
        // The string a'b then fails the name rule, as the grammar intends.
        assert_eq!(
            parse_exec(b"git-upload-pack 'a'\\''b'"),
            Err(InvalidCommand::Name)
        );
    }

    #[test]
    fn repo_name_parse() {
        assert_eq!(RepoName::parse("app").unwrap().as_str(), "app");
        assert_eq!(RepoName::parse("a@b_c-d9").unwrap().to_string(), "a@b_c-d9");
        assert!(RepoName::parse(&"z".repeat(100)).is_some());
        for good in ["a/b", "a.b", "team/my.app", "a.gitx", "a.locks/b"] {
            assert_eq!(RepoName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "app.git",
            "/app",
            "~/app",
            "-app",
            "_app",
            "@app",
            ".app",
            "a b",
            "a/b/c",
            "a/",
            "/a",
            "a..b",
            "a.lock",
            "a.git/b",
            "a/.b",
            "é",
            "a\u{0}",
            &"z".repeat(101),
        ] {
            assert_eq!(RepoName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn verbs() {
        assert_eq!(GitVerb::ReceivePack.dashed(), "git-receive-pack");
        assert_eq!(GitVerb::UploadPack.dashed(), "git-upload-pack");
        assert_eq!(GitVerb::UploadArchive.dashed(), "git-upload-archive");
        assert_eq!(GitVerb::ReceivePack.subcommand(), "receive-pack");
        assert_eq!(GitVerb::UploadPack.subcommand(), "upload-pack");
        assert_eq!(GitVerb::UploadArchive.subcommand(), "upload-archive");
        assert!(GitVerb::ReceivePack.is_push());
        assert!(!GitVerb::UploadPack.is_push());
        assert!(!GitVerb::UploadArchive.is_push());
    }

    #[test]
    fn each_refusal_names_the_rule_broken() {
        let cases: &[(&[u8], InvalidCommand)] = &[
            (b"rm -rf /", InvalidCommand::NotGit),
            (b"git-shell -c x", InvalidCommand::NotGit),
            (b"git-upload-pack  'x.git'", InvalidCommand::Name),
            (b"git-upload-pack 'x.git", InvalidCommand::Quoting),
            (b"git-upload-pack \"x\\\".git\"", InvalidCommand::Quoting),
            (b"git-upload-pack '../x.git'", InvalidCommand::Name),
            (b"git-upload-pack 'a/b/c.git'", InvalidCommand::Name),
            (b"git-upload-pack 'a..b.git'", InvalidCommand::Name),
        ];
        for (command, why) in cases {
            assert_eq!(
                parse_exec(command),
                Err(*why),
                "{:?}",
                String::from_utf8_lossy(command)
            );
        }
        assert!(
            InvalidCommand::Name
                .rule()
                .contains("at most 100 characters")
        );
        assert_eq!(
            InvalidCommand::NotGit.to_string(),
            "invalid git command: not a git command"
        );
    }

    #[test]
    fn git_protocol_values() {
        for good in [
            "version=0",
            "version=1",
            "version=2",
            "version=10",
            "version=99",
        ] {
            assert_eq!(parse_git_protocol(good.as_bytes()), Some(good));
        }
        for bad in [
            &b""[..],
            b"version=",
            b"version=100",
            b"version=2 ",
            b" version=2",
            b"version=2\n",
            b"version=2:object-format=sha256",
            b"version=a",
            b"version=-1",
            b"version=+2",
            b"Version=2",
            b"version 2",
            b"version==2",
            b"version=2\0",
            b"version=\xd9\xa2", // Arabic-Indic digit two
            b"2",
            b"LD_PRELOAD=/tmp/x.so",
        ] {
            assert_eq!(
                parse_git_protocol(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The name rule restated from the grammar's words, independently of
    /// `is_valid_name`: at most two parts split on `/`; each part a letter
    /// or digit then letters, digits and `._@-`, at most 100 characters,
    /// no `..`, not ending in `.lock` or `.git`.
    fn matches_name_regex(s: &str) -> bool {
        const FIRST: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let parts: Vec<&str> = s.split('/').collect();
        parts.len() <= 2
            && parts.iter().all(|part| {
                let chars: Vec<char> = part.chars().collect();
                !chars.is_empty()
                    && chars.len() <= 100
                    && FIRST.contains(chars[0])
                    && chars
                        .iter()
                        .all(|&c| FIRST.contains(c) || "._@-".contains(c))
                    && !part.contains("..")
                    && !part.ends_with(".lock")
                    && !part.ends_with(".git")
            })
    }

    /// Openruko's app name, `[a-zA-Z0-9][a-zA-Z0-9@_-]{0,99}`, as a table.
    fn matches_app_regex(s: &str) -> bool {
        const FIRST: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if FIRST.contains(c) => {
                let rest: Vec<char> = chars.collect();
                rest.len() <= 99 && rest.iter().all(|&c| FIRST.contains(c) || "@_-".contains(c))
            }
            _ => false,
        }
    }

    #[test]
    fn regex_model_agrees_on_examples() {
        // Guards the models the property tests rely on.
        assert!(matches_name_regex("a"));
        assert!(matches_name_regex("a-b@c_d"));
        assert!(matches_name_regex("a.b/c.d"));
        assert!(!matches_name_regex("-a"));
        assert!(!matches_name_regex("a/b/c"));
        assert!(!matches_name_regex("a..b"));
        assert!(!matches_name_regex("a.lock"));
        assert!(!matches_name_regex(""));
        assert!(matches_name_regex(&"a".repeat(100)));
        assert!(!matches_name_regex(&"a".repeat(101)));
        assert!(matches_app_regex("a-b@c_d"));
        assert!(!matches_app_regex("a.b"));
        assert!(!matches_app_regex("a/b"));
        assert!(!matches_app_regex(&"a".repeat(101)));
    }

    #[test]
    fn app_names_are_openruko_names() {
        for good in ["app", "my-app_2@x", "A"] {
            assert!(RepoName::parse(good).unwrap().is_app_name(), "{good}");
        }
        for bad in ["my.app", "team/site", "a.b/c"] {
            assert!(!RepoName::parse(bad).unwrap().is_app_name(), "{bad}");
        }
    }

    fn part_strategy() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9._@-]{0,99}".prop_filter("a part", |p| {
            !p.contains("..") && !p.ends_with(".lock") && !p.ends_with(".git")
        })
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        (part_strategy(), prop::option::of(part_strategy())).prop_map(|(a, b)| match b {
            Some(b) => format!("{a}/{b}"),
            None => a,
        })
    }

    fn verb_strategy() -> impl Strategy<Value = GitVerb> {
        prop::sample::select(GitVerb::ALL.to_vec())
    }

    /// Exec strings near the grammar, so the accept path gets exercised,
    /// not just random noise that fails at the first byte.
    fn near_miss_strategy() -> impl Strategy<Value = Vec<u8>> {
        let verbs = prop::sample::select(vec![
            "git-upload-pack",
            "git upload-pack",
            "git-receive-pack",
            "git receive-pack",
            "git-upload-archive",
            "git upload-archive",
        ]);
        (verbs, "[ '\"/~.a-z@_\\\\%\n\t-]{0,24}(\\.git|\\.lock)?")
            .prop_map(|(verb, rest)| format!("{verb} {rest}").into_bytes())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
            let _ = parse_exec(&bytes);
            let _ = parse_git_protocol(&bytes);
        }

        #[test]
        fn accepted_names_match_the_regex(bytes in prop_oneof![
            near_miss_strategy(),
            prop::collection::vec(any::<u8>(), 0..64),
        ]) {
            if let Ok(command) = parse_exec(&bytes) {
                prop_assert!(matches_name_regex(command.repo.as_str()), "{:?}", command);
                prop_assert!(RepoName::parse(command.repo.as_str()).is_some());
                prop_assert_eq!(
                    command.repo.is_app_name(),
                    matches_app_regex(command.repo.as_str())
                );
            }
        }

        #[test]
        fn round_trip(
            name in name_strategy(),
            verb in verb_strategy(),
            spaced in any::<bool>(),
            prefix in prop::sample::select(vec!["", "/", "~/"]),
            suffix in prop::sample::select(vec!["", ".git"]),
            quoting in 0..3u8,
        ) {
            let verb_text = if spaced {
                format!("git {}", verb.subcommand())
            } else {
                verb.dashed().to_owned()
            };
            let path = format!("{prefix}{name}{suffix}");
            let path = match quoting {
                0 => format!("'{path}'"),
                1 => format!("\"{path}\""),
                _ => path,
            };
            let command = format!("{verb_text} {path}");
            let parsed = parse_exec(command.as_bytes());
            prop_assert_eq!(
                parsed,
                Ok(GitCommand { verb, repo: RepoName(name.clone()) }),
                "{}", command
            );
            prop_assert!(matches_name_regex(&name));
        }

        #[test]
        fn names_off_the_regex_are_refused(name in prop_oneof![
            "[ -~]{0,110}",
            "[a-zA-Z0-9./@_~-]{0,24}(\\.git|\\.lock)?",
        ]) {
            let command = format!("git-upload-pack '{name}'");
            // Strip what the grammar strips, then the regex decides.
            let stripped = name
                .strip_prefix('/')
                .or_else(|| name.strip_prefix("~/"))
                .unwrap_or(&name);
            let stripped = stripped.strip_suffix(".git").unwrap_or(stripped);
            let accepted = parse_exec(command.as_bytes()).is_ok();
            prop_assert_eq!(accepted, !name.contains('\'') && matches_name_regex(stripped), "{}", command);
        }
    }
}
