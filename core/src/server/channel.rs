//! The session channel, server side (RFC 4254 §5-6).
//!
//! One `session` channel per connection; every other channel type is
//! refused. Windows are honoured both ways: the client's window is
//! reopened only as fast as the command consumes its stdin, and the
//! command's output is read only while the client's window has room.
//! A window above 2^32-1 ends the connection (RFC 4254 §5.2).

use std::collections::VecDeque;
use std::time::Instant;

use crate::app::command::{self, parse_exec};
use crate::app::messages::{self, UserError};
use crate::transport::Transport;
use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::packet::MAX_PAYLOAD;
use crate::wire::{self, Parser, numbers};

use super::{CLOSE_WAIT, ExitStatus, ServerUpper, Stream};

/// The window we grant: as much as the command's stdin may have queued.
pub(super) const WINDOW: u32 = 2 * 1024 * 1024;
/// Largest data packet we accept (OpenSSH's session default).
pub(super) const MAX_PACKET: u32 = 32 * 1024;
/// Reopen the client's window once this much has been consumed.
const WINDOW_STEP: u32 = WINDOW / 4;
/// Most `env` requests we look at on one channel.
const MAX_ENV: u32 = 32;
/// Largest chunk we put in one data packet, whatever the client allows.
const MAX_CHUNK: usize = 32 * 1024;

/// OPEN_FAILURE reason codes (RFC 4254 §5.1).
const ADMINISTRATIVELY_PROHIBITED: u32 = 1;
const UNKNOWN_CHANNEL_TYPE: u32 = 3;

/// Our one session channel.
pub(super) struct Channel {
    remote_id: u32,
    /// What we may still send.
    remote_window: u64,
    remote_max_packet: usize,
    /// What the client may still send.
    local_window: u32,
    /// Client data not yet written to the command.
    stdin: Vec<u8>,
    stdin_start: usize,
    pub(super) eof_in: bool,
    close_in: bool,
    eof_out: bool,
    close_out: bool,
    env_requests: u32,
    /// `GIT_PROTOCOL`, if the client sent a valid one.
    pub(super) git_protocol: Option<String>,
    /// Whether exec or shell was requested.
    started: bool,
    /// Output waiting for window: our own messages, or a runtime that read
    /// more than it was allowed.
    backlog: VecDeque<(Stream, Vec<u8>)>,
    /// The exit status to report once the backlog is out.
    exit: Option<ExitStatus>,
    pub(super) close_deadline: Option<Instant>,
}

impl Channel {
    pub(super) fn stdin(&self) -> &[u8] {
        &self.stdin[self.stdin_start..]
    }

    pub(super) fn consume_stdin(&mut self, n: usize) {
        self.stdin_start = (self.stdin_start + n).min(self.stdin.len());
        if self.stdin_start == self.stdin.len() {
            self.stdin.clear();
            self.stdin_start = 0;
        }
    }

    fn queued(&self) -> usize {
        self.stdin.len() - self.stdin_start
    }

    /// Queues a message of ours for the user's stderr, ahead of the exit.
    pub(super) fn push_notice(&mut self, text: Vec<u8>) {
        self.backlog.push_back((Stream::Stderr, text));
    }

    /// Whether both sides have closed.
    pub(super) fn is_closed(&self) -> bool {
        self.close_in && self.close_out
    }

    /// How much command output fits in the client's window now.
    pub(super) fn read_limit(&self) -> usize {
        if !self.backlog.is_empty() || self.eof_out || self.close_out || self.close_in {
            return 0;
        }
        usize::try_from(self.remote_window).unwrap_or(usize::MAX)
    }
}

impl ServerUpper {
    pub(super) fn on_channel_message(&mut self, t: &mut Transport, now: Instant, payload: &[u8]) {
        let number = payload[0];
        let mut p = Parser::new(payload);
        let _ = p.u8();
        if number == numbers::CHANNEL_OPEN {
            self.on_channel_open(t, p);
            return;
        }
        let Ok(recipient) = p.u32() else {
            t.disconnect(DisconnectReason::ProtocolError, "malformed channel message");
            return;
        };
        let known = self.channel.is_some() && recipient == 0;
        if !known {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "message for an unknown channel",
            );
            return;
        }
        let result = match number {
            numbers::CHANNEL_WINDOW_ADJUST => self.on_window_adjust(p),
            numbers::CHANNEL_DATA => self.on_data(p, false),
            numbers::CHANNEL_EXTENDED_DATA => self.on_data(p, true),
            numbers::CHANNEL_EOF => self.on_eof(p),
            numbers::CHANNEL_CLOSE => self.on_close(t, now, p),
            numbers::CHANNEL_REQUEST => self.on_channel_request(t, now, p),
            _ => Err("unexpected channel message"),
        };
        if let Err(why) = result {
            tracing::info!(session = %self.id, why, "channel protocol violation");
            t.disconnect(DisconnectReason::ProtocolError, why);
        }
    }

    fn on_channel_open(&mut self, t: &mut Transport, mut p: Parser<'_>) {
        let parsed = (|| Ok::<_, wire::Malformed>((p.string()?, p.u32()?, p.u32()?, p.u32()?)))();
        let Ok((kind, sender, window, max_packet)) = parsed else {
            t.disconnect(DisconnectReason::ProtocolError, "malformed CHANNEL_OPEN");
            return;
        };
        let refuse = |t: &mut Transport, code: u32, why: &str| {
            t.send(|out| {
                wire::put_u8(out, numbers::CHANNEL_OPEN_FAILURE);
                wire::put_u32(out, sender);
                wire::put_u32(out, code);
                wire::put_string(out, why.as_bytes());
                wire::put_string(out, b"");
            });
        };
        if kind != b"session" {
            tracing::info!(session = %self.id, kind = %crate::log_safe(kind), "channel type refused");
            let code = match kind {
                b"direct-tcpip" | b"forwarded-tcpip" | b"x11" | b"auth-agent@openssh.com" => {
                    ADMINISTRATIVELY_PROHIBITED
                }
                _ => UNKNOWN_CHANNEL_TYPE,
            };
            refuse(t, code, "gitmouth only offers git over a session channel");
            return;
        }
        if self.channel_used {
            refuse(t, ADMINISTRATIVELY_PROHIBITED, "one session per connection");
            return;
        }
        if max_packet == 0 {
            t.disconnect(DisconnectReason::ProtocolError, "maximum packet size 0");
            return;
        }
        self.channel_used = true;
        self.channel = Some(Channel {
            remote_id: sender,
            remote_window: u64::from(window),
            remote_max_packet: (max_packet as usize).min(MAX_CHUNK),
            local_window: WINDOW,
            stdin: Vec::new(),
            stdin_start: 0,
            eof_in: false,
            close_in: false,
            eof_out: false,
            close_out: false,
            env_requests: 0,
            git_protocol: None,
            started: false,
            backlog: VecDeque::new(),
            exit: None,
            close_deadline: None,
        });
        t.send(|out| {
            wire::put_u8(out, numbers::CHANNEL_OPEN_CONFIRMATION);
            wire::put_u32(out, sender);
            wire::put_u32(out, 0);
            wire::put_u32(out, WINDOW);
            wire::put_u32(out, MAX_PACKET);
        });
    }

    fn on_window_adjust(&mut self, mut p: Parser<'_>) -> Result<(), &'static str> {
        let n = p.u32().map_err(|_| "malformed WINDOW_ADJUST")?;
        p.finish().map_err(|_| "malformed WINDOW_ADJUST")?;
        let ch = self.channel.as_mut().ok_or("no channel")?;
        ch.remote_window += u64::from(n);
        if ch.remote_window > u64::from(u32::MAX) {
            return Err("window larger than 2^32-1");
        }
        Ok(())
    }

    fn on_data(&mut self, mut p: Parser<'_>, extended: bool) -> Result<(), &'static str> {
        if extended {
            p.u32().map_err(|_| "malformed EXTENDED_DATA")?;
        }
        let data = p.string().map_err(|_| "malformed DATA")?;
        p.finish().map_err(|_| "malformed DATA")?;
        let ch = self.channel.as_mut().ok_or("no channel")?;
        if ch.eof_in || ch.close_in {
            return Err("data after EOF");
        }
        if data.len() > MAX_PACKET as usize {
            return Err("data packet larger than the maximum");
        }
        let len = data.len() as u32;
        if len > ch.local_window {
            return Err("data past the window");
        }
        ch.local_window -= len;
        // Extended data from a client means nothing to git: counted
        // against the window, then dropped. So is data once the command is
        // gone (its stdin is closed).
        if !extended && !self.job.stdin_closed() {
            ch.stdin.extend_from_slice(data);
        }
        Ok(())
    }

    fn on_eof(&mut self, p: Parser<'_>) -> Result<(), &'static str> {
        p.finish().map_err(|_| "malformed EOF")?;
        let ch = self.channel.as_mut().ok_or("no channel")?;
        ch.eof_in = true;
        Ok(())
    }

    fn on_close(
        &mut self,
        t: &mut Transport,
        now: Instant,
        p: Parser<'_>,
    ) -> Result<(), &'static str> {
        p.finish().map_err(|_| "malformed CLOSE")?;
        let ch = self.channel.as_mut().ok_or("no channel")?;
        if ch.close_in {
            return Err("second CLOSE");
        }
        ch.close_in = true;
        ch.eof_in = true;
        if !ch.close_out {
            // The client gave up on the command: stop it, and answer.
            ch.backlog.clear();
            ch.exit = None;
            ch.close_out = true;
            let remote = ch.remote_id;
            t.send(|out| {
                wire::put_u8(out, numbers::CHANNEL_CLOSE);
                wire::put_u32(out, remote);
            });
            self.stop_job(now);
        }
        Ok(())
    }

    fn on_channel_request(
        &mut self,
        t: &mut Transport,
        now: Instant,
        mut p: Parser<'_>,
    ) -> Result<(), &'static str> {
        let kind = p.string().map_err(|_| "malformed CHANNEL_REQUEST")?;
        let want_reply = p.bool().map_err(|_| "malformed CHANNEL_REQUEST")?;
        let ch = self.channel.as_mut().ok_or("no channel")?;
        if ch.close_in {
            return Err("request after CLOSE");
        }
        let remote = ch.remote_id;
        let reply = |t: &mut Transport, ok: bool| {
            if want_reply {
                t.send(|out| {
                    wire::put_u8(
                        out,
                        if ok {
                            numbers::CHANNEL_SUCCESS
                        } else {
                            numbers::CHANNEL_FAILURE
                        },
                    );
                    wire::put_u32(out, remote);
                });
            }
        };
        match kind {
            b"env" => {
                let name = p.string().map_err(|_| "malformed env request")?;
                let value = p.string().map_err(|_| "malformed env request")?;
                p.finish().map_err(|_| "malformed env request")?;
                ch.env_requests += 1;
                let valid = (name == b"GIT_PROTOCOL")
                    .then(|| command::parse_git_protocol(value))
                    .flatten();
                let accepted = match valid {
                    Some(v) if !ch.started && ch.env_requests <= MAX_ENV => {
                        ch.git_protocol = Some(v.to_owned());
                        true
                    }
                    _ => {
                        tracing::debug!(
                            session = %self.id,
                            name = %crate::log_safe(name),
                            "env request refused"
                        );
                        false
                    }
                };
                reply(t, accepted);
            }
            b"exec" | b"shell" => {
                let command = if kind == b"exec" {
                    Some(p.string().map_err(|_| "malformed exec request")?)
                } else {
                    None
                };
                p.finish().map_err(|_| "malformed request")?;
                // One command per channel, and none once we have closed it
                // (a shutdown or a time limit did): nothing may start then.
                if ch.started || ch.close_out {
                    reply(t, false);
                    return Ok(());
                }
                ch.started = true;
                reply(t, true);
                match command {
                    None => {
                        let user = self
                            .identity
                            .as_ref()
                            .map_or_else(String::new, |i| i.user.clone());
                        tracing::info!(session = %self.id, "shell refused with the greeting");
                        self.fail_command(UserError::NoShell { user });
                    }
                    Some(command) => match parse_exec(command) {
                        Ok(cmd) => {
                            tracing::info!(
                                session = %self.id,
                                command = cmd.verb.dashed(),
                                repo = cmd.repo.as_str(),
                                "git command"
                            );
                            self.start_job(cmd, now);
                        }
                        Err(_) => {
                            tracing::info!(session = %self.id, command = %crate::log_safe(command), "invalid command");
                            self.fail_command(UserError::InvalidPath);
                        }
                    },
                }
            }
            b"signal" => {
                let name = p.string().map_err(|_| "malformed signal request")?;
                p.finish().map_err(|_| "malformed signal request")?;
                tracing::info!(session = %self.id, signal = %crate::log_safe(name), "client signal: stopping the command");
                reply(t, true);
                self.stop_job(now);
            }
            // No terminals, subsystems, forwarding; unknown requests get a
            // failure (OpenSSH clients send keepalive@openssh.com here).
            other => {
                tracing::debug!(session = %self.id, request = %crate::log_safe(other), "channel request refused");
                reply(t, false);
            }
        }
        Ok(())
    }

    /// Tells the user why nothing runs, then ends the channel with the
    /// error's exit status.
    pub(super) fn fail_command(&mut self, error: UserError) {
        let mut text = error.message(&self.config.public_host);
        if !matches!(error, UserError::NoShell { .. }) {
            text = messages::with_session_id(&text, &self.id);
        }
        let status = ExitStatus::Code(error.exit_status());
        if let Some(ch) = self.channel.as_mut() {
            ch.backlog.push_back((Stream::Stderr, text.into_bytes()));
            ch.exit = Some(status);
        }
    }

    /// Reports `status` once every queued output byte is out.
    pub(super) fn report_exit(&mut self, status: ExitStatus) {
        if let Some(ch) = self.channel.as_mut()
            && ch.exit.is_none()
        {
            ch.exit = Some(status);
        }
    }

    /// Relays command output: sends what the window allows, keeps the rest.
    pub(super) fn deliver(&mut self, t: &mut Transport, stream: Stream, data: &[u8]) {
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        if ch.close_out || ch.close_in {
            return;
        }
        let mut rest = data;
        if ch.backlog.is_empty() {
            let sent = send_data(t, ch, stream, rest);
            rest = &rest[sent..];
        }
        if !rest.is_empty() {
            ch.backlog.push_back((stream, rest.to_vec()));
        }
    }

    /// After every input: flush what the window allows, reopen the client's
    /// window, close stdin, report the exit, end the connection.
    pub(super) fn settle(&mut self, t: &mut Transport, now: Instant) {
        self.settle_job(now);
        // The push is over (or never ran): the next may start.
        self.release_push_lock();
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        if t.is_closed() {
            return;
        }
        while let Some((stream, data)) = ch.backlog.front_mut() {
            if ch.close_out {
                ch.backlog.clear();
                break;
            }
            let stream = *stream;
            let mut chunk = std::mem::take(data);
            let sent = send_data(t, ch, stream, &chunk);
            if sent < chunk.len() {
                chunk.drain(..sent);
                if let Some((_, data)) = ch.backlog.front_mut() {
                    *data = chunk;
                }
                break;
            }
            ch.backlog.pop_front();
        }
        // Reopen the client's window by what the command has consumed.
        let consumed = WINDOW - ch.local_window - ch.queued() as u32;
        let worth_it = consumed >= WINDOW_STEP
            || (consumed > 0 && ch.queued() == 0 && ch.local_window < WINDOW_STEP);
        if worth_it && !ch.eof_in && !ch.close_out {
            ch.local_window += consumed;
            let remote = ch.remote_id;
            t.send(|out| {
                wire::put_u8(out, numbers::CHANNEL_WINDOW_ADJUST);
                wire::put_u32(out, remote);
                wire::put_u32(out, consumed);
            });
        }
        if ch.backlog.is_empty()
            && !ch.close_out
            && let Some(status) = ch.exit.take()
        {
            let remote = ch.remote_id;
            t.send(|out| {
                wire::put_u8(out, numbers::CHANNEL_REQUEST);
                wire::put_u32(out, remote);
                match &status {
                    ExitStatus::Code(code) => {
                        wire::put_string(out, b"exit-status");
                        wire::put_bool(out, false);
                        wire::put_u32(out, *code);
                    }
                    ExitStatus::Signal { name, core_dumped } => {
                        wire::put_string(out, b"exit-signal");
                        wire::put_bool(out, false);
                        wire::put_string(out, name.as_bytes());
                        wire::put_bool(out, *core_dumped);
                        wire::put_string(out, b"");
                        wire::put_string(out, b"");
                    }
                }
            });
            if !ch.eof_out {
                ch.eof_out = true;
                t.send(|out| {
                    wire::put_u8(out, numbers::CHANNEL_EOF);
                    wire::put_u32(out, remote);
                });
            }
            ch.close_out = true;
            ch.close_deadline = Some(now + CLOSE_WAIT);
            t.send(|out| {
                wire::put_u8(out, numbers::CHANNEL_CLOSE);
                wire::put_u32(out, remote);
            });
        }
        // Once the session channel is closed both ways, the connection
        // ends: some clients (dropbear's) would otherwise wait forever.
        if ch.is_closed() && !self.job.holds_backend() {
            t.close_silently(CloseReason::Finished);
        }
    }

    pub(super) fn backend_read_limit(&self) -> usize {
        match &self.channel {
            Some(ch) if self.job.is_running() => ch.read_limit(),
            _ => 0,
        }
    }
}

/// Sends as much of `data` as the window allows, in packets the client
/// accepts; returns how much was sent.
fn send_data(t: &mut Transport, ch: &mut Channel, stream: Stream, data: &[u8]) -> usize {
    let mut sent = 0;
    let chunk_max = ch.remote_max_packet.clamp(1, MAX_PAYLOAD - 64);
    while sent < data.len() && ch.remote_window > 0 {
        let room = usize::try_from(ch.remote_window).unwrap_or(usize::MAX);
        let n = (data.len() - sent).min(chunk_max).min(room);
        let chunk = &data[sent..sent + n];
        let remote = ch.remote_id;
        t.send(|out| {
            match stream {
                Stream::Stdout => {
                    wire::put_u8(out, numbers::CHANNEL_DATA);
                    wire::put_u32(out, remote);
                }
                Stream::Stderr => {
                    wire::put_u8(out, numbers::CHANNEL_EXTENDED_DATA);
                    wire::put_u32(out, remote);
                    wire::put_u32(out, 1);
                }
            }
            wire::put_string(out, chunk);
        });
        ch.remote_window -= n as u64;
        sent += n;
    }
    sent
}
