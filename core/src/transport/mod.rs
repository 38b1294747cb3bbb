//! The SSH transport layer (RFC 4253), for both roles.
//!
//! [`Transport`] owns the outgoing half of the packet protocol and the key
//! exchange. The incoming half ([`packet::PacketReader`]) lives beside it in
//! the session, so that a payload can be borrowed from the reader while the
//! transport and the upper layers are mutated; after each packet the session
//! installs any new incoming keys the transport hands it.
//!
//! Key exchange, as this side sees it:
//!
//! ```text
//!   Idle ──send KEXINIT──▶ AwaitPeerInit ──peer KEXINIT──▶ AwaitExchange
//!     ▲   (or peer KEXINIT first: send ours, go straight on)     │
//!     │                          server: ECDH_INIT → REPLY, NEWKEYS
//!     │                          client: REPLY → NEWKEYS         │
//!     └────────────── peer NEWKEYS ◀── AwaitNewKeys ◀────────────┘
//! ```
//!
//! From our KEXINIT until our NEWKEYS, upper-layer messages are queued
//! (bounded); from the peer's KEXINIT until its NEWKEYS, only transport and
//! key-exchange messages are accepted (RFC 4253 §7.1). Strict key exchange
//! (OpenSSH `PROTOCOL` §1.9) tightens the first exchange further.

pub mod cipher;
pub mod disconnect;
pub mod hostkey;
pub mod kex;
pub mod negotiate;
pub mod packet;
pub mod version;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::timer::{Timers, timer_kinds};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use self::cipher::{CipherAlg, DirectionKeys, MacAlg, PacketCipher};
use self::disconnect::{CloseReason, DisconnectReason, write_disconnect};
use self::hostkey::{HostKeyAlg, HostKeys};
use self::kex::{ClientKex, KexAlg, SharedSecret};
use self::negotiate::{EXT_INFO_C, KexInit, Negotiated, Offer, STRICT_C, STRICT_S};
use self::packet::{Lend, LentSlices, PacketWriter, Volume};
use crate::wire::{self, Parser, msg_info, numbers};

/// Transport settings shared by every connection of a server (or client).
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Key exchanges to offer, in preference order.
    pub kex: Vec<KexAlg>,
    /// Ciphers to offer, in preference order.
    pub ciphers: Vec<CipherAlg>,
    /// MACs to offer (with the CTR ciphers), in preference order.
    pub macs: Vec<MacAlg>,
    /// Re-key after this many bytes in either direction (RFC 4253 §9: 1 GiB).
    pub rekey_bytes: u64,
    /// Re-key after this much time (RFC 4253 §9: 1 hour; zero: never by
    /// time, as sshd's `RekeyLimit` interval of 0).
    pub rekey_interval: Duration,
    /// How long the peer may take to send its version line.
    pub version_timeout: Duration,
    /// How long one key exchange may take, from the first KEXINIT to the
    /// peer's NEWKEYS.
    pub kex_timeout: Duration,
    /// Offer strict key exchange (OpenSSH `PROTOCOL` §1.9). Always on in
    /// the server; only tests turn it off in the client.
    pub strict_kex: bool,
    /// Server: the host-key algorithms to offer, in preference order (of
    /// those the host keys can sign with); `None`: all of those.
    pub host_key_algs: Option<Vec<HostKeyAlg>>,
    /// Server: the user-key algorithms named in `server-sig-algs`
    /// (RFC 8308 §3.1), the ones user authentication accepts.
    pub server_sig_algs: Vec<&'static str>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            kex: KexAlg::DEFAULT.to_vec(),
            ciphers: CipherAlg::ALL.to_vec(),
            macs: MacAlg::DEFAULT.to_vec(),
            rekey_bytes: 1 << 30,
            rekey_interval: Duration::from_secs(3600),
            version_timeout: Duration::from_secs(10),
            kex_timeout: Duration::from_secs(60),
            strict_kex: true,
            host_key_algs: None,
            server_sig_algs: SERVER_SIG_ALGS.to_vec(),
        }
    }
}

/// Re-key well before a 32-bit sequence number could wrap.
const REKEY_PACKETS: u64 = 1 << 31;
/// UNIMPLEMENTED replies after which the connection is closed.
pub const MAX_UNIMPLEMENTED: u32 = 16;
/// Bound on upper-layer messages queued during a key exchange.
const MAX_DEFERRED_BYTES: usize = 256 * 1024;

/// Which side this transport plays, with what that side needs.
pub enum Role {
    /// A server signing with these host keys.
    Server {
        /// The host keys.
        host_keys: HostKeys,
    },
    /// A client accepting these host-key algorithms.
    Client {
        /// Host-key algorithms to offer.
        host_key_algs: Vec<HostKeyAlg>,
    },
}

enum Phase {
    Idle,
    AwaitPeerInit,
    AwaitExchange {
        neg: Negotiated,
        ignore_next: bool,
        client: Option<(ClientKex, Vec<u8>)>,
    },
    AwaitNewKeys {
        rx_keys: Box<DirectionKeys>,
    },
}

/// What the transport did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Consumed by the transport.
    Done,
    /// The first key exchange completed: upper layers may start.
    Established,
    /// An upper-layer message for the session to dispatch.
    Upper,
    /// A message number nobody here implements.
    Unknown,
}

timer_kinds! {
    /// The transport's deadlines.
    enum TransportTimer {
        /// The peer's identification string is due.
        Version,
        /// A key exchange in progress must have finished.
        Kex,
        /// Time for a re-key (`RekeyLimit`'s interval).
        Rekey,
    }
}

/// The transport layer of one connection, minus the incoming packet reader.
pub struct Transport {
    role: Role,
    config: Arc<TransportConfig>,
    tx: PacketWriter,
    rng: ChaCha20Rng,
    our_version: Vec<u8>,
    peer_version: Option<Vec<u8>>,
    phase: Phase,
    our_kexinit: Vec<u8>,
    peer_kexinit: Vec<u8>,
    session_id: Option<Vec<u8>>,
    strict: bool,
    established: bool,
    /// Until the upper layer says authentication has ended, no re-key of
    /// our own starts ([`Transport::allow_rekey`]).
    rekey_held: bool,
    /// A re-key became due while held: it starts once allowed.
    rekey_due: bool,
    /// Key exchanges completed (NEWKEYS received).
    key_exchanges: u32,
    peer_wants_ext_info: bool,
    deferred: VecDeque<Vec<u8>>,
    deferred_bytes: usize,
    /// UNIMPLEMENTED replies sent (capped at [`MAX_UNIMPLEMENTED`]).
    unimplemented_sent: u32,
    timers: Timers<TransportTimer, 3>,
    rx_update: Option<(PacketCipher, bool)>,
    close: Option<CloseReason>,
    peer_host_key: Option<Vec<u8>>,
    negotiated: Option<Negotiated>,
}

impl Transport {
    /// A transport that has just connected and queued its version line.
    pub fn new(role: Role, config: Arc<TransportConfig>, seed: [u8; 32], now: Instant) -> Self {
        let our_version = version::our_version().into_bytes();
        let mut tx = PacketWriter::new();
        tx.write_raw(&our_version);
        tx.write_raw(b"\r\n");
        let mut timers = Timers::default();
        timers.set(TransportTimer::Version, now + config.version_timeout);
        let mut t = Self {
            role,
            config,
            tx,
            rng: ChaCha20Rng::from_seed(seed),
            our_version,
            peer_version: None,
            phase: Phase::Idle,
            our_kexinit: Vec::new(),
            peer_kexinit: Vec::new(),
            session_id: None,
            strict: false,
            established: false,
            rekey_held: true,
            rekey_due: false,
            key_exchanges: 0,
            peer_wants_ext_info: false,
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            unimplemented_sent: 0,
            timers,
            rx_update: None,
            close: None,
            peer_host_key: None,
            negotiated: None,
        };
        // A server's KEXINIT depends on nothing the client says: it goes
        // out with the version line, in the same segment, so that the
        // client can answer it as soon as it has read our version (one
        // round trip less than waiting for the client's version first).
        if t.is_server() {
            t.start_kex(now);
        }
        t
    }

    fn is_server(&self) -> bool {
        matches!(self.role, Role::Server { .. })
    }

    /// The random source for everything above the transport too.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// Bytes to write to the socket.
    pub fn pending(&self) -> &[u8] {
        self.tx.pending()
    }

    /// Marks `n` bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.tx.consume(n);
    }

    /// The session identifier (RFC 4253 §7.2), once the first exchange ran.
    pub fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }

    /// Key exchanges completed so far, the first included.
    pub fn key_exchanges(&self) -> u32 {
        self.key_exchanges
    }

    /// Whether the first key exchange has completed.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }

    /// Whether the connection is over (the runtime flushes and closes).
    pub fn is_closed(&self) -> bool {
        self.close.is_some()
    }

    /// The negotiated algorithms of the latest exchange.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The server's host key blob (client role), once verified.
    pub fn peer_host_key(&self) -> Option<&[u8]> {
        self.peer_host_key.as_deref()
    }

    /// The peer's KEXINIT payload of the latest key exchange (empty before
    /// the first).
    pub fn peer_kexinit(&self) -> &[u8] {
        &self.peer_kexinit
    }

    /// The peer's identification string.
    pub fn peer_version(&self) -> Option<&[u8]> {
        self.peer_version.as_deref()
    }

    /// Sequence numbers of the next outgoing packet (for tests of strict
    /// key exchange, which resets them).
    pub fn tx_seq(&self) -> u32 {
        self.tx.seq()
    }

    /// Whether strict key exchange is in force.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Whether a key exchange is running (the session then stops reading
    /// its backend: nothing but key-exchange messages may be sent).
    pub fn in_kex(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// Whether upper-layer messages are being queued rather than sent.
    fn deferring(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitPeerInit | Phase::AwaitExchange { .. }
        )
    }

    /// New incoming keys to install before the next packet is decoded, and
    /// whether to reset the incoming sequence number with them.
    pub fn take_rx_update(&mut self) -> Option<(PacketCipher, bool)> {
        self.rx_update.take()
    }

    /// Records the peer's version line and starts the first key exchange.
    pub fn on_peer_version(&mut self, line: &[u8], now: Instant) {
        self.peer_version = Some(line.to_vec());
        self.timers.stop(TransportTimer::Version);
        self.start_kex(now);
    }

    /// Ends the connection: queues DISCONNECT (unless already closed).
    pub fn disconnect(&mut self, reason: DisconnectReason, description: &str) {
        if self.close.is_some() {
            return;
        }
        tracing::debug!(?reason, description, "sending disconnect");
        let rng = &mut self.rng;
        self.tx
            .packet(rng, |out| write_disconnect(out, reason, description));
        self.close = Some(CloseReason::Sent {
            reason,
            description: description.to_owned(),
        });
    }

    /// Ends the connection without sending anything.
    pub fn close_silently(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.close = Some(reason);
        }
    }

    /// Sends an upper-layer message now, or queues it while our key
    /// exchange runs. `build` appends the payload.
    pub fn send(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        if self.close.is_some() {
            return;
        }
        if self.deferring() {
            let mut payload = Vec::new();
            build(&mut payload);
            self.deferred_bytes += payload.len();
            self.deferred.push_back(payload);
            if self.deferred_bytes > MAX_DEFERRED_BYTES {
                self.disconnect(
                    DisconnectReason::ProtocolError,
                    "too much queued during key exchange",
                );
            }
            return;
        }
        let rng = &mut self.rng;
        self.tx.packet(rng, build);
    }

    /// Lends the payload areas of the next channel-data packets
    /// ([`PacketWriter::lend`]), or `None` while upper-layer messages may
    /// not go out as they come: during a key exchange (from either side's
    /// KEXINIT until the peer's NEWKEYS) and once the connection is over.
    pub fn lend(&mut self, head: &[u8], chunk: usize, total: usize) -> Option<Lend> {
        if self.close.is_some() || self.in_kex() {
            return None;
        }
        self.tx.lend(head, chunk, total)
    }

    /// The data areas of `lend`, in order ([`PacketWriter::lent_slices`]).
    pub fn lent_slices(&mut self, lend: &Lend) -> LentSlices<'_> {
        self.tx.lent_slices(lend)
    }

    /// Queues the first `n` bytes read into `lend` as packets
    /// ([`PacketWriter::commit`]); returns how many were queued.
    pub fn commit(&mut self, lend: &Lend, n: usize) -> usize {
        if self.close.is_some() || self.in_kex() {
            return 0;
        }
        let rng = &mut self.rng;
        self.tx.commit(rng, lend, n)
    }

    /// Answers a packet nobody implements (RFC 4253 §11.4).
    pub fn send_unimplemented(&mut self, seq: u32) {
        let rng = &mut self.rng;
        self.tx.packet(rng, |out| {
            wire::put_u8(out, numbers::UNIMPLEMENTED);
            wire::put_u32(out, seq);
        });
        self.unimplemented_sent += 1;
        if self.unimplemented_sent >= MAX_UNIMPLEMENTED {
            // A peer that keeps sending what we do not know is probing or
            // broken; OpenSSH closes such connections too.
            self.disconnect(
                DisconnectReason::ProtocolError,
                "too many unimplemented messages",
            );
        }
    }

    /// Sends a payload now even during key exchange, as a misbehaving peer
    /// would: only tests and fuzzing use it, through our client.
    pub fn send_unchecked(&mut self, payload: &[u8]) {
        let rng = &mut self.rng;
        self.tx.packet(rng, |out| out.extend_from_slice(payload));
    }

    /// Overhead per packet, for sizing data packets.
    pub fn packet_overhead(&self) -> usize {
        self.tx.overhead()
    }

    /// The next instant at which [`Transport::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.close.is_some() {
            return None;
        }
        self.timers.next()
    }

    /// Acts on deadlines: version and key-exchange timeouts, timed re-keys.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close.is_some() {
            return;
        }
        for timer in self.timers.take_due(now) {
            match timer {
                TransportTimer::Version => {
                    self.close_silently(CloseReason::BadVersion(
                        "no identification string in time",
                    ));
                }
                TransportTimer::Kex => self.disconnect(
                    DisconnectReason::KeyExchangeFailed,
                    "key exchange timed out",
                ),
                TransportTimer::Rekey if self.rekey_held => self.rekey_due = true,
                TransportTimer::Rekey => self.start_kex(now),
            }
        }
    }

    /// Authentication has ended: re-keys of our own may start from now on
    /// (one already due starts now). Before that, none does: OpenSSH's
    /// client takes a KEXINIT during user authentication for a protocol
    /// error (`bad message during authentication: type 20`), and the
    /// volume before authentication is a few kilobytes anyway. A re-key the
    /// peer starts is always answered.
    pub fn allow_rekey(&mut self, now: Instant) {
        if !self.rekey_held {
            return;
        }
        self.rekey_held = false;
        if std::mem::take(&mut self.rekey_due) {
            self.start_kex(now);
        }
    }

    /// Starts a re-key when the volume under the current keys calls for it.
    pub fn check_rekey(&mut self, now: Instant, received: Volume) {
        if !self.established || self.rekey_held || self.in_kex() || self.close.is_some() {
            return;
        }
        let sent = self.tx.volume();
        let limit = self.config.rekey_bytes;
        if sent.bytes >= limit
            || received.bytes >= limit
            || sent.packets >= REKEY_PACKETS
            || received.packets >= REKEY_PACKETS
        {
            self.start_kex(now);
        }
    }

    /// Starts a key exchange now (a re-key when established). Does nothing
    /// if one is already running.
    pub fn start_kex(&mut self, now: Instant) {
        if self.in_kex() || self.close.is_some() {
            return;
        }
        let first = self.session_id.is_none();
        let offer = self.offer();
        let mut cookie = [0u8; 16];
        self.rng.fill_bytes(&mut cookie);
        // The strict-kex and ext-info markers belong to the first KEXINIT only.
        let markers: &[&str] = match (self.is_server(), first, self.config.strict_kex) {
            (true, true, true) => &[STRICT_S],
            (false, true, true) => &[EXT_INFO_C, STRICT_C],
            (false, true, false) => &[EXT_INFO_C],
            _ => &[],
        };
        let mut payload = Vec::new();
        offer.write_kexinit(&mut payload, cookie, markers);
        let rng = &mut self.rng;
        self.tx.packet(rng, |out| out.extend_from_slice(&payload));
        self.our_kexinit = payload;
        self.phase = Phase::AwaitPeerInit;
        self.timers.stop(TransportTimer::Rekey);
        self.timers
            .set(TransportTimer::Kex, now + self.config.kex_timeout);
    }

    fn offer(&self) -> Offer {
        let host_key = match &self.role {
            Role::Server { host_keys } => {
                // Retiring keys too: they still sign for clients that know
                // only them.
                let algs = host_keys.algorithms();
                match &self.config.host_key_algs {
                    // The operator's order, of what the keys can do.
                    Some(wanted) => wanted
                        .iter()
                        .copied()
                        .filter(|a| algs.contains(a))
                        .collect(),
                    None => algs,
                }
            }
            Role::Client { host_key_algs } => host_key_algs.clone(),
        };
        Offer {
            kex: self.config.kex.clone(),
            host_key,
            ciphers: self.config.ciphers.clone(),
            macs: self.config.macs.clone(),
        }
    }

    /// Handles one decoded packet: transport and key-exchange messages are
    /// consumed here, anything else is checked against the key-exchange
    /// state and handed back as [`Handled::Upper`].
    pub fn handle_packet(&mut self, now: Instant, seq: u32, payload: &[u8]) -> Handled {
        if self.close.is_some() {
            return Handled::Done;
        }
        let Some(&number) = payload.first() else {
            self.disconnect(DisconnectReason::ProtocolError, "empty packet");
            return Handled::Done;
        };
        let info = msg_info(number);
        if let Some(info) = info
            && !info.may_come_from(self.is_server())
        {
            let what = format!("{} is never sent by a {}", info.name, self.peer_name());
            self.disconnect(DisconnectReason::ProtocolError, &what);
            return Handled::Done;
        }
        if number == numbers::DISCONNECT {
            let reason = match disconnect::parse_disconnect(payload) {
                Ok((code, description)) => CloseReason::Received { code, description },
                Err(_) => CloseReason::Received {
                    code: 0,
                    description: "(malformed)".into(),
                },
            };
            self.close_silently(reason);
            return Handled::Done;
        }
        if let Err(why) = self.admissible(number) {
            self.disconnect(DisconnectReason::ProtocolError, &why);
            return Handled::Done;
        }
        match number {
            numbers::IGNORE | numbers::DEBUG => Handled::Done,
            // The peer did not understand something we sent: the layer
            // above may care (our test client reports it).
            numbers::UNIMPLEMENTED => Handled::Upper,
            numbers::KEXINIT => {
                self.on_kexinit(now, seq, payload);
                Handled::Done
            }
            numbers::KEX_ECDH_INIT | numbers::KEX_ECDH_REPLY => {
                self.on_exchange(payload);
                Handled::Done
            }
            numbers::NEWKEYS => self.on_newkeys(now, payload),
            // Known to no one here: the layer above decides between
            // UNIMPLEMENTED (RFC 4253 §11.4) and the end of the connection.
            _ if info.is_none() || (22..=49).contains(&number) => Handled::Unknown,
            _ => Handled::Upper,
        }
    }

    fn peer_name(&self) -> &'static str {
        if self.is_server() { "client" } else { "server" }
    }

    /// Whether message `number` may arrive now, as far as the key exchange
    /// is concerned.
    /// (Strict kex's "KEXINIT first" rule is checked in `on_kexinit`, since
    /// that very KEXINIT decides whether the exchange is strict.)
    fn admissible(&self, number: u8) -> Result<(), String> {
        let name =
            || msg_info(number).map_or_else(|| format!("message {number}"), |m| m.name.to_owned());
        let kex_msg = matches!(number, 20..=49);
        if !self.established {
            let strict_ok = matches!(number, numbers::KEXINIT | numbers::NEWKEYS | 30..=31);
            if self.strict && !strict_ok {
                return Err(format!(
                    "{} during the initial key exchange (strict kex)",
                    name()
                ));
            }
            if !kex_msg && !matches!(number, 1..=4) {
                return Err(format!("{} before the key exchange completed", name()));
            }
        }
        let peer_in_kex = matches!(
            self.phase,
            Phase::AwaitExchange { .. } | Phase::AwaitNewKeys { .. }
        );
        if peer_in_kex {
            if number == numbers::KEXINIT {
                return Err("a second KEXINIT during key exchange".into());
            }
            if !kex_msg && !matches!(number, 1..=4) {
                return Err(format!("{} during key exchange", name()));
            }
        }
        Ok(())
    }

    fn on_kexinit(&mut self, now: Instant, seq: u32, payload: &[u8]) {
        let parsed = match KexInit::parse(payload) {
            Ok(k) => k,
            Err(_) => {
                self.disconnect(DisconnectReason::ProtocolError, "malformed KEXINIT");
                return;
            }
        };
        let first = self.session_id.is_none();
        if first {
            let theirs = if self.is_server() { STRICT_C } else { STRICT_S };
            self.strict = self.config.strict_kex && parsed.kex.contains(theirs);
            if self.strict && seq != 0 {
                self.disconnect(
                    DisconnectReason::ProtocolError,
                    "strict kex: KEXINIT was not the first packet",
                );
                return;
            }
            if self.is_server() {
                self.peer_wants_ext_info = parsed.kex.contains(EXT_INFO_C);
            }
        }
        if matches!(self.phase, Phase::Idle) {
            self.start_kex(now);
        }
        let Ok(ours) = KexInit::parse(&self.our_kexinit) else {
            self.disconnect(
                DisconnectReason::ProtocolError,
                "internal error: our KEXINIT",
            );
            return;
        };
        let result = if self.is_server() {
            negotiate::negotiate(&parsed, &ours)
        } else {
            negotiate::negotiate(&ours, &parsed)
        };
        let neg = match result {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(peer = %crate::log_safe(self.peer_version.as_deref().unwrap_or_default()), "{e}");
                self.disconnect(DisconnectReason::KeyExchangeFailed, &e.to_string());
                return;
            }
        };
        self.peer_kexinit = payload.to_vec();
        self.negotiated = Some(neg);
        let ignore_next = parsed.first_kex_packet_follows && neg.ignore_guess;
        let client = if self.is_server() {
            None
        } else {
            let (kex, share) = ClientKex::start(neg.kex, &mut self.rng);
            let rng = &mut self.rng;
            self.tx.packet(rng, |out| {
                wire::put_u8(out, numbers::KEX_ECDH_INIT);
                wire::put_string(out, &share);
            });
            Some((kex, share))
        };
        self.phase = Phase::AwaitExchange {
            neg,
            ignore_next,
            client,
        };
    }

    fn on_exchange(&mut self, payload: &[u8]) {
        let expected = if self.is_server() {
            numbers::KEX_ECDH_INIT
        } else {
            numbers::KEX_ECDH_REPLY
        };
        let Phase::AwaitExchange { ignore_next, .. } = &mut self.phase else {
            self.disconnect(
                DisconnectReason::ProtocolError,
                "key-exchange message out of sequence",
            );
            return;
        };
        if *ignore_next {
            // The peer's wrong guess (RFC 4253 §7): drop it.
            *ignore_next = false;
            return;
        }
        if payload[0] != expected {
            self.disconnect(
                DisconnectReason::ProtocolError,
                "key-exchange message out of sequence",
            );
            return;
        }
        let Phase::AwaitExchange { neg, client, .. } =
            std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        let result = if self.is_server() {
            self.server_exchange(neg, payload)
        } else {
            match client {
                Some((kex, share)) => self.client_exchange(neg, kex, &share, payload),
                None => Err((
                    DisconnectReason::ProtocolError,
                    "internal error: no client share".into(),
                )),
            }
        };
        if let Err((reason, why)) = result {
            self.disconnect(reason, &why);
        }
    }

    fn server_exchange(
        &mut self,
        neg: Negotiated,
        payload: &[u8],
    ) -> Result<(), (DisconnectReason, String)> {
        let malformed = || {
            (
                DisconnectReason::ProtocolError,
                "malformed KEX_ECDH_INIT".to_owned(),
            )
        };
        let mut p = Parser::new(payload);
        p.u8().map_err(|_| malformed())?;
        let q_c = p.string().map_err(|_| malformed())?;
        p.finish().map_err(|_| malformed())?;
        let (q_s, k) = kex::server_exchange(neg.kex, q_c, &mut self.rng).map_err(|e| {
            (
                DisconnectReason::KeyExchangeFailed,
                format!("key exchange failed: {e}"),
            )
        })?;
        let Role::Server { host_keys } = &self.role else {
            return Err((
                DisconnectReason::ProtocolError,
                "internal error: role".into(),
            ));
        };
        let key = host_keys.signing_key(neg.host_key).ok_or((
            DisconnectReason::KeyExchangeFailed,
            "no host key for the algorithm".to_owned(),
        ))?;
        let k_s = key.public_blob();
        let v_c = self.peer_version.as_deref().unwrap_or_default();
        let h = kex::exchange_hash(
            neg.kex.hash(),
            v_c,
            &self.our_version,
            &self.peer_kexinit,
            &self.our_kexinit,
            &k_s,
            q_c,
            &q_s,
            &k,
        );
        let signature = key.sign(neg.host_key, &h).map_err(|e| {
            (
                DisconnectReason::KeyExchangeFailed,
                format!("host key signature failed: {e}"),
            )
        })?;
        let rng = &mut self.rng;
        self.tx.packet(rng, |out| {
            wire::put_u8(out, numbers::KEX_ECDH_REPLY);
            wire::put_string(out, &k_s);
            wire::put_string(out, &q_s);
            wire::put_string(out, &signature);
        });
        self.finish_exchange(neg, &k, h);
        Ok(())
    }

    fn client_exchange(
        &mut self,
        neg: Negotiated,
        kex: ClientKex,
        q_c: &[u8],
        payload: &[u8],
    ) -> Result<(), (DisconnectReason, String)> {
        let malformed = || {
            (
                DisconnectReason::ProtocolError,
                "malformed KEX_ECDH_REPLY".to_owned(),
            )
        };
        let mut p = Parser::new(payload);
        p.u8().map_err(|_| malformed())?;
        let k_s = p.string().map_err(|_| malformed())?;
        let q_s = p.string().map_err(|_| malformed())?;
        let signature = p.string().map_err(|_| malformed())?;
        p.finish().map_err(|_| malformed())?;
        let k = kex.finish(q_s).map_err(|e| {
            (
                DisconnectReason::KeyExchangeFailed,
                format!("key exchange failed: {e}"),
            )
        })?;
        let v_s = self.peer_version.as_deref().unwrap_or_default();
        let h = kex::exchange_hash(
            neg.kex.hash(),
            &self.our_version,
            v_s,
            &self.our_kexinit,
            &self.peer_kexinit,
            k_s,
            q_c,
            q_s,
            &k,
        );
        hostkey::verify_host_signature(neg.host_key, k_s, &h, signature).map_err(|e| {
            (
                DisconnectReason::HostKeyNotVerifiable,
                format!("host key signature does not verify: {e}"),
            )
        })?;
        if let Some(known) = &self.peer_host_key
            && known.as_slice() != k_s
        {
            return Err((
                DisconnectReason::HostKeyNotVerifiable,
                "host key changed during re-key".into(),
            ));
        }
        self.peer_host_key = Some(k_s.to_vec());
        self.finish_exchange(neg, &k, h);
        Ok(())
    }

    /// Sends NEWKEYS and switches outgoing keys; incoming keys wait for the
    /// peer's NEWKEYS.
    fn finish_exchange(&mut self, neg: Negotiated, k: &SharedSecret, h: Vec<u8>) {
        let first = self.session_id.is_none();
        let session_id = self.session_id.get_or_insert(h.clone()).clone();
        let hash = neg.kex.hash();
        let derive =
            |letter: u8, len: usize| kex::derive_key(hash, k, &h, letter, &session_id, len);
        let keys = |(cipher, mac): (CipherAlg, Option<MacAlg>), iv: u8, enc: u8, integrity: u8| {
            DirectionKeys {
                cipher,
                mac,
                iv: derive(iv, cipher.iv_len()),
                enc_key: derive(enc, cipher.key_len()),
                mac_key: derive(integrity, mac.map_or(0, |m| m.key_len())),
            }
        };
        let c2s = keys(neg.c2s, b'A', b'C', b'E');
        let s2c = keys(neg.s2c, b'B', b'D', b'F');
        let (tx_keys, rx_keys) = if self.is_server() {
            (s2c, c2s)
        } else {
            (c2s, s2c)
        };
        let rng = &mut self.rng;
        self.tx
            .packet(rng, |out| wire::put_u8(out, numbers::NEWKEYS));
        self.tx.set_cipher(PacketCipher::new(&tx_keys));
        if self.strict {
            self.tx.reset_seq();
        }
        if first && self.peer_wants_ext_info {
            // RFC 8308 §2.4: the next packet after our first NEWKEYS.
            let rng = &mut self.rng;
            let algs = &self.config.server_sig_algs;
            self.tx.packet(rng, |out| write_ext_info(out, algs));
        }
        self.phase = Phase::AwaitNewKeys {
            rx_keys: Box::new(rx_keys),
        };
        while let Some(payload) = self.deferred.pop_front() {
            let rng = &mut self.rng;
            self.tx.packet(rng, |out| out.extend_from_slice(&payload));
        }
        self.deferred_bytes = 0;
    }

    fn on_newkeys(&mut self, now: Instant, payload: &[u8]) -> Handled {
        if payload.len() != 1 {
            self.disconnect(DisconnectReason::ProtocolError, "malformed NEWKEYS");
            return Handled::Done;
        }
        let Phase::AwaitNewKeys { rx_keys } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            self.disconnect(DisconnectReason::ProtocolError, "NEWKEYS out of sequence");
            return Handled::Done;
        };
        self.rx_update = Some((PacketCipher::new(&rx_keys), self.strict));
        self.timers.stop(TransportTimer::Kex);
        self.rekey_due = false;
        self.key_exchanges = self.key_exchanges.saturating_add(1);
        if !self.config.rekey_interval.is_zero() {
            self.timers
                .set(TransportTimer::Rekey, now + self.config.rekey_interval);
        }
        if self.established {
            Handled::Done
        } else {
            self.established = true;
            Handled::Established
        }
    }
}

/// The user-authentication signature algorithms we verify (RFC 8308 §3.1),
/// certificates included (as OpenSSH lists them): the names of
/// [`crate::auth::pubkey::UserKeyAlg::ALL`].
pub const SERVER_SIG_ALGS: &[&str] = &[
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
];

fn write_ext_info(out: &mut Vec<u8>, server_sig_algs: &[&'static str]) {
    wire::put_u8(out, numbers::EXT_INFO);
    wire::put_u32(out, 1);
    wire::put_string(out, b"server-sig-algs");
    let at = out.len();
    wire::put_name_list(out, server_sig_algs.iter().copied());
    // A name-list is a string: the value field is exactly that encoding.
    debug_assert!(out.len() > at);
}
