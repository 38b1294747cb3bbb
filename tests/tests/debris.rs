//! No debris, with the real `git` and `ssh`: a first push that creates no
//! ref (a `--dry-run`, one a hook rejects, one that fails) leaves no
//! repository for a later clone to find, and a push cut short (its client
//! killed, the server's time limit) leaves no temporary repository
//! (`.init-*`) and no quarantine (`tmp_objdir-incoming-*`) under the
//! repositories.
//!
//! The server's git runs through a wrapper on its `PATH`, and its new
//! repositories get a `pre-receive` hook from a template: both hold still
//! while a file of the test's exists, so the push is cut exactly where the
//! test wants it (during `git init`, before receive-pack updates a ref).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, kill_group, per_runtime, pseudo_random_bytes,
    start_git_server, stderr, wait_until,
};

/// How long the server may take to clean up after a push: generous, the
/// condition is polled.
const CLEANUP: Duration = Duration::from_secs(20);

/// Writes `files` under `repo` and commits them.
fn commit(git: &Git, repo: &Path, files: &[(&str, &[u8])], message: &str) {
    for (name, contents) in files {
        let path = repo.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git.ok(repo, &["add", "-A"]);
    git.ok(repo, &["commit", "-q", "-m", message]);
}

/// A work tree on `main` with one commit, `origin` set to `url`.
fn work_tree(git: &Git, dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git.ok(dir, &["init", "-q", "-b", "main"]);
    git.ok(dir, &["remote", "add", "origin", url]);
    commit(git, dir, &[("a.txt", b"first\n")], "first");
    dir.to_path_buf()
}

/// The real git's path, for the wrapper.
fn real_git() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The files that steer the server's git.
struct Control {
    dir: PathBuf,
}

impl Control {
    /// While this exists, `git init` waits after making its repository.
    fn hold_init(&self) -> PathBuf {
        self.dir.join("hold-init")
    }

    /// While this exists, the pre-receive hook waits (the pack is in the
    /// quarantine, no ref is updated yet).
    fn hold_hook(&self) -> PathBuf {
        self.dir.join("hold-hook")
    }

    /// Made by the hook when it starts waiting.
    fn hook_waits(&self) -> PathBuf {
        self.dir.join("hook-waits")
    }

    fn set(path: &Path) {
        std::fs::write(path, b"").unwrap();
    }

    fn clear(path: &Path) {
        let _ = std::fs::remove_file(path);
    }
}

/// A server whose git is steered by a [`Control`]; `args` for it.
fn debris_server(runtime: Runtime, dir: &Path, key: &Path, args: &[&str]) -> (Server, Control) {
    let ctl = Control {
        dir: dir.join("control"),
    };
    std::fs::create_dir_all(&ctl.dir).unwrap();
    let bin = dir.join("wrapper-bin");
    let git = real_git();
    let template = dir.join("template");
    // Bounded waits (60 s), so nothing outlives a failed test for long.
    // The template comes through the wrapper: the server passes git
    // nothing of its environment but PATH and HOME.
    write_script(
        &bin.join("git"),
        &format!(
            "#!/bin/sh\n\
             export GIT_TEMPLATE_DIR='{template}'\n\
             if [ \"$1\" = init ]; then\n\
             \x20 {git} \"$@\" || exit $?\n\
             \x20 i=0\n\
             \x20 while [ -e '{hold}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             \x20 exit 0\n\
             fi\n\
             exec {git} \"$@\"\n",
            git = git.display(),
            hold = ctl.hold_init().display(),
            template = template.display(),
        ),
    );
    write_script(
        &template.join("hooks/pre-receive"),
        &format!(
            "#!/bin/sh\n\
             while read old new ref; do\n\
             \x20 if [ \"$ref\" = refs/heads/forbidden ]; then\n\
             \x20   echo \"pre-receive: $ref is forbidden\" >&2\n\
             \x20   exit 1\n\
             \x20 fi\n\
             done\n\
             if [ -e '{hold}' ]; then\n\
             \x20 : > '{waits}'\n\
             \x20 i=0\n\
             \x20 while [ -e '{hold}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             fi\n\
             exit 0\n",
            hold = ctl.hold_hook().display(),
            waits = ctl.hook_waits().display(),
        ),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut options = ServerOptions::default().args(args);
    options.env.push(("PATH".into(), path));
    let server = start_git_server(runtime, dir, &[key], options);
    (server, ctl)
}

/// Paths under `dir` (walked whole) whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(named(&path, prefix));
        }
    }
    found
}

/// What a push left that it must not have: temporary repositories,
/// quarantines, and the repositories `gone` (which must not exist).
fn debris(server: &Server, gone: &[&str]) -> Vec<PathBuf> {
    let repos = server.data_dir.join("repos");
    let mut left = named(&repos, ".init-");
    left.extend(named(&repos, "tmp_objdir-incoming-"));
    for name in gone {
        let repo = repos.join(format!("{name}.git"));
        if repo.exists() {
            left.push(repo);
        }
    }
    left
}

/// Waits until nothing of [`debris`] is left; fails the test with what is.
fn assert_clean(server: &Server, gone: &[&str], what: &str) {
    let clean = wait_until(CLEANUP, || debris(server, gone).is_empty());
    assert!(
        clean,
        "{what}: {CLEANUP:?} later, left behind: {:?}",
        debris(server, gone)
    );
}

/// A clone of `name` is told there is no such repository.
fn assert_no_repository(git: &Git, dir: &Path, url: &str, name: &str) {
    let target = dir.join(format!("clone-of-{name}"));
    let out = git.fails(dir, &["clone", url, target.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("No such repository as {name}")),
        "a clone of {name} must find no repository:\n{err}"
    );
}

per_runtime!(a_first_push_that_creates_no_ref_leaves_no_repository);
fn a_first_push_that_creates_no_ref_leaves_no_repository(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let (server, _ctl) = debris_server(runtime, dir, &key, &[]);
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);

    // A dry run succeeds without pushing anything.
    let url = ssh.url("dry");
    let src = work_tree(&git, &dir.join("dry-src"), &url);
    git.ok(&src, &["push", "--dry-run", "origin", "main"]);
    assert_clean(&server, &["dry"], "push --dry-run");
    assert_no_repository(&git, dir, &url, "dry");

    // The pre-receive hook rejects the push.
    let url = ssh.url("hooked");
    let src = work_tree(&git, &dir.join("hooked-src"), &url);
    let out = git.fails(&src, &["push", "origin", "main:forbidden"]);
    assert!(
        stderr(&out).contains("pre-receive hook declined"),
        "{}",
        stderr(&out)
    );
    assert_clean(&server, &["hooked"], "a push the hook rejected");
    assert_no_repository(&git, dir, &url, "hooked");

    // The push fails on the server, once its objects are in: a branch
    // may not name a blob.
    let url = ssh.url("failed");
    let src = work_tree(&git, &dir.join("failed-src"), &url);
    let blob = git.ok(&src, &["rev-parse", "HEAD:a.txt"]);
    let refspec = format!("{}:refs/heads/blob", blob.trim());
    let out = git.fails(&src, &["push", "origin", &refspec]);
    assert!(
        stderr(&out).contains("[remote rejected]"),
        "{}",
        stderr(&out)
    );
    assert_clean(&server, &["failed"], "a push that failed");
    assert_no_repository(&git, dir, &url, "failed");

    // It deletes a branch that does not exist: git warns, and nothing is
    // made.
    let url = ssh.url("deleted");
    let src = work_tree(&git, &dir.join("deleted-src"), &url);
    git.run(&src, &["push", "origin", ":refs/heads/nothing"]);
    assert_clean(&server, &["deleted"], "a push deleting nothing");
    assert_no_repository(&git, dir, &url, "deleted");

    // A first push that creates a ref keeps its repository, and the
    // rejected one's name can be pushed to afresh.
    for name in ["kept", "hooked"] {
        let url = ssh.url(name);
        let src = work_tree(&git, &dir.join(format!("{name}-ok-src")), &url);
        git.ok(&src, &["push", "-q", "origin", "main"]);
        let clone = dir.join(format!("{name}-clone"));
        git.ok(dir, &["clone", "-q", &url, clone.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(clone.join("a.txt")).unwrap(),
            "first\n"
        );
    }
    assert_clean(&server, &[], "pushes that worked");
}

/// Starts `git args` in `cwd` in its own process group, waits until
/// `ready` holds (it must within 20 s), then kills git and its ssh.
fn kill_when(git: &Git, cwd: &Path, args: &[&str], what: &str, mut ready: impl FnMut() -> bool) {
    let mut cmd = git.command(cwd, args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id();
    let got_there = wait_until(Duration::from_secs(20), &mut ready);
    kill_group(pgid, "KILL");
    let status = child.wait().unwrap();
    assert!(got_there, "{what}: the push never got there");
    assert!(
        !status.success(),
        "{what}: the push finished before it was killed: the test proves nothing"
    );
}

/// A server steered by a [`Control`], with git for its user and a work
/// tree whose `origin` is repository `name`.
struct Setup {
    _scratch: tempfile::TempDir,
    dir: PathBuf,
    server: Server,
    ctl: Control,
    git: Git,
    url: String,
    src: PathBuf,
}

fn setup(runtime: Runtime, args: &[&str], name: &str) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let key = keygen(&dir, "ed25519", "id", "alice");
    let (server, ctl) = debris_server(runtime, &dir, &key, args);
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url(name);
    let src = work_tree(&git, &dir.join("src"), &url);
    Setup {
        _scratch: scratch,
        dir,
        server,
        ctl,
        git,
        url,
        src,
    }
}

/// Adds a commit of 160 files of 256 KiB to `src`: over
/// receive.unpackLimit, so receive-pack streams the pack to index-pack,
/// which writes a temporary pack in the quarantine as data arrives. No
/// delta search or compression: quick to make.
fn commit_big(git: &Git, src: &Path) {
    for (k, v) in [
        ("core.compression", "0"),
        ("pack.compression", "0"),
        ("core.bigFileThreshold", "1m"),
        ("pack.window", "0"),
    ] {
        git.ok(src, &["config", k, v]);
    }
    let blobs: Vec<(String, Vec<u8>)> = (0..160)
        .map(|i| {
            (
                format!("big/{i}.bin"),
                pseudo_random_bytes(500 + i, 256 << 10),
            )
        })
        .collect();
    let files: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    commit(git, src, &files, "big");
}

/// Bytes in git's temporary pack files (`tmp_pack_*`) under `dir`.
fn tmp_pack_bytes(dir: &Path) -> u64 {
    named(dir, "tmp_pack")
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

per_runtime!(a_client_killed_during_git_init_leaves_nothing_behind);
fn a_client_killed_during_git_init_leaves_nothing_behind(runtime: Runtime) {
    let s = setup(runtime, &[], "hungup");
    let repos = s.server.data_dir.join("repos");
    Control::set(&s.ctl.hold_init());
    kill_when(
        &s.git,
        &s.src,
        &["push", "origin", "main"],
        "client killed during git init",
        || !named(&repos, ".init-").is_empty(),
    );
    // Once the server has seen the client go (bounded: a server that
    // does not wait for git init never says so), git init finishes.
    s.server
        .wait_for_log("while git init runs", Duration::from_secs(5));
    Control::clear(&s.ctl.hold_init());
    assert_clean(&s.server, &["hungup"], "client killed during git init");
    assert_no_repository(&s.git, &s.dir, &s.url, "hungup");
}

per_runtime!(the_session_limit_during_git_init_leaves_nothing_behind);
fn the_session_limit_during_git_init_leaves_nothing_behind(runtime: Runtime) {
    // The server cuts the connection while git init runs.
    let s = setup(runtime, &["--max-session-time", "1"], "cut");
    Control::set(&s.ctl.hold_init());
    let out = s.git.fails(&s.src, &["push", "origin", "main"]);
    assert!(
        stderr(&out).contains("time limit"),
        "the push must be cut by the time limit:\n{}",
        stderr(&out)
    );
    Control::clear(&s.ctl.hold_init());
    assert_clean(
        &s.server,
        &["cut"],
        "the server cut the push during git init",
    );
}

per_runtime!(a_first_push_killed_mid_transfer_leaves_nothing_behind);
fn a_first_push_killed_mid_transfer_leaves_nothing_behind(runtime: Runtime) {
    let s = setup(runtime, &[], "big");
    commit_big(&s.git, &s.src);
    let big = s.server.data_dir.join("repos/big.git");
    kill_when(
        &s.git,
        &s.src,
        &["push", "origin", "main"],
        "first push killed mid-transfer",
        || tmp_pack_bytes(&big) > 1 << 20,
    );
    assert_clean(&s.server, &["big"], "first push killed mid-transfer");
    assert_no_repository(&s.git, &s.dir, &s.url, "big");
}

per_runtime!(a_push_killed_mid_transfer_leaves_no_quarantine);
fn a_push_killed_mid_transfer_leaves_no_quarantine(runtime: Runtime) {
    let s = setup(runtime, &[], "kept");
    s.git.ok(&s.src, &["push", "-q", "origin", "main"]);
    commit_big(&s.git, &s.src);
    let kept = s.server.data_dir.join("repos/kept.git");
    kill_when(
        &s.git,
        &s.src,
        &["push", "origin", "main"],
        "push killed mid-transfer",
        || tmp_pack_bytes(&kept) > 1 << 20,
    );
    assert_clean(&s.server, &[], "push killed mid-transfer");
    // The same, killed while its pre-receive hook runs (the whole pack in
    // the quarantine, no ref updated yet).
    Control::set(&s.ctl.hold_hook());
    kill_when(
        &s.git,
        &s.src,
        &["push", "origin", "main"],
        "push killed in its hook",
        || s.ctl.hook_waits().exists(),
    );
    assert_clean(&s.server, &[], "push killed in its hook");
    Control::clear(&s.ctl.hold_hook());
    // The repository is as the first push left it.
    let clone = s.dir.join("clone");
    s.git
        .ok(&s.dir, &["clone", "-q", &s.url, clone.to_str().unwrap()]);
    assert!(clone.join("a.txt").is_file() && !clone.join("big").exists());
}

per_runtime!(the_session_limit_in_the_hook_of_a_first_push_leaves_nothing_behind);
fn the_session_limit_in_the_hook_of_a_first_push_leaves_nothing_behind(runtime: Runtime) {
    // The server cuts the connection while the pre-receive hook of a
    // first push waits: no repository is left.
    let s = setup(runtime, &["--max-session-time", "1"], "cut");
    Control::set(&s.ctl.hold_hook());
    let out = s.git.fails(&s.src, &["push", "origin", "main"]);
    assert!(
        s.ctl.hook_waits().exists() && stderr(&out).contains("time limit"),
        "the push must be cut by the time limit in its hook:\n{}",
        stderr(&out)
    );
    assert_clean(&s.server, &["cut"], "the server cut the push in its hook");
    Control::clear(&s.ctl.hold_hook());
}

per_runtime!(a_crash_s_old_temporary_repository_is_removed_at_start);
fn a_crash_s_old_temporary_repository_is_removed_at_start(runtime: Runtime) {
    // A crash left two temporary repositories: one more than an hour old
    // (removed at start) and one just made (another instance sharing the
    // data directory may be at work in it: kept).
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("data/repos");
    let old = repos.join(".init-deadbeef-1");
    let young = repos.join(".init-cafef00d-2");
    for d in [&old, &young] {
        std::fs::create_dir_all(d.join("objects")).unwrap();
        std::fs::write(d.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let key = keygen(dir.path(), "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir.path(), &[&key], ServerOptions::default());
    // The sweep runs before the server listens.
    assert!(
        !old.exists(),
        "an hour-old .init-* must be removed at start"
    );
    assert!(
        young.join("HEAD").is_file(),
        "a young .init-* may be at work"
    );
    assert!(server.logged("left by a crash"), "{}", server.log());
}
