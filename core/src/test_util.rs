//! Two peers in memory: our client and the server session, joined by byte
//! queues, with virtual time, a tamper hook and a scripted stand-in for the
//! runtime (git processes, dynos, the platform, the key and lock tables).
//! The end-to-end tests use the real things; this is for tests that step
//! the core through its states in virtual time, from deadline to deadline
//! ([`Pair::step_to_next_deadline`]), as quinn-proto's `Pair` does.
//!
//! Built with the `test-util` feature, for the `gitmouth-tests` crate. The
//! core reads no clock, here either: a pair's virtual time starts at an
//! instant its caller gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::app::api::{HttpError, HttpRequest, HttpResponse};
use crate::app::authorized_keys::AuthorizedKeys;
use crate::app::dyno::DynoEnd;
use crate::client::{self, Client, ClientConfig, Event};
use crate::lock_table::{Acquired, LockTable, LockTicket, Standing};
use crate::server::{
    self, ExitStatus, Input, LockHeld, LockRefusal, Output, ProcessSpec, RepoError, RequestId,
    ServerConfig, Session, Signal, Stream,
};
use crate::transport::hostkey::HostKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ssh_key::PrivateKey;

/// A push-lock table in memory (the core's [`LockTable`], which the
/// runtime keeps too), shared by cloning (one thread: tests step their
/// pairs in turn). Each pair's runtime looks at its waiting requests after
/// every step, as the runtime's waiters wake when the lock changes hands.
#[derive(Debug, Default, Clone)]
pub struct PushLocks {
    table: Rc<RefCell<LockTable>>,
}

impl PushLocks {
    /// Whether `repo` is locked now.
    pub fn is_held(&self, repo: &str) -> bool {
        self.table.borrow().is_held(repo)
    }

    /// How many requests wait for `repo`'s lock.
    pub fn waiting(&self, repo: &str) -> usize {
        self.table.borrow().waiting(repo)
    }
}

/// The server's command slots (`--max-commands`) in memory, shared by
/// cloning between pairs (several connections of one server).
#[derive(Debug, Default, Clone)]
pub struct CommandSlots {
    /// At most this many at once (0: no limit), and how many are given.
    state: Rc<RefCell<(usize, usize)>>,
}

impl CommandSlots {
    /// Slots for at most `max` commands at once (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            state: Rc::new(RefCell::new((max, 0))),
        }
    }

    /// How many are given now.
    pub fn in_use(&self) -> usize {
        self.state.borrow().1
    }

    fn take(&self) -> bool {
        let mut state = self.state.borrow_mut();
        let (max, used) = *state;
        let free = max == 0 || used < max;
        if free {
            state.1 += 1;
        }
        free
    }

    fn give_back(&self) {
        let mut state = self.state.borrow_mut();
        assert!(state.1 > 0, "a slot given back that was never given");
        state.1 -= 1;
    }
}

/// A key pair for tests, made from a seed.
pub fn ed25519(seed: u8, comment: &str) -> PrivateKey {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let mut key = PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
    key.set_comment(comment);
    key
}

/// An ECDSA P-256 key pair for tests.
pub fn ecdsa(seed: u8, comment: &str) -> PrivateKey {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let alg = ssh_key::Algorithm::Ecdsa {
        curve: ssh_key::EcdsaCurve::NistP256,
    };
    let mut key = PrivateKey::random(&mut rng, alg).unwrap();
    key.set_comment(comment);
    key
}

/// An `authorized_keys` text listing `keys`.
pub fn authorized(keys: &[&PrivateKey]) -> AuthorizedKeys {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.public_key().to_openssh().unwrap()))
        .collect();
    let (keys, errors) = AuthorizedKeys::parse(&text);
    assert!(errors.is_empty(), "{errors:?}");
    keys
}

/// A fixed ed25519 host key.
pub fn host_key() -> HostKey {
    HostKey::generate_ed25519(&mut ChaCha20Rng::from_seed([42; 32]))
}

thread_local! {
    /// The users of the last [`server_config`] made on this thread: the
    /// keys file of the runtime stand-in of every [`Pair`] made after it
    /// (each test runs on a thread of its own).
    static USERS: std::cell::RefCell<AuthorizedKeys> =
        std::cell::RefCell::new(AuthorizedKeys::empty());
}

/// The users of the last [`server_config`] made on this thread, for a
/// runtime stand-in of a test's own that answers key lookups.
pub fn registered_users() -> AuthorizedKeys {
    USERS.with(|u| u.borrow().clone())
}

/// A server configuration in standalone mode with these users (the keys
/// go to the runtime stand-in, which answers the session's lookups).
pub fn server_config(users: &[&PrivateKey]) -> ServerConfig {
    USERS.with(|u| *u.borrow_mut() = authorized(users));
    ServerConfig::standalone(vec![host_key()], PathBuf::from("/srv/repos"))
}

/// What the stand-in git process does.
#[derive(Debug, Clone)]
pub struct Script {
    /// Bytes it writes to stdout as soon as it starts.
    pub stdout: Vec<u8>,
    /// Bytes it writes to stderr as soon as it starts.
    pub stderr: Vec<u8>,
    /// Whether it echoes its stdin to stdout.
    pub echo: bool,
    /// Whether it reads its stdin at all (false: the pipe stays full).
    pub reads_stdin: bool,
    /// Exit when stdin closes (with this status); `None`: exit once its
    /// output is written.
    pub exit_on_eof: Option<ExitStatus>,
    /// Status when exiting on its own.
    pub status: ExitStatus,
    /// Ignore SIGTERM (only SIGKILL stops it).
    pub ignore_term: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            stdout: Vec::new(),
            stderr: Vec::new(),
            echo: false,
            reads_stdin: true,
            exit_on_eof: Some(ExitStatus::Code(0)),
            status: ExitStatus::Code(0),
            ignore_term: false,
        }
    }
}

impl Process {
    /// Whether it has exited (on its own or by a signal).
    pub fn exited(&self) -> bool {
        self.exit.is_some()
    }
}

/// The stand-in process while it runs.
#[derive(Debug)]
pub struct Process {
    /// Its id.
    pub id: RequestId,
    /// What was asked to run.
    pub spec: ProcessSpec,
    /// Everything it read from stdin.
    pub stdin: Vec<u8>,
    stdout: VecDeque<u8>,
    stderr: VecDeque<u8>,
    /// Whether its stdin was closed.
    pub stdin_closed: bool,
    exit: Option<ExitStatus>,
    exit_reported: bool,
    /// Signals it received.
    pub signals: Vec<Signal>,
}

/// Answers HTTP requests in memory (`None`: leave it unanswered).
pub type HttpHandler = Box<dyn FnMut(&HttpRequest) -> Option<Result<HttpResponse, HttpError>>>;

/// How the stand-in dyno behaves.
#[derive(Debug, Clone)]
pub struct DynoScript {
    /// Whether the connection succeeds.
    pub connects: bool,
    /// What it sends first, after the header.
    pub first: Vec<u8>,
    /// Whether it echoes what it receives.
    pub echo: bool,
    /// Close after sending `first` (and with what end); `None`: stay open
    /// until the client closes.
    pub end: Option<DynoEnd>,
}

impl Default for DynoScript {
    fn default() -> Self {
        Self {
            connects: true,
            first: b"0000".to_vec(),
            echo: false,
            end: Some(DynoEnd::Clean),
        }
    }
}

/// The stand-in dyno connection.
#[derive(Debug)]
pub struct Dyno {
    /// Its id.
    pub id: RequestId,
    /// Host and port it was asked for.
    pub target: (String, u16),
    /// The header it received.
    pub header: Vec<u8>,
    /// What it received after the header.
    pub received: Vec<u8>,
    to_send: VecDeque<u8>,
    /// Whether we (the session) closed it.
    pub closed_by_session: bool,
    ended: bool,
}

impl Process {
    /// Makes the process write more to stdout.
    pub fn queue_stdout(&mut self, data: &[u8]) {
        self.stdout.extend(data.iter().copied());
    }
}

/// The runtime stand-in: performs the server's outputs in memory.
#[derive(Default)]
pub struct FakeRuntime {
    /// Answers HTTP requests.
    pub http: Option<HttpHandler>,
    /// Every HTTP request made, in order.
    pub requests: Vec<HttpRequest>,
    /// Requests cancelled.
    pub cancelled: Vec<RequestId>,
    /// How dynos behave.
    pub dyno_script: DynoScript,
    /// The dyno connection, once made.
    pub dyno: Option<Dyno>,
    /// Repositories that exist.
    pub repos: BTreeSet<PathBuf>,
    /// Repositories created here whose HEAD names no branch yet.
    pub unborn: BTreeSet<PathBuf>,
    /// How new processes behave.
    pub script: Script,
    /// The process, once spawned.
    pub process: Option<Process>,
    /// Every output the server produced, in order.
    pub outputs: Vec<Output>,
    /// Answers not yet delivered.
    pending: VecDeque<Answer>,
    /// Whether spawning fails.
    pub fail_spawn: bool,
    /// The authorized keys that answer key lookups.
    pub keys: AuthorizedKeys,
    /// The access rules sent with every key lookup's answer.
    pub access: Option<std::sync::Arc<crate::app::access::AccessRules>>,
    /// The push-lock table (share it between pairs for two connections).
    pub locks: PushLocks,
    /// Locks this pair's session holds.
    pub held: Vec<(RequestId, LockTicket)>,
    /// Lock requests of this pair's session waiting in turn, with the
    /// holder it was last told of.
    pub queued: Vec<(RequestId, LockTicket, LockHeld)>,
    /// Locks granted and released, for "exactly once" checks.
    pub lock_grants: usize,
    /// See `lock_grants`.
    pub lock_releases: usize,
    /// Waiting lock requests withdrawn.
    pub lock_withdrawals: usize,
    /// The command slots (share them between pairs for one server).
    pub slots: CommandSlots,
    /// Slots this pair's session holds.
    pub held_slots: Vec<RequestId>,
    /// Slots given and given back, for "exactly once" checks.
    pub slot_grants: usize,
    /// See `slot_grants`.
    pub slot_releases: usize,
    /// Slots refused.
    pub slot_refusals: usize,
    /// Whether `git init` of a repository being created hangs: the
    /// answer to `OpenRepo` waits in `held_repo` until
    /// [`FakeRuntime::finish_init`].
    pub hold_init: bool,
    /// The held answer to `OpenRepo`: its id, path and temporary path.
    pub held_repo: Option<(RequestId, PathBuf, PathBuf)>,
    /// Whether pushes create no ref (a failed or rejected push, or a
    /// `--dry-run`): `for-each-ref` lists nothing.
    pub no_refs: bool,
    /// Directories that exist besides the repositories (temporary
    /// repositories of `git init`).
    pub dirs: BTreeSet<PathBuf>,
    /// Directories removed (`RemoveDir`, and each `RemoveDirsIn` as
    /// `dir/prefix*`), in order.
    pub removed: Vec<PathBuf>,
    /// Relay the stand-in process's and dyno's output only through
    /// [`Input::BackendData`] (a buffer of the runtime's), never straight
    /// into lent packets ([`Session::lend_backend`]), which is tried first
    /// otherwise, as the real runtime does.
    pub copy_output: bool,
    /// The sizes of successive reads of their output, cycled (empty: 8192
    /// bytes each): what is asked of a lend, or the most given as
    /// [`Input::BackendData`].
    pub read_sizes: Vec<usize>,
    /// Reads made so far (the next size's index).
    reads: usize,
    /// Output bytes committed into lent packets, and the lends committed.
    pub lent: (usize, usize),
}

#[derive(Debug)]
enum Answer {
    Repo(RequestId, Result<bool, RepoError>),
    Spawned(RequestId, Result<(), String>),
    Helper(RequestId, Result<Vec<u8>, String>),
    Http(RequestId, Result<HttpResponse, HttpError>),
    Dyno(RequestId, Result<(), String>),
    Key(
        RequestId,
        Option<String>,
        Option<std::sync::Arc<crate::app::access::AccessRules>>,
    ),
    Lock {
        id: RequestId,
        repo: String,
        user: String,
        wait: bool,
    },
    Slot(RequestId),
}

/// The size of the next read of a backend's output.
fn next_read_size(sizes: &[usize], reads: &mut usize) -> usize {
    let size = match sizes {
        [] => 8192,
        sizes => sizes[*reads % sizes.len()].max(1),
    };
    *reads += 1;
    size
}

/// Reads up to `max` bytes of a backend's output (`queue`) into the
/// session as a runtime does: straight into lent packets when the session
/// lends (unless `copy`), else as [`Input::BackendData`] within
/// [`Session::backend_read_limit`]. Returns whether anything moved.
fn relay_output(
    server: &mut Session,
    now: Instant,
    (id, stream): (RequestId, Stream),
    queue: &mut VecDeque<u8>,
    max: usize,
    copy: bool,
    lent: &mut (usize, usize),
) -> bool {
    if queue.is_empty() {
        return false;
    }
    if !copy && let Some(mut lend) = server.lend_backend(id, stream, max) {
        let n = lend.len().min(queue.len());
        let mut left = n;
        for buf in lend.bufs() {
            let k = buf.len().min(left);
            for (to, from) in buf[..k].iter_mut().zip(queue.drain(..k)) {
                *to = from;
            }
            left -= k;
            if left == 0 {
                break;
            }
        }
        lend.commit(now, n);
        lent.0 += n;
        lent.1 += 1;
        return true;
    }
    let limit = server.backend_read_limit(id).min(max);
    if limit == 0 {
        return false;
    }
    let n = limit.min(queue.len());
    let data: Vec<u8> = queue.drain(..n).collect();
    server.handle_input(
        now,
        Input::BackendData {
            id,
            stream,
            data: &data,
        },
    );
    true
}

/// A hook that may alter bytes in flight.
pub type Tamper = Box<dyn FnMut(&mut Vec<u8>)>;

/// The two peers.
pub struct Pair {
    /// Our client.
    pub client: Client,
    /// The server session.
    pub server: Session,
    /// Virtual time.
    pub now: Instant,
    /// The runtime stand-in.
    pub rt: FakeRuntime,
    /// Events the client received, in order.
    pub events: Vec<Event>,
    /// Largest chunk moved per step in each direction.
    pub chunk: usize,
    /// Called on each client→server chunk before delivery.
    pub tamper: Option<Tamper>,
    /// Every byte the server sent.
    pub server_sent: Vec<u8>,
    /// Whether the client's transmit is held (a client that does not read
    /// or write).
    pub client_stalled: bool,
    /// Whether the server's transmit is held (a client that does not read).
    pub server_stalled: bool,
}

impl Pair {
    /// A pair with default client settings.
    pub fn new(config: ServerConfig, epoch: Instant) -> Self {
        Self::with_client(config, ClientConfig::default(), 7, epoch)
    }

    /// A pair with the given client settings and seed. Virtual time starts
    /// at `epoch`, which the caller reads from its clock once (the core
    /// reads none): only differences from it matter.
    pub fn with_client(
        config: ServerConfig,
        client: ClientConfig,
        seed: u8,
        epoch: Instant,
    ) -> Self {
        let now = epoch;
        Self {
            client: Client::new(&client, [seed; 32], now),
            server: Session::new(std::sync::Arc::new(config), [seed.wrapping_add(1); 32], now),
            now,
            rt: FakeRuntime {
                keys: USERS.with(|u| u.borrow().clone()),
                ..FakeRuntime::default()
            },
            events: Vec::new(),
            chunk: usize::MAX,
            tamper: None,
            server_sent: Vec::new(),
            client_stalled: false,
            server_stalled: false,
        }
    }

    /// Moves bytes and outputs once; returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        if !self.client_stalled && self.server.wants_read() {
            let pending = self.client.transmit();
            if !pending.is_empty() {
                let n = pending.len().min(self.chunk);
                let mut bytes = pending[..n].to_vec();
                self.client.consume_transmit(n);
                if let Some(t) = self.tamper.as_mut() {
                    t(&mut bytes);
                }
                self.server.handle_input(now, Input::Received(&bytes));
                moved = true;
            }
        }
        if !self.server_stalled {
            let pending = self.server.transmit();
            if !pending.is_empty() {
                let n = pending.len().min(self.chunk);
                let bytes = pending[..n].to_vec();
                self.server.consume_transmit(n);
                self.server_sent.extend_from_slice(&bytes);
                self.client
                    .handle_input(now, client::Input::Received(&bytes));
                let broken = self.client.flow_violations();
                assert!(
                    broken.is_empty(),
                    "the server broke flow control: {broken:?}"
                );
                moved = true;
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
            moved = true;
        }
        while let Some(out) = self.server.poll_output() {
            self.rt.perform(&out, now);
            self.rt.outputs.push(out);
            moved = true;
        }
        moved |= self.rt.run(&mut self.server, now);
        moved
    }

    /// Steps until nothing moves (bounded).
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    /// Jumps virtual time and fires due timeouts on both sides.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_input(self.now, Input::Timeout);
        }
        if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
            self.client.handle_input(self.now, client::Input::Timeout);
        }
        self.drive();
    }

    /// The earliest deadline of either side, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Jumps virtual time to the next deadline of either side, fires it and
    /// drives until nothing moves; false if neither side has a deadline.
    /// (A deadline in the past is fired at the present instant: time never
    /// goes back.)
    pub fn step_to_next_deadline(&mut self) -> bool {
        let Some(at) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(at);
        self.advance(Duration::ZERO);
        true
    }

    /// Fires every server deadline up to `until` from now, one at a time,
    /// as a runtime would (quinn-proto's `Pair` steps the same way).
    pub fn run_for(&mut self, until: Duration) {
        let end = self.now + until;
        for _ in 0..10_000 {
            match self.server.poll_timeout() {
                Some(at) if at <= end => {
                    assert!(
                        at >= self.now,
                        "a deadline in the past would spin the runtime"
                    );
                    self.advance(at - self.now);
                }
                _ => {
                    self.advance(end - self.now);
                    return;
                }
            }
        }
        panic!("too many deadlines");
    }

    /// Steps from deadline to deadline until the server session is
    /// finished, at most `max_steps` times; whether it finished.
    pub fn run_to_end(&mut self, max_steps: usize) -> bool {
        self.drive();
        for _ in 0..max_steps {
            if self.server.is_finished() {
                return true;
            }
            if !self.step_to_next_deadline() {
                break;
            }
        }
        self.server.is_finished()
    }

    /// Drives until the first key exchange is done.
    pub fn handshake(&mut self) {
        self.drive();
        assert!(
            self.events.contains(&Event::Established),
            "no handshake: {:?}",
            self.server_close()
        );
    }

    /// Handshake, service request, and authentication with `key`.
    pub fn login(&mut self, key: &PrivateKey) {
        self.handshake();
        self.client.request_service("ssh-userauth");
        self.drive();
        self.client.auth_publickey("git", key);
        self.drive();
        assert_eq!(
            self.events.last(),
            Some(&Event::AuthSuccess),
            "login failed: {:?}",
            self.events
        );
    }

    /// Logs in and opens the session channel.
    pub fn open(&mut self, key: &PrivateKey, window: u32, max_packet: u32) {
        self.login(key);
        self.client.open_session(window, max_packet);
        self.drive();
        assert_eq!(self.events.last(), Some(&Event::ChannelOpened));
    }

    /// The client's connection drops (what a client does once its last
    /// channel is over: the server keeps the connection for more).
    pub fn hang_up(&mut self) {
        self.server.handle_input(self.now, Input::PeerClosed);
        self.drive();
    }

    /// Opens one more session channel, numbered `sender` on the client's
    /// side (our client keeps one channel: the new one becomes the one it
    /// talks to), and returns the server's answer.
    pub fn open_channel(&mut self, sender: u32) -> Event {
        let mut raw = Vec::new();
        crate::connection::msg::ChannelMsg::Open {
            kind: b"session",
            sender,
            window: 1 << 20,
            max_packet: 32768,
            extra: b"",
        }
        .encode(&mut raw);
        self.client.send_raw(&raw);
        self.drive();
        self.events
            .last()
            .cloned()
            .expect("an answer to the channel open")
    }

    /// Why the server ended the connection, if it did.
    pub fn server_close(&self) -> Option<server::Output> {
        self.rt
            .outputs
            .iter()
            .rev()
            .find(|o| matches!(o, Output::Close(_)))
            .map(|o| match o {
                Output::Close(r) => Output::Close(r.clone()),
                _ => unreachable!(),
            })
    }

    /// The server's close reason, as text.
    pub fn close_text(&self) -> String {
        match self.server_close() {
            Some(Output::Close(r)) => r.to_string(),
            _ => String::new(),
        }
    }

    /// All stdout and stderr the client received.
    pub fn received(&self) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        for e in &self.events {
            match e {
                Event::Data(d) => out.extend_from_slice(d),
                Event::ExtendedData(d) => err.extend_from_slice(d),
                _ => {}
            }
        }
        (out, err)
    }

    /// The exit status the client received.
    pub fn exit_status(&self) -> Option<u32> {
        self.events.iter().find_map(|e| match e {
            Event::ExitStatus(s) => Some(*s),
            _ => None,
        })
    }
}

impl FakeRuntime {
    fn perform(&mut self, out: &Output, now: Instant) {
        match out {
            Output::OpenRepo { id, path, create } => {
                if self.hold_init
                    && let Some(init) = create
                    && !self.repos.contains(path)
                {
                    self.dirs.insert(init.temp.clone());
                    self.held_repo = Some((*id, path.clone(), init.temp.clone()));
                    return;
                }
                // A repository of the same name but for case, as the
                // runtime looks for one before creating.
                let twin = create.as_ref().and_then(|init| {
                    self.repos.iter().find_map(|p| {
                        let name = p.strip_prefix(&init.root).ok()?.to_str()?;
                        let name = name.strip_suffix(".git")?;
                        crate::app::repo_format::differ_only_in_case(name, &init.name)
                            .then(|| name.to_owned())
                    })
                });
                let result = if self.repos.contains(path) {
                    Ok(false)
                } else if let Some(twin) = twin {
                    Err(RepoError::CaseTwin(twin))
                } else if create.is_some() {
                    self.repos.insert(path.clone());
                    self.unborn.insert(path.clone());
                    Ok(true)
                } else {
                    Err(RepoError::NotFound)
                };
                self.pending.push_back(Answer::Repo(*id, result));
            }
            Output::Spawn { id, process } => {
                if self.fail_spawn {
                    self.pending
                        .push_back(Answer::Spawned(*id, Err("no such program".into())));
                    return;
                }
                let s = &self.script;
                self.process = Some(Process {
                    id: *id,
                    spec: process.clone(),
                    stdin: Vec::new(),
                    stdout: s.stdout.iter().copied().collect(),
                    stderr: s.stderr.iter().copied().collect(),
                    stdin_closed: false,
                    exit: None,
                    exit_reported: false,
                    signals: Vec::new(),
                });
                self.pending.push_back(Answer::Spawned(*id, Ok(())));
            }
            Output::CloseStdin { id } => {
                if let Some(p) = self.process.as_mut().filter(|p| p.id == *id) {
                    p.stdin_closed = true;
                    if let Some(status) = self.script.exit_on_eof.clone() {
                        p.exit.get_or_insert(status);
                    }
                }
            }
            Output::Signal { id, signal } => {
                if let Some(p) = self.process.as_mut().filter(|p| p.id == *id) {
                    p.signals.push(*signal);
                    let dies = *signal == Signal::Kill || !self.script.ignore_term;
                    if dies && p.exit.is_none() {
                        let name = if *signal == Signal::Kill {
                            "KILL"
                        } else {
                            "TERM"
                        };
                        p.exit = Some(ExitStatus::Signal {
                            name: name.into(),
                            core_dumped: false,
                        });
                    }
                }
            }
            Output::RunHelper { id, process } => {
                let repo = PathBuf::from(process.args.get(1).cloned().unwrap_or_default());
                let has = |word: &str| process.args.iter().any(|a| a == word);
                let answer = if has("rev-parse") {
                    if self.unborn.contains(&repo) {
                        Err("unborn HEAD".into())
                    } else {
                        Ok(Vec::new())
                    }
                } else if has("for-each-ref") {
                    if self.no_refs {
                        Ok(Vec::new())
                    } else {
                        Ok(b"refs/heads/main\n".to_vec())
                    }
                } else {
                    if has("symbolic-ref") {
                        self.unborn.remove(&repo);
                    }
                    Ok(Vec::new())
                };
                self.pending.push_back(Answer::Helper(*id, answer));
            }
            Output::Http { id, request } => {
                self.requests.push(request.clone());
                if let Some(answer) = self.http.as_mut().and_then(|h| h(request)) {
                    self.pending.push_back(Answer::Http(*id, answer));
                }
            }
            Output::RemoveDir { path } => {
                self.repos.remove(path);
                self.unborn.remove(path);
                self.dirs.remove(path);
                self.removed.push(path.clone());
            }
            Output::RemoveDirsIn { dir, prefix } => {
                self.removed.push(dir.join(format!("{prefix}*")));
            }
            Output::Cancel { id } => {
                self.cancelled.push(*id);
                if self.held_repo.as_ref().is_some_and(|(held, ..)| held == id) {
                    // Killed: what it made stays until removed.
                    self.held_repo = None;
                }
                self.pending
                    .retain(|a| !matches!(a, Answer::Http(i, _) if i == id));
            }
            Output::ConnectDyno {
                id,
                host,
                port,
                header,
            } => {
                let s = &self.dyno_script;
                if !s.connects {
                    self.pending
                        .push_back(Answer::Dyno(*id, Err("connection refused".into())));
                    return;
                }
                self.dyno = Some(Dyno {
                    id: *id,
                    target: (host.clone(), *port),
                    header: header.as_bytes().to_vec(),
                    received: Vec::new(),
                    to_send: s.first.iter().copied().collect(),
                    closed_by_session: false,
                    ended: false,
                });
                self.pending.push_back(Answer::Dyno(*id, Ok(())));
            }
            Output::CloseDyno { id } => {
                if let Some(d) = self.dyno.as_mut().filter(|d| d.id == *id) {
                    d.closed_by_session = true;
                }
            }
            Output::LookupKey { id, blob } => {
                let user = self.keys.find_blob(blob).map(|e| e.user.clone());
                self.pending
                    .push_back(Answer::Key(*id, user, self.access.clone()));
            }
            Output::AcquireLock {
                id,
                repo,
                user,
                wait,
            } => {
                self.pending.push_back(Answer::Lock {
                    id: *id,
                    repo: repo.clone(),
                    user: user.clone(),
                    wait: *wait,
                });
            }
            Output::ReleaseLock { id } => {
                let mut table = self.locks.table.borrow_mut();
                if let Some(at) = self.held.iter().position(|(held, _)| held == id) {
                    let (_, ticket) = self.held.remove(at);
                    table.release(ticket, now);
                    self.lock_releases += 1;
                } else if let Some(at) = self.queued.iter().position(|(q, ..)| q == id) {
                    let (_, ticket, _) = self.queued.remove(at);
                    table.release(ticket, now);
                    self.lock_withdrawals += 1;
                } else {
                    panic!("a release of a lock neither held nor waited for: {id:?}");
                }
            }
            Output::AcquireSlot { id } => self.pending.push_back(Answer::Slot(*id)),
            Output::ReleaseSlot { id } => {
                let before = self.held_slots.len();
                self.held_slots.retain(|held| held != id);
                assert_eq!(
                    before,
                    self.held_slots.len() + 1,
                    "a slot given back that is not held"
                );
                self.slots.give_back();
                self.slot_releases += 1;
            }
            Output::Authenticated(_) | Output::Close(_) => {}
        }
    }

    /// The held `git init` finishes: the repository is renamed into
    /// place and the session told.
    pub fn finish_init(&mut self, server: &mut Session, now: Instant) {
        let (id, path, temp) = self.held_repo.take().expect("a git init held");
        self.dirs.remove(&temp);
        self.repos.insert(path.clone());
        self.unborn.insert(path);
        server.handle_input(
            now,
            Input::RepoOpened {
                id,
                result: Ok(true),
            },
        );
    }

    /// Tells this pair's waiting lock requests what changed: a lock that
    /// is now theirs, or a new holder (what the runtime's waiters do when
    /// woken).
    fn wake_lock_waiters(&mut self, server: &mut Session, now: Instant) -> bool {
        let mut moved = false;
        let mut i = 0;
        while i < self.queued.len() {
            let (id, ticket, told) = self.queued[i].clone();
            let standing = self.locks.table.borrow().standing(ticket);
            match standing {
                Standing::Holds => {
                    self.queued.remove(i);
                    self.lock_grants += 1;
                    self.held.push((id, ticket));
                    server.handle_input(now, Input::LockReply { id, result: Ok(()) });
                    moved = true;
                    // The session may have withdrawn others meanwhile.
                    i = 0;
                }
                Standing::Waits(held) if held != told => {
                    self.queued[i].2 = held.clone();
                    server.handle_input(now, Input::LockWaiting { id, held });
                    moved = true;
                    i = 0;
                }
                Standing::Waits(_) => i += 1,
                Standing::Gone => panic!("a queued lock request the table forgot: {id:?}"),
            }
        }
        moved
    }

    /// Ends the dyno connection now.
    pub fn end_dyno(&mut self, server: &mut Session, now: Instant, end: DynoEnd) {
        if let Some(d) = self.dyno.as_mut().filter(|d| !d.ended) {
            d.ended = true;
            server.handle_input(now, Input::DynoClosed { id: d.id, end });
        }
    }

    fn run_dyno(&mut self, server: &mut Session, now: Instant) -> bool {
        let script = self.dyno_script.clone();
        let Some(d) = self.dyno.as_mut() else {
            return false;
        };
        if d.ended || d.closed_by_session {
            return false;
        }
        let mut moved = false;
        let input = server.backend_stdin(d.id).to_vec();
        if !input.is_empty() {
            d.received.extend_from_slice(&input);
            if script.echo {
                d.to_send.extend(input.iter().copied());
            }
            server.consume_backend_stdin(now, d.id, input.len());
            moved = true;
        }
        let max = next_read_size(&self.read_sizes, &mut self.reads);
        let lent = &mut self.lent;
        moved |= relay_output(
            server,
            now,
            (d.id, Stream::Stdout),
            &mut d.to_send,
            max,
            self.copy_output,
            lent,
        );
        if let Some(end) = script.end
            && d.to_send.is_empty()
            && !script.echo
        {
            d.ended = true;
            server.handle_input(now, Input::DynoClosed { id: d.id, end });
            moved = true;
        }
        moved
    }

    /// Delivers answers and runs the process; returns whether anything moved.
    fn run(&mut self, server: &mut Session, now: Instant) -> bool {
        let mut moved = false;
        while let Some(a) = self.pending.pop_front() {
            moved = true;
            match a {
                Answer::Repo(id, result) => {
                    server.handle_input(now, Input::RepoOpened { id, result })
                }
                Answer::Spawned(id, result) => {
                    server.handle_input(now, Input::Spawned { id, result })
                }
                Answer::Helper(id, result) => {
                    server.handle_input(now, Input::HelperDone { id, result })
                }
                Answer::Http(id, result) => {
                    server.handle_input(now, Input::HttpDone { id, result })
                }
                Answer::Dyno(id, result) => {
                    server.handle_input(now, Input::DynoConnected { id, result })
                }
                Answer::Key(id, user, access) => {
                    server.handle_input(now, Input::KeyLookedUp { id, user, access })
                }
                Answer::Lock {
                    id,
                    repo,
                    user,
                    wait,
                } => {
                    let acquired = self
                        .locks
                        .table
                        .borrow_mut()
                        .acquire(&repo, &user, now, wait);
                    match acquired {
                        Acquired::Granted(ticket) => {
                            self.lock_grants += 1;
                            self.held.push((id, ticket));
                            server.handle_input(now, Input::LockReply { id, result: Ok(()) });
                        }
                        Acquired::Held(held) => server.handle_input(
                            now,
                            Input::LockReply {
                                id,
                                result: Err(LockRefusal::Held(held)),
                            },
                        ),
                        Acquired::Queued(ticket, held) => {
                            self.queued.push((id, ticket, held.clone()));
                            server.handle_input(now, Input::LockWaiting { id, held });
                        }
                    }
                }
                Answer::Slot(id) => {
                    let granted = self.slots.take();
                    if granted {
                        self.slot_grants += 1;
                        self.held_slots.push(id);
                    } else {
                        self.slot_refusals += 1;
                    }
                    server.handle_input(now, Input::SlotReply { id, granted });
                }
            }
        }
        moved |= self.wake_lock_waiters(server, now);
        moved |= self.run_dyno(server, now);
        let script = self.script.clone();
        let Some(p) = self.process.as_mut() else {
            return moved;
        };
        if p.exit_reported {
            return moved;
        }
        let id = p.id;
        if script.reads_stdin && p.exit.is_none() {
            let input = server.backend_stdin(id).to_vec();
            if !input.is_empty() {
                if script.echo {
                    p.stdout.extend(input.iter().copied());
                }
                p.stdin.extend_from_slice(&input);
                server.consume_backend_stdin(now, id, input.len());
                moved = true;
            }
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let queue = match stream {
                Stream::Stdout => &mut p.stdout,
                Stream::Stderr => &mut p.stderr,
            };
            let max = next_read_size(&self.read_sizes, &mut self.reads);
            moved |= relay_output(
                server,
                now,
                (id, stream),
                queue,
                max,
                self.copy_output,
                &mut self.lent,
            );
        }
        if p.exit.is_none()
            && script.exit_on_eof.is_none()
            && p.stdout.is_empty()
            && p.stderr.is_empty()
        {
            p.exit = Some(script.status.clone());
        }
        // What it wrote before it ended is in its pipes: the end of its
        // output is seen only once that is read, as a runtime sees it.
        if let Some(status) = p.exit.clone()
            && p.stdout.is_empty()
            && p.stderr.is_empty()
        {
            p.exit_reported = true;
            server.handle_input(
                now,
                Input::BackendEof {
                    id,
                    stream: Stream::Stdout,
                },
            );
            server.handle_input(
                now,
                Input::BackendEof {
                    id,
                    stream: Stream::Stderr,
                },
            );
            server.handle_input(now, Input::BackendExited { id, status });
            moved = true;
        }
        moved
    }
}
