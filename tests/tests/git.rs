//! git over gitmouth as users run it: the real `git` and OpenSSH `ssh`
//! pushing, cloning, fetching and archiving against the standalone server.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, descendants, keygen, kill_group, per_runtime,
    processes_using, pseudo_random_bytes, start_git_server, stderr, stdout, wait_until,
};

/// Writes `files` (path, contents) under `repo` and commits them all.
fn commit(git: &Git, repo: &Path, files: &[(&str, &[u8])], message: &str) -> String {
    for (name, contents) in files {
        let path = repo.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git.ok(repo, &["add", "-A"]);
    git.ok(repo, &["commit", "-q", "-m", message]);
    head(git, repo, "HEAD")
}

/// The object a revision names in `repo`.
fn head(git: &Git, repo: &Path, rev: &str) -> String {
    git.ok(repo, &["rev-parse", rev]).trim().to_owned()
}

/// A new work tree with `main` checked out and `origin` set to `url`.
fn init(git: &Git, repo: &Path, url: &str) {
    std::fs::create_dir_all(repo).unwrap();
    git.ok(repo, &["init", "-q", "-b", "main"]);
    git.ok(repo, &["remote", "add", "origin", url]);
}

/// What `git ls-remote` shows for `reference` at `url`.
fn remote_ref(git: &Git, cwd: &Path, url: &str, reference: &str) -> Option<String> {
    let out = git.ok(cwd, &["ls-remote", url, reference]);
    out.lines()
        .find(|l| l.ends_with(&format!("\t{reference}")))
        .map(|l| l.split('\t').next().unwrap().to_owned())
}

fn fsck(git: &Git, repo: &Path) {
    let out = git.run(repo, &["fsck", "--full", "--strict", "--no-dangling"]);
    assert!(
        out.status.success(),
        "git fsck in {}:\n{}",
        repo.display(),
        stderr(&out)
    );
}

/// Refs under refs/heads and refs/tags, with the objects they name.
fn refs(git: &Git, repo: &Path) -> String {
    git.ok(
        repo,
        &[
            "for-each-ref",
            "--format=%(objectname) %(objecttype) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

/// Every object in `repo`: name, type and size, sorted.
fn objects(git: &Git, repo: &Path) -> Vec<String> {
    let out = git.ok(
        repo,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname) %(objecttype) %(objectsize)",
        ],
    );
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Push, clone, fast-forward push, fetch, refused non-fast-forward push and
/// forced push of one new repository, with git protocol `version`.
fn round_trip(server: &Server, git: &Git, work: &Path, name: &str, version: &str) {
    let url = server.ssh().url(name);
    let proto = format!("protocol.version={version}");
    let src = work.join("src");
    init(git, &src, &url);
    let first = commit(
        git,
        &src,
        &[
            ("hello.txt", format!("hello from {name}\n").as_bytes()),
            ("sub/dir/data.bin", &pseudo_random_bytes(1, 10_000)),
        ],
        "first",
    );

    // The first push creates the repository.
    let out = git.run(&src, &["-c", &proto, "push", "-u", "origin", "main"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{name}: first push:\n{err}");
    assert!(err.contains("* [new branch]      main -> main"), "{err}");
    let symref = git.ok(&src, &["-c", &proto, "ls-remote", "--symref", &url, "HEAD"]);
    assert!(
        symref.contains("ref: refs/heads/main\tHEAD"),
        "{name}: HEAD of the new repository must name main:\n{symref}"
    );

    // A clone checks out main, speaking the protocol version asked for.
    let clone = work.join("clone");
    let trace = work.join("clone.trace");
    let out = git
        .clone()
        .env("GIT_TRACE_PACKET", trace.to_str().unwrap())
        .run(
            work,
            &["-c", &proto, "clone", &url, clone.to_str().unwrap()],
        );
    assert!(out.status.success(), "{name}: clone:\n{}", stderr(&out));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let v2 = trace.contains("< version 2\n");
    assert_eq!(
        v2,
        version == "2",
        "{name}: the server must speak protocol v{version} (GIT_PROTOCOL must reach git):\n{}",
        &trace[..trace.len().min(2000)]
    );
    assert_eq!(
        git.ok(&clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(head(git, &clone, "HEAD"), first);
    assert_eq!(
        std::fs::read_to_string(clone.join("hello.txt")).unwrap(),
        format!("hello from {name}\n")
    );
    assert_eq!(
        std::fs::read(clone.join("sub/dir/data.bin")).unwrap(),
        pseudo_random_bytes(1, 10_000)
    );
    fsck(git, &clone);

    // A fast-forward push, then a fetch in the clone.
    let second = commit(
        git,
        &src,
        &[("hello.txt", b"changed\n"), ("new.txt", b"a new file\n")],
        "second",
    );
    let out = git.run(&src, &["-c", &proto, "push"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{name}: second push:\n{err}");
    assert!(
        err.contains(&format!("{}..{}  main -> main", &first[..7], &second[..7])),
        "{err}"
    );
    assert_eq!(
        remote_ref(git, &src, &url, "refs/heads/main").as_deref(),
        Some(second.as_str())
    );
    git.ok(&clone, &["-c", &proto, "fetch"]);
    assert_eq!(head(git, &clone, "origin/main"), second);
    git.ok(&clone, &["merge", "-q", "--ff-only", "origin/main"]);
    assert_eq!(
        std::fs::read_to_string(clone.join("new.txt")).unwrap(),
        "a new file\n"
    );
    fsck(git, &clone);

    // Rewriting history is refused without --force, with git's message.
    git.ok(&src, &["reset", "-q", "--hard", "HEAD~1"]);
    let diverged = commit(git, &src, &[("other.txt", b"diverged\n")], "diverged");
    let out = git.run(&src, &["-c", &proto, "push"]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{name}: a non-fast-forward push must fail:\n{err}"
    );
    assert!(
        err.contains("! [rejected]") && err.contains("main -> main (non-fast-forward)"),
        "{name}:\n{err}"
    );
    assert_eq!(
        remote_ref(git, &src, &url, "refs/heads/main").as_deref(),
        Some(second.as_str()),
        "{name}: a refused push must not move the branch"
    );
    let out = git.run(&src, &["-c", &proto, "push", "--force"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{name}: forced push:\n{err}");
    assert!(err.contains("(forced update)"), "{err}");
    let out = git.run(&clone, &["-c", &proto, "fetch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("(forced update)"), "{}", stderr(&out));
    assert_eq!(head(git, &clone, "origin/main"), diverged);
    fsck(git, &clone);
}

per_runtime!(push_clone_and_fetch_with_every_key_type_and_protocol_version);
fn push_clone_and_fetch_with_every_key_type_and_protocol_version(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let keys = [
        ("ed25519", keygen(dir, "ed25519", "id_ed25519", "alice")),
        ("ecdsa", keygen(dir, "ecdsa", "id_ecdsa", "bob")),
        ("rsa", keygen(dir, "rsa", "id_rsa", "carol")),
    ];
    let key_paths: Vec<&Path> = keys.iter().map(|(_, k)| k.as_path()).collect();
    let server = start_git_server(runtime, dir, &key_paths, ServerOptions::default());
    for (kind, key) in &keys {
        for version in ["0", "2"] {
            let git = Git::new(&dir.join("home")).ssh(&server.ssh().key(key));
            let work = dir.join(format!("{kind}-v{version}"));
            let name = format!("repo-{kind}-v{version}");
            round_trip(&server, &git, &work, &name, version);
        }
    }
}

per_runtime!(head_follows_the_first_pushed_branch_and_every_path_spelling_works);
fn head_follows_the_first_pushed_branch_and_every_path_spelling_works(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);

    // Only `trunk` exists: HEAD must name it, not git's default.
    let src = dir.join("src");
    init(&git, &src, &ssh.url("proj"));
    git.ok(&src, &["checkout", "-q", "-b", "trunk"]);
    let tip = commit(&git, &src, &[("f", b"trunk\n")], "on trunk");
    git.ok(&src, &["push", "-q", "origin", "trunk"]);
    let clone = dir.join("clone");
    git.ok(
        dir,
        &["clone", "-q", &ssh.url("proj"), clone.to_str().unwrap()],
    );
    assert_eq!(
        git.ok(&clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/trunk"
    );
    assert_eq!(head(&git, &clone, "HEAD"), tip);

    // The ways people write the same repository's address.
    let port = server.addr.port();
    let spellings = [
        "git@127.0.0.1:proj.git".to_owned(),
        "git@127.0.0.1:proj".to_owned(),
        "git@127.0.0.1:/proj.git".to_owned(),
        format!("ssh://git@127.0.0.1:{port}/proj"),
        format!("ssh://git@127.0.0.1:{port}/~/proj.git"),
    ];
    for url in &spellings {
        let out = git.run(dir, &["ls-remote", url, "refs/heads/trunk"]);
        assert!(out.status.success(), "{url}:\n{}", stderr(&out));
        assert_eq!(
            gitmouth_tests::stdout(&out),
            format!("{tip}\trefs/heads/trunk\n"),
            "{url}"
        );
    }
}

/// Files of incompressible bytes making about `total` bytes, over a few
/// commits on two branches with a tag, plus small text files with history
/// (so the pack has deltas too). Returns the work tree.
fn big_repository(git: &Git, dir: &Path, url: &str, total: usize) -> PathBuf {
    let src = dir.join("big-src");
    init(git, &src, url);
    // Big files go straight into packs without delta search, and stay
    // uncompressed (they are random anyway): quick and deterministic.
    git.ok(&src, &["config", "core.bigFileThreshold", "1m"]);
    git.ok(&src, &["config", "core.compression", "0"]);
    git.ok(&src, &["config", "pack.compression", "0"]);
    let part = total / 20;
    let mut text = String::new();
    for i in 0..5u64 {
        for line in 0..200 {
            text.push_str(&format!("line {line} of revision {i}\n"));
        }
        let size = [6, 6, 4, 2, 1][i as usize] * part;
        let blob = pseudo_random_bytes(100 + i, size);
        let name = format!("big/file{i}.bin");
        if i == 3 {
            git.ok(&src, &["checkout", "-q", "-b", "side"]);
        }
        commit(
            git,
            &src,
            &[
                (name.as_str(), &blob),
                ("notes.txt", text.as_bytes()),
                (&format!("small/{i}.txt"), format!("small {i}\n").as_bytes()),
            ],
            &format!("revision {i}"),
        );
        if i == 2 {
            git.ok(&src, &["tag", "-a", "-m", "version one", "v1"]);
        }
        if i == 3 {
            git.ok(&src, &["checkout", "-q", "main"]);
        }
    }
    src
}

/// Counts the key exchanges `ssh -v` reports in `log`.
fn key_exchanges(log: &str) -> usize {
    log.matches("SSH2_MSG_NEWKEYS received").count()
}

#[test]
fn a_100_mb_repository_survives_many_rekeys_both_ways() {
    let runtime = Runtime::Smol;
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key).option("RekeyLimit=8M").arg("-v");
    let mut git = Git::new(&dir.join("home")).ssh(&ssh);
    git.timeout = Duration::from_secs(90);
    let url = ssh.url("big");
    let src = big_repository(&git, dir, &url, 100 << 20);
    let made = started.elapsed();

    let out = git.run(&src, &["push", "origin", "main", "side", "v1"]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "push:\n{}",
        &err[err.len().saturating_sub(4000)..]
    );
    let push_rekeys = key_exchanges(&err);
    let pushed = started.elapsed();

    let mirror = dir.join("mirror.git");
    let out = git.run(dir, &["clone", "--mirror", &url, mirror.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "clone:\n{}",
        &err[err.len().saturating_sub(4000)..]
    );
    let clone_rekeys = key_exchanges(&err);
    let cloned = started.elapsed();

    // 100 MB each way at 8 MB per key: a dozen re-keys, plus the first
    // exchange.
    assert!(push_rekeys >= 10, "push saw {push_rekeys} key exchanges");
    assert!(clone_rekeys >= 10, "clone saw {clone_rekeys} key exchanges");

    fsck(&git, &mirror);
    assert_eq!(refs(&git, &mirror), refs(&git, &src));
    assert_eq!(
        git.ok(&mirror, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    let theirs = objects(&git, &mirror);
    let ours = objects(&git, &src);
    assert!(ours.len() > 20, "{ours:?}");
    assert_eq!(
        theirs, ours,
        "the clone must hold exactly the pushed objects"
    );
    eprintln!(
        "big repository: made in {made:?}, pushed at {pushed:?} ({push_rekeys} kex), \
         cloned at {cloned:?} ({clone_rekeys} kex), checked at {:?}",
        started.elapsed()
    );
    drop(server);
}

/// Git processes the server started that are still around: its
/// descendants, and anything working in its data directory.
fn leftover_git(server: &Server) -> Vec<String> {
    let mut left: Vec<String> = descendants(server.pid())
        .into_iter()
        .map(|p| format!("{} {} (child of server) {}", p.pid, p.state, p.cmdline))
        .collect();
    left.extend(
        processes_using(&server.data_dir)
            .into_iter()
            .filter(|p| p.pid != server.pid())
            .map(|p| format!("{} {} (in data dir) {}", p.pid, p.state, p.cmdline)),
    );
    left
}

per_runtime!(a_client_killed_mid_push_leaves_no_git_behind);
fn a_client_killed_mid_push_leaves_no_git_behind(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("victim");

    // A small first push, so the repository exists with one commit.
    let src = dir.join("src");
    init(&git, &src, &url);
    git.ok(&src, &["config", "core.bigFileThreshold", "1m"]);
    git.ok(&src, &["config", "core.compression", "0"]);
    let first = commit(&git, &src, &[("a.txt", b"first\n")], "first");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    // 160 files of 256 KiB: over receive.unpackLimit, so receive-pack
    // streams the pack to index-pack and a temporary pack file grows
    // as data arrives. No delta search: the bytes are random.
    git.ok(&src, &["config", "pack.window", "0"]);
    let blobs: Vec<(String, Vec<u8>)> = (0..160)
        .map(|i| {
            (
                format!("big/{i}.bin"),
                pseudo_random_bytes(1000 + i, 256 << 10),
            )
        })
        .collect();
    let files: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    commit(&git, &src, &files, "big");

    // Wait until receive-pack runs and pack data is arriving (its
    // quarantine directory holds a growing temporary pack), then kill
    // the client and everything it started.
    let repo = server.data_dir.join("repos/victim.git");
    kill_mid_transfer(
        &server,
        &git,
        &src,
        &["push", "origin", "main"],
        "receive-pack",
        || tmp_pack_bytes(&repo.join("objects")) > 1 << 20,
    );
    // The repository still serves, unchanged by the lost push.
    let clone = dir.join("clone");
    git.ok(dir, &["clone", "-q", &url, clone.to_str().unwrap()]);
    assert_eq!(head(&git, &clone, "HEAD"), first);
    fsck(&git, &clone);

    // Now the same for a clone killed half way.
    let big = {
        let out = git.run(&src, &["push", "-q", "origin", "main"]);
        assert!(out.status.success(), "{}", stderr(&out));
        head(&git, &src, "HEAD")
    };
    let partial = dir.join("partial");
    kill_mid_transfer(
        &server,
        &git,
        dir,
        &["clone", "-q", &url, partial.to_str().unwrap()],
        "upload-pack",
        || tmp_pack_bytes(&partial) > 1 << 20,
    );
    let again = dir.join("again");
    git.ok(dir, &["clone", "-q", &url, again.to_str().unwrap()]);
    assert_eq!(head(&git, &again, "HEAD"), big);
    fsck(&git, &again);
}

/// Runs `git args` in `cwd`, SIGKILLs it and its ssh once `progress` says
/// data is flowing (and the server runs `server_command`), then checks that
/// within 10 s nothing the server started for it is left.
fn kill_mid_transfer(
    server: &Server,
    git: &Git,
    cwd: &Path,
    args: &[&str],
    server_command: &str,
    mut progress: impl FnMut() -> bool,
) {
    let mut cmd = git.command(cwd, args);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id();
    let flowing = wait_until(Duration::from_secs(20), &mut progress);
    let running = descendants(server.pid())
        .iter()
        .any(|p| p.cmdline.contains(server_command));
    kill_group(pgid, "KILL");
    let status = child.wait().unwrap();
    assert!(
        flowing && running,
        "{args:?} never got going (data flowing {flowing}, {server_command} running {running})"
    );
    assert!(
        !status.success(),
        "{args:?} finished before it was killed: the test proves nothing"
    );
    let clean = wait_until(Duration::from_secs(10), || leftover_git(server).is_empty());
    assert!(
        clean,
        "10 s after the client of {args:?} died, git is still running:\n{}",
        leftover_git(server).join("\n")
    );
}

/// Bytes in git's temporary pack files (`tmp_pack_*`) anywhere under
/// `dir`: receive-pack's quarantine, or a clone in progress.
fn tmp_pack_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tmp_pack")
        })
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

per_runtime!(git_archive_remote_yields_the_pushed_tree);
fn git_archive_remote_yields_the_pushed_tree(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("arch");
    let src = dir.join("src");
    init(&git, &src, &url);
    let data = pseudo_random_bytes(3, 300_000);
    commit(
        &git,
        &src,
        &[
            ("README", b"read me\n"),
            ("lib/code.rs", b"fn main() {}\n"),
            ("lib/blob.bin", &data),
        ],
        "content",
    );
    git.ok(&src, &["push", "-q", "origin", "main"]);

    let tar = dir.join("out.tar");
    let out = git.run(
        dir,
        &[
            "archive",
            &format!("--remote={url}"),
            "--format=tar",
            "-o",
            tar.to_str().unwrap(),
            "HEAD",
        ],
    );
    assert!(out.status.success(), "git archive:\n{}", stderr(&out));
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(list.status.success(), "not a valid tar");
    let mut names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(names, ["README", "lib/", "lib/blob.bin", "lib/code.rs"]);
    let unpacked = dir.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(x.success());
    assert_eq!(std::fs::read(unpacked.join("lib/blob.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(unpacked.join("README")).unwrap(),
        b"read me\n"
    );

    // A path limit and another format are the server's work too.
    let out = git.run(
        dir,
        &[
            "archive",
            &format!("--remote={url}"),
            "--format=zip",
            "-o",
            dir.join("out.zip").to_str().unwrap(),
            "HEAD",
            "lib/code.rs",
        ],
    );
    assert!(out.status.success(), "git archive zip:\n{}", stderr(&out));
    let zip = std::fs::read(dir.join("out.zip")).unwrap();
    assert!(zip.starts_with(b"PK\x03\x04"), "not a zip");
    assert!(
        zip.windows(11).any(|w| w == b"lib/code.rs") && !zip.windows(6).any(|w| w == b"README"),
        "the zip must hold lib/code.rs only"
    );
}

per_runtime!(concurrent_clones_and_pushes);
fn concurrent_clones_and_pushes(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("shared");
    let src = dir.join("src");
    init(&git, &src, &url);
    let tip = commit(
        &git,
        &src,
        &[("blob.bin", &pseudo_random_bytes(5, 2 << 20))],
        "content",
    );
    git.ok(&src, &["push", "-q", "origin", "main"]);

    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..6 {
            let git = git.clone();
            let url = url.clone();
            let tip = tip.clone();
            let ssh = ssh.clone();
            handles.push(s.spawn(move || {
                // Half clone the shared repository, half push their own.
                if i % 2 == 0 {
                    let clone = dir.join(format!("clone{i}"));
                    git.ok(dir, &["clone", "-q", &url, clone.to_str().unwrap()]);
                    assert_eq!(head(&git, &clone, "HEAD"), tip);
                    fsck(&git, &clone);
                } else {
                    let own = dir.join(format!("own{i}"));
                    let own_url = ssh.url(&format!("own{i}"));
                    init(&git, &own, &own_url);
                    let mine = commit(
                        &git,
                        &own,
                        &[("mine.txt", format!("repository {i}\n").as_bytes())],
                        "mine",
                    );
                    git.ok(&own, &["push", "-q", "origin", "main"]);
                    assert_eq!(
                        remote_ref(&git, &own, &own_url, "refs/heads/main").as_deref(),
                        Some(mine.as_str())
                    );
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    assert!(
        wait_until(Duration::from_secs(5), || leftover_git(&server).is_empty()),
        "{:?}",
        leftover_git(&server)
    );
}

per_runtime!(server_and_client_rekeying_at_once_keep_transfers_intact);
fn server_and_client_rekeying_at_once_keep_transfers_intact(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    // Both sides re-key every megabyte, so their KEXINITs cross.
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--rekey-limit", "1M"]),
    );
    let ssh = server.ssh().key(&key).option("RekeyLimit=1M").arg("-v");
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("rekeyed");
    let src = big_repository(&git, dir, &url, 24 << 20);
    let out = git.run(&src, &["push", "origin", "main", "side", "v1"]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "push:\n{}",
        &err[err.len().saturating_sub(4000)..]
    );
    assert!(key_exchanges(&err) >= 15, "{} kex", key_exchanges(&err));
    let mirror = dir.join("mirror.git");
    let out = git.run(dir, &["clone", "--mirror", &url, mirror.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "clone:\n{}",
        &err[err.len().saturating_sub(4000)..]
    );
    assert!(key_exchanges(&err) >= 15, "{} kex", key_exchanges(&err));
    fsck(&git, &mirror);
    assert_eq!(refs(&git, &mirror), refs(&git, &src));
    assert_eq!(objects(&git, &mirror), objects(&git, &src));
}

per_runtime!(tags_branch_deletion_and_shallow_clones);
fn tags_branch_deletion_and_shallow_clones(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    // Every character a name may have, and the longest name.
    let long = format!("L{}", "x".repeat(99));
    for name in ["My_App-1@team", long.as_str()] {
        let url = ssh.url(name);
        let src = dir.join(format!("src-{}", &name[..5]));
        init(&git, &src, &url);
        let mut tips = Vec::new();
        for i in 0..5 {
            tips.push(commit(
                &git,
                &src,
                &[("log.txt", format!("entry {i}\n").as_bytes())],
                &format!("commit {i}"),
            ));
        }
        git.ok(&src, &["tag", "light", &tips[1]]);
        git.ok(&src, &["tag", "-a", "-m", "annotated", "heavy", &tips[3]]);
        git.ok(&src, &["branch", "doomed", &tips[2]]);
        git.ok(&src, &["push", "-q", "origin", "main", "doomed", "--tags"]);
        let listed = git.ok(&src, &["ls-remote", &url]);
        for r in [
            "refs/heads/main",
            "refs/heads/doomed",
            "refs/tags/light",
            "refs/tags/heavy",
            "refs/tags/heavy^{}",
        ] {
            assert!(
                listed.contains(&format!("\t{r}\n")),
                "{name}: {r} missing:\n{listed}"
            );
        }
        git.ok(&src, &["push", "-q", "origin", "--delete", "doomed"]);
        assert_eq!(remote_ref(&git, &src, &url, "refs/heads/doomed"), None);

        for version in ["0", "2"] {
            let proto = format!("protocol.version={version}");
            let shallow = dir.join(format!("shallow-{}-v{version}", &name[..5]));
            git.ok(
                dir,
                &[
                    "-c",
                    &proto,
                    "clone",
                    "-q",
                    "--depth",
                    "1",
                    &url,
                    shallow.to_str().unwrap(),
                ],
            );
            assert_eq!(
                git.ok(&shallow, &["rev-list", "--count", "HEAD"]).trim(),
                "1"
            );
            assert_eq!(head(&git, &shallow, "HEAD"), tips[4]);
            git.ok(
                &shallow,
                &["-c", &proto, "fetch", "-q", "--unshallow", "--tags"],
            );
            assert_eq!(
                git.ok(&shallow, &["rev-list", "--count", "HEAD"]).trim(),
                "5"
            );
            assert_eq!(head(&git, &shallow, "heavy^{commit}"), tips[3]);
            assert_eq!(head(&git, &shallow, "light"), tips[1]);
            fsck(&git, &shallow);
        }
    }
    // One character more is not a name.
    let too_long = format!("L{}", "x".repeat(100));
    let out = git.fails(dir, &["ls-remote", &ssh.url(&too_long)]);
    assert!(
        stderr(&out).contains(" ! Invalid path.\n"),
        "{}",
        stderr(&out)
    );
}

/// The number of the `write` system call, as `/proc/<pid>/syscall` shows it.
#[cfg(target_arch = "x86_64")]
const SYS_WRITE: &str = "1";
#[cfg(target_arch = "aarch64")]
const SYS_WRITE: &str = "64";

/// If the server's child whose command line contains `name` (not a
/// `--writer` helper) is asleep in `write(1, ...)`, i.e. blocked on a full
/// stdout pipe: the bytes it has written so far (`wchar`).
fn blocked_writing_stdout(server: u32, name: &str) -> Option<u64> {
    let git = descendants(server)
        .into_iter()
        .find(|p| p.cmdline.contains(name) && !p.cmdline.contains("--writer"))?;
    let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", git.pid)).ok()?;
    let mut words = syscall.split_whitespace();
    let in_write = words.next() == Some(SYS_WRITE) && words.next() == Some("0x1");
    let asleep = std::fs::read_to_string(format!("/proc/{}/stat", git.pid))
        .ok()?
        .rsplit_once(") ")?
        .1
        .starts_with('S');
    let io = std::fs::read_to_string(format!("/proc/{}/io", git.pid)).ok()?;
    let written = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()?;
    (in_write && asleep).then_some(written)
}

/// The server's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

per_runtime!(a_client_that_stops_reading_does_not_make_the_server_buffer);
fn a_client_that_stops_reading_does_not_make_the_server_buffer(runtime: Runtime) {
    use std::io::{Read, Write};
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("stream");
    let src = dir.join("src");
    init(&git, &src, &url);
    git.ok(&src, &["config", "core.bigFileThreshold", "1m"]);
    git.ok(&src, &["config", "core.compression", "0"]);
    let size = 48 << 20;
    commit(
        &git,
        &src,
        &[("blob.bin", &pseudo_random_bytes(9, size))],
        "big",
    );
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let baseline = rss_kib(server.pid());

    // git archive's request by hand: the tar of HEAD, 48 MB, which we
    // then do not read for a while.
    let mut cmd = ssh
        .option("LogLevel=ERROR")
        .command(&["git-upload-archive 'stream.git'"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"0012argument HEAD\n0000").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).unwrap();
    // Measure once the server has stopped taking git's output: git is
    // blocked writing into the full pipe to the server, and wrote nothing
    // more between two looks. Whatever the server buffers, it has by then.
    // A server that kept reading (buffering the whole archive) never gets
    // there: git would write on to its end and exit.
    let mut last = None;
    let stalled_git = wait_until(Duration::from_secs(60), || {
        let now = blocked_writing_stdout(server.pid(), "upload-archive");
        let same = now.is_some() && now == last;
        last = now;
        same
    });
    assert!(
        stalled_git,
        "git upload-archive never stalled on its output while the client was not reading"
    );
    let stalled = rss_kib(server.pid());
    let mut rest = Vec::new();
    let reader = std::thread::spawn(move || {
        stdout.read_to_end(&mut rest).unwrap();
        rest
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(reader.join());
    });
    let rest = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r.unwrap(),
        Err(_) => {
            let _ = child.kill();
            panic!("the archive never finished after the client read again");
        }
    };
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Side-band framing and tar headers on top of the blob.
    let total = first.len() + rest.len();
    assert!(total > size, "only {total} bytes arrived");
    let grew = stalled.saturating_sub(baseline);
    eprintln!("server memory: {baseline} KiB before, {stalled} KiB while stalled");
    assert!(
        grew < 16 * 1024,
        "the server grew by {grew} KiB while the client was not reading"
    );
}

per_runtime!(git_exit_status_and_stderr_reach_the_client);
fn git_exit_status_and_stderr_reach_the_client(runtime: Runtime) {
    use std::io::Write;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key).option("LogLevel=ERROR");
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("status");
    let src = dir.join("src");
    init(&git, &src, &url);
    commit(&git, &src, &[("f", b"x\n")], "one");
    git.ok(&src, &["push", "-q", "origin", "main"]);

    // upload-pack fed garbage dies with git's message and status 128.
    let mut cmd = ssh.command(&["git-upload-pack 'status.git'"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"this is not a pkt-line\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains(" refs/heads/main"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("fatal: protocol error"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(128), "{}", stderr(&out));

    // A clean ls-remote exchange ends with status 0.
    let mut cmd = ssh.command(&["git-upload-pack 'status.git'"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"0000").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Thousands of refs: a ref advertisement far larger than one
    // channel packet or window, both ways.
    let tip = head(&git, &src, "HEAD");
    let mut updates = String::new();
    for i in 0..3000 {
        updates.push_str(&format!("create refs/tags/t{i:04} {tip}\n"));
    }
    let mut cmd = git.command(&src, &["update-ref", "--stdin"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(updates.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    git.ok(&src, &["push", "-q", "origin", "--tags"]);
    let mirror = dir.join("mirror.git");
    git.ok(
        dir,
        &["clone", "-q", "--mirror", &url, mirror.to_str().unwrap()],
    );
    assert_eq!(refs(&git, &mirror), refs(&git, &src));
    assert_eq!(refs(&git, &mirror).lines().count(), 3001);
}

// With no drain time (`--drain-timeout 0`), SIGTERM stops commands in
// progress at once; tests/tests/drain.rs covers the drain itself.
per_runtime!(sigterm_stops_the_server_and_its_git_commands);
fn sigterm_stops_the_server_and_its_git_commands(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--drain-timeout", "0"]),
    );
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("interrupted");
    let src = dir.join("src");
    init(&git, &src, &url);
    git.ok(&src, &["config", "core.compression", "0"]);
    git.ok(&src, &["config", "pack.window", "0"]);
    let blobs: Vec<(String, Vec<u8>)> = (0..160)
        .map(|i| (format!("{i}.bin"), pseudo_random_bytes(5000 + i, 256 << 10)))
        .collect();
    let files: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    commit(&git, &src, &files, "many");

    // A push is streaming when the server is told to stop.
    let mut cmd = git.command(&src, &["push", "origin", "main"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut push = cmd.spawn().unwrap();
    let repo = server.data_dir.join("repos/interrupted.git");
    let flowing = wait_until(Duration::from_secs(20), || {
        tmp_pack_bytes(&repo.join("objects")) > 1 << 20
    });
    gitmouth_tests::kill(server.pid(), "TERM");
    assert!(flowing, "the push never got going");
    let exited = wait_until(Duration::from_secs(10), || {
        !gitmouth_tests::processes()
            .iter()
            .any(|p| p.pid == server.pid() && p.state != 'Z')
    });
    assert!(exited, "the server did not stop within 10 s of SIGTERM");
    let clean = wait_until(Duration::from_secs(10), || {
        processes_using(&server.data_dir)
            .iter()
            .all(|p| p.pid == server.pid())
    });
    let status = wait_until(Duration::from_secs(20), || {
        push.try_wait().unwrap().is_some()
    });
    if !status {
        kill_group(push.id(), "KILL");
    }
    let finished = push.wait().unwrap();
    assert!(
        clean,
        "git still runs after the server stopped:\n{:?}",
        processes_using(&server.data_dir)
    );
    assert!(status, "the client did not notice the server stopping");
    assert!(
        !finished.success(),
        "a push cut off by the server's shutdown must not succeed"
    );
}

per_runtime!(options_from_users_ssh_configs_work);
fn options_from_users_ssh_configs_work(runtime: Runtime) {
    use std::io::{Read, Write};
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("configured");
    let src = dir.join("src");
    init(&git, &src, &url);
    let tip = commit(
        &git,
        &src,
        &[("f", &pseudo_random_bytes(2, 100_000))],
        "one",
    );
    git.ok(&src, &["push", "-q", "origin", "main"]);

    // Compression asked for (`Compression yes`): we offer none, and
    // the clone works uncompressed.
    let compressed = Git::new(&dir.join("home")).ssh(&ssh.clone().arg("-C").arg("-v"));
    let clone = dir.join("clone-c");
    let out = compressed.run(dir, &["clone", &url, clone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("compression: none"),
        "{}",
        stderr(&out)
    );
    assert_eq!(head(&git, &clone, "HEAD"), tip);

    // Protocol v1, which git still speaks when asked.
    let trace = dir.join("v1.trace");
    let out = git
        .clone()
        .env("GIT_TRACE_PACKET", trace.to_str().unwrap())
        .run(dir, &["-c", "protocol.version=1", "ls-remote", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&trace)
            .unwrap()
            .contains("< version 1\n")
    );

    // Keepalives (`ServerAliveInterval`) while the command waits: each
    // must be answered, or ssh gives up after two.
    let mut cmd = ssh
        .clone()
        .option("ServerAliveInterval=1")
        .option("ServerAliveCountMax=2")
        .option("LogLevel=ERROR")
        .command(&["git-upload-pack 'configured.git'"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut advert = [0u8; 4];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut advert)
        .unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "ssh gave up on keepalives"
    );
    stdin.write_all(b"0000").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(" refs/heads/main"));
}

per_runtime!(head_names_a_branch_even_when_the_first_push_created_none);
fn head_names_a_branch_even_when_the_first_push_created_none(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);

    // A first push of a tag only creates the repository without a
    // branch; the branch pushed next must become HEAD.
    let url = ssh.url("tagsfirst");
    let src = dir.join("src");
    init(&git, &src, &url);
    let tip = commit(&git, &src, &[("f", b"x\n")], "one");
    git.ok(&src, &["tag", "v1"]);
    git.ok(&src, &["push", "-q", "origin", "v1"]);
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let symref = git.ok(&src, &["ls-remote", "--symref", &url, "HEAD"]);
    let clone = dir.join("clone");
    let out = git.run(dir, &["clone", &url, clone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("remote HEAD refers to nonexistent ref"),
        "after a tag-only first push, HEAD does not name the branch pushed next:\n\
         ls-remote --symref: {symref}\nclone: {}",
        stderr(&out)
    );
    assert_eq!(
        git.ok(&clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(head(&git, &clone, "HEAD"), tip);
}

per_runtime!(head_names_a_branch_after_an_interrupted_first_push);
fn head_names_a_branch_after_an_interrupted_first_push(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);

    // The first push to a new repository dies half way (the network
    // dropped); the retry must still leave HEAD on its branch.
    let url = ssh.url("retried");
    let src = dir.join("src");
    init(&git, &src, &url);
    git.ok(&src, &["config", "core.compression", "0"]);
    git.ok(&src, &["config", "pack.window", "0"]);
    let blobs: Vec<(String, Vec<u8>)> = (0..160)
        .map(|i| (format!("{i}.bin"), pseudo_random_bytes(7000 + i, 256 << 10)))
        .collect();
    let files: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let tip = commit(&git, &src, &files, "many");
    let repo = server.data_dir.join("repos/retried.git");
    kill_mid_transfer(
        &server,
        &git,
        &src,
        &["push", "origin", "main"],
        "receive-pack",
        || tmp_pack_bytes(&repo.join("objects")) > 1 << 20,
    );
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let clone = dir.join("clone");
    let out = git.run(dir, &["clone", &url, clone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("remote HEAD refers to nonexistent ref"),
        "after an interrupted first push, HEAD does not name the branch:\n{}",
        stderr(&out)
    );
    assert_eq!(
        git.ok(&clone, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(head(&git, &clone, "HEAD"), tip);
}

per_runtime!(simultaneous_first_pushes_to_one_new_repository);
fn simultaneous_first_pushes_to_one_new_repository(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    // The race is narrow: a few rounds make losing it near certain.
    for round in 0..5 {
        let name = format!("race{round}");
        let url = ssh.url(&name);
        let branches = ["main", "dev", "feature", "fix"];
        let mut srcs = Vec::new();
        for b in branches {
            let src = dir.join(format!("{name}-{b}"));
            init(&git, &src, &url);
            git.ok(&src, &["checkout", "-q", "-b", b]);
            commit(&git, &src, &[("who", b.as_bytes())], b);
            srcs.push((b, src));
        }
        let results: Vec<(String, std::process::Output)> = std::thread::scope(|s| {
            let handles: Vec<_> = srcs
                .iter()
                .map(|(b, src)| {
                    let git = git.clone();
                    s.spawn(move || (b.to_string(), git.run(src, &["push", "origin", b])))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut pushed = Vec::new();
        for (b, out) in &results {
            let err = stderr(out);
            if out.status.success() {
                pushed.push(b.clone());
            } else {
                // Refused plainly is acceptable; failing is not.
                assert!(
                    err.contains("is in progress"),
                    "{name}: push of {b} failed:\n{err}"
                );
            }
        }
        assert!(!pushed.is_empty(), "{name}: no push got through");
        let clone = dir.join(format!("{name}-clone"));
        let out = git.run(dir, &["clone", &url, clone.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("remote HEAD refers to nonexistent ref"),
            "{name}: HEAD names no pushed branch ({pushed:?})"
        );
        fsck(&git, &clone);
        for b in &pushed {
            assert!(
                remote_ref(&git, dir, &url, &format!("refs/heads/{b}")).is_some(),
                "{name}: {b} was pushed but is missing"
            );
        }
    }
}

per_runtime!(each_log_line_names_one_connection);
fn each_log_line_names_one_connection(runtime: Runtime) {
    use std::io::{Read, Write};
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default());
    let ssh = server.ssh().key(&key).option("LogLevel=ERROR");
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let src = dir.join("src");
    init(&git, &src, &ssh.url("logged"));
    commit(&git, &src, &[("f", b"x\n")], "one");
    git.ok(&src, &["push", "-q", "origin", "main"]);

    // Connection A waits in upload-pack while B and C come and go.
    let mut cmd = ssh.command(&["git-upload-pack 'logged.git'"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut a = cmd.spawn().unwrap();
    let mut advert = [0u8; 4];
    a.stdout.as_mut().unwrap().read_exact(&mut advert).unwrap();
    for _ in 0..2 {
        let out = ssh.clone().arg("-T").run(&[]);
        assert!(stderr(&out).contains("Hi alice!"), "{}", stderr(&out));
    }
    a.stdin.take().unwrap().write_all(b"0000").unwrap();
    assert!(a.wait().unwrap().success());

    // Each line carries at most one connection's span: a span entered
    // by one connection's task must not be current in another's.
    let log = server.log();
    let tangled: Vec<&str> = log
        .lines()
        .filter(|l| l.matches("conn{").count() > 1)
        .collect();
    assert!(
        tangled.is_empty(),
        "log lines carry several connections' spans:\n{}",
        tangled[..tangled.len().min(5)].join("\n")
    );
}
