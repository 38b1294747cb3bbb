//! git's output read straight into lent packets
//! (`Session::lend_backend`), in memory: whatever the reads' sizes, the
//! client gets the same bytes as through `Input::BackendData`, never past
//! its window, never in a packet larger than it accepts; nothing is lent
//! during a key exchange. (The stand-in runtime lends by default; the
//! client checks the window and packet size of every data packet, and
//! `Pair` fails on any breach.)

#![allow(clippy::unwrap_used)]

use gitmouth_core::client::Event;
use gitmouth_core::server::{Input, RequestId, Stream};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;
use proptest::prelude::*;

const REPO: &str = "/srv/repos/app.git";

/// A clone whose git writes `stdout` (and `stderr`) and exits, for a client
/// with this window and maximum packet size.
fn clone(script: Script, window: u32, max_packet: u32, auto_window: bool) -> Pair {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]), epoch());
    pair.rt.script = script;
    pair.rt.repos.insert(REPO.into());
    pair.client.set_auto_window(auto_window);
    pair.open(&alice, window, max_packet);
    pair
}

fn git_id(pair: &Pair) -> RequestId {
    pair.rt.process.as_ref().unwrap().id
}

fn output(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 8) as u8)
        })
        .collect()
}

/// What the client got on stdout and stderr, and its exit status, after
/// the clone ran to its end with the client opening its window by `grant`
/// whenever nothing else moves (with `auto_window` off).
fn run(pair: &mut Pair, grant: u32) -> (Vec<u8>, Vec<u8>, Option<u32>) {
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    for _ in 0..100_000 {
        pair.drive();
        if pair.events.contains(&Event::Closed) {
            break;
        }
        if grant > 0 {
            pair.client.adjust_window(grant);
        }
    }
    assert!(
        pair.events.contains(&Event::Closed),
        "the clone never ended"
    );
    let (out, err) = pair.received();
    (out, err, pair.exit_status())
}

#[test]
fn git_output_goes_out_through_lent_packets() {
    let stdout = output(300_000, 1);
    let script = Script {
        stdout: stdout.clone(),
        stderr: b"remote: counting objects\n".to_vec(),
        ..Script::default()
    };
    let mut pair = clone(script, 1 << 20, 32768, true);
    pair.client.send_eof();
    let (out, err, status) = run(&mut pair, 0);
    assert_eq!(out, stdout);
    assert_eq!(err, b"remote: counting objects\n");
    assert_eq!(status, Some(0));
    // Every byte of both streams went through lends (8 KiB reads).
    let (bytes, lends) = pair.rt.lent;
    assert_eq!(bytes, stdout.len() + 25);
    assert!(lends >= stdout.len() / 8192, "{lends} lends");
}

#[test]
fn a_lend_is_no_larger_than_the_window_and_cut_at_the_packet_size() {
    // git waits for the client's EOF, which never comes.
    let mut pair = clone(Script::default(), 10_000, 3000, false);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    let id = git_id(&pair);
    let now = pair.now;
    let mut lend = pair
        .server
        .lend_backend(id, Stream::Stdout, 1 << 20)
        .unwrap();
    assert_eq!(lend.len(), 10_000, "the whole window, no more");
    let areas: Vec<usize> = lend.bufs().map(|b| b.len()).collect();
    assert_eq!(areas, [3000, 3000, 3000, 1000]);
    // Dropped uncommitted, it sent nothing; asking for less gets less.
    let mut lend = pair.server.lend_backend(id, Stream::Stdout, 4500).unwrap();
    assert_eq!(lend.len(), 4500);
    // 4000 bytes read, in two packets: 6000 of the window left.
    for (i, b) in lend.bufs().enumerate() {
        b.fill(b'a' + i as u8);
    }
    lend.commit(now, 4000);
    let lend = pair.server.lend_backend(id, Stream::Stderr, 1 << 20);
    assert_eq!(lend.unwrap().len(), 6000, "stderr shares the window");
    assert_eq!(pair.server.backend_read_limit(id), 6000);
    pair.drive();
    let (out, _) = pair.received();
    let mut want = vec![b'a'; 3000];
    want.extend(vec![b'b'; 1000]);
    assert_eq!(out, want);
    // A dropped lend sent nothing: the window is what the commit left.
    let lend = pair
        .server
        .lend_backend(id, Stream::Stdout, 1 << 20)
        .unwrap();
    assert_eq!(lend.len(), 6000);
}

#[test]
fn nothing_is_lent_during_a_key_exchange() {
    let mut pair = clone(Script::default(), 1 << 20, 32768, true);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    let id = git_id(&pair);
    assert!(pair.server.lend_backend(id, Stream::Stdout, 1000).is_some());
    let now = pair.now;
    pair.client.rekey(now);
    // The client's KEXINIT reaches the server: from then on until the
    // client's NEWKEYS, no channel data may go out.
    let kexinit = pair.client.transmit().to_vec();
    pair.client.consume_transmit(kexinit.len());
    pair.server.handle_input(now, Input::Received(&kexinit));
    assert!(pair.server.transport().in_kex());
    assert!(pair.server.lend_backend(id, Stream::Stdout, 1000).is_none());
    assert!(pair.server.lend_backend(id, Stream::Stderr, 1000).is_none());
    assert_eq!(pair.server.backend_read_limit(id), 0);
    // Git writes meanwhile: it waits in its pipe.
    pair.rt
        .process
        .as_mut()
        .unwrap()
        .queue_stdout(&output(100_000, 2));
    pair.drive();
    assert!(!pair.server.transport().in_kex());
    assert_eq!(pair.server.transport().key_exchanges(), 2);
    assert_eq!(pair.received().0, output(100_000, 2));
    assert!(pair.server.lend_backend(id, Stream::Stdout, 1000).is_some());
}

#[test]
fn nothing_is_lent_for_output_nobody_reads() {
    // git has more to say than the window lets out.
    let script = Script {
        stdout: output(100_000, 5),
        exit_on_eof: None,
        ..Script::default()
    };
    let mut pair = clone(script, 1000, 32768, false);
    pair.client.exec(b"git-upload-pack '/app.git'", true);
    pair.drive();
    let id = git_id(&pair);
    assert_eq!(pair.received().0, output(1000, 5));
    assert_eq!(pair.rt.lent.0, 1000);
    assert!(pair.server.lend_backend(id, Stream::Stdout, 1000).is_none());
    // The client closes the channel: the rest of git's output is taken
    // and dropped, through the runtime's own buffer, and git ends.
    pair.client.send_close();
    pair.client.adjust_window(1 << 20);
    pair.drive();
    assert_eq!(
        pair.rt.lent.0, 1000,
        "output nobody reads went into packets"
    );
    assert!(pair.rt.process.as_ref().unwrap().exited());
    assert_eq!(pair.received().0, output(1000, 5));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any sizes of reads into lends, any window and packet size, windows
    /// opened in any steps, re-keys on the way: the client gets the bytes
    /// git wrote, as through `Input::BackendData`, and never data past its
    /// window or in a packet over its maximum (checked on every packet).
    #[test]
    fn any_chunking_of_reads_gives_the_client_the_same_bytes(
        len in 0usize..200_000,
        err_len in 0usize..3000,
        window in 1u32..70_000,
        max_packet in 9u32..40_000,
        reads in proptest::collection::vec(1usize..100_000, 1..8),
        grant in 1000u32..50_000,
        auto_window in any::<bool>(),
        rekey_every in proptest::option::of(2usize..40),
    ) {
        let script = Script {
            stdout: output(len, 3),
            stderr: output(err_len, 4),
            ..Script::default()
        };
        let mut results = Vec::new();
        for copy in [false, true] {
            let mut pair = clone(script.clone(), window, max_packet, auto_window);
            pair.rt.copy_output = copy;
            pair.rt.read_sizes = reads.clone();
            pair.client.send_eof();
            pair.client.exec(b"git-upload-pack '/app.git'", true);
            let mut rekeys = 0;
            for round in 1..100_000 {
                let moved = pair.step();
                if pair.events.contains(&Event::Closed) {
                    break;
                }
                if let Some(every) = rekey_every
                    && round % every == 0
                    && rekeys < 3
                    && !pair.client.transport().in_kex()
                {
                    let now = pair.now;
                    pair.client.rekey(now);
                    rekeys += 1;
                }
                if !moved {
                    pair.client.adjust_window(grant);
                }
            }
            pair.drive();
            prop_assert!(pair.events.contains(&Event::Closed), "the clone never ended");
            prop_assert!(pair.client.flow_violations().is_empty());
            if !copy && len + err_len > 0 {
                prop_assert!(pair.rt.lent.0 > 0, "nothing went through a lend");
            }
            let (out, err) = pair.received();
            results.push((out, err, pair.exit_status()));
        }
        prop_assert_eq!(&results[0].0, &script.stdout);
        prop_assert_eq!(&results[0].1, &script.stderr);
        prop_assert_eq!(&results[0], &results[1]);
    }
}
