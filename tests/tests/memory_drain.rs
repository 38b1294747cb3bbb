//! Draining (`Input::Drain`, what the first SIGTERM sends every session),
//! in memory with virtual time: a command in progress finishes and the
//! connection closes after it; a new command is refused meanwhile; one
//! still running at the drain timeout is stopped with a message (and, where
//! git still waits for the server's first words, an `ERR` pkt-line); an idle
//! connection closes at once; a shutdown during the drain stops at once.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::server::{Input, Output};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_tests::epoch;

const REPO: &str = "/srv/repos/app.git";

fn running() -> Pair {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.script = Script::default();
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack '/app.git'", true);
    pair.drive();
    assert!(pair.rt.process.is_some(), "git started");
    pair
}

fn drain(pair: &mut Pair) {
    let now = pair.now;
    pair.server.handle_input(now, Input::Drain);
    pair.drive();
}

fn disconnected(pair: &Pair) -> Option<(DisconnectReason, String)> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason,
            description,
        })) => Some((reason, description)),
        _ => None,
    }
}

#[test]
fn a_command_in_progress_finishes_then_the_connection_closes() {
    let mut pair = running();
    drain(&mut pair);
    assert!(disconnected(&pair).is_none(), "cut while git ran");
    // Half a minute of virtual time less a second: still running.
    let deadline = pair.now + Duration::from_secs(29);
    while pair.server.poll_timeout().is_some_and(|at| at < deadline) {
        pair.step_to_next_deadline();
    }
    assert!(pair.now < deadline);
    assert!(disconnected(&pair).is_none());
    assert!(!pair.rt.process.as_ref().unwrap().exited());
    // The push ends normally: its status reaches the client, then the
    // connection closes.
    pair.client.send_eof();
    pair.drive();
    assert_eq!(pair.exit_status(), Some(0));
    assert!(
        pair.received().1.is_empty(),
        "no message for a finished push"
    );
    pair.client.send_close();
    pair.drive();
    let (reason, why) = disconnected(&pair).expect("closed once drained");
    assert_eq!(reason, DisconnectReason::ByApplication);
    assert!(why.contains("restarting"), "{why}");
}

#[test]
fn a_new_command_is_refused_while_draining() {
    let mut pair = running();
    drain(&mut pair);
    assert!(matches!(pair.open_channel(5), Event::ChannelOpened));
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(err.contains("The server is restarting"), "{err}");
    assert_eq!(pair.exit_status(), Some(1));
    assert!(
        disconnected(&pair).is_none(),
        "the first command still runs"
    );
}

#[test]
fn git_refused_while_draining_reads_an_err_pkt_line_and_a_shell_does_not() {
    let mut pair = running();
    drain(&mut pair);
    assert!(matches!(pair.open_channel(5), Event::ChannelOpened));
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    // git still waits for the server's first words: it reads the
    // refusal as `fatal: remote error: The server is restarting; ...`.
    let out = String::from_utf8(pair.received().0).unwrap();
    assert!(
        out.get(4..)
            .unwrap()
            .starts_with("ERR The server is restarting; try again in a moment. (session "),
        "{out:?}"
    );
    assert_eq!(usize::from_str_radix(&out[..4], 16).unwrap(), out.len());
    // A shell (`ssh host`) reads no pkt-lines: only the stderr line.
    let before = pair.received().0.len();
    assert!(matches!(pair.open_channel(6), Event::ChannelOpened));
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    assert_eq!(pair.received().0.len(), before);
    let err = String::from_utf8(pair.received().1).unwrap();
    assert_eq!(err.matches("The server is restarting").count(), 2, "{err}");
}

#[test]
fn a_push_parked_at_the_drain_timeout_reads_an_err_pkt_line() {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    // Before `git init`'s own time limit.
    config.drain_timeout = Duration::from_secs(10);
    let mut pair = Pair::new(config, epoch());
    pair.rt.repos.insert(REPO.into());
    // `git init` of a push-to-create hangs: nothing went to git yet when
    // the drain times out.
    pair.rt.hold_init = true;
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack '/fresh.git'", true);
    pair.drive();
    assert!(pair.rt.held_repo.is_some());
    drain(&mut pair);
    while pair.exit_status().is_none() && pair.step_to_next_deadline() {}
    assert_eq!(pair.exit_status(), Some(1));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(err.starts_with(" ! The server is restarting"), "{err}");
    let out = String::from_utf8(pair.received().0).unwrap();
    assert!(
        out.get(4..)
            .unwrap()
            .starts_with("ERR The server is restarting"),
        "{out:?}"
    );
}

#[test]
fn a_command_still_running_at_the_drain_timeout_is_stopped() {
    let mut pair = running();
    let started = pair.now;
    drain(&mut pair);
    while pair.exit_status().is_none() && pair.step_to_next_deadline() {}
    assert_eq!(pair.exit_status(), Some(1));
    assert_eq!(pair.now - started, Duration::from_secs(30));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(
        err.starts_with(" ! The server is restarting; try again in a moment.\n"),
        "{err}"
    );
    assert!(pair.run_to_end(100), "the session did not end");
}

#[test]
fn an_idle_connection_closes_at_once() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.login(&alice);
    drain(&mut pair);
    let (reason, why) = disconnected(&pair).expect("closed at once");
    assert_eq!(reason, DisconnectReason::ByApplication);
    assert!(why.contains("restarting"), "{why}");
    // And one that has not logged in yet.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.handshake();
    drain(&mut pair);
    assert!(disconnected(&pair).is_some());
}

#[test]
fn a_shutdown_during_the_drain_stops_at_once() {
    let mut pair = running();
    drain(&mut pair);
    let now = pair.now;
    pair.server.handle_input(now, Input::Shutdown);
    pair.drive();
    assert_eq!(pair.exit_status(), Some(1));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(err.contains("The server is restarting"), "{err}");
}
