//! User authentication in memory: success, every refusal, and the attacks
//! other SSH servers fell to.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::server::Output;
use gitmouth_core::test_util::{Pair, ecdsa, ed25519, server_config};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_core::wire::{self, numbers};
use gitmouth_tests::epoch;

fn disconnected(pair: &Pair) -> Option<DisconnectReason> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent { reason, .. })) => Some(reason),
        _ => None,
    }
}

fn failures(pair: &Pair) -> usize {
    pair.events
        .iter()
        .filter(|e| matches!(e, Event::AuthFailure { .. }))
        .count()
}

fn ready(pair: &mut Pair) {
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    assert!(pair.events.contains(&Event::ServiceAccepted));
}

#[test]
fn none_lists_publickey_then_a_listed_key_logs_in() {
    let alice = ed25519(1, "alice");
    let bob = ecdsa(2, "bob");
    for key in [&alice, &bob] {
        let mut pair = Pair::new(server_config(&[&alice, &bob]), epoch());
        ready(&mut pair);
        pair.client.auth_none("git");
        pair.drive();
        assert_eq!(
            pair.events.last(),
            Some(&Event::AuthFailure {
                methods: "publickey".into(),
                partial: false
            })
        );
        pair.client
            .auth_query("git", key.public_key(), key.algorithm().as_str());
        pair.drive();
        assert_eq!(pair.events.last(), Some(&Event::PkOk));
        pair.client.auth_publickey("git", key);
        pair.drive();
        assert_eq!(pair.events.last(), Some(&Event::AuthSuccess));
        assert_eq!(
            pair.server.identity().unwrap().user,
            key.comment().to_string()
        );
    }
}

#[test]
fn an_unknown_key_is_refused_and_counts_as_an_attempt() {
    let alice = ed25519(1, "alice");
    let mallory = ed25519(9, "mallory");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    pair.client
        .auth_query("git", mallory.public_key(), "ssh-ed25519");
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    pair.client.auth_publickey("git", &mallory);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert!(pair.server.identity().is_none());
    // The default limit is 6: four more failures end the connection.
    for _ in 0..4 {
        pair.client
            .auth_query("git", mallory.public_key(), "ssh-ed25519");
        pair.drive();
    }
    assert_eq!(
        disconnected(&pair),
        Some(DisconnectReason::NoMoreAuthMethods)
    );
    assert_eq!(failures(&pair), 5);
    // 40 queries never reach a 41st lookup: the connection is gone.
    pair.client.auth_publickey("git", &alice);
    pair.drive();
    assert!(!pair.events.contains(&Event::AuthSuccess));
}

#[test]
fn other_methods_are_refused() {
    let alice = ed25519(1, "alice");
    for method in [
        "password",
        "keyboard-interactive",
        "hostbased",
        "gssapi-with-mic",
    ] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        ready(&mut pair);
        let mut payload = vec![numbers::USERAUTH_REQUEST];
        for s in ["git", "ssh-connection", method] {
            wire::put_string(&mut payload, s.as_bytes());
        }
        wire::put_bool(&mut payload, false);
        wire::put_string(&mut payload, b"hunter2");
        pair.client.send_raw(&payload);
        pair.drive();
        assert_eq!(
            pair.events.last(),
            Some(&Event::AuthFailure {
                methods: "publickey".into(),
                partial: false
            })
        );
        assert!(pair.server.identity().is_none());
    }
}

#[test]
fn a_signature_over_another_session_or_by_another_key_is_refused() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    // Claim alice's key but sign with another one.
    let other = ed25519(3, "other");
    let blob = ssh_encoding::Encode::encode_vec(alice.public_key().key_data()).unwrap();
    pair.client.auth_signed("git", "ssh-ed25519", &blob, &other);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    // A signature made for another session id.
    let data = gitmouth_core::auth::signed_data(b"another session", b"git", "ssh-ed25519", &blob);
    let sig: ssh_key::Signature = signature::Signer::try_sign(&alice, &data).unwrap();
    let mut payload = vec![numbers::USERAUTH_REQUEST];
    for s in ["git", "ssh-connection", "publickey"] {
        wire::put_string(&mut payload, s.as_bytes());
    }
    wire::put_bool(&mut payload, true);
    wire::put_string(&mut payload, b"ssh-ed25519");
    wire::put_string(&mut payload, &blob);
    wire::put_string(
        &mut payload,
        &ssh_encoding::Encode::encode_vec(&sig).unwrap(),
    );
    pair.client.send_raw(&payload);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert!(pair.server.identity().is_none());
}

#[test]
fn identity_comes_only_from_the_key_that_signed() {
    // CVE-2024-45337: query key B, then sign with key A → the user is A.
    let alice = ed25519(1, "alice");
    let bob = ed25519(2, "bob");
    let mut pair = Pair::new(server_config(&[&alice, &bob]), epoch());
    ready(&mut pair);
    pair.client
        .auth_query("git", bob.public_key(), "ssh-ed25519");
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::PkOk));
    pair.client.auth_publickey("git", &alice);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::AuthSuccess));
    assert_eq!(pair.server.identity().unwrap().user, "alice");

    // Query B, then sign with an unknown C → refused.
    let carol = ed25519(3, "carol");
    let mut pair = Pair::new(server_config(&[&alice, &bob]), epoch());
    ready(&mut pair);
    pair.client
        .auth_query("git", bob.public_key(), "ssh-ed25519");
    pair.drive();
    pair.client.auth_publickey("git", &carol);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert!(pair.server.identity().is_none());
}

#[test]
fn server_only_messages_from_the_client_end_the_connection() {
    // CVE-2018-10933: a client sending USERAUTH_SUCCESS is never
    // authenticated.
    let alice = ed25519(1, "alice");
    for number in [
        numbers::USERAUTH_SUCCESS,
        numbers::USERAUTH_FAILURE,
        numbers::USERAUTH_PK_OK,
    ] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        ready(&mut pair);
        pair.client.send_raw(&[number, 0, 0, 0, 0, 0]);
        pair.client.open_session(1 << 20, 32768);
        pair.drive();
        assert_eq!(
            disconnected(&pair),
            Some(DisconnectReason::ProtocolError),
            "message {number}"
        );
        assert!(pair.server.identity().is_none());
        assert!(!pair.events.contains(&Event::ChannelOpened));
    }
}

#[test]
fn connection_messages_before_authentication_end_the_connection() {
    // CVE-2025-32433, CVE-2018-7750: nothing of the connection protocol
    // is processed before authentication, and no output is produced.
    let alice = ed25519(1, "alice");
    let mut exec = vec![numbers::CHANNEL_REQUEST, 0, 0, 0, 0];
    wire::put_string(&mut exec, b"exec");
    wire::put_bool(&mut exec, true);
    wire::put_string(&mut exec, b"git-upload-pack 'app.git'");
    let mut global = vec![numbers::GLOBAL_REQUEST];
    wire::put_string(&mut global, b"tcpip-forward");
    wire::put_bool(&mut global, true);
    let mut open = vec![numbers::CHANNEL_OPEN];
    wire::put_string(&mut open, b"session");
    open.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 128, 0]);
    for (service_first, payload) in [
        (true, &open),
        (true, &exec),
        (true, &global),
        (false, &open),
    ] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        if service_first {
            ready(&mut pair);
        } else {
            pair.handshake();
        }
        pair.client.send_raw(payload);
        pair.drive();
        assert_eq!(disconnected(&pair), Some(DisconnectReason::ProtocolError));
        let work = pair
            .rt
            .outputs
            .iter()
            .filter(|o| !matches!(o, Output::Close(_)))
            .count();
        assert_eq!(work, 0, "no output before authentication");
        assert!(!pair.events.contains(&Event::ChannelOpened));
    }
}

#[test]
fn malformed_and_unacceptable_keys_are_failures_not_crashes() {
    let alice = ed25519(1, "alice");
    let good = ssh_encoding::Encode::encode_vec(alice.public_key().key_data()).unwrap();
    let mut blobs: Vec<(Vec<u8>, &str)> = Vec::new();
    for cut in 0..good.len() {
        blobs.push((good[..cut].to_vec(), "ssh-ed25519"));
    }
    let mut trailing = good.clone();
    trailing.push(0);
    blobs.push((trailing, "ssh-ed25519"));
    // 31- and 33-byte ed25519 keys.
    for len in [31usize, 33] {
        let mut blob = Vec::new();
        wire::put_string(&mut blob, b"ssh-ed25519");
        wire::put_string(&mut blob, &vec![7; len]);
        blobs.push((blob, "ssh-ed25519"));
    }
    // Right key, wrong algorithm name; SHA-1 RSA; DSA.
    blobs.push((good.clone(), "ecdsa-sha2-nistp256"));
    blobs.push((good.clone(), "ssh-rsa"));
    blobs.push((good.clone(), "ssh-dss"));
    for (blob, alg) in blobs {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        ready(&mut pair);
        let mut payload = vec![numbers::USERAUTH_REQUEST];
        for s in ["git", "ssh-connection", "publickey"] {
            wire::put_string(&mut payload, s.as_bytes());
        }
        wire::put_bool(&mut payload, false);
        wire::put_string(&mut payload, alg.as_bytes());
        wire::put_string(&mut payload, &blob);
        pair.client.send_raw(&payload);
        pair.drive();
        assert!(
            matches!(pair.events.last(), Some(Event::AuthFailure { .. })),
            "{alg} {blob:?}"
        );
        assert!(!pair.events.contains(&Event::PkOk));
    }
}

#[test]
fn the_login_grace_time_ends_an_unauthenticated_connection() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    pair.advance(Duration::from_secs(29));
    assert!(disconnected(&pair).is_none());
    pair.advance(Duration::from_secs(2));
    assert_eq!(disconnected(&pair), Some(DisconnectReason::ByApplication));
    // After authentication the grace time no longer applies.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.login(&alice);
    pair.advance(Duration::from_secs(60));
    assert!(disconnected(&pair).is_none());
}

#[test]
fn a_key_added_later_is_accepted_by_new_lookups() {
    let alice = ed25519(1, "alice");
    let bob = ed25519(2, "bob");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    // The runtime's keys change (the file was re-read): the session asks
    // again and is answered from the new set.
    pair.rt.keys = gitmouth_core::test_util::authorized(&[&alice, &bob]);
    pair.client.auth_publickey("git", &bob);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::AuthSuccess));
}

#[test]
fn unknown_message_numbers_before_authentication_end_the_connection() {
    let alice = ed25519(1, "alice");
    for number in [85u8, 120, 200] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        ready(&mut pair);
        pair.client.send_raw(&[number, 1, 2, 3]);
        pair.drive();
        assert_eq!(
            disconnected(&pair),
            Some(DisconnectReason::ProtocolError),
            "message {number}"
        );
    }
}
