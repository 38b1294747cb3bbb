//! The control stream of a `server_session` input: the decisions of the
//! runtime stand-in, one byte at a time, and how an input is laid out.
//!
//! Every byte means something (choices are taken modulo the number of
//! choices), so any mutation of the control stream is another valid
//! schedule. The constants here are public so that seeds can be written
//! as readable scripts (see [`crate::seeds`]).

/// Bit 0 of the header's first byte: API (Openruko) mode instead of
/// standalone.
pub const FLAG_API: u8 = 1;

/// A parsed input: the header, then the control stream, then the wire.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// API mode ([`FLAG_API`]) rather than standalone.
    pub api: bool,
    /// The runtime's decisions.
    pub control: &'a [u8],
    /// The client's bytes.
    pub wire: &'a [u8],
}

impl<'a> Layout<'a> {
    /// Splits an input: byte 0 is the flags, bytes 1-2 the control
    /// stream's length (big-endian), then the control stream, then the
    /// wire. Missing header bytes count as zero; a length past the end
    /// takes what is there, and the wire is then empty.
    pub fn parse(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let len = usize::from(u16::from_be_bytes([byte(1), byte(2)]));
        let rest = data.get(3..).unwrap_or_default();
        let (control, wire) = rest.split_at(len.min(rest.len()));
        Self {
            api: byte(0) & FLAG_API != 0,
            control,
            wire,
        }
    }

    /// The input with this layout (the inverse of [`Layout::parse`]).
    ///
    /// Panics if the control stream is longer than 65535 bytes.
    pub fn build(api: bool, control: &[u8], wire: &[u8]) -> Vec<u8> {
        let len = u16::try_from(control.len()).expect("control stream over 64 KiB");
        let mut out = Vec::with_capacity(3 + control.len() + wire.len());
        out.push(if api { FLAG_API } else { 0 });
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(control);
        out.extend_from_slice(wire);
        out
    }
}

/// The control stream being read.
#[derive(Debug)]
pub(crate) struct Control<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Control<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// The next decision, or `None` once the stream is used up (the
    /// caller then takes its default).
    pub(crate) fn next(&mut self) -> Option<u8> {
        let b = self.bytes.get(self.at).copied();
        self.at += usize::from(b.is_some());
        b
    }

    /// A parameter: like [`Control::next`], zero once used up (a decision
    /// that was read keeps its meaning even if its parameter is cut off).
    pub(crate) fn param(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    /// Up to `n` bytes (fewer if the stream ends first).
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.at.saturating_add(n).min(self.bytes.len());
        let out = &self.bytes[self.at..end];
        self.at = end;
        out
    }
}

/// The events read between wire segments (the byte modulo [`op::COUNT`]).
pub mod op {
    /// Feed the next wire segment: a big-endian u16 length follows (0: all
    /// that is left).
    pub const FEED: u8 = 0;
    /// The newest live backend (git or dyno) writes to stdout; a
    /// [`crate::server_session::control::data_param`] byte follows.
    pub const STDOUT: u8 = 1;
    /// git writes to stderr; a data parameter follows.
    pub const STDERR: u8 = 2;
    /// git's stdout ends.
    pub const EOF_STDOUT: u8 = 3;
    /// git's stderr ends.
    pub const EOF_STDERR: u8 = 4;
    /// git exits: a byte follows, its exit code, or from 0xf0 up a signal.
    pub const EXIT: u8 = 5;
    /// The dyno closes cleanly (close_notify).
    pub const DYNO_CLEAN: u8 = 6;
    /// The dyno's connection is lost.
    pub const DYNO_LOST: u8 = 7;
    /// Virtual time jumps (a byte follows: an index into
    /// [`crate::server_session::control::SLEEPS`]), then a timeout.
    pub const SLEEP: u8 = 8;
    /// Virtual time jumps to the session's next deadline, then a timeout.
    pub const NEXT_DEADLINE: u8 = 9;
    /// The client's connection goes away.
    pub const PEER_CLOSED: u8 = 10;
    /// The server is stopping.
    pub const SHUTDOWN: u8 = 11;
    /// The runtime stops (or resumes) writing to the backend's stdin.
    pub const STALL_STDIN: u8 = 12;
    /// The runtime writes some of the backend's stdin (a byte follows: an
    /// index into [`crate::server_session::control::WRITES`]).
    pub const WRITE_STDIN: u8 = 13;
    /// git starts (or stops) ignoring SIGTERM.
    pub const IGNORE_TERM: u8 = 14;
    /// A late answer with an id the session never issued (a byte follows:
    /// which answer, and the id).
    pub const STALE: u8 = 15;
    /// How many events there are.
    pub const COUNT: u8 = 16;
}

/// The answers to each request (the decision byte modulo the table's
/// length). Choice 0 is always the one that moves the session on, which is
/// also the default once the control stream is used up; the last is always
/// "not now": the request stays pending until the next decision point.
pub mod answer {
    /// `LookupKey`: alice, nobody, bob, an empty name, not now.
    pub const LOOKUP_KEY: u8 = 5;
    /// `OpenRepo`: exists, created, not found, failed, a twin differing
    /// only in case exists, not now.
    pub const OPEN_REPO: u8 = 6;
    /// `Spawn`: started, failed, not now.
    pub const SPAWN: u8 = 3;
    /// `RunHelper`: `main` and `dev`, empty, `zeta` and `alpha`, failed,
    /// not now.
    pub const RUN_HELPER: u8 = 5;
    /// The key lookup over HTTP: `200 42:user-key`, 404, 500, 200 without
    /// a colon, 401, timeout, connection failed, too large, a status and
    /// body from the control stream, not now.
    pub const HTTP_LOOKUP: u8 = 10;
    /// The access check: 200 app, 200 error object, 404, 403, 500, 200
    /// not JSON, timeout, a status and body from the control stream, not
    /// now.
    pub const HTTP_ACCESS: u8 = 9;
    /// Provisioning: 200 dyno, 500 error object, 200 bad host, 200 not
    /// JSON, timeout, a status and body from the control stream, not now.
    pub const HTTP_PROVISION: u8 = 7;
    /// `ConnectDyno`: connected, failed, not now.
    pub const CONNECT_DYNO: u8 = 3;
    /// `AcquireLock`: granted, held for 3 s, held for 200 s through
    /// another instance, the lock service unavailable, not now.
    pub const ACQUIRE_LOCK: u8 = 5;
    /// The decision for "not now" in a table of `len` answers.
    pub const fn defer(len: u8) -> u8 {
        len - 1
    }
}

/// Time jumps of [`op::SLEEP`], in milliseconds: around every deadline the
/// session keeps (kill grace, drain and close waits 5 s, provisioning
/// progress 3 s and 5 s, keepalive 15 s, login grace 30 s, kex 60 s, idle
/// 600 s, session 7200 s).
pub const SLEEPS: [u64; 16] = [
    1, 100, 1_000, 2_000, 3_000, 5_000, 10_000, 15_000, 30_000, 45_000, 60_000, 300_000, 600_000,
    3_600_000, 7_200_000, 10_000_000,
];

/// Amounts of [`op::WRITE_STDIN`] (`usize::MAX`: everything pending).
pub const WRITES: [usize; 6] = [0, 1, 100, 4096, 65536, usize::MAX];

/// Sizes of backend writes ([`data_param`] bits 0-2).
pub const DATA_SIZES: [usize; 8] = [1, 2, 4, 20, 100, 1000, 20_000, 200_000];

/// How backend writes start ([`data_param`] bits 3-4): the dyno host's
/// two in-band error markers, a pkt-line flush, or nothing.
pub const DATA_PREFIXES: [&[u8]; 4] = [b"", b"E:", b"Dyno does not exist.", b"0000"];

/// The parameter byte of [`op::STDOUT`] and [`op::STDERR`]: a size index
/// into [`DATA_SIZES`] and a prefix index into [`DATA_PREFIXES`].
pub const fn data_param(size: u8, prefix: u8) -> u8 {
    (size & 7) | ((prefix & 3) << 3)
}

/// The bytes a backend write of parameter `param` carries: the prefix,
/// then pkt-line-like filler, cut to the size.
pub(crate) fn data(param: u8) -> Vec<u8> {
    let size = DATA_SIZES[usize::from(param & 7)];
    let prefix = DATA_PREFIXES[usize::from((param >> 3) & 3)];
    let mut out: Vec<u8> = prefix.iter().copied().take(size).collect();
    let filler = b"0008abcd";
    while out.len() < size {
        out.push(filler[out.len() % filler.len()]);
    }
    out
}

/// HTTP statuses for the answers whose body comes from the control stream.
pub const CUSTOM_STATUSES: [u16; 8] = [200, 404, 401, 403, 500, 502, 301, 0];
