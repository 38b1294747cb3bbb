//! How standalone mode runs git: its command line and its environment.
//!
//! - git's own `-c` options turn on what a team expects of a git server,
//!   for this command only, so that nobody edits the server user's
//!   `~/.gitconfig`: partial clone (`uploadpack.allowFilter`, without
//!   which `git clone --filter=blob:none` silently gets everything) and
//!   push options (`receive.advertisePushOptions`, without which
//!   `git push -o` is refused).
//! - The environment is minimal: git starts from an empty one, and gets
//!   the server's `PATH` (which decides which git runs, and what its hooks
//!   find) and `HOME` (where git finds the server user's configuration),
//!   the `GIT_PROTOCOL` the client asked for, and, for the git command
//!   itself, who runs it: `GITMOUTH_USER`, `GITMOUTH_KEY_FINGERPRINT`,
//!   `GITMOUTH_SESSION` and `GITMOUTH_REMOTE_ADDR`, which its hooks read.
//!   Nothing else of the server's environment (a database URL, a token
//!   the server was started with) reaches git or a hook.

use core::net::IpAddr;
use std::ffi::OsString;
use std::path::Path;

use crate::actions::ProcessSpec;
use crate::app::command::GitVerb;

/// The variables of the server's environment git keeps: `PATH` (which git
/// runs; a server without one leaves git the system's default search
/// path) and `HOME` (the server user's `~/.gitconfig`; a server without
/// one runs git without a user configuration, as git does then).
pub const INHERITED: [&str; 2] = ["PATH", "HOME"];

/// git's `-c` options for a command (before its subcommand, where git
/// takes them).
fn config_of(verb: GitVerb) -> &'static [&'static str] {
    match verb {
        // Protocol v2's `fetch` takes any object the repository has, so
        // the lazy fetches of a partial clone need nothing more.
        GitVerb::UploadPack => &["uploadpack.allowFilter=true"],
        GitVerb::ReceivePack => &["receive.advertisePushOptions=true"],
        GitVerb::UploadArchive => &[],
    }
}

/// Who runs a git command, told to its hooks.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated user: the `authorized_keys` comment or the
    /// certificate's principal.
    pub user: &'a str,
    /// The SHA256 fingerprint of the key (a certificate's own key).
    pub fingerprint: &'a str,
    /// The session's id, as logs and users' error messages give it.
    pub session: &'a str,
    /// The client's address (the PROXY protocol's, if a header came);
    /// `None` if the runtime did not say.
    pub client: Option<IpAddr>,
}

impl Caller<'_> {
    /// The `GITMOUTH_*` variables for git's hooks. A value that is not
    /// printable ASCII ([`env_value`]) is left out, and logged.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        // The address alone, canonical (an IPv4 client on a dual-stack
        // socket is `192.0.2.1`, not `::ffff:192.0.2.1`): the client's
        // port says nothing a hook can use.
        let client = self.client.map(|ip| ip.to_canonical().to_string());
        let values = [
            ("GITMOUTH_USER", Some(self.user)),
            ("GITMOUTH_KEY_FINGERPRINT", Some(self.fingerprint)),
            ("GITMOUTH_SESSION", Some(self.session)),
            ("GITMOUTH_REMOTE_ADDR", client.as_deref()),
        ];
        let mut env = Vec::new();
        for (name, value) in values {
            let Some(value) = value else { continue };
            match env_value(value) {
                Some(value) => env.push((name.into(), value.into())),
                None => tracing::warn!(
                    variable = name,
                    value = ?value,
                    "not printable ASCII: left out of git's environment"
                ),
            }
        }
        env
    }
}

/// `value` if it may go in a hook's environment as it is: non-empty and
/// printable ASCII (space to `~`), else `None`.
///
/// User names come from key comments and certificate principals, which
/// anyone who has a key added or a certificate signed chooses. A hook
/// compares them, prints them, passes them to a shell or a log: a control
/// character (a line feed that forges a log line, an escape sequence) or
/// a character a hook's language decodes differently must not reach it.
/// Such a value is left out rather than mended: a mended name (`?` for
/// each bad character) could equal another user's, which a hook would
/// take for that user; an absent one is seen as unknown. Nor is the login
/// refused for it: such a key worked before hooks were told its name, and
/// its user may still clone and push where hooks do not look.
pub fn env_value(value: &str) -> Option<&str> {
    (!value.is_empty() && value.bytes().all(|b| (b' '..=b'~').contains(&b))).then_some(value)
}

/// `git <args>` with the minimal environment and the variables `env`
/// (for `git init` and the repository's upkeep: `env` is empty).
pub fn git(args: Vec<OsString>, env: Vec<(OsString, OsString)>) -> ProcessSpec {
    ProcessSpec {
        program: "git".into(),
        args,
        inherit: INHERITED.iter().map(OsString::from).collect(),
        env,
    }
}

/// The git command of a session: `git -c … <subcommand> <repository>`,
/// with the client's `GIT_PROTOCOL` (already checked) and who runs it.
pub fn git_command(
    verb: GitVerb,
    repo: &Path,
    git_protocol: Option<&str>,
    caller: &Caller<'_>,
) -> ProcessSpec {
    let mut args: Vec<OsString> = Vec::new();
    for setting in config_of(verb) {
        args.push("-c".into());
        args.push(setting.into());
    }
    args.push(verb.subcommand().into());
    args.push(repo.as_os_str().to_owned());
    let mut env: Vec<(OsString, OsString)> = git_protocol
        .map(|v| ("GIT_PROTOCOL".into(), v.into()))
        .into_iter()
        .collect();
    env.extend(caller.env());
    git(args, env)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn alice() -> Caller<'static> {
        Caller {
            user: "alice",
            fingerprint: "SHA256:abc+/def",
            session: "c0ffee42",
            client: Some("::ffff:192.0.2.7".parse().unwrap()),
        }
    }

    fn strings(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn upload_pack_allows_filters_and_receive_pack_push_options() {
        let path = Path::new("/srv/repos/team/site.git");
        let spec = git_command(GitVerb::UploadPack, path, Some("version=2"), &alice());
        assert_eq!(spec.program, "git");
        assert_eq!(
            spec.args,
            strings(&[
                "-c",
                "uploadpack.allowFilter=true",
                "upload-pack",
                "/srv/repos/team/site.git"
            ])
        );
        let spec = git_command(GitVerb::ReceivePack, path, None, &alice());
        assert_eq!(
            spec.args,
            strings(&[
                "-c",
                "receive.advertisePushOptions=true",
                "receive-pack",
                "/srv/repos/team/site.git"
            ])
        );
        let spec = git_command(GitVerb::UploadArchive, path, None, &alice());
        assert_eq!(
            spec.args,
            strings(&["upload-archive", "/srv/repos/team/site.git"])
        );
    }

    #[test]
    fn the_environment_is_path_home_the_protocol_and_the_caller() {
        let path = Path::new("/r/a.git");
        let spec = git_command(GitVerb::ReceivePack, path, Some("version=2"), &alice());
        assert_eq!(spec.inherit, strings(&["PATH", "HOME"]));
        assert_eq!(
            spec.env,
            pairs(&[
                ("GIT_PROTOCOL", "version=2"),
                ("GITMOUTH_USER", "alice"),
                ("GITMOUTH_KEY_FINGERPRINT", "SHA256:abc+/def"),
                ("GITMOUTH_SESSION", "c0ffee42"),
                ("GITMOUTH_REMOTE_ADDR", "192.0.2.7"),
            ])
        );
        // Helpers and `git init`: the same minimal environment, no caller.
        let helper = git(strings(&["init"]), Vec::new());
        assert_eq!(helper.inherit, spec.inherit);
        assert!(helper.env.is_empty());
    }

    #[test]
    fn a_value_that_is_not_printable_ascii_is_left_out() {
        let caller = Caller {
            user: "josé",
            client: None,
            ..alice()
        };
        let spec = git_command(GitVerb::UploadPack, Path::new("/r/a.git"), None, &caller);
        assert_eq!(
            spec.env,
            pairs(&[
                ("GITMOUTH_KEY_FINGERPRINT", "SHA256:abc+/def"),
                ("GITMOUTH_SESSION", "c0ffee42"),
            ])
        );
        for bad in ["", "a\nb", "a\x1b[2K", "tab\there", "del\x7f", "ümlaut"] {
            assert_eq!(env_value(bad), None, "{bad:?}");
        }
        for good in [
            "alice",
            "alice smith",
            "ci@example.com",
            "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
        ] {
            assert_eq!(env_value(good), Some(good));
        }
        let v6 = Caller {
            client: Some("2001:db8::1".parse().unwrap()),
            ..alice()
        };
        assert!(
            v6.env()
                .contains(&("GITMOUTH_REMOTE_ADDR".into(), "2001:db8::1".into()))
        );
    }

    proptest! {
        #[test]
        fn every_value_set_is_printable_ascii(user in any::<String>(), fingerprint in any::<String>()) {
            let caller = Caller { user: &user, fingerprint: &fingerprint, ..alice() };
            let env = caller.env();
            for (name, value) in &env {
                let value = value.to_str().unwrap();
                prop_assert!(!value.is_empty());
                prop_assert!(value.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{name:?}={value:?}");
            }
            // A value is set exactly as it is, or not at all.
            let user_set = env.iter().find(|(n, _)| n == "GITMOUTH_USER").map(|(_, v)| v.clone());
            let printable = !user.is_empty() && user.chars().all(|c| (' '..='~').contains(&c));
            prop_assert_eq!(user_set, printable.then(|| OsString::from(&user)));
        }
    }
}
