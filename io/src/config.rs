//! Command line and environment: one definition for every runtime's binary.
//!
//! Pure: the runtime hands in the arguments, its environment and the text of
//! a `.env` file if one exists; this module decides what they mean. Clap
//! parses only the arguments it is given (its `env` feature is not used, so
//! it reads nothing by itself).

use core::net::SocketAddr;
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

pub use crate::layers::{Env, Origin, Source};

/// Variables of the original gitmouth, and of tracing, that set a setting
/// too, after the setting's own `GITMOUTH_<NAME>` in the same layer.
pub const ALIASES: [crate::layers::Alias; 3] = [
    crate::layers::Alias {
        long: "listen",
        var: "GITMOUTH_PORT",
        convert: |port| {
            port.parse::<u16>()
                .map(|p| vec![format!("0.0.0.0:{p}")])
                .map_err(|_| "expected a port number, 0-65535".into())
        },
    },
    crate::layers::Alias {
        long: "host-key",
        var: "GITMOUTH_PRIVATE_KEY",
        // One path, as the original took it: no list.
        convert: |path| Ok(vec![path.to_owned()]),
    },
    crate::layers::Alias {
        long: "log",
        var: "RUST_LOG",
        convert: |filter| Ok(vec![filter.to_owned()]),
    },
];

/// Settings only standalone mode uses: refused in API mode.
const STANDALONE_ONLY: [&str; 6] = [
    "authorized-keys",
    "trusted-user-ca-keys",
    "revoked-keys",
    "access",
    "default-object-format",
    "default-ref-format",
];
/// Settings only API mode uses: refused in standalone mode.
const API_ONLY: [&str; 2] = ["api-timeout", "provision-timeout"];

/// What `--help` says after the options.
const AFTER_LONG_HELP: &str = "\
Configuration: every option can also be set by a key of the same name in a
TOML file (--config FILE, or GITMOUTH_CONFIG) and by an environment
variable GITMOUTH_<OPTION> (upper case, dashes as underscores, e.g.
GITMOUTH_MAX_STARTUPS), in the process environment or in ./.env. Lists are
comma-separated in variables and arrays in the file; switches take yes or
no. Precedence: command line > environment > ./.env > file > default.
--print-config shows the result and where each value came from.

Variables of the original Openruko gitmouth, with the same meaning:
  GITMOUTH_PORT             port to listen on, on 0.0.0.0 (--listen wins)
  GITMOUTH_PRIVATE_KEY      host key file (--host-key wins)
  APISERVER_KEY             the API server's key; set and not empty, it
                            selects API mode (a secret: never printed)
  APISERVER_PROTOCOL        https (default) or http
  APISERVER_HOSTNAME        the API server's host [default: localhost]
  APISERVER_PORT            the API server's port [default: 5000]
  DYNOHOST_RENDEZVOUS_PORT  the dyno hosts' rendezvous port [default: 4000]
Added for API mode:
  APISERVER_CA_FILE, DYNOHOST_CA_FILE
                            PEM CA bundles to verify the API server's and
                            the dyno hosts' certificates [default: the
                            system's roots]
  APISERVER_TLS_VERIFY, DYNOHOST_TLS_VERIFY
                            false turns verification off, as the original
                            (a warning at start) [default: true]
Logging:
  RUST_LOG                  log filter, as --log (GITMOUTH_LOG wins)
  NO_COLOR                  no colours in the log

SIGHUP re-reads the configuration file, ./.env and the authorized keys:
limits, time limits, algorithm lists, the log filter, the keys and the
formats of new repositories change for new connections; the listen address, data directory, host keys and
mode need a restart (the log says so).";

/// The command line, shared by `gitmouth` and `gitmouth-async-std`.
///
/// Every option is also a file key and a `GITMOUTH_<NAME>` variable
/// ([`crate::layers`]): a new field needs nothing more.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "An SSH server for git: git push and git clone over SSH, standalone or in front of an Openruko platform.",
    after_help = "-h shows a summary; --help shows every option in full, with its variable, and the environment variables.",
    after_long_help = AFTER_LONG_HELP,
    long_about = None,
    max_term_width = 100
)]
pub struct Cli {
    /// TOML configuration file: a key per option, named as the option
    ///
    /// Keys are the options' long names (max-startups = "10:30:100"); an
    /// unknown key is refused. The command line, the environment and
    /// ./.env win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML, with where each value
    /// came from (secrets masked), and exit
    #[arg(long)]
    pub print_config: bool,

    /// Address and port to listen on [default: 0.0.0.0:2222, or 0.0.0.0:$GITMOUTH_PORT]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for the default host key, authorized_keys and repositories
    ///
    /// A relative path is taken from the directory the server starts in:
    /// the log shows the absolute path at start. Give an absolute one in a
    /// service.
    #[arg(long, value_name = "DIR", default_value = "./gitmouth-data")]
    pub data_dir: PathBuf,

    /// Host private key; repeat to offer several
    ///
    /// ed25519, ECDSA (P-256/384/521, for JSch 0.1.x) or RSA of 2048-4096
    /// bits, in OpenSSH format, PEM (PKCS#1, SEC1) or PKCS#8; readable by
    /// its owner only, as sshd requires. Several: an ECDSA key beside the
    /// ed25519 one, or a new key beside the one it replaces (the first key
    /// of a type signs key exchanges, later ones of that type are only
    /// announced to clients, which learn them). Default:
    /// $GITMOUTH_PRIVATE_KEY, else <data-dir>/ssh_host_ed25519_key, which
    /// is generated when missing (certs/server.key in API mode). A key
    /// named here that does not exist is an error.
    #[arg(long = "host-key", value_name = "FILE")]
    pub host_keys: Vec<PathBuf>,

    /// Host private key being retired, in any --host-key format; repeatable
    ///
    /// It is no longer announced after login, so clients with
    /// UpdateHostKeys drop it from known_hosts, but it still proves itself
    /// and signs for clients that know only it (when no --host-key has its
    /// type). Rotation: add the new key with --host-key (after the old one
    /// when of the same type: the first of a type signs, the others are
    /// only announced), let clients learn it, then move the old key here.
    #[arg(long = "host-key-retiring", value_name = "FILE")]
    pub host_keys_retiring: Vec<PathBuf>,

    /// Standalone mode: authorized_keys file whose keys may push and clone
    ///
    /// An OpenSSH authorized_keys file (each key's comment is its user's
    /// name); a single .pub file works too. Re-read when it changes and on
    /// SIGHUP. One named here must exist; the default may be missing (the
    /// log says where to put keys). [default: <data-dir>/authorized_keys]
    #[arg(long, value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,

    /// Standalone mode: CA keys trusted to sign user certificates
    ///
    /// sshd's TrustedUserCAKeys format: one OpenSSH public key a line. A
    /// certificate signed by one of them logs in as its first principal
    /// the access file knows (else its first) when it is a user certificate, valid now, names a principal, and
    /// has no critical option but source-address (enforced against the
    /// client's address). Re-read when it changes and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub trusted_user_ca_keys: Option<PathBuf>,

    /// Standalone mode: keys and certificates refused whatever else says
    ///
    /// sshd's RevokedKeys text format: one public key or certificate a
    /// line; a certificate is refused when it, its key or its CA's key is
    /// listed. Re-read when it changes and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub revoked_keys: Option<PathBuf>,

    /// Standalone mode: access file saying who may read, write and create
    /// which repository, and deploy keys
    ///
    /// TOML ([groups], [[repo]], [default], [[deploy]]; see the README).
    /// Re-read when it changes and on SIGHUP; a re-read that fails keeps the
    /// last good rules. Without it, single-team mode: every key in
    /// authorized_keys may read, write and create every repository.
    #[arg(long, value_name = "FILE")]
    pub access: Option<PathBuf>,

    /// Standalone mode: object format (hash) of a repository a push
    /// creates: sha1 or sha256
    ///
    /// A repository is created in one format and keeps it: a SHA-256
    /// repository can only be pushed to one created sha256, so the push
    /// that creates it must find the server creating sha256. The access
    /// file's object-format for a repository wins over this. The pusher
    /// sees the new repository's format on stderr.
    #[arg(long, value_name = "sha1|sha256", default_value = "sha1", value_parser = ["sha1", "sha256"])]
    pub default_object_format: String,

    /// Standalone mode: ref storage of a repository a push creates: files
    /// or reftable (git 2.45 or later, checked at start)
    #[arg(long, value_name = "files|reftable", default_value = "files", value_parser = ["files", "reftable"])]
    pub default_ref_format: String,

    /// Host name users push to, with the port when it is not the one
    /// listened on (behind a load balancer: git.example.org:2222), shown in
    /// messages [default: this machine's host name]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub public_host: Option<String>,

    /// Seconds from connect to successful authentication (at least 1)
    ///
    /// A connection waiting for a place among the startups waits within
    /// it. 0 is refused: sshd's "no limit" would let a client that never
    /// authenticates hold its place for ever.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = at_least_one_second)]
    pub login_grace_time: u64,

    /// Seconds an authenticated connection may pass with nothing sent or
    /// received before it is ended (0: no limit)
    ///
    /// The user is told why. Keepalives, IGNORE and DEBUG messages are not
    /// activity; a push waiting for the push lock is not idle.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub idle_timeout: u64,

    /// Seconds an authenticated connection may go with no channel open
    /// before it is closed (0: no limit; OpenSSH's UnusedConnectionTimeout)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub unused_connection_timeout: u64,

    /// Authenticated connections one user may hold at once (0: no limit)
    ///
    /// Past it, a new connection is ended right after authentication, with
    /// a message saying so (not a failure: no penalty).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub per_user_max_connections: u32,

    /// Seconds an authenticated client may stay silent before a keepalive
    /// probes it (0: never; OpenSSH's ClientAliveInterval)
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub keepalive_interval: u64,

    /// Unanswered keepalives after which the client is taken for dead (at
    /// least 1; OpenSSH's ClientAliveCountMax)
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keepalive_count_max: u32,

    /// Seconds an authenticated connection may last in all (0: no limit)
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    pub max_session_time: u64,

    /// On SIGTERM, seconds git commands in progress get to finish (0: none)
    ///
    /// The server stops accepting at once; after this, the users of
    /// commands still running are told and the commands stopped. A second
    /// SIGTERM or SIGINT stops at once.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,

    /// Session channels one connection may have open at once (at least 1;
    /// OpenSSH's MaxSessions)
    ///
    /// A ControlMaster or git-lfs multiplexes several; one past the limit
    /// is refused, the others go on.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,

    /// Git commands running at once in all, across connections (0: no
    /// limit)
    ///
    /// Each is a git process or a dyno, or a push waiting for its lock; one
    /// past it is told the server is busy and exits non-zero.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_commands: u32,

    /// Seconds a push waits, in turn, for another push to the same
    /// repository (0: refused at once)
    ///
    /// The waiting user is told every five seconds who holds the lock and
    /// since when.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub push_lock_wait: u64,

    /// Where the push lock lives: local (this instance alone) or postgres
    /// (shared by every instance using --database-url)
    ///
    /// With postgres, penalties and --per-user-max-connections are shared
    /// across the instances too. A push is refused, never let through,
    /// while the database cannot be reached.
    #[arg(long, value_name = "STORE", default_value = "local", value_parser = ["local", "postgres"])]
    pub push_lock: String,

    /// PostgreSQL for --push-lock postgres:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (the password is a
    /// secret: masked in logs and --print-config)
    ///
    /// TCP, or a Unix socket directory as the host
    /// (postgres://USER@%2Frun%2Fpostgresql/DATABASE). TLS to the database
    /// is not supported: keep it on a private network or a local socket.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Schema of gitmouth's tables in that database, created and migrated
    /// at start
    #[arg(long, value_name = "NAME", default_value = "gitmouth", value_parser = parse_schema_name)]
    pub database_schema: String,

    /// This instance's name, shown to a pusher another instance's push
    /// holds back [default: this machine's host name:the port listened on]
    #[arg(long, value_name = "NAME")]
    pub instance_name: Option<String>,

    /// Authentication attempts allowed per connection (at least 1)
    #[arg(long, value_name = "N", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_auth_tries: u32,

    /// Re-key after this many bytes in either direction, 1M to 64G
    /// (suffixes K, M, G)
    ///
    /// Below 1M re-keys cost more than they protect; above 64G AES's block
    /// limit (RFC 4344) is near. No re-key starts before authentication
    /// has ended.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_rekey_limit)]
    pub rekey_limit: u64,

    /// Re-key after this many seconds (0: never by time)
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub rekey_interval: u64,

    /// Key exchange methods, comma-separated (sshd's KexAlgorithms syntax)
    ///
    /// The list replaces the default; with a leading + it is appended to
    /// it, - removed from it (* and ? match), ^ put first.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub kex_algorithms: Option<String>,

    /// Ciphers, as --kex-algorithms takes its list (sshd's Ciphers)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub ciphers: Option<String>,

    /// MACs used with the non-AEAD ciphers, as --kex-algorithms takes its
    /// list (sshd's MACs)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub macs: Option<String>,

    /// Host-key signature algorithms to offer, as --kex-algorithms takes
    /// its list (sshd's HostKeyAlgorithms)
    ///
    /// Of those the host keys can sign with.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub host_key_algorithms: Option<String>,

    /// User-key algorithms accepted, as --kex-algorithms takes its list
    /// (sshd's PubkeyAcceptedAlgorithms)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub pubkey_accepted_algorithms: Option<String>,

    /// Also offer what old clients need and audits fault
    ///
    /// For JSch 0.1.x in JGit 4, old libssh2 and OpenSSH:
    /// ecdh-sha2-nistp256/384/521, diffie-hellman-group16-sha512 and
    /// -group14-sha256, and the encrypt-and-MAC hmac-sha2-256 and
    /// hmac-sha2-512, appended to the defaults that the list settings
    /// start from. Nothing with SHA-1. Alone, the option means yes.
    #[arg(
        long,
        value_name = "yes|no",
        default_value = "no",
        num_args = 0..=1,
        default_missing_value = "yes",
        value_parser = yes_no()
    )]
    pub legacy_algorithms: bool,

    /// Unauthenticated connections START:RATE:FULL (as OpenSSH's
    /// MaxStartups)
    ///
    /// Above START, new ones wait in the startup queue where sshd would
    /// drop them with probability RATE%, rising to 100% at FULL (FULL at
    /// least 1, START at most FULL, RATE at most 100).
    #[arg(long, value_name = "START:RATE:FULL", default_value = "10:30:100", value_parser = parse_max_startups)]
    pub max_startups: (u32, u32, u32),

    /// Connections of any kind at once (0: no limit)
    ///
    /// Each push holds a git process and descriptors.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_connections: u32,

    /// Unauthenticated connections in progress from one address (an IPv6
    /// /64; at least 1)
    ///
    /// More wait, unread, in that address's queue.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub per_source_max_startups: u32,

    /// Connections from one address that may wait for a place under
    /// --per-source-max-startups (0: none wait)
    ///
    /// Bounded by the login grace time from accept; past it, they are
    /// refused.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub per_source_startup_queue: u32,

    /// Connections that may wait where --max-startups would drop them (0:
    /// none wait)
    ///
    /// Let in round robin by address once fewer than START are in
    /// progress, bounded by the login grace time from accept; past it,
    /// refused.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub startup_queue: u32,

    /// Refuse, for a while, addresses whose connections keep failing
    ///
    /// 5 s per failed login, 1 s per connection that never tried, 10 s per
    /// login grace time run out; refused from 15 s accumulated, at most 10
    /// min. Alone, the option means yes.
    #[arg(
        long,
        value_name = "yes|no",
        default_value = "yes",
        num_args = 0..=1,
        default_missing_value = "yes",
        value_parser = yes_no()
    )]
    pub per_source_penalties: bool,

    /// Trusted network (ADDR or ADDR/PREFIX) that bypasses admission
    /// control; repeatable
    ///
    /// A health checker, your own tests.
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

    /// standalone (keys from a file, git run locally) or api (an Openruko
    /// platform) [default: api when APISERVER_KEY is set]
    ///
    /// Without it: api when APISERVER_KEY is set and not empty, in the
    /// environment or in ./.env; standalone otherwise. Options the chosen
    /// mode does not use are refused.
    #[arg(long, value_name = "MODE", value_parser = ["standalone", "api"])]
    pub mode: Option<String>,

    /// API mode: seconds allowed for the key lookup and the access check
    /// (at least 1)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = at_least_one_second)]
    pub api_timeout: u64,

    /// API mode: seconds allowed for provisioning a build dyno (at least 1)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = at_least_one_second)]
    pub provision_timeout: u64,

    /// Log filter (tracing's syntax, e.g. "info" or "gitmouth=debug")
    ///
    /// As any option, the command line wins over the environment: --log
    /// over RUST_LOG. Changes on SIGHUP.
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    pub log: String,

    /// Log format: human (readable lines) or json (one JSON object per line)
    #[arg(long, value_name = "FORMAT", default_value = "human", value_parser = ["human", "json"])]
    pub log_format: String,

    /// Serve /metrics (Prometheus text format), /health and /ready on this
    /// address (ADDR:PORT; off by default; a port of 0 picks one, logged)
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// Switches: yes or no (true/false and on/off are taken too).
fn yes_no() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("yes").alias("true").alias("on"),
        PossibleValue::new("no").alias("false").alias("off"),
    ])
    .map(|s| matches!(s.as_str(), "yes" | "true" | "on"))
}

/// A log filter tracing accepts (it would otherwise skip what it cannot
/// read, silently).
fn parse_log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not a log filter ({e}); e.g. info, or gitmouth=debug,info"))
}

/// A number of seconds where zero cannot work.
fn at_least_one_second(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("0 cannot work here: expected at least 1 second".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of seconds, at least 1".into()),
    }
}

/// The smallest and largest `--rekey-limit` taken.
const REKEY_LIMIT_RANGE: std::ops::RangeInclusive<u64> = (1 << 20)..=(64 << 30);

/// `--rekey-limit`: a size within [`REKEY_LIMIT_RANGE`].
fn parse_rekey_limit(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if REKEY_LIMIT_RANGE.contains(&n) {
        Ok(n)
    } else {
        Err(
            "expected 1M to 64G (sshd takes down to 16 bytes, which only makes re-keys pointless)"
                .into(),
        )
    }
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

/// A PostgreSQL schema name gitmouth may create: a plain identifier.
fn parse_schema_name(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if first_ok
        && text.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(text.to_owned())
    } else {
        Err("expected a plain identifier: a-z, 0-9 and _, starting with a letter or _, at most 63 characters".into())
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
    /// Retiring host keys to load (never generated).
    pub host_keys_retiring: Vec<HostKeySource>,
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
    /// Whether log lines are JSON objects (`--log-format json`).
    pub log_json: bool,
    /// Where /metrics, /health and /ready are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The database shared with other instances (`--push-lock
    /// postgres`), if any.
    pub database: Option<crate::database::DatabaseSettings>,
    /// The authorized_keys file (standalone mode).
    pub authorized_keys: PathBuf,
    /// The trusted user CA keys file (standalone mode), if any.
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// The revoked keys file (standalone mode), if any.
    pub revoked_keys: Option<PathBuf>,
    /// The access file (standalone mode; `None`: single-team mode).
    pub access: Option<PathBuf>,
    /// The format of a repository a push creates (standalone mode), where
    /// the access file names none.
    pub repo_format: gitmouth_core::app::repo_format::RepoFormat,
    /// Where users reach the server (host and port), shown in messages.
    pub public_host: PublicHost,
    /// Standalone or API mode, with API mode's settings.
    pub mode: ModeSettings,
    /// Things the operator should hear about at start.
    pub warnings: Vec<String>,
    /// Limits on unauthenticated connections.
    pub admission: gitmouth_core::admission::AdmissionConfig,
    /// Whether `--authorized-keys` was given (a file, variable or flag):
    /// such a file must exist; the default may be missing.
    pub authorized_keys_explicit: bool,
    /// `--print-config`: print the configuration and exit.
    pub print_config: bool,
    /// The configuration file, if any.
    pub config_file: Option<PathBuf>,
    /// Every setting's value and where it came from.
    pub origins: Vec<Origin>,
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

/// The `clap` command of a binary: [`Cli`] with each setting's variable
/// and file key in its long help.
pub fn command(bin_name: &'static str) -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .name(bin_name)
        .bin_name(bin_name)
        .mut_args(|arg| {
            let Some(long) = arg.get_long().filter(|l| *l != "print-config") else {
                return arg;
            };
            let text = arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            let var = crate::layers::variable(long);
            let where_ = if long == "config" {
                format!("[env: {var}]")
            } else {
                format!("[env: {var}] [file key: {long}]")
            };
            arg.long_help(format!("{text}\n\n{where_}"))
        })
}

/// Parses a command line (`args` includes the program name) against `env`,
/// without a configuration file; `host_name` is this machine's name, the
/// default public host. See [`parse_with_file`].
pub fn parse(
    bin_name: &'static str,
    args: impl IntoIterator<Item = OsString>,
    env: &Env,
    host_name: &str,
) -> Result<Settings, clap::Error> {
    parse_with_file(bin_name, args, env, None, host_name)
}

/// The configuration file the command line or the environment names
/// (`--config`, `GITMOUTH_CONFIG`), for the runtime to read. Errors are
/// clap's, as [`parse`]'s (`--help` and `--version` included).
pub fn config_file(
    bin_name: &'static str,
    args: impl IntoIterator<Item = OsString>,
    env: &Env,
) -> Result<Option<PathBuf>, clap::Error> {
    let matches = command(bin_name).try_get_matches_from(args)?;
    if let Some(path) = matches.get_one::<PathBuf>("config") {
        return Ok(Some(path.clone()));
    }
    Ok(env
        .lookup(&crate::layers::variable("config"))
        .map(|(path, _)| PathBuf::from(path)))
}

/// Parses a command line (`args` includes the program name) completed from
/// `env` (the process environment over `./.env`) and the configuration
/// file's text, in that order of precedence; `host_name` is this machine's
/// name, the default public host. Errors are clap's, including `--help`
/// and `--version`, which the runtime prints and exits with
/// (`err.exit()`); a refused value names the setting, where it came from,
/// the value and what is allowed.
pub fn parse_with_file(
    bin_name: &'static str,
    args: impl IntoIterator<Item = OsString>,
    env: &Env,
    file: Option<(&std::path::Path, &str)>,
    host_name: &str,
) -> Result<Settings, clap::Error> {
    use crate::layers::{FileText, LayerError};
    use clap::FromArgMatches;
    let cmd = command(bin_name);
    let refuse =
        |msg: String| command(bin_name).error(clap::error::ErrorKind::ValueValidation, msg);
    let file = file.map(|(path, text)| FileText { path, text });
    let layered = match crate::layers::layer(&cmd, args.into_iter().collect(), env, file, &ALIASES)
    {
        Ok(l) => l,
        Err(LayerError::Clap(e)) => return Err(e),
        Err(LayerError::Message(m)) => return Err(refuse(m)),
    };
    let cli = Cli::from_arg_matches(&layered.matches)?;
    settings(cli, env, host_name, layered.origins).map_err(refuse)
}

fn settings(
    cli: Cli,
    env: &Env,
    host_name: &str,
    mut origins: Vec<Origin>,
) -> Result<Settings, String> {
    let explicit = |long: &str| {
        origins
            .iter()
            .find(|o| o.long == long && o.source.is_explicit())
            .map(|o| o.source.clone())
    };
    let listen = cli
        .listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 2222)));
    let mut warnings = Vec::new();
    let api_mode = match cli.mode.as_deref() {
        Some("api") => true,
        Some(_) => false,
        None => env.non_empty("APISERVER_KEY").is_some(),
    };
    let (mode_name, unused) = if api_mode {
        ("API", &STANDALONE_ONLY[..])
    } else {
        ("standalone", &API_ONLY[..])
    };
    for long in unused {
        if let Some(source) = explicit(long) {
            let why = match (cli.mode.is_some(), api_mode) {
                (true, _) => "--mode",
                (false, true) => "APISERVER_KEY is set",
                (false, false) => "APISERVER_KEY is not set",
            };
            return Err(format!(
                "--{long} from {source}: not used in {mode_name} mode (chosen because {why}): remove it, or choose the other mode with --mode"
            ));
        }
    }
    let mode = if api_mode {
        ModeSettings::Api(api_settings(&cli, env, &mut warnings)?)
    } else {
        ModeSettings::Standalone
    };
    let authorized_keys_explicit = explicit("authorized-keys").is_some();
    let host_keys = if !cli.host_keys.is_empty() {
        cli.host_keys
            .into_iter()
            .map(HostKeySource::Given)
            .collect()
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
        // Zero is no limit.
        max_connections: match cli.max_connections {
            0 => u32::MAX,
            n => n,
        },
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
    let database = match (cli.push_lock.as_str(), cli.database_url.as_deref()) {
        ("postgres", Some(url)) => {
            let source = explicit("database-url")
                .map(|s| s.to_string())
                .unwrap_or_default();
            let instance = cli
                .instance_name
                .clone()
                .unwrap_or_else(|| format!("{}:{}", host_name.trim(), listen.port()));
            Some(
                crate::database::DatabaseSettings::new(url, &cli.database_schema, &instance)
                    .map_err(|why| format!("--database-url from {source}: {why}"))?,
            )
        }
        ("postgres", None) => {
            let source = explicit("push-lock")
                .map(|s| s.to_string())
                .unwrap_or_default();
            return Err(format!(
                "--push-lock from {source}: postgres needs --database-url (or GITMOUTH_DATABASE_URL)"
            ));
        }
        _ => {
            // (--database-schema has a default, which --print-config
            // prints, and an instance name is harmless alone.)
            if let Some(source) = explicit("database-url") {
                return Err(format!(
                    "--database-url from {source}: only used with --push-lock postgres (the push lock is local): remove it, or set --push-lock postgres"
                ));
            }
            None
        }
    };
    // The value parsers took only these names.
    let repo_format = gitmouth_core::app::repo_format::RepoFormat {
        objects: gitmouth_core::app::repo_format::ObjectFormat::parse(&cli.default_object_format)?,
        refs: gitmouth_core::app::repo_format::RefFormat::parse(&cli.default_ref_format)?,
    };
    Ok(Settings {
        database,
        admission,
        proxy,
        mode,
        warnings,
        authorized_keys,
        trusted_user_ca_keys: cli.trusted_user_ca_keys,
        revoked_keys: cli.revoked_keys,
        access: cli.access,
        repo_format,
        public_host,
        listen,
        data_dir: cli.data_dir,
        host_keys,
        host_keys_retiring: cli
            .host_keys_retiring
            .into_iter()
            .map(HostKeySource::Given)
            .collect(),
        login_grace: Duration::from_secs(cli.login_grace_time),
        max_auth_tries: cli.max_auth_tries,
        // Zero is no limit, which the core takes as it is.
        idle_timeout: Duration::from_secs(cli.idle_timeout),
        unused_timeout: Duration::from_secs(cli.unused_connection_timeout),
        per_user_max_connections: cli.per_user_max_connections,
        keepalive_interval: Duration::from_secs(cli.keepalive_interval),
        keepalive_count_max: cli.keepalive_count_max,
        max_sessions: cli.max_sessions,
        max_session: Duration::from_secs(cli.max_session_time),
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
        log_json: cli.log_format == "json",
        metrics: cli.metrics,
        authorized_keys_explicit,
        print_config: cli.print_config,
        config_file: cli.config,
        origins: std::mem::take(&mut origins),
    })
}

/// Secrets among the variables: `--print-config` masks their values.
const SECRET_VARIABLES: [&str; 1] = ["APISERVER_KEY"];

/// Variables that are not options (the original's), shown by
/// `--print-config` when set.
const OTHER_VARIABLES: [&str; 9] = [
    "APISERVER_KEY",
    "APISERVER_PROTOCOL",
    "APISERVER_HOSTNAME",
    "APISERVER_PORT",
    "DYNOHOST_RENDEZVOUS_PORT",
    "APISERVER_CA_FILE",
    "DYNOHOST_CA_FILE",
    "APISERVER_TLS_VERIFY",
    "DYNOHOST_TLS_VERIFY",
];

/// One TOML value: a bare integer when the text is one, else a string.
fn toml_value(text: &str) -> String {
    match text.parse::<i64>() {
        Ok(n) if n.to_string() == text => text.to_owned(),
        _ => toml::Value::String(text.to_owned()).to_string(),
    }
}

/// `--print-config`: the effective configuration as TOML (usable as a
/// `--config` file), each value with where it came from; the variables
/// that are not options as comments, secrets masked.
pub fn render_config(bin_name: &'static str, settings: &Settings, env: &Env) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {bin_name} {}: the effective configuration; after each value, where it came from.",
        env!("CARGO_PKG_VERSION")
    );
    let derived = |long: &str| -> Option<Vec<String>> {
        Some(match long {
            "listen" => vec![settings.listen.to_string()],
            "host-key" => settings
                .host_keys
                .iter()
                .map(|k| match k {
                    HostKeySource::Given(p) | HostKeySource::Default(p) => p.display().to_string(),
                })
                .collect(),
            "authorized-keys" if matches!(settings.mode, ModeSettings::Standalone) => {
                vec![settings.authorized_keys.display().to_string()]
            }
            "public-host" => vec![{
                let h = &settings.public_host;
                if h.host.contains(':') {
                    format!("[{}]:{}", h.host, h.port)
                } else {
                    format!("{}:{}", h.host, h.port)
                }
            }],
            "mode" => vec![
                match settings.mode {
                    ModeSettings::Standalone => "standalone",
                    ModeSettings::Api(_) => "api",
                }
                .to_owned(),
            ],
            _ => return None,
        })
    };
    let mut cmd = command(bin_name);
    cmd.build();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version", "print-config", "config"].contains(&long) {
            continue;
        }
        let list = matches!(arg.get_action(), clap::ArgAction::Append);
        // A default the mode does not use, printed, would be refused when
        // the output is read back as a file.
        let unused = match settings.mode {
            ModeSettings::Standalone => &API_ONLY[..],
            ModeSettings::Api(_) => &STANDALONE_ONLY[..],
        };
        if unused.contains(&long)
            && !settings
                .origins
                .iter()
                .any(|o| o.long == long && o.source.is_explicit())
        {
            let _ = writeln!(out, "# {long}: not used in this mode");
            continue;
        }
        let (values, source) = match settings.origins.iter().find(|o| o.long == long) {
            Some(o) => (o.values.clone(), o.source.to_string()),
            None => match derived(long) {
                Some(v) => (v, "default".to_owned()),
                None => {
                    let _ = writeln!(out, "# {long}: not set");
                    continue;
                }
            },
        };
        // The database URL's password is a secret.
        let values: Vec<String> = if long == "database-url" {
            values
                .iter()
                .map(|v| crate::database::mask_password(v))
                .collect()
        } else {
            values
        };
        let value = if list {
            let items: Vec<String> = values
                .iter()
                .map(|v| toml::Value::String(v.clone()).to_string())
                .collect();
            format!("[{}]", items.join(", "))
        } else {
            values.first().map(|v| toml_value(v)).unwrap_or_default()
        };
        let _ = writeln!(out, "{long} = {value}  # {source}");
    }
    if let Some(path) = &settings.config_file {
        let _ = writeln!(out, "# read from {}", path.display());
    }
    let mut header = false;
    for var in OTHER_VARIABLES {
        let Some((value, source)) = env.lookup(var) else {
            continue;
        };
        if !header {
            let _ = writeln!(
                out,
                "# Variables that are not options (environment or ./.env only):"
            );
            header = true;
        }
        let shown = if SECRET_VARIABLES.contains(&var) {
            "\"********\"".to_owned()
        } else {
            toml::Value::String(value.to_owned()).to_string()
        };
        let _ = writeln!(out, "# {var} = {shown}  # {source}");
    }
    out
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
    host_keys: gitmouth_core::transport::hostkey::HostKeys,
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
        host_keys,
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
        repo_format: settings.repo_format,
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
        Env::new(process, dotenv).unwrap()
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
    fn retiring_host_keys_come_beside_the_keys_in_service() {
        let s = parse(
            "gitmouth",
            args(&[
                "--host-key-retiring",
                "/k/old_rsa",
                "--host-key-retiring",
                "/k/older",
            ]),
            &Env::default(),
            "box",
        )
        .unwrap();
        // The keys in service keep their default.
        assert_eq!(
            s.host_keys,
            [HostKeySource::Default(PathBuf::from(
                "./gitmouth-data/ssh_host_ed25519_key"
            ))]
        );
        // A retiring key is never generated: it must exist.
        assert_eq!(
            s.host_keys_retiring,
            [
                HostKeySource::Given("/k/old_rsa".into()),
                HostKeySource::Given("/k/older".into())
            ]
        );
        let s = parse("gitmouth", args(&[]), &Env::default(), "box").unwrap();
        assert!(s.host_keys_retiring.is_empty());
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
            Vec::new().into(),
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
    fn with_file(list: &[&str], e: &Env, text: &str) -> Result<Settings, String> {
        parse_with_file(
            "gitmouth",
            args(list),
            e,
            Some((std::path::Path::new("/etc/gm.toml"), text)),
            "box",
        )
        .map_err(|e| e.to_string())
    }

    fn source_of(s: &Settings, long: &str) -> Source {
        s.origins
            .iter()
            .find(|o| o.long == long)
            .map(|o| o.source.clone())
            .unwrap()
    }

    #[test]
    fn precedence_flags_environment_dotenv_file_default() {
        let file = "max-sessions = 2\n";
        let dotenv = Some("GITMOUTH_MAX_SESSIONS=3\n");
        let process = [("GITMOUTH_MAX_SESSIONS", "4")];
        let flag = ["--max-sessions", "5"];
        let s = with_file(&[], &Env::default(), "").unwrap();
        assert_eq!(
            (s.max_sessions, source_of(&s, "max-sessions")),
            (10, Source::Default)
        );
        let s = with_file(&[], &Env::default(), file).unwrap();
        assert_eq!(s.max_sessions, 2);
        assert_eq!(
            source_of(&s, "max-sessions"),
            Source::File {
                path: "/etc/gm.toml".into(),
                line: 1
            }
        );
        let s = with_file(&[], &env(&[], dotenv), file).unwrap();
        assert_eq!(s.max_sessions, 3);
        assert_eq!(
            source_of(&s, "max-sessions"),
            Source::DotEnv {
                var: "GITMOUTH_MAX_SESSIONS".into(),
                line: Some(1)
            }
        );
        let s = with_file(&[], &env(&process, dotenv), file).unwrap();
        assert_eq!(s.max_sessions, 4);
        assert_eq!(
            source_of(&s, "max-sessions"),
            Source::Environment("GITMOUTH_MAX_SESSIONS".into())
        );
        let s = with_file(&flag, &env(&process, dotenv), file).unwrap();
        assert_eq!(
            (s.max_sessions, source_of(&s, "max-sessions")),
            (5, Source::CommandLine)
        );
    }

    #[test]
    fn the_originals_variables_and_rust_log_are_layers_too() {
        // --log beats RUST_LOG; RUST_LOG (environment) beats the file.
        let e = env(&[("RUST_LOG", "debug")], None);
        assert_eq!(
            with_file(&["--log", "warn"], &e, "log = \"error\"")
                .unwrap()
                .log,
            "warn"
        );
        assert_eq!(with_file(&[], &e, "log = \"error\"").unwrap().log, "debug");
        // GITMOUTH_LISTEN beats GITMOUTH_PORT in the same layer; the
        // environment's GITMOUTH_PORT beats the file's listen.
        let e = env(&[("GITMOUTH_PORT", "2022")], None);
        let s = with_file(&[], &e, "listen = \"127.0.0.1:9\"").unwrap();
        assert_eq!(s.listen, "0.0.0.0:2022".parse().unwrap());
        let e = env(
            &[
                ("GITMOUTH_PORT", "2022"),
                ("GITMOUTH_LISTEN", "127.0.0.1:7"),
            ],
            None,
        );
        assert_eq!(
            with_file(&[], &e, "").unwrap().listen,
            "127.0.0.1:7".parse().unwrap()
        );
        let err = with_file(&[], &env(&[("GITMOUTH_PORT", "99999")], None), "").unwrap_err();
        assert!(
            err.contains("GITMOUTH_PORT") && err.contains("99999"),
            "{err}"
        );
    }

    #[test]
    fn lists_and_switches_from_each_layer() {
        let e = env(&[("GITMOUTH_ADMISSION_EXEMPT", "10.0.0.0/8, ::1")], None);
        let s = with_file(&[], &e, "").unwrap();
        assert_eq!(s.admission.exempt.len(), 2);
        let s = with_file(
            &[],
            &Env::default(),
            "admission-exempt = [\"10.0.0.0/8\"]\nhost-key = \"a,b\"\n",
        )
        .unwrap();
        assert_eq!(s.admission.exempt.len(), 1);
        assert_eq!(s.host_keys.len(), 2);
        for (text, on) in [("yes", true), ("no", false), ("true", true), ("off", false)] {
            let e = env(&[("GITMOUTH_PER_SOURCE_PENALTIES", text)], None);
            assert_eq!(with_file(&[], &e, "").unwrap().admission.penalties, on);
            let line = format!("per-source-penalties = \"{text}\"");
            assert_eq!(
                with_file(&[], &Env::default(), &line)
                    .unwrap()
                    .admission
                    .penalties,
                on
            );
        }
        assert!(
            !with_file(&[], &Env::default(), "per-source-penalties = false")
                .unwrap()
                .admission
                .penalties
        );
        assert!(
            with_file(&["--legacy-algorithms"], &Env::default(), "")
                .unwrap()
                .legacy_algorithms
        );
        assert!(
            !with_file(&["--legacy-algorithms", "no"], &Env::default(), "")
                .unwrap()
                .legacy_algorithms
        );
        assert!(
            !with_file(&["--per-source-penalties=no"], &Env::default(), "")
                .unwrap()
                .admission
                .penalties
        );
        let err = with_file(
            &[],
            &env(&[("GITMOUTH_LEGACY_ALGORITHMS", "maybe")], None),
            "",
        )
        .unwrap_err();
        assert!(
            err.contains("GITMOUTH_LEGACY_ALGORITHMS") && err.contains("yes, no"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_key_and_line() {
        let err =
            with_file(&[], &Env::default(), "log = \"info\"\nmax_sessions = 3\n").unwrap_err();
        assert!(
            err.contains("/etc/gm.toml line 2")
                && err.contains("\"max_sessions\"")
                && err.contains("max-sessions"),
            "{err}"
        );
        let err = with_file(&[], &Env::default(), "config = \"x\"\n").unwrap_err();
        assert!(err.contains("unknown key \"config\""), "{err}");
        let err = with_file(&[], &Env::default(), "max-sessions = [1]\n").unwrap_err();
        assert!(
            err.contains("--max-sessions") && err.contains("not a list"),
            "{err}"
        );
        let err = with_file(&[], &Env::default(), "max-sessions = \n").unwrap_err();
        assert!(err.contains("not valid TOML"), "{err}");
        let err = with_file(&[], &Env::default(), "\n\nrekey-limit = \"10\"\n").unwrap_err();
        assert!(
            err.contains("--rekey-limit from /etc/gm.toml line 3")
                && err.contains("\"10\"")
                && err.contains("1M to 64G"),
            "{err}"
        );
    }

    #[test]
    fn zero_is_no_limit_or_refused() {
        let s = with_file(
            &[
                "--idle-timeout",
                "0",
                "--max-session-time",
                "0",
                "--max-connections",
                "0",
                "--rekey-interval",
                "0",
            ],
            &Env::default(),
            "",
        )
        .unwrap();
        assert_eq!(
            (s.idle_timeout, s.max_session, s.rekey_interval),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(s.admission.max_connections, u32::MAX);
        for flag in [
            "--login-grace-time",
            "--max-auth-tries",
            "--api-timeout",
            "--provision-timeout",
            "--max-sessions",
            "--keepalive-count-max",
            "--per-source-max-startups",
        ] {
            assert!(
                with_file(&[flag, "0"], &Env::default(), "").is_err(),
                "{flag} 0 accepted"
            );
        }
        assert!(with_file(&["--rekey-limit", "10"], &Env::default(), "").is_err());
        assert!(with_file(&["--rekey-limit", "1M"], &Env::default(), "").is_ok());
        assert!(with_file(&["--rekey-limit", "65G"], &Env::default(), "").is_err());
        assert!(with_file(&["--log", "gitmouth=loud"], &Env::default(), "").is_err());
    }

    #[test]
    fn options_the_mode_does_not_use_are_refused() {
        let api = env(&[("APISERVER_KEY", "k")], None);
        let err = with_file(&["--authorized-keys", "k"], &api, "").unwrap_err();
        assert!(
            err.contains("--authorized-keys") && err.contains("API mode"),
            "{err}"
        );
        let err = with_file(&[], &api, "authorized-keys = \"k\"\n").unwrap_err();
        assert!(err.contains("/etc/gm.toml line 1"), "{err}");
        let err = with_file(&["--api-timeout", "5"], &Env::default(), "").unwrap_err();
        assert!(err.contains("standalone mode"), "{err}");
        assert!(with_file(&["--api-timeout", "5"], &api, "").is_ok());
        assert!(
            with_file(&["--authorized-keys", "k"], &Env::default(), "")
                .unwrap()
                .authorized_keys_explicit
        );
        assert!(
            !with_file(&[], &Env::default(), "")
                .unwrap()
                .authorized_keys_explicit
        );
    }

    #[test]
    fn repository_formats_from_each_layer() {
        use gitmouth_core::app::repo_format::{ObjectFormat, RefFormat, RepoFormat};
        let none = Env::default();
        let s = with_file(&[], &none, "").unwrap();
        assert_eq!(s.repo_format, RepoFormat::default());
        let s = with_file(&["--default-object-format", "sha256"], &none, "").unwrap();
        assert_eq!(s.repo_format.objects, ObjectFormat::Sha256);
        let vars = env(&[("GITMOUTH_DEFAULT_REF_FORMAT", "reftable")], None);
        let s = with_file(&[], &vars, "default-object-format = \"sha256\"\n").unwrap();
        assert_eq!(
            s.repo_format,
            RepoFormat {
                objects: ObjectFormat::Sha256,
                refs: RefFormat::Reftable
            }
        );
        let config = server_config(
            &s,
            Vec::new().into(),
            gitmouth_core::server::Mode::Standalone {
                repos: PathBuf::from("r"),
            },
        );
        assert_eq!(config.repo_format, s.repo_format);
        // Bad values, naming the setting and where it came from.
        let err = with_file(&[], &none, "default-object-format = \"SHA256\"\n").unwrap_err();
        assert!(
            err.contains("default-object-format") && err.contains("/etc/gm.toml line 1"),
            "{err}"
        );
        let err = with_file(&["--default-ref-format", "table"], &none, "").unwrap_err();
        assert!(err.contains("files, reftable"), "{err}");
        // API mode creates no repositories.
        let api = env(&[("APISERVER_KEY", "k")], None);
        let err = with_file(&["--default-object-format", "sha256"], &api, "").unwrap_err();
        assert!(err.contains("API mode"), "{err}");
        assert!(with_file(&[], &api, "").is_ok());
    }

    #[test]
    fn a_misspelt_variable_is_refused_with_a_suggestion() {
        let err = with_file(&[], &env(&[("GITMOUTH_MAX_SESION", "3")], None), "").unwrap_err();
        assert!(
            err.contains("GITMOUTH_MAX_SESION in the environment")
                && err.contains("GITMOUTH_MAX_SESSIONS?"),
            "{err}"
        );
        let err = with_file(&[], &env(&[], Some("GITMOUTH_LOGLEVEL=debug\n")), "").unwrap_err();
        assert!(err.contains("./.env line 1"), "{err}");
        // The original's public key variable is known (the key is derived).
        assert!(
            with_file(
                &[],
                &env(&[("GITMOUTH_PUBLIC_KEY", "certs/server.key.pub")], None),
                ""
            )
            .is_ok()
        );
    }

    #[test]
    fn a_dotenv_that_does_not_parse_is_an_error() {
        let err = Env::new(
            Vec::new(),
            Some("APISERVER_KEY=abc\nthis is not an assignment\n"),
        )
        .unwrap_err();
        assert!(err.contains(".env"), "{err}");
    }

    #[test]
    fn print_config_names_sources_and_masks_secrets() {
        let e = env(
            &[
                ("APISERVER_KEY", "supersecret"),
                ("GITMOUTH_MAX_SESSIONS", "4"),
            ],
            Some("APISERVER_PORT=8080\n"),
        );
        let s = with_file(&[], &e, "idle-timeout = 60\n").unwrap();
        let text = render_config("gitmouth", &s, &e);
        assert!(!text.contains("supersecret"), "{text}");
        assert!(text.contains("APISERVER_KEY = \"********\""), "{text}");
        assert!(
            text.contains("max-sessions = 4  # the environment (GITMOUTH_MAX_SESSIONS)"),
            "{text}"
        );
        assert!(
            text.contains("idle-timeout = 60  # /etc/gm.toml line 1"),
            "{text}"
        );
        assert!(
            text.contains("APISERVER_PORT = \"8080\"  # ./.env line 1 (APISERVER_PORT)"),
            "{text}"
        );
        assert!(text.contains("mode = \"api\"  # default"), "{text}");
        // What it prints reads back as a configuration file (the
        // commented lines aside) with the same result.
        let again = with_file(&[], &e, &text).unwrap();
        assert_eq!(
            render_config("gitmouth", &again, &e)
                .lines()
                .skip(1)
                .filter(|l| l.starts_with("max-"))
                .count(),
            text.lines()
                .skip(1)
                .filter(|l| l.starts_with("max-"))
                .count()
        );
    }

    #[test]
    fn help_is_short_with_h_and_long_with_help_wrapped_and_naming_variables() {
        let short = command("gitmouth").render_help().to_string();
        let long = command("gitmouth").render_long_help().to_string();
        assert!(
            short.len() * 2 < long.len(),
            "{} vs {}",
            short.len(),
            long.len()
        );
        for line in long.lines().chain(short.lines()) {
            assert!(line.chars().count() <= 100, "too long: {line:?}");
        }
        for var in [
            "GITMOUTH_MAX_STARTUPS",
            "GITMOUTH_PORT",
            "GITMOUTH_PRIVATE_KEY",
            "APISERVER_KEY",
            "APISERVER_PROTOCOL",
            "APISERVER_HOSTNAME",
            "APISERVER_PORT",
            "DYNOHOST_RENDEZVOUS_PORT",
            "APISERVER_CA_FILE",
            "DYNOHOST_TLS_VERIFY",
            "RUST_LOG",
            "file key: max-startups",
        ] {
            assert!(long.contains(var), "{var} missing from --help");
        }
        assert!(long.contains("--per-source-penalties [<yes|no>]"), "{long}");
    }
}
