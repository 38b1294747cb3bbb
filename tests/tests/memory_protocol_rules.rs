//! The protocol rules OpenSSH keeps and gitmouth now keeps too, in memory:
//! neither the user name nor the service may change between
//! USERAUTH_REQUESTs, at most 20
//! requests of any kind per connection, a channel's maximum packet size of
//! at least 9 bytes, at most 16 UNIMPLEMENTED replies, and a printable
//! US-ASCII version string.

#![allow(clippy::unwrap_used)]

use gitmouth_core::auth::server::MAX_AUTH_REQUESTS;
use gitmouth_core::client::Event;
use gitmouth_core::connection::MIN_REMOTE_PACKET;
use gitmouth_core::server::{Input, Output};
use gitmouth_core::test_util::{Pair, ed25519, server_config};
use gitmouth_core::transport::MAX_UNIMPLEMENTED;
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_core::wire::{self, numbers};
use gitmouth_tests::epoch;

fn sent_by(pair: &Pair) -> Option<(DisconnectReason, String)> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason,
            description,
        })) => Some((reason, description)),
        _ => None,
    }
}

fn ready(pair: &mut Pair) {
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    assert!(pair.events.contains(&Event::ServiceAccepted));
}

#[test]
fn a_change_of_user_name_disconnects() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    pair.client.auth_none("git");
    pair.drive();
    pair.client
        .auth_query("git", alice.public_key(), "ssh-ed25519");
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::PkOk));
    assert!(sent_by(&pair).is_none());
    // The same key under another name: refused outright, as OpenSSH does.
    pair.client.auth_publickey("root", &alice);
    pair.drive();
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ProtocolError);
    assert!(why.contains("change of user name"), "{why}");
    assert!(pair.server.identity().is_none());
    assert!(!pair.events.contains(&Event::AuthSuccess));
}

#[test]
fn a_change_of_service_disconnects() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    pair.client
        .auth_query("git", alice.public_key(), "ssh-ed25519");
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::PkOk));
    // The same user, another service: refused outright, as OpenSSH does
    // ("Change of username or service not allowed").
    let mut raw = Vec::new();
    wire::put_u8(&mut raw, numbers::USERAUTH_REQUEST);
    wire::put_string(&mut raw, b"git");
    wire::put_string(&mut raw, b"ssh-userauth");
    wire::put_string(&mut raw, b"none");
    pair.client.send_raw(&raw);
    pair.drive();
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ProtocolError);
    assert!(why.contains("change of user name or service"), "{why}");
    assert!(pair.server.identity().is_none());
    // A first request for a service other than ssh-connection is not a
    // change: that service is not offered.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    pair.client.send_raw(&raw);
    pair.drive();
    let (reason, _) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ServiceNotAvailable);
}

#[test]
fn at_most_twenty_authentication_requests() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    // Queries that find a registered key are no failures, so only the
    // request cap ends this.
    for n in 1..=MAX_AUTH_REQUESTS {
        pair.client
            .auth_query("git", alice.public_key(), "ssh-ed25519");
        pair.drive();
        assert_eq!(pair.events.last(), Some(&Event::PkOk), "request {n}");
    }
    assert!(sent_by(&pair).is_none());
    pair.client
        .auth_query("git", alice.public_key(), "ssh-ed25519");
    pair.drive();
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::NoMoreAuthMethods);
    assert!(why.contains("too many authentication requests"), "{why}");
    // Twenty is enough for a login after nineteen requests.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    ready(&mut pair);
    for _ in 1..MAX_AUTH_REQUESTS {
        pair.client
            .auth_query("git", alice.public_key(), "ssh-ed25519");
        pair.drive();
    }
    pair.client.auth_publickey("git", &alice);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::AuthSuccess));
}

#[test]
fn a_maximum_packet_below_nine_bytes_is_refused() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.login(&alice);
    for max_packet in [0, 1, MIN_REMOTE_PACKET - 1] {
        let mut open = vec![numbers::CHANNEL_OPEN];
        wire::put_string(&mut open, b"session");
        for value in [7, 1 << 20, max_packet] {
            wire::put_u32(&mut open, value);
        }
        pair.client.send_raw(&open);
        pair.drive();
        match pair.events.last() {
            Some(Event::ChannelOpenFailed { description, .. }) => {
                assert!(description.contains("maximum packet size"), "{description}")
            }
            other => panic!("max packet {max_packet}: {other:?}"),
        }
    }
    assert!(sent_by(&pair).is_none());
    // Nine bytes is allowed (and data then goes out in packets that small).
    pair.client.open_session(1 << 20, MIN_REMOTE_PACKET);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelOpened));
}

#[test]
fn sixteen_unimplemented_replies_then_the_connection_closes() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.login(&alice);
    // 200 is in the range RFC 4250 leaves for local extensions.
    for n in 1..MAX_UNIMPLEMENTED {
        pair.client.send_raw(&[200, 1, 2, 3]);
        pair.drive();
        assert!(sent_by(&pair).is_none(), "closed after {n}");
    }
    pair.client.send_raw(&[200, 1, 2, 3]);
    pair.drive();
    let (reason, why) = sent_by(&pair).expect("disconnected");
    assert_eq!(reason, DisconnectReason::ProtocolError);
    assert!(why.contains("unimplemented"), "{why}");
}

#[test]
fn a_version_string_must_be_printable_ascii() {
    let alice = ed25519(1, "alice");
    for line in [
        &b"SSH-2.0-evil\x1b[2Jclient\r\n"[..],
        b"SSH-2.0-tab\tclient\r\n",
        b"SSH-2.0-del\x7f\r\n",
        b"SSH-2.0-caf\xc3\xa9\r\n",
        b"SSH-2.0-bell\x07\r\n",
    ] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.client_stalled = true;
        pair.drive();
        let now = pair.now;
        pair.server.handle_input(now, Input::Received(line));
        pair.drive();
        // No packet can be sent before versions are exchanged: the
        // connection just closes, with the reason in the log.
        match pair.server_close() {
            Some(Output::Close(CloseReason::BadVersion(why))) => {
                assert!(why.contains("non-printable"), "{why}")
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
    // Comments after a space are printable and allowed.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.client_stalled = true;
    pair.drive();
    let now = pair.now;
    pair.server.handle_input(
        now,
        Input::Received(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
    );
    pair.drive();
    assert!(pair.server_close().is_none());
}
