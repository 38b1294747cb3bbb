//! Server keepalives in memory, with virtual time: a silent client is
//! probed, a live one answers and stays, a dead one is dropped and leaves
//! nothing running, and no probe goes out in the middle of a key exchange.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::server::{ExitStatus, Output, ServerConfig, Signal};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_tests::epoch;

const REPO: &str = "/srv/repos/app.git";

fn config(interval: u64, count_max: u32) -> (ServerConfig, ssh_key::PrivateKey) {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.keepalive_interval = Duration::from_secs(interval);
    config.keepalive_count_max = count_max;
    // Idle connections with no channel are what these tests probe.
    config.unused_timeout = Duration::ZERO;
    (config, alice)
}

fn probes(pair: &Pair) -> usize {
    pair.events
        .iter()
        .filter(|e| matches!(e, Event::GlobalRequest(name) if name == "keepalive@openssh.com"))
        .count()
}

fn dead_client_close(pair: &Pair) -> bool {
    matches!(
        pair.server_close(),
        Some(Output::Close(CloseReason::Sent { reason: DisconnectReason::ByApplication, description }))
            if description == "keepalive timeout"
    )
}

#[test]
fn a_live_idle_client_is_probed_and_stays_connected() {
    let (config, alice) = config(15, 3);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.run_for(Duration::from_secs(300));
    // One probe per silent interval, each answered.
    assert!(probes(&pair) >= 19, "{} probes", probes(&pair));
    assert!(
        !pair.server.transport().is_closed(),
        "{:?}",
        pair.server_close()
    );
}

#[test]
fn a_frozen_client_is_dropped_after_count_max_unanswered_probes() {
    let (config, alice) = config(2, 2);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    let frozen_at = pair.now;
    // SIGSTOP: the client neither reads nor writes.
    pair.client_stalled = true;
    pair.server_stalled = true;
    pair.run_for(Duration::from_secs(5));
    assert!(
        !pair.server.transport().is_closed(),
        "two probes out, not yet dead"
    );
    pair.run_for(Duration::from_secs(2));
    assert!(dead_client_close(&pair), "{:?}", pair.server_close());
    assert!(pair.now - frozen_at <= Duration::from_secs(7));
    assert!(pair.server.is_finished());
    // Nothing is left to wake the runtime for: no spin on a dead connection.
    assert!(pair.server.poll_timeout().is_none_or(|at| at > pair.now),);
}

#[test]
fn a_dead_client_with_a_command_running_stops_it_and_leaves_nothing() {
    let (config, alice) = config(2, 2);
    let mut pair = Pair::new(config, epoch());
    pair.rt.script = Script {
        exit_on_eof: None,
        status: ExitStatus::Code(0),
        ..Script::default()
    };
    pair.rt.script.reads_stdin = true;
    pair.rt.script.exit_on_eof = Some(ExitStatus::Code(0));
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    assert!(pair.rt.process.is_some(), "git started");
    pair.client_stalled = true;
    pair.server_stalled = true;
    pair.run_for(Duration::from_secs(7));
    assert!(dead_client_close(&pair), "{:?}", pair.server_close());
    let process = pair.rt.process.as_ref().unwrap();
    assert_eq!(process.signals.first(), Some(&Signal::Term));
    // The stand-in git exits on SIGTERM; then the session is over.
    pair.run_for(Duration::from_secs(10));
    assert!(pair.server.is_finished());
    assert!(pair.server.poll_timeout().is_none_or(|at| at > pair.now),);
}

#[test]
fn traffic_from_the_client_postpones_the_probe() {
    let (config, alice) = config(15, 3);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    for _ in 0..10 {
        pair.advance(Duration::from_secs(10));
        // Any packet counts, here an ignored global request of its own.
        pair.client.send_raw(b"\x50\x00\x00\x00\x04ping\x00");
        pair.drive();
    }
    assert_eq!(probes(&pair), 0);
    assert!(!pair.server.transport().is_closed());
}

#[test]
fn no_probe_goes_out_during_a_key_exchange() {
    let (config, alice) = config(2, 3);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    // The client starts a re-key and then holds its next message back:
    // the server has answered KEXINIT, the exchange stays open.
    pair.client.rekey(pair.now);
    pair.step();
    pair.client_stalled = true;
    pair.drive();
    let before = probes(&pair);
    pair.advance(Duration::from_secs(3));
    assert!(pair.server.transport().in_kex());
    assert_eq!(probes(&pair), before, "a probe went out mid key exchange");
    // The exchange finishes: the probe that fell due goes out after it.
    pair.client_stalled = false;
    pair.drive();
    assert!(!pair.server.transport().in_kex());
    pair.advance(Duration::from_secs(3));
    assert!(probes(&pair) > before);
    assert!(
        !pair.server.transport().is_closed(),
        "{:?}",
        pair.server_close()
    );
}

#[test]
fn an_interval_of_zero_sends_no_probe() {
    let (config, alice) = config(0, 3);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    pair.client_stalled = true;
    pair.server_stalled = true;
    pair.run_for(Duration::from_secs(120));
    assert_eq!(probes(&pair), 0);
    assert!(!dead_client_close(&pair));
}
