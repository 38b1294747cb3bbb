//! A whole server, given a runtime's listener and spawner: the part of
//! "run a server" that is the same on every executor.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Settings;
use crate::driver::Origin;
use futures_lite::io::{AsyncRead, AsyncWrite};
use gitmouth_core::admission::Verdict;
use gitmouth_core::proxy::Arrival;

/// A task for the runtime's executor.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Prepares the server (host keys, keys or platform clients), then serves
/// every connection `accept` yields on a task of its own, until SIGTERM or
/// SIGINT (`Ok`) or a failure (`Err`, for the log). `local` is the address
/// the runtime's listener is bound to.
pub async fn run<S, A, F>(
    settings: &Settings,
    local: std::io::Result<SocketAddr>,
    mut accept: A,
    spawn: impl Fn(Task),
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + std::os::fd::AsFd + Unpin + Send + 'static,
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<(S, SocketAddr)>>,
{
    let local = local.map_err(|e| e.to_string())?;
    // Listening on port 0, users reach the port the system chose.
    let mut settings = settings.clone();
    if settings.public_host.port == 0 {
        settings.public_host.port = local.port();
    }
    let settings = &settings;
    let (mut shared, keys) = crate::startup::prepare(settings)?;
    // Several instances: the database must be there at start (a server
    // that could take no push lock would refuse every push).
    let lock_service = match &settings.database {
        Some(db) => {
            let (service, handle, first) = crate::startup::connect_database(db).await?;
            shared.shared_locks = Some(handle);
            shared.metrics.track_lock_database();
            let elsewhere = Arc::new(crate::shared_limits::Elsewhere::default());
            shared.elsewhere = Some(elsewhere.clone());
            Some((service, first, db.clone(), elsewhere))
        }
        None => None,
    };
    let shared = Arc::new(shared);
    if let Some((service, first, db, elsewhere)) = lock_service {
        spawn(Box::pin(service.run(first)));
        spawn(Box::pin(crate::shared_limits::run(
            shared.clone(),
            db,
            elsewhere,
        )));
    }
    // SIGHUP is watched before "listening" is logged, in either mode: its
    // default action would end the process, dropping every connection.
    match async_signal::Signals::new([async_signal::Signal::Hup]) {
        Ok(hup) => spawn(Box::pin(hangups(hup, shared.clone(), settings.clone()))),
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP"),
    }
    if let Some(store) = keys {
        spawn(Box::pin(crate::files::watch_authorized_keys(store)));
    }
    if let Some(addr) = settings.metrics {
        let listener = crate::metrics::bind(addr)?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %bound, "serving metrics");
        spawn(Box::pin(crate::metrics::serve(listener, shared.clone())));
    }
    // Watched before "listening" is logged: a signal from then on drains.
    let mut signals = crate::startup::StopSignals::new()?;
    tracing::info!(address = %local, "listening");
    // Serving ends only by the stop signal: the loop never breaks.
    let serve = async {
        loop {
            let (stream, peer) = match accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection that died while
                    // queued: the server goes on; a short pause lets
                    // closing sessions free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    async_io::Timer::after(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let accepted = std::time::Instant::now();
            shared.metrics.accepted();
            match shared.proxy.arrival(peer.ip()) {
                Arrival::Direct => {
                    if let Some(task) = admit(stream, Origin::direct(peer), &shared, accepted) {
                        spawn(task);
                    }
                }
                Arrival::CheckUntrusted => {
                    let origin = Origin {
                        check_untrusted: true,
                        ..Origin::direct(peer)
                    };
                    if let Some(task) = admit(stream, origin, &shared, accepted) {
                        spawn(task);
                    }
                }
                // A balancer: its header names the client that admission
                // judges, so it is read first (bounded by the header
                // timeout; only trusted peers get this far unadmitted).
                Arrival::ReadHeader => {
                    spawn(Box::pin(read_header_then_admit(
                        stream,
                        peer,
                        shared.clone(),
                        accepted,
                    )));
                }
                // Dropping the stream closes it before any byte is read.
                Arrival::Refuse(why) => {
                    tracing::info!(%peer, reason = ?why.to_string(), "connection refused before SSH");
                }
            }
        }
    };
    futures_lite::future::or(
        async {
            signals.next().await;
            Ok::<(), String>(())
        },
        serve,
    )
    .await?;
    // Closes the listener: a new connection is refused by the kernel, not
    // left waiting in a backlog nobody reads.
    drop(accept);
    // Drain: no new connections (the accept loop is gone); commands in
    // progress finish within the drain timeout, which the sessions keep;
    // a second signal stops everything at once.
    let drain_started = std::time::Instant::now();
    tracing::info!(
        connections = shared.active.load(Ordering::SeqCst),
        drain_timeout = shared.config().drain_timeout.as_secs(),
        "draining: no new connections, commands in progress may finish"
    );
    shared.stop_to(crate::DRAINING);
    let drained = futures_lite::future::or(
        async {
            wait_for_sessions(&shared, shared.config().drain_wait()).await;
            true
        },
        async {
            signals.next().await;
            false
        },
    )
    .await;
    if !drained {
        tracing::info!("second signal: stopping the sessions now");
        shared.stop_to(crate::STOPPING);
        wait_for_sessions(&shared, shared.config().stop_wait()).await;
    }
    let left = shared.active.load(Ordering::SeqCst);
    if left > 0 {
        tracing::warn!(connections = left, "stopping with connections still open");
    } else {
        tracing::info!(after = %crate::driver::Secs(drain_started.elapsed()), "drained");
    }
    Ok(())
}

/// Each SIGHUP: the configuration and the authorized keys read again
/// ([`crate::startup::reload`]), connections untouched.
async fn hangups(
    mut hup: async_signal::Signals,
    shared: Arc<crate::Shared>,
    mut current: Settings,
) {
    use futures_lite::StreamExt;
    while hup.next().await.is_some() {
        tracing::info!("SIGHUP: re-reading the configuration and the authorized keys");
        crate::startup::reload(&shared, &mut current);
    }
}

/// Asks admission about a connection from `origin.client`: the task that
/// serves it (at once, or once it is let in), or `None` when it is refused
/// (logged; the stream is dropped unread).
fn admit<S>(
    stream: S,
    origin: Origin,
    shared: &Arc<crate::Shared>,
    accepted: std::time::Instant,
) -> Option<Task>
where
    S: AsyncRead + AsyncWrite + std::os::fd::AsFd + Unpin + Send + 'static,
{
    let registration = crate::admit::Registration::new(shared);
    let id = registration.id();
    let client = origin.client;
    match shared.admission(|a| a.connect(id, client.ip(), accepted)) {
        Verdict::Accept(ticket) => Some(Box::pin(crate::driver::drive(
            stream,
            origin,
            shared.clone(),
            ticket,
            registration,
            accepted,
        ))),
        Verdict::Wait => Some(Box::pin(wait_then_drive(
            stream,
            origin,
            shared.clone(),
            registration,
            accepted,
        ))),
        Verdict::Refuse(why) => {
            shared.metrics.refused(why);
            match origin.via() {
                Some(via) => tracing::debug!(peer = %client, %via, why, "connection refused"),
                None => tracing::debug!(peer = %client, why, "connection refused"),
            }
            // The fail2ban line: once per source and interval.
            if let Ok(mut log) = shared.refusals.lock() {
                log.refused(client.ip(), why, accepted);
            }
            None
        }
    }
}

/// A connection from a trusted balancer: its PROXY header first, then
/// admission by the address it carries. A refused header is logged with
/// the balancer's address and ends the connection before any SSH byte.
async fn read_header_then_admit<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: Arc<crate::Shared>,
    accepted: std::time::Instant,
) where
    S: AsyncRead + AsyncWrite + std::os::fd::AsFd + Unpin + Send + 'static,
{
    let deadline = accepted + shared.proxy.timeout.min(shared.config().login_grace);
    match crate::proxy::read_header(&mut stream, peer, &shared.proxy, deadline).await {
        Ok(passed) => {
            let origin = Origin {
                peer,
                client: passed.arrived.client,
                header: passed.arrived.header,
                first: passed.first,
                check_untrusted: false,
            };
            if let Some(task) = admit(stream, origin, &shared, accepted) {
                task.await;
            }
        }
        Err(crate::proxy::Failed::Refused(why)) => {
            tracing::info!(%peer, reason = ?why.to_string(), "connection refused before SSH");
        }
        Err(crate::proxy::Failed::Closed) => {
            tracing::debug!(%peer, "closed before its PROXY header");
        }
    }
}

/// Waits until no connection is left, or `limit` has passed (the sessions
/// keep their own deadlines within it; this only bounds the process).
async fn wait_for_sessions(shared: &crate::Shared, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while shared.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        async_io::Timer::after(std::time::Duration::from_millis(50)).await;
    }
}

/// A connection admission keeps waiting: unread (no cryptography is spent
/// on it) until it is let in, then served; if the login grace time (which
/// starts at accept) runs out first, it is closed unread.
async fn wait_then_drive<S>(
    stream: S,
    origin: Origin,
    shared: Arc<crate::Shared>,
    registration: crate::admit::Registration,
    accepted: std::time::Instant,
) where
    S: AsyncRead + AsyncWrite + std::os::fd::AsFd + Unpin + Send + 'static,
{
    let peer = origin.client;
    tracing::debug!(%peer, "waiting for a place among the startups");
    let deadline = accepted + shared.config().login_grace;
    let mailbox = registration.mailbox.clone();
    let admitted = futures_lite::future::or(
        async {
            loop {
                // Armed before looking, so that a ticket put in between is
                // not missed.
                let listener = mailbox.event.listen();
                if let Some(ticket) = mailbox.take_ticket() {
                    return Some(ticket);
                }
                listener.await;
            }
        },
        async {
            async_io::Timer::at(deadline).await;
            None
        },
    )
    .await;
    match admitted {
        Some(ticket) => {
            tracing::debug!(%peer, waited = %crate::driver::Secs(accepted.elapsed()), "let in from the startup queue");
            crate::driver::drive(stream, origin, shared, ticket, registration, accepted).await;
        }
        None => {
            tracing::info!(%peer, "login grace time exceeded while waiting for a place: closing unread");
            registration.abandon();
        }
    }
}
