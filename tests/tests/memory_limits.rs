//! The limits on authenticated connections, in memory with virtual time:
//! a connection that never opens a channel is closed after the unused
//! connection timeout, and what only shows the client alive (IGNORE,
//! DEBUG, keepalives either way) is not use of the connection; a user past
//! the per-user cap is ended right after authentication; a startup that
//! admission evicts is told "too many connections".

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::admission::Outcome;
use gitmouth_core::server::{Input, Output, ServerConfig};
use gitmouth_core::test_util::{Pair, ed25519, server_config};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_tests::epoch;

const REPO: &str = "/srv/repos/app.git";

fn config(unused: u64, idle: u64) -> (ServerConfig, ssh_key::PrivateKey) {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.unused_timeout = Duration::from_secs(unused);
    config.idle_timeout = Duration::from_secs(idle);
    // Keepalives are tried on their own below.
    config.keepalive_interval = Duration::ZERO;
    (config, alice)
}

/// How the server closed, if it sent a DISCONNECT.
fn sent(pair: &Pair) -> Option<(DisconnectReason, String)> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason,
            description,
        })) => Some((reason, description)),
        _ => None,
    }
}

/// SSH_MSG_IGNORE with some bytes.
const IGNORE: &[u8] = b"\x02\x00\x00\x00\x03abc";
/// SSH_MSG_DEBUG, not to be displayed.
const DEBUG: &[u8] = b"\x04\x00\x00\x00\x00\x05hello\x00\x00\x00\x00";
/// The OpenSSH client's keepalive (ServerAliveInterval).
const KEEPALIVE: &[u8] = b"\x50\x00\x00\x00\x15keepalive@openssh.com\x01";

/// Sends `message` every `every` for `total`, firing the server's
/// deadlines in between.
fn chatter(pair: &mut Pair, message: &[u8], every: Duration, total: Duration) {
    let end = pair.now + total;
    while pair.now < end && !pair.server.transport().is_closed() {
        pair.run_for(every);
        if !pair.client.is_closed() {
            pair.client.send_raw(message);
            pair.drive();
        }
    }
}

#[test]
fn a_connection_that_never_opens_a_channel_is_closed_after_the_unused_timeout() {
    let (config, alice) = config(60, 3600);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    let logged_in = pair.now;
    // IGNORE, DEBUG and keepalives every 2 s keep nothing alive.
    for message in [IGNORE, DEBUG, KEEPALIVE] {
        chatter(
            &mut pair,
            message,
            Duration::from_secs(2),
            Duration::from_secs(18),
        );
    }
    assert!(!pair.server.transport().is_closed(), "{:?}", sent(&pair));
    while !pair.server.transport().is_closed() && pair.now - logged_in < Duration::from_secs(70) {
        pair.run_for(Duration::from_millis(500));
    }
    assert_eq!(
        sent(&pair),
        Some((
            DisconnectReason::ByApplication,
            "unused connection timeout".into()
        ))
    );
    let after = pair.now - logged_in;
    assert!(
        after >= Duration::from_secs(60) && after <= Duration::from_millis(60_500),
        "{after:?}"
    );
    // An authenticated user: no penalty.
    assert_eq!(pair.server.outcome(), Outcome::Authenticated);
}

#[test]
fn ignore_debug_and_keepalives_are_not_activity_for_the_idle_timeout() {
    for message in [IGNORE, DEBUG, KEEPALIVE] {
        let (config, alice) = config(0, 30);
        let mut pair = Pair::new(config, epoch());
        pair.rt.repos.insert(REPO.into());
        pair.rt.script.reads_stdin = true;
        pair.open(&alice, 1 << 20, 32768);
        pair.client.exec(b"git-upload-pack '/app.git'", true);
        pair.drive();
        assert!(pair.rt.process.is_some(), "git started");
        let started = pair.now;
        chatter(
            &mut pair,
            message,
            Duration::from_secs(2),
            Duration::from_secs(40),
        );
        assert!(
            pair.server.transport().is_closed() || pair.received().1.ends_with(b"\n"),
            "the idle limit must fire despite {message:?}"
        );
        let (_, stderr) = pair.received();
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(
            stderr.contains("nothing was sent or received for 30 seconds"),
            "{stderr}"
        );
        assert!(pair.now - started <= Duration::from_secs(40));
    }
}

#[test]
fn an_open_channel_holds_the_unused_timeout_off_and_its_close_restarts_it() {
    let (config, alice) = config(60, 3600);
    let mut pair = Pair::new(config, epoch());
    pair.rt.repos.insert(REPO.into());
    pair.rt.script.reads_stdin = true;
    pair.open(&alice, 1 << 20, 32768);
    // A channel is open for longer than the unused timeout.
    pair.run_for(Duration::from_secs(200));
    assert!(!pair.server.transport().is_closed(), "{:?}", sent(&pair));
    // Once it closes, the connection is unused again.
    pair.client.send_close();
    pair.drive();
    let closed = pair.now;
    pair.run_for(Duration::from_secs(59));
    assert!(!pair.server.transport().is_closed(), "{:?}", sent(&pair));
    pair.run_for(Duration::from_secs(2));
    assert_eq!(
        sent(&pair).map(|s| s.1),
        Some("unused connection timeout".into())
    );
    assert!(pair.now - closed <= Duration::from_secs(61));
}

#[test]
fn zero_means_no_unused_timeout() {
    let (config, alice) = config(0, 3600);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.run_for(Duration::from_secs(3000));
    assert!(!pair.server.transport().is_closed(), "{:?}", sent(&pair));
}

#[test]
fn a_user_past_the_per_user_cap_is_ended_right_after_authentication() {
    let (mut config, alice) = config(0, 3600);
    config.per_user_max_connections = 2;
    // At the cap: served.
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.server
        .handle_input(pair.now, Input::UserConnections(2));
    pair.drive();
    assert!(!pair.server.transport().is_closed());
    // Past it: told, and not taken for a failure.
    let (mut config, alice) = self::config(0, 3600);
    config.per_user_max_connections = 2;
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.server
        .handle_input(pair.now, Input::UserConnections(3));
    pair.drive();
    assert_eq!(
        sent(&pair),
        Some((
            DisconnectReason::TooManyConnections,
            "too many connections for user alice (at most 2 at once)".into()
        ))
    );
    assert_eq!(pair.server.outcome(), Outcome::Authenticated);
    // Zero is no limit.
    let (mut config, alice) = self::config(0, 3600);
    config.per_user_max_connections = 0;
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.server
        .handle_input(pair.now, Input::UserConnections(10_000));
    pair.drive();
    assert!(!pair.server.transport().is_closed());
}

#[test]
fn an_evicted_startup_is_told_too_many_connections_and_an_authenticated_one_is_not() {
    let (config, alice) = config(0, 3600);
    let mut pair = Pair::new(config, epoch());
    pair.handshake();
    pair.server.handle_input(pair.now, Input::Evicted);
    pair.drive();
    assert_eq!(
        sent(&pair),
        Some((
            DisconnectReason::TooManyConnections,
            "too many connections".into()
        ))
    );
    assert_eq!(pair.server.outcome(), Outcome::NoAuth);
    let (config, _) = self::config(0, 3600);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.server.handle_input(pair.now, Input::Evicted);
    pair.drive();
    assert!(!pair.server.transport().is_closed());
}
