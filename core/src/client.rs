//! The client role: an SSH client on the same transport, for tests, fuzzing
//! and benchmarks (RFC 4252 and RFC 4254, client side, one session channel).
//!
//! It does what it is told and reports what it receives as events; it takes
//! no decisions of its own beyond answering the protocol, so tests can make
//! it misbehave with [`Client::send_raw`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ssh_encoding::Encode;
use ssh_key::{PrivateKey, PublicKey};

use crate::connection::msg::{ChannelMsg, Request};
use crate::link::{Link, Upper};
use crate::transport::disconnect::CloseReason;
use crate::transport::hostkey::HostKeyAlg;
use crate::transport::{Role, Transport, TransportConfig};
use crate::wire::{self, Parser, numbers};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport algorithms and limits.
    pub transport: Arc<TransportConfig>,
    /// Host-key algorithms to accept, in preference order.
    pub host_key_algs: Vec<HostKeyAlg>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            transport: Arc::new(TransportConfig::default()),
            host_key_algs: HostKeyAlg::ALL.to_vec(),
        }
    }
}

/// Something the client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first key exchange completed.
    Established,
    /// SERVICE_ACCEPT.
    ServiceAccepted,
    /// USERAUTH_FAILURE.
    AuthFailure {
        /// Methods that can continue.
        methods: String,
        /// Partial success.
        partial: bool,
    },
    /// USERAUTH_SUCCESS.
    AuthSuccess,
    /// USERAUTH_PK_OK.
    PkOk,
    /// USERAUTH_BANNER.
    Banner(String),
    /// The session channel opened.
    ChannelOpened,
    /// The channel was refused.
    ChannelOpenFailed {
        /// Reason code.
        reason: u32,
        /// Description.
        description: String,
    },
    /// A reply to a channel request.
    ChannelReply(bool),
    /// A reply to a global request.
    GlobalReply(bool),
    /// The server sent a global request (a keepalive); answered already.
    GlobalRequest(String),
    /// Channel data (stdout).
    Data(Vec<u8>),
    /// Extended channel data (stderr).
    ExtendedData(Vec<u8>),
    /// The server will send no more data.
    Eof,
    /// The server closed the channel.
    Closed,
    /// exit-status.
    ExitStatus(u32),
    /// exit-signal.
    ExitSignal(String),
    /// The server's window grew.
    WindowAdjusted(u32),
    /// Any other message (its number).
    Other(u8),
}

/// Input for [`Client::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes from the server.
    Received(&'a [u8]),
    /// The connection ended.
    PeerClosed,
    /// Time passed.
    Timeout,
}

/// An SSH client connection.
pub struct Client {
    link: Link,
    upper: ClientUpper,
}

struct ClientUpper {
    events: VecDeque<Event>,
    /// Server channel id once open.
    remote: Option<u32>,
    /// What we may still send.
    remote_window: u64,
    remote_max: usize,
    /// What the server may still send us.
    local_window: u32,
    initial_window: u32,
    /// The maximum packet size we announced for our channel 0.
    local_max: usize,
    /// Data the server sent on our channel 0 past our window or our
    /// maximum packet size ([`Client::flow_violations`]).
    flow_violations: Vec<String>,
    /// Reopen our window automatically as data arrives.
    pub auto_window: bool,
    /// The key blobs of the server's `hostkeys-00@openssh.com`, once it
    /// came (an empty list if it was malformed).
    host_keys_announced: Option<Vec<Vec<u8>>>,
    /// The body of the latest REQUEST_SUCCESS (after the message number).
    global_reply: Vec<u8>,
}

impl Client {
    /// A client that has just connected.
    pub fn new(config: &ClientConfig, seed: [u8; 32], now: Instant) -> Self {
        let role = Role::Client {
            host_key_algs: config.host_key_algs.clone(),
        };
        let t = Transport::new(role, config.transport.clone(), seed, now);
        Self {
            link: Link::new(t, true),
            upper: ClientUpper {
                events: VecDeque::new(),
                remote: None,
                remote_window: 0,
                remote_max: 0,
                local_window: 0,
                initial_window: 0,
                local_max: usize::MAX,
                flow_violations: Vec::new(),
                auto_window: true,
                host_keys_announced: None,
                global_reply: Vec::new(),
            },
        }
    }

    /// Feeds one event.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Received(data) => self.link.receive(now, data, &mut self.upper),
            Input::PeerClosed => self.link.t.close_silently(CloseReason::PeerClosed),
            Input::Timeout => self.link.t.handle_timeout(now),
        }
    }

    /// The next received event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.upper.events.pop_front()
    }

    /// When [`Input::Timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.t.poll_timeout()
    }

    /// Bytes to send to the server.
    pub fn transmit(&self) -> &[u8] {
        self.link.t.pending()
    }

    /// Marks `n` bytes as sent.
    pub fn consume_transmit(&mut self, n: usize) {
        self.link.t.consume(n);
    }

    /// The transport (session id, negotiated algorithms, close reason).
    pub fn transport(&self) -> &Transport {
        &self.link.t
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.link.t.is_closed()
    }

    /// Whether our window is reopened automatically (default true).
    pub fn set_auto_window(&mut self, on: bool) {
        self.upper.auto_window = on;
    }

    /// How much channel data we may still send.
    pub fn send_window(&self) -> u64 {
        self.upper.remote_window
    }

    /// Starts a re-key now.
    pub fn rekey(&mut self, now: Instant) {
        self.link.t.start_kex(now);
    }

    /// Sends an arbitrary payload (message number first), for negative tests.
    pub fn send_raw(&mut self, payload: &[u8]) {
        self.link.t.send(|out| out.extend_from_slice(payload));
    }

    /// Sends an arbitrary payload at once, even in the middle of a key
    /// exchange (which a well-behaved client never does).
    pub fn send_raw_now(&mut self, payload: &[u8]) {
        self.link.t.send_unchecked(payload);
    }

    /// The host keys the server announced after authentication
    /// (`hostkeys-00@openssh.com`), if it did. The announcement is kept
    /// here rather than reported as an [`Event`]: it wants no answer.
    pub fn host_keys_announced(&self) -> Option<&[Vec<u8>]> {
        self.upper.host_keys_announced.as_deref()
    }

    /// The body of the latest REQUEST_SUCCESS, after its message number
    /// (the proofs that answer a `hostkeys-prove-00@openssh.com`).
    pub fn global_reply(&self) -> &[u8] {
        &self.upper.global_reply
    }

    /// A global request with type-specific fields `extra` already encoded.
    pub fn global_request(&mut self, name: &str, want_reply: bool, extra: &[u8]) {
        self.link.t.send(|out| {
            wire::put_u8(out, numbers::GLOBAL_REQUEST);
            wire::put_string(out, name.as_bytes());
            wire::put_bool(out, want_reply);
            out.extend_from_slice(extra);
        });
    }

    /// Asks the server to prove it holds these host keys
    /// (`hostkeys-prove-00@openssh.com`, wanting a reply).
    pub fn prove_host_keys(&mut self, blobs: &[Vec<u8>]) {
        let mut extra = Vec::new();
        for blob in blobs {
            wire::put_string(&mut extra, blob);
        }
        self.global_request(crate::connection::hostkeys::HOSTKEYS_PROVE, true, &extra);
    }

    /// SERVICE_REQUEST.
    pub fn request_service(&mut self, name: &str) {
        self.link.t.send(|out| {
            wire::put_u8(out, numbers::SERVICE_REQUEST);
            wire::put_string(out, name.as_bytes());
        });
    }

    /// USERAUTH_REQUEST with method `none`.
    pub fn auth_none(&mut self, user: &str) {
        self.link.t.send(|out| {
            wire::put_u8(out, numbers::USERAUTH_REQUEST);
            wire::put_string(out, user.as_bytes());
            wire::put_string(out, b"ssh-connection");
            wire::put_string(out, b"none");
        });
    }

    /// A publickey query: is this key acceptable? (No signature.)
    pub fn auth_query(&mut self, user: &str, key: &PublicKey, alg: &str) {
        let blob = key.key_data().encode_vec().unwrap_or_default();
        self.link.t.send(|out| {
            wire::put_u8(out, numbers::USERAUTH_REQUEST);
            wire::put_string(out, user.as_bytes());
            wire::put_string(out, b"ssh-connection");
            wire::put_string(out, b"publickey");
            wire::put_bool(out, false);
            wire::put_string(out, alg.as_bytes());
            wire::put_string(out, &blob);
        });
    }

    /// A signed publickey request with `key` (ed25519 or ECDSA; its own
    /// algorithm name).
    pub fn auth_publickey(&mut self, user: &str, key: &PrivateKey) {
        let public = key.public_key();
        let alg = public.algorithm().as_str().to_owned();
        let blob = public.key_data().encode_vec().unwrap_or_default();
        self.auth_signed(user, &alg, &blob, key);
    }

    /// A signed publickey request that claims `blob` and `alg` but is signed
    /// by `signer` (the two differ only in attack tests).
    pub fn auth_signed(&mut self, user: &str, alg: &str, blob: &[u8], signer: &PrivateKey) {
        let session_id = self.link.t.session_id().unwrap_or_default().to_vec();
        let data = crate::auth::signed_data(&session_id, user.as_bytes(), alg, blob);
        let signature: ssh_key::Signature = match signature::Signer::try_sign(signer, &data) {
            Ok(s) => s,
            Err(_) => return,
        };
        let sig_blob = signature.encode_vec().unwrap_or_default();
        self.link.t.send(|out| {
            wire::put_u8(out, numbers::USERAUTH_REQUEST);
            wire::put_string(out, user.as_bytes());
            wire::put_string(out, b"ssh-connection");
            wire::put_string(out, b"publickey");
            wire::put_bool(out, true);
            wire::put_string(out, alg.as_bytes());
            wire::put_string(out, blob);
            wire::put_string(out, &sig_blob);
        });
    }

    /// Every time the server sent data on our channel 0 past the window
    /// we gave it or larger than our maximum packet size (RFC 4254 §5.2):
    /// empty, for a server that keeps the rules.
    pub fn flow_violations(&self) -> &[String] {
        &self.upper.flow_violations
    }

    /// Opens the session channel with our window and maximum packet size.
    pub fn open_session(&mut self, window: u32, max_packet: u32) {
        self.upper.local_window = window;
        self.upper.initial_window = window;
        self.upper.local_max = max_packet as usize;
        self.link.t.send(|out| {
            ChannelMsg::Open {
                kind: b"session",
                sender: 0,
                window,
                max_packet,
                extra: b"",
            }
            .encode(out)
        });
    }

    /// A channel request with type-specific fields `extra` already encoded.
    pub fn channel_request(&mut self, kind: &str, want_reply: bool, extra: &[u8]) {
        let remote = self.upper.remote.unwrap_or(0);
        self.link.t.send(|out| {
            ChannelMsg::Request {
                recipient: remote,
                want_reply,
                request: Request::Other {
                    kind: kind.as_bytes(),
                    data: extra,
                },
            }
            .encode(out)
        });
    }

    /// `exec`.
    pub fn exec(&mut self, command: &[u8], want_reply: bool) {
        self.request(want_reply, Request::Exec { command });
    }

    /// `env`.
    pub fn env(&mut self, name: &str, value: &str, want_reply: bool) {
        let (name, value) = (name.as_bytes(), value.as_bytes());
        self.request(want_reply, Request::Env { name, value });
    }

    /// A typed channel request.
    fn request(&mut self, want_reply: bool, request: Request<'_>) {
        let recipient = self.upper.remote.unwrap_or(0);
        self.link.t.send(|out| {
            ChannelMsg::Request {
                recipient,
                want_reply,
                request,
            }
            .encode(out)
        });
    }

    /// Sends as much of `data` as the server's window allows; returns how
    /// much was sent.
    pub fn send_data(&mut self, data: &[u8]) -> usize {
        let Some(remote) = self.upper.remote else {
            return 0;
        };
        let mut sent = 0;
        while sent < data.len() && self.upper.remote_window > 0 {
            let room = usize::try_from(self.upper.remote_window).unwrap_or(usize::MAX);
            let n = (data.len() - sent)
                .min(self.upper.remote_max.max(1))
                .min(room);
            let chunk = &data[sent..sent + n];
            self.link.t.send(|out| {
                ChannelMsg::Data {
                    recipient: remote,
                    data: chunk,
                }
                .encode(out)
            });
            self.upper.remote_window -= n as u64;
            sent += n;
        }
        sent
    }

    /// CHANNEL_EOF.
    pub fn send_eof(&mut self) {
        let remote = self.upper.remote.unwrap_or(0);
        self.link
            .t
            .send(|out| ChannelMsg::Eof { recipient: remote }.encode(out));
    }

    /// CHANNEL_CLOSE.
    pub fn send_close(&mut self) {
        let remote = self.upper.remote.unwrap_or(0);
        self.link
            .t
            .send(|out| ChannelMsg::Close { recipient: remote }.encode(out));
    }

    /// Grows the server's window by `n`.
    pub fn adjust_window(&mut self, n: u32) {
        let remote = self.upper.remote.unwrap_or(0);
        self.upper.local_window = self.upper.local_window.saturating_add(n);
        self.link.t.send(|out| {
            ChannelMsg::WindowAdjust {
                recipient: remote,
                bytes: n,
            }
            .encode(out)
        });
    }
}

impl Upper for ClientUpper {
    fn on_established(&mut self, _t: &mut Transport, _now: Instant) {
        self.events.push_back(Event::Established);
    }

    fn on_message(&mut self, t: &mut Transport, now: Instant, _seq: u32, payload: &[u8]) {
        let number = payload[0];
        let mut p = Parser::new(payload);
        let _ = p.u8();
        let event = match number {
            numbers::SERVICE_ACCEPT => Event::ServiceAccepted,
            numbers::USERAUTH_FAILURE => {
                let methods = p
                    .name_list()
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_default();
                Event::AuthFailure {
                    methods,
                    partial: p.bool().unwrap_or(false),
                }
            }
            numbers::USERAUTH_SUCCESS => {
                t.allow_rekey(now);
                Event::AuthSuccess
            }
            numbers::USERAUTH_PK_OK => Event::PkOk,
            numbers::USERAUTH_BANNER => Event::Banner(p.utf8().unwrap_or_default().to_owned()),
            numbers::GLOBAL_REQUEST => {
                // Answered as OpenSSH's client answers a server's
                // keepalive@openssh.com: with a failure, which proves it
                // is alive all the same.
                let name = p.utf8().unwrap_or_default().to_owned();
                if p.bool().unwrap_or(false) {
                    t.send(|out| wire::put_u8(out, numbers::REQUEST_FAILURE));
                }
                if name == crate::connection::hostkeys::HOSTKEYS {
                    // Kept, not reported: see `Client::host_keys_announced`.
                    self.host_keys_announced = Some(
                        crate::connection::hostkeys::parse_key_blobs(p.rest()).unwrap_or_default(),
                    );
                    return;
                }
                Event::GlobalRequest(name)
            }
            numbers::REQUEST_SUCCESS => {
                self.global_reply = p.rest().to_vec();
                Event::GlobalReply(true)
            }
            numbers::REQUEST_FAILURE => Event::GlobalReply(false),
            n if crate::connection::is_channel_message(n) => match ChannelMsg::parse(payload) {
                Ok(msg) => self.on_channel_message(t, msg),
                Err(_) => Event::Other(n),
            },
            other => Event::Other(other),
        };
        self.events.push_back(event);
    }
}

impl ClientUpper {
    /// A channel message from the server (we have one channel).
    fn on_channel_message(&mut self, t: &mut Transport, msg: ChannelMsg<'_>) -> Event {
        match msg {
            ChannelMsg::OpenConfirmation {
                sender,
                window,
                max_packet,
                ..
            } => {
                self.remote = Some(sender);
                self.remote_window = u64::from(window);
                self.remote_max = max_packet as usize;
                Event::ChannelOpened
            }
            ChannelMsg::OpenFailure {
                reason,
                description,
                ..
            } => Event::ChannelOpenFailed {
                reason,
                description: String::from_utf8_lossy(description).into_owned(),
            },
            ChannelMsg::Success { .. } => Event::ChannelReply(true),
            ChannelMsg::Failure { .. } => Event::ChannelReply(false),
            ChannelMsg::WindowAdjust { bytes, .. } => {
                self.remote_window += u64::from(bytes);
                Event::WindowAdjusted(bytes)
            }
            ChannelMsg::Data {
                data, recipient, ..
            }
            | ChannelMsg::ExtendedData {
                data, recipient, ..
            } => {
                if recipient == 0 && data.len() > self.local_window as usize {
                    self.flow_violations.push(format!(
                        "{} bytes of data past a window of {}",
                        data.len(),
                        self.local_window
                    ));
                }
                if recipient == 0 && data.len() > self.local_max {
                    self.flow_violations.push(format!(
                        "{} bytes of data in one packet, over our maximum of {}",
                        data.len(),
                        self.local_max
                    ));
                }
                self.local_window = self.local_window.saturating_sub(data.len() as u32);
                if self.auto_window && self.local_window < self.initial_window / 2 {
                    let bytes = self.initial_window - self.local_window;
                    self.local_window += bytes;
                    let recipient = self.remote.unwrap_or(0);
                    t.send(|out| ChannelMsg::WindowAdjust { recipient, bytes }.encode(out));
                }
                if matches!(msg, ChannelMsg::ExtendedData { .. }) {
                    Event::ExtendedData(data.to_vec())
                } else {
                    Event::Data(data.to_vec())
                }
            }
            ChannelMsg::Eof { .. } => Event::Eof,
            ChannelMsg::Close { .. } => Event::Closed,
            ChannelMsg::Request { request, .. } => match request {
                Request::ExitStatus { code } => Event::ExitStatus(code),
                Request::ExitSignal { name, .. } => {
                    Event::ExitSignal(String::from_utf8_lossy(name).into_owned())
                }
                _ => Event::Other(numbers::CHANNEL_REQUEST),
            },
            ChannelMsg::Open { .. } => Event::Other(numbers::CHANNEL_OPEN),
        }
    }
}
