//! One SSH connection's byte stream: the version exchange, then packets
//! through the transport, handing upper-layer messages to a role.
//!
//! Shared by the server session and our client, so both decode any chunking
//! of the stream identically.

use std::time::Instant;

use crate::transport::disconnect::{CloseReason, DisconnectReason};
use crate::transport::packet::{PacketError, PacketReader};
use crate::transport::version::{self, Scan};
use crate::transport::{Handled, Transport};

/// What sits above the transport: user authentication and channels.
pub trait Upper {
    /// The first key exchange completed.
    fn on_established(&mut self, t: &mut Transport, now: Instant);
    /// An upper-layer message arrived (the transport checked that it may
    /// arrive now as far as key exchange is concerned).
    fn on_message(&mut self, t: &mut Transport, now: Instant, seq: u32, payload: &[u8]);
    /// Whether a message number nobody implements is answered with
    /// UNIMPLEMENTED (true) or ends the connection (false: a server before
    /// authentication keeps a strict list).
    fn answers_unknown(&self) -> bool {
        true
    }

    /// While true, packets stay undecoded in the buffer: the upper layer
    /// waits for an answer from outside (a key lookup) before it can take
    /// the next message in order.
    fn is_blocked(&self) -> bool {
        false
    }
}

/// The incoming half of a connection plus its transport.
pub struct Link {
    /// Packets from the peer.
    pub rx: PacketReader,
    /// The transport, which holds the outgoing half.
    pub t: Transport,
    peer_is_server: bool,
    version_done: bool,
    preamble: usize,
}

impl Link {
    /// A link over a fresh transport.
    pub fn new(t: Transport, peer_is_server: bool) -> Self {
        Self {
            rx: PacketReader::new(),
            t,
            peer_is_server,
            version_done: false,
            preamble: 0,
        }
    }

    /// Feeds received bytes and processes every whole packet among them.
    pub fn receive(&mut self, now: Instant, data: &[u8], upper: &mut impl Upper) {
        if self.t.is_closed() {
            return;
        }
        self.rx.feed(data);
        self.process(now, upper);
    }

    /// Decodes and handles buffered packets (also after an upper layer
    /// stops being blocked).
    pub fn process(&mut self, now: Instant, upper: &mut impl Upper) {
        if !self.version_done && !self.scan_version(now) {
            return;
        }
        let Self { rx, t, .. } = self;
        while !t.is_closed() && !upper.is_blocked() {
            let packet = match rx.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        PacketError::Mac => DisconnectReason::MacError,
                        _ => DisconnectReason::ProtocolError,
                    };
                    tracing::info!(error = %e, "bad packet");
                    t.disconnect(reason, &e.to_string());
                    break;
                }
            };
            let payload = rx.payload(&packet);
            match t.handle_packet(now, packet.seq, payload) {
                Handled::Done => {}
                Handled::Established => upper.on_established(t, now),
                Handled::Upper => upper.on_message(t, now, packet.seq, payload),
                Handled::Unknown if upper.answers_unknown() => t.send_unimplemented(packet.seq),
                Handled::Unknown => {
                    let why = format!("unexpected message {}", payload[0]);
                    t.disconnect(DisconnectReason::ProtocolError, &why);
                }
            }
            if let Some((cipher, reset)) = t.take_rx_update() {
                rx.set_cipher(cipher);
                if reset {
                    rx.reset_seq();
                }
            }
        }
        t.check_rekey(now, rx.volume());
    }

    /// Returns whether the version line has been seen.
    fn scan_version(&mut self, now: Instant) -> bool {
        loop {
            match version::scan(self.rx.raw(), self.peer_is_server) {
                Scan::NeedMore => return false,
                Scan::Preamble { consumed } => {
                    self.preamble += consumed;
                    if self.preamble > version::MAX_PREAMBLE {
                        self.t.close_silently(CloseReason::BadVersion(
                            "too many lines before the version",
                        ));
                        return false;
                    }
                    self.rx.consume_raw(consumed);
                }
                Scan::Version { consumed, line } => {
                    let line = line.to_vec();
                    self.rx.consume_raw(consumed);
                    self.version_done = true;
                    tracing::debug!(peer_version = %crate::log_safe(&line), "version exchange");
                    self.t.on_peer_version(&line, now);
                    return true;
                }
                Scan::Invalid(why) => {
                    tracing::info!(why, "version exchange failed");
                    self.t.close_silently(CloseReason::BadVersion(why));
                    return false;
                }
            }
        }
    }
}
