//! What a server session is configured with: plain values, shared by every
//! connection (the runtime builds them from flags and files).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::api::ApiServer;
use crate::auth::pubkey::UserKeyAlg;
use crate::transport::TransportConfig;
use crate::transport::hostkey::{HostKey, HostKeys};

/// Where users and repositories come from.
pub enum Mode {
    /// Keys from an `authorized_keys` file, looked up by the runtime
    /// ([`Output::LookupKey`]); git runs locally on repositories under
    /// `repos`.
    Standalone {
        /// The directory holding `<name>.git` repositories.
        repos: PathBuf,
    },
    /// Keys, access and dynos from an Openruko platform.
    Api {
        /// The API server.
        api: ApiServer,
        /// TLS port of every dyno host (`DYNOHOST_RENDEZVOUS_PORT`).
        rendezvous_port: u16,
    },
}

impl Mode {
    /// How users' messages name what they push to: repositories in
    /// standalone mode, apps (the original's wording) in API mode.
    pub fn wording(&self) -> crate::app::messages::Wording {
        match self {
            Mode::Standalone { .. } => crate::app::messages::Wording::Repositories,
            Mode::Api { .. } => crate::app::messages::Wording::Apps,
        }
    }
}

/// Everything a server session needs to know, shared by all connections.
pub struct ServerConfig {
    /// Transport algorithms and limits.
    pub transport: Arc<TransportConfig>,
    /// Host keys: those in service, in preference order, and the retiring
    /// ones.
    pub host_keys: HostKeys,
    /// Time from connect to successful authentication (OpenSSH `LoginGraceTime`).
    pub login_grace: Duration,
    /// Authentication attempts per connection (OpenSSH `MaxAuthTries`).
    pub max_auth_attempts: u32,
    /// User-key algorithms accepted (OpenSSH `PubkeyAcceptedAlgorithms`);
    /// keep `transport.server_sig_algs` the same list.
    pub pubkey_algs: Vec<UserKeyAlg>,
    /// Where users push to (host and port), for messages.
    pub public_host: crate::app::messages::PublicHost,
    /// How long a stopped command has between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// How long commands in progress may go on once the server drains
    /// (`--drain-timeout`), before they are stopped as at shutdown.
    pub drain_timeout: Duration,
    /// After authentication: how long the connection may see no bytes in
    /// either direction.
    pub idle_timeout: Duration,
    /// After authentication: how long a connection may go without an open
    /// channel before it is closed (OpenSSH `UnusedConnectionTimeout`;
    /// zero: no limit).
    pub unused_timeout: Duration,
    /// Authenticated connections one user may hold at once (zero: no
    /// limit): past it, a new one is ended right after authentication.
    pub per_user_max_connections: u32,
    /// After authentication: how long a connection may last in all.
    pub max_session: Duration,
    /// After authentication: how long the client may stay silent before
    /// a `keepalive@openssh.com` probes it (zero: never).
    pub keepalive_interval: Duration,
    /// Probes left unanswered after which the client is taken for dead.
    pub keepalive_count_max: u32,
    /// Session channels a connection may have open at once (OpenSSH
    /// `MaxSessions`).
    pub max_sessions: u32,
    /// How long a push waits for the push lock another push holds
    /// (`--push-lock-wait`), with a progress line every few seconds;
    /// zero: it is refused at once.
    pub push_lock_wait: Duration,
    /// Standalone mode: the format of a repository a push creates, unless
    /// the access file's rule for it names an object format
    /// (`--default-object-format`, `--default-ref-format`).
    pub repo_format: crate::app::repo_format::RepoFormat,
    /// Users and repositories.
    pub mode: Mode,
}

impl ServerConfig {
    /// Standalone defaults around the given host keys.
    pub fn standalone(host_keys: Vec<HostKey>, repos: PathBuf) -> Self {
        Self {
            transport: Arc::new(TransportConfig::default()),
            host_keys: host_keys.into(),
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
            pubkey_algs: UserKeyAlg::ALL.to_vec(),
            public_host: crate::app::messages::PublicHost {
                host: "localhost".into(),
                port: 22,
            },
            kill_grace: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            unused_timeout: Duration::from_secs(300),
            per_user_max_connections: 100,
            max_session: Duration::from_secs(7200),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count_max: 3,
            max_sessions: 10,
            push_lock_wait: Duration::ZERO,
            repo_format: Default::default(),
            mode: Mode::Standalone { repos },
        }
    }
}
