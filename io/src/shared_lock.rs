//! The push lock shared by several instances (`--push-lock postgres`).
//!
//! A push first takes the in-process lock ([`crate::locks::PushLocks`]),
//! which orders the pushes of this instance (PostgreSQL's advisory locks
//! are re-entrant within one database session, so they could not tell two
//! of our own pushes apart); the one holding it then asks this service for
//! the database's lock. That is a session-level advisory lock
//! (`pg_try_advisory_lock`) on a stable 64-bit hash of the repository's
//! name ([`gitmouth_core::lock_table::shared_lock_key`]), taken on the one
//! connection this instance keeps for locks, so PostgreSQL itself releases
//! it when the instance dies or that connection breaks. Who holds it and
//! since when is kept next to it in `push_locks`, for the message of the
//! pusher held back, whichever instance it came through.
//!
//! Two names whose hashes collide share one lock: a push to one waits for
//! (or is refused during) a push to the other, never the reverse of the
//! rule. The holder table is checked by name, so the log says so.
//!
//! While the database cannot be reached, a push is refused with
//! [`Remote::Unavailable`], never let through; the service reconnects with
//! backoff, and pushes resume with no restart. A push that held the lock
//! when the connection broke goes on (the loss is logged); the service
//! takes its lock again once reconnected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gitmouth_core::lock_table::shared_lock_key;
use gitmouth_core::server::LockHeld;
use tokio_postgres::Client;

use crate::database::{Connection, DatabaseSettings};

/// The longest pause between two attempts to reach the database.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first pause after a failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What the database said about a lock.
#[derive(Debug)]
pub enum Remote {
    /// The lock is this push's until the grant is dropped.
    Granted(RemoteGrant),
    /// A push through this or another instance holds it.
    Held(LockHeld),
    /// The database cannot be reached now.
    Unavailable,
}

/// A lock the database granted; dropping it releases it.
#[derive(Debug)]
pub struct RemoteGrant {
    repo: String,
    requests: async_channel::Sender<Request>,
}

impl Drop for RemoteGrant {
    fn drop(&mut self) {
        // Unbounded: never blocks; after the service is gone, nothing is
        // held anyway.
        let _ = self.requests.try_send(Request::Release {
            repo: std::mem::take(&mut self.repo),
        });
    }
}

enum Request {
    Acquire {
        repo: String,
        user: String,
        session: String,
        reply: async_channel::Sender<Remote>,
    },
    Release {
        repo: String,
    },
}

/// The handle sessions use: asks the service task, which owns the lock
/// connection.
#[derive(Debug, Clone)]
pub struct SharedLocks {
    requests: async_channel::Sender<Request>,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Acquire { repo, .. } => write!(f, "Acquire({repo})"),
            Request::Release { repo } => write!(f, "Release({repo})"),
        }
    }
}

impl SharedLocks {
    /// Takes the database's lock of `repo` for `user`'s push in session
    /// `session`, or says who holds it, or that the database is
    /// unreachable.
    pub async fn acquire(&self, repo: &str, user: &str, session: &str) -> Remote {
        if !self.connected.load(Ordering::SeqCst) {
            return Remote::Unavailable;
        }
        let (reply, answer) = async_channel::bounded(1);
        let request = Request::Acquire {
            repo: repo.to_owned(),
            user: user.to_owned(),
            session: session.to_owned(),
            reply,
        };
        if self.requests.send(request).await.is_err() {
            return Remote::Unavailable;
        }
        // The service drops the reply sender when the connection breaks
        // mid-request.
        answer.recv().await.unwrap_or(Remote::Unavailable)
    }

    /// Whether the lock connection is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// The service task's state: the grants of this instance's pushes.
pub struct LockService {
    settings: DatabaseSettings,
    requests: async_channel::Receiver<Request>,
    sender: async_channel::Sender<Request>,
    connected: Arc<AtomicBool>,
    /// Repositories whose lock a push of ours holds, by key, with who and
    /// since when (for a retake after a reconnection).
    held: BTreeMap<i64, Holder>,
    queries: Queries,
}

/// What the database said, inside the service.
enum Taken {
    Granted,
    Held(LockHeld),
}

#[derive(Debug, Clone)]
struct Holder {
    repo: String,
    user: String,
    session: String,
}

/// The SQL, with gitmouth's schema in it.
struct Queries {
    record: String,
    holder: String,
    forget: String,
}

impl LockService {
    /// The service and its handle; `first` is the connection made at start
    /// (whose failure stops the server before it listens). Run the service
    /// with [`LockService::run`].
    pub fn new(settings: DatabaseSettings) -> (Self, SharedLocks) {
        let (sender, requests) = async_channel::unbounded();
        // Made with the first connection, up already.
        let connected = Arc::new(AtomicBool::new(true));
        let table = settings.table("push_locks");
        let queries = Queries {
            record: format!(
                "INSERT INTO {table} (lock_key, repo, instance, username, session, started)
                 VALUES ($1, $2, $3, $4, $5, now())
                 ON CONFLICT (lock_key) DO UPDATE SET repo = EXCLUDED.repo,
                   instance = EXCLUDED.instance, username = EXCLUDED.username,
                   session = EXCLUDED.session, started = EXCLUDED.started"
            ),
            holder: format!(
                "SELECT repo, username, instance,
                   EXTRACT(EPOCH FROM now() - started)::float8
                 FROM {table} WHERE lock_key = $1"
            ),
            forget: format!("DELETE FROM {table} WHERE lock_key = $1 AND instance = $2"),
        };
        let handle = SharedLocks {
            requests: sender.clone(),
            connected: connected.clone(),
        };
        let service = Self {
            settings,
            requests,
            sender,
            connected,
            held: BTreeMap::new(),
            queries,
        };
        (service, handle)
    }

    /// Serves lock requests for as long as the server runs, over `first`
    /// and then over each new connection after a loss.
    pub async fn run(mut self, first: (Client, Connection)) {
        let mut link = Some(first);
        let mut backoff = FIRST_BACKOFF;
        let mut lost_at: Option<Instant> = None;
        loop {
            let (client, connection) = match link.take() {
                Some(link) => link,
                None => {
                    // Meanwhile every push is refused, and releases (of
                    // locks the database already let go) are taken.
                    self.refuse_until(Instant::now() + backoff).await;
                    match self.settings.connect("push-lock").await {
                        Ok(link) => link,
                        Err(e) => {
                            tracing::debug!(error = %e, "push lock: still no database");
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
            };
            backoff = FIRST_BACKOFF;
            let lost = lost_at.take();
            // The connection is polled alongside everything said over it
            // (nothing is read or written otherwise); either ending is the
            // connection's end.
            let work = async {
                self.retake(&client).await;
                self.connected.store(true, Ordering::SeqCst);
                if let Some(at) = lost {
                    tracing::info!(
                        database = %self.settings.shown(),
                        after = %crate::driver::Secs(at.elapsed()),
                        "push lock: the database is back; pushes resume"
                    );
                }
                self.serve(&client).await;
            };
            futures_lite::future::or(connection, work).await;
            self.connected.store(false, Ordering::SeqCst);
            lost_at = Some(Instant::now());
            let repos: Vec<&str> = self.held.values().map(|h| h.repo.as_str()).collect();
            tracing::error!(
                database = %self.settings.shown(),
                held = ?repos,
                "push lock: lost the database connection; new pushes are refused until it is back (pushes in progress go on, their locks are taken again then)"
            );
        }
    }

    /// Answers requests until `until`, with the database unreachable.
    async fn refuse_until(&mut self, until: Instant) {
        loop {
            let next = async { Some(self.requests.recv().await) };
            let timer = async {
                async_io::Timer::at(until).await;
                None
            };
            match futures_lite::future::or(next, timer).await {
                None => return,
                Some(Err(_)) => std::future::pending::<()>().await,
                Some(Ok(Request::Acquire { reply, .. })) => {
                    let _ = reply.try_send(Remote::Unavailable);
                }
                Some(Ok(Request::Release { repo })) => {
                    self.held.retain(|_, h| h.repo != repo);
                }
            }
        }
    }

    /// Answers requests over `client` until the connection fails.
    async fn serve(&mut self, client: &Client) {
        while let Ok(request) = self.requests.recv().await {
            match request {
                Request::Acquire {
                    repo,
                    user,
                    session,
                    reply,
                } => match self.try_lock(client, &repo, &user, &session).await {
                    Ok(Taken::Granted) => {
                        let grant = RemoteGrant {
                            repo,
                            requests: self.sender.clone(),
                        };
                        // A push that went meanwhile drops the grant with
                        // the reply: its release follows at once.
                        let _ = reply.try_send(Remote::Granted(grant));
                    }
                    Ok(Taken::Held(held)) => {
                        let _ = reply.try_send(Remote::Held(held));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %repo, "push lock: the database failed");
                        let _ = reply.try_send(Remote::Unavailable);
                        if client.is_closed() {
                            return;
                        }
                    }
                },
                Request::Release { repo } => {
                    if let Err(e) = self.unlock(client, &repo).await {
                        tracing::warn!(error = %e, %repo, "push lock: release failed");
                        if client.is_closed() {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn try_lock(
        &mut self,
        client: &Client,
        repo: &str,
        user: &str,
        session: &str,
    ) -> Result<Taken, tokio_postgres::Error> {
        let key = shared_lock_key(repo);
        if let Some(other) = self.held.get(&key) {
            // Ours already, for a name whose hash collides (the in-process
            // table already orders pushes to one name): re-entering the
            // advisory lock would grant it twice.
            tracing::info!(%repo, other = %other.repo, "push lock: two names share one lock (hash collision)");
            return Ok(Taken::Held(LockHeld {
                since: Instant::now(),
                user: other.user.clone(),
                instance: Some(self.settings.instance().to_owned()),
            }));
        }
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?;
        if row.get::<_, bool>(0) {
            let instance = self.settings.instance();
            let recorded = client
                .execute(
                    &self.queries.record,
                    &[&key, &repo, &instance, &user, &session],
                )
                .await;
            if let Err(e) = recorded {
                let _ = client
                    .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                    .await;
                return Err(e);
            }
            self.held.insert(
                key,
                Holder {
                    repo: repo.to_owned(),
                    user: user.to_owned(),
                    session: session.to_owned(),
                },
            );
            return Ok(Taken::Granted);
        }
        // Held: by whom? The holder writes its row right after taking the
        // lock; a reader between the two looks again shortly.
        for attempt in 0..3 {
            if let Some(row) = client.query_opt(&self.queries.holder, &[&key]).await? {
                let (holder_repo, user, instance, secs): (String, String, String, f64) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                if holder_repo != repo {
                    tracing::info!(%repo, other = %holder_repo, "push lock: two names share one lock (hash collision)");
                }
                let age = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or_default();
                let now = Instant::now();
                return Ok(Taken::Held(LockHeld {
                    since: now.checked_sub(age).unwrap_or(now),
                    user,
                    instance: Some(instance),
                }));
            }
            if attempt < 2 {
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
        }
        Ok(Taken::Held(LockHeld {
            since: Instant::now(),
            user: "another user".to_owned(),
            instance: None,
        }))
    }

    async fn unlock(&mut self, client: &Client, repo: &str) -> Result<(), tokio_postgres::Error> {
        let key = shared_lock_key(repo);
        if self.held.get(&key).is_none_or(|h| h.repo != repo) {
            return Ok(());
        }
        self.held.remove(&key);
        let instance = self.settings.instance();
        client
            .execute(&self.queries.forget, &[&key, &instance])
            .await?;
        client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .await?;
        Ok(())
    }

    /// After a reconnection: takes again the locks of pushes still in
    /// progress (the database let them go with the old connection). One
    /// another instance took meanwhile stays theirs; the log says so.
    async fn retake(&mut self, client: &Client) {
        let held = std::mem::take(&mut self.held);
        for (key, holder) in held {
            let Holder {
                repo,
                user,
                session,
            } = holder;
            match self.try_lock(client, &repo, &user, &session).await {
                // The push still holds its first grant, which releases
                // this one.
                Ok(Taken::Granted) => {
                    tracing::info!(%repo, "push lock: taken again after the reconnection");
                }
                Ok(Taken::Held(other)) => {
                    tracing::warn!(%repo, holder = %other.user, "push lock: another push took the lock while the database was lost; both go on");
                }
                Err(_) => {
                    // Kept, to be tried with the next connection.
                    self.held.insert(
                        key,
                        Holder {
                            repo,
                            user,
                            session,
                        },
                    );
                }
            }
        }
    }
}
