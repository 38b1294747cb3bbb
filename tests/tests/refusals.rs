//! What gitmouth refuses, as users of the real `ssh` and `git` see it: bad
//! commands and paths, missing repositories, environment variables,
//! forwarding, subsystems and too many failed keys.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gitmouth_tests::{
    Git, Runtime, Server, ServerOptions, keygen, per_runtime, session_id, start_git_server, stderr,
    stdout, wait_until,
};

const HOST: &str = "example.test";

/// The rules an invalid command may break, as the user is told them.
const NOT_GIT: &str =
    "Only git-upload-pack, git-receive-pack and git-upload-archive run here, with one path.";
const QUOTING: &str = "The path must be quoted as git quotes it: 'NAME.git'.";
const NAME: &str = "A name starts with a letter or digit and holds only letters, digits, . _ @ and -, at most 100 characters, with no .. and not ending in .lock or .git; one folder at most (FOLDER/NAME); then an optional .git.";
const TOO_LONG: &str = "The command is longer than 1024 bytes.";

/// The invalid-path message of a server on `port` (not 22: the URL form
/// with the port), with the rule broken.
fn invalid_path(id: &str, port: u16, rule: &str) -> String {
    format!(
        "\n ! Invalid path.\n ! Syntax is: ssh://git@{HOST}:{port}/<repo>.git where <repo> is your repository's name.\n ! {rule}\n ! (session {id})\n\n"
    )
}

fn no_such_app(app: &str, id: &str) -> String {
    format!(" ! No such repository as {app}, or you do not have access to it.\n ! (session {id})\n")
}

fn server_with_key(runtime: Runtime, dir: &Path) -> (Server, std::path::PathBuf) {
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(
        runtime,
        dir,
        &[&key],
        ServerOptions::default().args(&["--public-host", HOST]),
    );
    (server, key)
}

/// Pushes one commit on `main` to a new repository `name`.
fn push_repo(server: &Server, git: &Git, dir: &Path, name: &str) {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("f"), "content\n").unwrap();
    git.ok(&src, &["add", "f"]);
    git.ok(&src, &["commit", "-q", "-m", "one"]);
    git.ok(&src, &["push", "-q", &server.ssh().url(name), "main"]);
}

/// Every entry under `dir`, as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            out.extend(tree(&e.path()).into_iter().map(|s| format!("{name}/{s}")));
        }
        out.push(name);
    }
    out.sort();
    out
}

per_runtime!(bad_commands_and_paths_get_the_invalid_path_message);
fn bad_commands_and_paths_get_the_invalid_path_message(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key) = server_with_key(runtime, dir);
    let before = tree(dir);
    let long = format!("git-upload-pack '{}.git'", "a".repeat(2000));
    let commands = [
        ("rm -rf /", NOT_GIT),
        ("git-upload-pack '../etc/passwd'", NAME),
        ("git-upload-pack '../../etc/passwd.git'", NAME),
        ("git-receive-pack '/etc/passwd/x'", NAME),
        ("git-receive-pack '../escape.git'", NAME),
        ("git-upload-pack 'x.git'; id", QUOTING),
        ("git-upload-pack 'x.git'\nid", QUOTING),
        ("git-upload-pack '$(id).git'", NAME),
        ("git-upload-pack '`id`.git'", NAME),
        ("git-upload-pack 'app.git/'", NAME),
        ("git-upload-pack '.git'", NAME),
        ("git-upload-pack '~user/app.git'", NAME),
        ("git-upload-pack '%2e%2e/app.git'", NAME),
        ("git-upload-pack 'a..b.git'", NAME),
        ("git-upload-pack 'unterminated", QUOTING),
        ("git-upload-pack  'two-spaces.git'", NAME),
        ("git-shell -c 'git-upload-pack x.git'", NOT_GIT),
        ("scp -t /", NOT_GIT),
        ("sh", NOT_GIT),
        (&long, TOO_LONG),
    ];
    let port = server.addr.port();
    for (command, rule) in commands {
        let out = server
            .ssh()
            .key(&key)
            .option("LogLevel=ERROR")
            .run(&[command]);
        let err = stderr(&out);
        let id =
            session_id(&err).unwrap_or_else(|| panic!("{command:?}: no session id in {err:?}"));
        assert_eq!(err, invalid_path(&id, port, rule), "{command:?}");
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        assert!(out.stdout.is_empty(), "{command:?}");
        // The log is read by another thread: give it a moment.
        assert!(
            server.wait_for_log(&id, std::time::Duration::from_secs(5)),
            "{command:?}: session {id} is not in the log"
        );
    }
    // Nothing was created anywhere.
    let mut after = tree(dir);
    after.retain(|p| !p.starts_with("data/ssh_host_"));
    let mut before = before;
    before.retain(|p| !p.starts_with("data/ssh_host_"));
    assert_eq!(after, before);

    // The same through git itself.
    let git = Git::new(&dir.join("home")).ssh(&server.ssh().key(&key));
    let clone = dir.join("clone");
    for url in [
        format!("ssh://git@127.0.0.1:{port}/../x.git"),
        format!("ssh://git@127.0.0.1:{port}/a/b/c.git"),
        "git@127.0.0.1:../../etc/passwd".to_owned(),
    ] {
        let out = git.fails(dir, &["clone", &url, clone.to_str().unwrap()]);
        let err = stderr(&out);
        let id = session_id(&err).unwrap_or_else(|| panic!("{url}: {err}"));
        assert!(
            err.contains(&invalid_path(&id, port, NAME)),
            "{url}:\n{err}"
        );
        assert!(!clone.exists());
    }
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    git.ok(&src, &["init", "-q", "-b", "main"]);
    git.ok(&src, &["commit", "-q", "--allow-empty", "-m", "x"]);
    let out = git.fails(
        &src,
        &[
            "push",
            &format!("ssh://git@127.0.0.1:{port}/../evil.git"),
            "main",
        ],
    );
    assert!(
        stderr(&out).contains(" ! Invalid path.\n"),
        "{}",
        stderr(&out)
    );
    assert!(
        tree(dir).iter().all(|p| !p.contains("evil")),
        "{:?}",
        tree(dir)
    );
}

per_runtime!(a_missing_repository_is_no_such_app);
fn a_missing_repository_is_no_such_app(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key) = server_with_key(runtime, dir);
    let git = Git::new(&dir.join("home")).ssh(&server.ssh().key(&key));
    push_repo(&server, &git, dir, "exists");

    // Straight from ssh: the exact text, exit 1.
    for command in [
        "git-upload-pack 'nothere.git'",
        "git upload-pack '/nothere'",
        "git-upload-archive 'nothere.git'",
    ] {
        let out = server
            .ssh()
            .key(&key)
            .option("LogLevel=ERROR")
            .run(&[command]);
        let err = stderr(&out);
        let id = session_id(&err).unwrap_or_else(|| panic!("{command}: {err:?}"));
        assert_eq!(err, no_such_app("nothere", &id), "{command}");
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(out.stdout.is_empty(), "{command}");
    }

    // Through git: clone, ls-remote, fetch and archive all fail with it.
    let url = server.ssh().url("nothere");
    let clone = dir.join("clone");
    let cases: [Vec<&str>; 3] = [
        vec!["clone", &url, clone.to_str().unwrap()],
        vec!["ls-remote", &url],
        vec!["archive", "--remote", &url, "HEAD"],
    ];
    for args in &cases {
        let out = git.fails(dir, args);
        let err = stderr(&out);
        let id = session_id(&err).unwrap_or_else(|| panic!("{args:?}: {err}"));
        assert!(
            err.contains(&no_such_app("nothere", &id)),
            "{args:?}:\n{err}"
        );
    }
    assert!(!clone.exists());
    assert!(
        !server.data_dir.join("repos/nothere.git").exists(),
        "reading must not create a repository"
    );
    // The repository that exists still clones.
    git.ok(
        dir,
        &[
            "clone",
            "-q",
            &server.ssh().url("exists"),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("f")).unwrap(),
        "content\n"
    );
}

per_runtime!(client_environment_never_reaches_git_except_a_valid_git_protocol);
fn client_environment_never_reaches_git_except_a_valid_git_protocol(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key) = server_with_key(runtime, dir);
    let git = Git::new(&dir.join("home")).ssh(&server.ssh().key(&key));
    push_repo(&server, &git, dir, "envrepo");
    let trace = dir.join("trace-written-by-server-git");
    let upload = "git-upload-pack 'envrepo.git'";

    // Each of these, forwarded to git, would show: the loader's
    // complaint, a trace file, main hidden from the advertisement.
    let hostile = format!(
        "SetEnv=LD_PRELOAD=/nonexistent/evil.so GIT_TRACE={} GIT_CONFIG_COUNT=1 \
         GIT_CONFIG_KEY_0=uploadpack.hiderefs GIT_CONFIG_VALUE_0=refs/heads \
         GIT_DIR=/nonexistent PATH=/nonexistent",
        trace.display()
    );
    let out = server
        .ssh()
        .key(&key)
        .arg("-v")
        .option(&hostile)
        .run(&[upload]);
    let err = stderr(&out);
    let advert = stdout(&out);
    for name in [
        "LD_PRELOAD",
        "GIT_TRACE",
        "GIT_CONFIG_KEY_0",
        "GIT_DIR",
        "PATH",
    ] {
        assert!(
            err.contains(&format!("setting env {name} = ")),
            "ssh did not send {name}:\n{err}"
        );
    }
    assert!(
        advert.contains(" refs/heads/main\n"),
        "the command must run without the refused variables:\n{advert}\n{err}"
    );
    assert!(
        !advert.contains("version 2"),
        "no GIT_PROTOCOL was sent: v0 expected"
    );
    assert!(
        !err.contains("ERROR: ld.so") && !err.contains("cannot be preloaded"),
        "LD_PRELOAD reached the server's git:\n{err}"
    );
    assert!(!trace.exists(), "GIT_TRACE reached the server's git");

    // A valid GIT_PROTOCOL switches upload-pack to protocol v2.
    let out = server
        .ssh()
        .key(&key)
        .option("LogLevel=ERROR")
        .option("SetEnv=GIT_PROTOCOL=version=2")
        .run(&[upload]);
    assert!(
        stdout(&out).starts_with("000eversion 2\n"),
        "{:?}",
        stdout(&out)
    );

    // An invalid one is refused: upload-pack speaks v0.
    for value in ["version=2:evil", "version=", "x=1", "version=2 version=1"] {
        let out = server
            .ssh()
            .key(&key)
            .arg("-v")
            .option(&format!("SetEnv=GIT_PROTOCOL=\"{value}\""))
            .run(&[upload]);
        let advert = stdout(&out);
        assert!(
            stderr(&out).contains(&format!("setting env GIT_PROTOCOL = \"{value}\"")),
            "{}",
            stderr(&out)
        );
        assert!(
            !advert.contains("version 2") && advert.contains(" refs/heads/main\n"),
            "GIT_PROTOCOL={value}: {advert:?}"
        );
    }
}

per_runtime!(forwarding_subsystems_and_repeated_bad_keys_are_refused);
fn forwarding_subsystems_and_repeated_bad_keys_are_refused(runtime: Runtime) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (server, key) = server_with_key(runtime, dir);

    // A subsystem (sftp, what modern scp uses).
    let out = server.ssh().key(&key).arg("-s").run(&["sftp"]);
    let err = stderr(&out);
    assert!(err.contains("subsystem request failed"), "{err}");
    assert!(!out.status.success());

    // Remote forwarding (a global tcpip-forward request).
    let out = server
        .ssh()
        .key(&key)
        .arg("-N")
        .option("ExitOnForwardFailure=yes")
        .arg("-R")
        .arg("0:127.0.0.1:9")
        .run(&[]);
    let err = stderr(&out);
    assert!(err.contains("remote port forwarding failed"), "{err}");
    assert!(!out.status.success());

    // Local forwarding: the direct-tcpip channel is refused when a
    // connection comes in, and the SSH connection itself goes on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = server
        .ssh()
        .key(&key)
        .arg("-N")
        .option("ExitOnForwardFailure=yes")
        .arg("-L")
        .arg(&format!("{port}:127.0.0.1:{}", server.addr.port()))
        .command(&[]);
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut ssh = cmd.spawn().unwrap();
    let mut stream = None;
    let connected = wait_until(Duration::from_secs(10), || {
        stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok();
        stream.is_some()
    });
    assert!(connected, "ssh -L never listened");
    let mut stream = stream.unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    // Closed without a byte of the server's SSH banner coming through.
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(start.elapsed() < Duration::from_secs(9));
    // The connection outlived the refusal: a second forwarded connection
    // reaches the server over the same SSH connection and gets its own
    // answer (the server serves the channel opens in order, so it
    // answered the second after the first).
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port))
        .expect("a refused channel must not end the connection: ssh -L stopped listening");
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = second.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    let _ = ssh.kill();
    let out = ssh.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("open failed: administratively prohibited"),
        "{err}"
    );
    assert_eq!(
        err.matches("open failed: administratively prohibited")
            .count(),
        2,
        "a refused channel must not end the connection: {err}"
    );

    // Too many unknown keys: the server ends the connection.
    let mut many = server.ssh().arg("-T");
    for i in 0..8 {
        many = many.key(&keygen(dir, "ed25519", &format!("bad{i}"), "bad"));
    }
    let out = many.key(&key).run(&[]);
    let err = stderr(&out);
    assert!(
        err.contains("Too many authentication failures")
            || err.contains("too many authentication failures"),
        "{err}"
    );
    assert!(!err.contains("successfully authenticated"), "{err}");
    assert_eq!(out.status.code(), Some(255));
}
