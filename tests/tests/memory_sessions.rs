//! Several session channels on one connection, in memory: up to
//! `max_sessions` at once, one past the limit refused while the others go
//! on, a slot freed when a channel is over, and the connection kept until
//! the client ends it.

#![allow(clippy::unwrap_used)]

use gitmouth_core::client::Event;
use gitmouth_core::connection::msg::open_failure;
use gitmouth_core::server::Output;
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;

const REPO: &str = "/srv/repos/app.git";

fn spawned(pair: &Pair) -> usize {
    pair.rt
        .outputs
        .iter()
        .filter(|o| matches!(o, Output::Spawn { .. }))
        .count()
}

#[test]
fn sessions_up_to_the_limit_then_refused_then_freed() {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.max_sessions = 2;
    let mut pair = Pair::new(config, epoch());
    pair.rt.script = Script::default();
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);

    // A second session at once: opened (the client now talks to it).
    assert_eq!(pair.open_channel(1), Event::ChannelOpened);
    // A third: refused as OpenSSH's MaxSessions refuses it.
    match pair.open_channel(2) {
        Event::ChannelOpenFailed {
            reason,
            description,
        } => {
            assert_eq!(reason, open_failure::ADMINISTRATIVELY_PROHIBITED);
            assert!(description.contains("too many sessions"), "{description}");
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(pair.server_close().is_none(), "the connection went on");

    // The second channel runs a command to its end while the first stays
    // open.
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    assert_eq!(spawned(&pair), 1);
    pair.client.send_eof();
    pair.drive();
    assert_eq!(pair.exit_status(), Some(0));
    assert!(pair.events.contains(&Event::Closed));
    pair.client.send_close();
    pair.drive();
    assert!(!pair.server.is_finished());

    // Its slot is free again: a new session opens and runs.
    assert_eq!(pair.open_channel(3), Event::ChannelOpened);
    pair.rt.process = None;
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelReply(true)));
    assert_eq!(spawned(&pair), 2);

    // The client hangs up: everything ends, nothing is left running.
    pair.hang_up();
    assert!(pair.server.is_finished());
}

#[test]
fn sessions_in_sequence_on_one_connection() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    for round in 0..12u32 {
        if round > 0 {
            assert_eq!(pair.open_channel(round), Event::ChannelOpened, "{round}");
        }
        pair.rt.process = None;
        let before = pair.events.len();
        pair.client.exec(b"git-upload-pack '/app.git'", true);
        pair.client.send_eof();
        pair.drive();
        let exited = pair.events[before..].contains(&Event::ExitStatus(0));
        assert!(exited, "round {round}: {:?}", &pair.events[before..]);
        pair.client.send_close();
        pair.drive();
    }
    // Twelve in sequence passed a limit of ten: closed ones do not count.
    assert_eq!(spawned(&pair), 12);
    assert!(pair.server_close().is_none());
}

#[test]
fn the_session_limit_counts_open_channels_only() {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.max_sessions = 1;
    let mut pair = Pair::new(config, epoch());
    pair.open(&alice, 1 << 16, 32768);
    let refused = pair.open_channel(1);
    assert!(
        matches!(
            refused,
            Event::ChannelOpenFailed { reason, .. }
                if reason == open_failure::ADMINISTRATIVELY_PROHIBITED
        ),
        "{refused:?}"
    );
    // A shell is refused with the greeting and the channel closes: the
    // slot is free again.
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    pair.client.send_close();
    pair.drive();
    assert_eq!(pair.open_channel(2), Event::ChannelOpened);
    assert!(!pair.server.is_finished());
}

#[test]
fn a_channel_the_client_never_closes_is_given_up_after_the_close_wait() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 1 << 16, 32768);
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    // The client ignores our CLOSE and has nothing else open: the
    // connection ends once the wait is over, stepping deadline to
    // deadline in virtual time.
    let closed_at = pair.now;
    assert!(pair.run_to_end(10));
    assert!(pair.now - closed_at >= gitmouth_core::connection::CLOSE_WAIT);
}
