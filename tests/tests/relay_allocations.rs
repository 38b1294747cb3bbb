//! The relay is the hot path: once warmed up, moving data through the
//! server session allocates nothing per packet. A
//! counting allocator counts only inside the server's own calls.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use gitmouth_core::client::{self, Event};
use gitmouth_core::server::{ExitStatus, Input, Output, RequestId, Stream};
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    out
}

/// Pushes `total` bytes each way through an established session: client
/// data to git's stdin, git's stdout to the client (read straight into
/// lent packets with `lend`, else given as `Input::BackendData`). Returns
/// the server's allocations during the transfer.
fn relay(pair: &mut Pair, total: usize, lend: bool) -> u64 {
    let id = match pair
        .rt
        .outputs
        .iter()
        .find(|o| matches!(o, Output::Spawn { .. }))
    {
        Some(Output::Spawn { id, .. }) => *id,
        _ => unreachable!(),
    };
    let chunk = vec![0x5au8; 32 * 1024];
    let mut sent = 0;
    let mut produced = 0;
    let mut received = 0;
    let mut buf = Vec::with_capacity(1 << 20);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    while received < total || sent < total {
        let now = pair.now;
        // Client → server.
        if sent < total {
            sent += pair
                .client
                .send_data(&chunk[..(total - sent).min(chunk.len())]);
        }
        buf.clear();
        buf.extend_from_slice(pair.client.transmit());
        let n = buf.len();
        pair.client.consume_transmit(n);
        if n > 0 {
            counted(|| pair.server.handle_input(now, Input::Received(&buf)));
        }
        // git reads its stdin and writes as much output.
        let taken = counted(|| pair.server.backend_stdin(id).len());
        if taken > 0 {
            counted(|| pair.server.consume_backend_stdin(now, id, taken));
        }
        let want = chunk.len().min(total - produced);
        if lend && want > 0 {
            counted(|| {
                if let Some(mut lend) = pair.server.lend_backend(id, Stream::Stdout, want) {
                    let n = lend.len();
                    let mut at = 0;
                    for buf in lend.bufs() {
                        let k = buf.len();
                        buf.copy_from_slice(&chunk[at..at + k]);
                        at += k;
                    }
                    lend.commit(now, n);
                    produced += n;
                }
            });
        }
        let limit = counted(|| pair.server.backend_read_limit(id))
            .min(chunk.len())
            .min(total - produced);
        if !lend && limit > 0 {
            counted(|| {
                pair.server.handle_input(
                    now,
                    Input::BackendData {
                        id,
                        stream: Stream::Stdout,
                        data: &chunk[..limit],
                    },
                )
            });
            produced += limit;
        }
        // Server → client.
        buf.clear();
        buf.extend_from_slice(counted(|| pair.server.transmit()));
        let n = buf.len();
        counted(|| pair.server.consume_transmit(n));
        pair.client.handle_input(now, client::Input::Received(&buf));
        while let Some(e) = pair.client.poll_event() {
            if let Event::Data(d) = e {
                received += d.len();
            }
        }
    }
    assert_eq!((sent, produced), (total, total));
    assert!(received >= total);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn relaying_allocates_nothing_per_packet() {
    for lend in [false, true] {
        let alice = ed25519(1, "alice");
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.rt.script = Script {
            reads_stdin: false,
            exit_on_eof: Some(ExitStatus::Code(0)),
            ..Script::default()
        };
        pair.rt.repos.insert("/srv/repos/app.git".into());
        pair.open(&alice, 4 << 20, 32 * 1024);
        pair.client.exec(b"git-upload-pack 'app.git'", true);
        pair.drive();
        let _ = RequestId(0);
        // Warm up: buffers reach their working size.
        relay(&mut pair, 8 << 20, lend);
        // 64 MiB each way is about 4000 packets in each direction.
        let start = std::time::Instant::now();
        let allocations = relay(&mut pair, 64 << 20, lend);
        eprintln!(
            "relayed 64 MiB each way (lent packets: {lend}) in {:?} with {allocations} allocations",
            start.elapsed()
        );
        assert!(
            allocations < 20,
            "{allocations} allocations while relaying 64 MiB each way (lent packets: {lend})"
        );
        assert!(!pair.client.is_closed());
    }
}
