//! What users see on the channel's stderr (RFC 4254 §5.2 extended data,
//! type 1) and the exit status (RFC 4254 §6.10) that follows each message.
//!
//! The texts are the design's and the Openruko original's
//! (`docs/openruko.md`, "What the user sees"); where the original had a
//! text its bytes are kept exactly, since people and scripts match on them.
//! Every function here is pure: the session decides when to send what.

use crate::app::command::InvalidCommand;

/// Exit status of every refusal except a failed provisioning.
pub const EXIT_FAILURE: u32 = 1;

/// Exit status the original gave when provisioning failed; kept because
/// scripts around `git push` may test for it.
pub const EXIT_BUILD_SERVER_UNAVAILABLE: u32 = 127;

/// The longest interpolated value shown; longer ones are cut so a huge key
/// comment cannot flood a user's terminal.
const MAX_FIELD_CHARS: usize = 256;

/// Where users reach the server, for messages: `--public-host`, with the
/// port they connect to (the listen port unless `--public-host` names
/// another, as behind a load balancer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicHost {
    /// The host name (or address) users push to.
    pub host: String,
    /// The port users connect to.
    pub port: u16,
}

impl PublicHost {
    /// Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` (a bare IPv6
    /// address has no port); `default_port` when none is given.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let text = text.trim();
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("not a port in --public-host {text:?}: {p:?}"))
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("unclosed [ in --public-host {text:?}"))?;
            match after {
                "" => (v6, default_port),
                _ => match after.strip_prefix(':') {
                    Some(p) => (v6, port(p)?),
                    None => {
                        return Err(format!("expected :PORT after ] in --public-host {text:?}"));
                    }
                },
            }
        } else {
            match text.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, port(p)?),
                // Several colons: a bare IPv6 address.
                _ => (text, default_port),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!("not a host name in --public-host {text:?}"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The host as it goes in a URL (an IPv6 address in brackets).
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The remote URL of repository `name` that works for this server:
    /// `git@HOST:NAME.git` on port 22, `ssh://git@HOST:PORT/NAME.git`
    /// otherwise (the scp-like form cannot carry a port).
    pub fn url(&self, name: &str) -> String {
        if self.port == 22 {
            format!("git@{}:{name}.git", self.url_host())
        } else {
            format!("ssh://git@{}:{}/{name}.git", self.url_host(), self.port)
        }
    }
}

/// What the user's names stand for: standalone mode serves repositories,
/// API mode a platform's apps (whose Heroku wording is kept byte for
/// byte, since people and scripts match on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wording {
    /// Standalone mode: "repository".
    Repositories,
    /// API mode: "app", as the original said.
    Apps,
}

/// The original's message for a command that is not `VERB 'app.git'`: the
/// URL form that works for this server (the original's exact line on port
/// 22), then the rule the command broke. Standalone mode says
/// `<repo>`/"repository" where the original said `<app>`/"app".
pub fn invalid_path(public: &PublicHost, why: InvalidCommand, wording: Wording) -> String {
    let (placeholder, noun) = match wording {
        Wording::Repositories => ("<repo>", "repository"),
        Wording::Apps => ("<app>", "app"),
    };
    format!(
        "\n ! Invalid path.\n ! Syntax is: {} where {placeholder} is your {noun}'s name.\n ! {}\n\n",
        sanitize(&public.url(placeholder)),
        why.rule()
    )
}

/// One text for "no such repository", "no such app" and "not yours", so a
/// user cannot learn which repositories (or apps) exist.
pub fn no_such_app(app: &str, wording: Wording) -> String {
    let noun = match wording {
        Wording::Repositories => "repository",
        Wording::Apps => "app",
    };
    format!(
        " ! No such {noun} as {}, or you do not have access to it.\n",
        sanitize(app)
    )
}

/// The platform (API server) could not be reached or failed. Says the key
/// was not checked, so nobody goes hunting for a key problem.
pub fn platform_unavailable() -> &'static str {
    " ! The platform is unavailable right now; your key was not checked. Try again shortly.\n"
}

/// The platform failed after the user's key was checked (the access check
/// could not be made): the key is fine, so this says nothing about it.
pub fn platform_failing() -> &'static str {
    " ! The platform is unavailable right now. Try again shortly.\n"
}

/// Shown while provisioning takes its time (a progress line, not an error).
pub fn waiting_for_build_server() -> &'static str {
    "-----> Waiting for a build server...\n"
}

/// The original's message when provisioning a build dyno failed.
pub fn build_server_unavailable() -> &'static str {
    "\n ! Unable to contact build server.\n\n"
}

/// The dyno went away mid-command.
pub fn lost_build_server() -> &'static str {
    " ! Lost connection to the build server.\n"
}

/// Another push to the same repository holds the lock; `started` is when it
/// began, already formatted by the caller (the core has no clock), `user`
/// who pushes, and `instance` which server the push came through when
/// several share the lock.
pub fn push_in_progress(app: &str, started: &str, user: &str, instance: Option<&str>) -> String {
    let through = instance
        .map(|i| format!(" through {}", sanitize(i)))
        .unwrap_or_default();
    format!(
        " ! Another push to {} is in progress (started {} by {}{through}).\n",
        sanitize(app),
        sanitize(started),
        sanitize(user),
    )
}

/// The service that keeps push locks across instances is unreachable: no
/// push goes on without its lock.
pub fn lock_unavailable(app: &str) -> String {
    format!(
        " ! Pushes to {} are refused for now: the push lock service is unavailable. Try again shortly.\n",
        sanitize(app)
    )
}

/// Shown while a push waits for the push lock another push holds (a
/// progress line, not an error): who holds it and since when, already
/// formatted by the caller.
pub fn waiting_for_push(app: &str, user: &str, started: &str) -> String {
    format!(
        "-----> Waiting for the push to {} by {} (started {}) to finish...\n",
        sanitize(app),
        sanitize(user),
        sanitize(started)
    )
}

/// Shown when a push creates its repository (a progress line, not an
/// error), before git's advertisement: git's client gives up on a hash
/// mismatch right after it, so the pusher learns the format first.
/// `ref_format` is named when it is not git's usual `files`.
pub fn creating_repository(repo: &str, object_format: &str, ref_format: Option<&str>) -> String {
    let refs = ref_format
        .map(|r| format!(", ref format {}", sanitize(r)))
        .unwrap_or_default();
    format!(
        "-----> Creating repository {} (object format {}{refs})\n",
        sanitize(repo),
        sanitize(object_format)
    )
}

/// A push would create a repository whose name differs only in case from
/// one that exists: two such names cannot both be repositories.
pub fn case_collision(repo: &str, existing: &str) -> String {
    format!(
        " ! Repository {} cannot be created: its name differs only in case from the existing repository {}. Push to {}, or choose another name.\n",
        sanitize(repo),
        sanitize(existing),
        sanitize(existing)
    )
}

/// Too many git commands run on the server at once (`--max-commands`).
pub fn server_busy() -> &'static str {
    " ! The server is busy (too many git commands at once); try again in a moment.\n"
}

/// A user's message as git's `ERR` pkt-line (`gitprotocol-pack(5)`), for a
/// git that still waits for the server's first words: git then prints
/// `fatal: remote error: <text>` rather than guessing at access rights.
/// The text is the message's lines without their ` ! ` marks, on one line.
pub fn err_pkt_line(message: &str) -> Vec<u8> {
    let text: Vec<&str> = message
        .lines()
        .map(|line| line.trim().trim_start_matches('!').trim())
        .filter(|line| !line.is_empty())
        .collect();
    // Cut as every interpolated value is, far below a pkt-line's 65516.
    let text = sanitize(&text.join(" "));
    format!("{:04x}ERR {text}\n", text.len() + 9).into_bytes()
}

/// The answer to `ssh git@host` (a `shell` request): the key works, but
/// there is no shell.
pub fn shell_greeting(user: &str) -> String {
    format!(
        "Hi {}! You've successfully authenticated, but gitmouth does not provide shell access.\n",
        sanitize(user)
    )
}

/// Appends a ` ! (session <id>)` line to an error message, so support can
/// find the log line. The line goes after the message's last text line and
/// before its closing blank line, keeping the Heroku-style framing.
pub fn with_session_id(message: &str, session_id: &str) -> String {
    let body = message.trim_end_matches('\n');
    let trailing = &message[body.len()..];
    let trailing = if trailing.is_empty() { "\n" } else { trailing };
    format!("{body}\n ! (session {}){trailing}", sanitize(session_id))
}

/// Something failed on our side (the repository could not be opened, git
/// could not be started); the details are in the operator's log.
pub fn server_failed() -> &'static str {
    " ! The server could not run your command; this is not your fault. Try again shortly.\n"
}

/// A failure the user is told about, with its exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserError {
    /// The exec string is not a git command this server runs, and why.
    InvalidPath(InvalidCommand),
    /// No such repository or app, or no access to it.
    NoSuchApp {
        /// The repository name the user asked for.
        app: String,
    },
    /// The platform (API server) is unreachable or failing.
    PlatformUnavailable,
    /// The platform failed after the key was checked.
    PlatformFailing,
    /// Provisioning the build dyno failed.
    BuildServerUnavailable,
    /// The build dyno went away mid-command.
    LostBuildServer,
    /// Another push to the repository holds the lock.
    PushInProgress {
        /// The repository name.
        app: String,
        /// When the other push started, formatted for people.
        started: String,
        /// Who pushes.
        user: String,
        /// The instance the other push came through, when several share
        /// the lock.
        instance: Option<String>,
    },
    /// The lock service shared by several instances cannot be reached.
    LockUnavailable {
        /// The repository name.
        app: String,
    },
    /// A push would create a repository whose name differs only in case
    /// from an existing one.
    CaseCollision {
        /// The repository name the user pushed to.
        repo: String,
        /// The existing repository's name.
        existing: String,
    },
    /// Our side failed to run the command.
    ServerFailed,
    /// The server is stopping.
    ServerStopping,
    /// `--max-commands` git commands run already.
    ServerBusy,
    /// Nothing moved for this many seconds.
    IdleTimeout {
        /// The limit.
        secs: u64,
    },
    /// The session outlived its limit of this many seconds.
    SessionLimit {
        /// The limit.
        secs: u64,
    },
    /// git-lfs asked for its SSH transfer (`git-lfs-authenticate`,
    /// `git-lfs-transfer`), which is not served: git-lfs falls back to
    /// HTTPS or reports this.
    LfsUnsupported,
    /// The client asked for a shell; not an error of the user's, but it ends
    /// the session with a message and a failure status all the same.
    NoShell {
        /// Who the key belongs to.
        user: String,
        /// With an access file: the repositories of a deploy key (named
        /// in the greeting), and the lines listing the user's rules.
        access: Option<(Vec<String>, String)>,
    },
}

impl UserError {
    /// The stderr text; `public` is where users reach the server (only
    /// [`UserError::InvalidPath`] uses it), `wording` the mode's.
    pub fn message(&self, public: &PublicHost, wording: Wording) -> String {
        match self {
            UserError::InvalidPath(why) => invalid_path(public, *why, wording),
            UserError::NoSuchApp { app } => no_such_app(app, wording),
            UserError::PlatformUnavailable => platform_unavailable().to_owned(),
            UserError::PlatformFailing => platform_failing().to_owned(),
            UserError::BuildServerUnavailable => build_server_unavailable().to_owned(),
            UserError::LostBuildServer => lost_build_server().to_owned(),
            UserError::PushInProgress {
                app,
                started,
                user,
                instance,
            } => push_in_progress(app, started, user, instance.as_deref()),
            UserError::LockUnavailable { app } => lock_unavailable(app),
            UserError::CaseCollision { repo, existing } => case_collision(repo, existing),
            UserError::NoShell { user, access: None } => shell_greeting(user),
            UserError::NoShell {
                user,
                access: Some((deploys, rules)),
            } => {
                let mut text = if deploys.is_empty() {
                    shell_greeting(user)
                } else {
                    format!(
                        "Hi {}! You've successfully authenticated with a deploy key for {}, but gitmouth does not provide shell access.\n",
                        sanitize(user),
                        sanitize(&deploys.join(", "))
                    )
                };
                text.push_str("Your repositories:\n");
                text.push_str(&sanitize_lines(rules));
                text
            }
            UserError::ServerFailed => server_failed().to_owned(),
            UserError::LfsUnsupported => {
                " ! Git LFS is not served over SSH here (no git-lfs-authenticate or git-lfs-transfer).\n"
                    .to_owned()
            }
            UserError::ServerStopping => {
                " ! The server is restarting; try again in a moment.\n".to_owned()
            }
            UserError::ServerBusy => server_busy().to_owned(),
            UserError::IdleTimeout { secs } => {
                format!(" ! Timed out: nothing was sent or received for {secs} seconds.\n")
            }
            UserError::SessionLimit { secs } => {
                format!(" ! The session reached its time limit of {secs} seconds.\n")
            }
        }
    }

    /// The exit status sent after the message: never 0.
    pub fn exit_status(&self) -> u32 {
        match self {
            UserError::BuildServerUnavailable => EXIT_BUILD_SERVER_UNAVAILABLE,
            UserError::InvalidPath(_)
            | UserError::NoSuchApp { .. }
            | UserError::PlatformUnavailable
            | UserError::PlatformFailing
            | UserError::LostBuildServer
            | UserError::PushInProgress { .. }
            | UserError::LockUnavailable { .. }
            | UserError::CaseCollision { .. }
            | UserError::ServerFailed
            | UserError::LfsUnsupported
            | UserError::ServerStopping
            | UserError::ServerBusy
            | UserError::IdleTimeout { .. }
            | UserError::SessionLimit { .. }
            | UserError::NoShell { .. } => EXIT_FAILURE,
        }
    }
}

/// Makes a value safe to print on someone's terminal: control characters
/// (which could move the cursor or fake a line) become `?`, and it is cut at
/// [`MAX_FIELD_CHARS`] characters.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .take(MAX_FIELD_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Several lines of ours: control characters but the line ends made
/// harmless.
fn sanitize_lines(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn host(host: &str, port: u16) -> PublicHost {
        PublicHost {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn originals_are_byte_exact() {
        // docs/openruko.md, with heroku.com as the public host: on port 22
        // the original's two lines, then the rule broken.
        assert!(
            invalid_path(&host("heroku.com", 22), InvalidCommand::Name, Wording::Apps).starts_with(
                "\n ! Invalid path.\n ! Syntax is: git@heroku.com:<app>.git where <app> is your app's name.\n"
            )
        );
        assert_eq!(
            build_server_unavailable().as_bytes(),
            b"\n ! Unable to contact build server.\n\n"
        );
    }

    #[test]
    fn every_text_is_byte_exact() {
        assert_eq!(
            invalid_path(
                &host("git.example.org", 22),
                InvalidCommand::AppName,
                Wording::Apps
            ),
            "\n ! Invalid path.\n ! Syntax is: git@git.example.org:<app>.git where <app> is your app's name.\n ! A name starts with a letter or digit and holds only letters, digits, _ @ and -, at most 100 characters, then an optional .git; no folders.\n\n"
        );
        assert_eq!(
            invalid_path(&host("vm", 2222), InvalidCommand::NotGit, Wording::Apps),
            "\n ! Invalid path.\n ! Syntax is: ssh://git@vm:2222/<app>.git where <app> is your app's name.\n ! Only git-upload-pack, git-receive-pack and git-upload-archive run here, with one path.\n\n"
        );
        assert_eq!(
            no_such_app("myapp", Wording::Apps),
            " ! No such app as myapp, or you do not have access to it.\n"
        );
        assert_eq!(
            platform_unavailable(),
            " ! The platform is unavailable right now; your key was not checked. Try again shortly.\n"
        );
        assert_eq!(
            platform_failing(),
            " ! The platform is unavailable right now. Try again shortly.\n"
        );
        assert_eq!(
            lost_build_server(),
            " ! Lost connection to the build server.\n"
        );
        assert_eq!(
            push_in_progress("myapp", "12 seconds ago", "alice", None),
            " ! Another push to myapp is in progress (started 12 seconds ago by alice).\n"
        );
        assert_eq!(
            push_in_progress("myapp", "just now", "bob", Some("git-b:22")),
            " ! Another push to myapp is in progress (started just now by bob through git-b:22).\n"
        );
        assert_eq!(
            lock_unavailable("myapp"),
            " ! Pushes to myapp are refused for now: the push lock service is unavailable. Try again shortly.\n"
        );
        assert_eq!(
            shell_greeting("alice@example.com"),
            "Hi alice@example.com! You've successfully authenticated, but gitmouth does not provide shell access.\n"
        );
        assert_eq!(
            creating_repository("team/site", "sha256", None),
            "-----> Creating repository team/site (object format sha256)\n"
        );
        assert_eq!(
            creating_repository("a", "sha1", Some("reftable")),
            "-----> Creating repository a (object format sha1, ref format reftable)\n"
        );
        assert_eq!(
            case_collision("MyApp", "myapp"),
            " ! Repository MyApp cannot be created: its name differs only in case from the existing repository myapp. Push to myapp, or choose another name.\n"
        );
    }

    #[test]
    fn standalone_speaks_of_repositories() {
        assert_eq!(
            invalid_path(
                &host("git.example.org", 22),
                InvalidCommand::NotGit,
                Wording::Repositories
            ),
            "\n ! Invalid path.\n ! Syntax is: git@git.example.org:<repo>.git where <repo> is your repository's name.\n ! Only git-upload-pack, git-receive-pack and git-upload-archive run here, with one path.\n\n"
        );
        assert_eq!(
            no_such_app("team/site", Wording::Repositories),
            " ! No such repository as team/site, or you do not have access to it.\n"
        );
        let error = UserError::NoSuchApp { app: "x".into() };
        assert_eq!(
            error.message(&host("h", 22), Wording::Repositories),
            no_such_app("x", Wording::Repositories)
        );
    }

    #[test]
    fn session_id_line() {
        assert_eq!(
            with_session_id(build_server_unavailable(), "c0ffee"),
            "\n ! Unable to contact build server.\n ! (session c0ffee)\n\n"
        );
        assert_eq!(
            with_session_id(
                &invalid_path(&host("h", 22), InvalidCommand::TooLong, Wording::Apps),
                "42"
            ),
            "\n ! Invalid path.\n ! Syntax is: git@h:<app>.git where <app> is your app's name.\n ! The command is longer than 1024 bytes.\n ! (session 42)\n\n"
        );
        assert_eq!(
            with_session_id(lost_build_server(), "7"),
            " ! Lost connection to the build server.\n ! (session 7)\n"
        );
        // A message without a final newline still gets whole lines.
        assert_eq!(with_session_id(" ! x", "1"), " ! x\n ! (session 1)\n");
        assert_eq!(with_session_id(" ! x", "a\nb"), " ! x\n ! (session a?b)\n");
    }

    #[test]
    fn err_pkt_lines_carry_the_message_on_one_line() {
        assert_eq!(
            err_pkt_line(server_busy()),
            b"0053ERR The server is busy (too many git commands at once); try again in a moment.\n"
        );
        let with_id = with_session_id(server_busy(), "c0ffee");
        let line = err_pkt_line(&with_id);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.ends_with("moment. (session c0ffee)\n"), "{text}");
        assert_eq!(usize::from_str_radix(&text[..4], 16).unwrap(), line.len());
    }

    #[test]
    fn exit_statuses() {
        let app = || "a".to_owned();
        let cases = [
            (UserError::InvalidPath(InvalidCommand::Name), 1),
            (UserError::NoSuchApp { app: app() }, 1),
            (UserError::PlatformUnavailable, 1),
            (UserError::PlatformFailing, 1),
            (UserError::BuildServerUnavailable, 127),
            (UserError::LostBuildServer, 1),
            (
                UserError::PushInProgress {
                    app: app(),
                    started: "t".to_owned(),
                    user: "u".to_owned(),
                    instance: None,
                },
                1,
            ),
            (UserError::LockUnavailable { app: app() }, 1),
            (
                UserError::NoShell {
                    user: app(),
                    access: None,
                },
                1,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.exit_status(), status, "{error:?}");
        }
    }

    #[test]
    fn enum_messages_are_the_functions() {
        let host = &host("h.example", 22);
        assert_eq!(
            UserError::InvalidPath(InvalidCommand::Quoting).message(host, Wording::Apps),
            invalid_path(host, InvalidCommand::Quoting, Wording::Apps)
        );
        assert_eq!(
            UserError::NoSuchApp { app: "x".into() }.message(host, Wording::Apps),
            no_such_app("x", Wording::Apps)
        );
        assert_eq!(
            UserError::PlatformUnavailable.message(host, Wording::Apps),
            platform_unavailable()
        );
        assert_eq!(
            UserError::BuildServerUnavailable.message(host, Wording::Apps),
            build_server_unavailable()
        );
        assert_eq!(
            UserError::LostBuildServer.message(host, Wording::Apps),
            lost_build_server()
        );
        assert_eq!(
            UserError::PushInProgress {
                app: "x".into(),
                started: "t".into(),
                user: "u".into(),
                instance: Some("i".into()),
            }
            .message(host, Wording::Apps),
            push_in_progress("x", "t", "u", Some("i"))
        );
        assert_eq!(
            UserError::NoShell {
                user: "u".into(),
                access: None
            }
            .message(host, Wording::Apps),
            shell_greeting("u")
        );
    }

    #[test]
    fn interpolations_cannot_forge_lines() {
        assert_eq!(
            shell_greeting("eve\n ! Push accepted\x1b[2K"),
            "Hi eve? ! Push accepted?[2K! You've successfully authenticated, but gitmouth does not provide shell access.\n"
        );
        assert_eq!(
            no_such_app("a\r\u{85}b", Wording::Apps),
            " ! No such app as a??b, or you do not have access to it.\n"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            shell_greeting(&long),
            format!(
                "Hi {}! You've successfully authenticated, but gitmouth does not provide shell access.\n",
                "x".repeat(MAX_FIELD_CHARS)
            )
        );
    }

    #[test]
    fn public_hosts_and_urls() {
        let parse = |t: &str| PublicHost::parse(t, 2222);
        assert_eq!(
            parse("git.example.org").unwrap(),
            host("git.example.org", 2222)
        );
        assert_eq!(
            parse("git.example.org:22").unwrap(),
            host("git.example.org", 22)
        );
        assert_eq!(
            parse("[2001:db8::1]:2200").unwrap(),
            host("2001:db8::1", 2200)
        );
        assert_eq!(parse("2001:db8::1").unwrap(), host("2001:db8::1", 2222));
        for bad in [
            "", "h:0", "h:x", "h:70000", "[::1", "[::1]x", "a b", "h/x:22",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(host("h", 22).url("app"), "git@h:app.git");
        assert_eq!(host("h", 2222).url("app"), "ssh://git@h:2222/app.git");
        assert_eq!(host("::1", 2222).url("app"), "ssh://git@[::1]:2222/app.git");
        assert_eq!(host("::1", 22).url("app"), "git@[::1]:app.git");
    }

    proptest! {
        #[test]
        fn one_value_never_adds_a_line(value in any::<String>()) {
            // Each message has a fixed number of newlines whatever is
            // interpolated into it.
            prop_assert_eq!(no_such_app(&value, Wording::Apps).matches('\n').count(), 1);
            prop_assert_eq!(
                push_in_progress(&value, &value, &value, Some(&value))
                    .matches('\n')
                    .count(),
                1
            );
            prop_assert_eq!(lock_unavailable(&value).matches('\n').count(), 1);
            prop_assert_eq!(shell_greeting(&value).matches('\n').count(), 1);
            let public = PublicHost { host: value.clone(), port: 2222 };
            prop_assert_eq!(invalid_path(&public, InvalidCommand::Name, Wording::Apps).matches('\n').count(), 5);
            prop_assert_eq!(
                with_session_id(build_server_unavailable(), &value).matches('\n').count(),
                4
            );
        }
    }
}
