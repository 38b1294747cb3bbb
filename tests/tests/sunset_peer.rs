//! Interoperability with an independent SSH implementation: the `sunset`
//! crate as the client, for `mlkem768x25519-sha256`, which the machine's
//! OpenSSH (9.2) does not speak, and for curve25519.
//!
//! sunset 0.6 offers kex `mlkem768x25519-sha256`, `curve25519-sha256`,
//! `curve25519-sha256@libssh.org`; host key `ssh-ed25519`; ciphers
//! `chacha20-poly1305@openssh.com`, `aes256-ctr` with `hmac-sha2-256`
//! (no AES-GCM, no ETM MACs); its lists are fixed. Each method is chosen by
//! restricting what the server offers.
//!
//! In memory, the server `Session` runs against sunset with a stand-in for
//! git; over TCP, the real server binary runs real `git-upload-pack`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitmouth_core::server::{
    ExitStatus, Input, Output, ProcessSpec, RequestId, ServerConfig, Session, Stream,
};
use gitmouth_core::test_util::{ed25519, host_key, server_config};
use gitmouth_core::transport::TransportConfig;
use gitmouth_core::transport::cipher::{CipherAlg, MacAlg};
use gitmouth_core::transport::kex::KexAlg;
use gitmouth_tests::sunset_client::{Algorithms, Exit, SunsetClient, run_tcp};
use gitmouth_tests::{Runtime, Server, ServerOptions, per_runtime};

const CHAPOLY: &str = "chacha20-poly1305@openssh.com";
const UPLOAD_PACK: &str = "git-upload-pack 'app.git'";

/// A protocol-v0 advertisement as `git upload-pack` writes it: HEAD with
/// capabilities, one branch, flush.
fn advertisement() -> Vec<u8> {
    let oid = "5d1b6e0b7d8c4b3f2a1908e7d6c5b4a392817161";
    let mut out = Vec::new();
    for line in [
        format!(
            "{oid} HEAD\0multi_ack side-band-64k ofs-delta symref=HEAD:refs/heads/main agent=git/2.39\n"
        ),
        format!("{oid} refs/heads/main\n"),
    ] {
        out.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"0000");
    out
}

/// The first pkt-line of `data`: 4 hex digits of length, then the line.
fn first_pkt_line(data: &[u8]) -> Option<&[u8]> {
    let len = usize::from_str_radix(std::str::from_utf8(data.get(..4)?).ok()?, 16).ok()?;
    if len < 4 {
        return None;
    }
    data.get(4..len)
}

/// Whether `data` holds a whole advertisement (ends in a flush-pkt).
fn advertisement_complete(data: &[u8]) -> bool {
    let mut rest = data;
    while rest.len() >= 4 {
        let Some(len) = std::str::from_utf8(&rest[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        if len == 0 {
            return true;
        }
        if len < 4 || rest.len() < len {
            return false;
        }
        rest = &rest[len..];
    }
    false
}

/// The stand-in git process: writes `stdout` and `stderr`, then exits
/// with `status` once its stdin holds `exit_after` (immediately if empty).
#[derive(Debug, Default)]
struct FakeGit {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_after: Vec<u8>,
    status: Option<ExitStatus>,
    spawned: Option<(RequestId, ProcessSpec)>,
    stdin: Vec<u8>,
    stdin_closed: bool,
    exited: bool,
    answers: Vec<Input<'static>>,
    /// Who may log in: the users of the last `server_config` on this thread.
    keys: Option<gitmouth_core::app::authorized_keys::AuthorizedKeys>,
}

impl FakeGit {
    fn perform(&mut self, out: &Output) {
        match out {
            Output::OpenRepo { id, .. } => self.answers.push(Input::RepoOpened {
                id: *id,
                result: Ok(false),
            }),
            Output::Spawn { id, process } => {
                self.spawned = Some((*id, process.clone()));
                self.answers.push(Input::Spawned {
                    id: *id,
                    result: Ok(()),
                });
            }
            Output::RunHelper { id, .. } => self.answers.push(Input::HelperDone {
                id: *id,
                result: Ok(Vec::new()),
            }),
            // One command at a time here: every slot asked for is given.
            Output::AcquireSlot { id } => self.answers.push(Input::SlotReply {
                id: *id,
                granted: true,
            }),
            Output::CloseStdin { .. } => self.stdin_closed = true,
            Output::LookupKey { id, blob } => {
                let keys = self
                    .keys
                    .get_or_insert_with(gitmouth_core::test_util::registered_users);
                let user = keys.find_blob(blob).map(|e| e.user.clone());
                self.answers.push(Input::KeyLookedUp {
                    id: *id,
                    user,
                    access: None,
                });
            }
            // No pushes here: a clone takes no lock. API-mode outputs
            // never come from a standalone server.
            _ => {}
        }
    }

    /// Delivers answers and runs the process; returns whether anything moved.
    fn run(&mut self, server: &mut Session, now: Instant) -> bool {
        let mut moved = !self.answers.is_empty();
        for a in self.answers.drain(..) {
            server.handle_input(now, a);
        }
        let Some(id) = self.spawned.as_ref().map(|(id, _)| *id) else {
            return moved;
        };
        if self.exited {
            return moved;
        }
        let input = server.backend_stdin(id).to_vec();
        if !input.is_empty() {
            self.stdin.extend_from_slice(&input);
            server.consume_backend_stdin(now, id, input.len());
            moved = true;
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let queue = match stream {
                Stream::Stdout => &mut self.stdout,
                Stream::Stderr => &mut self.stderr,
            };
            let n = server.backend_read_limit(id).min(8192).min(queue.len());
            if n > 0 {
                let data: Vec<u8> = queue.drain(..n).collect();
                server.handle_input(
                    now,
                    Input::BackendData {
                        id,
                        stream,
                        data: &data,
                    },
                );
                moved = true;
            }
        }
        let asked = self.stdin.ends_with(&self.exit_after) || self.stdin_closed;
        if self.stdout.is_empty() && self.stderr.is_empty() && asked {
            self.exited = true;
            for stream in [Stream::Stdout, Stream::Stderr] {
                server.handle_input(now, Input::BackendEof { id, stream });
            }
            let status = self.status.clone().unwrap_or(ExitStatus::Code(0));
            server.handle_input(now, Input::BackendExited { id, status });
            moved = true;
        }
        moved
    }
}

/// sunset and a server `Session` joined in memory.
struct Memory {
    client: SunsetClient,
    server: Session,
    git: FakeGit,
    outputs: Vec<Output>,
    now: Instant,
    /// Client bytes the server did not want yet.
    c2s: Vec<u8>,
    /// Whether sunset was told the server closed the connection.
    closed: bool,
    /// Whether the server was told sunset closed the connection.
    peer_closed: bool,
}

impl Memory {
    fn new(config: ServerConfig, client: SunsetClient, git: FakeGit) -> Self {
        let now = Instant::now();
        Self {
            client,
            server: Session::new(Arc::new(config), [9; 32], now),
            git,
            outputs: Vec::new(),
            now,
            c2s: Vec::new(),
            closed: false,
            peer_closed: false,
        }
    }

    fn step(&mut self) -> bool {
        let mut moved = self.client.pump();
        self.c2s.extend(self.client.take_output());
        if !self.c2s.is_empty() && self.server.wants_read() {
            let bytes = std::mem::take(&mut self.c2s);
            self.server.handle_input(self.now, Input::Received(&bytes));
            moved = true;
        }
        let pending = self.server.transmit();
        if !pending.is_empty() {
            let n = pending.len();
            self.client.input(pending);
            self.server.consume_transmit(n);
            moved = true;
        }
        while let Some(out) = self.server.poll_output() {
            self.git.perform(&out);
            self.outputs.push(out);
            moved = true;
        }
        moved |= self.git.run(&mut self.server, self.now);
        let client_gone = self.client.error.is_some() || self.client.defunct;
        if client_gone && !self.server.is_finished() && !self.peer_closed {
            // sunset stopped: a runtime would see its socket close.
            self.peer_closed = true;
            self.server.handle_input(self.now, Input::PeerClosed);
            moved = true;
        }
        if self.server.is_finished() && self.server.transmit().is_empty() && !self.closed {
            // The runtime closes the socket; sunset sees end of input.
            self.closed = true;
            self.client.close_input();
            moved = true;
        }
        moved
    }

    /// Steps until nothing moves, calling `on_round` each time (bounded).
    fn drive(&mut self, mut on_round: impl FnMut(&mut SunsetClient)) {
        for _ in 0..100_000 {
            on_round(&mut self.client);
            if !self.step() {
                return;
            }
        }
        panic!("did not settle: {:?}", self.client.events);
    }

    fn close_reason(&self) -> String {
        self.outputs
            .iter()
            .find_map(|o| match o {
                Output::Close(r) => Some(r.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn report(&self) -> String {
        format!(
            "sunset events {:?}\nsunset error {:?}\nserver close {:?}\nsunset log:\n{}",
            self.client.events,
            self.client.error,
            self.close_reason(),
            self.client.log.join("\n")
        )
    }
}

/// A server configuration for user `key` offering only these methods
/// (empty: the defaults).
fn config_with(key: &ssh_key::PrivateKey, kex: &[KexAlg], ciphers: &[CipherAlg]) -> ServerConfig {
    let mut config = server_config(&[key]);
    let mut transport = TransportConfig::default();
    if !kex.is_empty() {
        transport.kex = kex.to_vec();
    }
    if !ciphers.is_empty() {
        transport.ciphers = ciphers.to_vec();
    }
    config.transport = Arc::new(transport);
    config
}

/// sends git's "no wants" flush once the advertisement is in, as a client
/// with nothing to fetch does.
fn answer_advertisement(sent: &mut bool) -> impl FnMut(&mut SunsetClient) + '_ {
    move |c: &mut SunsetClient| {
        if !*sent && advertisement_complete(&c.stdout) {
            c.send(b"0000");
            *sent = true;
        }
    }
}

/// Runs `git-upload-pack 'app.git'` from sunset against the in-memory
/// server restricted to `kex`; checks both sides' view of the algorithms,
/// the host key, the login, the command and what came back.
fn upload_pack_in_memory(kex: KexAlg) {
    let user = ed25519(1, "alice");
    let config = config_with(&user, &[kex], &[]);
    let git = FakeGit {
        stdout: advertisement(),
        exit_after: b"0000".to_vec(),
        ..FakeGit::default()
    };
    let mut m = Memory::new(config, SunsetClient::new("git", &user, UPLOAD_PACK), git);
    let mut sent = false;
    m.drive(answer_advertisement(&mut sent));
    let report = m.report();

    // Server's view of the key exchange.
    let negotiated = *m.server.transport().negotiated().expect("negotiated");
    assert_eq!(negotiated.kex, kex, "{report}");
    assert_eq!(
        negotiated.c2s,
        (CipherAlg::ChaCha20Poly1305, None),
        "{report}"
    );
    assert_eq!(
        negotiated.s2c,
        (CipherAlg::ChaCha20Poly1305, None),
        "{report}"
    );
    // sunset's own view. It logs both curve25519 names as the RFC one
    // (one implementation behind them); the server's view above tells
    // them apart.
    let sunset_kex = match kex {
        KexAlg::Curve25519Sha256LibSsh => KexAlg::Curve25519Sha256.name(),
        other => other.name(),
    };
    assert_eq!(
        m.client.negotiated(),
        vec![Algorithms {
            kex: sunset_kex.into(),
            host_key: "ssh-ed25519".into(),
            cipher_c2s: CHAPOLY.into(),
            cipher_s2c: CHAPOLY.into(),
            mac_c2s: CHAPOLY.into(),
            mac_s2c: CHAPOLY.into(),
        }],
        "{report}"
    );
    // sunset verified the exchange hash signed by this host key.
    let host = host_key().public_key();
    assert_eq!(
        m.client.host_key.as_ref(),
        Some(&host.key_data().ed25519().unwrap().0),
        "{report}"
    );
    assert!(m.client.authenticated, "{report}");
    assert_eq!(
        m.server.identity().map(|i| i.user.as_str()),
        Some("alice"),
        "{report}"
    );
    // The command reached git as the repository's upload-pack.
    let (_, spec) = m.git.spawned.as_ref().expect("git spawned");
    assert_eq!(spec.program, "git", "{report}");
    assert_eq!(
        spec.args,
        vec![
            "-c".into(),
            "uploadpack.allowFilter=true".into(),
            "upload-pack".into(),
            PathBuf::from("/srv/repos/app.git").into_os_string()
        ],
        "{report}"
    );
    // git's output reached sunset intact, sunset's flush reached git.
    assert_eq!(m.client.stdout, advertisement(), "{report}");
    let first = first_pkt_line(&m.client.stdout).unwrap();
    assert!(first.windows(4).any(|w| w == b"HEAD"), "{report}");
    assert_eq!(m.git.stdin, b"0000", "{report}");
    assert_eq!(m.client.exit, Some(Exit::Status(0)), "{report}");
    assert!(m.client.error.is_none(), "{report}");
    // The session is over; the connection stays for more until the client
    // drops it (sunset, like Dropbear's client, waits for that).
    assert!(!m.server.is_finished(), "{report}");
    m.server.handle_input(m.now, Input::PeerClosed);
    assert!(m.server.is_finished(), "{report}");
}

#[test]
fn mlkem768x25519_in_memory() {
    upload_pack_in_memory(KexAlg::MlKem768X25519Sha256);
}

#[test]
fn curve25519_in_memory() {
    upload_pack_in_memory(KexAlg::Curve25519Sha256);
}

#[test]
fn curve25519_libssh_name_in_memory() {
    upload_pack_in_memory(KexAlg::Curve25519Sha256LibSsh);
}

/// With every default on offer, sunset's first choice, mlkem, wins.
#[test]
fn defaults_negotiate_mlkem_and_chacha() {
    let user = ed25519(2, "bob");
    let mut m = Memory::new(
        server_config(&[&user]),
        SunsetClient::new("git", &user, UPLOAD_PACK),
        FakeGit {
            stdout: advertisement(),
            exit_after: b"0000".to_vec(),
            ..FakeGit::default()
        },
    );
    let mut sent = false;
    m.drive(answer_advertisement(&mut sent));
    let report = m.report();
    let n = m.server.transport().negotiated().copied().unwrap();
    assert_eq!(n.kex, KexAlg::MlKem768X25519Sha256, "{report}");
    assert_eq!(n.c2s.0, CipherAlg::ChaCha20Poly1305, "{report}");
    assert_eq!(m.client.negotiated()[0].kex, "mlkem768x25519-sha256");
    assert_eq!(m.client.exit, Some(Exit::Status(0)), "{report}");
}

/// sunset's channel window and packet size are 1000 bytes: a large output
/// (both streams) must come through whole, in window-sized pieces, with
/// the exit status after it.
#[test]
fn large_output_through_sunset_small_window() {
    let user = ed25519(3, "carol");
    let stdout: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let stderr: Vec<u8> = (0..30_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let git = FakeGit {
        stdout: stdout.clone(),
        stderr: stderr.clone(),
        status: Some(ExitStatus::Code(3)),
        ..FakeGit::default()
    };
    let mut m = Memory::new(
        config_with(&user, &[KexAlg::MlKem768X25519Sha256], &[]),
        SunsetClient::new("git", &user, UPLOAD_PACK),
        git,
    );
    m.drive(|_| {});
    let report = m.report();
    assert_eq!(m.client.stdout.len(), stdout.len(), "{report}");
    assert!(m.client.stdout == stdout, "stdout differs");
    assert!(m.client.stderr == stderr, "stderr differs");
    assert_eq!(m.client.exit, Some(Exit::Status(3)), "{report}");
    assert!(m.client.error.is_none(), "{report}");
}

/// The server re-keys every 64 KiB while output streams to sunset: every
/// re-key completes (sunset logs each negotiation) and no byte is lost.
#[test]
fn server_rekeys_with_sunset_mid_stream() {
    let user = ed25519(8, "grace");
    let stdout: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut config = server_config(&[&user]);
    config.transport = Arc::new(TransportConfig {
        rekey_bytes: 64 * 1024,
        ..TransportConfig::default()
    });
    let git = FakeGit {
        stdout: stdout.clone(),
        ..FakeGit::default()
    };
    let mut m = Memory::new(config, SunsetClient::new("git", &user, UPLOAD_PACK), git);
    m.drive(|_| {});
    let report = m.report();
    let rounds = m.client.negotiated();
    assert!(
        rounds.len() >= 4,
        "{} key exchanges\n{report}",
        rounds.len()
    );
    assert!(
        rounds.iter().all(|a| a.kex == "mlkem768x25519-sha256"),
        "{report}"
    );
    assert!(m.client.stdout == stdout, "stdout differs\n{report}");
    assert_eq!(m.client.exit, Some(Exit::Status(0)), "{report}");
    assert!(m.client.error.is_none(), "{report}");
}

/// sunset pairs aes256-ctr only with `hmac-sha2-256`; the server pairs CTR
/// only with ETM MACs. Offered CTR alone, the server must refuse cleanly
/// (no matching MAC) and sunset must stop without authenticating.
#[test]
fn aes256_ctr_has_no_common_mac() {
    let user = ed25519(4, "dave");
    let config = config_with(
        &user,
        &[KexAlg::MlKem768X25519Sha256],
        &[CipherAlg::Aes256Ctr],
    );
    assert_eq!(TransportConfig::default().macs, MacAlg::DEFAULT.to_vec());
    let mut m = Memory::new(
        config,
        SunsetClient::new("git", &user, UPLOAD_PACK),
        FakeGit::default(),
    );
    m.drive(|_| {});
    let report = m.report();
    assert!(m.server.transport().negotiated().is_none(), "{report}");
    assert!(m.close_reason().contains("no matching MAC"), "{report}");
    assert!(
        m.client
            .error
            .as_deref()
            .is_some_and(|e| e.contains("AlgoNoMatch { algo: \"mac\" }")),
        "{report}"
    );
    assert!(!m.client.authenticated, "{report}");
    assert!(m.git.spawned.is_none(), "{report}");
    assert!(m.server.is_finished(), "{report}");
}

/// A key that is not in authorized_keys: refused, nothing runs.
#[test]
fn unknown_key_is_refused() {
    let known = ed25519(5, "erin");
    let stranger = ed25519(6, "mallory");
    let mut m = Memory::new(
        server_config(&[&known]),
        SunsetClient::new("git", &stranger, UPLOAD_PACK),
        FakeGit::default(),
    );
    m.drive(|_| {});
    let report = m.report();
    assert!(m.server.transport().is_established(), "{report}");
    assert!(!m.client.authenticated, "{report}");
    assert!(m.server.identity().is_none(), "{report}");
    assert!(m.git.spawned.is_none(), "{report}");
    // sunset gives up: its one key refused and no other method on offer.
    assert!(
        m.client
            .error
            .as_deref()
            .is_some_and(|e| e.contains("NoAuthMethods")),
        "{report}"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory with `user` authorized and `repos/app.git` holding one
/// commit on main.
fn data_dir(root: &Path, user: &ssh_key::PrivateKey) -> PathBuf {
    let data = root.join("data");
    let repos = data.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    std::fs::write(
        data.join("authorized_keys"),
        format!("{}\n", user.public_key().to_openssh().unwrap()),
    )
    .unwrap();
    git(&repos, &["init", "-q", "--bare", "app.git"]);
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("README"), "hello\n").unwrap();
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let bare = repos.join("app.git");
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    data
}

per_runtime!(mlkem768x25519_real_server_real_git);
/// The real server binary and real `git upload-pack`, over TCP, with the
/// server's default offer: sunset negotiates mlkem768x25519-sha256,
/// authenticates, and reads git's advertisement of HEAD.
fn mlkem768x25519_real_server_real_git(runtime: Runtime) {
    let root = tempfile::tempdir().unwrap();
    let user = ed25519(7, "frank");
    let data = data_dir(root.path(), &user);
    let server = Server::start_with(
        runtime,
        ServerOptions {
            data_dir: Some(data),
            ..ServerOptions::default()
        },
    );
    let mut client = SunsetClient::new("git", &user, UPLOAD_PACK);
    let mut sent = false;
    let finished = run_tcp(
        server.addr,
        &mut client,
        Duration::from_secs(15),
        answer_advertisement(&mut sent),
    );
    let report = format!(
        "{runtime:?}: events {:?}\nerror {:?}\nstdout {:?}\nstderr {:?}\nsunset log:\n{}",
        client.events,
        client.error,
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr),
        client.log.join("\n"),
    );
    assert!(finished, "timed out\n{report}");
    let algos = client.negotiated();
    assert_eq!(algos.len(), 1, "{report}");
    assert_eq!(algos[0].kex, "mlkem768x25519-sha256", "{report}");
    assert_eq!(algos[0].host_key, "ssh-ed25519", "{report}");
    assert_eq!(algos[0].cipher_c2s, CHAPOLY, "{report}");
    assert_eq!(algos[0].cipher_s2c, CHAPOLY, "{report}");
    // The host key sunset verified is the one the server announced.
    let host = ssh_key::PublicKey::from(ssh_key::public::Ed25519PublicKey(
        client.host_key.expect("host key"),
    ));
    let fp = host.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    assert!(
        server.log().contains(&format!("fingerprint={fp}")),
        "{fp} not in the server log\n{report}"
    );
    assert!(client.authenticated, "{report}");
    assert!(sent, "no complete advertisement\n{report}");
    let first = first_pkt_line(&client.stdout).expect("a pkt-line");
    let first_text = String::from_utf8_lossy(first);
    assert!(
        first_text.contains(" HEAD\0") && first_text.contains("symref=HEAD:refs/heads/main"),
        "{report}"
    );
    assert_eq!(client.exit, Some(Exit::Status(0)), "{report}");
    assert!(client.error.is_none(), "{report}");
    assert!(
        server.wait_for_log("authenticated", Duration::from_secs(2)),
        "{}",
        server.log()
    );
    assert!(server.logged("user=frank"), "{}", server.log());
    assert!(
        server.wait_for_log("git exited", Duration::from_secs(2)),
        "{}",
        server.log()
    );
}
