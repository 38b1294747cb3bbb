//! The transport between our client and the server session in memory:
//! every algorithm pair, re-keying, strict kex, tampering, chunking.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gitmouth_core::client::{ClientConfig, Event};
use gitmouth_core::server::Output;
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_core::transport::TransportConfig;
use gitmouth_core::transport::cipher::{CipherAlg, MacAlg};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_core::transport::hostkey::{HostKey, HostKeyAlg};
use gitmouth_core::transport::kex::KexAlg;
use gitmouth_core::wire::{self, numbers};
use gitmouth_tests::epoch;

fn client_with(f: impl FnOnce(&mut TransportConfig)) -> ClientConfig {
    let mut t = TransportConfig::default();
    f(&mut t);
    ClientConfig {
        transport: Arc::new(t),
        ..ClientConfig::default()
    }
}

fn rsa_host_key() -> HostKey {
    fixture_host_key("rsa2048_pem")
}

/// A host key from the core's fixtures (`core/src/transport/testdata`).
fn fixture_host_key(name: &str) -> HostKey {
    let path = format!(
        "{}/../core/src/transport/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    HostKey::from_private_key_file(&std::fs::read(path).unwrap()).unwrap()
}

fn sent_by(pair: &Pair) -> Option<(DisconnectReason, String)> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason,
            description,
        })) => Some((reason, description)),
        _ => None,
    }
}

#[test]
fn every_algorithm_pair_completes_and_carries_data() {
    let user = ed25519(1, "alice");
    let mut combos = Vec::new();
    for kex in KexAlg::ALL {
        for cipher in CipherAlg::ALL {
            let macs: Vec<Option<MacAlg>> = if cipher.is_aead() {
                vec![None]
            } else {
                MacAlg::ALL.iter().copied().map(Some).collect()
            };
            for mac in macs {
                // Host-key algorithms in turn: every one meets many
                // exchanges without the product of all four lists.
                let host = HostKeyAlg::ALL[combos.len() % HostKeyAlg::ALL.len()];
                combos.push((kex, cipher, mac, host));
            }
        }
    }
    for (kex, cipher, mac, host) in combos {
        let mut config = server_config(&[&user]);
        config.host_keys = vec![
            gitmouth_core::test_util::host_key(),
            fixture_host_key("ecdsa256"),
            fixture_host_key("ecdsa384"),
            fixture_host_key("ecdsa521"),
            rsa_host_key(),
        ]
        .into();
        // The server offers the legacy methods too (`--legacy-algorithms`).
        config.transport = Arc::new(TransportConfig {
            kex: KexAlg::ALL.to_vec(),
            macs: MacAlg::ALL.to_vec(),
            ..TransportConfig::default()
        });
        let client = ClientConfig {
            transport: Arc::new(TransportConfig {
                kex: vec![kex],
                ciphers: vec![cipher],
                macs: mac.into_iter().collect(),
                ..TransportConfig::default()
            }),
            host_key_algs: vec![host],
        };
        let mut pair = Pair::with_client(config, client, 3, epoch());
        pair.rt.script = Script {
            echo: true,
            ..Script::default()
        };
        pair.open(&user, 1 << 20, 32768);
        let n = pair.client.transport().negotiated().copied().unwrap();
        assert_eq!(
            (n.kex, n.c2s.0, n.c2s.1, n.host_key),
            (kex, cipher, mac, host)
        );
        pair.client.exec(b"git-upload-pack 'app.git'", true);
        pair.rt.repos.insert("/srv/repos/app.git".into());
        pair.drive();
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(pair.client.send_data(&payload), payload.len());
        pair.drive();
        assert_eq!(
            pair.received().0,
            payload,
            "{kex:?} {cipher:?} {mac:?} {host:?}"
        );
    }
}

#[test]
fn rekey_started_by_the_client_by_the_server_and_mid_stream() {
    let user = ed25519(1, "alice");
    // The server re-keys every 64 KiB; the client re-keys when told to.
    let mut config = server_config(&[&user]);
    config.transport = Arc::new(TransportConfig {
        rekey_bytes: 64 * 1024,
        ..TransportConfig::default()
    });
    let mut pair = Pair::new(config, epoch());
    pair.rt.script = Script {
        echo: true,
        ..Script::default()
    };
    pair.open(&user, 1 << 20, 32768);
    pair.rt.repos.insert("/srv/repos/app.git".into());
    pair.client.exec(b"git-receive-pack 'app.git'", true);
    pair.drive();
    let first_session_id = pair.client.transport().session_id().unwrap().to_vec();
    let mut expected = Vec::new();
    for round in 0..40u32 {
        let chunk: Vec<u8> = (0..9000u32).map(|i| (i ^ round) as u8).collect();
        let mut sent = 0;
        while sent < chunk.len() {
            sent += pair.client.send_data(&chunk[sent..]);
            // Interleave: some steps only, so a re-key starts mid-stream.
            pair.step();
        }
        expected.extend_from_slice(&chunk);
        if round % 10 == 5 {
            let now = pair.now;
            pair.client.rekey(now);
        }
    }
    pair.drive();
    assert_eq!(pair.received().0, expected);
    assert_eq!(pair.rt.process.as_ref().unwrap().stdin, expected);
    assert_eq!(
        pair.client.transport().session_id().unwrap(),
        first_session_id,
        "the session id never changes"
    );
    assert!(!pair.client.is_closed());
}

#[test]
fn the_server_rekeys_after_its_time_limit() {
    let user = ed25519(1, "alice");
    let mut config = server_config(&[&user]);
    config.transport = Arc::new(TransportConfig {
        rekey_interval: Duration::from_secs(10),
        ..TransportConfig::default()
    });
    let mut pair = Pair::new(config, epoch());
    pair.login(&user);
    let before = pair.server_sent.len();
    pair.advance(Duration::from_secs(11));
    assert!(pair.server_sent.len() > before, "a KEXINIT went out");
    // Still usable afterwards.
    pair.client.open_session(1 << 20, 32768);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelOpened));
}

#[test]
fn strict_kex_resets_sequence_numbers_and_refuses_strays() {
    let user = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&user]), epoch());
    pair.handshake();
    assert!(pair.client.transport().is_strict());
    // Strict: reset at NEWKEYS, so only a few packets since.
    assert!(
        pair.client.transport().tx_seq() < 3,
        "{}",
        pair.client.transport().tx_seq()
    );

    let mut loose = Pair::with_client(
        server_config(&[&user]),
        client_with(|t| t.strict_kex = false),
        7,
        epoch(),
    );
    loose.handshake();
    assert!(!loose.client.transport().is_strict());
    assert!(loose.client.transport().tx_seq() >= 3);

    // IGNORE before KEXINIT: with strict kex, KEXINIT must come first.
    let mut pair = Pair::new(server_config(&[&user]), epoch());
    pair.client.send_raw_now(&[numbers::IGNORE, 0, 0, 0, 0]);
    pair.drive();
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ProtocolError);
    assert!(why.contains("strict"), "{why}");
    assert!(!pair.events.contains(&Event::Established));

    // Without strict kex the same IGNORE is harmless.
    let mut loose = Pair::with_client(
        server_config(&[&user]),
        client_with(|t| t.strict_kex = false),
        7,
        epoch(),
    );
    loose.client.send_raw_now(&[numbers::IGNORE, 0, 0, 0, 0]);
    loose.handshake();
}

#[test]
fn messages_during_the_initial_exchange_are_refused() {
    let user = ed25519(1, "alice");
    // After KEXINIT, before NEWKEYS: a DEBUG (strict), a USERAUTH_REQUEST
    // (CVE-2023-46446), a SERVICE_REQUEST.
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    payloads.push(vec![numbers::DEBUG, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut auth = vec![numbers::USERAUTH_REQUEST];
    for s in ["git", "ssh-connection", "none"] {
        wire::put_string(&mut auth, s.as_bytes());
    }
    payloads.push(auth);
    let mut service = vec![numbers::SERVICE_REQUEST];
    wire::put_string(&mut service, b"ssh-userauth");
    payloads.push(service);
    let cases = payloads
        .iter()
        .map(|p| (p, true))
        .chain(payloads[1..].iter().map(|p| (p, false)));
    for (payload, strict) in cases {
        let client = client_with(|t| t.strict_kex = strict);
        let mut pair = Pair::with_client(server_config(&[&user]), client, 9, epoch());
        // Versions and KEXINITs cross; the client's KEXINIT and share are
        // queued: inject right behind them, before its NEWKEYS.
        pair.step();
        pair.client.send_raw_now(payload);
        pair.drive();
        assert!(
            sent_by(&pair).is_some(),
            "{payload:?} accepted (strict: {strict})"
        );
        assert!(!pair.events.contains(&Event::AuthSuccess));
        assert!(!pair.events.contains(&Event::ServiceAccepted));
    }
}

#[test]
fn a_flipped_byte_is_a_mac_error() {
    let user = ed25519(1, "alice");
    for cipher in CipherAlg::ALL {
        let mac = if cipher.is_aead() {
            vec![]
        } else {
            vec![MacAlg::HmacSha256Etm]
        };
        let client = client_with(|t| {
            t.ciphers = vec![cipher];
            t.macs = mac;
        });
        let mut pair = Pair::with_client(server_config(&[&user]), client, 5, epoch());
        pair.handshake();
        let armed = std::rc::Rc::new(std::cell::Cell::new(true));
        let flag = armed.clone();
        pair.tamper = Some(Box::new(move |bytes: &mut Vec<u8>| {
            if flag.get() && bytes.len() > 10 {
                bytes[9] ^= 0x01;
                flag.set(false);
            }
        }));
        pair.client.request_service("ssh-userauth");
        pair.drive();
        let (reason, _) = sent_by(&pair).expect("disconnected");
        assert_eq!(reason, DisconnectReason::MacError, "{cipher:?}");
        assert!(!pair.events.contains(&Event::ServiceAccepted));
        assert!(!armed.get());
    }
}

#[test]
fn an_oversized_length_is_refused_at_once() {
    let user = ed25519(1, "alice");
    for len in [0x7fff_ffffu32, 0xffff_ffff, 0, 3] {
        let mut pair = Pair::new(server_config(&[&user]), epoch());
        pair.client_stalled = true;
        pair.drive();
        let mut bytes = b"SSH-2.0-test\r\n".to_vec();
        bytes.extend_from_slice(&len.to_be_bytes());
        let now = pair.now;
        pair.server
            .handle_input(now, gitmouth_core::server::Input::Received(&bytes));
        pair.drive();
        assert!(sent_by(&pair).is_some(), "length {len} accepted");
        assert!(pair.server.is_finished() || pair.server.transmit().is_empty());
    }
}

#[test]
fn any_chunking_gives_the_same_session() {
    let user = ed25519(1, "alice");
    let transcript = |chunk: usize| {
        let mut pair = Pair::new(server_config(&[&user]), epoch());
        pair.chunk = chunk;
        pair.rt.script = Script {
            echo: true,
            ..Script::default()
        };
        pair.rt.repos.insert("/srv/repos/app.git".into());
        pair.open(&user, 1 << 20, 32768);
        pair.client.exec(b"git-upload-pack 'app.git'", true);
        pair.drive();
        pair.client.send_data(&[9u8; 20000]);
        pair.client.send_eof();
        pair.drive();
        (
            pair.server_sent.clone(),
            pair.received(),
            pair.exit_status(),
        )
    };
    let whole = transcript(usize::MAX);
    assert_eq!(whole.2, Some(0));
    for chunk in [1, 2, 3, 7, 16, 100, 1000, 4096] {
        assert_eq!(transcript(chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn unknown_messages_get_unimplemented_and_the_session_goes_on() {
    let user = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&user]), epoch());
    pair.login(&user);
    pair.client.send_raw(&[200, 1, 2, 3]);
    pair.drive();
    assert!(pair.events.contains(&Event::Other(numbers::UNIMPLEMENTED)));
    pair.client.open_session(1 << 20, 32768);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelOpened));
}

#[test]
fn version_and_login_deadlines() {
    let user = ed25519(1, "alice");
    // Silence: no version line within 10 s.
    let mut pair = Pair::new(server_config(&[&user]), epoch());
    pair.client_stalled = true;
    pair.drive();
    pair.advance(Duration::from_secs(11));
    assert!(pair.server.is_finished(), "{:?}", pair.server_close());
    // A slow client that keeps sending bytes does not extend the grace time.
    let mut pair = Pair::new(server_config(&[&user]), epoch());
    pair.handshake();
    for _ in 0..6 {
        pair.client.send_raw(&[numbers::IGNORE, 0, 0, 0, 0]);
        pair.advance(Duration::from_secs(5));
    }
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ByApplication);
    assert!(why.contains("grace"), "{why}");
}

/// `--rekey-limit 10` once broke every OpenSSH login: the server started a
/// re-key during user authentication, which OpenSSH's client refuses
/// (`bad message during authentication: type 20`). Neither the volume nor
/// the interval starts one of ours before authentication has ended; one
/// that became due starts right after it.
#[test]
fn no_rekey_of_the_servers_own_before_authentication_has_ended() {
    let user = ed25519(1, "alice");
    let mut config = server_config(&[&user]);
    config.transport = Arc::new(TransportConfig {
        rekey_bytes: 16,
        rekey_interval: Duration::from_secs(1),
        ..TransportConfig::default()
    });
    let mut pair = Pair::new(config, epoch());
    pair.handshake();
    assert_eq!(pair.server.transport().key_exchanges(), 1);
    pair.client.request_service("ssh-userauth");
    pair.drive();
    // Past both limits, during authentication.
    pair.advance(Duration::from_secs(5));
    assert!(
        !pair.server.transport().in_kex(),
        "a re-key started before authentication"
    );
    assert!(!pair.client.transport().in_kex());
    assert_eq!(pair.server.transport().key_exchanges(), 1);
    pair.client.auth_publickey("git", &user);
    pair.drive();
    assert!(
        pair.events.contains(&Event::AuthSuccess),
        "{:?}",
        pair.events
    );
    // Due since, it ran right after authentication, and the connection
    // works.
    assert!(pair.server.transport().key_exchanges() >= 2);
    pair.client.open_session(1 << 20, 32768);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelOpened));
    assert!(!pair.client.is_closed());
}

/// A re-key interval of zero is no re-key by time (sshd's meaning), not a
/// re-key loop.
#[test]
fn a_zero_rekey_interval_never_rekeys_by_time() {
    let user = ed25519(1, "alice");
    let mut config = server_config(&[&user]);
    config.transport = Arc::new(TransportConfig {
        rekey_interval: Duration::ZERO,
        ..TransportConfig::default()
    });
    let mut pair = Pair::new(config, epoch());
    pair.login(&user);
    for _ in 0..100 {
        pair.advance(Duration::from_secs(1));
    }
    assert_eq!(pair.server.transport().key_exchanges(), 1);
    assert!(!pair.client.is_closed());
}
