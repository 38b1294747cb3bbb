//! Command line and environment: one definition for every runtime's binary.
//!
//! Pure: the runtime hands in the arguments, its environment and the text of
//! a `.env` file if one exists; this module decides what they mean. Clap
//! parses only the arguments it is given (its `env` feature is not used, so
//! it reads nothing by itself).

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gitmouth_core::app::messages::PublicHost;
use gitmouth_core::auth::pubkey::UserKeyAlg;
pub use gitmouth_core::setup::{HostKeySource, HostKeyStep, host_key_step};
use gitmouth_core::transport::cipher::{CipherAlg, MacAlg};
use gitmouth_core::transport::hostkey::HostKeyAlg;
use gitmouth_core::transport::kex::KexAlg;

/// Variables visible to the server: the process environment over a `.env`
/// file (a variable already in the environment wins, as the original's
/// foreman setup behaved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// Merges the process environment with the text of a `.env` file.
    /// Malformed `.env` lines are returned as warnings for the log.
    pub fn new(
        process: impl IntoIterator<Item = (String, String)>,
        dotenv: Option<&str>,
    ) -> (Self, Vec<String>) {
        let mut vars = BTreeMap::new();
        let mut warnings = Vec::new();
        if let Some(text) = dotenv {
            for item in dotenvy::from_read_iter(text.as_bytes()) {
                match item {
                    Ok((k, v)) => {
                        vars.insert(k, v);
                    }
                    Err(e) => warnings.push(format!(".env: {e}")),
                }
            }
        }
        vars.extend(process);
        (Self(vars), warnings)
    }

    /// A variable's value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A variable's value if set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// The command line, shared by `gitmouth` and `gitmouth-async-std`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "An SSH server for git: git push and git clone over SSH, standalone or in front of an Openruko platform.",
    long_about = None
)]
pub struct Cli {
    /// Address and port to listen on [default: 0.0.0.0:2222, or 0.0.0.0:$GITMOUTH_PORT]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for the default host key, authorized_keys and repositories
    #[arg(long, value_name = "DIR", default_value = "./gitmouth-data")]
    pub data_dir: PathBuf,

    /// Host private key: ed25519, ECDSA (P-256/384/521, for JSch 0.1.x) or
    /// RSA of 2048-4096 bits, in OpenSSH format, PEM (PKCS#1, SEC1) or
    /// PKCS#8; repeat to offer several (an ECDSA key beside the ed25519 one). Default: $GITMOUTH_PRIVATE_KEY, else
    /// <data-dir>/ssh_host_ed25519_key, which is generated when missing. A
    /// key named here that does not exist is an error.
    #[arg(long = "host-key", value_name = "FILE")]
    pub host_keys: Vec<PathBuf>,

    /// OpenSSH authorized_keys file whose keys may push and clone (each
    /// key's comment is its user's name); a single .pub file works too.
    /// Re-read when it changes and on SIGHUP. [default: <data-dir>/authorized_keys]
    #[arg(long, value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,

    /// Host name users push to, with the port when it is not the one
    /// listened on (behind a load balancer: git.example.org:2222), shown in
    /// messages [default: this machine's host name]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub public_host: Option<String>,

    /// Seconds from connect to successful authentication
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub login_grace_time: u64,

    /// Seconds an authenticated connection may pass with nothing sent or
    /// received before it is ended (with a message to the user)
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub idle_timeout: u64,

    /// Seconds an authenticated connection may go with no channel open
    /// before it is closed (0: no limit; OpenSSH's UnusedConnectionTimeout)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub unused_connection_timeout: u64,

    /// Authenticated connections one user may hold at once (0: no limit):
    /// past it, a new connection is ended right after authentication,
    /// with a message saying so (not a failure: no penalty)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub per_user_max_connections: u32,

    /// Seconds an authenticated client may stay silent before the server
    /// probes it with a keepalive (0: never; OpenSSH's ClientAliveInterval)
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub keepalive_interval: u64,

    /// Unanswered keepalives after which the client is taken for dead and
    /// its connection closed (OpenSSH's ClientAliveCountMax)
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keepalive_count_max: u32,

    /// Seconds an authenticated connection may last in all
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    pub max_session_time: u64,

    /// On SIGTERM, stop accepting and give git commands in progress this
    /// many seconds to finish; then tell their users and stop them (a
    /// second SIGTERM or SIGINT stops at once)
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,

    /// Session channels one connection may have open at once (OpenSSH's
    /// MaxSessions): a ControlMaster or git-lfs multiplexes several; one
    /// past the limit is refused, the others go on
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,

    /// Git commands running at once in all, across connections (each is a
    /// git process or a dyno, or a push waiting for its lock; 0: no
    /// limit): one past it is told the server is busy and exits non-zero
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_commands: u32,

    /// Seconds a push waits, in turn, for another push to the same
    /// repository to finish, told every five seconds who holds the lock
    /// and since when, before it is refused (0: refused at once)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub push_lock_wait: u64,

    /// Authentication attempts allowed per connection
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_auth_tries: u32,

    /// Re-key after this many bytes in either direction (suffixes K, M, G)
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    pub rekey_limit: u64,

    /// Re-key after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub rekey_interval: u64,

    /// Key exchange methods, comma-separated, replacing the default; with a
    /// leading + appended to it, - removed from it (* and ? match), ^ put
    /// first (sshd's KexAlgorithms)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub kex_algorithms: Option<String>,

    /// Ciphers, as --kex-algorithms takes its list (sshd's Ciphers)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub ciphers: Option<String>,

    /// MACs used with the non-AEAD ciphers, as --kex-algorithms takes its
    /// list (sshd's MACs)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub macs: Option<String>,

    /// Host-key signature algorithms to offer, of those the host keys can
    /// sign with, as --kex-algorithms takes its list (sshd's
    /// HostKeyAlgorithms)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub host_key_algorithms: Option<String>,

    /// User-key algorithms accepted, as --kex-algorithms takes its list
    /// (sshd's PubkeyAcceptedAlgorithms)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub pubkey_accepted_algorithms: Option<String>,

    /// Also offer what old clients need and audits fault (JSch 0.1.x in
    /// JGit 4, old libssh2 and OpenSSH): ecdh-sha2-nistp256/384/521,
    /// diffie-hellman-group16-sha512 and -group14-sha256, and the
    /// encrypt-and-MAC hmac-sha2-256 and hmac-sha2-512; appended to the
    /// defaults that the list settings start from. Nothing with SHA-1
    #[arg(
        long,
        value_name = "yes|no",
        default_value = "no",
        num_args = 0..=1,
        default_missing_value = "yes",
        require_equals = true,
        value_parser = parse_yes_no
    )]
    pub legacy_algorithms: bool,

    /// Unauthenticated connections START:RATE:FULL: above START, new ones are
    /// dropped with probability RATE% rising to 100% at FULL (as OpenSSH's
    /// MaxStartups)
    #[arg(long, value_name = "START:RATE:FULL", default_value = "10:30:100", value_parser = parse_max_startups)]
    pub max_startups: (u32, u32, u32),

    /// Connections of any kind at once (each push holds a git process)
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_connections: u32,

    /// Unauthenticated connections in progress from one address (an IPv6
    /// /64); more wait, unread, in that address's queue
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub per_source_max_startups: u32,

    /// Connections from one address that may wait for its startups in
    /// progress to fall under --per-source-max-startups (bounded by the
    /// login grace time from accept); past it, they are refused
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub per_source_startup_queue: u32,

    /// Connections that may wait where --max-startups would drop them, let
    /// in round robin by address once fewer than START are in progress
    /// (bounded by the login grace time from accept); past it, refused
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub startup_queue: u32,

    /// Refuse, for a while, addresses whose connections keep failing (5 s per
    /// failed login, 1 s per connection that never tried, 10 s per login
    /// grace time run out; refused from 15 s accumulated, at most 10 min)
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = parse_yes_no)]
    pub per_source_penalties: bool,

    /// Trusted network (ADDR or ADDR/PREFIX) that bypasses admission control:
    /// a health checker, your own tests; repeatable
    #[arg(long = "admission-exempt", value_name = "NET", value_parser = gitmouth_core::admission::Network::parse)]
    pub admission_exempt: Vec<gitmouth_core::admission::Network>,

    /// PROXY protocol (v1 and v2) on the SSH listener, for a load balancer
    /// in front: off (no header is read), optional (peers in
    /// --proxy-trusted may send one), required (every connection comes
    /// from a trusted peer with a header). The address a header carries is
    /// the one admission, penalties and logs see
    #[arg(long, value_name = "off|optional|required", default_value = "off",
          value_parser = gitmouth_core::proxy::ProxyMode::parse)]
    pub proxy_protocol: gitmouth_core::proxy::ProxyMode,

    /// Network (ADDR or ADDR/PREFIX) of a load balancer allowed to send a
    /// PROXY header; repeatable, no default (a header from any other peer
    /// ends its connection)
    #[arg(long = "proxy-trusted", value_name = "NET", value_parser = gitmouth_core::admission::Network::parse)]
    pub proxy_trusted: Vec<gitmouth_core::admission::Network>,

    /// Seconds a connection has to send its PROXY header before it is
    /// closed (optional mode: before it is served as the peer's own)
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub proxy_header_timeout: u64,

    /// standalone: keys from an authorized_keys file, git run locally; api:
    /// an Openruko platform's API server and dynos [default: api when
    /// APISERVER_KEY is set and not empty, in the environment or in ./.env;
    /// standalone otherwise]
    #[arg(long, value_name = "MODE", value_parser = ["standalone", "api"])]
    pub mode: Option<String>,

    /// API mode: seconds allowed for the key lookup and the access check
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub api_timeout: u64,

    /// API mode: seconds allowed for provisioning a build dyno
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub provision_timeout: u64,

    /// Log filter (tracing's syntax, e.g. "info" or "gitmouth=debug"); RUST_LOG wins when set
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

fn parse_max_startups(text: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [start, rate, full] = parts[..] else {
        return Err(format!("expected START:RATE:FULL, not {text:?}"));
    };
    let n = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("not a number: {s:?}"))
    };
    let (start, rate, full) = (n(start)?, n(rate)?, n(full)?);
    if start > full || rate > 100 || full == 0 {
        return Err(format!(
            "need START <= FULL, RATE <= 100, FULL > 0: {text:?}"
        ));
    }
    Ok((start, rate, full))
}

fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("expected yes or no, not {text:?}")),
    }
}

/// Parses `1024`, `64K`, `8M`, `1G` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    n.checked_mul(1 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("size out of range: {text:?}"))
}

/// The settings a runtime starts a server with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Host keys to load.
    pub host_keys: Vec<HostKeySource>,
    /// Login grace time.
    pub login_grace: Duration,
    /// Authentication attempts per connection.
    pub max_auth_tries: u32,
    /// Idle limit after authentication.
    pub idle_timeout: Duration,
    /// How long an authenticated connection may have no channel open.
    pub unused_timeout: Duration,
    /// Authenticated connections per user (zero: no limit).
    pub per_user_max_connections: u32,
    /// Silence after which a keepalive probes the client (zero: never).
    pub keepalive_interval: Duration,
    /// Unanswered keepalives after which the client is dead.
    pub keepalive_count_max: u32,
    /// Session channels open at once per connection.
    pub max_sessions: u32,
    /// Total limit after authentication.
    pub max_session: Duration,
    /// How long a drain waits for commands in progress.
    pub drain_timeout: Duration,
    /// Git commands running at once in all (zero: no limit).
    pub max_commands: u32,
    /// How long a push waits for another's push lock (zero: not at all).
    pub push_lock_wait: Duration,
    /// Re-key volume.
    pub rekey_limit: u64,
    /// Re-key interval.
    pub rekey_interval: Duration,
    /// Key exchange methods, in preference order.
    pub kex: Vec<KexAlg>,
    /// Ciphers, in preference order.
    pub ciphers: Vec<CipherAlg>,
    /// MACs, in preference order.
    pub macs: Vec<MacAlg>,
    /// Host-key algorithms to offer (`None`: all the keys can do).
    pub host_key_algs: Option<Vec<HostKeyAlg>>,
    /// User-key algorithms accepted.
    pub pubkey_algs: Vec<UserKeyAlg>,
    /// Whether `--legacy-algorithms` is on (logged at start).
    pub legacy_algorithms: bool,
    /// Log filter.
    pub log: String,
    /// The authorized_keys file (standalone mode).
    pub authorized_keys: PathBuf,
    /// Where users reach the server (host and port), shown in messages.
    pub public_host: PublicHost,
    /// Standalone or API mode, with API mode's settings.
    pub mode: ModeSettings,
    /// Things the operator should hear about at start.
    pub warnings: Vec<String>,
    /// Limits on unauthenticated connections.
    pub admission: gitmouth_core::admission::AdmissionConfig,
    /// PROXY protocol on the listener.
    pub proxy: gitmouth_core::proxy::ProxyPolicy,
}

/// Which backend, with its settings.
#[derive(Debug, Clone)]
pub enum ModeSettings {
    /// Keys from a file, git run locally.
    Standalone,
    /// An Openruko platform.
    Api(ApiSettings),
}

/// API mode's settings, from the original's environment variables.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The API server and our key to it.
    pub api: gitmouth_core::app::api::ApiServer,
    /// `DYNOHOST_RENDEZVOUS_PORT`.
    pub rendezvous_port: u16,
    /// How to verify the API server's certificate (https only).
    pub api_tls: TlsSettings,
    /// How to verify dyno hosts' certificates.
    pub dyno_tls: TlsSettings,
}

/// Certificate verification for one kind of peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Verify at all (`*_TLS_VERIFY=false` turns it off, as the original).
    pub verify: bool,
    /// PEM CA bundle to verify against; the system roots when absent.
    pub ca_file: Option<PathBuf>,
}

fn env_bool(env: &Env, name: &str, default: bool) -> Result<bool, String> {
    match env.non_empty(name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(format!("{name} must be true or false, not {other:?}")),
    }
}

fn env_port(env: &Env, name: &str, default: u16) -> Result<u16, String> {
    match env.non_empty(name) {
        None => Ok(default),
        Some(p) => p
            .parse()
            .map_err(|_| format!("{name} is not a port: {p:?}")),
    }
}

fn api_settings(cli: &Cli, env: &Env, warnings: &mut Vec<String>) -> Result<ApiSettings, String> {
    use gitmouth_core::app::api::{ApiServer, Scheme};
    let key = env
        .non_empty("APISERVER_KEY")
        .ok_or("API mode needs APISERVER_KEY (in the environment or in ./.env)")?;
    let protocol = env.non_empty("APISERVER_PROTOCOL").unwrap_or("https");
    let scheme = Scheme::parse(protocol)
        .ok_or_else(|| format!("APISERVER_PROTOCOL must be http or https, not {protocol:?}"))?;
    let host = env
        .non_empty("APISERVER_HOSTNAME")
        .unwrap_or("localhost")
        .to_owned();
    let port = env_port(env, "APISERVER_PORT", 5000)?;
    let rendezvous_port = env_port(env, "DYNOHOST_RENDEZVOUS_PORT", 4000)?;
    let tls = |verify_var: &str,
               ca_var: &str,
               warnings: &mut Vec<String>|
     -> Result<TlsSettings, String> {
        let verify = env_bool(env, verify_var, true)?;
        if !verify {
            warnings.push(format!(
                "{verify_var}=false: certificates are not verified, so anyone on the path can impersonate the peer"
            ));
        }
        Ok(TlsSettings {
            verify,
            ca_file: env.non_empty(ca_var).map(PathBuf::from),
        })
    };
    let api_tls = tls("APISERVER_TLS_VERIFY", "APISERVER_CA_FILE", warnings)?;
    let dyno_tls = tls("DYNOHOST_TLS_VERIFY", "DYNOHOST_CA_FILE", warnings)?;
    if scheme == Scheme::Http {
        warnings.push("APISERVER_PROTOCOL=http: API keys cross the network in the clear".into());
    }
    Ok(ApiSettings {
        api: ApiServer {
            scheme,
            host,
            port,
            key: zeroize::Zeroizing::new(key.to_owned()),
            timeout: Duration::from_secs(cli.api_timeout),
            provision_timeout: Duration::from_secs(cli.provision_timeout),
        },
        rendezvous_port,
        api_tls,
        dyno_tls,
    })
}

/// Parses a command line (`args` includes the program name) against `env`;
/// `host_name` is this machine's name, the default public host.
/// Errors are clap's, including `--help` and `--version`, which the runtime
/// prints and exits with (`err.exit()`).
pub fn parse(
    bin_name: &'static str,
    args: impl IntoIterator<Item = OsString>,
    env: &Env,
    host_name: &str,
) -> Result<Settings, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().name(bin_name).bin_name(bin_name);
    let matches = command.try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    settings(cli, env, host_name).map_err(|msg| {
        Cli::command()
            .name(bin_name)
            .error(clap::error::ErrorKind::ValueValidation, msg)
    })
}

fn settings(cli: Cli, env: &Env, host_name: &str) -> Result<Settings, String> {
    let listen = match cli.listen {
        Some(addr) => addr,
        None => {
            let port = match env.non_empty("GITMOUTH_PORT") {
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| format!("GITMOUTH_PORT is not a port: {p:?}"))?,
                None => 2222,
            };
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let mut warnings = Vec::new();
    let api_mode = match cli.mode.as_deref() {
        Some("api") => true,
        Some(_) => false,
        None => env.non_empty("APISERVER_KEY").is_some(),
    };
    let mode = if api_mode {
        ModeSettings::Api(api_settings(&cli, env, &mut warnings)?)
    } else {
        ModeSettings::Standalone
    };
    let host_keys = if !cli.host_keys.is_empty() {
        cli.host_keys
            .into_iter()
            .map(HostKeySource::Given)
            .collect()
    } else if let Some(path) = env.non_empty("GITMOUTH_PRIVATE_KEY") {
        vec![HostKeySource::Given(PathBuf::from(path))]
    } else if api_mode {
        // Where the original kept it, so users' known_hosts stay valid.
        vec![HostKeySource::Given(PathBuf::from("certs/server.key"))]
    } else {
        vec![HostKeySource::Default(
            cli.data_dir.join("ssh_host_ed25519_key"),
        )]
    };
    let authorized_keys = cli
        .authorized_keys
        .unwrap_or_else(|| cli.data_dir.join("authorized_keys"));
    // Without a port, users reach the port listened on (behind a balancer
    // that maps ports, --public-host names the balancer's).
    let public_host = match cli.public_host.as_deref() {
        Some(text) => PublicHost::parse(text, listen.port())?,
        None => PublicHost {
            host: host_name.trim().to_owned(),
            port: listen.port(),
        },
    };
    let (start, rate, full) = cli.max_startups;
    let admission = gitmouth_core::admission::AdmissionConfig {
        start,
        rate,
        full,
        per_source: cli.per_source_max_startups,
        per_source_queue: cli.per_source_startup_queue,
        queue: cli.startup_queue,
        max_connections: cli.max_connections.max(1),
        penalties: cli.per_source_penalties,
        exempt: cli.admission_exempt.clone(),
        ..Default::default()
    };
    let proxy = gitmouth_core::proxy::ProxyPolicy {
        mode: cli.proxy_protocol,
        trusted: cli.proxy_trusted.clone(),
        timeout: Duration::from_secs(cli.proxy_header_timeout),
    };
    proxy.validate()?;
    Ok(Settings {
        admission,
        proxy,
        mode,
        warnings,
        authorized_keys,
        public_host,
        listen,
        data_dir: cli.data_dir,
        host_keys,
        login_grace: Duration::from_secs(cli.login_grace_time),
        max_auth_tries: cli.max_auth_tries,
        idle_timeout: Duration::from_secs(cli.idle_timeout.max(1)),
        unused_timeout: Duration::from_secs(cli.unused_connection_timeout),
        per_user_max_connections: cli.per_user_max_connections,
        keepalive_interval: Duration::from_secs(cli.keepalive_interval),
        keepalive_count_max: cli.keepalive_count_max,
        max_sessions: cli.max_sessions,
        max_session: Duration::from_secs(cli.max_session_time.max(1)),
        drain_timeout: Duration::from_secs(cli.drain_timeout),
        max_commands: cli.max_commands,
        push_lock_wait: Duration::from_secs(cli.push_lock_wait),
        kex: algorithm_list(
            "--kex-algorithms",
            cli.kex_algorithms.as_deref(),
            &with_legacy(&KexAlg::DEFAULT, &KexAlg::LEGACY, cli.legacy_algorithms),
            &KexAlg::ALL,
            KexAlg::name,
        )?,
        ciphers: algorithm_list(
            "--ciphers",
            cli.ciphers.as_deref(),
            &CipherAlg::ALL,
            &CipherAlg::ALL,
            CipherAlg::name,
        )?,
        macs: algorithm_list(
            "--macs",
            cli.macs.as_deref(),
            &with_legacy(&MacAlg::DEFAULT, &MacAlg::LEGACY, cli.legacy_algorithms),
            &MacAlg::ALL,
            MacAlg::name,
        )?,
        host_key_algs: cli
            .host_key_algorithms
            .as_deref()
            .map(|spec| {
                algorithm_list(
                    "--host-key-algorithms",
                    Some(spec),
                    &HostKeyAlg::ALL,
                    &HostKeyAlg::ALL,
                    HostKeyAlg::name,
                )
            })
            .transpose()?,
        pubkey_algs: algorithm_list(
            "--pubkey-accepted-algorithms",
            cli.pubkey_accepted_algorithms.as_deref(),
            &UserKeyAlg::ALL,
            &UserKeyAlg::ALL,
            UserKeyAlg::name,
        )?,
        legacy_algorithms: cli.legacy_algorithms,
        rekey_limit: cli.rekey_limit,
        rekey_interval: Duration::from_secs(cli.rekey_interval),
        log: cli.log,
    })
}

/// The core's configuration for these settings, around the loaded host
/// An algorithm list setting applied to `default` as sshd applies its
/// own (the default itself when not given); any of `known` may be named. A
/// refusal names the setting.
fn algorithm_list<T: Copy>(
    setting: &str,
    spec: Option<&str>,
    default: &[T],
    known: &[T],
    name: fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let Some(spec) = spec else {
        return Ok(default.to_vec());
    };
    let default_names: Vec<&'static str> = default.iter().map(|&a| name(a)).collect();
    let known_names: Vec<&'static str> = known.iter().map(|&a| name(a)).collect();
    let names = gitmouth_core::algorithms::apply(spec, &default_names, &known_names)
        .map_err(|e| format!("{setting} {spec:?}: {e}"))?;
    Ok(names
        .into_iter()
        .filter_map(|n| known.iter().copied().find(|&a| name(a) == n))
        .collect())
}

/// `default`, followed by `legacy` when `--legacy-algorithms` is on.
fn with_legacy<T: Copy>(default: &[T], legacy: &[T], on: bool) -> Vec<T> {
    let mut list = default.to_vec();
    if on {
        list.extend_from_slice(legacy);
    }
    list
}

/// keys and the chosen mode.
pub fn server_config(
    settings: &Settings,
    host_keys: Vec<gitmouth_core::transport::hostkey::HostKey>,
    mode: gitmouth_core::server::Mode,
) -> gitmouth_core::server::ServerConfig {
    use gitmouth_core::transport::TransportConfig;
    let transport = TransportConfig {
        kex: settings.kex.clone(),
        ciphers: settings.ciphers.clone(),
        macs: settings.macs.clone(),
        host_key_algs: settings.host_key_algs.clone(),
        server_sig_algs: settings.pubkey_algs.iter().map(|a| a.name()).collect(),
        rekey_bytes: settings.rekey_limit,
        rekey_interval: settings.rekey_interval,
        ..TransportConfig::default()
    };
    gitmouth_core::server::ServerConfig {
        transport: std::sync::Arc::new(transport),
        host_keys: host_keys.into(),
        login_grace: settings.login_grace,
        max_auth_attempts: settings.max_auth_tries,
        pubkey_algs: settings.pubkey_algs.clone(),
        public_host: settings.public_host.clone(),
        kill_grace: Duration::from_secs(5),
        drain_timeout: settings.drain_timeout,
        idle_timeout: settings.idle_timeout,
        unused_timeout: settings.unused_timeout,
        per_user_max_connections: settings.per_user_max_connections,
        max_session: settings.max_session,
        keepalive_interval: settings.keepalive_interval,
        keepalive_count_max: settings.keepalive_count_max,
        max_sessions: settings.max_sessions,
        push_lock_wait: settings.push_lock_wait,
        mode,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("gitmouth")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn env(pairs: &[(&str, &str)], dotenv: Option<&str>) -> Env {
        let process = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Env::new(process, dotenv).0
    }

    #[test]
    fn defaults() {
        let s = parse("gitmouth", args(&[]), &Env::default(), "box").unwrap();
        assert_eq!(s.listen, "0.0.0.0:2222".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./gitmouth-data"));
        assert_eq!(
            s.host_keys,
            [HostKeySource::Default(PathBuf::from(
                "./gitmouth-data/ssh_host_ed25519_key"
            ))]
        );
        assert_eq!(s.rekey_limit, 1 << 30);
    }

    #[test]
    fn proxy_protocol_settings() {
        use gitmouth_core::proxy::ProxyMode;
        let s = parse("gitmouth", args(&[]), &Env::default(), "box").unwrap();
        assert_eq!(s.proxy.mode, ProxyMode::Off);
        assert!(s.proxy.trusted.is_empty());
        assert_eq!(s.proxy.timeout, Duration::from_secs(5));
        let s = parse(
            "gitmouth",
            args(&[
                "--proxy-protocol",
                "required",
                "--proxy-trusted",
                "10.0.0.0/8",
                "--proxy-trusted",
                "192.0.2.1",
                "--proxy-header-timeout",
                "3",
            ]),
            &Env::default(),
            "box",
        )
        .unwrap();
        assert_eq!(s.proxy.mode, ProxyMode::Required);
        assert_eq!(s.proxy.trusted.len(), 2);
        assert_eq!(s.proxy.timeout, Duration::from_secs(3));
        // Required with nobody trusted would refuse every connection.
        let err = parse(
            "gitmouth",
            args(&["--proxy-protocol", "required"]),
            &Env::default(),
            "box",
        )
        .unwrap_err();
        assert!(err.to_string().contains("--proxy-trusted"), "{err}");
        for bad in [
            &["--proxy-protocol", "yes"][..],
            &["--proxy-trusted", "10.0.0.0/33"],
            &[
                "--proxy-protocol",
                "optional",
                "--proxy-header-timeout",
                "0",
            ],
        ] {
            assert!(
                parse("gitmouth", args(bad), &Env::default(), "box").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn public_host_and_its_port() {
        let s = parse("gitmouth", args(&[]), &Env::default(), "box\n").unwrap();
        assert_eq!(
            (s.public_host.host.as_str(), s.public_host.port),
            ("box", 2222)
        );
        let s = parse(
            "gitmouth",
            args(&[
                "--listen",
                "0.0.0.0:2200",
                "--public-host",
                "git.example.org",
            ]),
            &Env::default(),
            "box",
        )
        .unwrap();
        assert_eq!(s.public_host.port, 2200);
        let s = parse(
            "gitmouth",
            args(&["--public-host", "git.example.org:22"]),
            &Env::default(),
            "box",
        )
        .unwrap();
        assert_eq!(
            (s.public_host.host.as_str(), s.public_host.port),
            ("git.example.org", 22)
        );
        assert!(
            parse(
                "gitmouth",
                args(&["--public-host", "git.example.org:x"]),
                &Env::default(),
                "box"
            )
            .is_err()
        );
    }

    #[test]
    fn environment_and_flags() {
        let e = env(
            &[
                ("GITMOUTH_PORT", "2022"),
                ("GITMOUTH_PRIVATE_KEY", "certs/server.key"),
            ],
            None,
        );
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        assert_eq!(s.listen.port(), 2022);
        assert_eq!(
            s.host_keys,
            [HostKeySource::Given("certs/server.key".into())]
        );
        let s = parse(
            "gitmouth",
            args(&[
                "--listen",
                "127.0.0.1:9",
                "--host-key",
                "a",
                "--host-key",
                "b",
                "--rekey-limit",
                "8M",
            ]),
            &e,
            "box",
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            s.host_keys,
            [
                HostKeySource::Given("a".into()),
                HostKeySource::Given("b".into())
            ]
        );
        assert_eq!(s.rekey_limit, 8 << 20);
        assert!(
            parse(
                "gitmouth",
                args(&[]),
                &env(&[("GITMOUTH_PORT", "x")], None),
                "box"
            )
            .is_err()
        );
        assert!(parse("gitmouth", args(&["--bogus"]), &e, "box").is_err());
    }

    #[test]
    fn the_environment_wins_over_dotenv() {
        let dotenv = "# the original's\nAPISERVER_KEY=abc\nPYTHONUNBUFFERED=true\nQUOTED=\"a b\"\n";
        let e = env(&[("PYTHONUNBUFFERED", "false")], Some(dotenv));
        assert_eq!(e.get("APISERVER_KEY"), Some("abc"));
        assert_eq!(e.get("PYTHONUNBUFFERED"), Some("false"));
        assert_eq!(e.get("QUOTED"), Some("a b"));
    }

    #[test]
    fn help_describes_every_option() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for option in [
            "--listen",
            "--data-dir",
            "--host-key",
            "--login-grace-time",
            "--rekey-limit",
        ] {
            assert!(help.contains(option), "{option} missing from --help");
        }
        for arg in Cli::command().get_arguments() {
            assert!(arg.get_help().is_some(), "{} has no help", arg.get_id());
        }
    }

    #[test]
    fn the_originals_dotenv_selects_api_mode() {
        let e = env(&[], Some("APISERVER_KEY=abc123\nPYTHONUNBUFFERED=true\n"));
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        let ModeSettings::Api(api) = &s.mode else {
            panic!("not api mode")
        };
        assert_eq!(api.api.base_url(), "https://localhost:5000");
        assert_eq!(api.api.key.as_str(), "abc123");
        assert_eq!(api.rendezvous_port, 4000);
        assert!(api.api_tls.verify && api.dyno_tls.verify);
        assert_eq!(
            s.host_keys,
            [HostKeySource::Given("certs/server.key".into())]
        );
        assert_eq!(s.listen.port(), 2222);
        assert!(s.warnings.is_empty());
        // An empty key is no key; --mode wins either way.
        let e = env(&[("APISERVER_KEY", "")], Some("APISERVER_KEY=abc\n"));
        assert!(matches!(
            parse("gitmouth", args(&[]), &e, "box").unwrap().mode,
            ModeSettings::Standalone
        ));
        let e = env(&[], Some("APISERVER_KEY=abc\n"));
        let s = parse("gitmouth", args(&["--mode", "standalone"]), &e, "box").unwrap();
        assert!(matches!(s.mode, ModeSettings::Standalone));
        assert!(parse("gitmouth", args(&["--mode", "api"]), &Env::default(), "box").is_err());
    }

    #[test]
    fn every_variable_of_the_contract() {
        let e = env(
            &[
                ("APISERVER_KEY", "k"),
                ("APISERVER_PROTOCOL", "http"),
                ("APISERVER_HOSTNAME", "api.internal"),
                ("APISERVER_PORT", "8080"),
                ("DYNOHOST_RENDEZVOUS_PORT", "4443"),
                ("GITMOUTH_PORT", "2022"),
                ("GITMOUTH_PRIVATE_KEY", "/etc/gm/key"),
                ("APISERVER_CA_FILE", "/etc/ca.pem"),
                ("DYNOHOST_TLS_VERIFY", "false"),
            ],
            None,
        );
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        let ModeSettings::Api(api) = &s.mode else {
            panic!()
        };
        assert_eq!(api.api.base_url(), "http://api.internal:8080");
        assert_eq!(api.rendezvous_port, 4443);
        assert_eq!(
            api.api_tls,
            TlsSettings {
                verify: true,
                ca_file: Some("/etc/ca.pem".into())
            }
        );
        assert!(!api.dyno_tls.verify);
        assert_eq!(s.listen.port(), 2022);
        assert_eq!(s.host_keys, [HostKeySource::Given("/etc/gm/key".into())]);
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        let bad = env(
            &[("APISERVER_KEY", "k"), ("APISERVER_PROTOCOL", "ftp")],
            None,
        );
        assert!(parse("gitmouth", args(&[]), &bad, "box").is_err());
        let bad = env(
            &[("APISERVER_KEY", "k"), ("DYNOHOST_TLS_VERIFY", "maybe")],
            None,
        );
        assert!(parse("gitmouth", args(&[]), &bad, "box").is_err());
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        let e = env(&[("APISERVER_KEY", "supersecret")], None);
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        assert!(!format!("{s:?}").contains("supersecret"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(
            parse_size("0").is_err()
                && parse_size("x").is_err()
                && parse_size("99999999999G").is_err()
        );
    }

    #[test]
    fn keepalive_flags_default_to_15_seconds_and_3_probes() {
        let e = Env::default();
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        assert_eq!(s.keepalive_interval, Duration::from_secs(15));
        assert_eq!(s.keepalive_count_max, 3);
        let s = parse(
            "gitmouth",
            args(&["--keepalive-interval", "0", "--keepalive-count-max", "2"]),
            &e,
            "box",
        )
        .unwrap();
        assert_eq!(s.keepalive_interval, Duration::ZERO);
        assert_eq!(s.keepalive_count_max, 2);
        let refused = parse("gitmouth", args(&["--keepalive-count-max", "0"]), &e, "box");
        assert!(refused.is_err());
    }

    #[test]
    fn max_commands_and_push_lock_wait() {
        let e = Env::default();
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        assert_eq!((s.max_commands, s.push_lock_wait), (256, Duration::ZERO));
        let s = parse(
            "gitmouth",
            args(&["--max-commands", "1", "--push-lock-wait", "30"]),
            &e,
            "box",
        )
        .unwrap();
        assert_eq!(
            (s.max_commands, s.push_lock_wait),
            (1, Duration::from_secs(30))
        );
        let config = server_config(
            &s,
            Vec::new(),
            gitmouth_core::server::Mode::Standalone {
                repos: PathBuf::from("r"),
            },
        );
        assert_eq!(config.push_lock_wait, Duration::from_secs(30));
    }

    #[test]
    fn max_sessions_defaults_to_10_and_refuses_0() {
        let e = Env::default();
        let s = parse("gitmouth", args(&[]), &e, "box").unwrap();
        assert_eq!(s.max_sessions, 10);
        let s = parse("gitmouth", args(&["--max-sessions", "3"]), &e, "box").unwrap();
        assert_eq!(s.max_sessions, 3);
        assert!(parse("gitmouth", args(&["--max-sessions", "0"]), &e, "box").is_err());
    }
}
