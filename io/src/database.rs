//! PostgreSQL shared by several instances (`--push-lock postgres`): the
//! connection settings (the password masked wherever they are shown),
//! connecting over our own socket on any executor, and gitmouth's schema,
//! created and migrated at start.
//!
//! tokio-postgres runs here without tokio's runtime: it is handed an
//! `async-net` socket through tokio-util's compatibility layer, and its
//! connection future is polled by whoever holds the client (see
//! [`Connection`]), so smol and async-std drive it alike.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// The database's connection, to be polled for as long as its client is
/// used: it carries every query's bytes, and ends when the connection does.
pub type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long connecting to the database may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the shared database is and how gitmouth uses it.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The URL as given (never shown: it holds the password).
    url: String,
    config: Config,
    /// The URL without its password, for logs and messages.
    shown: String,
    /// Where to connect.
    target: Target,
    /// The schema of gitmouth's tables.
    schema: String,
    /// This instance's name (`--instance-name`).
    instance: String,
}

#[derive(Clone, Debug)]
enum Target {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("DatabaseSettings")
            .field("url", &self.shown)
            .field("schema", &self.schema)
            .field("instance", &self.instance)
            .finish()
    }
}

/// The same database, schema and instance name.
impl PartialEq for DatabaseSettings {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.schema == other.schema && self.instance == other.instance
    }
}

impl DatabaseSettings {
    /// Reads `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`); a
    /// refusal says why without the password.
    pub fn new(url: &str, schema: &str, instance: &str) -> Result<Self, String> {
        let shown = mask_password(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE, not {shown:?}"
            ));
        }
        let config: Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL ({e}): {shown:?}"))?;
        if config.get_user().is_none_or(str::is_empty) {
            return Err(format!("no user in {shown:?}"));
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(format!(
                "sslmode=require in {shown:?}: TLS to the database is not supported (keep it on a private network or a local socket)"
            ));
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = match config.get_hosts() {
            [Host::Tcp(host)] => Target::Tcp(host.clone(), port),
            [Host::Unix(dir)] => Target::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            [] => return Err(format!("no host in {shown:?}")),
            _ => return Err(format!("one host only, not several: {shown:?}")),
        };
        if instance.is_empty() || instance.chars().any(char::is_control) {
            return Err(format!(
                "--instance-name must be printable and not empty: {instance:?}"
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            config,
            shown,
            target,
            schema: schema.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The schema of gitmouth's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `table` in gitmouth's schema, quoted for SQL.
    pub fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema)
    }

    /// Connects within [`CONNECT_TIMEOUT`]; `purpose` names the connection
    /// in `pg_stat_activity` (with the instance). The error names the URL
    /// without its password.
    pub async fn connect(&self, purpose: &str) -> Result<(Client, Connection), String> {
        let mut config = self.config.clone();
        config.application_name(format!("gitmouth {purpose} {}", self.instance));
        let attempt = async {
            match &self.target {
                Target::Tcp(host, port) => {
                    let stream = async_net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|e| e.to_string())?;
                    // Lock requests are small round trips.
                    let _ = stream.set_nodelay(true);
                    let (client, connection) = config
                        .connect_raw(stream.compat(), NoTls)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((client, drive(connection)))
                }
                Target::Unix(path) => {
                    let stream = async_net::unix::UnixStream::connect(path)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (client, connection) = config
                        .connect_raw(stream.compat(), NoTls)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((client, drive(connection)))
                }
            }
        };
        let timeout = async {
            async_io::Timer::after(CONNECT_TIMEOUT).await;
            Err(format!(
                "no answer within {} seconds",
                CONNECT_TIMEOUT.as_secs()
            ))
        };
        futures_lite::future::or(attempt, timeout)
            .await
            .map_err(|why: String| format!("cannot connect to {}: {why}", self.shown))
    }
}

/// The connection as a future that ends with it (an error is the client's
/// to report: every query then fails).
fn drive<F>(connection: F) -> Connection
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    Box::pin(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    })
}

/// `url` with its password, if any, replaced by `********` (in the user
/// part and in a `password=` parameter).
pub fn mask_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "********");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=********"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// Schema versions, in order: migration N takes the schema from version
/// N-1 to N. Appended to, never edited: instances of an older version may
/// still run against the same database.
const MIGRATIONS: [&str; 1] = [
    // 1: the push locks' holders, and the penalties and per-user
    // connection counts shared between instances.
    "CREATE TABLE {schema}.push_locks (
        lock_key bigint PRIMARY KEY,
        repo text NOT NULL,
        instance text NOT NULL,
        username text NOT NULL,
        session text NOT NULL,
        started timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {schema}.shared_limits (
        kind text NOT NULL,
        subject text NOT NULL,
        instance text NOT NULL,
        value bigint NOT NULL,
        expires timestamptz NOT NULL,
        updated timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, subject, instance)
    );
    CREATE INDEX ON {schema}.shared_limits (updated);
    CREATE INDEX ON {schema}.shared_limits (expires);",
];

/// The advisory lock (in the two-key space, apart from the push locks'
/// single keys) that makes instances starting together migrate one at a
/// time.
const MIGRATION_LOCK: (i32, i32) = (0x676d_7468, 1);

/// Creates gitmouth's schema, or brings it to this version; says which
/// version it is at. Instances starting at once take turns.
pub async fn migrate(client: &Client, settings: &DatabaseSettings) -> Result<usize, String> {
    let (k1, k2) = MIGRATION_LOCK;
    let error = |e: tokio_postgres::Error| format!("preparing the schema: {e}");
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({k1}, {k2})"))
        .await
        .map_err(error)?;
    let schema = format!("\"{}\"", settings.schema);
    let result = async {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL);"
            ))
            .await
            .map_err(error)?;
        let row = client
            .query_opt(&format!("SELECT version FROM {schema}.schema_version"), &[])
            .await
            .map_err(error)?;
        let at = row.map_or(0, |r| r.get::<_, i32>(0));
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        if at > MIGRATIONS.len() {
            return Err(format!(
                "the database's schema {schema} is at version {at}, newer than this gitmouth knows ({}): upgrade gitmouth",
                MIGRATIONS.len()
            ));
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(at) {
            let version = n + 1;
            client
                .batch_execute(&format!(
                    "BEGIN;
                     {}
                     DELETE FROM {schema}.schema_version;
                     INSERT INTO {schema}.schema_version VALUES ({version});
                     COMMIT;",
                    sql.replace("{schema}", &schema)
                ))
                .await
                .map_err(|e| format!("migrating the schema to version {version}: {e}"))?;
            tracing::info!(schema = %settings.schema, version, "database schema migrated");
        }
        Ok(MIGRATIONS.len())
    }
    .await;
    // A failed migration left its transaction: end it before unlocking.
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let _ = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({k1}, {k2})"))
        .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://gm:s3cret@db:5432/gm",
                "postgres://gm:********@db:5432/gm",
            ),
            ("postgres://gm@db/gm", "postgres://gm@db/gm"),
            (
                "postgresql://gm:p@ss:w@rd@db/gm?sslmode=disable&password=x",
                "postgresql://gm:********@db/gm?sslmode=disable&password=********",
            ),
            (
                "postgres://db/gm?Password=x",
                "postgres://db/gm?Password=********",
            ),
            ("not a url s3cret", "not a url s3cret"),
        ] {
            assert_eq!(mask_password(url), shown);
        }
        let s = DatabaseSettings::new("postgres://gm:s3cret@127.0.0.1:5433/gm", "gitmouth", "a:22")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(s.shown(), "postgres://gm:********@127.0.0.1:5433/gm");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for url in [
            "mysql://gm:s3cret@db/gm",
            "postgres://gm:s3cret@db:notaport/gm",
            "postgres://gm:s3cret@db/gm?sslmode=require",
            "postgres://:s3cret@db/gm",
        ] {
            let e = DatabaseSettings::new(url, "gitmouth", "a")
                .err()
                .unwrap_or_else(|| panic!("accepted {url}"));
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
