//! What a team expects of a git server, with the real `git` and `ssh`:
//! partial clone (`--filter=blob:none` gives a partial clone whose missing
//! blobs come later, on demand), push options (`git push -o`), and hooks
//! that learn who pushed (`GITMOUTH_*`: a key's user or a certificate's
//! principal, the key's fingerprint, the session, the client's address,
//! a PROXY header's if one came) in git's minimal environment, which
//! holds nothing else of the server's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, per_runtime, public_key, start_git_server, stdout,
};

const RELAY: &str = env!("CARGO_BIN_EXE_gitmouth-proxy-relay");

/// A variable of the server's own environment no git may see.
const SECRET: (&str, &str) = ("SERVER_TEST_SECRET", "do-not-leak");

/// Writes `files` under `repo` and commits them.
fn commit(git: &Git, repo: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, contents) in files {
        let path = repo.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git.ok(repo, &["add", "-A"]);
    git.ok(repo, &["commit", "-q", "-m", message]);
    git.ok(repo, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// A work tree on `main` with `origin` set to `url`.
fn work_tree(git: &Git, dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git.ok(dir, &["init", "-q", "-b", "main"]);
    git.ok(dir, &["remote", "add", "origin", url]);
    dir.to_path_buf()
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A server whose own environment holds [`SECRET`].
fn server(runtime: Runtime, dir: &Path, keys: &[&Path], args: &[&str]) -> Server {
    let mut options = ServerOptions::default().args(args);
    options.env.push((SECRET.0.into(), SECRET.1.into()));
    start_git_server(runtime, dir, keys, options)
}

/// Installs a `pre-receive` hook in the server's repository `name` that
/// writes its environment (`env -0`) to `dump`, a file per push.
fn dump_env_hook(server: &Server, name: &str, dumps: &Path) {
    std::fs::create_dir_all(dumps).unwrap();
    let repo = server.data_dir.join("repos").join(format!("{name}.git"));
    assert!(repo.join("HEAD").is_file(), "{} exists", repo.display());
    write_script(
        &repo.join("hooks/pre-receive"),
        &format!(
            "#!/bin/sh\n\
             cat > /dev/null\n\
             env -0 > '{dumps}/'$$.tmp && mv '{dumps}/'$$.tmp '{dumps}/'$$.env\n",
            dumps = dumps.display()
        ),
    );
}

/// The environments the hook dumped, one per push so far.
fn dumps(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "env") {
            let bytes = std::fs::read(&path).unwrap();
            let vars = bytes
                .split(|&b| b == 0)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    let v = String::from_utf8_lossy(v);
                    let (k, v) = v.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            found.push(vars);
        }
    }
    found
}

/// The hook's one environment in `dir` (removed, for the next push).
fn take_dump(dir: &Path) -> BTreeMap<String, String> {
    let mut all = dumps(dir);
    assert_eq!(all.len(), 1, "one push, one hook run: {all:?}");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::remove_file(entry.path()).unwrap();
    }
    all.pop().unwrap()
}

/// `SHA256:…` of a key, as `ssh-keygen -lf` prints it.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key(key))
        .output()
        .unwrap();
    assert!(out.status.success());
    stdout(&out).split_whitespace().nth(1).unwrap().to_owned()
}

/// Names git's hook may see: ours, git's own, and what a shell adds.
fn allowed(name: &str) -> bool {
    name.starts_with("GIT_")
        || name.starts_with("GITMOUTH_")
        || ["PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name)
}

per_runtime!(partial_clone_fetches_blobs_on_demand);
fn partial_clone_fetches_blobs_on_demand(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = server(runtime, dir, &[&key], &[]);
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("team/site");
    let src = work_tree(&git, &dir.join("src"), &url);
    let first = commit(&git, &src, &[("a.txt", "first\n"), ("b/c.txt", "c\n")], "1");
    commit(&git, &src, &[("a.txt", "second\n")], "2");
    git.ok(&src, &["push", "-q", "origin", "main"]);

    let clone = dir.join("clone");
    git.ok(
        dir,
        &[
            "clone",
            "-q",
            "--filter=blob:none",
            &url,
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git.ok(&clone, &["config", "remote.origin.promisor"]).trim(),
        "true"
    );
    assert_eq!(
        git.ok(&clone, &["config", "remote.origin.partialclonefilter"])
            .trim(),
        "blob:none"
    );
    // The first commit's `a.txt` was never fetched: the server filtered
    // it out (a full clone would have it).
    let old_blob = git
        .ok(&src, &["rev-parse", &format!("{first}:a.txt")])
        .trim()
        .to_owned();
    let listed = git.ok(
        &clone,
        &["rev-list", "--objects", "--missing=print", "--all"],
    );
    assert!(
        listed.lines().any(|l| l == format!("?{old_blob}")),
        "{old_blob} missing:\n{listed}"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("a.txt")).unwrap(),
        "second\n"
    );
    // A checkout of the first commit fetches it from the server.
    git.ok(&clone, &["checkout", "-q", &first]);
    assert_eq!(
        std::fs::read_to_string(clone.join("a.txt")).unwrap(),
        "first\n"
    );
    let listed = git.ok(
        &clone,
        &["rev-list", "--objects", "--missing=print", "--all"],
    );
    assert!(!listed.contains(&format!("?{old_blob}")), "{listed}");
    // The log says which git serves, and from which PATH.
    let log = server.log();
    let path = std::env::var("PATH").unwrap();
    assert!(
        log.lines().any(|l| l.contains(" INFO ")
            && l.contains("using git version=\"git version ")
            && l.ends_with(&format!(" path={path}"))),
        "{log}"
    );
}

per_runtime!(hooks_see_push_options_and_who_pushed_and_nothing_of_the_server);
fn hooks_see_push_options_and_who_pushed_and_nothing_of_the_server(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    // A name that is not printable ASCII is not told to hooks.
    let jose = keygen(dir, "ed25519", "jose", "jos\u{e9}");
    let server = server(runtime, dir, &[&alice, &jose], &[]);
    let ssh = server.ssh().key(&alice);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("hooked");
    let src = work_tree(&git, &dir.join("src"), &url);
    commit(&git, &src, &[("a.txt", "1\n")], "1");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let dumped = dir.join("dumps");
    dump_env_hook(&server, "hooked", &dumped);

    commit(&git, &src, &[("a.txt", "2\n")], "2");
    git.ok(
        &src,
        &["push", "-q", "-o", "ci.skip", "-o", "x=y", "origin", "main"],
    );
    let env = take_dump(&dumped);
    let get = |name: &str| env.get(name).map(String::as_str);
    assert_eq!(get("GIT_PUSH_OPTION_COUNT"), Some("2"), "{env:?}");
    assert_eq!(get("GIT_PUSH_OPTION_0"), Some("ci.skip"));
    assert_eq!(get("GIT_PUSH_OPTION_1"), Some("x=y"));
    assert_eq!(get("GITMOUTH_USER"), Some("alice"));
    assert_eq!(
        get("GITMOUTH_KEY_FINGERPRINT"),
        Some(fingerprint(&alice).as_str())
    );
    assert_eq!(get("GITMOUTH_REMOTE_ADDR"), Some("127.0.0.1"));
    let session = get("GITMOUTH_SESSION").unwrap();
    assert!(
        session.len() == 8 && session.bytes().all(|b| b.is_ascii_hexdigit()),
        "{session}"
    );
    assert!(
        server.logged(&format!("session={session}")),
        "the logs' session id"
    );
    // Nothing of the server's environment but PATH and HOME.
    assert_eq!(get(SECRET.0), None, "{env:?}");
    assert!(!env.values().any(|v| v.contains(SECRET.1)), "{env:?}");
    let strangers: Vec<&String> = env.keys().filter(|k| !allowed(k)).collect();
    assert!(strangers.is_empty(), "{strangers:?} in {env:?}");
    // The server's PATH (after the directory of git's own programs, which
    // git puts first for its hooks).
    let path = get("PATH").unwrap();
    assert!(
        path.ends_with(&format!(":{}", std::env::var("PATH").unwrap())),
        "the server's PATH: {path}"
    );
    assert_eq!(get("HOME"), Some(dir.join("server-home").to_str().unwrap()));

    // José pushes without options: none told, no user name, the rest.
    let ssh = server.ssh().key(&jose);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    commit(&git, &src, &[("a.txt", "3\n")], "3");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let env = take_dump(&dumped);
    assert_eq!(env.get("GITMOUTH_USER"), None, "{env:?}");
    assert_eq!(
        env.get("GIT_PUSH_OPTION_COUNT").map(String::as_str),
        Some("0"),
        "{env:?}"
    );
    assert_eq!(
        env.get("GITMOUTH_KEY_FINGERPRINT"),
        Some(&fingerprint(&jose))
    );
    assert!(
        server.wait_for_log("not printable ASCII", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

per_runtime!(hooks_see_the_client_a_proxy_header_names);
fn hooks_see_the_client_a_proxy_header_names(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let alice = keygen(dir, "ed25519", "alice", "alice");
    let server = server(
        runtime,
        dir,
        &[&alice],
        &[
            "--proxy-protocol",
            "required",
            "--proxy-trusted",
            "127.0.0.1",
        ],
    );
    let relay = format!(
        "{RELAY} --connect {} --client 203.0.113.7:4242 --version 2",
        server.addr
    );
    let ssh = server
        .ssh()
        .key(&alice)
        .option(&format!("ProxyCommand={relay}"));
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("proxied");
    let src = work_tree(&git, &dir.join("src"), &url);
    commit(&git, &src, &[("a.txt", "1\n")], "1");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let dumped = dir.join("dumps");
    dump_env_hook(&server, "proxied", &dumped);
    commit(&git, &src, &[("a.txt", "2\n")], "2");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let env = take_dump(&dumped);
    assert_eq!(
        env.get("GITMOUTH_REMOTE_ADDR").map(String::as_str),
        Some("203.0.113.7"),
        "{env:?}"
    );
}

per_runtime!(hooks_see_a_certificates_principal_and_key);
fn hooks_see_a_certificates_principal_and_key(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca = keygen(dir, "ed25519", "ca", "ca");
    // Its comment is not the user: the certificate's principal is.
    let key = keygen(dir, "ed25519", "id", "laptop");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "carol@laptop", "-n", "carol", "-V", "-5m:+1h"])
        .arg(public_key(&key))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    let ca_keys = dir.join("user_ca.pub");
    std::fs::copy(public_key(&ca), &ca_keys).unwrap();
    let server = server(
        runtime,
        dir,
        &[],
        &["--trusted-user-ca-keys", ca_keys.to_str().unwrap()],
    );
    let ssh = server
        .ssh()
        .key(&key)
        .option(&format!("CertificateFile={}-cert.pub", key.display()));
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let url = ssh.url("certified");
    let src = work_tree(&git, &dir.join("src"), &url);
    commit(&git, &src, &[("a.txt", "1\n")], "1");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let dumped = dir.join("dumps");
    dump_env_hook(&server, "certified", &dumped);
    commit(&git, &src, &[("a.txt", "2\n")], "2");
    git.ok(&src, &["push", "-q", "origin", "main"]);
    let env = take_dump(&dumped);
    assert_eq!(
        env.get("GITMOUTH_USER").map(String::as_str),
        Some("carol"),
        "{env:?}"
    );
    // The certificate's own key, as `ssh-keygen -lf` prints it.
    assert_eq!(
        env.get("GITMOUTH_KEY_FINGERPRINT"),
        Some(&fingerprint(&key))
    );
}
