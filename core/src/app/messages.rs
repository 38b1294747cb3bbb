//! What users see on the channel's stderr (RFC 4254 §5.2 extended data,
//! type 1) and the exit status (RFC 4254 §6.10) that follows each message.
//!
//! The texts are the design's and the Openruko original's
//! (`docs/openruko.md`, "What the user sees"); where the original had a
//! text its bytes are kept exactly, since people and scripts match on them.
//! Every function here is pure: the session decides when to send what.

/// Exit status of every refusal except a failed provisioning.
pub const EXIT_FAILURE: u32 = 1;

/// Exit status the original gave when provisioning failed; kept because
/// scripts around `git push` may test for it.
pub const EXIT_BUILD_SERVER_UNAVAILABLE: u32 = 127;

/// The longest interpolated value shown; longer ones are cut so a huge key
/// comment cannot flood a user's terminal.
const MAX_FIELD_CHARS: usize = 256;

/// The original's message for a command that is not `VERB 'app.git'`, with
/// the server's configured public host name.
pub fn invalid_path(public_host: &str) -> String {
    format!(
        "\n ! Invalid path.\n ! Syntax is: git@{}:<app>.git where <app> is your app's name.\n\n",
        sanitize(public_host)
    )
}

/// One text for "no such repository", "no such app" and "not yours", so a
/// user cannot learn which apps exist.
pub fn no_such_app(app: &str) -> String {
    format!(
        " ! No such app as {}, or you do not have access to it.\n",
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
/// began, already formatted by the caller (the core has no clock).
pub fn push_in_progress(app: &str, started: &str) -> String {
    format!(
        " ! Another push to {} is in progress (started {}).\n",
        sanitize(app),
        sanitize(started)
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
    /// The exec string is not a git command this server runs.
    InvalidPath,
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
    },
}

impl UserError {
    /// The stderr text; `public_host` is the configured public host name
    /// (only [`UserError::InvalidPath`] uses it).
    pub fn message(&self, public_host: &str) -> String {
        match self {
            UserError::InvalidPath => invalid_path(public_host),
            UserError::NoSuchApp { app } => no_such_app(app),
            UserError::PlatformUnavailable => platform_unavailable().to_owned(),
            UserError::PlatformFailing => platform_failing().to_owned(),
            UserError::BuildServerUnavailable => build_server_unavailable().to_owned(),
            UserError::LostBuildServer => lost_build_server().to_owned(),
            UserError::PushInProgress { app, started } => push_in_progress(app, started),
            UserError::NoShell { user } => shell_greeting(user),
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
            UserError::InvalidPath
            | UserError::NoSuchApp { .. }
            | UserError::PlatformUnavailable
            | UserError::PlatformFailing
            | UserError::LostBuildServer
            | UserError::PushInProgress { .. }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn originals_are_byte_exact() {
        // docs/openruko.md, with heroku.com as the public host.
        assert_eq!(
            invalid_path("heroku.com").as_bytes(),
            b"\n ! Invalid path.\n ! Syntax is: git@heroku.com:<app>.git where <app> is your app's name.\n\n"
        );
        assert_eq!(
            build_server_unavailable().as_bytes(),
            b"\n ! Unable to contact build server.\n\n"
        );
    }

    #[test]
    fn every_text_is_byte_exact() {
        assert_eq!(
            invalid_path("git.example.org"),
            "\n ! Invalid path.\n ! Syntax is: git@git.example.org:<app>.git where <app> is your app's name.\n\n"
        );
        assert_eq!(
            no_such_app("myapp"),
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
            push_in_progress("myapp", "2026-11-05 10:00:00 UTC"),
            " ! Another push to myapp is in progress (started 2026-11-05 10:00:00 UTC).\n"
        );
        assert_eq!(
            shell_greeting("alice@example.com"),
            "Hi alice@example.com! You've successfully authenticated, but gitmouth does not provide shell access.\n"
        );
    }

    #[test]
    fn session_id_line() {
        assert_eq!(
            with_session_id(build_server_unavailable(), "c0ffee"),
            "\n ! Unable to contact build server.\n ! (session c0ffee)\n\n"
        );
        assert_eq!(
            with_session_id(&invalid_path("h"), "42"),
            "\n ! Invalid path.\n ! Syntax is: git@h:<app>.git where <app> is your app's name.\n ! (session 42)\n\n"
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
            (UserError::InvalidPath, 1),
            (UserError::NoSuchApp { app: app() }, 1),
            (UserError::PlatformUnavailable, 1),
            (UserError::PlatformFailing, 1),
            (UserError::BuildServerUnavailable, 127),
            (UserError::LostBuildServer, 1),
            (
                UserError::PushInProgress {
                    app: app(),
                    started: "t".to_owned(),
                },
                1,
            ),
            (UserError::NoShell { user: app() }, 1),
        ];
        for (error, status) in cases {
            assert_eq!(error.exit_status(), status, "{error:?}");
        }
    }

    #[test]
    fn enum_messages_are_the_functions() {
        let host = "h.example";
        assert_eq!(UserError::InvalidPath.message(host), invalid_path(host));
        assert_eq!(
            UserError::NoSuchApp { app: "x".into() }.message(host),
            no_such_app("x")
        );
        assert_eq!(
            UserError::PlatformUnavailable.message(host),
            platform_unavailable()
        );
        assert_eq!(
            UserError::BuildServerUnavailable.message(host),
            build_server_unavailable()
        );
        assert_eq!(
            UserError::LostBuildServer.message(host),
            lost_build_server()
        );
        assert_eq!(
            UserError::PushInProgress {
                app: "x".into(),
                started: "t".into()
            }
            .message(host),
            push_in_progress("x", "t")
        );
        assert_eq!(
            UserError::NoShell { user: "u".into() }.message(host),
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
            no_such_app("a\r\u{85}b"),
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

    proptest! {
        #[test]
        fn one_value_never_adds_a_line(value in any::<String>()) {
            // Each message has a fixed number of newlines whatever is
            // interpolated into it.
            prop_assert_eq!(no_such_app(&value).matches('\n').count(), 1);
            prop_assert_eq!(push_in_progress(&value, &value).matches('\n').count(), 1);
            prop_assert_eq!(shell_greeting(&value).matches('\n').count(), 1);
            prop_assert_eq!(invalid_path(&value).matches('\n').count(), 4);
            prop_assert_eq!(
                with_session_id(build_server_unavailable(), &value).matches('\n').count(),
                4
            );
        }
    }
}
