//! The connection protocol, server side (RFC 4254): session channels,
//! their windows and requests.
//!
//! It knows nothing of git. It keeps the channel table, enforces the
//! protocol (windows, EOF and CLOSE order, one command per channel, the
//! session limit) and hands the session what a command needs to know as
//! [`Event`]s: env, exec, signal, close. The session answers with writes,
//! notices, exits; the layer does the framing, the windows and the close
//! handshake.
//!
//! Several session channels may be open at once, up to a limit (OpenSSH's
//! `MaxSessions`); one past it is refused with
//! `SSH_OPEN_ADMINISTRATIVELY_PROHIBITED` and the others go on. The
//! connection does not end when a channel closes: the client ends it.

mod channel;
pub mod hostkeys;
pub mod msg;

use std::time::{Duration, Instant};

use crate::transport::Transport;
use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::packet::Lend;
use crate::wire::{self, numbers};

use self::channel::{Channel, ChannelTimer, MAX_PACKET, WINDOW};
use self::msg::{ChannelMsg, Request, open_failure};

/// One of the command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output, relayed as channel data.
    Stdout,
    /// Standard error, relayed as extended data (type 1).
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Code(u32),
    /// A signal ended it (the name without "SIG", as RFC 4254 §6.10 wants).
    Signal {
        /// Signal name, e.g. "TERM".
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

/// As logged: `0`, `128`, `SIGTERM`, `SIGSEGV (core dumped)`.
impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "{code}"),
            ExitStatus::Signal { name, core_dumped } => {
                write!(f, "SIG{name}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

impl ExitStatus {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

/// Our number for a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

/// What a channel asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A session channel was opened.
    Opened(ChannelId),
    /// An `env` request before the command: the session decides, then
    /// answers with [`Connection::reply`].
    Env {
        /// The channel.
        ch: ChannelId,
        /// The variable's name.
        name: &'a [u8],
        /// Its value.
        value: &'a [u8],
        /// Whether the client wants an answer.
        want_reply: bool,
    },
    /// The channel's one command (already accepted on the wire): `None` for
    /// a shell.
    Exec {
        /// The channel.
        ch: ChannelId,
        /// The command line.
        command: Option<&'a [u8]>,
    },
    /// The client asks for the command to be signalled (answered already).
    Signal {
        /// The channel.
        ch: ChannelId,
        /// The signal's name.
        name: &'a [u8],
    },
    /// The client closed the channel before the command was over (our
    /// CLOSE went back): stop the command.
    Closed(ChannelId),
}

/// How long to wait for the client's CHANNEL_CLOSE after ours.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Most `env` requests we look at on one channel.
const MAX_ENV: u32 = 32;
/// The smallest maximum packet size a peer may give a channel; a larger
/// one than ours is clamped to what we send anyway.
pub const MIN_REMOTE_PACKET: u32 = 9;

/// The channels of one connection.
pub struct Connection {
    channels: Vec<Channel>,
    /// Our number for the next channel; numbers are never reused, so a late
    /// message for a channel we forgot is told from a bogus one.
    next_local: u32,
    max_sessions: u32,
}

impl Connection {
    /// An empty table allowing `max_sessions` channels at once.
    pub fn new(max_sessions: u32) -> Self {
        Self {
            channels: Vec::new(),
            next_local: 0,
            max_sessions,
        }
    }

    fn find(&self, ch: ChannelId) -> Option<&Channel> {
        self.channels.iter().find(|c| c.local == ch.0)
    }

    fn find_mut(&mut self, ch: ChannelId) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.local == ch.0)
    }

    /// The channels in the table, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels.iter().map(|c| ChannelId(c.local))
    }

    /// How many channels are in the table.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Handles one channel message (numbers 90 to 100); a violation of the
    /// protocol ends the connection.
    pub fn on_message<'a>(&mut self, t: &mut Transport, payload: &'a [u8]) -> Option<Event<'a>> {
        let Ok(msg) = ChannelMsg::parse(payload) else {
            let name = wire::msg_info(payload[0]).map_or("channel message", |m| m.name);
            tracing::info!(message = name, "malformed channel message");
            t.disconnect(
                DisconnectReason::ProtocolError,
                &format!("malformed {name}"),
            );
            return None;
        };
        match self.dispatch(t, msg) {
            Ok(event) => event,
            Err(why) => {
                tracing::info!(why, "channel protocol violation");
                t.disconnect(DisconnectReason::ProtocolError, why);
                None
            }
        }
    }

    fn dispatch<'a>(
        &mut self,
        t: &mut Transport,
        msg: ChannelMsg<'a>,
    ) -> Result<Option<Event<'a>>, &'static str> {
        if let ChannelMsg::Open {
            kind,
            sender,
            window,
            max_packet,
            ..
        } = msg
        {
            return Ok(self.on_open(t, kind, sender, window, max_packet));
        }
        let recipient = msg.recipient().unwrap_or(u32::MAX);
        let Some(ch) = self.channels.iter_mut().find(|c| c.local == recipient) else {
            if recipient < self.next_local {
                // A channel we gave up waiting for (its CLOSE never came in
                // time): whatever the client still says about it is moot.
                tracing::debug!(channel = recipient, "message for a forgotten channel");
                return Ok(None);
            }
            return Err("message for an unknown channel");
        };
        let id = ChannelId(ch.local);
        if ch.abandoned {
            // We gave up waiting for its CLOSE: too late to matter now.
            return Ok(None);
        }
        match msg {
            ChannelMsg::WindowAdjust { bytes, .. } => ch.on_window_adjust(bytes)?,
            ChannelMsg::Data { data, .. } => ch.on_data(data, false)?,
            ChannelMsg::ExtendedData { data, .. } => ch.on_data(data, true)?,
            ChannelMsg::Eof { .. } => ch.eof_in = true,
            ChannelMsg::Close { .. } => {
                if ch.on_close(t)? {
                    return Ok(Some(Event::Closed(id)));
                }
            }
            ChannelMsg::Request {
                want_reply,
                request,
                ..
            } => {
                if ch.close_in {
                    return Err("request after CLOSE");
                }
                return Ok(self.on_request(t, id, want_reply, request));
            }
            _ => return Err("unexpected channel message"),
        }
        Ok(None)
    }

    fn on_open<'a>(
        &mut self,
        t: &mut Transport,
        kind: &[u8],
        sender: u32,
        window: u32,
        max_packet: u32,
    ) -> Option<Event<'a>> {
        let refuse = |t: &mut Transport, reason: u32, why: &str| {
            t.send(|out| {
                ChannelMsg::OpenFailure {
                    recipient: sender,
                    reason,
                    description: why.as_bytes(),
                }
                .encode(out)
            });
        };
        if kind != b"session" {
            tracing::info!(kind = %crate::log_safe(kind), "channel type refused");
            let code = match kind {
                b"direct-tcpip" | b"forwarded-tcpip" | b"x11" | b"auth-agent@openssh.com" => {
                    open_failure::ADMINISTRATIVELY_PROHIBITED
                }
                _ => open_failure::UNKNOWN_CHANNEL_TYPE,
            };
            refuse(t, code, "gitmouth only offers git over a session channel");
            return None;
        }
        if max_packet < MIN_REMOTE_PACKET {
            // A packet that small would carry a byte or two of data each: a
            // clone sent as hundreds of thousands of packets.
            tracing::info!(
                max_packet,
                "session channel refused: maximum packet size too small"
            );
            refuse(
                t,
                open_failure::ADMINISTRATIVELY_PROHIBITED,
                "maximum packet size below 9 bytes",
            );
            return None;
        }
        let full = self.channels.len() >= self.max_sessions as usize;
        let Some(next) = self.next_local.checked_add(1).filter(|_| !full) else {
            tracing::info!(
                open = self.channels.len(),
                max = self.max_sessions,
                "session channel refused: too many sessions on this connection"
            );
            refuse(
                t,
                open_failure::ADMINISTRATIVELY_PROHIBITED,
                "too many sessions on this connection",
            );
            return None;
        };
        let local = self.next_local;
        self.next_local = next;
        self.channels
            .push(Channel::new(local, sender, window, max_packet));
        t.send(|out| {
            ChannelMsg::OpenConfirmation {
                recipient: sender,
                sender: local,
                window: WINDOW,
                max_packet: MAX_PACKET,
            }
            .encode(out)
        });
        Some(Event::Opened(ChannelId(local)))
    }

    fn on_request<'a>(
        &mut self,
        t: &mut Transport,
        id: ChannelId,
        want_reply: bool,
        request: Request<'a>,
    ) -> Option<Event<'a>> {
        let ch = self.channels.iter_mut().find(|c| c.local == id.0)?;
        let recipient = ch.remote;
        match request {
            Request::Env { name, value } => {
                ch.env_requests += 1;
                if ch.started || ch.env_requests > MAX_ENV {
                    tracing::debug!(name = %crate::log_safe(name), "env request refused");
                    send_reply(t, recipient, want_reply, false);
                    return None;
                }
                Some(Event::Env {
                    ch: id,
                    name,
                    value,
                    want_reply,
                })
            }
            Request::Exec { .. } | Request::Shell => {
                // One command per channel, and none once we have closed it
                // (a shutdown or a time limit did): nothing may start then.
                let refused = ch.started || ch.close_out;
                if !refused {
                    ch.started = true;
                }
                send_reply(t, recipient, want_reply, !refused);
                let command = match request {
                    Request::Exec { command } => Some(command),
                    _ => None,
                };
                (!refused).then_some(Event::Exec { ch: id, command })
            }
            Request::Signal { name } => {
                send_reply(t, recipient, want_reply, true);
                Some(Event::Signal { ch: id, name })
            }
            // No terminals, subsystems, forwarding; unknown requests get a
            // failure (OpenSSH clients send keepalive@openssh.com here).
            other => {
                tracing::debug!(request = %crate::log_safe(other.kind()), "channel request refused");
                send_reply(t, recipient, want_reply, false);
                None
            }
        }
    }

    /// Answers a request, if the client wants an answer.
    pub fn reply(&mut self, t: &mut Transport, ch: ChannelId, want_reply: bool, ok: bool) {
        if let Some(c) = self.find(ch) {
            send_reply(t, c.remote, want_reply, ok);
        }
    }

    /// Relays the command's output: what the window allows now, the rest
    /// as the window opens.
    pub fn deliver(&mut self, t: &mut Transport, ch: ChannelId, stream: Stream, data: &[u8]) {
        if t.is_closed() {
            // Nobody reads it: dropped, not queued.
            return;
        }
        if let Some(c) = self.find_mut(ch) {
            c.deliver(t, stream, data);
        }
    }

    /// Lends room for up to `max` bytes of the command's output on
    /// `stream`, straight into the next data packets (see
    /// [`crate::transport::packet::PacketWriter::lend`]): no more than the
    /// client's window and [`Connection::read_limit`] allow, in packets no
    /// larger than the client accepts. `None` when nothing can go now
    /// (window shut, output queued, the channel or connection closing, a
    /// key exchange).
    pub fn lend(
        &mut self,
        t: &mut Transport,
        ch: ChannelId,
        stream: Stream,
        max: usize,
    ) -> Option<Lend> {
        if t.is_closed() {
            return None;
        }
        self.find(ch)?.lend(t, stream, max)
    }

    /// Sends the first `n` bytes read into `lend` on `stream`; returns how
    /// many were sent (0 if the lend is stale).
    pub fn commit(
        &mut self,
        t: &mut Transport,
        ch: ChannelId,
        stream: Stream,
        lend: &Lend,
        n: usize,
    ) -> usize {
        match self.find_mut(ch) {
            Some(c) => c.commit(t, stream, lend, n),
            None => 0,
        }
    }

    /// Queues a message of ours for the user's stderr, after what is queued.
    pub fn notice(&mut self, ch: ChannelId, text: Vec<u8>) {
        if let Some(c) = self.find_mut(ch) {
            c.queue(Stream::Stderr, text);
        }
    }

    /// Queues a message of ours for the command's stdout, after what is
    /// queued: git's `ERR` pkt-line, for a git still waiting for the
    /// server's first words ([`Connection::stdout_used`]).
    pub fn say_on_stdout(&mut self, ch: ChannelId, bytes: Vec<u8>) {
        if let Some(c) = self.find_mut(ch) {
            c.queue(Stream::Stdout, bytes);
        }
    }

    /// Whether anything went (or is queued to go) to the channel's stdout.
    pub fn stdout_used(&self, ch: ChannelId) -> bool {
        self.find(ch).is_some_and(|c| c.stdout_used)
    }

    /// Reports `status` once every queued byte is out, then closes our
    /// side (the first status set wins).
    pub fn exit(&mut self, ch: ChannelId, status: ExitStatus) {
        if let Some(c) = self.find_mut(ch) {
            c.set_exit(status);
        }
    }

    /// The exit status reported for the channel's command, if any.
    pub fn exit_status(&self, ch: ChannelId) -> Option<&ExitStatus> {
        self.find(ch).and_then(Channel::exit)
    }

    /// Client data waiting for the command.
    pub fn stdin(&self, ch: ChannelId) -> &[u8] {
        self.find(ch).map_or(&[], Channel::stdin)
    }

    /// Marks `n` bytes of [`Connection::stdin`] as taken by the command;
    /// the client's window reopens by as much at the next flush.
    pub fn consume_stdin(&mut self, ch: ChannelId, n: usize) {
        if let Some(c) = self.find_mut(ch) {
            c.consume_stdin(n);
        }
    }

    /// Whether the client sent EOF and every byte before it was taken.
    pub fn stdin_done(&self, ch: ChannelId) -> bool {
        self.find(ch)
            .is_some_and(|c| c.eof_in && c.stdin().is_empty())
    }

    /// Whether the client's data still has a reader: once not, it is
    /// counted against the window and dropped.
    pub fn set_accepts_input(&mut self, ch: ChannelId, accepts: bool) {
        if let Some(c) = self.find_mut(ch) {
            c.accepts_input = accepts;
        }
    }

    /// How much command output the channel can take now.
    pub fn read_limit(&self, ch: ChannelId) -> usize {
        self.find(ch).map_or(0, Channel::read_limit)
    }

    /// Whether the channel is closed both ways (or gone).
    pub fn is_closed(&self, ch: ChannelId) -> bool {
        self.find(ch).is_none_or(Channel::is_closed)
    }

    /// Whether neither side has closed the channel yet.
    pub fn is_open(&self, ch: ChannelId) -> bool {
        self.find(ch).is_some_and(|c| !c.close_in && !c.close_out)
    }

    /// Forgets a channel closed both ways.
    pub fn remove(&mut self, ch: ChannelId) {
        self.channels.retain(|c| c.local != ch.0);
    }

    /// Sends what every channel's window allows, reopens windows, reports
    /// exits and closes.
    pub fn flush(&mut self, t: &mut Transport, now: Instant) {
        if t.is_closed() {
            return;
        }
        for c in &mut self.channels {
            c.flush(t, now, CLOSE_WAIT);
        }
    }

    /// The earliest deadline of any channel.
    pub fn deadline(&self) -> Option<Instant> {
        self.channels.iter().filter_map(|c| c.timers.next()).min()
    }

    /// Gives up on channels whose client never answered our CLOSE. A client
    /// that ignores a close and has nothing else open is not coming back
    /// (Dropbear-style clients wait for the server instead): the connection
    /// ends then.
    pub fn on_timeout(&mut self, t: &mut Transport, now: Instant) {
        let mut gave_up = false;
        for c in &mut self.channels {
            if c.timers.expire(ChannelTimer::CloseWait, now) {
                c.abandoned = true;
                gave_up = true;
            }
        }
        let live = self.channels.iter().any(|c| !c.is_closed());
        if gave_up && !live {
            t.close_silently(CloseReason::Finished);
        }
    }
}

/// Whether a message number is the connection layer's (90 to 100).
pub fn is_channel_message(number: u8) -> bool {
    (numbers::CHANNEL_OPEN..=numbers::CHANNEL_FAILURE).contains(&number)
}

fn send_reply(t: &mut Transport, recipient: u32, want_reply: bool, ok: bool) {
    if !want_reply {
        return;
    }
    t.send(|out| {
        if ok {
            ChannelMsg::Success { recipient }.encode(out)
        } else {
            ChannelMsg::Failure { recipient }.encode(out)
        }
    });
}
