//! API mode end to end (`docs/openruko.md`): both server binaries
//! against emulators of the Openruko API server and dyno host
//! (`gitmouth_tests::openruko`), driven by the real `ssh` and `git`.
//!
//! Each test starts its own emulators, certificates, keys and server, for
//! each runtime; every client runs under a time limit, so a hang fails the
//! test instead of stalling the suite.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gitmouth_tests::openruko::{
    ApiEvent, ApiOptions, ApiRoute, ApiServer, DynoEvent, DynoFault, DynoHost, DynoOptions, Fault,
    OnClose, Pki, basic, md5_of_key,
};
use gitmouth_tests::{
    Runtime, Server, ServerOptions, keygen, per_runtime, run_with_timeout, stderr, stdout,
};

/// The platform's super-user key (`APISERVER_KEY`).
const KEY: &str = "b5a3c1d2-7e4f-4a6b-9c8d-0e1f2a3b4c5d";
const APP: &str = "myapp";
const USER_ID: &str = "42";
const USER_KEY: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

const BANNER: &str = "The platform is unavailable right now; your key was not checked";
const DENIED: &str = "Permission denied (publickey)";
/// After login the key is known to be good: the message says nothing of it.
const UNAVAILABLE: &str = " ! The platform is unavailable right now. Try again shortly.\n";
const NO_BUILD_SERVER: &str = "\n ! Unable to contact build server.\n";
const LOST: &str = " ! Lost connection to the build server.\n";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cert {
    /// Signed by the CA gitmouth is told to trust.
    Trusted,
    /// Signed by another CA.
    Rogue,
}

struct Setup {
    /// The API server's TLS (`None`: plain http).
    api_tls: Option<Cert>,
    dyno_cert: Cert,
    on_close: OnClose,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The original's `.env` holds the key; the environment names only
    /// where the emulators are.
    dotenv: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            api_tls: Some(Cert::Trusted),
            dyno_cert: Cert::Trusted,
            on_close: OnClose::Stops,
            args: Vec::new(),
            env: Vec::new(),
            dotenv: false,
        }
    }
}

/// Emulators, a user with an app, and a gitmouth in API mode in front.
struct Platform {
    dir: tempfile::TempDir,
    dynos: DynoHost,
    api: ApiServer,
    /// Private key of user 42, who owns `myapp`.
    user: PathBuf,
    server: Server,
    /// How `server` was started: another instance in front of the same
    /// platform starts the same way ([`Platform::another`]).
    options: ServerOptions,
}

/// An RSA host key in PEM PKCS#1, as the original's `ssh-keygen -t rsa`
/// made it (generated once per test process).
fn host_key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        pem
    })
}

impl Platform {
    fn start(runtime: Runtime, setup: Setup) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let trusted = Pki::new(dir.path(), "platform");
        let rogue = Pki::new(dir.path(), "rogue");
        let pick = |c: Cert| match c {
            Cert::Trusted => trusted.server_config(),
            Cert::Rogue => rogue.server_config(),
        };
        let dynos = DynoHost::start(DynoOptions {
            key: KEY.into(),
            tls: pick(setup.dyno_cert),
            on_close: setup.on_close,
        });
        let mut options = ApiOptions::new(KEY);
        options.tls = setup.api_tls.map(pick);
        let api = ApiServer::start(options, Some(&dynos));
        let user = keygen(dir.path(), "ed25519", "user", "alice@example.com");
        api.add_user(&user, USER_ID, USER_KEY);
        api.add_app(APP, USER_ID);

        let cwd = dir.path().join("cwd");
        std::fs::create_dir_all(cwd.join("certs")).unwrap();
        std::fs::write(cwd.join("certs/server.key"), host_key_pem()).unwrap();
        // Owner only, as sshd (and gitmouth) require of a private key.
        std::fs::set_permissions(
            cwd.join("certs/server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("APISERVER_PORT".into(), api.addr().port().to_string()),
            (
                "DYNOHOST_RENDEZVOUS_PORT".into(),
                dynos.addr().port().to_string(),
            ),
            (
                "APISERVER_CA_FILE".into(),
                trusted.ca_file.display().to_string(),
            ),
            (
                "DYNOHOST_CA_FILE".into(),
                trusted.ca_file.display().to_string(),
            ),
        ];
        if setup.dotenv {
            std::fs::write(
                cwd.join(".env"),
                format!("APISERVER_KEY={KEY}\nPYTHONUNBUFFERED=true\n"),
            )
            .unwrap();
        } else {
            let protocol = if setup.api_tls.is_some() {
                "https"
            } else {
                "http"
            };
            env.extend([
                ("APISERVER_KEY".into(), KEY.into()),
                ("APISERVER_PROTOCOL".into(), protocol.into()),
                ("APISERVER_HOSTNAME".into(), "localhost".into()),
            ]);
        }
        env.extend(setup.env);
        let options = ServerOptions {
            args: setup.args,
            env,
            cwd: Some(cwd),
            ..ServerOptions::default()
        };
        let server = Server::start_with(runtime, options.clone());
        Platform {
            dir,
            dynos,
            api,
            user,
            server,
            options,
        }
    }

    /// Another instance in front of the same platform, started as the
    /// first was, with `args` after its own.
    fn another(&self, runtime: Runtime, args: &[&str]) -> Server {
        Server::start_with(runtime, self.options.clone().args(args))
    }

    /// `ssh git@server <command>` with `key`, under a time limit.
    fn exec(&self, key: &Path, command: &str) -> Output {
        run_with_timeout(self.server.ssh().key(key).command(&[command]), CLIENT_LIMIT)
    }

    /// `git <args>` in `cwd`, reaching the server with `key`.
    fn git(&self, key: &Path, cwd: &Path, args: &[&str]) -> Output {
        let ssh = self.server.ssh().key(key).git_ssh_command();
        run_with_timeout(git_command(cwd, Some(&ssh), args), CLIENT_LIMIT)
    }

    fn url(&self) -> String {
        self.server.ssh().url(APP)
    }

    /// Waits until the server has logged the end of `n` connections.
    fn wait_closed(&self, n: usize) {
        let done = wait_until(Duration::from_secs(15), || {
            self.server.log().matches("connection closing").count() >= n
        });
        assert!(
            done,
            "{}: fewer than {n} connections closed:\n{}",
            self.server.runtime.bin(),
            self.server.log()
        );
    }

    /// Every dyno connection the dyno host accepted has ended.
    fn assert_dyno_connections_closed(&self) {
        let done = self.dynos.wait(Duration::from_secs(15), |events| {
            let accepted = events
                .iter()
                .filter(|e| matches!(e, DynoEvent::Accepted))
                .count();
            let closed = events
                .iter()
                .filter(|e| matches!(e, DynoEvent::Closed { .. } | DynoEvent::TlsFailed(_)))
                .count();
            closed >= accepted
        });
        assert!(
            done,
            "dyno connections left open: {:?}",
            self.dynos.events()
        );
    }

    fn routes(&self) -> Vec<(String, String, Option<String>)> {
        self.api
            .requests()
            .into_iter()
            .map(|r| (r.method, r.target, r.authorization))
            .collect()
    }
}

fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}

/// `git` with no user or system configuration.
fn git_command(cwd: &Path, ssh: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd)
        .args(args)
        .env("HOME", cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null());
    if let Some(ssh) = ssh {
        cmd.env("GIT_SSH_COMMAND", ssh);
    }
    cmd
}

fn git_ok(cwd: &Path, args: &[&str]) -> String {
    let out = run_with_timeout(git_command(cwd, None, args), CLIENT_LIMIT);
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A repository with two commits on `main` and an annotated tag.
fn make_repo(parent: &Path) -> PathBuf {
    let src = parent.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git_ok(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("README"), "hello from the platform\n").unwrap();
    git_ok(&src, &["add", "README"]);
    git_ok(&src, &["commit", "-q", "-m", "first"]);
    std::fs::create_dir_all(src.join("lib")).unwrap();
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("lib/data.txt"), big).unwrap();
    git_ok(&src, &["add", "lib"]);
    git_ok(&src, &["commit", "-q", "-m", "second"]);
    git_ok(&src, &["tag", "-a", "v1", "-m", "version 1"]);
    src
}

/// The message ends with ` ! (session <8 hex>)`.
fn assert_session_line(err: &str) {
    let found = err.match_indices(" ! (session ").any(|(i, m)| {
        let rest = &err[i + m.len()..];
        rest.len() > 8
            && rest[..8].bytes().all(|b| b.is_ascii_hexdigit())
            && rest[8..].starts_with(")\n")
    });
    assert!(found, "no session line in {err:?}");
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn has_provisioning(p: &Platform) -> bool {
    p.api
        .requests()
        .iter()
        .any(|r| r.target.contains("/gitaction"))
}

fn lookup_target(key: &Path) -> String {
    format!(
        "/internal/lookupUserByPublicKey?fingerprint={}",
        md5_of_key(key)
    )
}

per_runtime!(push_clone_and_archive_go_through_lookup_access_provisioning_and_the_dyno);
fn push_clone_and_archive_go_through_lookup_access_provisioning_and_the_dyno(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    let src = make_repo(p.dir.path());
    let url = p.url();

    let out = p.git(&p.user, &src, &["push", "-q", &url, "main", "v1"]);
    assert!(out.status.success(), "push: {}", stderr(&out));
    let fp = lookup_target(&p.user);
    assert_eq!(md5_of_key(&p.user).len(), 32);
    let expect = |verb: &str| {
        vec![
            ("GET".to_owned(), fp.clone(), Some(basic(KEY))),
            (
                "GET".to_owned(),
                format!("/apps/{APP}"),
                Some(basic(USER_KEY)),
            ),
            (
                "POST".to_owned(),
                format!("/internal/{APP}/gitaction?command={verb}"),
                Some(basic(KEY)),
            ),
        ]
    };
    assert_eq!(p.routes(), expect("git-receive-pack"));
    // The Basic header is exactly base64(":" + key).
    assert_eq!(basic("abc"), "Basic OmFiYw==");

    let dst = p.dir.path().join("clone");
    let dst_s = dst.to_str().unwrap();
    let out = p.git(&p.user, p.dir.path(), &["clone", "-q", &url, dst_s]);
    assert!(out.status.success(), "clone: {}", stderr(&out));
    assert_eq!(p.routes()[3..], expect("git-upload-pack")[..]);
    let refs = |dir: &Path| git_ok(dir, &["show-ref", "--tags", "--heads"]);
    assert_eq!(refs(&dst).replace("refs/remotes/origin", ""), refs(&src));
    for file in ["README", "lib/data.txt"] {
        assert_eq!(
            std::fs::read(src.join(file)).unwrap(),
            std::fs::read(dst.join(file)).unwrap()
        );
    }
    git_ok(&dst, &["fsck", "--strict", "--no-progress"]);
    let bare = p.dynos.repo(APP);
    git_ok(&bare, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(
        git_ok(&bare, &["rev-parse", "main", "v1"]),
        git_ok(&src, &["rev-parse", "main", "v1"])
    );

    let tar = p.dir.path().join("archive.tar");
    let out = p.git(
        &p.user,
        p.dir.path(),
        &[
            "archive",
            &format!("--remote={url}"),
            "--format=tar",
            "-o",
            tar.to_str().unwrap(),
            "main",
        ],
    );
    assert!(out.status.success(), "archive: {}", stderr(&out));
    let list = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert!(stdout(&list).contains("lib/data.txt"), "{list:?}");
    assert_eq!(p.routes()[6..], expect("git-upload-archive")[..]);

    // The dyno host got exactly `KEY\ndyno_id\n` from each, and ran the
    // command provisioned for it.
    let provisioned = p.api.provisioned();
    assert_eq!(provisioned.len(), 3);
    p.assert_dyno_connections_closed();
    let events = p.dynos.events();
    let headers: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DynoEvent::Header(h) => Some(h.clone()),
            _ => None,
        })
        .collect();
    let wanted: Vec<_> = provisioned
        .iter()
        .map(|d| format!("{KEY}\n{}\n", d.dyno_id).into_bytes())
        .collect();
    assert_eq!(headers, wanted);
    for d in &provisioned {
        assert!(events.contains(&DynoEvent::Started {
            dyno_id: d.dyno_id.clone(),
            app: APP.into(),
            command: d.command.clone(),
        }));
        assert!(events.contains(&DynoEvent::Exited {
            dyno_id: d.dyno_id.clone(),
            success: true,
            discarded: false,
        }));
        assert!(events.contains(&DynoEvent::Closed {
            dyno_id: Some(d.dyno_id.clone()),
            close_notify: true,
        }));
    }
    p.wait_closed(3);
    let log = p.server.log();
    assert!(
        !log.contains(KEY) && !log.contains(USER_KEY),
        "a key leaked into the log"
    );
}

per_runtime!(a_user_without_access_is_refused_before_provisioning);
fn a_user_without_access_is_refused_before_provisioning(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    let bob = keygen(p.dir.path(), "ed25519", "bob", "bob@example.com");
    p.api.add_user(&bob, "43", "bob-api-key");
    p.api.add_app("otherapp", "43");
    for app in [APP, "ghost"] {
        let out = p.exec(&bob, &format!("git-receive-pack '{app}.git'"));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                " ! No such app as {app}, or you do not have access to it.\n"
            )),
            "{err}"
        );
        assert_session_line(&err);
        assert_eq!(code(&out), Some(1), "{err}");
    }
    let routes = p.routes();
    assert_eq!(routes.len(), 4, "{routes:?}");
    assert_eq!(routes[1].1, format!("/apps/{APP}"));
    assert_eq!(routes[1].2, Some(basic("bob-api-key")));
    assert_eq!(routes[3].1, "/apps/ghost");
    assert!(!has_provisioning(&p));
    assert!(p.dynos.events().is_empty());

    // As a collaborator, the same user gets in.
    p.api.add_collaborator(APP, "43");
    let out = p.git(&bob, p.dir.path(), &["ls-remote", &p.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has_provisioning(&p));
    p.wait_closed(3);
    p.assert_dyno_connections_closed();
}

per_runtime!(an_unknown_key_is_denied_without_the_outage_banner);
fn an_unknown_key_is_denied_without_the_outage_banner(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    let stranger = keygen(p.dir.path(), "ed25519", "stranger", "who@example.com");
    let out = p.exec(&stranger, &format!("git-upload-pack '{APP}.git'"));
    let err = stderr(&out);
    assert!(err.contains(DENIED), "{err}");
    assert!(!err.contains(BANNER), "{err}");
    assert!(!out.status.success());
    let routes = p.routes();
    assert_eq!(
        routes,
        vec![("GET".into(), lookup_target(&stranger), Some(basic(KEY)))]
    );
    p.wait_closed(1);
    assert!(p.server.logged("unknown key"));
}

per_runtime!(the_api_server_down_shows_the_banner_and_recovers);
fn the_api_server_down_shows_the_banner_and_recovers(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    p.api.stop_listening();
    let started = Instant::now();
    let out = p.exec(&p.user, &format!("git-upload-pack '{APP}.git'"));
    let err = stderr(&out);
    assert!(err.contains(BANNER), "the outage must be told: {err}");
    assert!(err.contains(DENIED), "{err}");
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(p.api.requests().is_empty());
    p.wait_closed(1);
    assert!(
        p.server
            .log()
            .contains("the platform did not answer the key lookup"),
        "{}",
        p.server.log()
    );

    p.api.resume_listening();
    let out = p.git(&p.user, p.dir.path(), &["ls-remote", &p.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
    p.wait_closed(2);
}

per_runtime!(slow_platform_calls_time_out_with_their_messages);
fn slow_platform_calls_time_out_with_their_messages(runtime: Runtime) {
    let p = Platform::start(
        runtime,
        Setup {
            args: vec![
                "--api-timeout".into(),
                "2".into(),
                "--provision-timeout".into(),
                "3".into(),
            ],
            ..Setup::default()
        },
    );
    let command = format!("git-upload-pack '{APP}.git'");

    // The key lookup hangs: the banner after the limit.
    p.api.set_fault(ApiRoute::Lookup, Some(Fault::Hang));
    let started = Instant::now();
    let out = p.exec(&p.user, &command);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(err.contains(BANNER) && err.contains(DENIED), "{err}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let fp = lookup_target(&p.user);
    let gave_up = p.api.wait(Duration::from_secs(5), |e| {
        e.contains(&ApiEvent::Abandoned { target: fp.clone() })
    });
    assert!(
        gave_up,
        "the lookup was not abandoned: {:?}",
        p.api.events()
    );
    p.api.set_fault(ApiRoute::Lookup, None);

    // The access check hangs.
    p.api.set_fault(ApiRoute::Access, Some(Fault::Hang));
    let started = Instant::now();
    let out = p.exec(&p.user, &command);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(err.contains(UNAVAILABLE), "{err}");
    assert_session_line(&err);
    assert_eq!(code(&out), Some(1));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(!has_provisioning(&p));
    p.api.set_fault(ApiRoute::Access, None);

    // Provisioning is slower than its limit: no build server, and the
    // dyno the platform set up is never contacted.
    p.api.set_fault(
        ApiRoute::Provision,
        Some(Fault::Delay(Duration::from_secs(10))),
    );
    let started = Instant::now();
    let out = p.exec(&p.user, &command);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(err.contains(NO_BUILD_SERVER), "{err}");
    assert_session_line(&err);
    assert_eq!(code(&out), Some(127));
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(9),
        "{took:?}"
    );
    let target = format!("/internal/{APP}/gitaction?command=git-upload-pack");
    let gave_up = p.api.wait(Duration::from_secs(5), |e| {
        e.contains(&ApiEvent::Abandoned {
            target: target.clone(),
        })
    });
    assert!(gave_up, "provisioning not abandoned: {:?}", p.api.events());
    assert_eq!(p.api.provisioned().len(), 1);
    p.wait_closed(3);
    assert!(p.dynos.events().is_empty(), "{:?}", p.dynos.events());
}

per_runtime!(each_platform_failure_gives_its_message_and_a_failure_status);
fn each_platform_failure_gives_its_message_and_a_failure_status(runtime: Runtime) {
    // Each fault, and what the operator's log says of it.
    let server_error = || {
        Fault::Status(
            500,
            r#"{"error": "Server Error. Check status page."}"#.into(),
        )
    };
    let lookup_faults = [
        (server_error(), "key lookup: status 500"),
        (
            Fault::Status(429, "slow down".into()),
            "key lookup: status 429",
        ),
        (Fault::Status(503, "".into()), "key lookup: status 503"),
        (
            Fault::Status(200, "<html>not a user</html>".into()),
            "key lookup: malformed body",
        ),
        (Fault::Status(200, "".into()), "key lookup: malformed body"),
        (Fault::Redirect, "key lookup: status 302"),
        (Fault::Garbage, "key lookup failed"),
        (Fault::Truncated, "key lookup failed"),
        (Fault::Oversize, "key lookup failed: reply body too large"),
        (Fault::Close, "key lookup failed"),
    ];
    let access_faults = [
        (server_error(), "access check: status 500"),
        (Fault::Status(429, "".into()), "access check: status 429"),
        (
            Fault::Status(200, "[1, 2, 3]".into()),
            "access check: body is not a JSON object",
        ),
        (
            Fault::Status(200, "garbage".into()),
            "access check: body is not a JSON object",
        ),
        (Fault::Redirect, "access check: status 302"),
        (Fault::Garbage, "access check failed"),
        (Fault::Truncated, "access check failed"),
        (Fault::Oversize, "access check failed: reply body too large"),
        (Fault::Close, "access check failed"),
    ];
    let provision_faults = [
        (
            server_error(),
            // The body, escaped for the log.
            r#"provisioning: status 500: {\"error\": \"Server Error. Check status page.\"}"#,
        ),
        (
            Fault::Status(404, r#"{"error": "App not found"}"#.into()),
            "provisioning: status 404",
        ),
        (
            Fault::Status(200, "{}".into()),
            "provisioning: malformed body",
        ),
        (
            Fault::Status(200, "garbage".into()),
            "provisioning: malformed body",
        ),
        (
            Fault::Status(
                200,
                r#"{"host": "evil host;rm", "dyno_id": "d", "rez_id": "r"}"#.into(),
            ),
            "provisioning: malformed host or dyno id",
        ),
        (Fault::Redirect, "provisioning: status 302"),
        (Fault::Garbage, "provisioning failed"),
        (Fault::Truncated, "provisioning failed"),
        (Fault::Oversize, "provisioning failed: reply body too large"),
        (Fault::Close, "provisioning failed"),
    ];
    let p = Platform::start(runtime, Setup::default());
    let command = format!("git-upload-pack '{APP}.git'");
    let mut sessions = 0;
    let mut requests = 0;
    let mut run = |what: &str, expect: &str, status: Option<i32>, reason: &str| {
        let before = p.server.log().len();
        let out = p.exec(&p.user, &command);
        sessions += 1;
        let err = stderr(&out);
        assert!(err.contains(expect), "{what}: {err}");
        assert!(!out.status.success(), "{what}");
        if let Some(status) = status {
            assert_eq!(code(&out), Some(status), "{what}: {err}");
            assert_session_line(&err);
        }
        // The platform was asked (the failure is not a local one).
        assert!(p.api.requests().len() > requests, "{what}");
        requests = p.api.requests().len();
        p.wait_closed(sessions);
        let log = p.server.log();
        assert!(
            log[before..].contains(reason),
            "{what}: {reason:?} not in\n{}",
            &log[before..]
        );
    };
    for (fault, reason) in &lookup_faults {
        p.api.set_fault(ApiRoute::Lookup, Some(fault.clone()));
        run(&format!("lookup {fault:?}"), BANNER, None, reason);
    }
    p.api.set_fault(ApiRoute::Lookup, None);
    // The API server refuses our own key: the operator hears of it.
    p.api.set_key("not-our-key");
    run(
        "our key refused",
        BANNER,
        None,
        "the API server refused APISERVER_KEY (401)",
    );
    p.api.set_key(KEY);

    for (fault, reason) in &access_faults {
        p.api.set_fault(ApiRoute::Access, Some(fault.clone()));
        run(&format!("access {fault:?}"), UNAVAILABLE, Some(1), reason);
    }
    p.api.set_fault(ApiRoute::Access, None);
    assert!(!has_provisioning(&p));

    for (fault, reason) in &provision_faults {
        p.api.set_fault(ApiRoute::Provision, Some(fault.clone()));
        run(
            &format!("provisioning {fault:?}"),
            NO_BUILD_SERVER,
            Some(127),
            reason,
        );
    }
    assert!(p.dynos.events().is_empty(), "{:?}", p.dynos.events());
    let log = p.server.log();
    assert!(log.contains("provisioning failed"), "{log}");
    assert!(
        !log.contains(KEY) && !log.contains(USER_KEY),
        "a key leaked"
    );
}

per_runtime!(dyno_host_failures_never_end_in_success);
fn dyno_host_failures_never_end_in_success(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    let command = format!("git-upload-pack '{APP}.git'");

    // Provisioning gives a dyno the dyno host does not know.
    p.api.set_register_dynos(false);
    let out = p.exec(&p.user, &command);
    let err = stderr(&out);
    assert!(err.contains("Dyno does not exist."), "{err}");
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(stdout(&out).is_empty());
    let id = p.api.provisioned()[0].dyno_id.clone();
    p.assert_dyno_connections_closed();
    assert!(p.dynos.events().contains(&DynoEvent::UnknownDyno(id)));
    p.api.set_register_dynos(true);
    p.wait_closed(1);

    // The dyno host reports an error in-band.
    p.dynos.set_fault(Some(DynoFault::ErrorStream));
    let out = p.exec(&p.user, &command);
    let err = stderr(&out);
    assert!(
        err.contains("\n ! Problem provisioning build server\n\n"),
        "{err:?}"
    );
    assert!(!err.contains("E:"), "{err:?}");
    assert!(stdout(&out).is_empty());
    assert_eq!(code(&out), Some(1), "{err}");
    p.dynos.set_fault(None);
    p.assert_dyno_connections_closed();
    p.wait_closed(2);

    // The dyno host refuses connections.
    p.dynos.stop_listening();
    let out = p.exec(&p.user, &command);
    let err = stderr(&out);
    assert!(err.contains(NO_BUILD_SERVER), "{err}");
    assert_session_line(&err);
    assert_eq!(code(&out), Some(127), "{err}");
    p.wait_closed(3);
    assert!(p.server.logged("cannot reach the dyno"));
}

per_runtime!(a_dyno_dropping_mid_push_is_a_lost_build_server);
fn a_dyno_dropping_mid_push_is_a_lost_build_server(runtime: Runtime) {
    let p = Platform::start(runtime, Setup::default());
    // After the ref advertisement and the first bytes of the push.
    p.dynos.set_fault(Some(DynoFault::DropAfter {
        output: 1,
        input: 1,
    }));
    let src = make_repo(p.dir.path());
    let out = p.git(&p.user, &src, &["push", &p.url(), "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(LOST), "{err}");
    assert_session_line(&err);
    p.assert_dyno_connections_closed();
    let id = p.api.provisioned()[0].dyno_id.clone();
    assert!(
        p.dynos
            .events()
            .contains(&DynoEvent::Dropped { dyno_id: id })
    );
    // Nothing was pushed.
    let bare = p.dynos.repo(APP);
    assert_eq!(git_ok(&bare, &["for-each-ref"]), "");
    p.wait_closed(1);
    let log = p.server.log();
    assert!(log.contains("end=lost"), "{log}");
}

/// Starts `ssh ... <command>` and kills it once `asked` holds of the API
/// server's events; returns when it was asked.
fn hang_up_when(p: &Platform, command: &str, asked: impl Fn(&[ApiEvent]) -> bool) -> Instant {
    let mut cmd = p.server.ssh().key(&p.user).command(&[command]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    let seen = p.api.wait(Duration::from_secs(20), asked);
    let at = Instant::now();
    let _ = client.kill();
    client.wait().unwrap();
    assert!(seen, "the request never came: {:?}", p.api.events());
    at
}

per_runtime!(a_client_hanging_up_during_the_key_lookup_is_noticed_at_once);
fn a_client_hanging_up_during_the_key_lookup_is_noticed_at_once(runtime: Runtime) {
    // The lookup would hang until --api-timeout (10 s by default).
    let p = Platform::start(runtime, Setup::default());
    p.api.set_fault(ApiRoute::Lookup, Some(Fault::Hang));
    let lookup = lookup_target(&p.user);
    hang_up_when(&p, &format!("git-receive-pack '{APP}.git'"), |e| {
        e.iter()
            .any(|e| matches!(e, ApiEvent::Request(r) if r.target == lookup))
    });
    let noticed = wait_until(Duration::from_secs(3), || {
        p.server.log().contains("connection closing")
    });
    let lookup_closed = p.api.wait(Duration::from_secs(3), |e| {
        e.contains(&ApiEvent::Abandoned {
            target: lookup.clone(),
        })
    });
    assert!(
        noticed && lookup_closed,
        "{}: the client left during the key lookup; within 3 s the session closed: \
         {noticed}, the lookup was closed: {lookup_closed}\n{}",
        runtime.bin(),
        p.server.log()
    );
}

per_runtime!(a_client_hanging_up_during_provisioning_leaves_no_dyno_behind);
fn a_client_hanging_up_during_provisioning_leaves_no_dyno_behind(runtime: Runtime) {
    let mut p = Platform::start(runtime, Setup::default());
    // The platform answers after a while, as when it waits for a dyno
    // host to take the job.
    let delay = Duration::from_secs(4);
    p.api
        .set_fault(ApiRoute::Provision, Some(Fault::Delay(delay)));
    hang_up_when(&p, &format!("git-receive-pack '{APP}.git'"), |e| {
        e.iter().any(|e| matches!(e, ApiEvent::Provisioned(_)))
    });
    p.wait_closed(1);
    assert!(p.server.logged("abandoning the platform request"));
    let target = format!("/internal/{APP}/gitaction?command=git-receive-pack");
    let provision_closed = p.api.wait(Duration::from_secs(3), |e| {
        e.contains(&ApiEvent::Abandoned {
            target: target.clone(),
        })
    });
    // No dyno was ever met: checked once the server has exited, after
    // which it can meet none. (With the request abandoned, the platform's
    // answer, the only way to learn of a dyno, is never sent.)
    let exited = p.server.terminate(Duration::from_secs(20));
    assert!(exited.is_some(), "the server did not stop on SIGTERM");
    assert!(p.dynos.events().is_empty(), "{:?}", p.dynos.events());
    assert!(
        !p.api
            .events()
            .iter()
            .any(|e| matches!(e, ApiEvent::Answered { target: t, .. } if *t == target)),
        "{:?}",
        p.api.events()
    );
    // And the request was closed within seconds of the hang-up, not held open
    // until the platform answered (or --provision-timeout).
    assert!(
        provision_closed,
        "{}: the provisioning request stayed open after the client left: {:?}",
        runtime.bin(),
        p.api.events()
    );
}

per_runtime!(the_clients_eof_is_not_a_hang_up_for_the_dyno);
fn the_clients_eof_is_not_a_hang_up_for_the_dyno(runtime: Runtime) {
    // ssh with nothing on stdin sends EOF at once; the dyno host would
    // take a half-close for a hang-up (docs/openruko.md §4.6).
    let p = Platform::start(runtime, Setup::default());
    let upload_pack = format!("git-upload-pack '{APP}.git'");
    let mut cmd = p.server.ssh().key(&p.user).command(&[&upload_pack]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    let started = p.dynos.wait(Duration::from_secs(20), |e| {
        e.iter().any(|e| matches!(e, DynoEvent::Started { .. }))
    });
    assert!(started, "{:?}", p.dynos.events());
    let id = p.api.provisioned()[0].dyno_id.clone();
    // The advertisement came through: the relay runs, after the EOF.
    let mut out = client.stdout.take().unwrap();
    let mut advert = Vec::new();
    let mut buf = [0u8; 4096];
    while !advert.ends_with(b"0000") {
        match std::io::Read::read(&mut out, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => advert.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        advert.ends_with(b"0000"),
        "{:?}",
        String::from_utf8_lossy(&advert)
    );
    // Now the dyno's command ends by itself (we stop its git): the dyno
    // host's relay then ends and can see no more of the client. Had the
    // client's EOF reached it as a close, it would have recorded that
    // before, and killed the command.
    let bare = p.dynos.repo(APP);
    let gits: Vec<_> = gitmouth_tests::processes_using(&bare)
        .into_iter()
        .filter(|g| g.cmdline.contains("upload-pack"))
        .collect();
    assert_eq!(gits.len(), 1, "{gits:?}");
    gitmouth_tests::kill(gits[0].pid, "KILL");
    let exited = p.dynos.wait(Duration::from_secs(20), |e| {
        e.iter()
            .any(|e| matches!(e, DynoEvent::Exited { dyno_id, .. } if *dyno_id == id))
    });
    let events = p.dynos.events();
    assert!(exited, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DynoEvent::ClientClosed { .. })),
        "the dyno connection was closed on the client's EOF: {events:?}"
    );
    assert!(
        events.contains(&DynoEvent::Exited {
            dyno_id: id.clone(),
            success: false,
            discarded: false,
        }),
        "{events:?}"
    );
    // The command's end reaches the client, which exits by itself.
    let ended = gitmouth_tests::wait_until(Duration::from_secs(20), || {
        client.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = client.kill();
    }
    let _ = client.wait();
    assert!(ended, "the client did not learn that the command ended");
    p.assert_dyno_connections_closed();
    p.wait_closed(1);

    // The hang-up itself does reach a dyno.
    let mut cmd = p.server.ssh().key(&p.user).command(&[&upload_pack]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    let started = p.dynos.wait(Duration::from_secs(20), |e| {
        e.iter()
            .filter(|e| matches!(e, DynoEvent::Started { .. }))
            .count()
            == 2
    });
    let _ = client.kill();
    let _ = client.wait();
    assert!(started, "{:?}", p.dynos.events());
    let id = p.api.provisioned()[1].dyno_id.clone();
    let killed = p.dynos.wait(Duration::from_secs(5), |e| {
        e.contains(&DynoEvent::Killed {
            dyno_id: id.clone(),
        })
    });
    assert!(killed, "{:?}", p.dynos.events());
    p.assert_dyno_connections_closed();
    p.wait_closed(2);
}

per_runtime!(the_originals_dotenv_selects_api_mode);
fn the_originals_dotenv_selects_api_mode(runtime: Runtime) {
    let p = Platform::start(
        runtime,
        Setup {
            dotenv: true,
            ..Setup::default()
        },
    );
    let log = p.server.log();
    assert!(log.contains("API mode"), "{log}");
    assert!(log.contains("https://localhost:"), "{log}");
    let src = make_repo(p.dir.path());
    let out = p.git(&p.user, &src, &["push", "-q", &p.url(), "main"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes = p.routes();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0].2, Some(basic(KEY)));
    assert_eq!(routes[2].2, Some(basic(KEY)));
    p.wait_closed(1);
}

per_runtime!(tls_verification_can_be_turned_off_and_otherwise_refuses_strangers);
fn tls_verification_can_be_turned_off_and_otherwise_refuses_strangers(runtime: Runtime) {
    // Both peers present certificates of another CA; verification off.
    let p = Platform::start(
        runtime,
        Setup {
            api_tls: Some(Cert::Rogue),
            dyno_cert: Cert::Rogue,
            env: vec![
                ("APISERVER_TLS_VERIFY".into(), "false".into()),
                ("DYNOHOST_TLS_VERIFY".into(), "false".into()),
            ],
            ..Setup::default()
        },
    );
    let log = p.server.log();
    for var in ["APISERVER_TLS_VERIFY", "DYNOHOST_TLS_VERIFY"] {
        let warning = format!("{var}=false: certificates are not verified");
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(&warning)),
            "no warning for {var}:\n{log}"
        );
    }
    let src = make_repo(p.dir.path());
    let out = p.git(&p.user, &src, &["push", "-q", &p.url(), "main"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(p);

    // Verification on: a dyno host with a stranger's certificate is no
    // build server.
    let p = Platform::start(
        runtime,
        Setup {
            dyno_cert: Cert::Rogue,
            ..Setup::default()
        },
    );
    let out = p.exec(&p.user, &format!("git-upload-pack '{APP}.git'"));
    let err = stderr(&out);
    assert!(err.contains(NO_BUILD_SERVER), "{err}");
    assert_eq!(code(&out), Some(127), "{err}");
    p.assert_dyno_connections_closed();
    let events = p.dynos.events();
    assert!(
        events.iter().any(|e| matches!(e, DynoEvent::TlsFailed(_))),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, DynoEvent::Header(_))));
    p.wait_closed(1);
    drop(p);

    // An API server with a stranger's certificate is an outage.
    let p = Platform::start(
        runtime,
        Setup {
            api_tls: Some(Cert::Rogue),
            ..Setup::default()
        },
    );
    let out = p.exec(&p.user, &format!("git-upload-pack '{APP}.git'"));
    let err = stderr(&out);
    assert!(err.contains(BANNER) && err.contains(DENIED), "{err}");
    assert!(p.api.requests().is_empty());
    p.wait_closed(1);
}

/// Pushes with a post-receive hook that runs for a while on the dyno, and
/// hangs up in the middle of it; returns the platform and the hook's
/// marker files (started, done).
fn hang_up_mid_command(runtime: Runtime, on_close: OnClose) -> (Platform, PathBuf, PathBuf) {
    let p = Platform::start(
        runtime,
        Setup {
            on_close,
            ..Setup::default()
        },
    );
    let started = p.dir.path().join("hook-started");
    let done = p.dir.path().join("hook-done");
    let hook = p.dynos.repo(APP).join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho hook running\ntouch '{}'\nsleep 5\ntouch '{}'\necho hook done\n",
            started.display(),
            done.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let src = make_repo(p.dir.path());
    let ssh = p.server.ssh().key(&p.user).git_ssh_command();
    let mut cmd = git_command(&src, Some(&ssh), &["push", &p.url(), "main"]);
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = cmd.spawn().unwrap();
    let group = client.id();
    let running = wait_until(Duration::from_secs(30), || started.exists());
    // The client and its ssh go at once, as a user pressing ^C would.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status();
    let _ = client.wait();
    assert!(running, "the hook never started: {:?}", p.dynos.events());
    (p, started, done)
}

per_runtime!(a_dyno_host_that_stops_commands_on_close_gets_them_stopped);
fn a_dyno_host_that_stops_commands_on_close_gets_them_stopped(runtime: Runtime) {
    let (p, started, done) = hang_up_mid_command(runtime, OnClose::Stops);
    let at = std::fs::metadata(&started).unwrap().modified().unwrap();
    let id = p.api.provisioned()[0].dyno_id.clone();
    let killed = p.dynos.wait(Duration::from_secs(5), |e| {
        e.contains(&DynoEvent::Killed {
            dyno_id: id.clone(),
        })
    });
    assert!(killed, "{:?}", p.dynos.events());
    p.assert_dyno_connections_closed();
    // Well past the hook's end: it never finished.
    while at.elapsed().unwrap_or_default() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!done.exists(), "the command ran on after the hang-up");
    let events = p.dynos.events();
    assert!(events.contains(&DynoEvent::Exited {
        dyno_id: id.clone(),
        success: false,
        discarded: true,
    }));
    p.wait_closed(1);
    assert!(p.server.logged("closing the dyno connection"));
}

per_runtime!(a_dyno_host_like_the_original_finishes_commands_after_close);
fn a_dyno_host_like_the_original_finishes_commands_after_close(runtime: Runtime) {
    let (p, _started, done) = hang_up_mid_command(runtime, OnClose::Finishes);
    let id = p.api.provisioned()[0].dyno_id.clone();
    let closed = p.dynos.wait(Duration::from_secs(5), |e| {
        e.contains(&DynoEvent::ClientClosed {
            dyno_id: id.clone(),
        })
    });
    assert!(closed, "{:?}", p.dynos.events());
    assert!(
        wait_until(Duration::from_secs(15), || done.exists()),
        "the command did not finish"
    );
    let finished = p.dynos.wait(Duration::from_secs(10), |e| {
        e.contains(&DynoEvent::Exited {
            dyno_id: id.clone(),
            success: true,
            discarded: true,
        })
    });
    assert!(finished, "{:?}", p.dynos.events());
    assert!(
        !p.dynos
            .events()
            .contains(&DynoEvent::Killed { dyno_id: id })
    );
    p.assert_dyno_connections_closed();
    p.wait_closed(1);
    // The push itself landed (the hook runs after the ref update).
    let bare = p.dynos.repo(APP);
    assert!(!git_ok(&bare, &["for-each-ref"]).is_empty());
}

per_runtime!(sighup_in_api_mode_ends_nothing_and_max_commands_applies);
fn sighup_in_api_mode_ends_nothing_and_max_commands_applies(runtime: Runtime) {
    let p = Platform::start(
        runtime,
        Setup {
            args: vec!["--max-commands".into(), "1".into()],
            ..Setup::default()
        },
    );
    // The configuration is re-read (no keys here), and the signal's default action (ending
    // the process) must not happen either.
    gitmouth_tests::kill(p.server.pid(), "HUP");
    assert!(
        p.server
            .wait_for_log("SIGHUP: configuration reloaded", Duration::from_secs(10)),
        "{}",
        p.server.log()
    );
    let src = make_repo(p.dir.path());
    let out = p.git(&p.user, &src, &["push", "-q", &p.url(), "main"]);
    assert!(out.status.success(), "push after SIGHUP: {}", stderr(&out));
    // The limit counts dyno commands: one at a time passes, in turn.
    let dst = p.dir.path().join("clone");
    let out = p.git(
        &p.user,
        p.dir.path(),
        &["clone", "-q", &p.url(), dst.to_str().unwrap()],
    );
    assert!(out.status.success(), "clone: {}", stderr(&out));
}

/// Two API-mode instances sharing the push lock through PostgreSQL
/// (`--push-lock postgres`): a push through B while a push through A
/// runs on its dyno is refused, naming A; after it, B's push goes
/// through. A and B run on different runtimes.
#[test]
fn two_instances_share_the_push_lock_in_api_mode() {
    use gitmouth_tests::postgres::Cluster;
    let db = Cluster::start();
    let url = db.url();
    // A's name from the environment, which B's flag overrides.
    let p = Platform::start(
        Runtime::Smol,
        Setup {
            args: vec![
                "--push-lock".to_owned(),
                "postgres".to_owned(),
                "--database-url".to_owned(),
                url,
            ],
            env: vec![("GITMOUTH_INSTANCE_NAME".to_owned(), "A".to_owned())],
            ..Setup::default()
        },
    );
    let b = p.another(Runtime::AsyncStd, &["--instance-name", "B"]);
    let src = make_repo(p.dir.path());
    // The dyno's repository holds the next push until `go` exists.
    let marks = p.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    gitmouth_tests::hold_pushes(&p.dynos.repo(APP), &marks);
    let ssh_a = p.server.ssh().key(&p.user).git_ssh_command();
    let mut first = git_command(&src, Some(&ssh_a), &["push", &p.url(), "main"]);
    first.stdout(Stdio::piped()).stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || marks.join("started").exists()),
        "the push through A never reached the dyno's hook:\n{}",
        p.server.log()
    );
    let ssh_b = b.ssh().key(&p.user).git_ssh_command();
    let url_b = b.ssh().url(APP);
    let out = run_with_timeout(
        git_command(&src, Some(&ssh_b), &["push", &url_b, "main"]),
        CLIENT_LIMIT,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            " ! Another push to {APP} is in progress (started "
        )) && err.contains(" through A)."),
        "{err}"
    );
    std::fs::write(marks.join("go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "the push through A: {}", stderr(&out));
    git_ok(&src, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let out = run_with_timeout(
        git_command(&src, Some(&ssh_b), &["push", &url_b, "main"]),
        CLIENT_LIMIT,
    );
    assert!(
        out.status.success(),
        "the push through B after: {}",
        stderr(&out)
    );
}
