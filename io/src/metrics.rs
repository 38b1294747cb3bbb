//! What the server counts, and the small HTTP server that shows it:
//! `/metrics` in the Prometheus text format, `/health` and `/ready`.
//!
//! The counts come from one place per kind: the sessions' events
//! ([`gitmouth_core::server::SessionEvent`], turned into updates by
//! [`Metrics::observe`]), the accept loop and admission (connections
//! accepted and refused, which are no session's), and the driver's HTTP
//! work (API calls, which the runtime carries).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use gitmouth_core::server::SessionEvent;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Shared;

/// A metric's labels, as name and value.
type Labels = Vec<(&'static str, String)>;

/// Consecutive API calls that could not connect after which `/ready`
/// says 503 (one failure may be a blip; any answer resets the count).
pub const API_FAILURES_UNREADY: u32 = 3;

/// Largest request `/metrics` reads (a scrape's request is a few hundred
/// bytes).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client of the metrics listener has to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Every metric the server keeps, in one registry of its own (there is no
/// global one).
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    refused: Family<Labels, Counter>,
    connections: Family<Labels, Gauge>,
    auths: Family<Labels, Counter>,
    operations: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    handshake: Histogram,
    provisioning: Histogram,
    session: Histogram,
    api_calls: Family<Labels, Counter>,
    lock_waits: Counter,
    lock_refusals: Counter,
    penalties: Gauge,
    keepalive_timeouts: Counter,
    /// Whether the push lock's database connection is up (registered
    /// with `--push-lock postgres` only).
    lock_database: Gauge,
    /// API calls in a row that could not connect ([`API_FAILURES_UNREADY`]).
    api_failures: AtomicU32,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds, for the histograms: 1 ms to about 2 h.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("gitmouth"),
            accepted: Counter::default(),
            refused: Family::default(),
            connections: Family::default(),
            auths: Family::default(),
            operations: Family::default(),
            bytes: Family::default(),
            handshake: seconds(),
            provisioning: seconds(),
            session: seconds(),
            api_calls: Family::default(),
            lock_waits: Counter::default(),
            lock_refusals: Counter::default(),
            penalties: Gauge::default(),
            keepalive_timeouts: Counter::default(),
            lock_database: Gauge::default(),
            api_failures: AtomicU32::new(0),
        };
        let r = &mut m.registry;
        r.register(
            "connections_accepted",
            "TCP connections accepted",
            m.accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused by admission control, by reason",
            m.refused.clone(),
        );
        r.register(
            "connections_in_progress",
            "Connections being served, by state (unauthenticated, authenticated)",
            m.connections.clone(),
        );
        r.register(
            "authentications",
            "User authentication attempts, by method and result (accepted, rejected)",
            m.auths.clone(),
        );
        r.register(
            "git_operations",
            "Git commands ended, by command and outcome (ok, failed, stopped, refused)",
            m.operations.clone(),
        );
        r.register(
            "relayed_bytes",
            "Bytes relayed between clients and git commands, by direction (in: from the client)",
            m.bytes.clone(),
        );
        r.register(
            "handshake_seconds",
            "From accept to the end of the first key exchange",
            m.handshake.clone(),
        );
        r.register(
            "provisioning_seconds",
            "From a git command's exec request to its git process or dyno running",
            m.provisioning.clone(),
        );
        r.register(
            "session_seconds",
            "Connections' whole length",
            m.session.clone(),
        );
        r.register(
            "api_calls",
            "Calls to the Openruko API server, by route and status (an HTTP code, timeout or error)",
            m.api_calls.clone(),
        );
        r.register(
            "push_lock_waits",
            "Pushes that waited in turn for their repository's push lock",
            m.lock_waits.clone(),
        );
        r.register(
            "push_lock_refusals",
            "Pushes refused because another push held the lock",
            m.lock_refusals.clone(),
        );
        r.register(
            "penalties",
            "Source addresses under an admission penalty now",
            m.penalties.clone(),
        );
        r.register(
            "keepalive_timeouts",
            "Connections closed because the client answered no keepalive",
            m.keepalive_timeouts.clone(),
        );
        m
    }

    /// A connection was accepted by the listener.
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// Admission refused a connection.
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&labels([("reason", reason)]))
            .inc();
    }

    /// A connection in `state` began (`+1`) or left it (`-1`).
    pub fn connection(&self, state: &'static str, delta: i64) {
        self.connections
            .get_or_create(&labels([("state", state)]))
            .inc_by(delta);
    }

    /// A connection ended after `length`.
    pub fn session_ended(&self, length: Duration) {
        self.session.observe(length.as_secs_f64());
    }

    /// An API call on `route` ended with `status` (a code, `timeout`,
    /// `error`); `connected` is false when the server could not be reached.
    pub fn api_call(&self, route: &str, status: &str, connected: bool) {
        self.api_calls
            .get_or_create(&labels([("route", route), ("status", status)]))
            .inc();
        if connected {
            self.api_failures.store(0, Ordering::Relaxed);
        } else {
            self.api_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the last API calls all failed to connect.
    pub fn api_unreachable(&self) -> bool {
        self.api_failures.load(Ordering::Relaxed) >= API_FAILURES_UNREADY
    }

    /// Counts what a session reported.
    pub fn observe(&self, event: &SessionEvent) {
        match event {
            SessionEvent::HandshakeDone { elapsed } => {
                self.handshake.observe(elapsed.as_secs_f64());
            }
            SessionEvent::Auth { method, accepted } => {
                let result = if *accepted { "accepted" } else { "rejected" };
                self.auths
                    .get_or_create(&labels([("method", method), ("result", result)]))
                    .inc();
            }
            SessionEvent::Provisioned { elapsed } => {
                self.provisioning.observe(elapsed.as_secs_f64());
            }
            SessionEvent::LockWait => {
                self.lock_waits.inc();
            }
            SessionEvent::LockRefused => {
                self.lock_refusals.inc();
            }
            SessionEvent::KeepaliveTimeout => {
                self.keepalive_timeouts.inc();
            }
            SessionEvent::CommandEnded(audit) => {
                self.operations
                    .get_or_create(&labels([
                        ("command", audit.command),
                        ("outcome", audit.outcome),
                    ]))
                    .inc();
                self.bytes
                    .get_or_create(&labels([("direction", "in")]))
                    .inc_by(audit.bytes_in);
                self.bytes
                    .get_or_create(&labels([("direction", "out")]))
                    .inc_by(audit.bytes_out);
            }
        }
    }

    /// Exposes whether the push lock's database connection is up
    /// (`--push-lock postgres`), before the server serves.
    pub fn track_lock_database(&mut self) {
        self.registry.register(
            "push_lock_database_up",
            "1 while the connection to the database shared by the instances (--push-lock postgres) is up; pushes are refused while it is 0",
            self.lock_database.clone(),
        );
    }

    /// The text exposition, with the gauges read now (`lock_database`:
    /// whether the push lock's database is reachable, if there is one).
    fn render(&self, penalties: usize, lock_database: Option<bool>) -> String {
        self.penalties
            .set(i64::try_from(penalties).unwrap_or(i64::MAX));
        if let Some(up) = lock_database {
            self.lock_database.set(i64::from(up));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The route label of an API request: its path without the app name,
/// fingerprint or query (a label per app would grow without bound).
pub fn api_route(url: &str) -> &'static str {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let path = path.split('?').next().unwrap_or_default();
    if path.contains("lookupUserByPublicKey") {
        "/internal/lookupUserByPublicKey"
    } else if path.ends_with("/gitaction") {
        "/internal/:app/gitaction"
    } else if path.starts_with("/apps/") {
        "/apps/:app"
    } else {
        "other"
    }
}

/// Binds the metrics listener (before anything is served, so a bad address
/// stops the start).
pub fn bind(addr: SocketAddr) -> Result<async_net::TcpListener, String> {
    let std = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))?;
    async_net::TcpListener::try_from(std)
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))
}

/// Serves `/metrics`, `/health` and `/ready` on `listener`, one request
/// per connection, one connection at a time (each bounded by
/// [`READ_DEADLINE`] and [`MAX_REQUEST`], so a slow client delays a
/// scrape by seconds at most). Runs until the process ends.
pub async fn serve(listener: async_net::TcpListener, shared: std::sync::Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                async_io::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        futures_lite::future::or(answer(stream, &shared), async {
            async_io::Timer::after(READ_DEADLINE).await;
        })
        .await;
    }
}

/// Reads one request and answers it.
async fn answer(mut stream: async_net::TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    // Up to the end of the request's head.
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        if len == buf.len() {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "").await;
            return;
        }
    }
    let line = buf[..len].split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|b| *b == b'?').next().unwrap_or_default());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let now = std::time::Instant::now();
            let penalties = shared.admission(|a| a.penalised_at(now));
            let database = shared.shared_locks.as_ref().map(|l| l.connected());
            ("200 OK", shared.metrics.render(penalties, database))
        }
        (Some(b"GET"), Some(b"/health")) => ("200 OK", "ok\n".to_owned()),
        (Some(b"GET"), Some(b"/ready")) => ready(shared),
        (Some(b"GET"), _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let _ = respond(&mut stream, status, &body).await;
}

/// `/ready`: accepting connections, and (in API mode) able to reach the
/// API server as far as real traffic shows.
fn ready(shared: &Shared) -> (&'static str, String) {
    if shared.stop_level.load(Ordering::SeqCst) != crate::RUNNING {
        ("503 Service Unavailable", "draining\n".to_owned())
    } else if shared.http.is_some() && shared.metrics.api_unreachable() {
        (
            "503 Service Unavailable",
            "the API server cannot be reached\n".to_owned(),
        )
    } else {
        ("200 OK", "ready\n".to_owned())
    }
}

async fn respond(
    stream: &mut async_net::TcpStream,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_routes_carry_no_names() {
        assert_eq!(
            api_route("https://api:5000/internal/lookupUserByPublicKey?fingerprint=ab"),
            "/internal/lookupUserByPublicKey"
        );
        assert_eq!(
            api_route("https://api:5000/internal/myapp/gitaction?command=x"),
            "/internal/:app/gitaction"
        );
        assert_eq!(api_route("http://api/apps/myapp"), "/apps/:app");
        assert_eq!(api_route("http://api/elsewhere"), "other");
    }

    #[test]
    fn every_metric_is_exposed() {
        let mut m = Metrics::new();
        m.track_lock_database();
        m.accepted();
        m.refused("penalised");
        m.connection("unauthenticated", 1);
        m.api_call("/apps/:app", "200", true);
        let text = m.render(2, Some(true));
        for name in [
            "gitmouth_connections_accepted_total 1",
            "gitmouth_connections_refused_total{reason=\"penalised\"} 1",
            "gitmouth_connections_in_progress{state=\"unauthenticated\"} 1",
            "gitmouth_api_calls_total{route=\"/apps/:app\",status=\"200\"} 1",
            "gitmouth_penalties 2",
            "gitmouth_handshake_seconds_count 0",
            "gitmouth_push_lock_database_up 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
