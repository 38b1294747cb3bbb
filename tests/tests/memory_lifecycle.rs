//! Properties of the whole session lifecycle, in memory with virtual time:
//! random orders and timings of client bytes, requests, hang-ups, signals,
//! shutdowns, git's behaviour and timer firings never panic, never start
//! git before the user is authenticated and the command authorised, always
//! release the push lock exactly once, leave no git process running, and
//! always end with the session closed; and however the client's stream is
//! split, the user sees the same outcome.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::server::{ExitStatus, Input};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;
use proptest::prelude::*;

const REPO: &str = "/srv/repos/app.git";

/// One thing that happens to a session.
#[derive(Debug, Clone)]
enum Step {
    /// The client asks for this command.
    Exec(&'static [u8]),
    /// The client sends `GIT_PROTOCOL` (valid or not).
    Env(&'static str),
    /// The client writes this much data.
    Data(u16),
    /// The client sends EOF.
    Eof,
    /// The client closes the channel.
    CloseChannel,
    /// The client sends a `signal` request.
    SignalTerm,
    /// The client's socket goes away.
    HangUp,
    /// The server is stopping.
    Shutdown,
    /// Virtual time moves on, firing what falls due.
    Advance(u16),
    /// The client stops reading and writing for a while.
    Stall(bool),
    /// Bytes move until nothing more happens.
    Drive,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop_oneof![
            Just(&b"git-receive-pack 'app.git'"[..]),
            Just(&b"git-upload-pack '/app.git'"[..]),
            Just(&b"git-upload-pack 'missing.git'"[..]),
            Just(&b"rm -rf /"[..]),
        ]
        .prop_map(Step::Exec),
        prop_oneof![Just("version=2"), Just("bogus")].prop_map(Step::Env),
        (0u16..20_000).prop_map(Step::Data),
        Just(Step::Eof),
        Just(Step::CloseChannel),
        Just(Step::SignalTerm),
        Just(Step::HangUp),
        Just(Step::Shutdown),
        prop_oneof![1u16..4, 4u16..20, 20u16..700].prop_map(Step::Advance),
        any::<bool>().prop_map(Step::Stall),
        Just(Step::Drive),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(
            |(echo, reads_stdin, exits_on_eof, ignore_term, status)| Script {
                stdout: b"0000".to_vec(),
                stderr: b"remote: hello\n".to_vec(),
                echo,
                reads_stdin,
                exit_on_eof: exits_on_eof.then_some(ExitStatus::Code(u32::from(status))),
                status: ExitStatus::Code(u32::from(status)),
                ignore_term,
            },
        )
}

/// What the user saw: stdout, stderr and the exit status.
type Outcome = (Vec<u8>, Vec<u8>, Option<u32>);

/// Plays `steps` against a fresh session, then ends it as a runtime would
/// (the client goes, deadlines fire), checking the invariants on the way.
fn play(steps: &[Step], script: &Script, chunk: usize) -> Outcome {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.script = script.clone();
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.chunk = chunk;
    for s in steps {
        match s {
            Step::Exec(cmd) => pair.client.exec(cmd, true),
            Step::Env(value) => pair.client.env("GIT_PROTOCOL", value, true),
            Step::Data(n) => {
                let data: Vec<u8> = (0..*n).map(|i| i as u8).collect();
                pair.client.send_data(&data);
            }
            Step::Eof => pair.client.send_eof(),
            Step::CloseChannel => pair.client.send_close(),
            Step::SignalTerm => {
                let mut extra = Vec::new();
                gitmouth_core::wire::put_string(&mut extra, b"TERM");
                pair.client.channel_request("signal", false, &extra);
            }
            Step::HangUp => {
                let now = pair.now;
                pair.server.handle_input(now, Input::PeerClosed);
            }
            Step::Shutdown => {
                let now = pair.now;
                pair.server.handle_input(now, Input::Shutdown);
            }
            Step::Advance(secs) => pair.advance(Duration::from_secs(u64::from(*secs))),
            Step::Stall(on) => {
                pair.client_stalled = *on;
                pair.server_stalled = *on;
            }
            Step::Drive => pair.drive(),
        }
        pair.drive();
        check_running_invariants(&pair);
    }
    // The end: the client goes away, and time runs until the session is
    // over (a stubborn git is killed after its grace period).
    pair.client_stalled = false;
    pair.server_stalled = false;
    pair.drive();
    let outcome = {
        let (out, err) = pair.received();
        (out, err, pair.exit_status())
    };
    let now = pair.now;
    pair.server.handle_input(now, Input::PeerClosed);
    pair.drive();
    for _ in 0..50 {
        if pair.server.is_finished() {
            break;
        }
        match pair.server.poll_timeout() {
            Some(at) => {
                assert!(at >= pair.now, "a deadline in the past");
                let d = at - pair.now;
                pair.advance(d);
            }
            None => pair.drive(),
        }
    }
    assert!(
        pair.server.is_finished(),
        "the session never ended: {:?} {:?} {:?}",
        pair.server.transport().close_reason(),
        pair.rt.process,
        pair.events
    );
    assert!(pair.server.transport().is_closed());
    assert!(pair.rt.held.is_empty(), "a push lock outlived the session");
    assert_eq!(
        pair.rt.lock_grants, pair.rt.lock_releases,
        "every grant is released exactly once"
    );
    assert!(
        pair.rt.held_slots.is_empty(),
        "a command slot outlived the session"
    );
    assert_eq!(
        pair.rt.slot_grants, pair.rt.slot_releases,
        "every command slot is given back exactly once"
    );
    if let Some(p) = &pair.rt.process {
        assert!(p.exited(), "git is still running after the session ended");
    }
    assert!(pair.server.poll_output().is_none());
    outcome
}

fn check_running_invariants(pair: &Pair) {
    // git starts only for an authenticated user and an authorised
    // command: a git command on an existing repository (or a push).
    if let Some(p) = &pair.rt.process {
        assert!(
            pair.server.identity().is_some(),
            "git before authentication"
        );
        assert_eq!(p.spec.program, "git");
        // `git -c <setting> <subcommand> <repository>`.
        let sub = p.spec.args[2].to_str().unwrap();
        assert!(sub == "upload-pack" || sub == "receive-pack", "{sub}");
        assert_eq!(p.spec.args[3], REPO);
    }
    // At most one push holds the lock, and only while git is about.
    assert!(pair.rt.held.len() <= 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_random_inputs_always_end_closed_with_everything_released(
        steps in proptest::collection::vec(step(), 0..24),
        script in script(),
    ) {
        play(&steps, &script, usize::MAX);
    }

    #[test]
    fn lifecycle_any_split_of_the_client_stream_gives_the_same_outcome(
        steps in proptest::collection::vec(
            // Hang-ups and stalls interrupt the stream at a point that
            // depends on the split: the split property holds without them.
            step().prop_filter("no interruption", |s| !matches!(
                s, Step::HangUp | Step::Stall(_) | Step::Shutdown
            )),
            0..16,
        ),
        script in script(),
        chunk in 1usize..2000,
    ) {
        let whole = play(&steps, &script, usize::MAX);
        let split = play(&steps, &script, chunk);
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn lifecycle_a_push_then_a_hang_up_releases_the_lock_once() {
    let script = Script {
        exit_on_eof: None,
        ..Script::default()
    };
    play(
        &[
            Step::Exec(b"git-receive-pack 'app.git'"),
            Step::Data(100),
            Step::HangUp,
        ],
        &script,
        usize::MAX,
    );
    // And an Event import kept honest: a clone that runs to its end.
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.client.send_eof();
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
}

#[test]
fn lifecycle_an_exec_after_shutdown_is_not_run() {
    // Found by the property above: a shutdown closes the idle channel with
    // a message; an exec that follows must start nothing.
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    let now = pair.now;
    pair.server.handle_input(now, Input::Shutdown);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelReply(false)));
    assert!(
        pair.rt.process.is_none(),
        "git started after the channel closed"
    );
}
