//! SSH user certificates (OpenSSH `PROTOCOL.certkeys`) in standalone mode:
//! the trusted user CAs (`--trusted-user-ca-keys`, sshd's
//! `TrustedUserCAKeys`), the revoked keys (`--revoked-keys`, sshd's
//! `RevokedKeys`) and the decision whether a certificate lets its holder
//! in, and as whom.
//!
//! Pure: the files' texts, the wall-clock time (seconds since the Unix
//! epoch) and the client's address are inputs. Parsing and signature
//! checking are ssh-key's ([`ssh_key::Certificate`]); what is checked here
//! is what ssh-key leaves to its caller: the CA is one we trust, the
//! certificate is a user certificate, valid now, names a principal, and its
//! critical options are all understood (`source-address` is enforced,
//! `force-command` refused since only git runs, any other refused).
//! Extensions are ignored. The user is the first principal the access
//! file knows (a `known` predicate, an input like the rest); with no
//! access file, or when it knows none of them, the first principal.

use core::net::IpAddr;
use std::collections::HashSet;
use std::fmt;

use ssh_encoding::Encode;
use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, PublicKey};

use super::pubkey;
use crate::app::fingerprint;

/// A line of a CA or revoked-keys file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The CA keys trusted to sign user certificates.
#[derive(Debug, Clone, Default)]
pub struct UserCas {
    /// Each CA key's blob, in file order.
    keys: Vec<Vec<u8>>,
}

impl UserCas {
    /// Parses sshd's `TrustedUserCAKeys` format: one public key a line
    /// (`type base64 [comment]`, no options); blank lines and `#` comments
    /// skipped. A line that is not a key fails the whole file: a CA list
    /// half read is not the operator's.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let mut keys = Vec::new();
        for (line, key) in key_lines(text) {
            let key = PublicKey::from_openssh(key).map_err(|e| FileError {
                line,
                reason: format!("not an OpenSSH public key: {e}"),
            })?;
            let blob = blob_of(key.key_data()).ok_or_else(|| FileError {
                line,
                reason: "the key cannot be encoded".into(),
            })?;
            if !keys.contains(&blob) {
                keys.push(blob);
            }
        }
        Ok(Self { keys })
    }

    /// The number of CA keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no CA is trusted (every certificate is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn trusts(&self, blob: &[u8]) -> bool {
        self.keys.iter().any(|k| k == blob)
    }
}

/// Keys and certificates refused whatever else says.
#[derive(Debug, Clone, Default)]
pub struct RevokedKeys {
    /// Blobs of the revoked keys (of a listed certificate, its key).
    blobs: HashSet<Vec<u8>>,
}

impl RevokedKeys {
    /// Parses sshd's `RevokedKeys` text format: one public key or
    /// certificate a line, blank lines and `#` comments skipped. A listed
    /// certificate revokes its key (as sshd compares public parts). A line
    /// that is neither fails the whole file.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let mut blobs = HashSet::new();
        for (line, text) in key_lines(text) {
            let key = match PublicKey::from_openssh(text) {
                Ok(key) => key.key_data().clone(),
                Err(_) => match Certificate::from_openssh(text) {
                    Ok(cert) => cert.public_key().clone(),
                    Err(e) => {
                        return Err(FileError {
                            line,
                            reason: format!("not an OpenSSH public key or certificate: {e}"),
                        });
                    }
                },
            };
            let blob = blob_of(&key).ok_or_else(|| FileError {
                line,
                reason: "the key cannot be encoded".into(),
            })?;
            blobs.insert(blob);
        }
        Ok(Self { blobs })
    }

    /// The number of revoked keys.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Whether a plain key (its blob) is revoked.
    pub fn is_revoked(&self, blob: &[u8]) -> bool {
        self.blobs.contains(blob)
    }
}

/// Why a certificate was refused (each is a failed authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The blob is not a certificate we can read.
    Malformed(String),
    /// Signed by a CA not in `--trusted-user-ca-keys`.
    UnknownCa,
    /// The CA's signature does not verify, or is an `ssh-rsa` (SHA-1) one.
    BadSignature,
    /// The certificate's key or its CA's key is in `--revoked-keys`.
    Revoked,
    /// A host certificate.
    NotUserCertificate,
    /// Valid only from this time (seconds since the epoch).
    NotYetValid(u64),
    /// Valid only before this time.
    Expired(u64),
    /// No principal: OpenSSH would let it stand for anyone; we refuse.
    NoPrincipals,
    /// The client's address is outside the `source-address` list.
    SourceAddress(String),
    /// A `force-command`: only git runs here.
    ForceCommand,
    /// A critical option we do not understand (escaped).
    UnknownCriticalOption(String),
}

impl Refusal {
    /// A short name of the reason, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownCa => "unknown CA",
            Self::BadSignature => "bad CA signature",
            Self::Revoked => "revoked",
            Self::NotUserCertificate => "not a user certificate",
            Self::NotYetValid(_) => "not yet valid",
            Self::Expired(_) => "expired",
            Self::NoPrincipals => "no principals",
            Self::SourceAddress(_) => "source address",
            Self::ForceCommand => "force-command",
            Self::UnknownCriticalOption(_) => "unknown critical option",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed: {why}"),
            Self::NotYetValid(at) => write!(f, "not yet valid (valid from {at})"),
            Self::Expired(at) => write!(f, "expired (valid before {at})"),
            Self::SourceAddress(list) => {
                write!(f, "source address: client not in source-address {list}")
            }
            Self::UnknownCriticalOption(name) => write!(f, "unknown critical option {name}"),
            other => f.write_str(other.reason()),
        }
    }
}

/// A certificate that lets its holder in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUser {
    /// The user: the first principal `known` accepted, else the first.
    pub principal: String,
    /// The certificate's key id (`ssh-keygen -I`), escaped.
    pub key_id: String,
    /// Its serial number.
    pub serial: u64,
    /// The SHA256 fingerprint of the CA that signed it.
    pub ca: String,
}

/// Whether a blob is a certificate (its type name ends in
/// `-cert-v01@openssh.com`), to tell it from a plain key.
pub fn is_certificate(blob: &[u8]) -> bool {
    let mut reader = blob;
    <String as ssh_encoding::Decode>::decode(&mut reader)
        .is_ok_and(|name| name.ends_with("-cert-v01@openssh.com"))
}

/// Decides whether the certificate `blob` lets its holder in at `now`
/// (seconds since the Unix epoch), connecting from `client` (the real
/// client, as the PROXY protocol gives it), and as whom: the first of its
/// principals that `known` accepts (the access file's names), else its
/// first principal (to whom the access file then gives no right).
pub fn check(
    blob: &[u8],
    cas: &UserCas,
    revoked: &RevokedKeys,
    now: u64,
    client: IpAddr,
    known: &dyn Fn(&str) -> bool,
) -> Result<CertUser, Refusal> {
    let cert = pubkey::decode_certificate(blob).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let ca_blob = blob_of(cert.signature_key())
        .ok_or_else(|| Refusal::Malformed("CA key cannot be encoded".into()))?;
    let key_blob = blob_of(cert.public_key())
        .ok_or_else(|| Refusal::Malformed("key cannot be encoded".into()))?;
    if revoked.is_revoked(&key_blob) || revoked.is_revoked(&ca_blob) {
        return Err(Refusal::Revoked);
    }
    if !cas.trusts(&ca_blob) {
        return Err(Refusal::UnknownCa);
    }
    // sshd's default CASignatureAlgorithms leaves out ssh-rsa (SHA-1).
    if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        return Err(Refusal::BadSignature);
    }
    // The CA is trusted (above), so its signature is what vouches for the
    // rest.
    cert.verify_signature().map_err(|_| Refusal::BadSignature)?;
    if cert.cert_type() != CertType::User {
        return Err(Refusal::NotUserCertificate);
    }
    if now < cert.valid_after() {
        return Err(Refusal::NotYetValid(cert.valid_after()));
    }
    if now >= cert.valid_before() {
        return Err(Refusal::Expired(cert.valid_before()));
    }
    let principals = cert.valid_principals();
    let Some(first) = principals.first() else {
        return Err(Refusal::NoPrincipals);
    };
    let principal = principals.iter().find(|p| known(p)).unwrap_or(first);
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            "source-address" => {
                if !source_address_allows(value, client) {
                    return Err(Refusal::SourceAddress(crate::log_safe(value.as_bytes())));
                }
            }
            "force-command" => return Err(Refusal::ForceCommand),
            other => {
                return Err(Refusal::UnknownCriticalOption(crate::log_safe(
                    other.as_bytes(),
                )));
            }
        }
    }
    Ok(CertUser {
        principal: principal.clone(),
        key_id: crate::log_safe(cert.key_id().as_bytes()),
        serial: cert.serial(),
        ca: fingerprint::sha256_blob(&ca_blob),
    })
}

/// Whether `client` is in a `source-address` list: comma-separated
/// addresses and CIDR blocks (`192.0.2.0/24`, `2001:db8::/32`). An entry
/// that does not parse matches nothing; an IPv4 client seen as an
/// IPv4-mapped IPv6 address is compared as IPv4.
pub fn source_address_allows(list: &str, client: IpAddr) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    list.split(',')
        .map(str::trim)
        .any(|entry| cidr_contains(entry, client))
}

fn cidr_contains(entry: &str, client: IpAddr) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, client) {
        (IpAddr::V4(net), IpAddr::V4(client)) => {
            let bits = bits.unwrap_or(32);
            bits <= 32
                && prefix_eq(
                    u128::from(u32::from(net)),
                    u128::from(u32::from(client)),
                    bits,
                    32,
                )
        }
        (IpAddr::V6(net), IpAddr::V6(client)) => {
            let bits = bits.unwrap_or(128);
            bits <= 128 && prefix_eq(u128::from(net), u128::from(client), bits, 128)
        }
        _ => false,
    }
}

/// Whether the first `bits` of two `width`-bit numbers are equal.
fn prefix_eq(a: u128, b: u128, bits: u32, width: u32) -> bool {
    let shift = width - bits;
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// The non-comment lines of a key file, with their numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').enumerate().filter_map(|(i, raw)| {
        let line = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
        (!line.is_empty() && !line.starts_with('#')).then_some((i + 1, line))
    })
}

fn blob_of(key: &KeyData) -> Option<Vec<u8>> {
    key.encode_vec().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use ssh_key::PrivateKey;
    use ssh_key::certificate::Builder;

    const NOW: u64 = 1_800_000_000;

    fn ca() -> PrivateKey {
        PrivateKey::from_openssh(include_str!("../auth/testdata/ed25519")).unwrap()
    }

    fn user() -> PrivateKey {
        PrivateKey::from_openssh(include_str!("../auth/testdata/ecdsa256")).unwrap()
    }

    fn cert_with(edit: impl FnOnce(&mut Builder)) -> Vec<u8> {
        let mut builder = Builder::new(
            vec![7u8; 16],
            user().public_key().key_data().clone(),
            NOW - 60,
            NOW + 3600,
        )
        .unwrap();
        builder.serial(42).unwrap();
        builder.key_id("id").unwrap();
        builder.valid_principal("alice").unwrap();
        builder.valid_principal("bob").unwrap();
        builder.extension("permit-pty", "").unwrap();
        edit(&mut builder);
        builder.sign(&ca()).unwrap().encode_vec().unwrap()
    }

    fn cas() -> UserCas {
        UserCas::parse(&ca().public_key().to_openssh().unwrap()).unwrap()
    }

    fn client() -> IpAddr {
        "192.0.2.7".parse().unwrap()
    }

    /// No access file: every name will do.
    fn anyone(_: &str) -> bool {
        true
    }

    #[test]
    fn the_user_is_the_first_principal_the_access_file_knows() {
        let blob = cert_with(|b| {
            b.valid_principal("carol").unwrap();
        });
        let none = RevokedKeys::default();
        let who = |known: &dyn Fn(&str) -> bool| {
            check(&blob, &cas(), &none, NOW, client(), known)
                .unwrap()
                .principal
        };
        // Principals are alice, bob, carol, in that order.
        assert_eq!(who(&anyone), "alice");
        assert_eq!(who(&|p| p == "bob" || p == "carol"), "bob");
        assert_eq!(who(&|p| p == "carol"), "carol");
        // None known: the first, with no rights of its own.
        assert_eq!(who(&|_| false), "alice");
    }

    #[test]
    fn a_good_certificate_gives_its_first_principal() {
        let blob = cert_with(|_| {});
        assert!(is_certificate(&blob));
        let found = check(
            &blob,
            &cas(),
            &RevokedKeys::default(),
            NOW,
            client(),
            &anyone,
        )
        .unwrap();
        assert_eq!(found.principal, "alice");
        assert_eq!(found.serial, 42);
        assert_eq!(found.key_id, "id");
        let plain = user().public_key().key_data().encode_vec().unwrap();
        assert!(!is_certificate(&plain));
    }

    #[test]
    fn refusals() {
        let none = RevokedKeys::default();
        let blob = cert_with(|_| {});
        let go = |blob: &[u8], now| check(blob, &cas(), &none, now, client(), &anyone);
        assert_eq!(go(&blob, NOW - 61), Err(Refusal::NotYetValid(NOW - 60)));
        assert_eq!(go(&blob, NOW + 3600), Err(Refusal::Expired(NOW + 3600)));
        assert_eq!(
            check(&blob, &UserCas::default(), &none, NOW, client(), &anyone),
            Err(Refusal::UnknownCa)
        );
        let host = cert_with(|b| {
            b.cert_type(CertType::Host).unwrap();
        });
        assert_eq!(go(&host, NOW), Err(Refusal::NotUserCertificate));
        let no_principals = {
            let mut builder = Builder::new(
                vec![7u8; 16],
                user().public_key().key_data().clone(),
                NOW - 60,
                NOW + 3600,
            )
            .unwrap();
            builder.all_principals_valid().unwrap();
            builder.sign(&ca()).unwrap().encode_vec().unwrap()
        };
        assert_eq!(go(&no_principals, NOW), Err(Refusal::NoPrincipals));
        let forced = cert_with(|b| {
            b.critical_option("force-command", "ls").unwrap();
        });
        assert_eq!(go(&forced, NOW), Err(Refusal::ForceCommand));
        let odd = cert_with(|b| {
            b.critical_option("verify-required", "").unwrap();
        });
        assert!(matches!(
            go(&odd, NOW),
            Err(Refusal::UnknownCriticalOption(_)) | Err(Refusal::Malformed(_))
        ));
        let from = cert_with(|b| {
            b.critical_option("source-address", "10.0.0.0/8,192.0.2.7")
                .unwrap();
        });
        assert!(go(&from, NOW).is_ok());
        let elsewhere = cert_with(|b| {
            b.critical_option("source-address", "10.0.0.0/8").unwrap();
        });
        assert!(matches!(
            go(&elsewhere, NOW),
            Err(Refusal::SourceAddress(_))
        ));
        // A flipped byte in the signed part breaks the CA's signature.
        let mut forged = blob.clone();
        let at = forged.len() - 100;
        forged[at] ^= 1;
        assert!(go(&forged, NOW).is_err());
    }

    #[test]
    fn revocation_of_the_key_or_the_ca() {
        let blob = cert_with(|_| {});
        let key_line = user().public_key().to_openssh().unwrap();
        let ca_line = ca().public_key().to_openssh().unwrap();
        let cert = Certificate::from_bytes(&blob).unwrap();
        let cert_line = cert.to_openssh().unwrap();
        for text in [key_line, ca_line, cert_line] {
            let revoked = RevokedKeys::parse(&format!("# revoked\n\n{text}\n")).unwrap();
            assert_eq!(
                check(&blob, &cas(), &revoked, NOW, client(), &anyone),
                Err(Refusal::Revoked)
            );
        }
        let plain = user().public_key().key_data().encode_vec().unwrap();
        let revoked = RevokedKeys::parse(&user().public_key().to_openssh().unwrap()).unwrap();
        assert!(revoked.is_revoked(&plain));
        assert_eq!(RevokedKeys::parse("ok\nnonsense here").unwrap_err().line, 1);
        assert_eq!(UserCas::parse("\n# c\nfoo bar").unwrap_err().line, 3);
    }

    #[test]
    fn source_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(source_address_allows("192.0.2.0/24", ip("192.0.2.200")));
        assert!(!source_address_allows("192.0.2.0/25", ip("192.0.2.200")));
        assert!(source_address_allows("0.0.0.0/0", ip("203.0.113.1")));
        assert!(source_address_allows("127.0.0.1", ip("::ffff:127.0.0.1")));
        assert!(source_address_allows("2001:db8::/32", ip("2001:db8::1")));
        assert!(!source_address_allows("2001:db8::/32", ip("2001:db9::1")));
        assert!(!source_address_allows(
            "192.0.2.0/33,garbage,",
            ip("192.0.2.1")
        ));
        assert!(!source_address_allows("127.0.0.1", ip("::1")));
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let _ = check(&bytes, &cas(), &RevokedKeys::default(), NOW, client(), &anyone);
            if let Ok(cert) = pubkey::decode_certificate(&bytes) {
                prop_assert_eq!(cert.encode_vec().unwrap(), bytes);
            }
        }

        #[test]
        fn mutated_certificates_never_panic_and_reencode(
            index in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut blob = cert_with(|_| {});
            let i = index.index(blob.len());
            blob[i] = byte;
            let cut = cut.index(blob.len() + 1);
            let blob = &blob[..cut.max(i)];
            let _ = check(blob, &cas(), &RevokedKeys::default(), NOW, client(), &anyone);
            if let Ok(cert) = pubkey::decode_certificate(blob) {
                prop_assert_eq!(cert.encode_vec().unwrap(), blob.to_vec());
            }
        }

        #[test]
        fn good_certificates_reencode(principal in "[a-z]{1,12}", serial in any::<u64>()) {
            let blob = cert_with(|b| {
                b.serial(serial).ok();
                b.valid_principal(principal.clone()).ok();
            });
            let cert = pubkey::decode_certificate(&blob).unwrap();
            prop_assert_eq!(cert.encode_vec().unwrap(), blob);
        }
    }
}
