//! Start-up: the command line and environment, logging, host keys, the
//! shared state of every connection.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use crate::config::{Env, HostKeySource, HostKeyStep, ModeSettings, Settings, host_key_step};
use gitmouth_core::server::Mode;

use crate::files::KeyStore;
use gitmouth_core::transport::hostkey::{HostKey, HostKeys};

use crate::Shared;

/// Reads the environment and `./.env`, parses the command line (printing
/// help, version or errors and exiting as clap does), and starts logging.
pub fn settings(bin_name: &'static str) -> Settings {
    let sources = SOURCES.get_or_init(|| Sources::from_process(bin_name));
    let settings = match sources.parse() {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    if settings.print_config {
        // Validated in full first: --print-config is a configuration check too.
        print!(
            "{}",
            crate::config::render_config(bin_name, &settings, &sources.env().unwrap_or_default())
        );
        std::process::exit(0);
    }
    init_logging(&settings.log, settings.log_json);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let data_dir =
        std::path::absolute(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        mode = %match settings.mode {
            ModeSettings::Standalone => "standalone",
            ModeSettings::Api(_) => "api",
        },
        data_dir = %data_dir.display(),
        config = %settings.config_file.as_deref().map_or("none".into(), |p| p.display().to_string()),
        "starting"
    );
    let names = |names: Vec<&'static str>| names.join(",");
    tracing::info!(
        kex = %names(settings.kex.iter().map(|a| a.name()).collect()),
        ciphers = %names(settings.ciphers.iter().map(|a| a.name()).collect()),
        macs = %names(settings.macs.iter().map(|a| a.name()).collect()),
        legacy = settings.legacy_algorithms,
        "algorithms offered"
    );
    if settings.proxy.mode != gitmouth_core::proxy::ProxyMode::Off {
        let trusted: Vec<String> = settings
            .proxy
            .trusted
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(
            mode = settings.proxy.mode.name(),
            trusted = %trusted.join(","),
            header_timeout = settings.proxy.timeout.as_secs(),
            "PROXY protocol"
        );
    }
    settings
}

/// Reads the host keys in service and the retiring ones (the default key
/// is generated when missing, as the core decides), refuses a key given
/// twice, and logs each key's file, type, fingerprint and use: whether it
/// signs key exchanges, is only announced, or is retiring.
pub fn load_host_keys(settings: &Settings) -> Result<HostKeys, String> {
    let in_service = read_host_keys(&settings.host_keys)?;
    let retiring = read_host_keys(&settings.host_keys_retiring)?;
    let paths: Vec<&std::path::Path> = settings
        .host_keys
        .iter()
        .chain(&settings.host_keys_retiring)
        .map(|source| match source {
            HostKeySource::Given(p) | HostKeySource::Default(p) => p.as_path(),
        })
        .collect();
    let keys = HostKeys::new(in_service, retiring).map_err(|dup| {
        let name = |i: usize| {
            paths
                .get(i)
                .map_or_else(String::new, |p| p.display().to_string())
        };
        let (first, again) = (name(dup.first), name(dup.again));
        let what = if first == again {
            format!("host key {first} is given twice")
        } else {
            format!("host key {again} is the same key as {first}")
        };
        format!("{what}: give each key once (a key being retired goes in --host-key-retiring only)")
    })?;
    for ((key, role), path) in keys.uses().into_iter().zip(&paths) {
        tracing::info!(
            path = %path.display(),
            key_type = %key.key_type(),
            fingerprint = %key.fingerprint_sha256(),
            role = role.describe(),
            "host key"
        );
    }
    Ok(keys)
}

/// What the configuration is read from: the command line and the process
/// environment, fixed for the life of the process, and `./.env` and the
/// configuration file, read again on each [`Sources::parse`] (SIGHUP).
#[derive(Clone)]
pub struct Sources {
    bin_name: &'static str,
    args: Vec<std::ffi::OsString>,
    process_env: Vec<(String, String)>,
    host_name: String,
}

impl std::fmt::Debug for Sources {
    // The environment may hold secrets: not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("bin_name", &self.bin_name)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// This process's arguments and environment.
    pub fn from_process(bin_name: &'static str) -> Self {
        Self {
            bin_name,
            args: std::env::args_os().collect(),
            process_env: std::env::vars().collect(),
            host_name: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// The environment over `./.env` as it is now.
    pub fn env(&self) -> Result<Env, String> {
        let dotenv = match std::fs::read_to_string(".env") {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read ./.env: {e}")),
        };
        Env::new(self.process_env.clone(), dotenv.as_deref())
    }

    /// The settings as the sources say now. Any error is clap's (printed
    /// and exited with by the caller at start).
    pub fn parse(&self) -> Result<Settings, clap::Error> {
        let refuse = |msg: String| {
            crate::config::command(self.bin_name)
                .error(clap::error::ErrorKind::ValueValidation, msg)
        };
        let env = self.env().map_err(refuse)?;
        let path = crate::config::config_file(self.bin_name, self.args.clone(), &env)?;
        let text = match &path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                refuse(format!(
                    "cannot read the configuration file {}: {e}",
                    p.display()
                ))
            })?),
            None => None,
        };
        let file = path.as_deref().zip(text.as_deref());
        crate::config::parse_with_file(
            self.bin_name,
            self.args.clone(),
            &env,
            file,
            &self.host_name,
        )
    }
}

/// This process's sources, kept for SIGHUP ([`reload`]).
static SOURCES: std::sync::OnceLock<Sources> = std::sync::OnceLock::new();

/// Names of the settings whose values differ between `old` and `new`.
fn changed(old: &Settings, new: &Settings) -> Vec<String> {
    let value = |s: &Settings, long: &str| {
        s.origins
            .iter()
            .find(|o| o.long == long)
            .map(|o| o.values.clone())
    };
    let mut names: Vec<String> = old
        .origins
        .iter()
        .chain(&new.origins)
        .map(|o| o.long.clone())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|long| value(old, long) != value(new, long))
        .collect()
}

/// SIGHUP: reads the configuration file and `./.env` again and applies
/// what can change live to new connections (limits, time limits,
/// algorithm lists, admission, the log filter, the authorized keys file,
/// which is re-read either way); what cannot (the listen address, data
/// directory, host keys, mode and API-mode variables) keeps its running
/// value and is logged as needing a restart. A configuration that does not
/// parse changes nothing (and is logged). `current` becomes what runs.
pub fn reload(shared: &crate::Shared, current: &mut Settings) {
    let Some(sources) = SOURCES.get() else {
        return;
    };
    let mut new = match sources.parse() {
        Ok(s) => s,
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            tracing::error!(error = %first.strip_prefix("error: ").unwrap_or(first), "SIGHUP: the configuration is refused; the running one stays");
            return;
        }
    };
    if let Err(e) = check_authorized_keys(&new) {
        tracing::error!(error = %e, "SIGHUP: the configuration is refused; the running one stays");
        return;
    }
    if matches!(new.mode, ModeSettings::Standalone)
        && new.repo_format != current.repo_format
        && let Err(e) = check_git(&new)
    {
        tracing::error!(error = %e, "SIGHUP: the configuration is refused; the running one stays");
        return;
    }
    let restart = [
        ("listen", new.listen != current.listen),
        ("data-dir", new.data_dir != current.data_dir),
        ("host-key", new.host_keys != current.host_keys),
        (
            "host-key-retiring",
            new.host_keys_retiring != current.host_keys_retiring,
        ),
        // The listener's: read before a connection is admitted.
        ("proxy-protocol", new.proxy != current.proxy),
        ("metrics", new.metrics != current.metrics),
        ("log-format", new.log_json != current.log_json),
        // The lock service's connection is made at start.
        ("push-lock", new.database != current.database),
        (
            "mode",
            std::mem::discriminant(&new.mode) != std::mem::discriminant(&current.mode),
        ),
        (
            "API-mode variables",
            match (&new.mode, &current.mode) {
                (ModeSettings::Api(a), ModeSettings::Api(b)) => {
                    a.api.base_url() != b.api.base_url()
                        || *a.api.key != *b.api.key
                        || a.rendezvous_port != b.rendezvous_port
                        || a.api_tls != b.api_tls
                        || a.dyno_tls != b.dyno_tls
                }
                _ => false,
            },
        ),
    ];
    for (setting, differs) in restart {
        if differs {
            tracing::warn!(
                setting = %setting,
                "SIGHUP: changed, but needs a restart: the running value stays until then"
            );
        }
    }
    let changed = changed(current, &new);
    // What needs a restart keeps running as it is; API timeouts are
    // limits, and change.
    new.listen = current.listen;
    new.data_dir = current.data_dir.clone();
    new.host_keys = current.host_keys.clone();
    new.host_keys_retiring = current.host_keys_retiring.clone();
    new.proxy = current.proxy.clone();
    new.metrics = current.metrics;
    new.log_json = current.log_json;
    new.database = current.database.clone();
    let timeouts = match &new.mode {
        ModeSettings::Api(a) => Some((a.api.timeout, a.api.provision_timeout)),
        ModeSettings::Standalone => None,
    };
    new.mode = current.mode.clone();
    if let (ModeSettings::Api(a), Some((timeout, provision))) = (&mut new.mode, timeouts) {
        a.api.timeout = timeout;
        a.api.provision_timeout = provision;
    }
    let running = shared.config();
    let mut config = crate::config::server_config(&new, Vec::new().into(), core_mode(&new));
    config.host_keys = running.host_keys.clone();
    shared.set_config(config);
    shared.admission(|a| a.set_config(new.admission.clone()));
    shared.command_slots.set_max(new.max_commands as usize);
    if let Err(e) = set_log_filter(&new.log) {
        tracing::warn!(error = %e, "SIGHUP: cannot change the log filter");
    }
    tracing::info!(changed = %changed.join(","), "SIGHUP: configuration reloaded");
    if let Some(store) = &shared.keys {
        if store.access_path() != new.access
            && let Err(e) = store.load_access(new.access.clone())
        {
            tracing::error!(error = %e, "SIGHUP: the access file is refused; the last good rules stay");
        }
        if store.path() == new.authorized_keys {
            store.reload();
        } else {
            store.set_path(new.authorized_keys.clone());
        }
        store.set_cert_paths(new.trusted_user_ca_keys.clone(), new.revoked_keys.clone());
    }
    *current = new;
}

/// The core's mode for `settings`.
fn core_mode(settings: &Settings) -> Mode {
    match &settings.mode {
        ModeSettings::Standalone => Mode::Standalone {
            repos: settings.data_dir.join("repos"),
        },
        ModeSettings::Api(api) => Mode::Api {
            api: api.api.clone(),
            rendezvous_port: api.rendezvous_port,
        },
    }
}

/// Changes the log filter of a running server (SIGHUP).
static LOG_FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

fn init_logging(filter: &str, json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new(filter));
    let _ = LOG_FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        // One JSON object per line: the event's fields at the top level,
        // the connection's span (session, peer) under "span".
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(crate::logfmt::PlainFields)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init();
    }
}

/// Replaces the log filter (SIGHUP); an error if logging was not started
/// here.
pub fn set_log_filter(filter: &str) -> Result<(), String> {
    let handle = LOG_FILTER.get().ok_or("logging not started")?;
    handle
        .reload(tracing_subscriber::EnvFilter::new(filter))
        .map_err(|e| e.to_string())
}

/// Reads each host key, generating the default one when it is missing, as
/// the core decides.
fn read_host_keys(sources: &[HostKeySource]) -> Result<Vec<HostKey>, String> {
    let mut keys = Vec::new();
    for source in sources {
        let path = match source {
            HostKeySource::Given(p) | HostKeySource::Default(p) => p,
        };
        check_key_mode(path)?;
        let read = std::fs::read(path).map_err(|e| e.kind());
        let key = match host_key_step(source, read, crate::seed())? {
            HostKeyStep::Loaded(key) => key,
            HostKeyStep::Create {
                key,
                path,
                contents,
            } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create host key {}: {e}", path.display()))?;
                file.write_all(contents.as_bytes())
                    .map_err(|e| format!("cannot write host key {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new host key");
                key
            }
        };
        keys.push(key);
    }
    Ok(keys)
}

/// The checks of [`prepare`] that need no listener, made before the
/// runtime binds one: the authorized keys file named, each host key's
/// mode and contents (a missing default key is fine: it is generated
/// later).
pub fn preflight(settings: &Settings) -> Result<(), String> {
    if matches!(settings.mode, ModeSettings::Standalone) {
        check_authorized_keys(settings)?;
        if let Some(path) = &settings.access {
            crate::files::read_access(path)?;
        }
        check_git(settings)?;
    }
    for source in settings
        .host_keys
        .iter()
        .chain(&settings.host_keys_retiring)
    {
        let path = match source {
            HostKeySource::Given(p) | HostKeySource::Default(p) => p,
        };
        check_key_mode(path)?;
        let read = std::fs::read(path).map_err(|e| e.kind());
        host_key_step(source, read, crate::seed())?;
    }
    Ok(())
}

/// Runs `git --version` as git commands run (the server's `PATH`, which
/// decides which git runs every command; the same minimal environment) and
/// refuses one too old to create repositories in the formats
/// configured (`--default-ref-format reftable` needs git 2.45), naming the
/// setting and the version found.
fn check_git(settings: &Settings) -> Result<(), String> {
    let version = crate::process::git_version();
    match &version {
        Ok(v) => tracing::debug!(version = %v, "git"),
        Err(why) => {
            tracing::warn!(error = %why, "cannot run git --version: pushes and clones need git in the PATH")
        }
    }
    gitmouth_core::app::repo_format::check_git(
        settings.repo_format,
        version.as_deref().map_err(String::as_str),
    )
    .map(|()| {
        let f = settings.repo_format;
        tracing::info!(
            object_format = f.objects.name(),
            ref_format = f.refs.name(),
            "repositories a push creates"
        );
    })
}

/// Refuses a host key that anyone but its owner may read or write, as
/// sshd does ("UNPROTECTED PRIVATE KEY FILE"); a missing one is for
/// [`host_key_step`] to judge.
fn check_key_mode(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "host key {}: permissions {mode:04o} are too open: a private key must be accessible by its owner only (chmod 600 {})",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Refuses an `--authorized-keys` that was named explicitly and is missing
/// or not a file (the default path may be missing: the log says where to
/// put keys).
fn check_authorized_keys(settings: &Settings) -> Result<(), String> {
    if !settings.authorized_keys_explicit {
        return Ok(());
    }
    let path = &settings.authorized_keys;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "--authorized-keys {}: not a file (an OpenSSH authorized_keys file or a .pub file)",
            path.display()
        )),
        Err(e) => Err(format!("--authorized-keys {}: {e}", path.display())),
    }
}

/// Descriptors a connection holds while its command runs: its socket and
/// the three pipes to git (or the socket and one TLS connection to a dyno).
const FDS_PER_CONNECTION: u64 = 4;

/// Descriptors kept for everything else: the listener, the event loop's,
/// standard streams, the log, files being read, a `git init` in progress.
const FDS_RESERVED: u64 = 64;

/// Raises the soft limit on open files to the hard limit (the default soft
/// limit, 1024 on most Linux systems, would cap a server at about 240
/// connections), and says in the log when even that cannot hold
/// `--max-connections` connections with their git pipes, plus the startup
/// queue's sockets. Returns the limit in force.
pub fn raise_open_file_limit(admission: &gitmouth_core::admission::AdmissionConfig) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let mut limit = current;
    if current != maximum {
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: maximum,
                maximum,
            },
        ) {
            Ok(()) => limit = maximum,
            Err(e) => {
                tracing::warn!(soft = ?current, hard = ?maximum, error = %e, "cannot raise the open-file limit");
            }
        }
    }
    // `None` is RLIM_INFINITY.
    let limit = limit.unwrap_or(u64::MAX);
    let needed = FDS_RESERVED
        + FDS_PER_CONNECTION * u64::from(admission.max_connections)
        + u64::from(admission.queue);
    if limit < needed {
        let connections =
            limit.saturating_sub(FDS_RESERVED + u64::from(admission.queue)) / FDS_PER_CONNECTION;
        tracing::warn!(
            open_file_limit = limit,
            needed,
            max_connections = admission.max_connections,
            startup_queue = admission.queue,
            fds_per_connection = FDS_PER_CONNECTION,
            connections_that_fit = connections,
            "the open-file limit caps --max-connections: fewer connections with their git \
             processes fit than it allows; raise the hard limit (ulimit -Hn, systemd's \
             LimitNOFILE=) or lower --max-connections"
        );
    } else {
        tracing::debug!(open_file_limit = limit, needed, "open-file limit");
    }
    limit
}

/// Logs which git standalone mode runs: the `PATH` git commands get
/// (which decides it) and what `git --version` says there.
fn log_git() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = path.to_string_lossy();
    match crate::process::git_version() {
        Ok(version) => tracing::info!(%version, %path, "using git"),
        Err(why) => tracing::error!(
            error = %why,
            %path,
            "cannot run git: git commands will fail until git is on the server's PATH"
        ),
    }
}

/// Everything a server needs before it listens: the shared state, and (in
/// standalone mode) the key store the runtime keeps current with
/// [`crate::files::watch_authorized_keys`].
pub fn prepare(settings: &Settings) -> Result<(Shared, Option<Arc<KeyStore>>), String> {
    // Before a host key may be generated: a start refused leaves nothing.
    check_authorized_keys(settings)?;
    let host_keys = load_host_keys(settings)?;
    raise_open_file_limit(&settings.admission);
    if let Some(wanted) = &settings.host_key_algs
        && !wanted
            .iter()
            .any(|alg| host_keys.algorithms().contains(alg))
    {
        let names: Vec<&str> = wanted.iter().map(|a| a.name()).collect();
        return Err(format!(
            "--host-key-algorithms: no host key can sign with any of {}",
            names.join(",")
        ));
    }
    let (mode, store, http, dyno_tls) = match &settings.mode {
        ModeSettings::Standalone => {
            let store = Arc::new(KeyStore::new(
                crate::files::load_authorized_keys(&settings.authorized_keys),
                settings.authorized_keys.clone(),
            ));
            store.load_cert_files(
                settings.trusted_user_ca_keys.clone(),
                settings.revoked_keys.clone(),
            )?;
            // A file that does not parse stops the start, naming the line.
            store.load_access(settings.access.clone())?;
            if settings.access.is_none() {
                tracing::info!(
                    "no --access file: single-team mode, every key may read, write and create every repository"
                );
            }
            log_git();
            let repos = settings.data_dir.join("repos");
            // A crash may have left a push-to-create's temporary
            // repository behind; one younger than an hour may be another
            // instance's, at work in a shared data directory.
            crate::files::remove_stale_temporary_repositories(
                &repos,
                crate::files::STALE_INIT_AGE,
                std::time::SystemTime::now(),
            );
            (core_mode(settings), Some(store), None, None)
        }
        ModeSettings::Api(api) => {
            tracing::info!(api_server = %api.api.base_url(), rendezvous_port = api.rendezvous_port, "API mode");
            let http = crate::http::Client::new(&api.api_tls)?;
            let dyno_tls = crate::dyno::Connector::new(&api.dyno_tls)?;
            (core_mode(settings), None, Some(http), Some(dyno_tls))
        }
    };
    let config = std::sync::RwLock::new(Arc::new(crate::config::server_config(
        settings, host_keys, mode,
    )));
    let admission = std::sync::Mutex::new(gitmouth_core::admission::Admission::new(
        settings.admission.clone(),
        crate::seed(),
    ));
    Ok((
        Shared {
            config,
            http,
            dyno_tls,
            keys: store.clone(),
            push_locks: Default::default(),
            command_slots: Arc::new(crate::slots::CommandSlots::new(
                settings.max_commands as usize,
            )),
            admission,
            mailboxes: Default::default(),
            next_conn: Default::default(),
            stop_level: Default::default(),
            shutdown: event_listener::Event::new(),
            active: Default::default(),
            metrics: Default::default(),
            proxy: settings.proxy.clone(),
            refusals: Default::default(),
            shared_locks: None,
            elsewhere: None,
        },
        store,
    ))
}

/// Connects to the database shared with other instances and brings its
/// schema up to date: the push-lock service (to be run) with its handle
/// and first connection. An error names the URL without its password.
pub async fn connect_database(
    db: &crate::database::DatabaseSettings,
) -> Result<
    (
        crate::shared_lock::LockService,
        crate::shared_lock::SharedLocks,
        (tokio_postgres::Client, crate::database::Connection),
    ),
    String,
> {
    let (client, mut connection) = db.connect("push-lock").await?;
    // The connection is polled while the schema is prepared over it.
    let ended = async {
        (&mut connection).await;
        Err(format!("{}: the connection ended", db.shown()))
    };
    let version = futures_lite::future::or(ended, crate::database::migrate(&client, db)).await?;
    tracing::info!(
        database = %db.shown(),
        schema = %db.schema(),
        version,
        instance = %db.instance(),
        "push lock, penalties and per-user limits shared through PostgreSQL"
    );
    let (service, handle) = crate::shared_lock::LockService::new(db.clone());
    Ok((service, handle, (client, connection)))
}

/// SIGTERM and SIGINT, watched from start-up on: the first drains the
/// server, a second stops it at once.
pub struct StopSignals(async_signal::Signals);

impl StopSignals {
    /// Starts watching; an error if signals cannot be watched.
    pub fn new() -> Result<Self, String> {
        use async_signal::{Signal, Signals};
        Signals::new([Signal::Term, Signal::Int])
            .map(StopSignals)
            .map_err(|e| format!("cannot watch SIGTERM and SIGINT: {e}"))
    }

    /// The next signal (logged).
    pub async fn next(&mut self) {
        use futures_lite::StreamExt;
        let signal = match self.0.next().await {
            Some(Ok(async_signal::Signal::Term)) => "SIGTERM",
            Some(Ok(async_signal::Signal::Int)) => "SIGINT",
            _ => "a signal",
        };
        tracing::info!(signal, "stopping");
    }
}

/// A binary's whole `main`: settings and logging, then `run`; a failure is
/// logged and ends the process with status 1.
pub fn main(bin_name: &'static str, run: fn(Settings) -> Result<(), String>) {
    let settings = settings(bin_name);
    // The runtime binds its listener before it prepares the server: what
    // can be refused is refused first.
    if let Err(e) = preflight(&settings) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
    if let Err(e) = run(settings) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}
