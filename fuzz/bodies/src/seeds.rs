//! Seed inputs that need the core to build: sealed packets, KEXINIT
//! payloads, and whole client streams recorded against the fuzzing
//! server's fixed host key and seed.
//!
//! `cargo run --manifest-path fuzz/bodies/Cargo.toml --example write_seeds`
//! writes them into `fuzz/corpus/<target>/seed-<name>`. The text seeds
//! (exec strings, authorized_keys lines) and the captures of a real OpenSSH
//! client are committed as files; see `fuzz/README.md`.

use std::sync::Arc;
use std::time::Instant;

use gitmouth_core::client::{Client, ClientConfig, Event};
use gitmouth_core::link::{Link, Upper};
use gitmouth_core::server::{Input, Output, Session};
use gitmouth_core::transport::cipher::{CipherAlg, MacAlg};
use gitmouth_core::transport::hostkey::HostKey;
use gitmouth_core::transport::hostkey::HostKeyAlg;
use gitmouth_core::transport::kex::KexAlg;
use gitmouth_core::transport::negotiate::{EXT_INFO_C, Offer, STRICT_C, STRICT_S};
use gitmouth_core::transport::packet::PacketWriter;
use gitmouth_core::transport::{Role, Transport, TransportConfig};
use gitmouth_core::wire::{self, numbers};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::packet_reader::{self, MODES, ReaderMode};
use crate::server_session::control::{Layout, answer, data_param, op};
use crate::server_session::{SESSION_SEED, USER_API_KEY, server_config};

/// One seed: the target it is for, a file name, the input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target (a directory under `fuzz/corpus/`).
    pub target: &'static str,
    /// The file name, without the `seed-` prefix.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> Seed {
    Seed {
        target,
        name: name.into(),
        bytes,
    }
}

/// Every generated seed.
pub fn all() -> Vec<Seed> {
    let mut out = packet_reader_seeds();
    out.extend(kexinit_seeds());
    out.extend(session_seeds());
    out
}

/// A short name for a reader mode.
fn mode_name(mode: ReaderMode) -> String {
    match mode {
        ReaderMode::Plaintext => "plaintext".into(),
        ReaderMode::Keyed(cipher, None) => {
            cipher.name().split('@').next().unwrap_or_default().into()
        }
        ReaderMode::Keyed(cipher, Some(mac)) => {
            let mac = mac.name().split('@').next().unwrap_or_default();
            format!("{}-{mac}", cipher.name())
        }
    }
}

fn packet_reader_seeds() -> Vec<Seed> {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut kexinit = Vec::new();
    Offer::all(HostKeyAlg::ALL.to_vec()).write_kexinit(&mut kexinit, [9; 16], &[]);
    let payloads: [&[u8]; 4] = [
        b"\x15",
        b"\x05\0\0\0\x0cssh-userauth",
        &kexinit,
        b"\x02\0\0\0\0",
    ];
    let mut out = Vec::new();
    for mode in MODES {
        let stream = packet_reader::stream(mode, &mut rng, &payloads);
        let name = mode_name(mode);
        // The same packets in one piece, in small chunks, a byte at a time.
        out.push(seed(
            "packet_reader",
            format!("{name}-whole"),
            packet_reader::input(mode, &[0xff], &stream),
        ));
        out.push(seed(
            "packet_reader",
            format!("{name}-chunks"),
            packet_reader::input(mode, &[6, 0, 30, 2], &stream),
        ));
        out.push(seed(
            "packet_reader",
            format!("{name}-bytes"),
            packet_reader::input(mode, &[0], &stream),
        ));
        // A flipped bit in the last packet: a MAC error (or a bad padding
        // byte in plaintext) after three good packets.
        let mut bad = stream.clone();
        let at = bad.len() - 3;
        bad[at] ^= 0x20;
        out.push(seed(
            "packet_reader",
            format!("{name}-flipped"),
            packet_reader::input(mode, &[40, 3], &bad),
        ));
    }
    let plain = ReaderMode::Plaintext;
    for (name, len) in [
        ("len-max", u32::MAX),
        ("len-zero", 0),
        ("len-over-limit", 256 * 1024 + 8),
    ] {
        let mut stream = len.to_be_bytes().to_vec();
        stream.extend_from_slice(&[4, 0x15, 0, 0, 0, 0]);
        out.push(seed(
            "packet_reader",
            name,
            packet_reader::input(plain, &[1], &stream),
        ));
    }
    out
}

fn kexinit_seeds() -> Vec<Seed> {
    let mut out = vec![seed(
        "kexinit",
        "ours-server",
        crate::kexinit::our_kexinit().to_vec(),
    )];
    let mut client = Offer::all(vec![HostKeyAlg::Ed25519]);
    client.kex = vec![
        KexAlg::Curve25519Sha256,
        KexAlg::Sntrup761X25519Sha512OpenSsh,
    ];
    client.ciphers = vec![CipherAlg::Aes128Ctr, CipherAlg::ChaCha20Poly1305];
    client.macs = vec![MacAlg::HmacSha512Etm];
    let mut bytes = Vec::new();
    client.write_kexinit(&mut bytes, [3; 16], &[EXT_INFO_C, STRICT_C]);
    out.push(seed("kexinit", "client-ctr", bytes.clone()));
    // The same with first_kex_packet_follows set (the byte before the
    // reserved uint32).
    let n = bytes.len();
    bytes[n - 5] = 1;
    out.push(seed("kexinit", "client-guess", bytes));
    let mut bytes = Vec::new();
    Offer::all(vec![HostKeyAlg::RsaSha2_256]).write_kexinit(&mut bytes, [4; 16], &[STRICT_S]);
    out.push(seed("kexinit", "rsa-only", bytes));
    out
}

/// A client that asks for the user-authentication service and tries the
/// `none` method, optionally re-keying first: it drives the server as far
/// as the server goes without a key lookup.
struct ScriptedClient {
    rekey: bool,
    accepted: bool,
    failures: u32,
}

impl ScriptedClient {
    fn try_none(t: &mut Transport) {
        t.send(|out| {
            wire::put_u8(out, numbers::USERAUTH_REQUEST);
            wire::put_string(out, b"git");
            wire::put_string(out, b"ssh-connection");
            wire::put_string(out, b"none");
        });
    }
}

impl Upper for ScriptedClient {
    fn on_established(&mut self, t: &mut Transport, _now: Instant) {
        // Messages the server must take in stride first.
        t.send(|out| {
            wire::put_u8(out, numbers::IGNORE);
            wire::put_string(out, b"padding");
        });
        t.send(|out| {
            wire::put_u8(out, numbers::DEBUG);
            wire::put_bool(out, false);
            wire::put_string(out, b"hello");
            wire::put_string(out, b"");
        });
        t.send(|out| {
            wire::put_u8(out, numbers::SERVICE_REQUEST);
            wire::put_string(out, b"ssh-userauth");
        });
    }

    fn on_message(&mut self, t: &mut Transport, now: Instant, _seq: u32, payload: &[u8]) {
        match payload.first().copied() {
            Some(numbers::SERVICE_ACCEPT) => {
                self.accepted = true;
                Self::try_none(t);
            }
            Some(numbers::USERAUTH_FAILURE) => {
                self.failures += 1;
                if self.failures == 1 {
                    if self.rekey {
                        t.start_kex(now);
                    }
                    Self::try_none(t);
                }
            }
            _ => {}
        }
    }
}

/// The client → server stream of our own client against the fuzzing
/// server, both in memory; panics unless the client got as far as two
/// authentication failures.
pub fn client_stream(kex: KexAlg, cipher: CipherAlg, mac: Option<MacAlg>, rekey: bool) -> Vec<u8> {
    let now = Instant::now();
    let mut server = Session::new(server_config(false), SESSION_SEED, now);
    let config = TransportConfig {
        kex: vec![kex],
        ciphers: vec![cipher],
        macs: mac.into_iter().collect(),
        ..TransportConfig::default()
    };
    let role = Role::Client {
        host_key_algs: vec![HostKeyAlg::Ed25519],
    };
    let mut client = Link::new(
        Transport::new(role, Arc::new(config), [0x63; 32], now),
        true,
    );
    let mut upper = ScriptedClient {
        rekey,
        accepted: false,
        failures: 0,
    };
    let mut stream = Vec::new();
    for _ in 0..64 {
        let to_server = client.t.pending().to_vec();
        client.t.consume(to_server.len());
        let to_client = server.transmit().to_vec();
        server.consume_transmit(to_client.len());
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        stream.extend_from_slice(&to_server);
        server.handle_input(now, Input::Received(&to_server));
        while server.poll_output().is_some() {}
        client.receive(now, &to_client, &mut upper);
    }
    assert!(
        !client.t.is_closed(),
        "{kex:?}/{cipher:?}: {:?}",
        client.t.close_reason()
    );
    assert!(
        upper.accepted && upper.failures == 2,
        "{kex:?}/{cipher:?}: stopped early"
    );
    stream
}

fn session_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    // A client's first flight, as the brief for this target asks: version
    // line and KEXINIT with OpenSSH 9.2's algorithm lists, in plaintext.
    let mut first = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n".to_vec();
    let mut writer = PacketWriter::new();
    writer.packet(&mut ChaCha20Rng::from_seed([2; 32]), |out| {
        wire::put_u8(out, numbers::KEXINIT);
        out.extend_from_slice(&[0x5a; 16]);
        for list in OPENSSH_9_2_CLIENT_LISTS {
            wire::put_string(out, list.as_bytes());
        }
        wire::put_bool(out, false);
        wire::put_u32(out, 0);
    });
    first.extend_from_slice(writer.pending());
    out.push(seed(
        "server_session",
        "openssh-9.2-first-flight",
        Layout::build(false, &[], &first),
    ));
    for (name, kex, cipher, mac, rekey) in [
        (
            "curve25519-chacha",
            KexAlg::Curve25519Sha256,
            CipherAlg::ChaCha20Poly1305,
            None,
            false,
        ),
        (
            "mlkem-aes256gcm",
            KexAlg::MlKem768X25519Sha256,
            CipherAlg::Aes256Gcm,
            None,
            false,
        ),
        (
            "sntrup-aes128ctr",
            KexAlg::Sntrup761X25519Sha512,
            CipherAlg::Aes128Ctr,
            Some(MacAlg::HmacSha512Etm),
            false,
        ),
        (
            "curve25519-aes128gcm-rekey",
            KexAlg::Curve25519Sha256LibSsh,
            CipherAlg::Aes128Gcm,
            None,
            true,
        ),
    ] {
        out.push(seed(
            "server_session",
            format!("client-{name}"),
            Layout::build(false, &[], &client_stream(kex, cipher, mac, rekey)),
        ));
    }
    out.extend(git_seeds());
    out
}

/// The ten name-lists of OpenSSH 9.2p1's client KEXINIT (Debian 12's
/// `9.2p1-2+deb12u6`, with the strict-kex backport), as captured from the
/// machine's `ssh` by `fuzz/tools/capture_openssh.py`.
const OPENSSH_9_2_CLIENT_LISTS: [&str; 10] = [
    "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,\
     ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,\
     diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,\
     ext-info-c,kex-strict-c-v00@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,\
     ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,\
     sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,\
     rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,\
     ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,\
     sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256",
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,\
     hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,\
     hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,\
     hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,\
     hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    "none,zlib@openssh.com,zlib",
    "none,zlib@openssh.com,zlib",
    "",
    "",
];

/// The seed that reproduced the core bug "a push lock is released only
/// after Close" (fixed: the session stops its jobs and settles them before
/// it reports the close).
pub const REGRESSION_LOCK_AFTER_CLOSE: &str = "regression-lock-released-after-close";

/// The seed that reproduced the core bug "a push's HEAD upkeep starts only
/// after Close" (fixed: a local job holds its backend until git's output is
/// drained).
pub const REGRESSION_UPKEEP_AFTER_CLOSE: &str = "regression-push-upkeep-after-close";

/// Seed of the recorded client's own key (the user's key; ed25519).
const USER_KEY_SEED: [u8; 32] = [0x75; 32];

/// A client stream that runs one git command, and where in it the
/// client's CHANNEL_CLOSE starts.
struct GitStream {
    wire: Vec<u8>,
    /// Everything before the CHANNEL_CLOSE: version, key exchange, the
    /// user-authentication service, a signed publickey request, the
    /// session channel, `exec`, the data and EOF.
    before_close: usize,
}

/// Records our own client (`core::client`) running `command` with `stdin`
/// against the fuzzing server (fixed host key and seed), in standalone or
/// API mode: the server's answers are the control stream's first ones
/// (alice; the canned platform replies).
///
/// Only the client's bytes are kept. They hold no reply to anything after
/// the channel opened, so the control stream of the seed decides freely
/// what the backend does; the CHANNEL_CLOSE is sent blind, to go into a
/// segment of its own after the exit.
fn git_stream(api: bool, command: &[u8], stdin: &[u8]) -> GitStream {
    let now = Instant::now();
    let mut server = Session::new(server_config(api), SESSION_SEED, now);
    let config = ClientConfig {
        transport: Arc::new(TransportConfig {
            kex: vec![KexAlg::Curve25519Sha256],
            ciphers: vec![CipherAlg::ChaCha20Poly1305],
            macs: Vec::new(),
            ..TransportConfig::default()
        }),
        host_key_algs: vec![HostKeyAlg::Ed25519],
    };
    let mut client = Client::new(&config, [0x63; 32], now);
    let key = HostKey::generate_ed25519(&mut ChaCha20Rng::from_seed(USER_KEY_SEED));
    let mut wire = Vec::new();
    let mut before_close = None;
    for _ in 0..64 {
        let to_server = client.transmit().to_vec();
        client.consume_transmit(to_server.len());
        wire.extend_from_slice(&to_server);
        server.handle_input(now, Input::Received(&to_server));
        while let Some(output) = server.poll_output() {
            // Only the key lookup needs an answer before the channel
            // opens; nothing else the server asks for changes the
            // client's bytes.
            let reply = match output {
                Output::LookupKey { id, .. } => Input::KeyLookedUp {
                    id,
                    user: Some("alice".into()),
                    access: None,
                },
                Output::Http { id, request } if request.url.contains("lookupUserByPublicKey") => {
                    Input::HttpDone {
                        id,
                        result: Ok(gitmouth_core::app::api::HttpResponse {
                            status: 200,
                            body: format!("42:{USER_API_KEY}\n").into_bytes(),
                        }),
                    }
                }
                _ => continue,
            };
            server.handle_input(now, reply);
        }
        let to_client = server.transmit().to_vec();
        server.consume_transmit(to_client.len());
        client.handle_input(now, gitmouth_core::client::Input::Received(&to_client));
        while let Some(event) = client.poll_event() {
            match event {
                Event::Established => client.request_service("ssh-userauth"),
                Event::ServiceAccepted => sign_in(&mut client, &key),
                Event::AuthSuccess => client.open_session(1 << 20, 32 * 1024),
                Event::ChannelOpened => {
                    client.exec(command, true);
                    assert_eq!(client.send_data(stdin), stdin.len());
                    client.send_eof();
                    before_close = Some(wire.len() + client.transmit().len());
                    client.send_close();
                }
                _ => {}
            }
        }
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
    assert!(
        !client.is_closed(),
        "{:?}",
        client.transport().close_reason()
    );
    GitStream {
        before_close: before_close.expect("the session channel never opened"),
        wire,
    }
}

/// A signed publickey request for user `git` with `key` (built by hand:
/// the user's key is an ed25519 [`HostKey`], which signs the same way).
fn sign_in(client: &mut Client, key: &HostKey) {
    let Some(session_id) = client.transport().session_id().map(<[u8]>::to_vec) else {
        return;
    };
    let blob = key.public_blob();
    let data = gitmouth_core::auth::signed_data(&session_id, b"git", "ssh-ed25519", &blob);
    let signature = key.sign(HostKeyAlg::Ed25519, &data).expect("ed25519 signs");
    let mut payload = vec![numbers::USERAUTH_REQUEST];
    wire::put_string(&mut payload, b"git");
    wire::put_string(&mut payload, b"ssh-connection");
    wire::put_string(&mut payload, b"publickey");
    wire::put_bool(&mut payload, true);
    wire::put_string(&mut payload, b"ssh-ed25519");
    wire::put_string(&mut payload, &blob);
    wire::put_string(&mut payload, &signature);
    client.send_raw(&payload);
}

/// `op::FEED` of the first `n` wire bytes.
fn feed(n: usize) -> [u8; 3] {
    let [hi, lo] = u16::try_from(n).expect("stream over 64 KiB").to_be_bytes();
    [op::FEED, hi, lo]
}

/// The control bytes after the first segment's answers: git (or the dyno)
/// writes a kilobyte of pkt-lines to stdout, then the rest of the script.
const RELAY_KIB: u8 = data_param(5, 3);

/// Seeds that run a whole git command: recorded client streams (see
/// [`git_stream`]) with control streams that authenticate the client, let
/// the command run, relay its output and report its exit, then take the
/// client's CHANNEL_CLOSE.
fn git_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    // Standalone clone: alice; the repository exists; git starts, writes
    // to stdout and stderr, ends both, exits 0.
    let s = git_stream(false, b"git-upload-pack 'repo.git'", b"0009done\n0000");
    let mut control = feed(s.before_close).to_vec();
    control.extend_from_slice(&[0, 0, 0]); // alice, exists, started
    control.extend_from_slice(&[op::STDOUT, RELAY_KIB, op::STDERR, data_param(3, 0)]);
    control.extend_from_slice(&[op::EOF_STDOUT, op::EOF_STDERR, op::EXIT, 0]);
    control.extend_from_slice(&feed(0));
    out.push(seed(
        "server_session",
        "git-standalone-upload-pack",
        Layout::build(false, &control, &s.wire),
    ));
    // Standalone push: the lock granted, the repository created, git runs
    // and exits 0, then HEAD is repaired: it names nothing, the branches
    // are main and dev, HEAD is pointed at main; the exit is reported
    // after that.
    let s = git_stream(false, b"git-receive-pack 'repo.git'", b"0000");
    let mut control = feed(s.before_close).to_vec();
    control.extend_from_slice(&[0, 0, 1, 0]); // alice, granted, created, started
    control.extend_from_slice(&[op::STDOUT, RELAY_KIB, op::EOF_STDOUT, op::EOF_STDERR]);
    control.extend_from_slice(&[op::EXIT, 0]);
    control.extend_from_slice(&[3, 0, 0]); // HEAD: none; main and dev; set
    control.extend_from_slice(&feed(0));
    out.push(seed(
        "server_session",
        "git-standalone-receive-pack",
        Layout::build(false, &control, &s.wire),
    ));
    // A fixed core bug: the push's lock is granted, the repository not yet
    // opened, and the client's next bytes are garbage (a MAC failure): the
    // session reported Close before it released the lock.
    let mut control = feed(s.before_close).to_vec();
    control.extend_from_slice(&[0, 0, answer::defer(answer::OPEN_REPO)]); // alice, granted, not yet
    control.extend_from_slice(&feed(0));
    let mut wire = s.wire[..s.before_close].to_vec();
    wire.extend_from_slice(&[0x41; 64]);
    out.push(seed(
        "server_session",
        REGRESSION_LOCK_AFTER_CLOSE,
        Layout::build(false, &control, &wire),
    ));
    // The other fixed core bug: git exits with its output still open, the
    // client goes: the session reported Close at once; five seconds later
    // (the drain wait) it started the push's HEAD upkeep, then released the
    // lock, all after Close.
    let mut control = feed(s.before_close).to_vec();
    control.extend_from_slice(&[0, 0, 1, 0]); // alice, granted, created, started
    control.extend_from_slice(&[op::EXIT, 0, op::PEER_CLOSED]);
    out.push(seed(
        "server_session",
        REGRESSION_UPKEEP_AFTER_CLOSE,
        Layout::build(false, &control, &s.wire),
    ));
    // API mode clone: the key lookup, the access check and provisioning
    // answered as the contract says, the dyno connects, speaks (so the
    // client's stdin flows to it) and closes cleanly.
    let s = git_stream(true, b"git-upload-pack 'app.git'", b"0009done\n0000");
    let mut control = feed(s.before_close).to_vec();
    control.extend_from_slice(&[0, 0, 0, 0]); // user 42, access, dyno, connected
    control.extend_from_slice(&[op::STDOUT, RELAY_KIB, op::DYNO_CLEAN]);
    control.extend_from_slice(&feed(0));
    out.push(seed(
        "server_session",
        "git-api-upload-pack",
        Layout::build(true, &control, &s.wire),
    ));
    // API mode push: the lock after the access check, provisioning slow
    // enough for a progress line, then the dyno as above.
    let s = git_stream(true, b"git-receive-pack 'app.git'", b"0000");
    let mut control = feed(s.before_close).to_vec();
    let later = answer::defer(answer::HTTP_PROVISION);
    control.extend_from_slice(&[0, 0, 0, later]); // user 42, access, granted, not yet
    control.extend_from_slice(&[op::SLEEP, 4, 0, 0]); // 3 s: progress; the dyno, connected
    control.extend_from_slice(&[op::STDOUT, RELAY_KIB, op::DYNO_CLEAN]);
    control.extend_from_slice(&feed(0));
    out.push(seed(
        "server_session",
        "git-api-receive-pack",
        Layout::build(true, &control, &s.wire),
    ));
    out
}
