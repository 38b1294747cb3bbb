//! Target `server_session`: a whole server [`Session`] fed the input as the
//! raw byte stream of a client, through the session's public drive loop
//! only (`handle_input`, `poll_output`, `poll_timeout`, `transmit`,
//! `consume_transmit`, `is_finished`).
//!
//! The stream is fed twice: in chunks (sizes drawn from a hash of the
//! input, so each input has its own deterministic chunking) with a spurious
//! `Input::Timeout` after each chunk and virtual time creeping by a
//! microsecond per chunk, and in one piece. What the server sends while the
//! input is fed must be byte-for-byte the same both ways: neither chunking
//! nor a timeout that is not due may change anything.
//! After the input, the chunked run jumps virtual time to each deadline the
//! session asks for, then reports the peer gone, and checks the end of the
//! contract: `Close` is reported exactly once, no deadline is asked for
//! once closed, nothing is sent after close, and the session finishes once
//! its bytes are taken. The server may also not send much more than it
//! receives (an amplification bound).
//!
//! The host key and the session seed are fixed, so a recorded client
//! stream (see [`crate::seeds`]) replays byte for byte: such seeds take the
//! fuzzer through the key exchange into the encrypted part of the session.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gitmouth_core::server::{Input, Output, ServerConfig, Session};
use gitmouth_core::transport::hostkey::HostKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Seed of the server's ed25519 host key.
pub const HOST_KEY_SEED: [u8; 32] = [0x68; 32];
/// The session's seed (its ephemeral keys, cookies and padding).
pub const SESSION_SEED: [u8; 32] = [0; 32];

/// The server configuration every run uses: defaults around one ed25519
/// host key generated once from [`HOST_KEY_SEED`].
pub fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let key = HostKey::generate_ed25519(&mut ChaCha20Rng::from_seed(HOST_KEY_SEED));
            // No repositories, and every key lookup is answered "nobody's"
            // (see `drain`): authentication always fails, so a run never
            // asks for work outside memory.
            Arc::new(ServerConfig::standalone(vec![key], "/nonexistent".into()))
        })
        .clone()
}

/// The fixed instant virtual time starts from (only differences matter).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What one run of a session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRun {
    /// Everything the server sent while the input was fed.
    pub sent: Vec<u8>,
    /// Whether the session had reported `Close` by the end of the input.
    pub closed: bool,
    /// Every other output by then, as its `Debug` text.
    pub outputs: Vec<String>,
}

/// Splitmix64: a tiny deterministic generator for the chunk sizes.
struct Splitmix(u64);

impl Splitmix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// FNV-1a, to give each input its own chunking.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the session handed the runtime, in order.
#[derive(Debug, Default)]
struct Outputs {
    /// How many times `Close` was reported.
    closes: u32,
    /// Every other output, as its `Debug` text.
    others: Vec<String>,
}

/// Takes everything the session wants to send and every output.
fn drain(session: &mut Session, sent: &mut Vec<u8>, outputs: &mut Outputs) {
    // Take the bytes in two bites, as a socket taking part of a write would.
    loop {
        let pending = session.transmit();
        if pending.is_empty() {
            break;
        }
        let n = pending.len().div_ceil(2);
        sent.extend_from_slice(&pending[..n]);
        session.consume_transmit(n);
    }
    while let Some(output) = session.poll_output() {
        match output {
            // Only that it closed: the reason's wording may depend on how
            // much of a bad version line had arrived.
            Output::Close(_) => outputs.closes += 1,
            // The keys file is empty: nobody's key. Answered at once, as
            // the runtime does; the time of the answer plays no part.
            Output::LookupKey { id, .. } => {
                outputs.others.push(format!("LookupKey {id:?}"));
                session.handle_input(epoch(), Input::KeyLookedUp { id, user: None });
            }
            other => outputs.others.push(format!("{other:?}")),
        }
    }
}

/// Runs a session over `data`: in one piece when `chunked` is false,
/// otherwise in chunks with spurious timeouts, followed by the end of the
/// session (deadlines, then the peer closing). Panics where the session
/// breaks its contract.
pub fn run_session(data: &[u8], chunked: bool) -> SessionRun {
    let mut now = epoch();
    let mut session = Session::new(server_config(), SESSION_SEED, now);
    let mut sent = Vec::new();
    let mut outputs = Outputs::default();
    drain(&mut session, &mut sent, &mut outputs);
    if chunked {
        let mut rng = Splitmix(fnv1a(data));
        let mut at = 0;
        while at < data.len() {
            let r = rng.next();
            let max = [8, 64, 512, 4096][(r & 3) as usize];
            let n = ((r >> 8) % max + 1).min((data.len() - at) as u64) as usize;
            session.handle_input(now, Input::Received(&data[at..at + n]));
            at += n;
            drain(&mut session, &mut sent, &mut outputs);
            // Not due (every deadline is seconds away): must change nothing.
            now += Duration::from_micros(1);
            session.handle_input(now, Input::Timeout);
            drain(&mut session, &mut sent, &mut outputs);
        }
    } else if !data.is_empty() {
        session.handle_input(now, Input::Received(data));
        drain(&mut session, &mut sent, &mut outputs);
    }
    assert!(
        outputs.closes <= 1,
        "Close reported {} times",
        outputs.closes
    );
    let bound = 16 * 1024 + 4 * data.len();
    assert!(
        sent.len() <= bound,
        "{} bytes sent for {} received",
        sent.len(),
        data.len()
    );
    let run = SessionRun {
        sent,
        closed: outputs.closes == 1,
        outputs: outputs.others.clone(),
    };
    if chunked {
        finish(&mut session, now, outputs);
    }
    run
}

/// Drives the session to its end: each deadline it asks for, then the peer
/// closing.
fn finish(session: &mut Session, mut now: Instant, mut outputs: Outputs) {
    let mut tail = Vec::new();
    for _ in 0..8 {
        let Some(deadline) = session.poll_timeout() else {
            break;
        };
        now = now.max(deadline);
        session.handle_input(now, Input::Timeout);
        drain(session, &mut tail, &mut outputs);
    }
    session.handle_input(now, Input::PeerClosed);
    drain(session, &mut tail, &mut outputs);
    assert_eq!(outputs.closes, 1, "Close must be reported exactly once");
    assert_eq!(
        session.poll_timeout(),
        None,
        "a deadline asked for after close"
    );
    assert!(session.is_finished(), "closed and flushed but not finished");
    // Nothing more happens once it is over.
    session.handle_input(now, Input::Received(b"SSH-2.0-late\r\n\0\0\0\x0c\x0a\x15"));
    session.handle_input(now + Duration::from_secs(7200), Input::Timeout);
    assert!(session.transmit().is_empty(), "bytes sent after close");
    assert!(session.poll_output().is_none(), "output after close");
}

/// The body of the `server_session` target.
pub fn server_session(data: &[u8]) {
    let chunked = run_session(data, true);
    let whole = run_session(data, false);
    assert_eq!(
        chunked, whole,
        "chunking or a spurious timeout changed what the server did"
    );
}
