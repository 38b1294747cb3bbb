//! No debris, in memory: every path out of a push that creates its
//! repository removes what it made unless the push created a ref, and
//! does so before the push lock goes back.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitmouth_core::actions::QUARANTINE_PREFIX;
use gitmouth_core::server::{ExitStatus, Input, Output};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;

const NEW: &str = "/srv/repos/fresh.git";
const OLD: &str = "/srv/repos/app.git";

/// Index in the outputs of the first one `f` picks.
fn position(pair: &Pair, f: impl Fn(&Output) -> bool) -> Option<usize> {
    pair.rt.outputs.iter().position(f)
}

fn removal_of(path: &Path) -> impl Fn(&Output) -> bool + '_ {
    move |o| matches!(o, Output::RemoveDir { path: p } if p == path)
}

fn release(o: &Output) -> bool {
    matches!(o, Output::ReleaseLock { .. })
}

/// The temporary repository of the push's `git init`.
fn temp_of(pair: &Pair) -> PathBuf {
    pair.rt
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::OpenRepo {
                create: Some(init), ..
            } => Some(init.temp.clone()),
            _ => None,
        })
        .expect("the repository is opened for creation")
}

/// A push to `fresh.git` whose `git init` hangs until the test says.
fn push_while_init_runs() -> Pair {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.hold_init = true;
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack 'fresh.git'", true);
    pair.drive();
    assert!(pair.rt.held_repo.is_some(), "git init runs");
    assert!(pair.rt.locks.is_held("fresh"));
    pair
}

#[test]
fn a_connection_ending_during_git_init_removes_what_it_made_before_the_lock_goes() {
    let mut pair = push_while_init_runs();
    let temp = temp_of(&pair);
    assert!(pair.rt.dirs.contains(&temp));
    pair.hang_up();
    // git init still runs: the session waits for it (removing its
    // directory now would race with it), the lock held meanwhile.
    assert!(
        !pair.server.is_finished(),
        "the session let git init run on"
    );
    assert!(pair.rt.locks.is_held("fresh"));
    assert!(position(&pair, |o| matches!(o, Output::RemoveDir { .. })).is_none());
    // It finishes and renames the repository into place: nobody pushes
    // into it, so it goes, then the lock.
    let now = pair.now;
    pair.rt.finish_init(&mut pair.server, now);
    pair.drive();
    let removed = position(&pair, removal_of(Path::new(NEW)));
    let released = position(&pair, release);
    assert!(
        removed.is_some() && removed < released,
        "the repository must be removed before the lock is released: {:?}",
        pair.rt.outputs
    );
    assert!(pair.rt.repos.is_empty(), "{:?}", pair.rt.repos);
    assert!(pair.rt.dirs.is_empty(), "{:?}", pair.rt.dirs);
    assert!(!pair.rt.locks.is_held("fresh"));
    assert_eq!((pair.rt.lock_grants, pair.rt.lock_releases), (1, 1));
    assert!(pair.rt.process.is_none(), "git ran for a client that left");
    assert!(pair.server.is_finished());
}

#[test]
fn a_git_init_that_hangs_is_killed_and_its_directory_removed() {
    // The client stays: it is told the server failed.
    let mut pair = push_while_init_runs();
    let temp = temp_of(&pair);
    pair.advance(Duration::from_secs(31));
    let cancelled = position(&pair, |o| matches!(o, Output::Cancel { .. }));
    let removed = position(&pair, removal_of(&temp));
    let released = position(&pair, release);
    assert!(
        cancelled.is_some() && cancelled < removed && removed < released,
        "kill, remove, then release: {:?}",
        pair.rt.outputs
    );
    assert!(pair.rt.dirs.is_empty());
    assert_eq!(pair.exit_status(), Some(1));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(err.contains("server"), "{err}");
    // The client gone as well: removed all the same.
    let mut pair = push_while_init_runs();
    let temp = temp_of(&pair);
    pair.hang_up();
    assert!(pair.run_to_end(10), "the session never ended");
    let removed = position(&pair, removal_of(&temp));
    let released = position(&pair, release);
    assert!(
        removed.is_some() && removed < released,
        "{:?}",
        pair.rt.outputs
    );
    assert!(pair.rt.dirs.is_empty() && pair.rt.repos.is_empty());
}

/// A first push whose receive-pack created no ref.
fn first_push_making_no_ref(script: Script, hang_up: bool) -> Pair {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.no_refs = true;
    pair.rt.script = script;
    // A window git's output cannot pass: it runs until stopped.
    pair.client.set_auto_window(false);
    pair.open(&alice, 1024, 1024);
    pair.client.exec(b"git-receive-pack 'fresh.git'", true);
    pair.drive();
    assert!(pair.rt.repos.contains(Path::new(NEW)), "created");
    if hang_up {
        pair.hang_up();
    } else {
        pair.client.send_eof();
    }
    assert!(pair.run_to_end(20), "the session never ended");
    pair
}

#[test]
fn a_first_push_that_creates_no_ref_leaves_no_repository() {
    // A `--dry-run`, or a push a hook rejected: receive-pack exits 0.
    for (script, hang_up) in [
        (Script::default(), false),
        (
            Script {
                exit_on_eof: Some(ExitStatus::Code(1)),
                ..Script::default()
            },
            false,
        ),
        // Its client gone mid-push.
        (
            Script {
                exit_on_eof: None,
                stdout: vec![0; 1 << 20],
                ..Script::default()
            },
            true,
        ),
    ] {
        let pair = first_push_making_no_ref(script.clone(), hang_up);
        let removed = position(&pair, removal_of(Path::new(NEW)));
        let released = position(&pair, release);
        assert!(
            removed.is_some() && removed < released,
            "{script:?}: {:?}",
            pair.rt.outputs
        );
        assert!(pair.rt.repos.is_empty());
    }
    // It fails to start at all: removed as well.
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.fail_spawn = true;
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack 'fresh.git'", true);
    pair.drive();
    let removed = position(&pair, removal_of(Path::new(NEW)));
    let released = position(&pair, release);
    assert!(
        removed.is_some() && removed < released,
        "{:?}",
        pair.rt.outputs
    );
    assert!(pair.rt.repos.is_empty());
}

#[test]
fn a_repository_is_removed_only_if_this_push_created_it_and_made_no_ref() {
    // A first push that creates a ref keeps its repository.
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack 'fresh.git'", true);
    pair.client.send_eof();
    assert!(pair.run_to_end(20));
    assert_eq!(pair.exit_status(), Some(0));
    assert!(
        position(
            &pair,
            |o| matches!(o, Output::RemoveDir { path } if path == Path::new(NEW))
        )
        .is_none()
    );
    assert!(pair.rt.repos.contains(Path::new(NEW)));
    // A push to an existing repository that makes no ref (nothing new,
    // or rejected) never removes it, whatever its refs.
    for hang_up in [false, true] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.rt.repos.insert(OLD.into());
        pair.rt.unborn.insert(OLD.into());
        pair.rt.no_refs = true;
        pair.rt.script = if hang_up {
            Script {
                exit_on_eof: None,
                stdout: vec![0; 1 << 20],
                ..Script::default()
            }
        } else {
            Script::default()
        };
        pair.client.set_auto_window(false);
        pair.open(&alice, 1024, 1024);
        pair.client.exec(b"git-receive-pack 'app.git'", true);
        pair.drive();
        if hang_up {
            pair.hang_up();
        } else {
            pair.client.send_eof();
        }
        assert!(pair.run_to_end(20));
        assert!(
            !pair
                .rt
                .outputs
                .iter()
                .any(|o| matches!(o, Output::RemoveDir { .. })),
            "{:?}",
            pair.rt.outputs
        );
        assert!(pair.rt.repos.contains(Path::new(OLD)));
    }
}

#[test]
fn a_push_cut_short_removes_its_quarantine_before_the_lock_goes() {
    let alice = ed25519(1, "alice");
    let quarantine = Path::new(OLD)
        .join("objects")
        .join(format!("{QUARANTINE_PREFIX}*"));
    let removal = |o: &Output| {
        matches!(o, Output::RemoveDirsIn { dir, prefix }
            if dir == &Path::new(OLD).join("objects") && prefix == QUARANTINE_PREFIX)
    };
    // The client goes mid-push (git is stopped), or git fails.
    for (script, hang_up) in [
        (
            Script {
                exit_on_eof: None,
                stdout: vec![0; 1 << 20],
                ..Script::default()
            },
            true,
        ),
        (
            Script {
                exit_on_eof: Some(ExitStatus::Code(128)),
                ..Script::default()
            },
            false,
        ),
    ] {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.rt.repos.insert(OLD.into());
        pair.rt.script = script.clone();
        pair.client.set_auto_window(false);
        pair.open(&alice, 1024, 1024);
        pair.client.exec(b"git-receive-pack 'app.git'", true);
        pair.drive();
        assert!(pair.rt.locks.is_held("app"));
        if hang_up {
            pair.hang_up();
        } else {
            pair.client.send_eof();
        }
        assert!(pair.run_to_end(20));
        let removed = position(&pair, removal);
        let released = position(&pair, release);
        assert!(
            removed.is_some() && removed < released,
            "{script:?}: {:?}",
            pair.rt.outputs
        );
        assert!(pair.rt.removed.contains(&quarantine));
        assert!(pair.rt.repos.contains(Path::new(OLD)));
    }
    // A push that ends well leaves git to clean up after itself.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(OLD.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack 'app.git'", true);
    pair.client.send_eof();
    assert!(pair.run_to_end(20));
    assert_eq!(pair.exit_status(), Some(0));
    assert!(position(&pair, removal).is_none(), "{:?}", pair.rt.outputs);
    // A clone touches nothing.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(OLD.into());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-upload-pack 'app.git'", true);
    pair.drive();
    let now = pair.now;
    pair.server.handle_input(now, Input::PeerClosed);
    assert!(pair.run_to_end(20));
    assert!(pair.rt.removed.is_empty(), "{:?}", pair.rt.removed);
}
