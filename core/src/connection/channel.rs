//! One session channel's state: both windows, the client's data on its way
//! to the command, the command's output on its way to the client, and the
//! close handshake.

use std::collections::VecDeque;
use std::time::Instant;

use crate::timer::{Timers, timer_kinds};
use crate::transport::Transport;
use crate::transport::packet::{Lend, MAX_LEND_HEAD, MAX_PAYLOAD};
use crate::wire::numbers;

use super::msg::{ChannelMsg, EXTENDED_STDERR, Request};
use super::{ExitStatus, Stream};

/// The window we grant: as much as the command's stdin may have queued.
pub(crate) const WINDOW: u32 = 2 * 1024 * 1024;
/// Largest data packet we accept (OpenSSH's session default).
pub(crate) const MAX_PACKET: u32 = 32 * 1024;
/// Reopen the client's window once this much has been consumed.
const WINDOW_STEP: u32 = WINDOW / 4;
/// Largest chunk we put in one data packet, whatever the client allows.
const MAX_CHUNK: usize = 32 * 1024;

timer_kinds! {
    /// A channel's deadlines.
    pub(super) enum ChannelTimer {
        /// We sent CLOSE: the client's is due.
        CloseWait,
    }
}

/// A session channel.
pub(crate) struct Channel {
    /// Our number for it.
    pub(super) local: u32,
    /// The client's number for it.
    pub(super) remote: u32,
    /// What we may still send.
    remote_window: u64,
    remote_max_packet: usize,
    /// What the client may still send.
    local_window: u32,
    /// Client data not yet written to the command.
    stdin: Vec<u8>,
    stdin_start: usize,
    /// Whether the client's data still goes somewhere (once the command's
    /// stdin is closed it is counted against the window and dropped).
    pub(super) accepts_input: bool,
    pub(super) eof_in: bool,
    pub(super) close_in: bool,
    eof_out: bool,
    pub(super) close_out: bool,
    /// `env` requests seen.
    pub(super) env_requests: u32,
    /// Whether exec or shell was accepted.
    pub(super) started: bool,
    /// Whether anything was put on stdout: until then, git on the other
    /// side still waits for the server's first words.
    pub(super) stdout_used: bool,
    /// Output waiting for window: our own messages, or a runtime that read
    /// more than it was allowed.
    backlog: VecDeque<(Stream, Vec<u8>)>,
    /// The exit status to report once the backlog is out.
    exit: Option<ExitStatus>,
    /// The first exit status set, kept after it is sent (for the audit
    /// record).
    exit_record: Option<ExitStatus>,
    /// The channel's deadlines.
    pub(super) timers: Timers<ChannelTimer, 1>,
    /// The client never answered our CLOSE in time: the channel counts as
    /// closed, and whatever the client still says about it is ignored.
    pub(super) abandoned: bool,
}

impl Channel {
    pub(super) fn new(local: u32, remote: u32, window: u32, max_packet: u32) -> Self {
        Self {
            local,
            remote,
            remote_window: u64::from(window),
            remote_max_packet: (max_packet as usize).min(MAX_CHUNK),
            local_window: WINDOW,
            stdin: Vec::new(),
            stdin_start: 0,
            accepts_input: true,
            eof_in: false,
            close_in: false,
            eof_out: false,
            close_out: false,
            env_requests: 0,
            started: false,
            stdout_used: false,
            backlog: VecDeque::new(),
            exit: None,
            exit_record: None,
            timers: Timers::default(),
            abandoned: false,
        }
    }

    /// Client data waiting for the command.
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

    /// Whether both sides have closed.
    pub(super) fn is_closed(&self) -> bool {
        (self.close_in || self.abandoned) && self.close_out
    }

    /// How much command output fits in the client's window now.
    pub(super) fn read_limit(&self) -> usize {
        if !self.backlog.is_empty() || self.eof_out || self.close_out || self.close_in {
            return 0;
        }
        usize::try_from(self.remote_window).unwrap_or(usize::MAX)
    }

    /// Largest data we put in one packet: what the client accepts, within
    /// what our packets hold.
    fn chunk_max(&self) -> usize {
        self.remote_max_packet.clamp(1, MAX_PAYLOAD - 64)
    }

    /// The payload head of a data packet on `stream`: message number,
    /// recipient channel (and data type code for stderr), before the
    /// data's length.
    fn data_head(&self, stream: Stream) -> ([u8; MAX_LEND_HEAD], usize) {
        let mut head = [0; MAX_LEND_HEAD];
        head[1..5].copy_from_slice(&self.remote.to_be_bytes());
        match stream {
            Stream::Stdout => {
                head[0] = numbers::CHANNEL_DATA;
                (head, 5)
            }
            Stream::Stderr => {
                head[0] = numbers::CHANNEL_EXTENDED_DATA;
                head[5..9].copy_from_slice(&EXTENDED_STDERR.to_be_bytes());
                (head, 9)
            }
        }
    }

    /// Lends room for up to `max` bytes of output on `stream`, straight
    /// into the next data packets: as much as [`Channel::read_limit`]
    /// allows (the client's window, nothing queued before it, the channel
    /// open our way), in packets the client accepts. `None` if that is
    /// nothing, or the transport may not send now.
    pub(super) fn lend(&self, t: &mut Transport, stream: Stream, max: usize) -> Option<Lend> {
        let total = self.read_limit().min(max);
        if total == 0 {
            return None;
        }
        let (head, len) = self.data_head(stream);
        t.lend(&head[..len], self.chunk_max(), total)
    }

    /// Sends what was read into `lend` (its first `n` bytes), counting it
    /// against the client's window; returns how much was sent.
    pub(super) fn commit(
        &mut self,
        t: &mut Transport,
        stream: Stream,
        lend: &Lend,
        n: usize,
    ) -> usize {
        let n = t.commit(lend, n);
        debug_assert!(n as u64 <= self.remote_window);
        self.remote_window -= n as u64;
        self.stdout_used |= stream == Stream::Stdout && n > 0;
        n
    }

    /// The client's WINDOW_ADJUST.
    pub(super) fn on_window_adjust(&mut self, bytes: u32) -> Result<(), &'static str> {
        self.remote_window += u64::from(bytes);
        if self.remote_window > u64::from(u32::MAX) {
            return Err("window larger than 2^32-1");
        }
        Ok(())
    }

    /// The client's DATA or EXTENDED_DATA.
    pub(super) fn on_data(&mut self, data: &[u8], extended: bool) -> Result<(), &'static str> {
        if self.eof_in || self.close_in {
            return Err("data after EOF");
        }
        if data.len() > MAX_PACKET as usize {
            return Err("data packet larger than the maximum");
        }
        let len = data.len() as u32;
        if len > self.local_window {
            return Err("data past the window");
        }
        self.local_window -= len;
        // Extended data from a client means nothing to a command: counted
        // against the window, then dropped. So is data nobody will read.
        if !extended && self.accepts_input {
            self.stdin.extend_from_slice(data);
        }
        Ok(())
    }

    /// Queues output (ours or the command's) behind what is queued already.
    pub(super) fn queue(&mut self, stream: Stream, text: Vec<u8>) {
        if !self.close_out && !self.close_in {
            self.stdout_used |= stream == Stream::Stdout;
            self.backlog.push_back((stream, text));
        }
    }

    /// The first exit status set for the command, sent or not.
    pub(super) fn exit(&self) -> Option<&ExitStatus> {
        self.exit_record.as_ref()
    }

    pub(super) fn set_exit(&mut self, status: ExitStatus) {
        if self.exit_record.is_none() {
            self.exit_record = Some(status.clone());
        }
        if self.exit.is_none() {
            self.exit = Some(status);
        }
    }

    /// The client closed its side: answer with ours at once, dropping what
    /// was still to be sent.
    pub(super) fn on_close(&mut self, t: &mut Transport) -> Result<bool, &'static str> {
        if self.close_in {
            return Err("second CLOSE");
        }
        self.close_in = true;
        self.eof_in = true;
        self.timers.stop(ChannelTimer::CloseWait);
        let answered = !self.close_out;
        if answered {
            self.backlog.clear();
            self.exit = None;
            self.close_out = true;
            let recipient = self.remote;
            t.send(|out| ChannelMsg::Close { recipient }.encode(out));
        }
        Ok(answered)
    }

    /// Relays output: sends what the window allows, keeps the rest.
    pub(super) fn deliver(&mut self, t: &mut Transport, stream: Stream, data: &[u8]) {
        if self.close_out || self.close_in {
            return;
        }
        self.stdout_used |= stream == Stream::Stdout && !data.is_empty();
        let mut rest = data;
        if self.backlog.is_empty() {
            let sent = self.send_data(t, stream, rest);
            rest = &rest[sent..];
        }
        if !rest.is_empty() {
            self.backlog.push_back((stream, rest.to_vec()));
        }
    }

    /// Flushes what the window allows, reopens the client's window by what
    /// the command consumed, and once the exit is due reports it and
    /// closes our side.
    pub(super) fn flush(
        &mut self,
        t: &mut Transport,
        now: Instant,
        close_wait: std::time::Duration,
    ) {
        while let Some((stream, data)) = self.backlog.front_mut() {
            if self.close_out {
                self.backlog.clear();
                break;
            }
            let stream = *stream;
            let mut chunk = std::mem::take(data);
            let sent = self.send_data(t, stream, &chunk);
            if sent < chunk.len() {
                chunk.drain(..sent);
                if let Some((_, data)) = self.backlog.front_mut() {
                    *data = chunk;
                }
                break;
            }
            self.backlog.pop_front();
        }
        let consumed = WINDOW - self.local_window - self.queued() as u32;
        let worth_it = consumed >= WINDOW_STEP
            || (consumed > 0 && self.queued() == 0 && self.local_window < WINDOW_STEP);
        if worth_it && !self.eof_in && !self.close_out {
            self.local_window += consumed;
            let recipient = self.remote;
            t.send(|out| {
                ChannelMsg::WindowAdjust {
                    recipient,
                    bytes: consumed,
                }
                .encode(out)
            });
        }
        if self.backlog.is_empty()
            && !self.close_out
            && let Some(status) = self.exit.take()
        {
            let recipient = self.remote;
            let request = match &status {
                ExitStatus::Code(code) => Request::ExitStatus { code: *code },
                ExitStatus::Signal { name, core_dumped } => Request::ExitSignal {
                    name: name.as_bytes(),
                    core_dumped: *core_dumped,
                    message: b"",
                },
            };
            t.send(|out| {
                ChannelMsg::Request {
                    recipient,
                    want_reply: false,
                    request,
                }
                .encode(out)
            });
            if !self.eof_out {
                self.eof_out = true;
                t.send(|out| ChannelMsg::Eof { recipient }.encode(out));
            }
            self.close_out = true;
            self.timers.set(ChannelTimer::CloseWait, now + close_wait);
            t.send(|out| ChannelMsg::Close { recipient }.encode(out));
        }
    }

    /// Sends as much of `data` as the window allows, in packets the client
    /// accepts; returns how much was sent.
    fn send_data(&mut self, t: &mut Transport, stream: Stream, data: &[u8]) -> usize {
        let mut sent = 0;
        let chunk_max = self.chunk_max();
        let recipient = self.remote;
        while sent < data.len() && self.remote_window > 0 {
            let room = usize::try_from(self.remote_window).unwrap_or(usize::MAX);
            let n = (data.len() - sent).min(chunk_max).min(room);
            let data = &data[sent..sent + n];
            let msg = match stream {
                Stream::Stdout => ChannelMsg::Data { recipient, data },
                Stream::Stderr => ChannelMsg::ExtendedData {
                    recipient,
                    code: EXTENDED_STDERR,
                    data,
                },
            };
            t.send(|out| msg.encode(out));
            self.remote_window -= n as u64;
            sent += n;
        }
        sent
    }
}
