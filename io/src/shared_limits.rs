//! Penalties and per-user connection counts shared by several instances
//! through the database (`--push-lock postgres`).
//!
//! One table, `shared_limits`, one row per kind, subject and instance,
//! each expiring by time: a penalty until it runs out, a user's count a
//! few seconds after its instance last wrote it (so a dead instance's
//! connections stop counting). Each instance writes what changed here and
//! reads what changed elsewhere once per [`PERIOD`], in one batch each way,
//! so a flood of failing logins is one write a second, not one per
//! failure, and another instance sees a penalty within two periods.
//! Admission's counts of unauthenticated connections stay local: they
//! bound this instance's own work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitmouth_core::admission::Source;
use tokio_postgres::Client;

use crate::Shared;
use crate::database::{Connection, DatabaseSettings};

/// How often this instance writes its news and reads the others'.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How long a user's count stands without its instance writing it again.
const USER_COUNT_LIFE: Duration = Duration::from_secs(10);
/// How often rows long expired are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What the other instances hold, as last read: authenticated connections
/// per user.
#[derive(Debug, Default)]
pub struct Elsewhere {
    users: Mutex<HashMap<String, u32>>,
}

impl Elsewhere {
    /// Authenticated connections `user` holds through other instances.
    pub fn user_connections(&self, user: &str) -> u32 {
        self.lock().get(user).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The SQL, with gitmouth's schema in it.
struct Queries {
    penalties: String,
    users: String,
    forget_users: String,
    read: String,
    sweep: String,
}

impl Queries {
    fn new(settings: &DatabaseSettings) -> Self {
        let table = settings.table("shared_limits");
        Self {
            penalties: format!(
                "INSERT INTO {table} (kind, subject, instance, value, expires, updated)
                 SELECT 'penalty', s, $1, 0, now() + make_interval(secs => r), now()
                 FROM unnest($2::text[], $3::float8[]) AS t(s, r)
                 ON CONFLICT (kind, subject, instance) DO UPDATE
                 SET expires = GREATEST({table}.expires, EXCLUDED.expires), updated = now()"
            ),
            users: format!(
                "INSERT INTO {table} (kind, subject, instance, value, expires, updated)
                 SELECT 'user', u, $1, n, now() + make_interval(secs => $4), now()
                 FROM unnest($2::text[], $3::int8[]) AS t(u, n)
                 ON CONFLICT (kind, subject, instance) DO UPDATE
                 SET value = EXCLUDED.value, expires = EXCLUDED.expires, updated = now()"
            ),
            forget_users: format!(
                "DELETE FROM {table} WHERE kind = 'user' AND instance = $1
                 AND NOT (subject = ANY($2::text[]))"
            ),
            // Penalties changed since the last read (with a margin for
            // writes that committed late); every live user count.
            read: format!(
                "SELECT kind, subject, value,
                   EXTRACT(EPOCH FROM expires - now())::float8,
                   now()::text
                 FROM {table}
                 WHERE instance <> $1 AND expires > now()
                   AND (kind = 'user' OR updated > now() - make_interval(secs => $2))"
            ),
            sweep: format!("DELETE FROM {table} WHERE expires < now() - interval '1 minute'"),
        }
    }
}

/// Keeps this instance's penalties and user counts in the database and
/// the others' here, for as long as the server runs; reconnects with
/// backoff when the database goes away (meanwhile each instance judges
/// alone, and other instances' user counts are forgotten as they expire).
pub async fn run(shared: Arc<Shared>, settings: DatabaseSettings, elsewhere: Arc<Elsewhere>) {
    let queries = Queries::new(&settings);
    shared.admission(|a| a.share_penalties());
    let mut backoff = Duration::from_millis(250);
    let mut last_read: Option<Instant> = None;
    loop {
        let link = match settings.connect("limits").await {
            Ok(link) => link,
            Err(e) => {
                tracing::debug!(error = %e, "shared limits: no database");
                forget_stale(&elsewhere, last_read);
                async_io::Timer::after(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let (client, connection): (Client, Connection) = link;
        let sync = async {
            let mut since_sweep = Instant::now();
            // The first read takes every penalty in force.
            let mut window = 24.0 * 3600.0;
            loop {
                match sync_once(&client, &queries, &shared, &settings, &elsewhere, window).await {
                    Ok(()) => {
                        last_read = Some(Instant::now());
                        window = 2.0 * PERIOD.as_secs_f64() + 2.0;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "shared limits: the database failed");
                        if client.is_closed() {
                            return;
                        }
                    }
                }
                if since_sweep.elapsed() >= SWEEP_EVERY {
                    since_sweep = Instant::now();
                    let _ = client.execute(&queries.sweep, &[]).await;
                }
                async_io::Timer::after(PERIOD).await;
            }
        };
        futures_lite::future::or(connection, sync).await;
        tracing::warn!(
            database = %settings.shown(),
            "shared limits: lost the database connection; penalties and user counts are this instance's alone until it is back"
        );
    }
}

/// Other instances' user counts no longer stand once they could have
/// expired in the database.
fn forget_stale(elsewhere: &Elsewhere, last_read: Option<Instant>) {
    if last_read.is_none_or(|at| at.elapsed() > USER_COUNT_LIFE) {
        elsewhere.lock().clear();
    }
}

async fn sync_once(
    client: &Client,
    queries: &Queries,
    shared: &Shared,
    settings: &DatabaseSettings,
    elsewhere: &Elsewhere,
    window_secs: f64,
) -> Result<(), tokio_postgres::Error> {
    let instance = settings.instance();
    let now = Instant::now();
    // What changed here: penalties set since last time, every user's
    // count (sent whole, so counts that fell to zero are removed).
    let (news, users) = shared.admission(|a| (a.take_new_penalties(), a.users()));
    if !news.is_empty() {
        let (sources, secs): (Vec<String>, Vec<f64>) = news
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(s, until)| (s.to_string(), (*until - now).as_secs_f64()))
            .unzip();
        if let Err(e) = client
            .execute(&queries.penalties, &[&instance, &sources, &secs])
            .await
        {
            // Not lost: written with the next batch.
            shared.admission(|a| {
                for (source, until) in news {
                    a.reshare(source, until);
                }
            });
            return Err(e);
        }
    }
    let (names, counts): (Vec<String>, Vec<i64>) =
        users.into_iter().map(|(u, n)| (u, i64::from(n))).unzip();
    let life = USER_COUNT_LIFE.as_secs_f64();
    client
        .execute(&queries.users, &[&instance, &names, &counts, &life])
        .await?;
    client
        .execute(&queries.forget_users, &[&instance, &names])
        .await?;
    // What changed elsewhere.
    let rows = client
        .query(&queries.read, &[&instance, &window_secs])
        .await?;
    let now = Instant::now();
    let mut others: HashMap<String, u32> = HashMap::new();
    let mut penalties: Vec<(Source, Instant)> = Vec::new();
    for row in rows {
        let (kind, subject, value, secs): (String, String, i64, f64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        match kind.as_str() {
            "penalty" => {
                if let (Ok(source), Ok(left)) = (
                    subject.parse::<Source>(),
                    Duration::try_from_secs_f64(secs.max(0.0)),
                ) {
                    penalties.push((source, now + left));
                }
            }
            "user" => {
                let n = u32::try_from(value).unwrap_or(u32::MAX);
                let total = others.entry(subject).or_default();
                *total = total.saturating_add(n);
            }
            _ => {}
        }
    }
    if !penalties.is_empty() {
        shared.admission(|a| {
            for (source, until) in penalties {
                a.impose(source, until, now);
            }
        });
    }
    *elsewhere.lock() = others;
    Ok(())
}
