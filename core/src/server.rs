//! The server session: one client connection, from version exchange to close.
//!
//! The drive loop, written once (every runtime does exactly this):
//!
//! ```text
//! let mut s = Session::new(config, seed, now);
//! loop {
//!     write s.transmit() to the socket, then s.consume_transmit(n);
//!     while let Some(out) = s.poll_output() { perform it }
//!     if s.is_finished() { close the socket; break }
//!     wait for: the socket readable (if s.wants_read()), writable (if
//!     transmit is non-empty), s.poll_timeout(), or a result of an output;
//!     feed what happened: s.handle_input(now, Input::…)
//! }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::link::{Link, Upper};
use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::hostkey::HostKey;
use crate::transport::{Role, Transport, TransportConfig};
use crate::wire::{self, Parser, numbers};

/// Everything a server session needs to know, shared by all connections.
pub struct ServerConfig {
    /// Transport algorithms and limits.
    pub transport: Arc<TransportConfig>,
    /// Host keys, in preference order.
    pub host_keys: Arc<[HostKey]>,
    /// Time from connect to successful authentication (OpenSSH `LoginGraceTime`).
    pub login_grace: Duration,
    /// Authentication attempts per connection (OpenSSH `MaxAuthTries`).
    pub max_auth_attempts: u32,
}

impl ServerConfig {
    /// The configuration the command line and environment describe.
    pub fn from_settings(settings: &crate::config::Settings, host_keys: Vec<HostKey>) -> Self {
        let transport = TransportConfig {
            rekey_bytes: settings.rekey_limit,
            rekey_interval: settings.rekey_interval,
            ..TransportConfig::default()
        };
        Self {
            transport: Arc::new(transport),
            host_keys: host_keys.into(),
            login_grace: settings.login_grace,
            max_auth_attempts: settings.max_auth_tries,
        }
    }

    /// Defaults around the given host keys.
    pub fn new(host_keys: Vec<HostKey>) -> Self {
        Self {
            transport: Arc::new(TransportConfig::default()),
            host_keys: host_keys.into(),
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
        }
    }
}

/// Something that happened, fed to [`Session::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from the client.
    Received(&'a [u8]),
    /// The client closed the connection (or reading failed).
    PeerClosed,
    /// The instant given by [`Session::poll_timeout`] has come.
    Timeout,
}

/// Something the runtime must do, from [`Session::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The session is over: flush [`Session::transmit`], then close.
    Close(CloseReason),
}

/// One client connection.
pub struct Session {
    link: Link,
    upper: ServerUpper,
}

struct ServerUpper {
    config: Arc<ServerConfig>,
    state: State,
    deadline: Option<Instant>,
    attempts: u32,
    outputs: VecDeque<Output>,
    close_reported: bool,
}

enum State {
    /// Before the first key exchange completes.
    Handshake,
    /// Waiting for SERVICE_REQUEST "ssh-userauth".
    AwaitService,
    /// Authentication requests are answered.
    Authenticating,
}

impl Session {
    /// A session for a client that has just connected.
    pub fn new(config: Arc<ServerConfig>, seed: [u8; 32], now: Instant) -> Self {
        let role = Role::Server {
            host_keys: config.host_keys.clone(),
        };
        let t = Transport::new(role, config.transport.clone(), seed, now);
        let deadline = Some(now + config.login_grace);
        Self {
            link: Link::new(t, false),
            upper: ServerUpper {
                config,
                state: State::Handshake,
                deadline,
                attempts: 0,
                outputs: VecDeque::new(),
                close_reported: false,
            },
        }
    }

    /// Feeds one event.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Received(data) => self.link.receive(now, data, &mut self.upper),
            Input::PeerClosed => self.link.t.close_silently(CloseReason::PeerClosed),
            Input::Timeout => {
                self.link.t.handle_timeout(now);
                if self.upper.deadline.is_some_and(|d| now >= d) {
                    self.upper.deadline = None;
                    tracing::info!("login grace time exceeded");
                    self.link
                        .t
                        .disconnect(DisconnectReason::ByApplication, "login grace time exceeded");
                }
            }
        }
    }

    /// The next thing for the runtime to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(reason) = self.link.t.close_reason()
            && !self.upper.close_reported
        {
            self.upper.close_reported = true;
            self.upper.outputs.push_back(Output::Close(reason.clone()));
        }
        self.upper.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.link.t.is_closed() {
            return None;
        }
        [self.link.t.poll_timeout(), self.upper.deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Bytes to write to the client.
    pub fn transmit(&self) -> &[u8] {
        self.link.t.pending()
    }

    /// Marks `n` bytes of [`Session::transmit`] as written.
    pub fn consume_transmit(&mut self, n: usize) {
        self.link.t.consume(n);
    }

    /// Whether to read from the client now. False while our replies pile up
    /// unread (so a client that floods requests without reading the answers
    /// is not served) and once the session is over.
    pub fn wants_read(&self) -> bool {
        !self.link.t.is_closed() && self.link.t.pending().len() < HIGH_WATER
    }

    /// Whether the session has ended and everything has been transmitted.
    pub fn is_finished(&self) -> bool {
        self.link.t.is_closed() && self.link.t.pending().is_empty()
    }

    /// The transport, for tests and logs.
    pub fn transport(&self) -> &Transport {
        &self.link.t
    }
}

/// Outgoing bytes above which we stop reading from the client.
const HIGH_WATER: usize = 1024 * 1024;

impl Upper for ServerUpper {
    fn on_established(&mut self, _t: &mut Transport, _now: Instant) {
        self.state = State::AwaitService;
    }

    fn on_message(&mut self, t: &mut Transport, _now: Instant, _seq: u32, payload: &[u8]) {
        let number = payload[0];
        match (&self.state, number) {
            (State::AwaitService, numbers::SERVICE_REQUEST) => {
                let mut p = Parser::new(payload);
                let service = p.u8().and_then(|_| p.string());
                if service == Ok(b"ssh-userauth".as_slice()) && p.finish().is_ok() {
                    t.send(|out| {
                        wire::put_u8(out, numbers::SERVICE_ACCEPT);
                        wire::put_string(out, b"ssh-userauth");
                    });
                    self.state = State::Authenticating;
                } else {
                    t.disconnect(
                        DisconnectReason::ServiceNotAvailable,
                        "service not available",
                    );
                }
            }
            (State::Authenticating, numbers::USERAUTH_REQUEST) => {
                self.attempts += 1;
                if self.attempts > self.config.max_auth_attempts {
                    t.disconnect(
                        DisconnectReason::NoMoreAuthMethods,
                        "too many authentication failures",
                    );
                    return;
                }
                t.send(|out| {
                    wire::put_u8(out, numbers::USERAUTH_FAILURE);
                    wire::put_name_list(out, ["publickey"]);
                    wire::put_bool(out, false);
                });
            }
            (_, numbers::EXT_INFO) => {}
            _ => {
                let name = wire::msg_info(number).map_or("unknown message", |m| m.name);
                t.disconnect(
                    DisconnectReason::ProtocolError,
                    &format!("unexpected {name}"),
                );
            }
        }
    }
}
