//! Limits on git commands, in memory with virtual time: the server's
//! command slots (`--max-commands`, across connections and across the
//! sessions of one connection), given back exactly once on every path; a
//! push that waits in turn for the push lock (`--push-lock-wait`), told
//! every few seconds who holds it and since when, that proceeds when the
//! lock is released or is refused when the wait runs out; and a wait
//! given up (client gone, drain, session limit) leaves nothing held or
//! queued. Where git still waits for the server's first words, a refusal
//! also reaches it as an `ERR` pkt-line.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::lock_table::{Acquired, LockTable, Standing};
use gitmouth_core::server::{Input, LockHeld, Output, ServerConfig};
use gitmouth_core::test_util::{CommandSlots, Pair, PushLocks, ed25519, server_config};
use gitmouth_tests::epoch;
use ssh_key::PrivateKey;

const REPO: &str = "/srv/repos/app.git";
const PUSH: &[u8] = b"git-receive-pack 'app.git'";
const CLONE: &[u8] = b"git-upload-pack 'app.git'";

fn users() -> [PrivateKey; 3] {
    [ed25519(1, "alice"), ed25519(2, "bob"), ed25519(3, "carol")]
}

fn config(wait_secs: u64) -> ServerConfig {
    let [a, b, c] = users();
    let mut config = server_config(&[&a, &b, &c]);
    config.push_lock_wait = Duration::from_secs(wait_secs);
    config
}

/// A connection of one server (sharing its lock table and slots) that
/// runs `command` as `key`'s user.
fn connect(
    config: ServerConfig,
    key: &PrivateKey,
    locks: &PushLocks,
    slots: &CommandSlots,
    command: &[u8],
) -> Pair {
    let mut pair = Pair::new(config, epoch());
    pair.rt.locks = locks.clone();
    pair.rt.slots = slots.clone();
    pair.rt.repos.insert(REPO.into());
    pair.open(key, 1 << 20, 32768);
    pair.client.exec(command, true);
    pair.drive();
    pair
}

fn stderr(pair: &Pair) -> String {
    String::from_utf8(pair.received().1).unwrap()
}

fn stdout(pair: &Pair) -> String {
    String::from_utf8(pair.received().0).unwrap()
}

/// The pkt-line git reads as `remote error: <text>`.
fn assert_err_pkt_line(out: &str, text: &str) {
    assert!(
        out.get(4..)
            .is_some_and(|rest| rest.starts_with(&format!("ERR {text}"))),
        "{out:?}"
    );
    assert_eq!(usize::from_str_radix(&out[..4], 16).unwrap(), out.len());
}

/// Runs a pair until its session ends (its client gone).
fn finish(pair: &mut Pair) {
    pair.hang_up();
    assert!(pair.run_to_end(100), "the session did not end");
}

#[test]
fn a_command_past_max_commands_is_told_the_server_is_busy() {
    let [alice, bob, _] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(1));
    let mut first = connect(config(0), &alice, &locks, &slots, PUSH);
    assert!(first.rt.process.is_some(), "the first command runs");
    assert_eq!(slots.in_use(), 1);

    let mut busy = connect(config(0), &bob, &locks, &slots, CLONE);
    assert!(busy.rt.process.is_none(), "git started past the limit");
    assert_eq!(busy.exit_status(), Some(1));
    let err = stderr(&busy);
    assert!(
        err.starts_with(
            " ! The server is busy (too many git commands at once); try again in a moment.\n ! (session "
        ),
        "{err}"
    );
    assert_err_pkt_line(&stdout(&busy), "The server is busy");
    assert_eq!((busy.rt.slot_grants, busy.rt.slot_refusals), (0, 1));
    // The refused connection stays usable: once the push ends, its next
    // command runs.
    first.client.send_eof();
    first.drive();
    assert_eq!(first.exit_status(), Some(0));
    assert_eq!(slots.in_use(), 0, "the slot outlived the command");
    assert!(matches!(busy.open_channel(5), Event::ChannelOpened));
    busy.client.exec(CLONE, true);
    busy.client.send_eof();
    busy.drive();
    assert!(busy.rt.process.is_some());
    assert_eq!(busy.exit_status(), Some(1), "the first (refused) status");
    finish(&mut busy);
    finish(&mut first);
    assert_eq!(slots.in_use(), 0);
    for pair in [&first, &busy] {
        assert_eq!(pair.rt.slot_grants, pair.rt.slot_releases);
        assert!(pair.rt.held_slots.is_empty());
    }
}

#[test]
fn the_sessions_of_one_connection_count_one_by_one() {
    let [alice, ..] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(1));
    let mut pair = connect(config(0), &alice, &locks, &slots, PUSH);
    assert_eq!(slots.in_use(), 1);
    // A second session of the same connection, past the limit.
    assert!(matches!(pair.open_channel(5), Event::ChannelOpened));
    pair.client.exec(CLONE, true);
    pair.drive();
    let err = stderr(&pair);
    assert!(err.contains("The server is busy"), "{err}");
    assert_eq!(pair.rt.slot_refusals, 1);
    assert_eq!(slots.in_use(), 1);
}

#[test]
fn a_client_that_vanishes_gives_its_slot_back() {
    let [alice, ..] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(2));
    let mut pair = connect(config(0), &alice, &locks, &slots, PUSH);
    assert_eq!(slots.in_use(), 1);
    finish(&mut pair);
    assert_eq!(slots.in_use(), 0);
    assert!(!locks.is_held("app"));
    assert_eq!((pair.rt.slot_grants, pair.rt.slot_releases), (1, 1));
    // And a shell or an invalid command takes none.
    let mut shell = Pair::new(config(0), epoch());
    shell.rt.slots = slots.clone();
    shell.open(&alice, 1 << 20, 32768);
    shell.client.channel_request("shell", true, &[]);
    shell.drive();
    assert!(stderr(&shell).starts_with("Hi alice!"));
    assert!(stdout(&shell).is_empty(), "a shell is no git to read ERR");
    assert_eq!(shell.rt.slot_grants + shell.rt.slot_refusals, 0);
}

#[test]
fn a_second_push_waits_in_turn_then_runs() {
    let [alice, bob, _] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(0));
    let mut first = connect(config(30), &alice, &locks, &slots, PUSH);
    assert!(locks.is_held("app"));
    let mut second = connect(config(30), &bob, &locks, &slots, PUSH);
    assert!(second.rt.process.is_none(), "git started without the lock");
    assert_eq!(locks.waiting("app"), 1);
    // Told at once who holds it, then every five seconds.
    let err = stderr(&second);
    assert_eq!(
        err,
        "-----> Waiting for the push to app by alice (started just now) to finish...\n"
    );
    let start = second.now;
    second.run_for(Duration::from_secs(12));
    let err = stderr(&second);
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(
        err.ends_with("by alice (started 10 seconds ago) to finish...\n"),
        "{err}"
    );
    assert_eq!(second.now - start, Duration::from_secs(12));
    assert!(second.exit_status().is_none());
    // The first push ends: the lock is the second's, and its git runs.
    first.client.send_eof();
    first.drive();
    assert_eq!(first.exit_status(), Some(0));
    second.drive();
    assert!(second.rt.process.is_some(), "the waiting push never ran");
    assert!(locks.is_held("app"));
    assert_eq!(locks.waiting("app"), 0);
    second.client.send_eof();
    second.drive();
    assert_eq!(second.exit_status(), Some(0));
    assert!(stdout(&second).is_empty(), "no ERR for a push that ran");
    // No more progress lines once it runs.
    assert_eq!(stderr(&second).lines().count(), 3);
    assert!(!locks.is_held("app"));
    assert_eq!((second.rt.lock_grants, second.rt.lock_releases), (1, 1));
    assert_eq!(second.rt.lock_withdrawals, 0);
}

#[test]
fn a_push_whose_wait_runs_out_is_refused() {
    let [alice, bob, _] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(0));
    let first = connect(config(30), &alice, &locks, &slots, PUSH);
    let mut second = connect(config(30), &bob, &locks, &slots, PUSH);
    let start = second.now;
    while second.exit_status().is_none() && second.step_to_next_deadline() {}
    assert_eq!(second.now - start, Duration::from_secs(30));
    assert_eq!(second.exit_status(), Some(1));
    let err = stderr(&second);
    assert!(
        err.contains(" ! Another push to app is in progress (started 30 seconds ago by alice).\n"),
        "{err}"
    );
    assert_eq!(err.matches("-----> Waiting").count(), 6, "{err}");
    assert_err_pkt_line(&stdout(&second), "Another push to app is in progress");
    assert!(second.rt.process.is_none());
    assert_eq!(second.rt.lock_withdrawals, 1);
    assert_eq!(locks.waiting("app"), 0, "the refused push is still queued");
    assert!(locks.is_held("app"), "the first push lost its lock");
    assert!(first.rt.process.is_some());
    finish(&mut second);
    assert_eq!(slots.in_use(), 1, "only the first push's slot is left");
}

#[test]
fn waiters_are_served_in_turn_and_told_of_the_new_holder() {
    let [alice, bob, carol] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(0));
    let mut first = connect(config(60), &alice, &locks, &slots, PUSH);
    let mut second = connect(config(60), &bob, &locks, &slots, PUSH);
    let mut third = connect(config(60), &carol, &locks, &slots, PUSH);
    assert_eq!(locks.waiting("app"), 2);
    first.client.send_eof();
    first.drive();
    // The first in line gets it; the other now waits for bob.
    second.drive();
    third.drive();
    assert!(second.rt.process.is_some());
    assert!(third.rt.process.is_none());
    third.run_for(Duration::from_secs(5));
    let err = stderr(&third);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("-----> Waiting for the push to app by bob (started"),
        "{err}"
    );
    second.client.send_eof();
    second.drive();
    third.drive();
    assert!(third.rt.process.is_some());
    third.client.send_eof();
    third.drive();
    assert_eq!(third.exit_status(), Some(0));
    assert!(!locks.is_held("app"));
}

/// A push waiting behind another; returns (holder, waiter).
fn waiting(config_for_waiter: ServerConfig) -> (Pair, Pair, PushLocks, CommandSlots) {
    let [alice, bob, _] = users();
    let (locks, slots) = (PushLocks::default(), CommandSlots::new(0));
    let first = connect(config(60), &alice, &locks, &slots, PUSH);
    let second = connect(config_for_waiter, &bob, &locks, &slots, PUSH);
    assert_eq!(locks.waiting("app"), 1);
    assert_eq!(slots.in_use(), 2, "a waiting push holds a command slot");
    (first, second, locks, slots)
}

fn nothing_left(pair: &Pair, locks: &PushLocks) {
    assert_eq!(locks.waiting("app"), 0, "still queued");
    assert_eq!(pair.rt.lock_withdrawals, 1);
    assert!(pair.rt.queued.is_empty() && pair.rt.held.is_empty());
    assert_eq!((pair.rt.lock_grants, pair.rt.lock_releases), (0, 0));
    assert_eq!(pair.rt.slot_grants, pair.rt.slot_releases);
}

#[test]
fn a_waiting_client_that_hangs_up_leaves_the_queue() {
    let (first, mut second, locks, slots) = waiting(config(60));
    finish(&mut second);
    nothing_left(&second, &locks);
    assert_eq!(slots.in_use(), 1);
    assert!(first.rt.process.is_some() && locks.is_held("app"));
}

#[test]
fn a_waiting_push_is_refused_when_the_server_drains() {
    let (_first, mut second, locks, slots) = waiting(config(60));
    let now = second.now;
    second.server.handle_input(now, Input::Drain);
    second.drive();
    assert_eq!(second.exit_status(), Some(1));
    let err = stderr(&second);
    assert!(
        err.contains(" ! The server is restarting; try again in a moment.\n"),
        "{err}"
    );
    assert_err_pkt_line(&stdout(&second), "The server is restarting");
    nothing_left(&second, &locks);
    assert_eq!(slots.in_use(), 1);
    // Once the client closes the channel, the drained connection closes.
    second.client.send_close();
    second.drive();
    assert!(
        second.close_text().contains("restarting"),
        "{}",
        second.close_text()
    );
}

#[test]
fn the_session_limit_ends_a_wait() {
    let mut short = config(600);
    short.max_session = Duration::from_secs(20);
    let (_first, mut second, locks, _slots) = waiting(short);
    while second.exit_status().is_none() && second.step_to_next_deadline() {}
    let err = stderr(&second);
    assert!(err.contains("time limit of 20 seconds"), "{err}");
    assert_eq!(second.exit_status(), Some(1));
    nothing_left(&second, &locks);
}

#[test]
fn waiting_in_turn_is_not_idleness() {
    let mut config = config(30);
    config.idle_timeout = Duration::from_secs(7);
    let (_first, mut second, locks, _slots) = waiting(config);
    let start = second.now;
    while second.exit_status().is_none() && second.step_to_next_deadline() {}
    // The wait's own limit ends it, not the idle timeout.
    assert_eq!(second.now - start, Duration::from_secs(30));
    let err = stderr(&second);
    assert!(!err.contains("Timed out"), "{err}");
    assert!(err.contains("Another push to app is in progress"), "{err}");
    nothing_left(&second, &locks);
}

#[test]
fn a_grant_already_on_its_way_when_the_wait_is_given_up_is_not_released_twice() {
    let (_first, mut second, _locks, _slots) = waiting(config(60));
    let id = second
        .rt
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::AcquireLock { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    // The client goes; the withdrawal went out (and let go of whatever
    // the table had for it).
    second.hang_up();
    assert_eq!(second.rt.lock_withdrawals, 1);
    // A grant the runtime had already on its way.
    let now = second.now;
    second
        .server
        .handle_input(now, Input::LockReply { id, result: Ok(()) });
    assert!(
        std::iter::from_fn(|| second.server.poll_output())
            .all(|o| !matches!(o, Output::ReleaseLock { .. })),
        "a second release"
    );
}

#[test]
fn a_place_in_the_queue_for_a_push_already_gone_is_given_up() {
    let (_first, mut second, _locks, _slots) = waiting(config(60));
    // A request the session never made a place for (one it abandoned
    // before its answer came): the place is given up, once.
    let never = gitmouth_core::server::RequestId(9999);
    let now = second.now;
    let held = LockHeld {
        since: now,
        user: "alice".into(),
        instance: None,
    };
    for _ in 0..2 {
        let input = Input::LockWaiting {
            id: never,
            held: held.clone(),
        };
        second.server.handle_input(now, input);
    }
    let releases: Vec<_> = std::iter::from_fn(|| second.server.poll_output())
        .filter(|o| matches!(o, Output::ReleaseLock { id } if *id == never))
        .collect();
    assert_eq!(releases.len(), 1);
}

#[test]
fn the_lock_table_serves_in_turn_and_forgets_what_is_given_up() {
    let now = epoch();
    let mut table = LockTable::default();
    let Acquired::Granted(a) = table.acquire("app", "alice", now, true) else {
        panic!("a free lock not granted");
    };
    assert!(matches!(
        table.acquire("app", "carol", now, false),
        Acquired::Held(LockHeld { ref user, .. }) if user == "alice"
    ));
    let Acquired::Queued(b, held) = table.acquire("app", "bob", now, true) else {
        panic!("not queued");
    };
    assert_eq!(held.user, "alice");
    let Acquired::Queued(c, _) = table.acquire("app", "carol", now, true) else {
        panic!("not queued");
    };
    let later = now + Duration::from_secs(7);
    assert!(table.release(a, later), "handed on");
    assert_eq!(table.standing(b), Standing::Holds);
    assert_eq!(
        table.standing(c),
        Standing::Waits(LockHeld {
            since: later,
            user: "bob".into(),
            instance: None,
        })
    );
    // A newcomer that does not wait cannot slip in between.
    assert!(matches!(
        table.acquire("app", "dave", later, false),
        Acquired::Held(_)
    ));
    // A waiter that gives up leaves no trace.
    assert!(!table.release(c, later));
    assert_eq!(table.standing(c), Standing::Gone);
    assert_eq!(table.waiting("app"), 0);
    assert!(table.release(b, later));
    assert!(!table.is_held("app"));
    assert!(!table.release(b, later), "released twice");
}

/// What may happen to a push waiting for the lock.
#[derive(Debug, Clone)]
enum Step {
    Advance(u8),
    HolderEnds,
    HangUp,
    Drain,
    Shutdown,
    CloseChannel,
    SignalTerm,
    Eof,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..40).prop_map(Step::Advance),
        Just(Step::HolderEnds),
        Just(Step::HangUp),
        Just(Step::Drain),
        Just(Step::Shutdown),
        Just(Step::CloseChannel),
        Just(Step::SignalTerm),
        Just(Step::Eof),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

    /// Whatever happens while a push waits for the lock, once both
    /// connections are over nothing is held, queued or given twice.
    #[test]
    fn a_wait_leaves_nothing_behind_on_any_path(steps in proptest::collection::vec(step(), 0..8)) {
        let (mut holder, mut waiter, locks, slots) = waiting(config(30));
        for s in &steps {
            let now = waiter.now;
            match s {
                Step::Advance(secs) => waiter.advance(Duration::from_secs(u64::from(*secs))),
                Step::HolderEnds => {
                    holder.client.send_eof();
                    holder.drive();
                }
                Step::HangUp => waiter.server.handle_input(now, Input::PeerClosed),
                Step::Drain => waiter.server.handle_input(now, Input::Drain),
                Step::Shutdown => waiter.server.handle_input(now, Input::Shutdown),
                Step::CloseChannel => waiter.client.send_close(),
                Step::SignalTerm => {
                    let mut extra = Vec::new();
                    gitmouth_core::wire::put_string(&mut extra, b"TERM");
                    waiter.client.channel_request("signal", false, &extra);
                }
                Step::Eof => waiter.client.send_eof(),
            }
            waiter.drive();
            proptest::prop_assert!(waiter.rt.held.len() + waiter.rt.queued.len() <= 1);
        }
        finish(&mut waiter);
        finish(&mut holder);
        proptest::prop_assert_eq!(locks.waiting("app"), 0);
        proptest::prop_assert!(!locks.is_held("app"));
        proptest::prop_assert_eq!(slots.in_use(), 0);
        for pair in [&holder, &waiter] {
            proptest::prop_assert!(pair.rt.held.is_empty() && pair.rt.queued.is_empty());
            proptest::prop_assert_eq!(pair.rt.lock_grants, pair.rt.lock_releases);
            proptest::prop_assert_eq!(pair.rt.slot_grants, pair.rt.slot_releases);
            if let Some(p) = &pair.rt.process {
                proptest::prop_assert!(p.exited(), "git left running");
            }
        }
    }
}
