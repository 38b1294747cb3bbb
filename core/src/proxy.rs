//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2):
//! which address a connection comes from when a load balancer stands in
//! front of the server.
//!
//! Pure decisions over the bytes a connection has sent so far; the
//! runtime reads (bounded by [`MAX_HEADER`] and by the header timeout) and
//! does what [`Examined`] says. Parsing is `ppp`'s; the policy is here:
//!
//! - `off`: no connection may carry a header; nothing is read before SSH.
//! - `optional`: a trusted peer (`--proxy-trusted`) may send one; without
//!   one, the connection is its own.
//! - `required`: every connection comes through a trusted peer and carries
//!   a header; any other peer is refused before a byte is read.
//!
//! A header from an untrusted peer, a malformed or oversized one, or none
//! where one is required, refuses the connection before any SSH byte.
//! v2's `LOCAL` command (the balancer's own health checks), v1's `UNKNOWN`
//! and v2's `UNSPEC` and `UNIX` families carry no client address: the
//! connection is the peer's own, as the specification lets a receiver
//! choose ("use the real connection endpoints"), so that a balancer's
//! checks work; exempt the balancer's address from admission
//! (`--admission-exempt`) so that they are never penalised.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::PartialResult;

use crate::admission::Network;

/// The longest version 1 header, CRLF included (the specification's 107).
pub const MAX_V1: usize = 107;
/// The longest version 2 header accepted: its 16 fixed bytes, the largest
/// address block (216 bytes, two UNIX paths) and room for the TLVs cloud
/// balancers add (endpoint ids, a few dozen bytes each).
pub const MAX_V2: usize = 16 + 512;
/// The most a runtime ever reads before the header is decided.
pub const MAX_HEADER: usize = MAX_V2;

/// v1's signature, up to the space after it.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// v2's 12-byte signature.
const V2_SIGNATURE: &[u8] = ppp::v2::PROTOCOL_PREFIX;

/// `--proxy-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No header is read; every connection is its peer's.
    #[default]
    Off,
    /// Trusted peers may send a header.
    Optional,
    /// Every connection must come from a trusted peer with a header.
    Required,
}

impl ProxyMode {
    /// Parses `off`, `optional` or `required`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            _ => Err(format!("expected off, optional or required, not {text:?}")),
        }
    }

    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// The PROXY protocol settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Whether headers are read.
    pub mode: ProxyMode,
    /// The peers allowed to send a header: the balancers.
    pub trusted: Vec<Network>,
    /// How long a connection has to send its header (or, in `optional`
    /// mode, its first bytes) before the server speaks.
    pub timeout: Duration,
}

impl ProxyPolicy {
    /// Checks the settings as a whole: `required` without a trusted peer
    /// would refuse every connection.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode == ProxyMode::Required && self.trusted.is_empty() {
            return Err(
                "--proxy-protocol required needs at least one --proxy-trusted network: \
                 otherwise every connection would be refused"
                    .into(),
            );
        }
        if self.mode != ProxyMode::Off && self.timeout.is_zero() {
            return Err("--proxy-header-timeout must be at least 1 second".into());
        }
        Ok(())
    }

    /// Whether `peer` may send a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(peer))
    }

    /// What to do with a connection just accepted from `peer`, before
    /// anything is read.
    pub fn arrival(&self, peer: IpAddr) -> Arrival {
        match self.mode {
            ProxyMode::Off => Arrival::Direct,
            _ if self.trusts(peer) => Arrival::ReadHeader,
            ProxyMode::Optional => Arrival::CheckUntrusted,
            ProxyMode::Required => Arrival::Refuse(Refusal::UntrustedPeer),
        }
    }

    /// What the first `bytes` a connection from `peer` sent mean. The
    /// runtime reads more while the answer is [`Examined::More`] (never
    /// past [`MAX_HEADER`] bytes in all).
    pub fn examine(&self, peer: SocketAddr, bytes: &[u8]) -> Examined {
        if self.mode == ProxyMode::Off || bytes.is_empty() {
            return if bytes.is_empty() && self.mode != ProxyMode::Off {
                Examined::More
            } else {
                Examined::Serve(Arrived::direct(peer))
            };
        }
        let starts = starts_signature(bytes);
        if !self.trusts(peer.ip()) {
            return match starts {
                Signature::No => Examined::Serve(Arrived::direct(peer)),
                Signature::Partial => Examined::More,
                Signature::Whole => Examined::Refuse(Refusal::Untrusted),
            };
        }
        match starts {
            Signature::No => match self.mode {
                ProxyMode::Required => Examined::Refuse(Refusal::Missing),
                _ => Examined::Serve(Arrived::direct(peer)),
            },
            Signature::Partial => Examined::More,
            Signature::Whole => parse(peer, bytes),
        }
    }

    /// What a connection from `peer` that sent only `bytes` before the
    /// header timeout means.
    pub fn timed_out(&self, peer: SocketAddr, bytes: &[u8]) -> Examined {
        match self.examine(peer, bytes) {
            Examined::More if bytes.is_empty() => match self.mode {
                // Silence: a client that waits for the server to speak
                // first, or a balancer that never sent its header.
                ProxyMode::Required if self.trusts(peer.ip()) => Examined::Refuse(Refusal::Missing),
                _ => Examined::Serve(Arrived::direct(peer)),
            },
            Examined::More => Examined::Refuse(Refusal::Incomplete),
            decided => decided,
        }
    }
}

/// What happens to a connection just accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// PROXY protocol is off: serve it as its peer's.
    Direct,
    /// A trusted peer: read its header before admission.
    ReadHeader,
    /// An untrusted peer in `optional` mode: admitted as its own, then its
    /// first bytes are checked for a header it may not send.
    CheckUntrusted,
    /// Closed before a byte is read.
    Refuse(Refusal),
}

/// Where the first bytes leave a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// Not decided: read more.
    More,
    /// Serve the connection as `Arrived` says.
    Serve(Arrived),
    /// Close it before any SSH byte, logged with the peer's address.
    Refuse(Refusal),
}

/// A connection the header step let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    /// The client's address: the one admission, penalties, logs and
    /// everything downstream see.
    pub client: SocketAddr,
    /// What the header said.
    pub header: HeaderKind,
    /// How many of the bytes read were the header; the rest are SSH.
    pub consumed: usize,
}

impl Arrived {
    fn direct(peer: SocketAddr) -> Self {
        Self {
            client: peer,
            header: HeaderKind::None,
            consumed: 0,
        }
    }
}

/// What a header carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// No header: the connection is the peer's own.
    None,
    /// A v1 header with the client's address.
    V1,
    /// A v2 `PROXY` header with the client's address.
    V2,
    /// A v2 `LOCAL` header (the balancer's own connection): the peer's
    /// address.
    Local,
    /// A header with no address we use (v1 `UNKNOWN`, v2 `UNSPEC` or
    /// `UNIX`): the peer's address.
    NoAddress,
}

impl HeaderKind {
    /// For the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Local => "v2 LOCAL",
            Self::NoAddress => "no address",
        }
    }
}

/// Why a connection was refused before any SSH byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `required`, and the peer is not trusted.
    UntrustedPeer,
    /// An untrusted peer sent a header.
    Untrusted,
    /// `required`, and a trusted peer sent no header.
    Missing,
    /// The header did not end within the header timeout.
    Incomplete,
    /// The header is longer than this server accepts.
    TooLong,
    /// The header does not parse (what `ppp` said).
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UntrustedPeer => {
                f.write_str("PROXY header required, and the peer is not a trusted proxy")
            }
            Self::Untrusted => f.write_str("PROXY header from a peer that is not a trusted proxy"),
            Self::Missing => f.write_str("no PROXY header, and one is required"),
            Self::Incomplete => f.write_str("PROXY header incomplete at the header timeout"),
            Self::TooLong => write!(f, "PROXY header longer than {MAX_HEADER} bytes"),
            Self::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
        }
    }
}

enum Signature {
    /// The bytes cannot begin a header.
    No,
    /// The bytes are a proper prefix of a signature.
    Partial,
    /// The bytes begin with a whole signature.
    Whole,
}

fn starts_signature(bytes: &[u8]) -> Signature {
    let mut partial = false;
    for sig in [V1_SIGNATURE, V2_SIGNATURE] {
        if bytes.starts_with(sig) {
            return Signature::Whole;
        }
        partial |= sig.starts_with(bytes);
    }
    if partial {
        Signature::Partial
    } else {
        Signature::No
    }
}

/// Parses a header from a trusted peer (the bytes begin with a signature).
fn parse(peer: SocketAddr, bytes: &[u8]) -> Examined {
    if bytes.starts_with(V2_SIGNATURE) {
        // The declared length is known from the 16th byte: refuse an
        // oversized header before waiting for it.
        if let [_, _, _, _, _, _, _, _, _, _, _, _, _, _, hi, lo, ..] = bytes
            && 16 + usize::from(u16::from_be_bytes([*hi, *lo])) > MAX_V2
        {
            return Examined::Refuse(Refusal::TooLong);
        }
        let result = ppp::v2::Header::try_from(bytes);
        if result.is_incomplete() {
            return Examined::More;
        }
        return match result {
            Ok(header) => {
                let consumed = header.header.len();
                let (client, kind) = match (header.command, header.addresses) {
                    (ppp::v2::Command::Local, _) => (peer, HeaderKind::Local),
                    (_, ppp::v2::Addresses::IPv4(a)) => (
                        SocketAddr::new(
                            IpAddr::from(a.source_address).to_canonical(),
                            a.source_port,
                        ),
                        HeaderKind::V2,
                    ),
                    (_, ppp::v2::Addresses::IPv6(a)) => (
                        SocketAddr::new(
                            IpAddr::from(a.source_address).to_canonical(),
                            a.source_port,
                        ),
                        HeaderKind::V2,
                    ),
                    (_, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => {
                        (peer, HeaderKind::NoAddress)
                    }
                };
                Examined::Serve(Arrived {
                    client,
                    header: kind,
                    consumed,
                })
            }
            Err(e) => Examined::Refuse(Refusal::Malformed(e.to_string())),
        };
    }
    // v1 is one line: wait for its CR and the byte after it, within the
    // bound, before asking ppp. (ppp 2.3 takes a line cut just after a
    // space for one with an empty, so invalid, port: asked too early it
    // would refuse a good header that arrives in pieces.)
    match bytes.iter().position(|&b| b == b'\r') {
        Some(cr) if cr + 2 > MAX_V1 => return Examined::Refuse(Refusal::TooLong),
        Some(cr) if cr + 1 == bytes.len() => return Examined::More,
        Some(_) => {}
        None if bytes.len() >= MAX_V1 => return Examined::Refuse(Refusal::TooLong),
        None => return Examined::More,
    }
    let result = ppp::v1::Header::try_from(bytes);
    match result {
        Ok(header) => {
            let consumed = header.header.len();
            let (client, kind) = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => (
                    SocketAddr::new(IpAddr::from(a.source_address).to_canonical(), a.source_port),
                    HeaderKind::V1,
                ),
                ppp::v1::Addresses::Tcp6(a) => (
                    SocketAddr::new(IpAddr::from(a.source_address).to_canonical(), a.source_port),
                    HeaderKind::V1,
                ),
                ppp::v1::Addresses::Unknown => (peer, HeaderKind::NoAddress),
            };
            Examined::Serve(Arrived {
                client,
                header: kind,
                consumed,
            })
        }
        Err(ppp::v1::BinaryParseError::Parse(ppp::v1::ParseError::HeaderTooLong)) => {
            Examined::Refuse(Refusal::TooLong)
        }
        Err(e) => Examined::Refuse(Refusal::Malformed(e.to_string())),
    }
}

/// A v2 `PROXY` header for a TCP connection from `source` to `destination`
/// (both of one family, else the header says `UNSPEC`), as a balancer
/// sends it; for tests and tools.
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, destination),
    )
    .build()
    .unwrap_or_default()
}

/// A v1 header for a TCP connection from `source` to `destination` (both
/// of one family).
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn policy(mode: ProxyMode) -> ProxyPolicy {
        ProxyPolicy {
            mode,
            trusted: vec![Network::parse("10.0.0.0/8").unwrap()],
            timeout: Duration::from_secs(5),
        }
    }

    const BALANCER: &str = "10.1.2.3:40000";
    const STRANGER: &str = "192.0.2.7:40000";
    const SERVER: &str = "10.9.9.9:22";
    const SSH: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";

    fn serve(client: &str, header: HeaderKind, consumed: usize) -> Examined {
        Examined::Serve(Arrived {
            client: addr(client),
            header,
            consumed,
        })
    }

    /// Feeds `bytes` as the runtime would, in the given chunk sizes, and
    /// returns the decision (or the timeout's, when the bytes run out).
    fn drive(policy: &ProxyPolicy, peer: SocketAddr, bytes: &[u8], chunks: &[usize]) -> Examined {
        let mut seen = 0;
        let mut sizes = chunks.iter().copied().chain(std::iter::repeat(7));
        loop {
            match policy.examine(peer, &bytes[..seen]) {
                Examined::More => {}
                decided => return decided,
            }
            assert!(seen < MAX_HEADER, "asked to read past the bound");
            if seen == bytes.len() {
                return policy.timed_out(peer, &bytes[..seen]);
            }
            let room = MAX_HEADER - seen;
            let n = sizes.next().unwrap().clamp(1, room.max(1));
            seen = (seen + n).min(bytes.len());
        }
    }

    #[test]
    fn required_needs_a_trusted_network() {
        let mut p = policy(ProxyMode::Required);
        assert!(p.validate().is_ok());
        p.trusted.clear();
        assert!(p.validate().unwrap_err().contains("--proxy-trusted"));
        assert!(policy(ProxyMode::Optional).validate().is_ok());
        let mut zero = policy(ProxyMode::Optional);
        zero.timeout = Duration::ZERO;
        assert!(zero.validate().is_err());
        assert!(ProxyPolicy::default().validate().is_ok());
    }

    #[test]
    fn arrivals() {
        let balancer = addr(BALANCER).ip();
        let stranger = addr(STRANGER).ip();
        assert_eq!(policy(ProxyMode::Off).arrival(balancer), Arrival::Direct);
        assert_eq!(policy(ProxyMode::Off).arrival(stranger), Arrival::Direct);
        for mode in [ProxyMode::Optional, ProxyMode::Required] {
            assert_eq!(policy(mode).arrival(balancer), Arrival::ReadHeader);
        }
        assert_eq!(
            policy(ProxyMode::Optional).arrival(stranger),
            Arrival::CheckUntrusted
        );
        assert_eq!(
            policy(ProxyMode::Required).arrival(stranger),
            Arrival::Refuse(Refusal::UntrustedPeer)
        );
    }

    #[test]
    fn v1_and_v2_carry_the_client() {
        let p = policy(ProxyMode::Required);
        let peer = addr(BALANCER);
        let v1 = v1_header(addr("203.0.113.9:51000"), addr(SERVER));
        let mut bytes = v1.clone();
        bytes.extend_from_slice(SSH);
        assert_eq!(
            p.examine(peer, &bytes),
            serve("203.0.113.9:51000", HeaderKind::V1, v1.len())
        );
        let v2 = v2_header(addr("[2001:db8::1]:51000"), addr("[2001:db8::2]:22"));
        let mut bytes = v2.clone();
        bytes.extend_from_slice(SSH);
        assert_eq!(
            p.examine(peer, &bytes),
            serve("[2001:db8::1]:51000", HeaderKind::V2, v2.len())
        );
        let v1_6 = v1_header(addr("[2001:db8::1]:51000"), addr("[2001:db8::2]:22"));
        assert_eq!(
            p.examine(peer, &v1_6),
            serve("[2001:db8::1]:51000", HeaderKind::V1, v1_6.len())
        );
    }

    #[test]
    fn local_unknown_and_unspec_are_the_peers_own() {
        let p = policy(ProxyMode::Required);
        let peer = addr(BALANCER);
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(
            p.examine(peer, &local),
            serve(BALANCER, HeaderKind::Local, 16)
        );
        // A LOCAL header's address block, if any, is ignored.
        let local4 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Stream,
            (addr("1.2.3.4:5"), addr(SERVER)),
        )
        .build()
        .unwrap();
        assert_eq!(
            p.examine(peer, &local4),
            serve(BALANCER, HeaderKind::Local, local4.len())
        );
        let unspec = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(
            p.examine(peer, &unspec),
            serve(BALANCER, HeaderKind::NoAddress, 16)
        );
        assert_eq!(
            p.examine(peer, b"PROXY UNKNOWN\r\nSSH-2.0-x\r\n"),
            serve(BALANCER, HeaderKind::NoAddress, 15)
        );
    }

    #[test]
    fn untrusted_peers_may_not_send_a_header() {
        let p = policy(ProxyMode::Optional);
        let stranger = addr(STRANGER);
        let v1 = v1_header(addr("127.0.0.9:1"), addr(SERVER));
        let v2 = v2_header(addr("127.0.0.9:1"), addr(SERVER));
        for header in [&v1, &v2] {
            assert_eq!(
                drive(&p, stranger, header, &[1]),
                Examined::Refuse(Refusal::Untrusted)
            );
        }
        // Its SSH is served as its own.
        assert_eq!(
            p.examine(stranger, SSH),
            serve(STRANGER, HeaderKind::None, 0)
        );
        assert_eq!(
            p.examine(stranger, b"S"),
            serve(STRANGER, HeaderKind::None, 0)
        );
        // A client that waits for the server to speak first.
        assert_eq!(
            p.timed_out(stranger, b""),
            serve(STRANGER, HeaderKind::None, 0)
        );
    }

    #[test]
    fn required_and_optional_without_a_header() {
        let peer = addr(BALANCER);
        assert_eq!(
            policy(ProxyMode::Required).examine(peer, SSH),
            Examined::Refuse(Refusal::Missing)
        );
        assert_eq!(
            policy(ProxyMode::Required).timed_out(peer, b""),
            Examined::Refuse(Refusal::Missing)
        );
        assert_eq!(
            policy(ProxyMode::Optional).examine(peer, SSH),
            serve(BALANCER, HeaderKind::None, 0)
        );
        assert_eq!(
            policy(ProxyMode::Optional).timed_out(peer, b""),
            serve(BALANCER, HeaderKind::None, 0)
        );
        // Off: nothing is ever a header.
        assert_eq!(
            policy(ProxyMode::Off).examine(peer, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            serve(BALANCER, HeaderKind::None, 0)
        );
    }

    #[test]
    fn malformed_incomplete_and_oversized_headers_are_refused() {
        let p = policy(ProxyMode::Optional);
        let peer = addr(BALANCER);
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"[..],
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(
                matches!(
                    drive(&p, peer, bad, &[64]),
                    Examined::Refuse(Refusal::Malformed(_))
                ),
                "{bad:?}: {:?}",
                drive(&p, peer, bad, &[64])
            );
        }
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
        assert_eq!(
            drive(&p, peer, &long, &[7]),
            Examined::Refuse(Refusal::TooLong)
        );
        // v2 with a bad version, a bad command, a declared length too big.
        let mut v2 = v2_header(addr("1.2.3.4:5"), addr(SERVER));
        v2[12] = 0x31;
        assert!(matches!(
            p.examine(peer, &v2),
            Examined::Refuse(Refusal::Malformed(_))
        ));
        v2[12] = 0x2f;
        assert!(matches!(
            p.examine(peer, &v2),
            Examined::Refuse(Refusal::Malformed(_))
        ));
        let mut huge = v2_header(addr("1.2.3.4:5"), addr(SERVER));
        huge[14..16].copy_from_slice(&60000u16.to_be_bytes());
        assert_eq!(
            p.examine(peer, &huge[..16]),
            Examined::Refuse(Refusal::TooLong)
        );
        // An IPv4 block shorter than its addresses.
        let mut short = v2_header(addr("1.2.3.4:5"), addr(SERVER));
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(
            p.examine(peer, &short),
            Examined::Refuse(Refusal::Malformed(_))
        ));
        // A header cut short at the timeout.
        let v1 = v1_header(addr("1.2.3.4:5"), addr(SERVER));
        assert_eq!(p.examine(peer, &v1[..20]), Examined::More);
        assert_eq!(
            p.timed_out(peer, &v1[..20]),
            Examined::Refuse(Refusal::Incomplete)
        );
        assert_eq!(
            p.timed_out(peer, b"PROX"),
            Examined::Refuse(Refusal::Incomplete)
        );
    }

    #[test]
    fn never_asks_past_the_bound() {
        // The most bytes any decision needs is MAX_HEADER.
        let p = policy(ProxyMode::Required);
        let peer = addr(BALANCER);
        let mut v2 = v2_header(addr("1.2.3.4:5"), addr(SERVER));
        v2[14..16].copy_from_slice(&((MAX_V2 - 16) as u16).to_be_bytes());
        v2.resize(MAX_V2, 0);
        // Padding TLVs (type 4, NOOP) fill the rest.
        assert_eq!(p.examine(peer, &v2[..MAX_V2 - 1]), Examined::More);
        assert!(!matches!(p.examine(peer, &v2), Examined::More));
    }

    /// One of the streams a connection may start with.
    fn stream() -> impl Strategy<Value = (bool, Vec<u8>)> {
        let header = prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), any::<bool>()).prop_map(|(ip, port, v1)| {
                let src = SocketAddr::from((ip, port));
                if v1 {
                    v1_header(src, addr(SERVER))
                } else {
                    v2_header(src, addr(SERVER))
                }
            }),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
                v2_header(SocketAddr::from((ip, port)), addr("[::1]:22"))
            }),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..40),
            Just(b"PROXY ".to_vec()),
            Just(V2_SIGNATURE.to_vec()),
        ];
        (
            any::<bool>(),
            header,
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(trusted, mut head, tail)| {
                head.extend_from_slice(&tail);
                (trusted, head)
            })
    }

    proptest! {
        /// However the bytes arrive, the decision is the same, it never
        /// reads past the bound, and what it consumes is the header alone.
        #[test]
        fn any_chunking_gives_the_same_decision(
            (trusted, bytes) in stream(),
            chunks in proptest::collection::vec(1usize..64, 0..40),
            mode in prop_oneof![Just(ProxyMode::Optional), Just(ProxyMode::Required)],
        ) {
            let p = policy(mode);
            let peer = addr(if trusted { BALANCER } else { STRANGER });
            // What ppp says of a malformed header may differ with where
            // the bytes stop; that it is malformed may not.
            let norm = |e: Examined| match e {
                Examined::Refuse(Refusal::Malformed(_)) => Examined::Refuse(Refusal::Malformed(String::new())),
                other => other,
            };
            let whole = drive(&p, peer, &bytes, &[bytes.len().max(1)]);
            let chunked = drive(&p, peer, &bytes, &chunks);
            prop_assert_eq!(norm(whole.clone()), norm(chunked));
            let bytewise = drive(&p, peer, &bytes, &[1; 600]);
            prop_assert_eq!(norm(whole.clone()), norm(bytewise));
            if let Examined::Serve(arrived) = whole {
                prop_assert!(arrived.consumed <= bytes.len());
                prop_assert!(arrived.consumed <= MAX_HEADER);
                if arrived.header == HeaderKind::None {
                    prop_assert_eq!(arrived.client, peer);
                }
            }
        }

        /// A header built for any address gives back that address.
        #[test]
        fn round_trip(ip in any::<[u8; 16]>(), port in any::<u16>(), v1 in any::<bool>()) {
            let src = SocketAddr::from((ip, port));
            let canonical = SocketAddr::new(src.ip().to_canonical(), port);
            let header = if v1 { v1_header(src, addr("[::1]:22")) } else { v2_header(src, addr("[::1]:22")) };
            let p = policy(ProxyMode::Required);
            let kind = if v1 { HeaderKind::V1 } else { HeaderKind::V2 };
            prop_assert_eq!(
                p.examine(addr(BALANCER), &header),
                Examined::Serve(Arrived { client: canonical, header: kind, consumed: header.len() })
            );
        }
    }
}
