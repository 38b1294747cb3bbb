//! The access file (`--access`) end to end, with the real `ssh` and `git`
//! on both runtimes: read, write and create rights, globs, groups and the
//! default; one refusal for "no access" and "no such repository"; deploy
//! keys; folders in names; a bad file at start and on a re-read.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, per_runtime, run_with_timeout, start_git_server,
    stderr, wait_until,
};

const RULES: &str = r#"
[groups]
devs = ["alice", "bob"]

[[repo]]
name = "team/*"
read = ["@devs", "carol"]
write = ["@devs"]
create = ["alice"]

[[repo]]
name = "team/secret"
read = ["alice"]
write = ["alice"]
create = ["alice"]

[default]
read = ["carol"]
write = []
create = ["carol"]

[[deploy]]
key = "ci"
repo = "team/site"
write = false

[[deploy]]
key = "builder"
repo = "team/site"
write = true
"#;

/// The server, everyone's keys and a git per user.
struct Team {
    server: Server,
    scratch: tempfile::TempDir,
    keys: Vec<(&'static str, PathBuf)>,
}

impl Team {
    fn start(runtime: Runtime) -> Team {
        Self::start_with(runtime, &[], |_| String::new())
    }

    /// With keys for `more` users too, and `RULES` followed by what `extra`
    /// writes, given every user's key.
    fn start_with(
        runtime: Runtime,
        more: &[&'static str],
        extra: impl FnOnce(&[(&'static str, PathBuf)]) -> String,
    ) -> Team {
        let scratch = tempfile::tempdir().unwrap();
        let keys: Vec<(&'static str, PathBuf)> = ["alice", "bob", "carol", "dave", "ci", "builder"]
            .iter()
            .chain(more)
            .map(|&u| (u, keygen(scratch.path(), "ed25519", u, u)))
            .collect();
        let access = scratch.path().join("access.toml");
        std::fs::write(&access, format!("{RULES}\n{}", extra(&keys))).unwrap();
        let paths: Vec<&Path> = keys.iter().map(|(_, p)| p.as_path()).collect();
        let server = start_git_server(
            runtime,
            scratch.path(),
            &paths,
            ServerOptions::default().args(&["--access", access.to_str().unwrap()]),
        );
        Team {
            server,
            scratch,
            keys,
        }
    }

    fn key(&self, user: &str) -> &Path {
        &self.keys.iter().find(|(u, _)| *u == user).unwrap().1
    }

    fn git(&self, user: &str) -> Git {
        Git::new(&self.scratch.path().join(format!("home-{user}")))
            .ssh(&self.server.ssh().key(self.key(user)))
    }

    fn url(&self, name: &str) -> String {
        self.server.ssh().url(name)
    }

    /// A fresh work tree with one commit.
    fn work(&self, user: &str, tag: &str) -> PathBuf {
        let dir = self.scratch.path().join(format!("work-{user}-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let git = self.git(user);
        git.ok(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("f"), format!("{user} {tag}\n")).unwrap();
        git.ok(&dir, &["add", "f"]);
        git.ok(&dir, &["commit", "-qm", tag]);
        dir
    }

    fn push(&self, user: &str, name: &str) -> Output {
        let dir = self.work(user, &format!("{}-{}", name.replace('/', "_"), rand_tag()));
        self.git(user)
            .run(&dir, &["push", "-q", "-f", &self.url(name), "main"])
    }

    fn clone(&self, user: &str, name: &str) -> Output {
        let dest = self.scratch.path().join(format!(
            "clone-{user}-{}-{}",
            name.replace('/', "_"),
            rand_tag()
        ));
        self.git(user).run(
            self.scratch.path(),
            &["clone", "-q", &self.url(name), dest.to_str().unwrap()],
        )
    }

    fn archive(&self, user: &str, name: &str) -> Output {
        self.git(user).run(
            self.scratch.path(),
            &["archive", "--remote", &self.url(name), "main"],
        )
    }
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The server's message, without the session id line (which differs).
fn refusal(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed:\n{}",
        stderr(out)
    );
    stderr(out)
        .lines()
        .filter(|l| l.contains(" ! ") && !l.contains("(session "))
        .map(|l| {
            l.trim_start_matches("remote:")
                .trim()
                .replace(" ! ERR", " !")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "failed:\n{}", stderr(out));
}

per_runtime!(each_rule_allows_and_refuses_what_it_says);
fn each_rule_allows_and_refuses_what_it_says(runtime: Runtime) {
    let t = Team::start(runtime);
    // create: alice may create under team/; bob may not, though he may
    // write there.
    ok(&t.push("alice", "team/site"));
    assert!(t.server.data_dir.join("repos/team/site.git/HEAD").is_file());
    let no_create = t.push("bob", "team/web");
    assert!(!t.server.data_dir.join("repos/team/web.git").exists());
    // write (the group), read (the group and a user).
    ok(&t.push("bob", "team/site"));
    ok(&t.clone("bob", "team/site"));
    ok(&t.clone("carol", "team/site"));
    ok(&t.archive("carol", "team/site"));
    let carol_push = t.push("carol", "team/site");
    // Nobody the rule names: nothing at all.
    let dave_clone = t.clone("dave", "team/site");
    let dave_push = t.push("dave", "team/site");
    let dave_archive = t.archive("dave", "team/site");
    // The exact name beats the glob: only alice.
    ok(&t.push("alice", "team/secret"));
    let bob_secret = t.clone("bob", "team/secret");
    // The default: carol reads and creates elsewhere, nobody writes.
    ok(&t.push("carol", "my.app"));
    ok(&t.clone("carol", "my.app"));
    let carol_again = t.push("carol", "my.app");
    let alice_default = t.clone("alice", "my.app");
    // The same words as a repository that does not exist.
    let missing = t.clone("alice", "team/nothing");
    let expected = refusal(&missing);
    assert!(
        expected.contains("No such repository as team/nothing"),
        "{expected}"
    );
    for (what, out, name) in [
        ("create without the right", &no_create, "team/web"),
        ("push with read only", &carol_push, "team/site"),
        ("clone with no right", &dave_clone, "team/site"),
        ("push with no right", &dave_push, "team/site"),
        ("archive with no right", &dave_archive, "team/site"),
        ("exact rule", &bob_secret, "team/secret"),
        ("default: no write", &carol_again, "my.app"),
        ("default: not named", &alice_default, "my.app"),
    ] {
        assert_eq!(
            refusal(out),
            expected.replace("team/nothing", name),
            "{what}"
        );
        assert_eq!(out.status.code(), missing.status.code(), "{what}");
    }
    // The exit status of the command itself, seen through ssh: 1.
    let raw = t
        .server
        .ssh()
        .key(t.key("dave"))
        .run(&["git-upload-pack", "'team/site.git'"]);
    assert_eq!(raw.status.code(), Some(1), "{}", stderr(&raw));
    let raw_missing = t
        .server
        .ssh()
        .key(t.key("dave"))
        .run(&["git-upload-pack", "'team/none.git'"]);
    assert_eq!(raw_missing.status.code(), Some(1));
    // The greeting lists the user's rules.
    let hello = t.server.ssh().key(t.key("bob")).arg("-T").run(&[]);
    let text = stderr(&hello);
    assert!(text.contains("Hi bob!"), "{text}");
    assert!(text.contains("  team/*: read, write\n"), "{text}");
    assert!(!text.contains("team/secret"), "{text}");
}

per_runtime!(deploy_keys_reach_one_repository);
fn deploy_keys_reach_one_repository(runtime: Runtime) {
    let t = Team::start(runtime);
    ok(&t.push("alice", "team/site"));
    ok(&t.push("alice", "team/other"));
    let missing = refusal(&t.clone("ci", "team/none"));
    // Read-only: clones its repository, cannot push, cannot touch another.
    ok(&t.clone("ci", "team/site"));
    let push = t.push("ci", "team/site");
    assert_eq!(refusal(&push), missing.replace("team/none", "team/site"));
    let other = t.clone("ci", "team/other");
    assert_eq!(refusal(&other), missing.replace("team/none", "team/other"));
    // Writable: pushes, but never creates.
    ok(&t.clone("builder", "team/site"));
    ok(&t.push("builder", "team/site"));
    let create = t.push("builder", "team/new");
    assert_eq!(refusal(&create), missing.replace("team/none", "team/new"));
    assert!(!t.server.data_dir.join("repos/team/new.git").exists());
    // The greeting names the repository.
    let hello = t.server.ssh().key(t.key("ci")).arg("-T").run(&[]);
    assert!(
        stderr(&hello).contains("with a deploy key for team/site"),
        "{}",
        stderr(&hello)
    );
}

/// A key's SHA256 fingerprint, as `ssh-keygen -l` prints it.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(gitmouth_tests::public_key(key))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fp = text.split_whitespace().nth(1).unwrap().to_owned();
    assert!(fp.starts_with("SHA256:"), "{text}");
    fp
}

per_runtime!(deploy_keys_named_by_fingerprint_reach_one_repository);
fn deploy_keys_named_by_fingerprint_reach_one_repository(runtime: Runtime) {
    let t = Team::start_with(runtime, &["fp-reader", "fp-writer"], |keys| {
        let fp = |user: &str| fingerprint(&keys.iter().find(|(u, _)| *u == user).unwrap().1);
        format!(
            "[[deploy]]\nkey = \"{}\"\nrepo = \"team/site\"\n\n\
             [[deploy]]\nkey = \"{}\"\nrepo = \"team/site\"\nwrite = true\n",
            fp("fp-reader"),
            fp("fp-writer")
        )
    });
    ok(&t.push("alice", "team/site"));
    ok(&t.push("alice", "team/other"));
    let missing = refusal(&t.clone("fp-reader", "team/none"));
    // Read-only: clones its repository, cannot push, cannot touch another.
    ok(&t.clone("fp-reader", "team/site"));
    let push = t.push("fp-reader", "team/site");
    assert_eq!(refusal(&push), missing.replace("team/none", "team/site"));
    let other = t.clone("fp-reader", "team/other");
    assert_eq!(refusal(&other), missing.replace("team/none", "team/other"));
    // Writable: pushes its repository, no other, and never creates.
    ok(&t.push("fp-writer", "team/site"));
    let other = t.push("fp-writer", "team/other");
    assert_eq!(refusal(&other), missing.replace("team/none", "team/other"));
    let create = t.push("fp-writer", "team/new");
    assert_eq!(refusal(&create), missing.replace("team/none", "team/new"));
    assert!(!t.server.data_dir.join("repos/team/new.git").exists());
    let hello = t.server.ssh().key(t.key("fp-reader")).arg("-T").run(&[]);
    assert!(
        stderr(&hello).contains("with a deploy key for team/site"),
        "{}",
        stderr(&hello)
    );
}

per_runtime!(a_bad_access_file_stops_the_start_naming_the_line);
fn a_bad_access_file_stops_the_start_naming_the_line(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    for (text, line) in [
        ("[[repo]]\nname = \"x\"\n\nread = [\"@nobody\"]\n", "line 4"),
        ("[groups]\ndevs = [\"a\"]\n[[repo\n", "line 3"),
    ] {
        let access = scratch.path().join("access.toml");
        std::fs::write(&access, text).unwrap();
        let mut cmd = Command::new(runtime.binary());
        cmd.current_dir(scratch.path())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(scratch.path().join("data"))
            .arg("--access")
            .arg(&access)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--access") && err.contains(line), "{err}");
        assert!(!err.contains("listening"), "{err}");
    }
}

per_runtime!(a_bad_reread_keeps_the_last_good_rules);
fn a_bad_reread_keeps_the_last_good_rules(runtime: Runtime) {
    let t = Team::start(runtime);
    ok(&t.push("alice", "team/site"));
    let access = t.scratch.path().join("access.toml");
    // A bad file: logged, the old rules stay (dave still refused, bob
    // still reads).
    std::fs::write(&access, "[[repo]]\nname = \"team/*\"\nread = [\"@ops\"]\n").unwrap();
    assert!(
        t.server
            .wait_for_log("the last good rules stay", Duration::from_secs(20)),
        "{}",
        t.server.log()
    );
    assert!(t.server.logged("line 3"), "{}", t.server.log());
    ok(&t.clone("bob", "team/site"));
    assert!(!t.clone("dave", "team/site").status.success());
    // A good file takes effect without a restart.
    std::fs::write(&access, "[[repo]]\nname = \"team/*\"\nread = [\"dave\"]\n").unwrap();
    assert!(wait_until(Duration::from_secs(20), || t
        .clone("dave", "team/site")
        .status
        .success()));
    assert!(!t.clone("bob", "team/site").status.success());
}
