//! The format of a repository a push creates, end to end with the real
//! `ssh` and `git` on both runtimes: `--default-object-format sha256`
//! takes a SHA-256 repository and gives it back identical; the pusher is
//! told the new repository's object format before git's advertisement;
//! the access file's `object-format` wins over the default;
//! `--default-ref-format reftable` (or its refusal with an old git); bad
//! values refused at start; a change on SIGHUP; two names differing only
//! in case.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, per_runtime, run_with_timeout, server_command,
    start_git_server, stderr, wait_until,
};

/// A server for alice, and her git.
struct Setup {
    server: Server,
    scratch: tempfile::TempDir,
    git: Git,
}

impl Setup {
    fn start(runtime: Runtime, args: &[&str], access: Option<&str>) -> Setup {
        let scratch = tempfile::tempdir().unwrap();
        let key = keygen(scratch.path(), "ed25519", "alice", "alice");
        let mut options = ServerOptions::default().args(args);
        if let Some(text) = access {
            let file = scratch.path().join("access.toml");
            std::fs::write(&file, text).unwrap();
            options = options.args(&["--access", file.to_str().unwrap()]);
        }
        let server = start_git_server(runtime, scratch.path(), &[&key], options);
        let git = Git::new(&scratch.path().join("home")).ssh(&server.ssh().key(&key));
        Setup {
            server,
            scratch,
            git,
        }
    }

    fn url(&self, name: &str) -> String {
        self.server.ssh().url(name)
    }

    /// The repository `name` on the server.
    fn repo(&self, name: &str) -> PathBuf {
        self.server
            .data_dir
            .join("repos")
            .join(format!("{name}.git"))
    }

    /// A fresh work tree in `format` with two commits on `main`, a
    /// branch and a tag.
    fn work(&self, tag: &str, format: &str) -> PathBuf {
        let dir = self.scratch.path().join(format!("work-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let git = &self.git;
        let object_format = format!("--object-format={format}");
        git.ok(&dir, &["init", "-q", "-b", "main", &object_format]);
        for n in 0..2 {
            std::fs::write(dir.join("f"), format!("{tag} {n}\n")).unwrap();
            git.ok(&dir, &["add", "f"]);
            git.ok(&dir, &["commit", "-qm", &format!("{tag} {n}")]);
        }
        git.ok(&dir, &["branch", "side", "HEAD~1"]);
        git.ok(&dir, &["tag", "-a", "-m", "v1", "v1"]);
        dir
    }

    /// Pushes every branch and tag of `dir` to `name`.
    fn push(&self, dir: &Path, name: &str) -> Output {
        self.git.run(
            dir,
            &["push", "--follow-tags", &self.url(name), "main", "side"],
        )
    }

    fn clone(&self, name: &str) -> PathBuf {
        let dest = self
            .scratch
            .path()
            .join(format!("clone-{}", name.replace('/', "_")));
        self.git.ok(
            self.scratch.path(),
            &["clone", "-q", &self.url(name), dest.to_str().unwrap()],
        );
        dest
    }
}

/// A bare repository's property, as `git rev-parse <flag>` tells it.
fn rev_parse(git_dir: &Path, flag: &str) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["rev-parse", flag])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Every ref of a repository with its object id, sorted.
fn refs(git: &Git, dir: &Path) -> String {
    git.ok(dir, &["for-each-ref", "--format=%(objectname) %(refname)"])
}

per_runtime!(a_sha256_repository_round_trips_identical);
fn a_sha256_repository_round_trips_identical(runtime: Runtime) {
    let s = Setup::start(runtime, &["--default-object-format", "sha256"], None);
    let work = s.work("hashes", "sha256");
    let out = s.push(&work, "team/site");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-----> Creating repository team/site (object format sha256)\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rev_parse(&s.repo("team/site"), "--show-object-format"),
        "sha256"
    );
    let clone = s.clone("team/site");
    assert_eq!(
        s.git
            .ok(&clone, &["rev-parse", "--show-object-format"])
            .trim(),
        "sha256"
    );
    assert_eq!(
        s.git.ok(&clone, &["rev-parse", "HEAD"]),
        s.git.ok(&work, &["rev-parse", "HEAD"])
    );
    // Every branch and tag, with the same ids: the remote's refs as the
    // clone sees them are the work tree's.
    let local = refs(&s.git, &work);
    let remote = s.git.ok(&clone, &["ls-remote", "origin"]);
    for line in local.lines() {
        let (id, name) = line.split_once(' ').unwrap();
        assert_eq!(id.len(), 64, "a SHA-256 id: {line}");
        assert!(
            remote.lines().any(|l| l == format!("{id}\t{name}")),
            "{line} missing from the server's refs:\n{remote}"
        );
    }
    s.git.ok(&clone, &["fsck", "--strict"]);
    let fsck = Command::new("git")
        .arg("--git-dir")
        .arg(s.repo("team/site"))
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", stderr(&fsck));
    // A second push to it, now that it exists, is not announced again.
    std::fs::write(work.join("g"), "more\n").unwrap();
    s.git.ok(&work, &["add", "g"]);
    s.git.ok(&work, &["commit", "-qm", "more"]);
    let out = s.push(&work, "team/site");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Creating"), "{}", stderr(&out));
    s.git.ok(&clone, &["pull", "-q", "--ff-only"]);
    assert_eq!(
        s.git.ok(&clone, &["rev-parse", "HEAD"]),
        s.git.ok(&work, &["rev-parse", "HEAD"])
    );
}

per_runtime!(a_sha1_server_names_the_format_before_git_gives_up);
fn a_sha1_server_names_the_format_before_git_gives_up(runtime: Runtime) {
    let s = Setup::start(runtime, &[], None);
    let work = s.work("one", "sha1");
    let out = s.push(&work, "app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-----> Creating repository app (object format sha1)\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rev_parse(&s.repo("app"), "--show-object-format"), "sha1");
    // A SHA-256 repository pushed to a SHA-1 server: git gives up right
    // after the advertisement, and the line said why. The server sends the
    // line before the advertisement (memory_repo_format.rs checks the
    // order on the wire); here the line reaches stderr through ssh and
    // git's "fatal:" through git, two processes whose writes may come in
    // either order.
    let work = s.work("two", "sha256");
    let out = s.push(&work, "modern");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("-----> Creating repository modern (object format sha1)\n"),
        "{err}"
    );
    assert!(
        err.contains("fatal: the receiving end does not support this repository's hash algorithm"),
        "{err}"
    );
    // Nothing was pushed into it: no repository is left behind.
    assert!(
        wait_until(Duration::from_secs(30), || !s.repo("modern").exists()),
        "the repository its failed first push created is still there"
    );
}

const ACCESS: &str = r#"
[[repo]]
name = "modern/*"
read = ["alice"]
write = ["alice"]
create = ["alice"]
object-format = "sha256"

[[repo]]
name = "modern/legacy"
read = ["alice"]
write = ["alice"]
create = ["alice"]
object-format = "sha1"

[default]
read = ["alice"]
write = ["alice"]
create = ["alice"]
"#;

per_runtime!(the_access_file_object_format_wins_over_the_default);
fn the_access_file_object_format_wins_over_the_default(runtime: Runtime) {
    let s = Setup::start(runtime, &[], Some(ACCESS));
    let work = s.work("new", "sha256");
    let out = s.push(&work, "modern/site");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-----> Creating repository modern/site (object format sha256)\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rev_parse(&s.repo("modern/site"), "--show-object-format"),
        "sha256"
    );
    let clone = s.clone("modern/site");
    assert_eq!(
        s.git.ok(&clone, &["rev-parse", "HEAD"]),
        s.git.ok(&work, &["rev-parse", "HEAD"])
    );
    // The exact rule beats the glob; no rule's format: the default.
    for name in ["modern/legacy", "plain"] {
        let work = s.work(&name.replace('/', "-"), "sha1");
        let out = s.push(&work, name);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "-----> Creating repository {name} (object format sha1)\n"
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(rev_parse(&s.repo(name), "--show-object-format"), "sha1");
    }
}

per_runtime!(names_differing_only_in_case_cannot_both_be_created);
fn names_differing_only_in_case_cannot_both_be_created(runtime: Runtime) {
    let s = Setup::start(runtime, &[], None);
    for (existing, twin) in [("myapp", "MyApp"), ("team/site", "Team/site")] {
        let work = s.work(&existing.replace('/', "-"), "sha1");
        let out = s.push(&work, existing);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = s.push(&work, twin);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                " ! Repository {twin} cannot be created: its name differs only in case from the existing repository {existing}. Push to {existing}, or choose another name.\n"
            )),
            "{err}"
        );
        assert!(!err.contains("Creating"), "{err}");
        assert!(!s.repo(twin).exists());
        // The existing one takes pushes as before.
        let out = s.push(&work, existing);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A folder in another case holds none of its twins: a new name is fine.
    let work = s.work("other", "sha1");
    let out = s.push(&work, "Team/other");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The installed git's version, from `git --version`.
fn installed_git() -> (u32, u32) {
    let out = Command::new("git").arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v = gitmouth_core::app::repo_format::GitVersion::parse(&text).unwrap();
    (v.major, v.minor)
}

per_runtime!(reftable_repositories_with_a_git_that_has_them);
fn reftable_repositories_with_a_git_that_has_them(runtime: Runtime) {
    if installed_git() < (2, 45) {
        // The refusal is tested with this git itself.
        let out = start_refused(runtime, &["--default-ref-format", "reftable"], None);
        assert!(stderr(&out).contains("--default-ref-format reftable needs git 2.45"));
        return;
    }
    let s = Setup::start(runtime, &["--default-ref-format", "reftable"], None);
    let work = s.work("tables", "sha1");
    let out = s.push(&work, "tables");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "-----> Creating repository tables (object format sha1, ref format reftable)\n"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rev_parse(&s.repo("tables"), "--show-ref-format"),
        "reftable"
    );
    let clone = s.clone("tables");
    assert_eq!(
        refs(&s.git, &clone)
            .lines()
            .filter(|l| l.contains("refs/tags/") || l.contains("refs/remotes/origin/side"))
            .count(),
        2
    );
    assert_eq!(
        s.git.ok(&clone, &["rev-parse", "HEAD"]),
        s.git.ok(&work, &["rev-parse", "HEAD"])
    );
}

/// Runs the binary, which must refuse to start; `fake_git` first in its
/// `PATH` if given.
fn start_refused(runtime: Runtime, args: &[&str], fake_git: Option<&Path>) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = server_command(runtime, scratch.path());
    cmd.args(args);
    if let Some(dir) = fake_git {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "should have refused to start:\n{}",
        stderr(&out)
    );
    assert!(
        !scratch.path().join("data/ssh_host_ed25519_key").exists(),
        "a refused start leaves nothing"
    );
    out
}

per_runtime!(a_git_too_old_for_reftable_is_refused_at_start);
fn a_git_too_old_for_reftable_is_refused_at_start(runtime: Runtime) {
    // A git that says it is 2.44 stands first in the server's PATH.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("git");
    std::fs::write(&fake, "#!/bin/sh\necho 'git version 2.44.2'\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = start_refused(
        runtime,
        &["--default-ref-format", "reftable"],
        Some(bin.path()),
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "--default-ref-format reftable needs git 2.45 or later to create repositories; found git 2.44"
        ),
        "{err}"
    );
    // Files need no more than that git has: it starts.
    let data = tempfile::tempdir().unwrap();
    let mut options = ServerOptions::default().data_dir(data.path());
    let path = std::env::var("PATH").unwrap_or_default();
    options
        .env
        .push(("PATH".into(), format!("{}:{path}", bin.path().display())));
    let server = Server::start_with(runtime, options);
    assert!(
        server.wait_for_log("repositories a push creates", Duration::from_secs(10)),
        "{}",
        server.log()
    );
}

per_runtime!(bad_values_are_refused_at_start_naming_the_setting);
fn bad_values_are_refused_at_start_naming_the_setting(runtime: Runtime) {
    let out = start_refused(runtime, &["--default-object-format", "sha-256"], None);
    let err = stderr(&out);
    assert!(
        err.contains("--default-object-format")
            && err.contains("sha-256")
            && err.contains("sha1, sha256"),
        "{err}"
    );
    let out = start_refused(runtime, &["--default-ref-format", "tables"], None);
    let err = stderr(&out);
    assert!(
        err.contains("--default-ref-format") && err.contains("files, reftable"),
        "{err}"
    );
    // From the environment, the variable is named.
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = server_command(runtime, scratch.path());
    cmd.env("GITMOUTH_DEFAULT_OBJECT_FORMAT", "md5");
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("GITMOUTH_DEFAULT_OBJECT_FORMAT") && err.contains("md5"),
        "{err}"
    );
    // An access file naming an unknown object format: refused, with its
    // line.
    let access = scratch.path().join("access.toml");
    std::fs::write(
        &access,
        "[[repo]]\nname = \"x\"\ncreate = [\"a\"]\nobject-format = \"sha3\"\n",
    )
    .unwrap();
    let out = start_refused(runtime, &["--access", access.to_str().unwrap()], None);
    let err = stderr(&out);
    assert!(
        err.contains("line 4") && err.contains("object-format") && err.contains("sha3"),
        "{err}"
    );
}

per_runtime!(sighup_changes_the_format_of_repositories_created_afterwards);
fn sighup_changes_the_format_of_repositories_created_afterwards(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gm.toml");
    std::fs::write(&config, "default-object-format = \"sha1\"\n").unwrap();
    let s = Setup::start(runtime, &["--config", config.to_str().unwrap()], None);
    let work = s.work("before", "sha1");
    let out = s.push(&work, "before");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&config, "default-object-format = \"sha256\"\n").unwrap();
    gitmouth_tests::kill(s.server.pid(), "HUP");
    assert!(
        s.server
            .wait_for_log("SIGHUP: configuration reloaded", Duration::from_secs(10)),
        "{}",
        s.server.log()
    );
    let work = s.work("after", "sha256");
    let out = s.push(&work, "after");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(object format sha256)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rev_parse(&s.repo("after"), "--show-object-format"),
        "sha256"
    );
    // The repository created before keeps its format.
    assert_eq!(rev_parse(&s.repo("before"), "--show-object-format"), "sha1");
}
