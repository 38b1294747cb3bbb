//! The session channel and the git job in memory: windows both ways,
//! requests in every state, stopping the command, what the user sees.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::client::Event;
use gitmouth_core::server::{ExitStatus, Output, Signal};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_core::wire::{self, numbers};
use gitmouth_tests::epoch;

const REPO: &str = "/srv/repos/app.git";

fn disconnected(pair: &Pair) -> Option<(DisconnectReason, String)> {
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason,
            description,
        })) => Some((reason, description)),
        _ => None,
    }
}

fn running(script: Script, window: u32) -> Pair {
    running_with(script, window, true)
}

fn running_with(script: Script, window: u32, auto_window: bool) -> Pair {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.script = script;
    pair.rt.repos.insert(REPO.into());
    pair.client.set_auto_window(auto_window);
    pair.open(&alice, window, 32768);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    assert!(pair.events.contains(&Event::ChannelReply(true)));
    assert!(pair.rt.process.is_some(), "git started");
    pair
}

#[test]
fn a_command_runs_with_its_output_and_exit_status() {
    let script = Script {
        stdout: b"0000".to_vec(),
        stderr: b"warning\n".to_vec(),
        exit_on_eof: None,
        status: ExitStatus::Code(3),
        ..Script::default()
    };
    let mut pair = running(script, 1 << 20);
    pair.drive();
    let (out, err) = pair.received();
    assert_eq!(out, b"0000");
    assert_eq!(err, b"warning\n");
    assert_eq!(pair.exit_status(), Some(3));
    assert!(pair.events.contains(&Event::Eof) && pair.events.contains(&Event::Closed));
    // The spawned command: git upload-pack on the repository (partial
    // clone allowed), no shell, nothing from the client in its
    // environment, and of the server's only PATH and HOME.
    let spec = &pair.rt.process.as_ref().unwrap().spec;
    assert_eq!(spec.program, "git");
    assert_eq!(
        spec.args,
        ["-c", "uploadpack.allowFilter=true", "upload-pack", REPO]
    );
    assert_eq!(spec.inherit, ["PATH", "HOME"]);
    assert!(
        spec.env
            .iter()
            .all(|(k, _)| k.to_str().unwrap().starts_with("GITMOUTH_")),
        "{:?}",
        spec.env
    );
    // Once we close and the client answers, the channel is over but the
    // connection stays for more sessions; it ends when the client goes.
    pair.client.send_close();
    pair.drive();
    assert!(!pair.server.is_finished());
    assert!(pair.server_close().is_none());
    pair.hang_up();
    assert!(pair.server.is_finished());
    assert!(matches!(
        pair.server_close(),
        Some(Output::Close(CloseReason::PeerClosed))
    ));
}

#[test]
fn the_connection_ends_even_if_the_client_never_closes() {
    let script = Script {
        exit_on_eof: None,
        ..Script::default()
    };
    let mut pair = running(script, 1 << 20);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    assert!(!pair.server.is_finished());
    pair.advance(Duration::from_secs(6));
    assert!(
        pair.server.is_finished(),
        "dropbear-style clients must not hang the session"
    );
}

#[test]
fn git_protocol_is_passed_and_other_env_is_refused() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(REPO.into());
    pair.open(&alice, 1 << 20, 32768);
    for (name, value, ok) in [
        ("LD_PRELOAD", "/tmp/x.so", false),
        ("GIT_CONFIG_COUNT", "1", false),
        ("PATH", "/tmp", false),
        ("GIT_PROTOCOL", "version=2; rm -rf /", false),
        ("GIT_PROTOCOL", "version=2", true),
    ] {
        pair.client.env(name, value, true);
        pair.drive();
        assert_eq!(
            pair.events.last(),
            Some(&Event::ChannelReply(ok)),
            "{name}={value}"
        );
    }
    pair.client.exec(b"git upload-pack 'app.git'", true);
    pair.drive();
    let spec = &pair.rt.process.as_ref().unwrap().spec;
    assert_eq!(spec.env[0], ("GIT_PROTOCOL".into(), "version=2".into()));
    assert!(!spec.env[1..].iter().any(|(k, _)| k == "GIT_PROTOCOL"));
    // env after exec is refused.
    pair.client.env("GIT_PROTOCOL", "version=1", true);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelReply(false)));
}

#[test]
fn the_client_window_limits_what_the_command_may_send() {
    // A client window of 1000 bytes and 100 KB of output: only 1000 bytes
    // move until the window grows; nothing is lost.
    let output: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let script = Script {
        stdout: output.clone(),
        exit_on_eof: None,
        ..Script::default()
    };
    let mut pair = running_with(script, 1000, false);
    pair.drive();
    assert_eq!(pair.received().0.len(), 1000);
    assert_eq!(
        pair.server
            .backend_read_limit(pair.rt.process.as_ref().unwrap().id),
        0
    );
    assert_eq!(pair.exit_status(), None);
    let mut got = pair.received().0.len();
    while got < output.len() {
        pair.client.adjust_window(7000);
        pair.drive();
        let now = pair.received().0.len();
        assert!(now - got <= 7000, "sent past the window");
        assert!(now > got, "no progress after a window adjust");
        got = now;
    }
    assert_eq!(pair.received().0, output);
    assert_eq!(pair.exit_status(), Some(0));
}

#[test]
fn our_window_opens_only_as_fast_as_git_reads() {
    let script = Script {
        reads_stdin: false,
        ..Script::default()
    };
    let mut pair = running(script, 1 << 20);
    let data = vec![5u8; 4 << 20];
    let mut sent = 0;
    for _ in 0..100 {
        sent += pair.client.send_data(&data[sent..]);
        pair.drive();
    }
    // git reads nothing: the client can send exactly the initial window.
    assert_eq!(sent, 2 << 20);
    assert_eq!(
        pair.server
            .backend_stdin(pair.rt.process.as_ref().unwrap().id)
            .len(),
        2 << 20
    );
    assert_eq!(pair.client.send_window(), 0);
    // git starts reading: the window reopens and the rest flows.
    pair.rt.script.reads_stdin = true;
    for _ in 0..200 {
        if sent == data.len() {
            break;
        }
        sent += pair.client.send_data(&data[sent..]);
        pair.drive();
    }
    pair.drive();
    assert_eq!(sent, data.len());
    assert_eq!(pair.rt.process.as_ref().unwrap().stdin.len(), data.len());
}

#[test]
fn eof_from_the_client_closes_gits_stdin_after_its_data() {
    let mut pair = running(Script::default(), 1 << 20);
    pair.client.send_data(b"0032want 1234\n");
    pair.client.send_eof();
    pair.drive();
    let p = pair.rt.process.as_ref().unwrap();
    assert_eq!(p.stdin, b"0032want 1234\n");
    assert!(p.stdin_closed);
    assert!(
        pair.rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::CloseStdin { .. }))
    );
    assert_eq!(pair.exit_status(), Some(0));
}

#[test]
fn a_client_that_goes_away_stops_git_term_then_kill() {
    // git that ignores SIGTERM and would wait for stdin forever.
    let script = Script {
        ignore_term: true,
        ..Script::default()
    };
    let mut pair = running(script, 1 << 20);
    let now = pair.now;
    pair.server
        .handle_input(now, gitmouth_core::server::Input::PeerClosed);
    pair.drive();
    assert_eq!(pair.rt.process.as_ref().unwrap().signals, [Signal::Term]);
    assert!(!pair.server.is_finished(), "git still runs");
    pair.advance(Duration::from_secs(6));
    assert_eq!(
        pair.rt.process.as_ref().unwrap().signals,
        [Signal::Term, Signal::Kill]
    );
    assert!(pair.server.is_finished());
}

#[test]
fn a_client_close_mid_command_stops_git() {
    let mut pair = running(Script::default(), 1 << 20);
    pair.client.send_close();
    pair.drive();
    assert_eq!(pair.rt.process.as_ref().unwrap().signals, [Signal::Term]);
    assert!(pair.events.contains(&Event::Closed));
    assert_eq!(pair.exit_status(), None);
    // The connection stays for more sessions until the client goes.
    assert!(!pair.server.is_finished());
    pair.hang_up();
    assert!(pair.server.is_finished());
}

#[test]
fn requests_in_the_wrong_state() {
    let alice = ed25519(1, "alice");
    // exec twice: the second is refused.
    let mut pair = running(Script::default(), 1 << 20);
    pair.client.exec(b"git-upload-pack 'app.git'", true);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::ChannelReply(false)));
    assert_eq!(
        pair.rt
            .outputs
            .iter()
            .filter(|o| matches!(o, Output::Spawn { .. }))
            .count(),
        1
    );

    // pty, subsystem, x11, agent: refused; the channel stays usable.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 1 << 20, 32768);
    for kind in [
        "pty-req",
        "subsystem",
        "x11-req",
        "auth-agent-req@openssh.com",
        "window-change",
    ] {
        pair.client.channel_request(kind, true, &[0, 0, 0, 0]);
        pair.drive();
        assert_eq!(
            pair.events.last(),
            Some(&Event::ChannelReply(false)),
            "{kind}"
        );
    }
    // Other channel types (a second session is allowed: see
    // `memory_sessions`).
    for kind in ["direct-tcpip", "x11", "auth-agent@openssh.com", "bogus"] {
        let mut open = vec![numbers::CHANNEL_OPEN];
        wire::put_string(&mut open, kind.as_bytes());
        open.extend_from_slice(&[0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 128, 0]);
        pair.client.send_raw(&open);
        pair.drive();
        assert!(
            matches!(pair.events.last(), Some(Event::ChannelOpenFailed { .. })),
            "{kind}"
        );
    }
    // Global requests: refused, answered.
    let mut global = vec![numbers::GLOBAL_REQUEST];
    wire::put_string(&mut global, b"keepalive@openssh.com");
    wire::put_bool(&mut global, true);
    pair.client.send_raw(&global);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::GlobalReply(false)));
    assert!(disconnected(&pair).is_none());
}

#[test]
fn protocol_violations_on_the_channel_end_the_connection() {
    type Violation = fn(&mut Pair);
    let cases: [(&str, Violation); 6] = [
        ("data after EOF", |p| {
            p.client.send_eof();
            p.client
                .send_raw(&[numbers::CHANNEL_DATA, 0, 0, 0, 0, 0, 0, 0, 1, b'x']);
        }),
        ("data past the window", |p| {
            let mut payload = vec![numbers::CHANNEL_DATA, 0, 0, 0, 0];
            wire::put_string(&mut payload, &vec![0; 32768]);
            for _ in 0..70 {
                p.client.send_raw(&payload);
            }
        }),
        ("data larger than the maximum packet", |p| {
            let mut payload = vec![numbers::CHANNEL_DATA, 0, 0, 0, 0];
            wire::put_string(&mut payload, &vec![0; 40000]);
            p.client.send_raw(&payload);
        }),
        ("window overflow", |p| {
            // CVE-2025-54804: two adjusts of 0xffffffff.
            for _ in 0..2 {
                p.client.send_raw(&[
                    numbers::CHANNEL_WINDOW_ADJUST,
                    0,
                    0,
                    0,
                    0,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                ]);
            }
        }),
        ("unknown channel", |p| {
            p.client.send_raw(&[numbers::CHANNEL_EOF, 0, 0, 0, 9]);
        }),
        ("open confirmation from the client", |p| {
            p.client.send_raw(&[
                numbers::CHANNEL_OPEN_CONFIRMATION,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
        }),
    ];
    for (what, violate) in cases {
        let mut pair = running(
            Script {
                reads_stdin: false,
                ..Script::default()
            },
            1 << 20,
        );
        violate(&mut pair);
        pair.drive();
        let (reason, _) = disconnected(&pair).unwrap_or_else(|| panic!("{what}: not refused"));
        assert_eq!(reason, DisconnectReason::ProtocolError, "{what}");
        // git is stopped, not left running.
        assert!(
            pair.rt
                .process
                .as_ref()
                .unwrap()
                .signals
                .contains(&Signal::Term),
            "{what}"
        );
    }
}

#[test]
fn what_the_user_sees() {
    let alice = ed25519(1, "alice");
    let cases: [(&[u8], Option<&str>, &str, u32); 7] = [
        // git-lfs asks for its SSH transfer first: told at once, so it
        // falls back to HTTPS (or says why it cannot).
        (
            b"git-lfs-authenticate 'app.git' download",
            None,
            " ! Git LFS is not served over SSH here",
            1,
        ),
        (
            b"git-lfs-transfer 'app.git' upload",
            None,
            " ! Git LFS is not served over SSH here",
            1,
        ),
        (
            b"git-upload-pack 'nope.git'",
            None,
            " ! No such repository as nope, or you do not have access to it.\n ! (session ",
            1,
        ),
        (
            b"rm -rf /",
            None,
            "\n ! Invalid path.\n ! Syntax is: git@localhost:<repo>.git where <repo> is your repository's name.\n ! Only git-upload-pack, git-receive-pack and git-upload-archive run here, with one path.\n ! (session ",
            1,
        ),
        (
            b"git-upload-pack '../../etc/passwd.git'",
            None,
            " ! Invalid path.",
            1,
        ),
        (
            b"",
            Some("shell"),
            "Hi alice! You've successfully authenticated, but gitmouth does not provide shell access.\n",
            1,
        ),
        (
            b"git-receive-pack 'app.git'",
            Some("fail-spawn"),
            " ! The server could not run your command",
            1,
        ),
    ];
    for (command, special, expected, status) in cases {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.open(&alice, 1 << 20, 32768);
        match special {
            Some("shell") => pair.client.channel_request("shell", true, &[]),
            Some("fail-spawn") => {
                pair.rt.fail_spawn = true;
                pair.client.exec(command, true);
            }
            _ => pair.client.exec(command, true),
        }
        pair.drive();
        let (out, err) = pair.received();
        assert!(out.is_empty());
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(expected) || err.contains(expected),
            "{command:?}: {err:?}"
        );
        if special != Some("shell") {
            let id = pair.server.id().to_owned();
            assert!(err.contains(&format!("(session {id})")), "{err}");
        }
        assert_eq!(pair.exit_status(), Some(status));
        assert!(
            pair.rt
                .outputs
                .iter()
                .all(|o| !matches!(o, Output::Spawn { .. }))
                || special == Some("fail-spawn")
        );
    }
}

#[test]
fn a_push_to_a_new_repository_points_head_at_its_branch() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-receive-pack 'fresh.git'", true);
    pair.drive();
    // Created beside its final place under a dot-name, by the git init
    // the core spells out, then renamed into place by the runtime.
    let init = pair
        .rt
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::OpenRepo {
                path,
                create: Some(init),
                ..
            } => Some((path.clone(), init.clone())),
            _ => None,
        })
        .expect("the repository is opened for creation");
    assert_eq!(init.0, std::path::Path::new("/srv/repos/fresh.git"));
    assert_eq!(init.1.temp.parent(), init.0.parent());
    let temp_name = init.1.temp.file_name().unwrap().to_str().unwrap();
    assert!(temp_name.starts_with(".init-"), "{temp_name}");
    assert_eq!(init.1.init.program, "git");
    assert_eq!(
        init.1.init.args,
        [
            "init",
            "--bare",
            "--quiet",
            "--object-format=sha1",
            init.1.temp.to_str().unwrap()
        ]
    );
    pair.client.send_eof();
    pair.drive();
    let helpers: Vec<_> = pair
        .rt
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::RunHelper { process, .. } => Some(process.args.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(helpers.len(), 3, "{helpers:?}");
    assert!(helpers[0].iter().any(|a| a == "rev-parse"));
    assert!(helpers[1].iter().any(|a| a == "for-each-ref"));
    assert!(helpers[2].iter().any(|a| a == "refs/heads/main"));
    assert!(pair.rt.unborn.is_empty());
    assert_eq!(pair.exit_status(), Some(0));
    // A clone of a repository that does not exist is never created.
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 1 << 20, 32768);
    pair.client.exec(b"git-upload-pack 'fresh.git'", true);
    pair.drive();
    assert!(
        pair.rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::OpenRepo { create: None, .. }))
    );
    assert!(pair.rt.repos.is_empty());
}

#[test]
fn a_request_flood_from_a_client_that_does_not_read_is_capped() {
    // CVE-2025-26466: replies pile up unread; the server stops reading.
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.login(&alice);
    pair.server_stalled = true;
    pair.chunk = 64 * 1024;
    let mut global = vec![numbers::GLOBAL_REQUEST];
    wire::put_string(&mut global, b"keepalive@openssh.com");
    wire::put_bool(&mut global, true);
    for _ in 0..200_000 {
        pair.client.send_raw(&global);
    }
    for _ in 0..10_000 {
        pair.step();
    }
    let queued = pair.server.transmit().len();
    assert!(!pair.server.wants_read());
    assert!(queued < 2 * 1024 * 1024, "{queued} bytes queued");
    assert!(
        pair.client.transmit().len() > 1024 * 1024,
        "the client's flood waits on its side"
    );
}

#[test]
fn a_client_that_stalls_a_rekey_stops_the_relay_then_is_cut_off() {
    // CVE-2025-22869: the client starts a re-key and never finishes it
    // while git streams; we stop reading git and the kex deadline fires.
    let mut pair = running(Script::default(), u32::MAX);
    let now = pair.now;
    pair.client.rekey(now);
    pair.step();
    assert!(
        pair.server.transport().in_kex(),
        "the server saw the client's KEXINIT"
    );
    pair.client_stalled = true;
    pair.server_stalled = true;
    pair.rt
        .process
        .as_mut()
        .unwrap()
        .queue_stdout(&vec![3u8; 8 << 20]);
    let before = pair.server.transmit().len();
    for _ in 0..100 {
        pair.step();
    }
    assert_eq!(
        pair.server
            .backend_read_limit(pair.rt.process.as_ref().unwrap().id),
        0,
        "git is not read during the key exchange"
    );
    assert_eq!(pair.server.transmit().len(), before);
    pair.advance(Duration::from_secs(61));
    // The DISCONNECT waits behind what the client does not read, for a few
    // seconds; then the connection is dropped all the same.
    assert!(!pair.server.is_finished());
    pair.advance(Duration::from_secs(6));
    assert!(pair.server.is_finished());
    let (reason, why) = disconnected(&pair).expect("cut off");
    assert_eq!(reason, DisconnectReason::KeyExchangeFailed, "{why}");
    assert!(
        pair.rt
            .process
            .as_ref()
            .unwrap()
            .signals
            .contains(&Signal::Term)
    );
}

#[test]
fn idle_and_total_time_limits_end_the_command_with_a_message() {
    // Idle: git waits on stdin forever and nothing moves.
    let mut pair = running(Script::default(), 1 << 20);
    pair.advance(Duration::from_secs(590));
    assert_eq!(pair.exit_status(), None);
    pair.client.send_data(b"0000");
    pair.drive();
    // Activity moved the deadline.
    pair.advance(Duration::from_secs(590));
    assert_eq!(pair.exit_status(), None);
    pair.advance(Duration::from_secs(20));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(
        err.starts_with(" ! Timed out: nothing was sent or received for 600 seconds.\n"),
        "{err}"
    );
    assert_eq!(pair.exit_status(), Some(1));
    assert!(
        pair.rt
            .process
            .as_ref()
            .unwrap()
            .signals
            .contains(&Signal::Term)
    );
    pair.advance(Duration::from_secs(10));
    assert!(pair.server.is_finished());

    // Total: a command that keeps talking still ends at the limit.
    let mut pair = running(Script::default(), 1 << 20);
    for _ in 0..(7200 / 300) {
        pair.client.send_data(b"x");
        pair.advance(Duration::from_secs(300));
    }
    pair.advance(Duration::from_secs(1));
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(
        err.starts_with(" ! The session reached its time limit of 7200 seconds.\n"),
        "{err}"
    );
    assert_eq!(pair.exit_status(), Some(1));
}

#[test]
fn one_push_at_a_time_per_repository() {
    let alice = ed25519(1, "alice");
    let mut first = Pair::new(server_config(&[&alice]), epoch());
    // The lock table is the runtime's; the pairs below share it, as the
    // connections of one server do.
    let locks = first.rt.locks.clone();
    first.rt.repos.insert(REPO.into());
    first.open(&alice, 1 << 20, 32768);
    first.client.exec(b"git-receive-pack 'app.git'", true);
    first.drive();
    assert!(locks.is_held("app"));

    let second = |locks: &gitmouth_core::test_util::PushLocks, command: &[u8]| {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.rt.locks = locks.clone();
        pair.rt.repos.insert(REPO.into());
        pair.open(&alice, 1 << 20, 32768);
        pair.client.exec(command, true);
        pair.client.send_eof();
        pair.drive();
        pair
    };
    let refused = second(&locks, b"git-receive-pack 'app.git'");
    let err = String::from_utf8(refused.received().1).unwrap();
    assert!(
        err.starts_with(" ! Another push to app is in progress (started just now by "),
        "{err}"
    );
    assert_eq!(refused.exit_status(), Some(1));
    assert!(refused.rt.process.is_none());
    // A clone needs no lock, and another repository is free.
    assert_eq!(
        second(&locks, b"git-upload-pack 'app.git'").exit_status(),
        Some(0)
    );
    assert!(
        second(&locks, b"git-receive-pack 'other.git'")
            .rt
            .process
            .is_some()
    );
    // Once the first push ends, the next one runs.
    first.client.send_eof();
    first.drive();
    assert_eq!(first.exit_status(), Some(0));
    assert!(!locks.is_held("app"));
    assert_eq!(
        second(&locks, b"git-receive-pack 'app.git'").exit_status(),
        Some(0)
    );
    // A client that vanishes mid-push releases the lock too.
    let mut gone = Pair::new(server_config(&[&alice]), epoch());
    gone.rt.locks = locks.clone();
    gone.rt.repos.insert(REPO.into());
    gone.open(&alice, 1 << 20, 32768);
    gone.client.exec(b"git-receive-pack 'app.git'", true);
    gone.drive();
    assert!(locks.is_held("app"));
    let now = gone.now;
    gone.server
        .handle_input(now, gitmouth_core::server::Input::PeerClosed);
    gone.drive();
    assert!(gone.server.is_finished());
    assert!(!locks.is_held("app"));
    // Every grant went back exactly once (a second release would have
    // failed the stand-in's check).
    assert_eq!((gone.rt.lock_grants, gone.rt.lock_releases), (1, 1));
    assert_eq!((first.rt.lock_grants, first.rt.lock_releases), (1, 1));
}

#[test]
fn a_stopping_server_ends_the_command_with_a_message() {
    let mut pair = running(Script::default(), 1 << 20);
    let now = pair.now;
    pair.server
        .handle_input(now, gitmouth_core::server::Input::Shutdown);
    pair.drive();
    let err = String::from_utf8(pair.received().1).unwrap();
    assert!(
        err.starts_with(" ! The server is restarting; try again in a moment.\n"),
        "{err}"
    );
    assert_eq!(pair.exit_status(), Some(1));
    assert!(
        pair.rt
            .process
            .as_ref()
            .unwrap()
            .signals
            .contains(&Signal::Term)
    );
    pair.client.send_close();
    pair.drive();
    assert!(pair.server.is_finished());
}

#[test]
fn a_signal_request_is_answered_and_stops_git() {
    let mut pair = running(Script::default(), 1 << 20);
    let mut extra = Vec::new();
    wire::put_string(&mut extra, b"TERM");
    pair.client.channel_request("signal", true, &extra);
    pair.drive();
    assert!(pair.events.contains(&Event::ChannelReply(true)));
    assert!(
        pair.rt
            .process
            .as_ref()
            .unwrap()
            .signals
            .contains(&Signal::Term)
    );
    assert!(
        pair.events
            .iter()
            .any(|e| matches!(e, Event::ExitSignal(s) if s == "TERM"))
    );
}

#[test]
fn a_client_with_a_shut_window_cannot_outlive_the_limits() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.open(&alice, 0, 32768);
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    // The greeting waits behind the shut window.
    assert!(pair.received().1.is_empty());
    pair.advance(Duration::from_secs(601));
    assert!(!pair.server.is_finished());
    pair.advance(Duration::from_secs(6));
    pair.advance(Duration::from_secs(6));
    assert!(pair.server.is_finished(), "{:?}", pair.server_close());
}

#[test]
fn deadlines_never_stay_in_the_past() {
    // After each timeout is handled, the next one lies ahead: a driver
    // never spins on a deadline that already fired.
    let script = Script {
        exit_on_eof: None,
        ..Script::default()
    };
    let mut pair = running(script, 1 << 20);
    pair.client_stalled = true;
    pair.server_stalled = true;
    for _ in 0..40 {
        pair.now += Duration::from_secs(1);
        let now = pair.now;
        pair.server
            .handle_input(now, gitmouth_core::server::Input::Timeout);
        if let Some(next) = pair.server.poll_timeout() {
            assert!(
                next > now,
                "a deadline in the past after a timeout at {now:?}"
            );
        }
    }
    assert!(pair.server.is_finished());
}

/// A push whose client goes away gives its lock back as soon as git is
/// gone: git's output, which nobody reads any more, is taken and dropped, so
/// its end is seen at once rather than after the drain limit.
#[test]
fn a_push_whose_client_goes_releases_its_lock_when_git_ends() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.repos.insert(REPO.into());
    pair.rt.script = Script {
        stdout: vec![7u8; 256 << 10],
        exit_on_eof: None,
        ..Script::default()
    };
    // A window the output cannot pass: git's output stays queued.
    pair.client.set_auto_window(false);
    pair.open(&alice, 1024, 1024);
    pair.client.exec(b"git-receive-pack 'app.git'", true);
    pair.drive();
    let locks = pair.rt.locks.clone();
    assert!(locks.is_held("app"));
    assert!(pair.rt.process.is_some());
    pair.hang_up();
    assert!(!locks.is_held("app"), "the lock waited for the drain limit");
    assert_eq!(pair.rt.lock_releases, 1);
    assert!(pair.server.is_finished());
}

/// A stopping server waits [`gitmouth_core::server::ServerConfig::stop_wait`] for its
/// sessions: even one whose git ignores SIGTERM and whose client reads
/// nothing more has ended by then, by its own deadlines alone.
#[test]
fn a_session_ends_within_the_stop_wait_after_shutdown() {
    let alice = ed25519(1, "alice");
    let config = server_config(&[&alice]);
    let stop_wait = config.stop_wait();
    assert_eq!(stop_wait, Duration::from_secs(10));
    let mut pair = Pair::new(config, epoch());
    pair.rt.repos.insert("/srv/repos/app.git".into());
    pair.rt.script = Script {
        ignore_term: true,
        exit_on_eof: None,
        stdout: vec![1; 1 << 20],
        ..Script::default()
    };
    pair.client.set_auto_window(false);
    pair.open(&alice, 1 << 10, 1 << 10);
    pair.client.exec(b"git-upload-pack 'app.git'", true);
    pair.drive();
    assert!(pair.rt.process.is_some());
    // The client stops reading; the server is told to stop.
    pair.client_stalled = true;
    pair.server_stalled = true;
    let stopped_at = pair.now;
    let now = pair.now;
    pair.server
        .handle_input(now, gitmouth_core::server::Input::Shutdown);
    assert!(pair.run_to_end(50), "the session never ended");
    assert!(
        pair.now - stopped_at <= stop_wait,
        "ended only after {:?}",
        pair.now - stopped_at
    );
    assert!(
        pair.rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::Signal { .. })),
        "git was never stopped"
    );
}
