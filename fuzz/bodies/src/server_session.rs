//! Target `server_session`: a whole server [`Session`] driven through its
//! public drive loop only (`handle_input`, `poll_output`, `poll_timeout`,
//! `transmit`, `consume_transmit`, the backend stdin calls,
//! `is_finished`), by a runtime stand-in whose every decision comes from
//! the input.
//!
//! # Input
//!
//! ```text
//! byte 0      flags: bit 0 set = API (Openruko) mode, else standalone
//! bytes 1-2   N, the control stream's length (big-endian u16)
//! N bytes     the control stream
//! the rest    the wire: the client's bytes
//! ```
//!
//! (Missing header bytes count as zero; see [`control::Layout`].)
//!
//! The wire is fed in segments whose lengths the control stream chooses.
//! Between two segments, and whenever the session has asked for something,
//! the control stream is read one decision at a time:
//!
//! * every request still pending gets one byte: its answer, or "not now"
//!   (it stays pending until the next decision point). `LookupKey` →
//!   `KeyLookedUp` (alice, nobody, …), `OpenRepo` → `RepoOpened`, `Spawn` →
//!   `Spawned`, `RunHelper` → `HelperDone`, `Http` → `HttpDone` (valid
//!   Openruko replies for the key lookup, access check and provisioning,
//!   errors, or a status and body taken from the control stream),
//!   `ConnectDyno` → `DynoConnected`, `AcquireLock` → `LockReply`; the
//!   tables are in [`control::answer`];
//! * then one event ([`control::op`]): the next wire segment, git's or the
//!   dyno's output (sizes and prefixes from a parameter byte, never more than
//!   the session's read limit), git's EOFs and exit, the dyno's close
//!   (clean or lost), a jump of virtual time or to the next deadline, the
//!   client hanging up, a shutdown, stalling or writing the backend's
//!   stdin, git ignoring SIGTERM, or a late answer for an id that is no
//!   longer awaited.
//!
//! Unless stalled, the runtime writes all of the backend's stdin at every
//! decision point. Once the control stream is used up every request gets
//! its first (successful) answer and the events are the defaults: feed the
//! rest of the wire, let git write `0000` and exit 0, let the dyno write
//! `0000` and close cleanly. So a recorded client stream with a short
//! script (see [`crate::seeds`]) still reaches the end of a git command.
//!
//! # Checks
//!
//! The input is run twice: once with each wire segment in random chunks
//! (sizes drawn from a hash of the input) with a timeout that is not due
//! after each, and once with each segment whole. Decisions are taken at
//! the same points in both, so what the server sends, its outputs (in any
//! order: two decided within one segment may swap with the chunking) and
//! the stages reached must be the same. In both runs:
//!
//! * it sends at most 16 KiB + 4 × the wire bytes + 128 × (the backend's
//!   bytes + 2 KiB for every other input once past authentication): relayed
//!   output and our own messages may go out in packets as small as the
//!   client allows;
//! * requests carry fresh ids; nothing local happens in API mode and
//!   nothing remote in standalone mode; no repository, lock, git or dyno
//!   before authentication; git runs only in the repository last opened,
//!   its helpers too; HTTP requests are the contract's, authorised with the
//!   platform's key (lookup, provisioning) or the user's own (access); the
//!   dyno's header is the key and the dyno id;
//! * the session writes to a backend only once it started (`backend_stdin`
//!   is empty unless git was spawned and neither exited nor had its stdin
//!   closed, or the dyno connected and spoke first), and reads from one only
//!   while it runs; it signals, closes the stdin of, and closes only
//!   backends that are alive, each signal at most once; it cancels only
//!   HTTP requests and key lookups in flight; it releases only granted
//!   locks, each once; `Authenticated` at most once, `Close` at most once,
//!   no output after it.
//!
//! After the chunked run, the session is driven to its end as a runtime
//! would (pending requests answered, signalled git exiting, each deadline
//! reached, the client gone), and then: `Close` was reported exactly once,
//! no deadline is asked for, the session is finished, every granted lock
//! was released exactly once, no git is left running, every dyno that
//! connected was closed, and nothing more comes out whatever is fed.
//!
//! The host key and the session seed are fixed, so a recorded client
//! stream (see [`crate::seeds`]) replays byte for byte: such seeds take the
//! fuzzer through the key exchange into the encrypted part of the session.

pub mod control;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gitmouth_core::app::api::{
    self, ApiServer, HttpError, HttpRequest, HttpResponse, Method, Scheme,
};
use gitmouth_core::app::dyno::DynoEnd;
use gitmouth_core::server::{
    ExitStatus, Input, LockHeld, LockRefusal, Mode, Output, RepoError, RequestId, ServerConfig,
    Session, Signal, Stream,
};
use gitmouth_core::transport::hostkey::HostKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use self::control::{Control, Layout, answer, op};

/// Seed of the server's ed25519 host key.
pub const HOST_KEY_SEED: [u8; 32] = [0x68; 32];
/// The session's seed (its ephemeral keys, cookies and padding).
pub const SESSION_SEED: [u8; 32] = [0; 32];
/// The platform's key in API mode (`APISERVER_KEY`).
pub const API_KEY: &str = "fuzz-platform-key";
/// The user's API key in the key lookup's canned answer.
pub const USER_API_KEY: &str = "user-key";
/// The dyno host in provisioning's canned answer.
pub const DYNO_HOST: &str = "dyno1.fuzz";
/// The dyno id in provisioning's canned answer.
pub const DYNO_ID: &str = "d-1";
/// The rendezvous port in API mode.
pub const RENDEZVOUS_PORT: u16 = 4000;
/// Where standalone repositories are (never touched: the runtime stand-in
/// answers for the file system).
pub const REPOS: &str = "/fuzz/repos";

/// The server configuration of a run: defaults around one ed25519 host key
/// generated once from [`HOST_KEY_SEED`], standalone or API mode.
pub fn server_config(api: bool) -> Arc<ServerConfig> {
    static CONFIGS: OnceLock<[Arc<ServerConfig>; 2]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        let key = || HostKey::generate_ed25519(&mut ChaCha20Rng::from_seed(HOST_KEY_SEED));
        let standalone = ServerConfig::standalone(vec![key()], REPOS.into());
        // Built from the standalone defaults, so that fields the
        // configuration grows keep their defaults here too.
        let mut remote = ServerConfig::standalone(vec![key()], REPOS.into());
        remote.mode = Mode::Api {
            api: ApiServer {
                scheme: Scheme::Http,
                host: "api.fuzz".into(),
                port: 5000,
                key: API_KEY.to_owned().into(),
                timeout: Duration::from_secs(5),
                provision_timeout: Duration::from_secs(30),
            },
            rendezvous_port: RENDEZVOUS_PORT,
        };
        [Arc::new(standalone), Arc::new(remote)]
    });
    configs[usize::from(api)].clone()
}

/// The fixed instant virtual time starts from (only differences matter).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How far into a git command a run got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// The session reported `Authenticated`.
    pub authenticated: bool,
    /// A git command was accepted: its first request (the repository, the
    /// push lock, or the access check) went out.
    pub exec: bool,
    /// git was spawned, or the dyno connected.
    pub backend: bool,
    /// Backend bytes went out: the session sent packets in answer to
    /// backend output.
    pub relay: bool,
    /// After the backend ended, the session sent the exit status: two or
    /// more packets at once (exit-status, EOF, CLOSE), after which it reads
    /// no more backend output.
    pub exit: bool,
}

/// What one run of a session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRun {
    /// Everything the server sent while the input was played.
    pub sent: Vec<u8>,
    /// Whether the session had reported `Close` by the end of the input.
    pub closed: bool,
    /// Every other output by then, as its `Debug` text, in order.
    pub outputs: Vec<String>,
    /// How far it got.
    pub stages: Stages,
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

// The session's per-backend calls (one connection may carry several
// channels, each with its own backend), each in one place.

/// Bytes from the client waiting for backend `id`'s stdin.
fn backend_stdin(session: &Session, id: RequestId) -> &[u8] {
    session.backend_stdin(id)
}

/// How many bytes of backend `id`'s output the session takes now.
fn backend_read_limit(session: &Session, id: RequestId) -> usize {
    session.backend_read_limit(id)
}

/// Marks `n` bytes of backend `id`'s stdin as written.
fn consume_backend_stdin(session: &mut Session, now: Instant, id: RequestId, n: usize) {
    session.consume_backend_stdin(now, id, n);
}

/// An id no backend has, for asking the per-backend calls when there is
/// none (the ids the session issues start at 1).
const NO_BACKEND: RequestId = RequestId(0);

/// Where stale answers' ids start: far above any id a session issues.
const STALE_BASE: u64 = 1 << 40;

/// What the session asked for and the runtime has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    LookupKey,
    OpenRepo {
        path: PathBuf,
    },
    Spawn,
    RunHelper,
    Http(HttpKind),
    ConnectDyno,
    AcquireLock,
    /// Always given, without reading the control stream (so that the
    /// corpus from before command slots keeps its meaning).
    AcquireSlot,
}

/// Which of the contract's three calls an HTTP request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpKind {
    Lookup,
    Access,
    Provision,
}

/// A git process as the runtime sees it.
#[derive(Debug, Clone)]
struct Proc {
    /// Whether `Spawned` was answered Ok (else it never ran).
    started: bool,
    stdout_open: bool,
    stderr_open: bool,
    exited: bool,
    stdin_closed: bool,
    term: bool,
    kill: bool,
    /// The default script already had it write its `0000`.
    wrote_default: bool,
}

/// A dyno connection as the runtime sees it.
#[derive(Debug, Clone, Default)]
struct Dyno {
    /// `DynoConnected` answered Ok.
    connected: bool,
    /// `DynoConnected` answered with an error.
    failed: bool,
    /// The session sent `CloseDyno`.
    closed: bool,
    /// `DynoClosed` was fed.
    ended: bool,
    /// It has sent bytes (so the client's stdin may flow to it).
    spoke: bool,
    wrote_default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    Asked,
    Granted,
    Refused,
    Released,
}

/// The runtime's ledger of everything the session asked for: the
/// lifecycle checks are made against it.
#[derive(Debug, Default)]
struct Ledger {
    ids: BTreeSet<RequestId>,
    authenticated: bool,
    procs: BTreeMap<RequestId, Proc>,
    dynos: BTreeMap<RequestId, Dyno>,
    locks: BTreeMap<RequestId, Lock>,
    /// Command slots, tracked as locks are.
    slots: BTreeMap<RequestId, Lock>,
    /// HTTP requests, key lookups and helpers in flight, which the session
    /// may abandon with `Cancel` (answered or cancelled ones are removed).
    in_flight: BTreeSet<RequestId>,
    /// Requests the session abandoned (`Cancel`, `CloseDyno` before
    /// the connection was up): the runtime drops them unanswered.
    cancelled: BTreeSet<RequestId>,
    /// Requests answered or abandoned: targets for late answers.
    done: Vec<RequestId>,
    /// The repository the runtime last opened.
    opened: Option<PathBuf>,
    /// Whether every key-lookup answer so far was the canned one (so the
    /// user's key in the access check is known).
    canned_user: bool,
    /// Whether every provisioning answer so far was the canned one (so the
    /// dyno's host and header are known).
    canned_dyno: bool,
}

impl Ledger {
    fn new() -> Self {
        Self {
            canned_user: true,
            canned_dyno: true,
            ..Self::default()
        }
    }

    fn fresh(&mut self, id: RequestId) {
        assert!(
            id.0 < STALE_BASE && self.ids.insert(id),
            "request id {id:?} issued twice"
        );
    }

    /// Whether backend `id` may take stdin now.
    fn takes_stdin(&self, id: RequestId) -> bool {
        if let Some(p) = self.procs.get(&id) {
            return p.started && !p.exited && !p.stdin_closed;
        }
        self.dynos
            .get(&id)
            .is_some_and(|d| d.connected && !d.closed && !d.ended && d.spoke)
    }

    /// Whether backend `id` may still produce output.
    fn produces(&self, id: RequestId) -> bool {
        if let Some(p) = self.procs.get(&id) {
            return p.started && (!p.exited || p.stdout_open || p.stderr_open);
        }
        self.dynos
            .get(&id)
            .is_some_and(|d| d.connected && !d.closed && !d.ended)
    }

    fn backends(&self) -> Vec<RequestId> {
        let procs = self
            .procs
            .iter()
            .filter(|(_, p)| p.started)
            .map(|(id, _)| *id);
        let dynos = self
            .dynos
            .iter()
            .filter(|(_, d)| d.connected)
            .map(|(id, _)| *id);
        procs.chain(dynos).collect()
    }

    /// The newest started git that matches.
    fn newest_proc(&self, pred: impl Fn(&Proc) -> bool) -> Option<RequestId> {
        self.procs
            .iter()
            .rev()
            .find(|(_, p)| p.started && pred(p))
            .map(|(id, _)| *id)
    }

    /// The newest dyno connection that is up.
    fn newest_dyno(&self) -> Option<RequestId> {
        self.dynos
            .iter()
            .rev()
            .find(|(_, d)| d.connected && !d.closed && !d.ended)
            .map(|(id, _)| *id)
    }
}

/// One run of a session over an input: the session, the runtime stand-in
/// and what has come out so far.
struct Run<'a> {
    session: Session,
    api: bool,
    control: Control<'a>,
    wire: &'a [u8],
    /// Wire bytes fed so far.
    fed: usize,
    /// Whether wire segments go in random chunks.
    chunked: bool,
    chunks: Splitmix,
    now: Instant,
    sent: Vec<u8>,
    outputs: Vec<String>,
    closes: u32,
    ledger: Ledger,
    pending: VecDeque<(RequestId, Request)>,
    stdin_stalled: bool,
    ignores_term: bool,
    /// Backend bytes fed, and inputs beyond the pre-authentication wire:
    /// what the amplification bound allows for.
    backend_bytes: usize,
    other_inputs: usize,
    stages: Stages,
    /// A backend's end was fed: the next burst of packets may report it.
    backend_ended: bool,
}

impl<'a> Run<'a> {
    fn new(data: &'a [u8], chunked: bool) -> Self {
        let layout = Layout::parse(data);
        let now = epoch();
        let mut run = Self {
            session: Session::new(server_config(layout.api), SESSION_SEED, now),
            api: layout.api,
            control: Control::new(layout.control),
            wire: layout.wire,
            fed: 0,
            chunked,
            chunks: Splitmix(fnv1a(data)),
            now,
            sent: Vec::new(),
            outputs: Vec::new(),
            closes: 0,
            ledger: Ledger::new(),
            pending: VecDeque::new(),
            stdin_stalled: false,
            ignores_term: false,
            backend_bytes: 0,
            other_inputs: 0,
            stages: Stages::default(),
            backend_ended: false,
        };
        run.drain();
        run
    }

    /// Feeds one input at the current time, then takes everything that
    /// comes out and checks the session's state. Returns how many packets
    /// the session queued meanwhile.
    fn input(&mut self, input: Input<'_>) -> u32 {
        if !matches!(input, Input::Received(_)) || self.ledger.authenticated {
            self.other_inputs += 1;
        }
        let before = self.session.transport().tx_seq();
        self.session.handle_input(self.now, input);
        self.settled(before)
    }

    /// After an input given when the next packet's number was `before`:
    /// everything taken, and how many packets it made.
    fn settled(&mut self, before: u32) -> u32 {
        // Strict key exchange restarts the count at NEWKEYS: a re-key
        // counts as nothing sent.
        let packets = self.session.transport().tx_seq().saturating_sub(before);
        self.drain();
        if self.backend_ended
            && packets >= 2
            && self
                .ledger
                .backends()
                .iter()
                .all(|&id| backend_read_limit(&self.session, id) == 0)
        {
            self.stages.exit = true;
        }
        packets
    }

    /// Takes everything the session wants to send and every output.
    fn drain(&mut self) {
        // Take the bytes in two bites, as a socket taking part of a write
        // would.
        loop {
            let pending = self.session.transmit();
            if pending.is_empty() {
                break;
            }
            let n = pending.len().div_ceil(2);
            self.sent.extend_from_slice(&pending[..n]);
            self.session.consume_transmit(n);
        }
        while let Some(output) = self.session.poll_output() {
            self.on_output(output);
        }
        self.check_backends();
    }

    /// The session never writes to a backend that has not started (or has
    /// stopped), and reads only from one that runs.
    fn check_backends(&self) {
        let backends = self.ledger.backends();
        for &id in &backends {
            if !backend_stdin(&self.session, id).is_empty() {
                assert!(
                    self.ledger.takes_stdin(id),
                    "stdin for backend {id:?}, which does not take it"
                );
            }
            if backend_read_limit(&self.session, id) > 0 {
                assert!(
                    self.ledger.produces(id),
                    "reading from backend {id:?}, which is over"
                );
            }
        }
        if backends.is_empty() {
            assert!(
                backend_stdin(&self.session, NO_BACKEND).is_empty(),
                "stdin for a backend before any started"
            );
            assert_eq!(
                backend_read_limit(&self.session, NO_BACKEND),
                0,
                "reading from a backend before any started"
            );
        }
    }

    /// Records one output and checks it against the ledger.
    fn on_output(&mut self, output: Output) {
        if let Output::Close(_) = output {
            // Only that it closed: the reason's wording may depend on how
            // much of a bad version line had arrived.
            self.closes += 1;
            assert_eq!(self.closes, 1, "Close reported twice");
            return;
        }
        // Nothing follows `Close`: a push's lock release and its HEAD
        // upkeep come before it (two bugs this target found, fixed; the
        // seeds `regression-*` replay them).
        assert_eq!(self.closes, 0, "output after Close: {output:?}");
        self.outputs.push(format!("{output:?}"));
        let authenticated = self.ledger.authenticated;
        let ledger = &mut self.ledger;
        match output {
            Output::Close(_) => {}
            Output::Authenticated(_) => {
                assert!(!authenticated, "authenticated twice");
                ledger.authenticated = true;
                self.stages.authenticated = true;
            }
            Output::LookupKey { id, .. } => {
                assert!(!self.api, "a local key lookup in API mode");
                ledger.fresh(id);
                ledger.in_flight.insert(id);
                self.pending.push_back((id, Request::LookupKey));
            }
            Output::OpenRepo { id, path, create } => {
                assert!(!self.api, "a local repository in API mode");
                assert!(authenticated, "a repository opened before authentication");
                assert_eq!(path.parent(), Some(Path::new(REPOS)), "{path:?}");
                if let Some(init) = &create {
                    // Made beside the repository under a name no
                    // repository has, then renamed into place.
                    assert_eq!(init.temp.parent(), path.parent(), "{init:?}");
                    let name = init.temp.file_name().and_then(|n| n.to_str());
                    assert!(name.is_some_and(|n| n.starts_with('.')), "{init:?}");
                    assert_eq!(init.init.program, "git");
                    assert_eq!(init.init.args.last(), Some(&init.temp.clone().into()));
                    // A git init that hangs may be given up (Cancel).
                    ledger.in_flight.insert(id);
                }
                ledger.fresh(id);
                self.stages.exec = true;
                self.pending.push_back((id, Request::OpenRepo { path }));
            }
            Output::Spawn { id, process } => {
                assert!(!self.api, "git spawned in API mode");
                assert!(authenticated, "git before authentication");
                assert_eq!(process.program, "git");
                let opened = ledger.opened.as_ref().map(|p| p.as_os_str());
                assert_eq!(
                    process.args.last().map(|a| a.as_os_str()),
                    opened,
                    "git outside the repository opened"
                );
                ledger.fresh(id);
                self.pending.push_back((id, Request::Spawn));
            }
            Output::RunHelper { id, process } => {
                assert!(!self.api, "a git helper in API mode");
                assert_eq!(process.program, "git");
                let opened = ledger.opened.as_ref().map(|p| p.as_os_str());
                assert_eq!(
                    process.args.first().map(|a| a.as_os_str()),
                    Some("--git-dir".as_ref())
                );
                assert_eq!(process.args.get(1).map(|a| a.as_os_str()), opened);
                ledger.fresh(id);
                ledger.in_flight.insert(id);
                self.pending.push_back((id, Request::RunHelper));
            }
            Output::RemoveDir { path } => {
                // A temporary repository, or one a first push left empty:
                // never anything outside the repositories.
                assert!(!self.api, "a removal in API mode");
                assert!(authenticated, "a removal before authentication");
                assert_eq!(path.parent(), Some(Path::new(REPOS)), "{path:?}");
            }
            Output::RemoveDirsIn { dir, prefix } => {
                assert!(!self.api, "a removal in API mode");
                assert_eq!(prefix, gitmouth_core::actions::QUARANTINE_PREFIX);
                let opened = ledger.opened.as_ref().map(|p| p.join("objects"));
                assert_eq!(Some(dir), opened, "a quarantine outside the repository");
            }
            Output::CloseStdin { id } => {
                let p = ledger.procs.get_mut(&id).filter(|p| p.started);
                let p = p.unwrap_or_else(|| panic!("CloseStdin for {id:?}, never started"));
                assert!(!p.exited && !p.stdin_closed, "CloseStdin for {id:?}: {p:?}");
                p.stdin_closed = true;
            }
            Output::Signal { id, signal } => {
                let p = ledger.procs.get_mut(&id).filter(|p| p.started);
                let p = p.unwrap_or_else(|| panic!("a signal for {id:?}, never started"));
                assert!(!p.exited, "a signal for {id:?}, which exited");
                let sent = match signal {
                    Signal::Term => &mut p.term,
                    Signal::Kill => &mut p.kill,
                };
                assert!(!*sent, "{signal:?} sent twice to {id:?}");
                *sent = true;
            }
            Output::Http { id, request } => {
                assert!(self.api, "HTTP in standalone mode");
                let kind = classify(&request);
                let platform = api::basic_auth(API_KEY);
                match kind {
                    HttpKind::Lookup | HttpKind::Provision => {
                        assert!(
                            *request.authorization == *platform,
                            "{kind:?} without the platform's key"
                        );
                    }
                    HttpKind::Access => {
                        assert!(authenticated, "an access check before authentication");
                        if ledger.canned_user {
                            assert!(
                                *request.authorization == *api::basic_auth(USER_API_KEY),
                                "the access check without the user's own key"
                            );
                        }
                        self.stages.exec = true;
                    }
                }
                if kind == HttpKind::Provision {
                    assert!(authenticated, "provisioning before authentication");
                }
                ledger.fresh(id);
                ledger.in_flight.insert(id);
                self.pending.push_back((id, Request::Http(kind)));
            }
            Output::Cancel { id } => {
                assert!(
                    ledger.in_flight.remove(&id),
                    "Cancel for {id:?}, not in flight"
                );
                ledger.cancelled.insert(id);
                ledger.done.push(id);
            }
            Output::ConnectDyno {
                id,
                host,
                port,
                header,
            } => {
                assert!(self.api, "a dyno in standalone mode");
                assert!(authenticated, "a dyno before authentication");
                assert_eq!(port, RENDEZVOUS_PORT);
                if ledger.canned_dyno {
                    assert_eq!(host, DYNO_HOST);
                    let expected = format!("{API_KEY}\n{DYNO_ID}\n");
                    assert!(
                        header.as_bytes() == expected.as_bytes(),
                        "rendezvous header"
                    );
                }
                ledger.fresh(id);
                ledger.dynos.insert(id, Dyno::default());
                self.pending.push_back((id, Request::ConnectDyno));
            }
            Output::CloseDyno { id } => {
                let d = ledger.dynos.get_mut(&id);
                let d = d.unwrap_or_else(|| panic!("CloseDyno for {id:?}, never connected"));
                assert!(
                    !d.closed && !d.ended && !d.failed,
                    "CloseDyno for {id:?}: {d:?}"
                );
                d.closed = true;
                if !d.connected {
                    // Still being opened: the runtime abandons it.
                    ledger.cancelled.insert(id);
                    ledger.done.push(id);
                }
            }
            Output::AcquireLock { id, repo, .. } => {
                assert!(authenticated, "a push lock before authentication");
                assert!(!repo.is_empty());
                ledger.fresh(id);
                ledger.locks.insert(id, Lock::Asked);
                self.pending.push_back((id, Request::AcquireLock));
            }
            Output::AcquireSlot { id } => {
                assert!(authenticated, "a command slot before authentication");
                ledger.fresh(id);
                ledger.slots.insert(id, Lock::Asked);
                self.pending.push_back((id, Request::AcquireSlot));
            }
            Output::ReleaseSlot { id } => {
                let slot = ledger.slots.get_mut(&id);
                assert_eq!(
                    slot.as_deref(),
                    Some(&Lock::Granted),
                    "ReleaseSlot for {id:?}"
                );
                if let Some(slot) = slot {
                    *slot = Lock::Released;
                }
            }
            Output::ReleaseLock { id } => {
                let lock = ledger.locks.get_mut(&id);
                assert_eq!(
                    lock.as_deref(),
                    Some(&Lock::Granted),
                    "ReleaseLock for {id:?}"
                );
                if let Some(lock) = lock {
                    *lock = Lock::Released;
                }
            }
        }
    }

    /// Gives every pending request one decision; answers produced on the
    /// way get theirs in the same pass. With `defaults` the control stream
    /// is not read: every request gets its first answer.
    fn answer_pending(&mut self, defaults: bool) {
        let mut todo = std::mem::take(&mut self.pending);
        let mut kept = VecDeque::new();
        while let Some((id, request)) = todo.pop_front() {
            if self.ledger.cancelled.contains(&id) {
                continue;
            }
            if self.closes > 0 {
                // The runtime has let the session go.
                kept.push_back((id, request));
                continue;
            }
            let choice = if defaults || matches!(request, Request::AcquireSlot) {
                None
            } else {
                self.control.next()
            };
            if !self.answer(id, &request, choice) {
                kept.push_back((id, request));
            }
            todo.extend(self.pending.drain(..));
        }
        kept.retain(|(id, _)| !self.ledger.cancelled.contains(id));
        self.pending = kept;
    }

    /// Answers one request as `choice` says (`None`: the first answer).
    /// Returns false for "not now".
    fn answer(&mut self, id: RequestId, request: &Request, choice: Option<u8>) -> bool {
        let pick = |len: u8| choice.map_or(0, |b| b % len);
        let now = self.now;
        match request {
            Request::LookupKey => {
                let c = pick(answer::LOOKUP_KEY);
                let user = match c {
                    0 => Some("alice"),
                    1 => None,
                    2 => Some("bob"),
                    3 => Some(""),
                    _ => return false,
                };
                self.ledger.in_flight.remove(&id);
                self.done(id);
                self.input(Input::KeyLookedUp {
                    id,
                    user: user.map(str::to_owned),
                    access: None,
                });
            }
            Request::OpenRepo { path } => {
                let result = match pick(answer::OPEN_REPO) {
                    0 => Ok(false),
                    1 => Ok(true),
                    2 => Err(RepoError::NotFound),
                    3 => Err(RepoError::Failed("disk on fire".into())),
                    // Nothing opened: git must not run for this command.
                    4 => Err(RepoError::CaseTwin("Twin".into())),
                    _ => return false,
                };
                if result.is_ok() {
                    self.ledger.opened = Some(path.clone());
                }
                self.ledger.in_flight.remove(&id);
                self.done(id);
                self.input(Input::RepoOpened { id, result });
            }
            Request::Spawn => {
                let result = match pick(answer::SPAWN) {
                    0 => Ok(()),
                    1 => Err("git: not found".to_owned()),
                    _ => return false,
                };
                let started = result.is_ok();
                self.ledger.procs.insert(
                    id,
                    Proc {
                        started,
                        stdout_open: started,
                        stderr_open: started,
                        exited: false,
                        stdin_closed: false,
                        term: false,
                        kill: false,
                        wrote_default: false,
                    },
                );
                self.stages.backend |= started;
                self.done(id);
                self.input(Input::Spawned { id, result });
            }
            Request::RunHelper => {
                let result = match pick(answer::RUN_HELPER) {
                    0 => Ok(b"refs/heads/main\nrefs/heads/dev\n".to_vec()),
                    1 => Ok(Vec::new()),
                    2 => Ok(b"refs/heads/zeta\nrefs/heads/alpha\n".to_vec()),
                    3 => Err("exit status 1".to_owned()),
                    _ => return false,
                };
                self.ledger.in_flight.remove(&id);
                self.done(id);
                self.input(Input::HelperDone { id, result });
            }
            Request::Http(kind) => {
                let Some(result) = self.http_answer(*kind, choice) else {
                    return false;
                };
                self.ledger.in_flight.remove(&id);
                self.done(id);
                self.input(Input::HttpDone { id, result });
            }
            Request::ConnectDyno => {
                let result = match pick(answer::CONNECT_DYNO) {
                    0 => Ok(()),
                    1 => Err("connection refused".to_owned()),
                    _ => return false,
                };
                if let Some(d) = self.ledger.dynos.get_mut(&id) {
                    d.connected = result.is_ok();
                    d.failed = result.is_err();
                }
                self.stages.backend |= result.is_ok();
                self.done(id);
                self.input(Input::DynoConnected { id, result });
            }
            Request::AcquireSlot => {
                self.ledger.slots.insert(id, Lock::Granted);
                self.done(id);
                self.input(Input::SlotReply { id, granted: true });
            }
            Request::AcquireLock => {
                let held = |secs, instance: Option<&str>| {
                    LockRefusal::Held(LockHeld {
                        since: now.checked_sub(Duration::from_secs(secs)).unwrap_or(now),
                        user: "bob".to_owned(),
                        instance: instance.map(str::to_owned),
                    })
                };
                let result = match pick(answer::ACQUIRE_LOCK) {
                    0 => Ok(()),
                    1 => Err(held(3, None)),
                    2 => Err(held(200, Some("gm-b:22"))),
                    3 => Err(LockRefusal::Unavailable),
                    _ => return false,
                };
                let state = if result.is_ok() {
                    Lock::Granted
                } else {
                    Lock::Refused
                };
                self.ledger.locks.insert(id, state);
                self.done(id);
                self.input(Input::LockReply { id, result });
            }
        }
        true
    }

    fn done(&mut self, id: RequestId) {
        self.ledger.done.push(id);
    }

    /// The platform's reply to a request of `kind`, or `None` for "not
    /// now".
    fn http_answer(
        &mut self,
        kind: HttpKind,
        choice: Option<u8>,
    ) -> Option<Result<HttpResponse, HttpError>> {
        let reply = |status: u16, body: &str| {
            Some(Ok(HttpResponse {
                status,
                body: body.as_bytes().to_vec(),
            }))
        };
        let len = match kind {
            HttpKind::Lookup => answer::HTTP_LOOKUP,
            HttpKind::Access => answer::HTTP_ACCESS,
            HttpKind::Provision => answer::HTTP_PROVISION,
        };
        let c = choice.map_or(0, |b| b % len);
        if c == answer::defer(len) {
            return None;
        }
        if c == answer::defer(len) - 1 {
            // A status and a body of the control stream's choosing.
            let status = control::CUSTOM_STATUSES
                [usize::from(self.control.param()) % control::CUSTOM_STATUSES.len()];
            let n = usize::from(self.control.param());
            let body = self.control.take(n).to_vec();
            match kind {
                HttpKind::Lookup => self.ledger.canned_user = false,
                HttpKind::Provision => self.ledger.canned_dyno = false,
                HttpKind::Access => {}
            }
            return Some(Ok(HttpResponse { status, body }));
        }
        let canned = format!(r#"{{"host":"{DYNO_HOST}","dyno_id":"{DYNO_ID}","rez_id":"r-1"}}"#);
        match (kind, c) {
            (HttpKind::Lookup, 0) => reply(200, &format!("42:{USER_API_KEY}\n")),
            (HttpKind::Lookup, 1) => reply(404, "not found"),
            (HttpKind::Lookup, 2) => reply(500, ""),
            (HttpKind::Lookup, 3) => reply(200, "nocolon"),
            (HttpKind::Lookup, 4) => reply(401, ""),
            (HttpKind::Lookup, 5) | (HttpKind::Access, 6) | (HttpKind::Provision, 4) => {
                Some(Err(HttpError::Timeout))
            }
            (HttpKind::Lookup, 6) => Some(Err(HttpError::Failed("connection refused".into()))),
            (HttpKind::Lookup, _) => Some(Err(HttpError::TooLarge)),
            (HttpKind::Access, 0) => reply(200, r#"{"name":"app"}"#),
            (HttpKind::Access, 1) => reply(200, r#"{"error":"nope"}"#),
            (HttpKind::Access, 2) => reply(404, ""),
            (HttpKind::Access, 3) => reply(403, ""),
            (HttpKind::Access, 4) => reply(500, ""),
            (HttpKind::Access, _) => reply(200, "garbage"),
            (HttpKind::Provision, 0) => reply(200, &canned),
            (HttpKind::Provision, 1) => {
                reply(500, r#"{"error": "Server Error. Check status page."}"#)
            }
            (HttpKind::Provision, 2) => reply(200, r#"{"host":"a b","dyno_id":"x","rez_id":"y"}"#),
            (HttpKind::Provision, _) => reply(200, "garbage"),
        }
    }
}

/// Which of the contract's calls `request` is; anything else is a bug.
fn classify(request: &HttpRequest) -> HttpKind {
    let path = request
        .url
        .strip_prefix("http://api.fuzz:5000")
        .unwrap_or_else(|| panic!("request to another server: {}", request.url));
    let kind = if let Some(fp) = path.strip_prefix("/internal/lookupUserByPublicKey?fingerprint=") {
        assert!(
            fp.len() == 32
                && fp
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "fingerprint {fp:?}"
        );
        HttpKind::Lookup
    } else if path.starts_with("/apps/") {
        HttpKind::Access
    } else if path.starts_with("/internal/") && path.contains("/gitaction?command=git-") {
        HttpKind::Provision
    } else {
        panic!("not a call of the contract: {}", request.url);
    };
    let method = if kind == HttpKind::Provision {
        Method::Post
    } else {
        Method::Get
    };
    assert_eq!(request.method, method, "{}", request.url);
    kind
}

impl Run<'_> {
    /// Plays the input: decisions and events until the control stream and
    /// the default script are both used up, or the session closed.
    fn play(&mut self) {
        // Every round reads at least one control byte or takes one
        // default step, which ends: the bound is only a safety net.
        for _ in 0..1_000_000 {
            if self.closes > 0 {
                return;
            }
            if !self.stdin_stalled {
                self.write_stdin(usize::MAX);
            }
            self.answer_pending(false);
            if self.closes > 0 || !self.event() {
                return;
            }
        }
    }

    /// One event from the control stream, or the default script's next
    /// step; false once there is none.
    fn event(&mut self) -> bool {
        let Some(byte) = self.control.next() else {
            return self.default_event();
        };
        match byte % op::COUNT {
            op::FEED => {
                let n = u16::from_be_bytes([self.control.param(), self.control.param()]);
                let n = if n == 0 { usize::MAX } else { usize::from(n) };
                self.feed(n);
            }
            op::STDOUT => {
                let data = control::data(self.control.param());
                let git = self.ledger.newest_proc(|p| p.stdout_open);
                let target = git.max(self.ledger.newest_dyno());
                if let Some(id) = target {
                    self.backend_data(id, Stream::Stdout, &data);
                }
            }
            op::STDERR => {
                let data = control::data(self.control.param());
                if let Some(id) = self.ledger.newest_proc(|p| p.stderr_open) {
                    self.backend_data(id, Stream::Stderr, &data);
                }
            }
            op::EOF_STDOUT => self.backend_eof(Stream::Stdout),
            op::EOF_STDERR => self.backend_eof(Stream::Stderr),
            op::EXIT => {
                let p = self.control.param();
                let status = if p < 0xf0 {
                    ExitStatus::Code(u32::from(p))
                } else {
                    let (name, core_dumped) = [
                        ("TERM", false),
                        ("KILL", false),
                        ("SEGV", true),
                        ("PIPE", false),
                    ][usize::from(p & 3)];
                    ExitStatus::Signal {
                        name: name.into(),
                        core_dumped,
                    }
                };
                self.backend_exit(status);
            }
            op::DYNO_CLEAN => self.dyno_closed(DynoEnd::Clean),
            op::DYNO_LOST => self.dyno_closed(DynoEnd::Lost),
            op::SLEEP => {
                let ms = control::SLEEPS[usize::from(self.control.param()) % control::SLEEPS.len()];
                self.now += Duration::from_millis(ms);
                self.input(Input::Timeout);
            }
            op::NEXT_DEADLINE => {
                if let Some(at) = self.session.poll_timeout() {
                    self.now = self.now.max(at);
                    self.input(Input::Timeout);
                }
            }
            op::PEER_CLOSED => {
                self.input(Input::PeerClosed);
            }
            op::SHUTDOWN => {
                self.input(Input::Shutdown);
            }
            op::STALL_STDIN => self.stdin_stalled = !self.stdin_stalled,
            op::WRITE_STDIN => {
                let n = control::WRITES[usize::from(self.control.param()) % control::WRITES.len()];
                self.write_stdin(n);
            }
            op::IGNORE_TERM => self.ignores_term = !self.ignores_term,
            _ => {
                let p = self.control.param();
                self.stale(p);
            }
        }
        true
    }

    /// What a runtime does when nothing else is decided: take the rest of
    /// the client's bytes, then let each backend end well.
    fn default_event(&mut self) -> bool {
        if self.fed < self.wire.len() {
            self.feed(usize::MAX);
            return true;
        }
        if let Some(id) = self
            .ledger
            .newest_proc(|p| !p.exited || p.stdout_open || p.stderr_open)
        {
            let p = &self.ledger.procs[&id];
            if !p.wrote_default && p.stdout_open && backend_read_limit(&self.session, id) > 0 {
                if let Some(p) = self.ledger.procs.get_mut(&id) {
                    p.wrote_default = true;
                }
                self.backend_data(id, Stream::Stdout, b"0000");
            } else if p.stdout_open {
                self.backend_eof(Stream::Stdout);
            } else if p.stderr_open {
                self.backend_eof(Stream::Stderr);
            } else {
                self.backend_exit(ExitStatus::Code(0));
            }
            return true;
        }
        if let Some(id) = self.ledger.newest_dyno() {
            let wrote = self.ledger.dynos[&id].wrote_default;
            if !wrote && backend_read_limit(&self.session, id) > 0 {
                if let Some(d) = self.ledger.dynos.get_mut(&id) {
                    d.wrote_default = true;
                }
                self.backend_data(id, Stream::Stdout, b"0000");
            } else {
                self.dyno_closed(DynoEnd::Clean);
            }
            return true;
        }
        false
    }

    /// Feeds up to `n` more bytes of the wire: in chunks with a timeout
    /// that is not due after each, or whole.
    fn feed(&mut self, n: usize) {
        let end = self.fed.saturating_add(n).min(self.wire.len());
        let wire = self.wire;
        let segment = &wire[self.fed..end];
        self.fed = end;
        if segment.is_empty() {
            return;
        }
        if !self.chunked {
            self.input(Input::Received(segment));
            return;
        }
        let mut at = 0;
        while at < segment.len() && self.closes == 0 {
            let r = self.chunks.next();
            let max = [8, 64, 512, 4096][(r & 3) as usize];
            let k = ((r >> 8) % max + 1).min((segment.len() - at) as u64) as usize;
            self.input(Input::Received(&segment[at..at + k]));
            at += k;
            // Not due, so it must change nothing. (At the same instant:
            // the decisions of both runs are taken at the same times.)
            if self.closes == 0 && self.session.poll_timeout().is_none_or(|d| d > self.now) {
                self.input(Input::Timeout);
            }
        }
    }

    /// Backend `id` writes (at most what the session takes now, as a
    /// runtime reads).
    fn backend_data(&mut self, id: RequestId, stream: Stream, data: &[u8]) {
        let n = data.len().min(backend_read_limit(&self.session, id));
        if n == 0 {
            return;
        }
        if let Some(d) = self.ledger.dynos.get_mut(&id) {
            d.spoke = true;
        }
        self.backend_bytes += n;
        // As the runtime reads: straight into the packets the session
        // lends, if it does; else into a buffer of its own.
        let packets = match self.lent_input(id, stream, &data[..n]) {
            Some(packets) => packets,
            None => self.input(Input::BackendData {
                id,
                stream,
                data: &data[..n],
            }),
        };
        self.stages.relay |= packets > 0;
    }

    /// `data` read into the packets the session lends for backend `id`'s
    /// `stream` (all of it: a lend is as large as the read limit allows),
    /// as `input` counts it; `None` if it lends none.
    fn lent_input(&mut self, id: RequestId, stream: Stream, data: &[u8]) -> Option<u32> {
        let before = self.session.transport().tx_seq();
        let mut lend = self.session.lend_backend(id, stream, data.len())?;
        assert_eq!(lend.len(), data.len(), "a lend smaller than the read limit");
        let mut at = 0;
        for buf in lend.bufs() {
            buf.copy_from_slice(&data[at..at + buf.len()]);
            at += buf.len();
        }
        assert_eq!(at, data.len());
        lend.commit(self.now, data.len());
        self.other_inputs += 1;
        Some(self.settled(before))
    }

    fn backend_eof(&mut self, stream: Stream) {
        let open = |p: &Proc| match stream {
            Stream::Stdout => p.stdout_open,
            Stream::Stderr => p.stderr_open,
        };
        let Some(id) = self.ledger.newest_proc(open) else {
            return;
        };
        if let Some(p) = self.ledger.procs.get_mut(&id) {
            match stream {
                Stream::Stdout => p.stdout_open = false,
                Stream::Stderr => p.stderr_open = false,
            }
        }
        self.input(Input::BackendEof { id, stream });
    }

    fn backend_exit(&mut self, status: ExitStatus) {
        let Some(id) = self.ledger.newest_proc(|p| !p.exited) else {
            return;
        };
        if let Some(p) = self.ledger.procs.get_mut(&id) {
            p.exited = true;
        }
        self.backend_ended = true;
        self.input(Input::BackendExited { id, status });
    }

    fn dyno_closed(&mut self, end: DynoEnd) {
        let Some(id) = self.ledger.newest_dyno() else {
            return;
        };
        if let Some(d) = self.ledger.dynos.get_mut(&id) {
            d.ended = true;
        }
        self.backend_ended = true;
        self.input(Input::DynoClosed { id, end });
    }

    /// The runtime writes up to `n` bytes of a backend's stdin.
    fn write_stdin(&mut self, n: usize) {
        for id in self.ledger.backends() {
            let k = backend_stdin(&self.session, id).len().min(n);
            if k > 0 {
                consume_backend_stdin(&mut self.session, self.now, id, k);
                self.drain();
                return;
            }
        }
    }

    /// A late answer: for a request already answered or abandoned where
    /// the runtime could race the session, else for an id never issued.
    fn stale(&mut self, p: u8) {
        let late = (!self.ledger.done.is_empty())
            .then(|| self.ledger.done[usize::from(p / 11) % self.ledger.done.len()]);
        let never = RequestId(STALE_BASE + u64::from(p / 11));
        let ok = |body: &str| {
            Ok(HttpResponse {
                status: 200,
                body: body.as_bytes().to_vec(),
            })
        };
        let input = match p % 11 {
            0 => Input::Spawned {
                id: late.unwrap_or(never),
                result: Ok(()),
            },
            1 => Input::RepoOpened {
                id: late.unwrap_or(never),
                result: Ok(false),
            },
            2 => Input::KeyLookedUp {
                id: late.unwrap_or(never),
                user: Some("alice".into()),
                access: None,
            },
            3 => Input::HttpDone {
                id: late.unwrap_or(never),
                result: ok(r#"{"name":"app"}"#),
            },
            4 => Input::DynoConnected {
                id: late.unwrap_or(never),
                result: Ok(()),
            },
            5 => Input::HelperDone {
                id: late.unwrap_or(never),
                result: Ok(Vec::new()),
            },
            // Backend events only ever for ids that never were: a runtime
            // reports nothing more of a stream once it ended.
            6 => Input::BackendData {
                id: never,
                stream: Stream::Stdout,
                data: b"0000",
            },
            7 => Input::BackendEof {
                id: never,
                stream: Stream::Stderr,
            },
            8 => Input::BackendExited {
                id: never,
                status: ExitStatus::Code(0),
            },
            9 => Input::DynoClosed {
                id: never,
                end: DynoEnd::Clean,
            },
            _ => {
                // A grant for a push the session never asked about: it is
                // a grant all the same, and must be given back.
                self.ledger.locks.insert(never, Lock::Granted);
                Input::LockReply {
                    id: never,
                    result: Ok(()),
                }
            }
        };
        self.input(input);
    }

    /// Fails unless the session sent at most what the bound allows.
    fn check_amplification(&self) {
        let allowance = self.backend_bytes + 2048 * self.other_inputs;
        let bound = 16 * 1024 + 4 * self.fed + 128 * allowance;
        assert!(
            self.sent.len() <= bound,
            "{} bytes sent for {} received, {} from the backend and {} other inputs",
            self.sent.len(),
            self.fed,
            self.backend_bytes,
            self.other_inputs
        );
    }

    fn result(&self) -> SessionRun {
        SessionRun {
            sent: self.sent.clone(),
            closed: self.closes == 1,
            outputs: self.outputs.clone(),
            stages: self.stages,
        }
    }

    /// Acts as a runtime that answers everything pending with its first
    /// answer and lets signalled git exit (SIGTERM unless it ignores it).
    fn runtime_round(&mut self) {
        self.answer_pending(true);
        let dying: Vec<(RequestId, &'static str)> = self
            .ledger
            .procs
            .iter()
            .filter(|(_, p)| p.started && !p.exited)
            .filter_map(|(id, p)| {
                if p.kill {
                    Some((*id, "KILL"))
                } else if p.term && !self.ignores_term {
                    Some((*id, "TERM"))
                } else {
                    None
                }
            })
            .collect();
        for (id, signal) in dying {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let open = self.ledger.procs.get_mut(&id).map(|p| match stream {
                    Stream::Stdout => std::mem::take(&mut p.stdout_open),
                    Stream::Stderr => std::mem::take(&mut p.stderr_open),
                });
                if open == Some(true) {
                    self.input(Input::BackendEof { id, stream });
                }
            }
            if let Some(p) = self.ledger.procs.get_mut(&id) {
                p.exited = true;
            }
            self.input(Input::BackendExited {
                id,
                status: ExitStatus::Signal {
                    name: signal.into(),
                    core_dumped: false,
                },
            });
        }
    }

    /// Drives the session to its end as a runtime would: each deadline,
    /// then the client gone; then checks the end of the contract.
    ///
    /// The deadlines are reached even once `Close` was reported: the
    /// session may still ask for one then (the login grace time of a
    /// connection that closed early), and must do nothing when it comes.
    fn finish(&mut self) {
        for _ in 0..8 {
            if self.closes == 0 {
                self.runtime_round();
            }
            let Some(at) = self.session.poll_timeout() else {
                break;
            };
            self.now = self.now.max(at);
            self.input(Input::Timeout);
        }
        self.input(Input::PeerClosed);
        for _ in 0..16 {
            if self.closes > 0 {
                break;
            }
            self.runtime_round();
            if let Some(at) = self.session.poll_timeout() {
                self.now = self.now.max(at);
                self.input(Input::Timeout);
            }
        }
        assert_eq!(self.closes, 1, "Close must be reported exactly once");
        assert_eq!(
            self.session.poll_timeout(),
            None,
            "a deadline asked for after close"
        );
        assert!(self.session.is_finished(), "closed but not finished");
        for (id, lock) in &self.ledger.locks {
            assert_ne!(*lock, Lock::Granted, "lock {id:?} never released");
        }
        for (id, slot) in &self.ledger.slots {
            assert_ne!(*slot, Lock::Granted, "command slot {id:?} never given back");
        }
        for (id, p) in &self.ledger.procs {
            assert!(!p.started || p.exited, "git {id:?} left running: {p:?}");
        }
        for (id, d) in &self.ledger.dynos {
            assert!(
                !d.connected || d.closed || d.ended,
                "dyno {id:?} left connected: {d:?}"
            );
        }
        // Nothing more happens once it is over.
        self.session.handle_input(
            self.now,
            Input::Received(b"SSH-2.0-late\r\n\0\0\0\x0c\x0a\x15"),
        );
        self.session
            .handle_input(self.now + Duration::from_secs(7200), Input::Timeout);
        assert!(self.session.transmit().is_empty(), "bytes sent after close");
        assert!(self.session.poll_output().is_none(), "output after close");
    }
}

/// Plays `data` against a fresh session: each wire segment in chunks with
/// spurious timeouts when `chunked` is true (and then the end of the
/// session and its checks), in one piece otherwise. Panics where the
/// session breaks its contract.
pub fn run_session(data: &[u8], chunked: bool) -> SessionRun {
    let mut run = Run::new(data, chunked);
    run.play();
    run.check_amplification();
    let result = run.result();
    if chunked {
        run.finish();
    }
    result
}

/// How far `data` gets, for measuring a corpus: the stages of a whole run,
/// and whether a channel was open. A channel is open when a git command
/// was accepted, or when a shutdown at the end of the input leaves the
/// connection up (the session then tells the open channel's user why it
/// stops; without a channel it disconnects at once).
pub fn session_stages(data: &[u8]) -> (Stages, bool) {
    let mut run = Run::new(data, false);
    run.play();
    let stages = run.stages;
    let mut channel = stages.exec;
    if run.closes == 0 && !run.session.transport().is_closed() {
        run.input(Input::Shutdown);
        channel |= !run.session.transport().is_closed();
    }
    (stages, channel)
}

/// The body of the `server_session` target.
pub fn server_session(data: &[u8]) {
    let chunked = run_session(data, true);
    let whole = run_session(data, false);
    // The outputs in any order: the session settles after each input, so
    // two outputs decided by messages of one segment (CloseStdin after the
    // client's EOF, SIGTERM after its CHANNEL_CLOSE) come out in either
    // order depending on where the chunks end; each is still due.
    let same = chunked.sent == whole.sent
        && chunked.closed == whole.closed
        && chunked.stages == whole.stages
        && sorted_outputs(&chunked) == sorted_outputs(&whole);
    assert!(
        same,
        "chunking or a spurious timeout changed what the server did: {}",
        difference(&chunked, &whole)
    );
}

/// A run's outputs, sorted.
fn sorted_outputs(run: &SessionRun) -> Vec<&str> {
    let mut outputs: Vec<&str> = run.outputs.iter().map(String::as_str).collect();
    outputs.sort_unstable();
    outputs
}

/// Where two runs part, for the failure message (the runs themselves are
/// too long to read).
fn difference(chunked: &SessionRun, whole: &SessionRun) -> String {
    let mut out = Vec::new();
    if chunked.stages != whole.stages || chunked.closed != whole.closed {
        out.push(format!(
            "chunked {:?} closed {}, whole {:?} closed {}",
            chunked.stages, chunked.closed, whole.stages, whole.closed
        ));
    }
    let (c, w) = (sorted_outputs(chunked), sorted_outputs(whole));
    let outputs = c.iter().zip(&w);
    if let Some((i, (c, w))) = outputs.enumerate().find(|(_, (c, w))| c != w) {
        out.push(format!("output {i}: chunked {c}, whole {w}"));
    } else if c.len() != w.len() {
        let n = c.len().min(w.len());
        out.push(format!(
            "outputs from {n}: chunked {:?}, whole {:?}",
            &c[n..],
            &w[n..]
        ));
    }
    if chunked.sent != whole.sent {
        let at = chunked
            .sent
            .iter()
            .zip(&whole.sent)
            .take_while(|(c, w)| c == w);
        out.push(format!(
            "sent {} and {} bytes, apart from byte {}",
            chunked.sent.len(),
            whole.sent.len(),
            at.count()
        ));
    }
    out.join("; ")
}
