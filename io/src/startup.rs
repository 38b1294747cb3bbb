//! Start-up: the command line and environment, logging, host keys, the
//! shared state of every connection.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use crate::config::{Env, HostKeySource, HostKeyStep, ModeSettings, Settings, host_key_step};
use gitmouth_core::server::Mode;

use crate::files::KeyStore;
use gitmouth_core::transport::hostkey::HostKey;

use crate::Shared;

/// Reads the environment and `./.env`, parses the command line (printing
/// help, version or errors and exiting as clap does), and starts logging.
pub fn settings(bin_name: &'static str) -> Settings {
    let dotenv = std::fs::read_to_string(".env").ok();
    let (env, warnings) = Env::new(std::env::vars(), dotenv.as_deref());
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let settings = match crate::config::parse(bin_name, std::env::args_os(), &env, &host) {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log.clone());
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    for w in warnings.iter().chain(&settings.warnings) {
        tracing::warn!("{w}");
    }
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

/// Reads each host key, generating the default one when it is missing, as
/// the core decides; logs each key's fingerprint.
pub fn load_host_keys(sources: &[HostKeySource]) -> Result<Vec<HostKey>, String> {
    let mut keys = Vec::new();
    for source in sources {
        let path = match source {
            HostKeySource::Given(p) | HostKeySource::Default(p) => p,
        };
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
        tracing::info!(path = %path.display(), fingerprint = %key.fingerprint_sha256(), "host key");
        keys.push(key);
    }
    Ok(keys)
}

/// Everything a server needs before it listens: the shared state, and (in
/// standalone mode) the key store the runtime keeps current with
/// [`crate::files::watch_authorized_keys`].
pub fn prepare(settings: &Settings) -> Result<(Shared, Option<Arc<KeyStore>>), String> {
    let host_keys = load_host_keys(&settings.host_keys)?;
    if let Some(wanted) = &settings.host_key_algs
        && !wanted
            .iter()
            .any(|alg| host_keys.iter().any(|k| k.algorithms().contains(alg)))
    {
        let names: Vec<&str> = wanted.iter().map(|a| a.name()).collect();
        return Err(format!(
            "--host-key-algorithms: no host key can sign with any of {}",
            names.join(",")
        ));
    }
    let (mode, store, http, dyno_tls) = match &settings.mode {
        ModeSettings::Standalone => {
            let store = Arc::new(KeyStore::new(crate::files::load_authorized_keys(
                &settings.authorized_keys,
            )));
            let repos = settings.data_dir.join("repos");
            // A crash may have left a push-to-create's temporary
            // repository behind; one younger than an hour may be another
            // instance's, at work in a shared data directory.
            crate::files::remove_stale_temporary_repositories(
                &repos,
                crate::files::STALE_INIT_AGE,
                std::time::SystemTime::now(),
            );
            let mode = Mode::Standalone { repos };
            (mode, Some(store), None, None)
        }
        ModeSettings::Api(api) => {
            tracing::info!(api_server = %api.api.base_url(), rendezvous_port = api.rendezvous_port, "API mode");
            let http = crate::http::Client::new(&api.api_tls)?;
            let dyno_tls = crate::dyno::Connector::new(&api.dyno_tls)?;
            let mode = Mode::Api {
                api: api.api.clone(),
                rendezvous_port: api.rendezvous_port,
            };
            (mode, None, Some(http), Some(dyno_tls))
        }
    };
    let config = Arc::new(crate::config::server_config(settings, host_keys, mode));
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
            proxy: settings.proxy.clone(),
        },
        store,
    ))
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
        let signal = self.0.next().await;
        tracing::info!(?signal, "stopping");
    }
}

/// A binary's whole `main`: settings and logging, then `run`; a failure is
/// logged and ends the process with status 1.
pub fn main(bin_name: &'static str, run: fn(Settings) -> Result<(), String>) {
    let settings = settings(bin_name);
    if let Err(e) = run(settings) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}
