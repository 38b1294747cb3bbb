//! One connection: feed the socket, the command and every result to the
//! session, and perform its outputs. The session decides everything; this
//! loop waits for whichever of its sources is ready, polling each of them
//! once per wake-up so none can starve another.

use std::future::Future;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use async_io::{Async, Timer};
use futures_lite::io::{AsyncRead, AsyncWrite};
use gitmouth_core::admission::{Outcome, Ticket};
use gitmouth_core::app::api::{HttpError, HttpResponse};
use gitmouth_core::app::dyno::DynoEnd;
use gitmouth_core::lock_table::{LockTicket, Standing};
use gitmouth_core::proxy::HeaderKind;
use gitmouth_core::server::{
    BackendLend, Input, LockHeld, LockRefusal, Output, RepoError, RequestId, Session, SessionEvent,
    Stream,
};

use crate::Shared;
use crate::dyno::DynoStream;
use crate::process::{self, Process};

/// Size of one read from the socket once a read fills the first buffer,
/// and from the command's stderr.
const CHUNK: usize = 32 * 1024;

/// The socket's first read buffer. A connection that only logs in and
/// idles reads nothing larger (the client's version, key exchange and
/// signed authentication request are each well under it), and every page
/// of a buffer the allocator hands out recycled is written when it is
/// zeroed: a [`CHUNK`] from the start would cost each idle session eight
/// pages instead of one on a server whose connections come and go.
const FIRST_CHUNK: usize = 4 * 1024;

/// Largest read from the socket, once a client sends bulk data (a push).
const SOCKET_CHUNK: usize = 256 * 1024;

/// Largest read from the command's stdout (or a dyno): as much as its
/// pipe holds ([`process::PIPE_SIZE`]), so that a clone's pack comes out
/// of git in fewer reads and goes to the socket in fewer, larger writes.
/// It is read straight into the payloads of the next data packets, lent
/// by the session ([`Session::lend_backend`]): one `readv` fills several.
const OUT_CHUNK: usize = process::PIPE_SIZE;

/// Most packets one read of the command's stdout fills (the areas of a
/// lend past these wait for the next read): [`OUT_CHUNK`] in packets of
/// 4 KiB, far more than the 32 KiB packets of common clients need.
const MAX_IOV: usize = 64;

/// One thing a connection waits on (the socket's reading or writing, a
/// pipe, git's exit), with a waker of its own, so that a wake-up polls
/// only what can have changed.
///
/// Polling an I/O source that is not ready costs a system call (a read
/// that fails with `EAGAIN`; `wait4` for git's exit), and the loop used to
/// poll every source on every wake-up: in a 50 MB clone, about 3,000 calls
/// of `wait4` and 5,000 failed reads. A source is polled when it is not
/// armed (never polled, or its last poll was ready: it may be ready again)
/// or when its own waker fired since.
struct Source {
    flag: Arc<SourceFlag>,
    waker: Waker,
    /// Its last poll was pending: its waker is registered and will fire.
    armed: bool,
}

/// What a [`Source`]'s waker touches: its flag, then the connection's task.
struct SourceFlag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for SourceFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl Source {
    fn new() -> Self {
        let flag = Arc::new(SourceFlag {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Source {
            waker: Waker::from(flag.clone()),
            flag,
            armed: false,
        }
    }

    /// Whether a poll may find it ready: it is not armed, or its waker
    /// fired since (looked at, not cleared: [`Source::poll`] clears it).
    fn may_be_ready(&self) -> bool {
        !self.armed || self.flag.woken.load(Ordering::SeqCst)
    }

    /// Polls `f` with this source's waker if it may be ready; `Pending`
    /// without calling it otherwise.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            // The task to wake may change between polls (it rarely does).
            let mut task = self.flag.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Cleared before polling, so that a wake during the poll is kept.
        if !self.flag.woken.swap(false, Ordering::SeqCst) && self.armed {
            return Poll::Pending;
        }
        let result = f(&mut Context::from_waker(&self.waker));
        self.armed = result.is_pending();
        result
    }
}

/// Where a channel's command runs.
enum Where {
    /// A local git process.
    Local(Process),
    /// A dyno, over TLS.
    Dyno {
        id: RequestId,
        stream: Box<DynoStream>,
        /// Records rustls holds that the socket has not taken yet.
        unflushed: bool,
    },
}

/// One command's backend, with its read buffers and what became ready in
/// this wake-up (kept here, so a wake-up allocates nothing).
struct Backend {
    at: Where,
    /// The most asked of a lend for one read of stdout: [`CHUNK`], then
    /// [`OUT_CHUNK`] once a read took all it was given (more is coming).
    out_len: usize,
    /// Stdout read when the session lends no packets for it: output
    /// dropped unread, or a dyno's first bytes.
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
    /// A local git's pipes and exit (a dyno's TLS stream is polled on
    /// every wake-up: rustls may hold what its socket does not show).
    stdin: Source,
    stdout: Source,
    stderr: Source,
    exit: Source,
    ready: Polled,
    /// A dyno connection that ended.
    gone: bool,
}

/// What became ready on one backend.
#[derive(Default)]
struct Polled {
    stdin: Option<std::io::Result<usize>>,
    stdout: Option<std::io::Result<usize>>,
    /// The bytes of `stdout` were read into lent packets, and committed.
    stdout_lent: bool,
    stderr: Option<std::io::Result<usize>>,
    exited: Option<std::io::Result<std::process::ExitStatus>>,
}

impl Polled {
    fn any(&self) -> bool {
        self.stdin.is_some()
            || self.stdout.is_some()
            || self.stderr.is_some()
            || self.exited.is_some()
    }
}

/// Work the connection waits for.
enum Done {
    Repo(Result<bool, RepoError>),
    Helper(Result<Vec<u8>, String>),
    Http(Result<HttpResponse, HttpError>),
    Dyno(Result<Box<DynoStream>, String>),
    /// A push waiting for its lock: the lock is its turn, or the holder
    /// changed.
    Lock(Standing),
    /// The shared lock's answer (`--push-lock postgres`).
    Remote(crate::shared_lock::Remote),
}

/// How often a push waiting for a lock another instance holds asks again
/// (the database tells nobody when an advisory lock is released).
const REMOTE_LOCK_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A push lock asked of the database once the in-process one is this
/// push's.
struct RemoteAsk {
    repo: String,
    user: String,
    session: String,
    wait: bool,
    /// The other instance's holder the session was last told of.
    told: Option<LockHeld>,
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Everything that became ready in one wake-up.
#[derive(Default)]
struct Ready {
    wrote: Option<std::io::Result<usize>>,
    read: Option<std::io::Result<usize>>,
    /// Whether any backend became ready (what did is in the backend).
    backend: bool,
    done: Vec<(RequestId, Done)>,
    timeout: bool,
    shutdown: bool,
    /// Admission's mailbox was notified.
    evicted: bool,
}

impl Ready {
    fn any(&self) -> bool {
        self.wrote.is_some()
            || self.read.is_some()
            || self.backend
            || !self.done.is_empty()
            || self.timeout
            || self.shutdown
            || self.evicted
    }
}

/// The state of one connection besides its session.
struct Conn<S> {
    socket: S,
    /// The backends of the connection's channels.
    backends: Vec<Backend>,
    work: Vec<(RequestId, Work)>,
    /// Push locks granted to this connection, and places in their queues;
    /// dropping one lets go of it, so whatever the connection still holds
    /// or waits for when it ends goes back.
    locks: Vec<(RequestId, crate::locks::PushLock)>,
    /// The shared locks granted to this connection's pushes
    /// (`--push-lock postgres`), released the same way.
    remote_grants: Vec<(RequestId, crate::shared_lock::RemoteGrant)>,
    /// Pushes that will ask, or are asking, for the shared lock.
    remote_asks: Vec<(RequestId, RemoteAsk)>,
    /// Command slots given to this connection's commands, given back the
    /// same way.
    slots: Vec<(RequestId, crate::slots::CommandSlot)>,
    /// The route of each API request in flight, for its metric.
    api_routes: Vec<(RequestId, &'static str)>,
    /// The client's address (the PROXY protocol's, if a header came):
    /// a certificate's `source-address` is checked against it.
    client: SocketAddr,
    sock_buf: Vec<u8>,
    sock_read: Source,
    sock_write: Source,
    /// Until the client has authenticated: every read that brings data
    /// re-arms `TCP_QUICKACK` (see [`quick_ack`]).
    quick_ack: bool,
    shared: Arc<Shared>,
    /// Bytes read from and written to the client's socket.
    bytes_in: u64,
    bytes_out: u64,
}

/// Where a connection comes from.
pub struct Origin {
    /// The TCP peer: the client, or the balancer in front of it.
    pub peer: SocketAddr,
    /// The client's address, as a PROXY header carried it (else the
    /// peer's): the one admission, penalties and logs see.
    pub client: SocketAddr,
    /// What the PROXY header said.
    pub header: HeaderKind,
    /// Bytes read past the header: the client's first SSH bytes.
    pub first: Vec<u8>,
    /// An untrusted peer where headers are optional: its first bytes must
    /// not be a header (checked before the server speaks).
    pub check_untrusted: bool,
}

impl Origin {
    /// A connection served as its peer's, nothing read yet.
    pub fn direct(peer: SocketAddr) -> Self {
        Self {
            peer,
            client: peer,
            header: HeaderKind::None,
            first: Vec::new(),
            check_untrusted: false,
        }
    }

    /// The balancer a header came through, if the client is not the peer.
    pub fn via(&self) -> Option<SocketAddr> {
        (self.header != HeaderKind::None).then_some(self.peer)
    }
}

/// Serves one client connection to its end. `accepted` is when it was
/// accepted (its login grace time counts from then, time spent waiting
/// for admission included); `registration` receives admission's word
/// that the connection must make way for another.
pub async fn drive<S>(
    mut socket: S,
    mut origin: Origin,
    shared: Arc<Shared>,
    ticket: Ticket,
    registration: crate::admit::Registration,
    accepted: Instant,
) where
    S: AsyncRead + AsyncWrite + AsFd + Unpin,
{
    use tracing::Instrument;
    let mut session = Session::new(shared.config(), crate::seed(), accepted);
    // For git's hooks (`GITMOUTH_REMOTE_ADDR`): the real client.
    session.set_client(origin.client.ip());
    // Every line of the connection carries its session id (the one users
    // see in error messages) and the client's address: `peer` is the one a
    // PROXY header carried, `via` the balancer it came through.
    let span = match origin.via() {
        Some(via) => tracing::info_span!(
            "conn",
            session = session.id(),
            peer = %origin.client,
            %via,
            proxy = origin.header.name()
        ),
        None => tracing::info_span!("conn", session = session.id(), peer = %origin.client),
    };
    async {
        if origin.check_untrusted {
            let deadline = accepted + shared.proxy.timeout.min(shared.config().login_grace);
            match crate::proxy::read_header(&mut socket, origin.peer, &shared.proxy, deadline).await
            {
                Ok(passed) => origin.first = passed.first,
                Err(failed) => {
                    if let crate::proxy::Failed::Refused(why) = failed {
                        tracing::info!(peer = %origin.peer, reason = %why, "connection refused before SSH");
                    }
                    shared.admission(|a| a.close(ticket, Outcome::NoAuth, Instant::now()));
                    drop(registration);
                    let _ = futures_lite::AsyncWriteExt::close(&mut socket).await;
                    return;
                }
            }
        }
        if !origin.first.is_empty() {
            session.handle_input(Instant::now(), Input::Received(&origin.first));
        }
        let peer = origin.client;
        run(
            socket,
            session,
            shared,
            ticket,
            registration,
            peer,
            accepted,
        )
        .await;
    }
    .instrument(span)
    .await;
}

async fn run<S>(
    socket: S,
    mut session: Session,
    shared: Arc<Shared>,
    mut ticket: Ticket,
    registration: crate::admit::Registration,
    peer: SocketAddr,
    accepted: Instant,
) where
    S: AsyncRead + AsyncWrite + AsFd + Unpin,
{
    tracing::debug!("connected");
    let _active = Active::new(shared.clone());
    shared.metrics.connection(UNAUTHENTICATED, 1);
    let mut state = UNAUTHENTICATED;
    // The stop level this session has been told of; the listener is armed
    // before the level is read, so that no rise is missed.
    let mut stop = shared.shutdown.listen();
    let mut told = crate::RUNNING;
    tell_stop_level(
        &mut session,
        &mut told,
        shared.stop_level.load(Ordering::SeqCst),
    );
    let mut c = Conn {
        socket,
        backends: Vec::new(),
        work: Vec::new(),
        locks: Vec::new(),
        remote_grants: Vec::new(),
        remote_asks: Vec::new(),
        slots: Vec::new(),
        api_routes: Vec::new(),
        client: peer,
        sock_buf: vec![0; FIRST_CHUNK],
        sock_read: Source::new(),
        sock_write: Source::new(),
        quick_ack: true,
        shared,
        bytes_in: 0,
        bytes_out: 0,
    };
    quick_ack(&c.socket);
    let mut timer = Timer::never();
    let mut timer_at = None;
    // Until authentication, admission may end this startup for a newcomer.
    let mut registration = Some(registration);
    let mut evict = registration.as_ref().map(|r| r.mailbox.event.listen());
    loop {
        while let Some(output) = session.poll_output() {
            if let Output::Authenticated(who) = &output {
                tracing::debug!(user = %who.user, "admission: authenticated");
                let here = c
                    .shared
                    .admission(|a| a.authenticated(&mut ticket, &who.user));
                // With other instances, their connections count too.
                let elsewhere = c
                    .shared
                    .elsewhere
                    .as_ref()
                    .map_or(0, |e| e.user_connections(&who.user));
                let n = here.saturating_add(elsewhere);
                registration = None;
                evict = None;
                c.quick_ack = false;
                session.handle_input(Instant::now(), Input::UserConnections(n));
                c.shared.metrics.connection(UNAUTHENTICATED, -1);
                c.shared.metrics.connection(AUTHENTICATED, 1);
                state = AUTHENTICATED;
            }
            c.perform(output, &mut session);
        }
        report_events(&mut session, &c.shared, peer);
        if let Some(r) = &registration
            && r.mailbox.evicted()
        {
            registration = None;
            evict = None;
            session.handle_input(Instant::now(), Input::Evicted);
            continue;
        }
        if session.is_finished() {
            break;
        }
        let deadline = session.poll_timeout();
        if deadline != timer_at {
            timer_at = deadline;
            timer = deadline.map_or_else(Timer::never, Timer::at);
        }
        let ready = std::future::poll_fn(|cx| {
            let mut r = c.poll(cx, &mut session);
            if Pin::new(&mut timer).poll(cx).is_ready() {
                r.timeout = true;
            }
            if told < crate::STOPPING && Pin::new(&mut stop).poll(cx).is_ready() {
                r.shutdown = true;
            }
            if let Some(listener) = evict.as_mut()
                && Pin::new(listener).poll(cx).is_ready()
            {
                r.evicted = true;
            }
            if r.any() {
                Poll::Ready(r)
            } else {
                Poll::Pending
            }
        })
        .await;
        if ready.timeout {
            timer_at = None;
        }
        if ready.evicted {
            // Re-armed, then looked at above (a spurious wake is harmless).
            evict = registration.as_ref().map(|r| r.mailbox.event.listen());
        }
        let shutdown = ready.shutdown;
        c.feed(&mut session, ready);
        if shutdown {
            stop = c.shared.shutdown.listen();
            let level = c.shared.stop_level.load(Ordering::SeqCst);
            tell_stop_level(&mut session, &mut told, level);
        }
    }
    // A command the session gave up waiting for dies with the connection
    // (kill on drop); a dyno connection closes.
    c.backends.clear();
    report_events(&mut session, &c.shared, peer);
    c.shared.metrics.connection(state, -1);
    let length = accepted.elapsed();
    c.shared.metrics.session_ended(length);
    let outcome = session.outcome();
    tracing::info!(
        duration = %Secs(length),
        bytes_in = c.bytes_in,
        bytes_out = c.bytes_out,
        user = session.identity().map_or("", |i| i.user.as_str()),
        "connection closed"
    );
    c.shared
        .admission(|a| a.close(ticket, outcome, Instant::now()));
    let _ = futures_lite::AsyncWriteExt::close(&mut c.socket).await;
}

/// Asks the kernel to acknowledge what arrives on `socket` at once rather
/// than after its delayed-acknowledgement timer (Linux `TCP_QUICKACK`).
///
/// During the handshake the OpenSSH client writes without `TCP_NODELAY`,
/// so Nagle's algorithm holds its second small write (`KEX_ECDH_INIT`
/// after `KEXINIT`, `SERVICE_REQUEST` after `NEWKEYS`) until the first is
/// acknowledged; with nothing to send back at that moment, our kernel
/// would delay that acknowledgement by up to 40 ms, twice per
/// connection. The kernel leaves quick-ack mode again on its own, so this
/// is re-armed after every read that brings data, until authentication.
/// A failure (not TCP, not Linux) only costs that latency.
fn quick_ack(socket: &impl AsFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::net::sockopt::set_tcp_quickack(socket, true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

impl<S: AsyncRead + AsyncWrite + AsFd + Unpin> Conn<S> {
    fn perform(&mut self, output: Output, session: &mut Session) {
        let now = Instant::now();
        match output {
            Output::OpenRepo { id, path, create } => {
                self.work.push((
                    id,
                    Box::pin(async move { Done::Repo(process::open_repo(path, create).await) }),
                ));
            }
            // At once, before the next output: a push lock released after
            // it goes back only once the debris is gone.
            Output::RemoveDir { path } => crate::files::remove_dir(&path),
            Output::RemoveDirsIn { dir, prefix } => crate::files::remove_dirs_in(&dir, &prefix),
            Output::RunHelper { id, process } => {
                self.work.push((
                    id,
                    Box::pin(async move { Done::Helper(process::run_helper(process).await) }),
                ));
            }
            Output::Spawn { id, process } => {
                let result =
                    Process::spawn(id, &process).map(|p| self.add_backend(Where::Local(p)));
                session.handle_input(now, Input::Spawned { id, result });
            }
            Output::CloseStdin { id } => {
                if let Some(Where::Local(p)) = self.backend(id).map(|b| &mut b.at) {
                    p.stdin = None;
                }
            }
            Output::Signal { id, signal } => {
                if let Some(Where::Local(p)) = self.backend(id).map(|b| &mut b.at) {
                    p.signal(signal);
                }
            }
            Output::Http { id, request } => match self.shared.http.clone() {
                Some(client) => {
                    self.api_routes
                        .push((id, crate::metrics::api_route(&request.url)));
                    self.work.push((
                        id,
                        Box::pin(async move { Done::Http(client.send(request).await) }),
                    ));
                }
                None => {
                    let result = Err(HttpError::Failed("no HTTP client configured".into()));
                    session.handle_input(now, Input::HttpDone { id, result });
                }
            },
            Output::Cancel { id } => {
                self.work.retain(|(w, _)| *w != id);
                // The core gave up on an API call: it timed out.
                if let Some(route) = self.take_api_route(id) {
                    self.shared.metrics.api_call(route, "timeout", false);
                }
            }
            Output::ConnectDyno {
                id,
                host,
                port,
                header,
            } => match self.shared.dyno_tls.clone() {
                Some(tls) => {
                    let work = async move {
                        Done::Dyno(
                            tls.connect(&host, port, header.as_bytes())
                                .await
                                .map(Box::new),
                        )
                    };
                    self.work.push((id, Box::pin(work)));
                }
                None => {
                    let result = Err("no dyno TLS configured".into());
                    session.handle_input(now, Input::DynoConnected { id, result });
                }
            },
            Output::CloseDyno { id } => {
                self.work.retain(|(w, _)| *w != id);
                // Dropping the stream closes the TCP connection: the
                // rendezvous protocol's only stop signal.
                self.backends.retain(|b| b.at.id() != id);
            }
            Output::LookupKey { id, blob } => {
                let user = self.shared.keys.as_ref().and_then(|k| {
                    // The wall-clock time, for a certificate's validity:
                    // the core reads no clock.
                    let unix = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    match k.lookup(&blob, unix, self.client.ip()) {
                        crate::files::Owner::User(user) => Some(user),
                        crate::files::Owner::Unknown => None,
                        crate::files::Owner::Refused(refusal) => {
                            tracing::info!(
                                reason = refusal.reason(),
                                detail = %refusal,
                                key = %gitmouth_core::app::fingerprint::sha256_blob(&blob),
                                "key or certificate refused"
                            );
                            None
                        }
                        crate::files::Owner::KeyRefused(lines) => {
                            // Every line of the key refused it: its own
                            // options (`from=`, `expiry-time=`).
                            let detail: Vec<String> =
                                lines.iter().map(ToString::to_string).collect();
                            tracing::info!(
                                reason = lines.first().map_or("", |l| l.refusal.reason()),
                                detail = %detail.join("; "),
                                key = %gitmouth_core::app::fingerprint::sha256_blob(&blob),
                                "key refused by its authorized_keys options"
                            );
                            None
                        }
                    }
                });
                let access = self.shared.keys.as_ref().and_then(|k| k.access());
                session.handle_input(now, Input::KeyLookedUp { id, user, access });
            }
            Output::AcquireLock {
                id,
                repo,
                user,
                wait,
            } => {
                use crate::locks::Acquire;
                let acquired = self.shared.push_locks.acquire(&repo, &user, now, wait);
                // Shared with other instances: the in-process lock first
                // (it orders this instance's own pushes), then the
                // database's.
                if self.shared.shared_locks.is_some() && !matches!(acquired, Acquire::Held(_)) {
                    let ask = RemoteAsk {
                        repo: repo.clone(),
                        user: user.clone(),
                        session: session.id().to_owned(),
                        wait,
                        told: None,
                    };
                    self.remote_asks.push((id, ask));
                }
                match acquired {
                    Acquire::Granted(lock) if self.shared.shared_locks.is_some() => {
                        self.locks.push((id, lock));
                        self.ask_remote(id, None);
                    }
                    Acquire::Granted(lock) => {
                        tracing::debug!(%repo, %user, "push lock taken");
                        self.locks.push((id, lock));
                        session.handle_input(now, Input::LockReply { id, result: Ok(()) });
                    }
                    Acquire::Held(held) => {
                        let result = Err(LockRefusal::Held(held));
                        session.handle_input(now, Input::LockReply { id, result });
                    }
                    Acquire::Queued(place, held) => {
                        tracing::debug!(%repo, %user, "push lock held: waiting in turn");
                        self.wait_for_lock(id, place.ticket(), held.clone());
                        self.locks.push((id, place));
                        session.handle_input(now, Input::LockWaiting { id, held });
                    }
                }
            }
            // Releases a grant, or gives up a place in the queue (and
            // stops waiting for it).
            Output::ReleaseLock { id } => {
                self.work.retain(|(w, _)| *w != id);
                self.remote_asks.retain(|(own, _)| *own != id);
                self.remote_grants.retain(|(held, _)| *held != id);
                self.locks.retain(|(held, _)| *held != id);
            }
            Output::AcquireSlot { id } => {
                let slot = self.shared.command_slots.try_take();
                let granted = slot.is_some();
                if let Some(slot) = slot {
                    self.slots.push((id, slot));
                } else {
                    tracing::debug!(
                        in_use = self.shared.command_slots.in_use(),
                        "no command slot free"
                    );
                }
                session.handle_input(now, Input::SlotReply { id, granted });
            }
            Output::ReleaseSlot { id } => self.slots.retain(|(held, _)| *held != id),
            Output::Authenticated(_) => {}
            Output::Close(reason) => {
                // Before authentication, say why it ended, as sshd's
                // `[preauth]` lines do.
                if session.identity().is_none() {
                    use gitmouth_core::admission::Outcome;
                    let outcome = match session.outcome() {
                        Outcome::Authenticated => "authenticated",
                        Outcome::AuthFailed => "authentication failed",
                        Outcome::NoAuth => "no authentication tried",
                        Outcome::GraceExceeded => "login grace time exceeded",
                    };
                    tracing::info!(reason = %reason, outcome, "connection closing before authentication");
                } else {
                    tracing::info!(reason = %reason, "connection closing");
                }
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, session: &mut Session) -> Ready {
        let mut r = Ready::default();
        let pending = session.transmit();
        let socket = &mut self.socket;
        if !pending.is_empty()
            && let Poll::Ready(res) = self
                .sock_write
                .poll(cx, |cx| Pin::new(&mut *socket).poll_write(cx, pending))
        {
            // Taken off the buffer at once, before git's output is read
            // into it below: the next packets are lent in the room this
            // frees (at its start, once the socket took everything),
            // rather than behind bytes already sent, which would later be
            // moved to the front with the new ones.
            if let Ok(n) = res {
                session.consume_transmit(n);
            }
            r.wrote = Some(res);
        }
        let buf = &mut self.sock_buf;
        if session.wants_read()
            && let Poll::Ready(res) = self
                .sock_read
                .poll(cx, |cx| Pin::new(&mut *socket).poll_read(cx, buf))
        {
            r.read = Some(res);
        }
        if !self.backends.is_empty() {
            let now = Instant::now();
            for backend in &mut self.backends {
                backend.poll(cx, session, now);
                r.backend |= backend.ready.any();
            }
        }
        let mut i = 0;
        while i < self.work.len() {
            if let Poll::Ready(done) = self.work[i].1.as_mut().poll(cx) {
                let (id, _) = self.work.swap_remove(i);
                r.done.push((id, done));
            } else {
                i += 1;
            }
        }
        r
    }

    fn feed(&mut self, session: &mut Session, ready: Ready) {
        let now = Instant::now();
        match ready.wrote {
            Some(Ok(0)) | Some(Err(_)) => session.handle_input(now, Input::PeerClosed),
            // (Consumed as soon as written, in `poll`.)
            Some(Ok(n)) => self.bytes_out += n as u64,
            None => {}
        }
        match ready.read {
            Some(Ok(0)) | Some(Err(_)) => session.handle_input(now, Input::PeerClosed),
            Some(Ok(n)) => {
                self.bytes_in += n as u64;
                if self.quick_ack {
                    quick_ack(&self.socket);
                }
                session.handle_input(now, Input::Received(&self.sock_buf[..n]));
                // A read that filled the buffer brought more than a login
                // does: read more per system call from now on, up to
                // [`SOCKET_CHUNK`] once authenticated (a push's data). An
                // idle session never fills it, and keeps its small one.
                if n == self.sock_buf.len() {
                    let next = if self.quick_ack { CHUNK } else { SOCKET_CHUNK };
                    if next > n {
                        self.sock_buf.resize(next, 0);
                    }
                }
            }
            None => {}
        }
        if ready.backend {
            for backend in &mut self.backends {
                backend.feed(now, session);
            }
            // A dyno whose connection ended is gone.
            self.backends.retain(|b| !b.ended());
        }
        for (id, done) in ready.done {
            match done {
                Done::Repo(result) => session.handle_input(now, Input::RepoOpened { id, result }),
                Done::Helper(result) => session.handle_input(now, Input::HelperDone { id, result }),
                Done::Http(result) => {
                    if let Some(route) = self.take_api_route(id) {
                        let (status, connected) = match &result {
                            Ok(reply) => (reply.status.to_string(), true),
                            Err(HttpError::Timeout) => ("timeout".to_owned(), false),
                            Err(HttpError::TooLarge) => ("error".to_owned(), true),
                            Err(HttpError::Failed(_)) => ("error".to_owned(), false),
                        };
                        self.shared.metrics.api_call(route, &status, connected);
                    }
                    session.handle_input(now, Input::HttpDone { id, result })
                }
                Done::Dyno(result) => {
                    let result = result.map(|stream| {
                        self.add_backend(Where::Dyno {
                            id,
                            stream,
                            unflushed: false,
                        })
                    });
                    session.handle_input(now, Input::DynoConnected { id, result });
                }
                Done::Lock(standing) => self.on_lock_change(session, now, id, standing),
                Done::Remote(answer) => self.on_remote_lock(session, now, id, answer),
            }
        }
        if ready.timeout {
            session.handle_input(now, Input::Timeout);
        }
    }
}

impl<S> Conn<S> {
    /// The route of API request `id`, which is over.
    fn take_api_route(&mut self, id: RequestId) -> Option<&'static str> {
        let at = self.api_routes.iter().position(|(own, _)| *own == id)?;
        Some(self.api_routes.swap_remove(at).1)
    }

    /// Waits, as work of request `id`, for the lock of `place` to be its
    /// turn or to change hands (the session was told of `told`).
    fn wait_for_lock(&mut self, id: RequestId, place: LockTicket, told: LockHeld) {
        let locks = self.shared.push_locks.clone();
        self.work.push((
            id,
            Box::pin(async move { Done::Lock(locks.next_change(place, told).await) }),
        ));
    }

    /// A push waiting for its lock: it is its turn (the place became the
    /// grant), or the holder changed (the session is told, and the wait
    /// goes on).
    fn on_lock_change(
        &mut self,
        session: &mut Session,
        now: Instant,
        id: RequestId,
        standing: Standing,
    ) {
        match standing {
            Standing::Holds if self.shared.shared_locks.is_some() => self.ask_remote(id, None),
            Standing::Holds => {
                tracing::debug!("push lock taken after waiting");
                session.handle_input(now, Input::LockReply { id, result: Ok(()) });
            }
            Standing::Waits(held) => {
                let place = self.locks.iter().find(|(own, _)| *own == id);
                if let Some(ticket) = place.map(|(_, place)| place.ticket()) {
                    self.wait_for_lock(id, ticket, held.clone());
                }
                session.handle_input(now, Input::LockWaiting { id, held });
            }
            // Only a place given up is gone, and then nobody waits for it.
            Standing::Gone => {}
        }
    }
}

impl<S> Conn<S> {
    /// Asks the database for the shared lock of push `id` (which holds the
    /// in-process one), after `delay` when asking again.
    fn ask_remote(&mut self, id: RequestId, delay: Option<std::time::Duration>) {
        let Some(locks) = self.shared.shared_locks.clone() else {
            return;
        };
        let Some((_, ask)) = self.remote_asks.iter().find(|(own, _)| *own == id) else {
            return;
        };
        let (repo, user, session) = (ask.repo.clone(), ask.user.clone(), ask.session.clone());
        self.work.push((
            id,
            Box::pin(async move {
                if let Some(delay) = delay {
                    async_io::Timer::after(delay).await;
                }
                Done::Remote(locks.acquire(&repo, &user, &session).await)
            }),
        ));
    }

    /// The database's answer about push `id`'s shared lock.
    fn on_remote_lock(
        &mut self,
        session: &mut Session,
        now: Instant,
        id: RequestId,
        answer: crate::shared_lock::Remote,
    ) {
        use crate::shared_lock::Remote;
        let Some(at) = self.remote_asks.iter().position(|(own, _)| *own == id) else {
            // Withdrawn meanwhile: a grant is dropped, so released.
            return;
        };
        match answer {
            Remote::Granted(grant) => {
                let (_, ask) = self.remote_asks.swap_remove(at);
                tracing::debug!(repo = %ask.repo, user = %ask.user, "push lock taken (shared)");
                self.remote_grants.push((id, grant));
                session.handle_input(now, Input::LockReply { id, result: Ok(()) });
            }
            Remote::Held(held) if self.remote_asks[at].1.wait => {
                let ask = &mut self.remote_asks[at].1;
                let same = ask.told.as_ref().is_some_and(|told| {
                    told.user == held.user
                        && told.instance == held.instance
                        && told.since.max(held.since) - told.since.min(held.since)
                            < std::time::Duration::from_secs(2)
                });
                if !same {
                    ask.told = Some(held.clone());
                    session.handle_input(now, Input::LockWaiting { id, held });
                }
                self.ask_remote(id, Some(REMOTE_LOCK_POLL));
            }
            refused => {
                let (_, ask) = self.remote_asks.swap_remove(at);
                // The in-process lock goes too: the next push of ours may
                // try.
                self.locks.retain(|(own, _)| *own != id);
                let result = match refused {
                    Remote::Held(held) => Err(LockRefusal::Held(held)),
                    _ => {
                        tracing::debug!(repo = %ask.repo, "push lock: the database is unavailable");
                        Err(LockRefusal::Unavailable)
                    }
                };
                session.handle_input(now, Input::LockReply { id, result });
            }
        }
    }
}

/// [`crate::metrics::Metrics::connection`]'s states.
const UNAUTHENTICATED: &str = "unauthenticated";
const AUTHENTICATED: &str = "authenticated";

/// A duration in seconds with millisecond precision, as logged
/// (`duration=1.234`).
pub struct Secs(pub std::time::Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64())
    }
}

/// Turns what the session reported into metrics and, for each git
/// command, the audit line (the one place both are made).
fn report_events(session: &mut Session, shared: &Shared, peer: SocketAddr) {
    while let Some(event) = session.poll_event() {
        shared.metrics.observe(&event);
        if let SessionEvent::CommandEnded(a) = &event {
            let exit = a.exit.as_ref().map(ToString::to_string).unwrap_or_default();
            tracing::info!(
                target: "gitmouth::audit",
                source = %peer.ip(),
                user = a.user.as_str(),
                fingerprint = a.fingerprint.as_str(),
                repo = a.repo.as_str(),
                command = a.command,
                protocol = a.protocol.as_deref().unwrap_or("version=0"),
                bytes_in = a.bytes_in,
                bytes_out = a.bytes_out,
                duration = %Secs(a.duration),
                exit = exit.as_str(),
                outcome = a.outcome,
                "git operation"
            );
        }
    }
}

/// Tells the session of a stop level above the one it was `told`: a drain,
/// then a stop.
fn tell_stop_level(session: &mut Session, told: &mut u8, level: u8) {
    if level >= crate::DRAINING && *told < crate::DRAINING {
        session.handle_input(Instant::now(), Input::Drain);
    }
    if level >= crate::STOPPING && *told < crate::STOPPING {
        session.handle_input(Instant::now(), Input::Shutdown);
    }
    *told = (*told).max(level);
}

/// Counts a connection as served for as long as it lives (whatever way
/// its task ends), so that a stopping server can wait for it.
struct Active(Arc<Shared>);

impl Active {
    fn new(shared: Arc<Shared>) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S> Conn<S> {
    fn add_backend(&mut self, at: Where) {
        self.backends.push(Backend {
            at,
            // A short command (ls-remote, a small fetch) never needs
            // more: reads grow to OUT_CHUNK once one takes all it may.
            out_len: CHUNK,
            out_buf: vec![0; CHUNK],
            err_buf: vec![0; CHUNK],
            stdin: Source::new(),
            stdout: Source::new(),
            stderr: Source::new(),
            exit: Source::new(),
            ready: Polled::default(),
            gone: false,
        });
    }

    fn backend(&mut self, id: RequestId) -> Option<&mut Backend> {
        self.backends.iter_mut().find(|b| b.at.id() == id)
    }
}

impl Where {
    fn id(&self) -> RequestId {
        match self {
            Where::Local(p) => p.id,
            Where::Dyno { id, .. } => *id,
        }
    }
}

impl Backend {
    /// Whether nothing is left to relay: a dyno connection that ended, a
    /// process that exited with both output pipes closed. (A process whose
    /// pipes a stray child holds open stays until the connection ends,
    /// when dropping it kills what is left.)
    fn ended(&self) -> bool {
        match &self.at {
            Where::Local(p) => p.exit.is_none() && p.stdout.is_none() && p.stderr.is_none(),
            Where::Dyno { .. } => self.gone,
        }
    }

    /// Polls what the session wants of this backend, recording what is
    /// ready. Stdout is read straight into the packets the session lends,
    /// and committed at once (`now`).
    fn poll(&mut self, cx: &mut Context<'_>, session: &mut Session, now: Instant) {
        let id = self.at.id();
        let r = &mut self.ready;
        match &mut self.at {
            Where::Local(p) => {
                let stdin = session.backend_stdin(id);
                if !stdin.is_empty()
                    && let Some(pipe) = p.stdin.as_mut()
                    && let Poll::Ready(res) = self
                        .stdin
                        .poll(cx, |cx| Pin::new(pipe).poll_write(cx, stdin))
                {
                    r.stdin = Some(res);
                }
                // Straight into the packets the session lends; into our
                // own buffer when it lends none but takes the output all
                // the same (to drop it unread). `copied`: what went there.
                let mut copied = 0;
                if let Some(pipe) = p.stdout.as_mut()
                    && self.stdout.may_be_ready()
                {
                    let polled = match session.lend_backend(id, Stream::Stdout, self.out_len) {
                        Some(lend) => read_lent(&mut self.stdout, cx, pipe, lend, now),
                        None => {
                            let limit = session.backend_read_limit(id).min(self.out_buf.len());
                            let out_buf = &mut self.out_buf[..limit];
                            if limit == 0 {
                                None
                            } else if let Poll::Ready(res) = self
                                .stdout
                                .poll(cx, |cx| Pin::new(pipe).poll_read(cx, out_buf))
                            {
                                copied = res.as_ref().map_or(0, |n| *n);
                                Some((res, false))
                            } else {
                                None
                            }
                        }
                    };
                    if let Some((res, lent)) = polled {
                        if lent && matches!(res, Ok(n) if n >= self.out_len) {
                            // All it was given: more is coming.
                            self.out_len = OUT_CHUNK;
                        }
                        r.stdout = Some(res);
                        r.stdout_lent = lent;
                    }
                }
                // Both streams share the client's window: stderr gets what
                // stdout left of it (lent bytes are counted already).
                let left = session
                    .backend_read_limit(id)
                    .saturating_sub(copied)
                    .min(CHUNK);
                let err_buf = &mut self.err_buf[..left];
                if left > 0
                    && let Some(pipe) = p.stderr.as_mut()
                    && let Poll::Ready(res) = self
                        .stderr
                        .poll(cx, |cx| Pin::new(pipe).poll_read(cx, err_buf))
                {
                    r.stderr = Some(res);
                }
                if let Some(exit) = p.exit.as_mut()
                    && let Poll::Ready(res) = self.exit.poll(cx, |cx| exit.as_mut().poll(cx))
                {
                    p.exit = None;
                    r.exited = Some(res);
                }
            }
            Where::Dyno {
                stream, unflushed, ..
            } => {
                let stdin = session.backend_stdin(id);
                if !stdin.is_empty()
                    && let Poll::Ready(res) = Pin::new(&mut **stream).poll_write(cx, stdin)
                {
                    *unflushed |= matches!(res, Ok(n) if n > 0);
                    r.stdin = Some(res);
                }
                // rustls takes bytes before the socket does: push its
                // records out until they are all gone, or the last of a
                // push could wait forever behind a full socket.
                if *unflushed && Pin::new(&mut **stream).poll_flush(cx).is_ready() {
                    *unflushed = false;
                }
                // Lent packets once the session knows where the bytes go;
                // the first ones (and output dropped unread) through our
                // buffer.
                if let Some(mut lend) = session.lend_backend(id, Stream::Stdout, self.out_len) {
                    let mut iov = io_slices(&mut lend);
                    let k = iov.1;
                    if let Poll::Ready(res) =
                        Pin::new(&mut **stream).poll_read_vectored(cx, &mut iov.0[..k])
                    {
                        if let Ok(n) = res {
                            lend.commit(now, n);
                        }
                        r.stdout = Some(res);
                        r.stdout_lent = true;
                    }
                } else {
                    let limit = session.backend_read_limit(id).min(self.out_buf.len());
                    if limit > 0
                        && let Poll::Ready(res) =
                            Pin::new(&mut **stream).poll_read(cx, &mut self.out_buf[..limit])
                    {
                        r.stdout = Some(res);
                    }
                }
            }
        }
    }

    /// Feeds what became ready to the session.
    fn feed(&mut self, now: Instant, session: &mut Session) {
        let ready = std::mem::take(&mut self.ready);
        let id = self.at.id();
        match &mut self.at {
            Where::Local(p) => {
                match ready.stdin {
                    Some(Ok(n)) => session.consume_backend_stdin(now, id, n),
                    // git stopped reading (it exited or closed stdin): what
                    // is left is dropped; its exit status tells the rest.
                    Some(Err(_)) => {
                        p.stdin = None;
                        let left = session.backend_stdin(id).len();
                        session.consume_backend_stdin(now, id, left);
                    }
                    None => {}
                }
                let streams = [
                    (
                        Stream::Stdout,
                        ready.stdout,
                        ready.stdout_lent,
                        &self.out_buf,
                    ),
                    (Stream::Stderr, ready.stderr, false, &self.err_buf),
                ];
                for (stream, result, lent, buf) in streams {
                    match result {
                        Some(Ok(0)) | Some(Err(_)) => {
                            match stream {
                                Stream::Stdout => p.stdout = None,
                                Stream::Stderr => p.stderr = None,
                            }
                            session.handle_input(now, Input::BackendEof { id, stream });
                        }
                        // Committed into the packets as it was read.
                        Some(Ok(_)) if lent => {}
                        Some(Ok(n)) => session.handle_input(
                            now,
                            Input::BackendData {
                                id,
                                stream,
                                data: &buf[..n],
                            },
                        ),
                        None => {}
                    }
                }
                if let Some(result) = ready.exited {
                    let status = process::exit_status(result);
                    session.handle_input(now, Input::BackendExited { id, status });
                }
            }
            Where::Dyno { .. } => {
                let mut end = None;
                match ready.stdin {
                    Some(Ok(n)) => session.consume_backend_stdin(now, id, n),
                    Some(Err(_)) => end = Some(DynoEnd::Lost),
                    None => {}
                }
                match ready.stdout {
                    // rustls reports a clean close (close_notify) as the
                    // end of the stream, and a bare TCP close as an error.
                    Some(Ok(0)) => end = end.or(Some(DynoEnd::Clean)),
                    Some(Ok(_)) if ready.stdout_lent => {}
                    Some(Ok(n)) => {
                        session.handle_input(
                            now,
                            Input::BackendData {
                                id,
                                stream: Stream::Stdout,
                                data: &self.out_buf[..n],
                            },
                        );
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "dyno connection failed");
                        end = Some(DynoEnd::Lost);
                    }
                    None => {}
                }
                if let Some(end) = end {
                    self.gone = true;
                    session.handle_input(now, Input::DynoClosed { id, end });
                }
            }
        }
    }
}

/// The areas of `lend` as slices for a vectored read: the first
/// [`MAX_IOV`] of them, and how many there are.
fn io_slices<'a>(lend: &'a mut BackendLend<'_>) -> ([IoSliceMut<'a>; MAX_IOV], usize) {
    let mut iov: [IoSliceMut<'a>; MAX_IOV] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
    let mut k = 0;
    for (slot, buf) in iov.iter_mut().zip(lend.bufs()) {
        *slot = IoSliceMut::new(buf);
        k += 1;
    }
    (iov, k)
}

/// Reads git's stdout straight into the packets of `lend` (one `readv`),
/// through its source, and commits what was read; the result, if the
/// pipe was ready.
fn read_lent(
    source: &mut Source,
    cx: &mut Context<'_>,
    pipe: &mut Async<std::fs::File>,
    mut lend: BackendLend<'_>,
    now: Instant,
) -> Option<(std::io::Result<usize>, bool)> {
    let (mut iov, k) = io_slices(&mut lend);
    let Poll::Ready(res) = source.poll(cx, |cx| {
        Pin::new(&mut *pipe).poll_read_vectored(cx, &mut iov[..k])
    }) else {
        return None;
    };
    if let Ok(n) = res {
        lend.commit(now, n);
    }
    Some((res, true))
}
