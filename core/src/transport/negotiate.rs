//! Algorithm negotiation (RFC 4253 §7.1), with the extension markers of
//! RFC 8308 §2.1 (`ext-info-c`) and OpenSSH `PROTOCOL` §1.9 (strict kex).

use super::cipher::{CipherAlg, MacAlg};
use super::hostkey::HostKeyAlg;
use super::kex::KexAlg;
use crate::wire::{self, Malformed, NameList, Parsed, Parser, numbers};

/// Marker a client lists to ask for `SSH_MSG_EXT_INFO` (RFC 8308 §2.1).
pub const EXT_INFO_C: &str = "ext-info-c";
/// Marker a server lists to say it accepts EXT_INFO from the client.
pub const EXT_INFO_S: &str = "ext-info-s";
/// Strict key exchange, client side (the Terrapin countermeasure).
pub const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
/// Strict key exchange, server side.
pub const STRICT_S: &str = "kex-strict-s-v00@openssh.com";

/// A parsed KEXINIT, borrowing the payload.
#[derive(Debug, Clone, Copy)]
pub struct KexInit<'a> {
    /// Key-exchange methods, with any markers.
    pub kex: NameList<'a>,
    /// Host-key signature algorithms.
    pub host_key: NameList<'a>,
    /// Ciphers client to server.
    pub enc_c2s: NameList<'a>,
    /// Ciphers server to client.
    pub enc_s2c: NameList<'a>,
    /// MACs client to server.
    pub mac_c2s: NameList<'a>,
    /// MACs server to client.
    pub mac_s2c: NameList<'a>,
    /// Compression client to server.
    pub comp_c2s: NameList<'a>,
    /// Compression server to client.
    pub comp_s2c: NameList<'a>,
    /// Whether a guessed key-exchange packet follows.
    pub first_kex_packet_follows: bool,
}

impl<'a> KexInit<'a> {
    /// Parses a KEXINIT payload (message number included).
    pub fn parse(payload: &'a [u8]) -> Parsed<Self> {
        let mut p = Parser::new(payload);
        if p.u8()? != numbers::KEXINIT {
            return Err(Malformed);
        }
        p.bytes(16)?;
        let kex = p.name_list()?;
        let host_key = p.name_list()?;
        let enc_c2s = p.name_list()?;
        let enc_s2c = p.name_list()?;
        let mac_c2s = p.name_list()?;
        let mac_s2c = p.name_list()?;
        let comp_c2s = p.name_list()?;
        let comp_s2c = p.name_list()?;
        p.name_list()?;
        p.name_list()?;
        let first_kex_packet_follows = p.bool()?;
        p.u32()?;
        // RFC 4253 §7.1 reserves the last field for extension; OpenSSH
        // rejects nothing after it either, so trailing bytes are tolerated.
        Ok(Self {
            kex,
            host_key,
            enc_c2s,
            enc_s2c,
            mac_c2s,
            mac_s2c,
            comp_c2s,
            comp_s2c,
            first_kex_packet_follows,
        })
    }
}

/// The algorithms one side offers, in its order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Key exchanges.
    pub kex: Vec<KexAlg>,
    /// Host-key signature algorithms.
    pub host_key: Vec<HostKeyAlg>,
    /// Ciphers (both directions).
    pub ciphers: Vec<CipherAlg>,
    /// MACs (both directions; only used with non-AEAD ciphers).
    pub macs: Vec<MacAlg>,
}

impl Offer {
    /// Everything we implement, in our order of preference.
    pub fn all(host_key: Vec<HostKeyAlg>) -> Self {
        Self {
            kex: KexAlg::DEFAULT.to_vec(),
            host_key,
            ciphers: CipherAlg::ALL.to_vec(),
            macs: MacAlg::DEFAULT.to_vec(),
        }
    }

    /// Appends a KEXINIT payload offering these algorithms. `markers` go at
    /// the end of the key-exchange list (RFC 8308 §2.1).
    pub fn write_kexinit(&self, out: &mut Vec<u8>, cookie: [u8; 16], markers: &[&str]) {
        wire::put_u8(out, numbers::KEXINIT);
        out.extend_from_slice(&cookie);
        let kex = self
            .kex
            .iter()
            .map(|k| k.name())
            .chain(markers.iter().copied());
        wire::put_name_list(out, kex);
        wire::put_name_list(out, self.host_key.iter().map(|h| h.name()));
        for _ in 0..2 {
            wire::put_name_list(out, self.ciphers.iter().map(|c| c.name()));
        }
        for _ in 0..2 {
            wire::put_name_list(out, self.macs.iter().map(|m| m.name()));
        }
        for _ in 0..2 {
            wire::put_name_list(out, ["none"]);
        }
        for _ in 0..2 {
            wire::put_name_list(out, []);
        }
        wire::put_bool(out, false);
        wire::put_u32(out, 0);
    }
}

/// The outcome of negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Key exchange.
    pub kex: KexAlg,
    /// Host-key algorithm.
    pub host_key: HostKeyAlg,
    /// Cipher and MAC client to server.
    pub c2s: (CipherAlg, Option<MacAlg>),
    /// Cipher and MAC server to client.
    pub s2c: (CipherAlg, Option<MacAlg>),
    /// Whether the guessed packet that follows the peer's KEXINIT (if any)
    /// guessed wrong and must be ignored (RFC 4253 §7).
    pub ignore_guess: bool,
}

/// Why negotiation failed: names the category, as OpenSSH's "no matching
/// ... found" does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMatch(pub &'static str);

impl std::fmt::Display for NoMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no matching {} found", self.0)
    }
}

/// Picks, in each category, the first of the client's algorithms that the
/// server also offers (RFC 4253 §7.1).
pub fn negotiate(client: &KexInit<'_>, server: &KexInit<'_>) -> Result<Negotiated, NoMatch> {
    let kex =
        pick(client.kex, server.kex, KexAlg::from_name).ok_or(NoMatch("key exchange method"))?;
    let host_key = pick(client.host_key, server.host_key, HostKeyAlg::from_name)
        .ok_or(NoMatch("host key type"))?;
    let c2s = direction(
        client.enc_c2s,
        server.enc_c2s,
        client.mac_c2s,
        server.mac_c2s,
    )?;
    let s2c = direction(
        client.enc_s2c,
        server.enc_s2c,
        client.mac_s2c,
        server.mac_s2c,
    )?;
    for (c, s) in [
        (client.comp_c2s, server.comp_c2s),
        (client.comp_s2c, server.comp_s2c),
    ] {
        if pick(c, s, |n| (n == "none").then_some(())).is_none() {
            return Err(NoMatch("compression method"));
        }
    }
    // RFC 4253 §7: a guessed packet is right only when both sides prefer
    // the same key exchange and host key algorithms (their first choices
    // agree). Its being the algorithm negotiated is not enough: that is
    // the `kexguess2@matt.ucc.asn.au` rule, which holds only when both
    // sides advertise it, and we do not. A peer that guessed wrong sends
    // the right packet next (Dropbear's client does), so taking its guess
    // would make that one out of sequence.
    let first_choices_agree = client.kex.first() == server.kex.first()
        && client.host_key.first() == server.host_key.first();
    let guessed = client.first_kex_packet_follows || server.first_kex_packet_follows;
    let ignore_guess = guessed && !first_choices_agree;
    Ok(Negotiated {
        kex,
        host_key,
        c2s,
        s2c,
        ignore_guess,
    })
}

fn direction(
    client_enc: NameList<'_>,
    server_enc: NameList<'_>,
    client_mac: NameList<'_>,
    server_mac: NameList<'_>,
) -> Result<(CipherAlg, Option<MacAlg>), NoMatch> {
    let cipher = pick(client_enc, server_enc, CipherAlg::from_name).ok_or(NoMatch("cipher"))?;
    if cipher.is_aead() {
        return Ok((cipher, None));
    }
    let mac = pick(client_mac, server_mac, MacAlg::from_name).ok_or(NoMatch("MAC"))?;
    Ok((cipher, Some(mac)))
}

fn pick<T>(
    client: NameList<'_>,
    server: NameList<'_>,
    known: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    client.iter().filter(|n| server.contains(n)).find_map(known)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kexinit(offer: &Offer, markers: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        offer.write_kexinit(&mut out, [7; 16], markers);
        out
    }

    fn server() -> Offer {
        Offer::all(vec![
            HostKeyAlg::Ed25519,
            HostKeyAlg::RsaSha2_512,
            HostKeyAlg::RsaSha2_256,
        ])
    }

    #[test]
    fn the_client_preference_wins() {
        let s = kexinit(&server(), &[STRICT_S]);
        let mut client = server();
        client.kex = vec![KexAlg::Curve25519Sha256, KexAlg::MlKem768X25519Sha256];
        client.ciphers = vec![CipherAlg::Aes128Ctr, CipherAlg::ChaCha20Poly1305];
        client.macs = vec![MacAlg::HmacSha512Etm];
        client.host_key = vec![HostKeyAlg::RsaSha2_256];
        let c = kexinit(&client, &[EXT_INFO_C, STRICT_C]);
        let (c, s) = (KexInit::parse(&c).unwrap(), KexInit::parse(&s).unwrap());
        let n = negotiate(&c, &s).unwrap();
        assert_eq!(n.kex, KexAlg::Curve25519Sha256);
        assert_eq!(n.host_key, HostKeyAlg::RsaSha2_256);
        assert_eq!(n.c2s, (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha512Etm)));
        assert!(c.kex.contains(STRICT_C) && c.kex.contains(EXT_INFO_C));
        assert!(!n.ignore_guess);
    }

    #[test]
    fn markers_are_never_chosen_and_mismatches_name_the_category() {
        let s = kexinit(&server(), &[STRICT_S]);
        let mut client = server();
        client.kex = vec![];
        let c = kexinit(&client, &[STRICT_S, EXT_INFO_C]);
        let r = negotiate(&KexInit::parse(&c).unwrap(), &KexInit::parse(&s).unwrap());
        assert_eq!(r, Err(NoMatch("key exchange method")));

        // A client that only knows zlib compression.
        let mut c = Vec::new();
        wire::put_u8(&mut c, numbers::KEXINIT);
        c.extend_from_slice(&[0; 16]);
        for list in [
            "curve25519-sha256",
            "ssh-ed25519",
            "aes128-ctr",
            "aes128-ctr",
            "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-256-etm@openssh.com",
            "zlib",
            "zlib",
            "",
            "",
        ] {
            wire::put_string(&mut c, list.as_bytes());
        }
        wire::put_bool(&mut c, false);
        wire::put_u32(&mut c, 0);
        let r = negotiate(&KexInit::parse(&c).unwrap(), &KexInit::parse(&s).unwrap());
        assert_eq!(r, Err(NoMatch("compression method")));
    }

    #[test]
    fn a_wrong_guess_is_flagged() {
        let s = kexinit(&server(), &[]);
        let mut c = kexinit(&server(), &[]);
        let n = c.len();
        c[n - 5] = 1; // first_kex_packet_follows
        let ci = KexInit::parse(&c).unwrap();
        assert!(ci.first_kex_packet_follows);
        assert!(
            !negotiate(&ci, &KexInit::parse(&s).unwrap())
                .unwrap()
                .ignore_guess
        );
        let mut other = server();
        other.kex.reverse();
        let s = kexinit(&other, &[]);
        let mut c = kexinit(&other, &[]);
        let n = c.len();
        c[n - 5] = 1;
        // Same first choices on both sides: right guess.
        let r = negotiate(&KexInit::parse(&c).unwrap(), &KexInit::parse(&s).unwrap()).unwrap();
        assert!(!r.ignore_guess);
        let mut client = other.clone();
        client.kex = vec![KexAlg::Sntrup761X25519Sha512, KexAlg::Curve25519Sha256];
        let s = kexinit(&server(), &[]);
        let mut c = kexinit(&client, &[]);
        let n = c.len();
        c[n - 5] = 1;
        let mut srv = server();
        srv.kex = vec![KexAlg::Curve25519Sha256];
        let s2 = kexinit(&srv, &[]);
        let r = negotiate(&KexInit::parse(&c).unwrap(), &KexInit::parse(&s2).unwrap()).unwrap();
        assert!(r.ignore_guess);
        // The client's first choice is the one negotiated, but the server
        // prefers another: still a wrong guess (Dropbear's client, which
        // guesses curve25519, then sends the right packet again).
        let r = negotiate(&KexInit::parse(&c).unwrap(), &KexInit::parse(&s).unwrap()).unwrap();
        assert_eq!(r.kex, KexAlg::Sntrup761X25519Sha512);
        assert!(r.ignore_guess);
    }

    #[test]
    fn truncated_kexinit_is_malformed() {
        let s = kexinit(&server(), &[]);
        for cut in 0..s.len() - 4 {
            assert!(KexInit::parse(&s[..cut]).is_err(), "{cut}");
        }
    }
}
