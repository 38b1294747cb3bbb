//! Public-key user authentication signatures (RFC 4252 §7): which user keys
//! and signature algorithms are accepted, and the signature check.
//!
//! Accepted: `ssh-ed25519` (RFC 8709), `ecdsa-sha2-nistp256/384/521`
//! (RFC 5656), `rsa-sha2-256/512` (RFC 8332) with keys of 2048 to 8192 bits,
//! and the security-key types `sk-ssh-ed25519@openssh.com` and
//! `sk-ecdsa-sha2-nistp256@openssh.com` (OpenSSH PROTOCOL.u2f), whose
//! signatures must carry the user-presence flag (as sshd requires unless
//! `no-touch-required`).
//!
//! User certificates (OpenSSH PROTOCOL.certkeys) of the ed25519, ECDSA and
//! RSA SHA-2 types are read here ([`parse_user_cert`]); the user signs with
//! the certified key, and whether the certificate is trusted is decided by
//! [`crate::auth::certs`].
//!
//! Refused: `ssh-dss`, SHA-1 `ssh-rsa` signatures and their certificates,
//! security-key certificates, RSA under
//! 2048 bits, ECDSA points off their curve, invalid or small-order ed25519
//! points, and every blob that is truncated, has trailing bytes or is not in
//! canonical form (so one key has one blob and one fingerprint).
//!
//! Which keys exist and whom they belong to is decided elsewhere; this
//! module only says whether a blob is an acceptable key and whether a
//! signature by it is good. The caller builds `data` (RFC 4252 §7: session
//! id, then the USERAUTH_REQUEST fields) and takes the identity only from
//! the key returned by a successful [`verify_user_signature`].

use core::fmt;

use ssh_encoding::Encode as _;
use ssh_key::public::{KeyData, RsaPublicKey};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PublicKey, Signature};

use crate::transport::hostkey::{
    HostKeyError, bit_length, decode_public_blob, decode_signature_blob, rsa_bits, verify_decoded,
};

/// The smallest RSA modulus accepted for users, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// The largest RSA modulus accepted, in bits: the verifier (the `rsa` crate
/// behind ssh-key) refuses larger ones.
pub const MAX_RSA_BITS: u32 = 8192;

/// The user-presence bit of a security-key signature's flags
/// (OpenSSH PROTOCOL.u2f, `SSH_SK_USER_PRESENCE_REQD`).
const SK_USER_PRESENT: u8 = 0x01;

/// A public key algorithm a user may authenticate with (the name in a
/// USERAUTH_REQUEST and in the signature blob).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserKeyAlg {
    /// `ssh-ed25519` (RFC 8709).
    Ed25519,
    /// `ecdsa-sha2-nistp256` (RFC 5656).
    EcdsaP256,
    /// `ecdsa-sha2-nistp384` (RFC 5656).
    EcdsaP384,
    /// `ecdsa-sha2-nistp521` (RFC 5656).
    EcdsaP521,
    /// `rsa-sha2-512` (RFC 8332).
    RsaSha2_512,
    /// `rsa-sha2-256` (RFC 8332).
    RsaSha2_256,
    /// `sk-ssh-ed25519@openssh.com` (OpenSSH PROTOCOL.u2f).
    SkEd25519,
    /// `sk-ecdsa-sha2-nistp256@openssh.com` (OpenSSH PROTOCOL.u2f).
    SkEcdsaP256,
    /// `ssh-ed25519-cert-v01@openssh.com` (OpenSSH PROTOCOL.certkeys).
    Ed25519Cert,
    /// `ecdsa-sha2-nistp256-cert-v01@openssh.com`.
    EcdsaP256Cert,
    /// `ecdsa-sha2-nistp384-cert-v01@openssh.com`.
    EcdsaP384Cert,
    /// `ecdsa-sha2-nistp521-cert-v01@openssh.com`.
    EcdsaP521Cert,
    /// `rsa-sha2-512-cert-v01@openssh.com`.
    RsaSha2_512Cert,
    /// `rsa-sha2-256-cert-v01@openssh.com`.
    RsaSha2_256Cert,
}

impl UserKeyAlg {
    /// Every accepted algorithm, in the order to list them in the
    /// `server-sig-algs` extension (RFC 8308 §3.1).
    pub const ALL: [Self; 14] = [
        Self::Ed25519,
        Self::SkEd25519,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::SkEcdsaP256,
        Self::RsaSha2_512,
        Self::RsaSha2_256,
        Self::Ed25519Cert,
        Self::EcdsaP256Cert,
        Self::EcdsaP384Cert,
        Self::EcdsaP521Cert,
        Self::RsaSha2_512Cert,
        Self::RsaSha2_256Cert,
    ];

    /// The algorithms of plain keys (no certificates): those a signature
    /// can be made with.
    pub const PLAIN: [Self; 8] = [
        Self::Ed25519,
        Self::SkEd25519,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::SkEcdsaP256,
        Self::RsaSha2_512,
        Self::RsaSha2_256,
    ];

    /// Whether this is a certificate algorithm (`*-cert-v01@openssh.com`).
    pub fn is_cert(self) -> bool {
        self.base() != self
    }

    /// The plain algorithm the certified key signs with (itself for a
    /// plain one).
    pub fn base(self) -> Self {
        match self {
            Self::Ed25519Cert => Self::Ed25519,
            Self::EcdsaP256Cert => Self::EcdsaP256,
            Self::EcdsaP384Cert => Self::EcdsaP384,
            Self::EcdsaP521Cert => Self::EcdsaP521,
            Self::RsaSha2_512Cert => Self::RsaSha2_512,
            Self::RsaSha2_256Cert => Self::RsaSha2_256,
            plain => plain,
        }
    }

    /// The algorithm's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ssh-ed25519",
            Self::EcdsaP256 => "ecdsa-sha2-nistp256",
            Self::EcdsaP384 => "ecdsa-sha2-nistp384",
            Self::EcdsaP521 => "ecdsa-sha2-nistp521",
            Self::RsaSha2_512 => "rsa-sha2-512",
            Self::RsaSha2_256 => "rsa-sha2-256",
            Self::SkEd25519 => "sk-ssh-ed25519@openssh.com",
            Self::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256@openssh.com",
            Self::Ed25519Cert => "ssh-ed25519-cert-v01@openssh.com",
            Self::EcdsaP256Cert => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            Self::EcdsaP384Cert => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
            Self::EcdsaP521Cert => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
            Self::RsaSha2_512Cert => "rsa-sha2-512-cert-v01@openssh.com",
            Self::RsaSha2_256Cert => "rsa-sha2-256-cert-v01@openssh.com",
        }
    }

    /// The algorithm with this exact name, if accepted. `ssh-rsa` (SHA-1),
    /// `ssh-dss` and their certificate types give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The same algorithm in ssh-key's vocabulary (a signature's algorithm;
    /// for a certificate, that of the certified key's signatures).
    fn ssh_algorithm(self) -> Algorithm {
        match self {
            Self::Ed25519 => Algorithm::Ed25519,
            Self::EcdsaP256 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Self::EcdsaP384 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Self::EcdsaP521 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
            Self::RsaSha2_512 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Self::RsaSha2_256 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
            Self::SkEd25519 => Algorithm::SkEd25519,
            Self::SkEcdsaP256 => Algorithm::SkEcdsaSha2NistP256,
            Self::Ed25519Cert
            | Self::EcdsaP256Cert
            | Self::EcdsaP384Cert
            | Self::EcdsaP521Cert
            | Self::RsaSha2_512Cert
            | Self::RsaSha2_256Cert => self.base().ssh_algorithm(),
        }
    }

    /// The accepted algorithm that a signature's algorithm is, if any.
    fn from_ssh_algorithm(algorithm: &Algorithm) -> Option<Self> {
        Self::PLAIN
            .into_iter()
            .find(|alg| alg.ssh_algorithm() == *algorithm)
    }

    /// Whether a key of this type may sign with this algorithm (never for
    /// a certificate algorithm: its key is inside the certificate).
    fn fits(self, key: &KeyData) -> bool {
        if self.is_cert() {
            return false;
        }
        match (self, key) {
            (Self::Ed25519, KeyData::Ed25519(_))
            | (Self::RsaSha2_512 | Self::RsaSha2_256, KeyData::Rsa(_))
            | (Self::SkEd25519, KeyData::SkEd25519(_))
            | (Self::SkEcdsaP256, KeyData::SkEcdsaSha2NistP256(_)) => true,
            (Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521, KeyData::Ecdsa(ecdsa)) => {
                self.ssh_algorithm() == ecdsa.algorithm()
            }
            _ => false,
        }
    }
}

impl fmt::Display for UserKeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a user's key or signature was refused.
///
/// Names that came from the client are escaped and truncated, so the
/// messages are safe for a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSigError {
    /// The key blob or the signature blob is not well formed.
    Malformed(String),
    /// An algorithm or key type we do not accept (`ssh-dss`, `ssh-rsa`
    /// SHA-1 signatures, unknown names); the escaped name.
    Unsupported(String),
    /// The algorithm named in the request or in the signature does not fit
    /// the key's type, or the two names differ.
    AlgorithmMismatch,
    /// An RSA key under [`MIN_RSA_BITS`].
    TooSmall {
        /// The modulus size in bits.
        bits: u32,
    },
    /// An RSA key over [`MAX_RSA_BITS`], or with an exponent the verifier
    /// refuses.
    TooLarge {
        /// The modulus size in bits.
        bits: u32,
    },
    /// The key's point is not on its curve, or is a small-order ed25519
    /// point.
    InvalidKey,
    /// A security-key signature made without the user touching the key.
    UserNotPresent,
    /// The signature is well formed but does not verify.
    BadSignature,
}

impl fmt::Display for UserSigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed user key or signature: {what}"),
            Self::Unsupported(name) => write!(f, "algorithm or key type not accepted: {name}"),
            Self::AlgorithmMismatch => {
                f.write_str("the signature algorithm does not fit the user's key")
            }
            Self::TooSmall { bits } => write!(
                f,
                "RSA user key of {bits} bits is too small (at least {MIN_RSA_BITS} required)"
            ),
            Self::TooLarge { bits } => write!(
                f,
                "RSA user key of {bits} bits is not accepted (at most {MAX_RSA_BITS}, with a \
                 public exponent of at most 33 bits)"
            ),
            Self::InvalidKey => f.write_str("the user key is not a valid point on its curve"),
            Self::UserNotPresent => {
                f.write_str("security-key signature made without user presence")
            }
            Self::BadSignature => f.write_str("the user's signature does not verify"),
        }
    }
}

impl core::error::Error for UserSigError {}

impl From<HostKeyError> for UserSigError {
    fn from(e: HostKeyError) -> Self {
        match e {
            HostKeyError::Unsupported(what) => Self::Unsupported(what),
            HostKeyError::BadSignature => Self::BadSignature,
            HostKeyError::TooSmall { bits } => Self::TooSmall { bits },
            HostKeyError::AlgorithmMismatch { .. } | HostKeyError::AlgorithmNotSupported(_) => {
                Self::AlgorithmMismatch
            }
            HostKeyError::Malformed(what) => Self::Malformed(what),
            HostKeyError::Encrypted | HostKeyError::SigningFailed => {
                Self::Malformed("unexpected key".into())
            }
        }
    }
}

/// Parses a user's public key blob for the algorithm named in a
/// USERAUTH_REQUEST, checking that the name fits the key and that the key
/// is acceptable (type, size, point validity). Use it to answer a query
/// without a signature: `PK_OK` only for a key this accepts.
pub fn parse_user_key(blob: &[u8], alg_name: &str) -> Result<PublicKey, UserSigError> {
    let alg = UserKeyAlg::from_name(alg_name)
        .ok_or_else(|| UserSigError::Unsupported(escape(alg_name)))?;
    let key = decode_public_blob(blob)?;
    check_acceptable(&key)?;
    if !alg.fits(&key) {
        return Err(UserSigError::AlgorithmMismatch);
    }
    Ok(PublicKey::from(key))
}

/// Parses a user certificate blob (OpenSSH PROTOCOL.certkeys) for the
/// certificate algorithm named in a USERAUTH_REQUEST, and checks that the
/// certified key fits the name and is acceptable (as [`parse_user_key`]).
/// Returns the certificate and the certified key's blob, with which the
/// user signs. Whether the certificate is to be trusted is decided
/// elsewhere ([`crate::auth::certs`]); this only reads it. The blob must be
/// canonical: re-encoding the certificate gives it back.
pub fn parse_user_cert(
    blob: &[u8],
    alg_name: &str,
) -> Result<(ssh_key::Certificate, Vec<u8>), UserSigError> {
    let alg = UserKeyAlg::from_name(alg_name)
        .filter(|a| a.is_cert())
        .ok_or_else(|| UserSigError::Unsupported(escape(alg_name)))?;
    let cert = decode_certificate(blob)?;
    let key = cert.public_key();
    check_acceptable(key)?;
    if !alg.base().fits(key) {
        return Err(UserSigError::AlgorithmMismatch);
    }
    let key_blob = key
        .encode_vec()
        .map_err(|e| UserSigError::Malformed(e.to_string()))?;
    Ok((cert, key_blob))
}

/// Decodes a certificate blob: the whole blob, in canonical form.
pub fn decode_certificate(blob: &[u8]) -> Result<ssh_key::Certificate, UserSigError> {
    use ssh_encoding::Decode;
    let mut reader = blob;
    let cert = ssh_key::Certificate::decode(&mut reader)
        .map_err(|e| UserSigError::Malformed(format!("certificate: {e}")))?;
    if !reader.is_empty() {
        return Err(UserSigError::Malformed(
            "trailing bytes after the certificate".into(),
        ));
    }
    match cert.encode_vec() {
        Ok(again) if again == blob => Ok(cert),
        _ => Err(UserSigError::Malformed(
            "certificate not in canonical form".into(),
        )),
    }
}

/// Verifies a user's signature blob over `data` (RFC 4252 §7) with the
/// public key blob, and returns the key that signed. The key must be
/// acceptable (as [`parse_user_key`]) and the signature's algorithm must fit
/// its type; `ssh-rsa` (SHA-1) signatures are refused.
pub fn verify_user_signature(
    public_blob: &[u8],
    sig_blob: &[u8],
    data: &[u8],
) -> Result<PublicKey, UserSigError> {
    let key = decode_public_blob(public_blob)?;
    check_acceptable(&key)?;
    let signature = decode_signature_blob(sig_blob)?;
    let alg = UserKeyAlg::from_ssh_algorithm(&signature.algorithm())
        .ok_or_else(|| UserSigError::Unsupported(escape(signature.algorithm().as_str())))?;
    if !alg.fits(&key) {
        return Err(UserSigError::AlgorithmMismatch);
    }
    if matches!(alg, UserKeyAlg::SkEd25519 | UserKeyAlg::SkEcdsaP256)
        && !sk_user_present(&signature)
    {
        return Err(UserSigError::UserNotPresent);
    }
    verify_decoded(&key, &signature, data)?;
    Ok(PublicKey::from(key))
}

/// [`verify_user_signature`], and also checks that the signature's
/// algorithm is the one named in the USERAUTH_REQUEST (`alg_name`), as
/// OpenSSH does: a client that asked for `rsa-sha2-512` must sign with it.
pub fn verify_user_signature_for(
    alg_name: &str,
    public_blob: &[u8],
    sig_blob: &[u8],
    data: &[u8],
) -> Result<PublicKey, UserSigError> {
    let alg = UserKeyAlg::from_name(alg_name)
        .ok_or_else(|| UserSigError::Unsupported(escape(alg_name)))?;
    let signature = decode_signature_blob(sig_blob)?;
    if signature.algorithm() != alg.ssh_algorithm() {
        return Err(UserSigError::AlgorithmMismatch);
    }
    verify_user_signature(public_blob, sig_blob, data)
}

/// Whether a security-key signature's flags byte (the fifth byte from the
/// end of ssh-key's signature data: flags, then a 32-bit counter) has the
/// user-presence bit.
fn sk_user_present(signature: &Signature) -> bool {
    let data = signature.as_bytes();
    data.len()
        .checked_sub(5)
        .and_then(|i| data.get(i))
        .is_some_and(|flags| flags & SK_USER_PRESENT != 0)
}

/// Refuses key types and keys we do not accept, whatever the algorithm.
fn check_acceptable(key: &KeyData) -> Result<(), UserSigError> {
    match key {
        KeyData::Ed25519(public) => check_ed25519(public.as_ref()),
        KeyData::SkEd25519(sk) => check_ed25519(sk.public_key().as_ref()),
        KeyData::Ecdsa(ecdsa) => {
            let valid = match ecdsa.curve() {
                EcdsaCurve::NistP256 => p256::ecdsa::VerifyingKey::try_from(ecdsa).is_ok(),
                EcdsaCurve::NistP384 => p384::ecdsa::VerifyingKey::try_from(ecdsa).is_ok(),
                EcdsaCurve::NistP521 => p521::ecdsa::VerifyingKey::try_from(ecdsa).is_ok(),
            };
            if valid {
                Ok(())
            } else {
                Err(UserSigError::InvalidKey)
            }
        }
        KeyData::SkEcdsaSha2NistP256(sk) => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(sk.ec_point().as_bytes())
                .map(|_| ())
                .map_err(|_| UserSigError::InvalidKey)
        }
        KeyData::Rsa(rsa) => check_rsa(rsa),
        KeyData::Dsa(_) => Err(UserSigError::Unsupported("ssh-dss".into())),
        _ => Err(UserSigError::Unsupported(escape(key.algorithm().as_str()))),
    }
}

/// A valid ed25519 point that is not of small order (a small-order key
/// would accept signatures anyone can forge).
fn check_ed25519(bytes: &[u8; 32]) -> Result<(), UserSigError> {
    match ed25519_dalek::VerifyingKey::from_bytes(bytes) {
        Ok(key) if !key.is_weak() => Ok(()),
        _ => Err(UserSigError::InvalidKey),
    }
}

/// RSA size and exponent limits: those of the verifier, so that a key we
/// accept at query time can also verify.
fn check_rsa(rsa: &RsaPublicKey) -> Result<(), UserSigError> {
    let bits = rsa_bits(rsa);
    if bits < MIN_RSA_BITS {
        return Err(UserSigError::TooSmall { bits });
    }
    if bits > MAX_RSA_BITS {
        return Err(UserSigError::TooLarge { bits });
    }
    let n_odd = rsa
        .n()
        .as_positive_bytes()
        .and_then(<[u8]>::last)
        .is_some_and(|b| b & 1 == 1);
    let e = rsa.e().as_positive_bytes().unwrap_or_default();
    let e_odd = e.last().is_some_and(|b| b & 1 == 1);
    if !n_odd {
        return Err(UserSigError::Malformed("RSA modulus is even".into()));
    }
    // 3 <= e < 2^33, as the rsa crate requires.
    if !e_odd || !(2..=33).contains(&bit_length(e)) {
        return Err(UserSigError::TooLarge { bits });
    }
    Ok(())
}

/// A client-sent name made safe for a log: printable ASCII kept, the rest
/// escaped, at most 64 characters.
fn escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().take(64) {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if name.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::transport::hostkey::{HostKey, HostKeyAlg};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};
    use signature::Signer as _;
    use ssh_encoding::Encode;
    use ssh_key::PrivateKey;
    use ssh_key::private::KeypairData;
    use ssh_key::public::{SkEcdsaSha2NistP256, SkEd25519};

    /// What a client signs (RFC 4252 §7), near enough: a session id and the
    /// request fields.
    const DATA: &[u8] = b"\x00\x00\x00\x20session-id-session-id-session-id\x32git";

    fn blob_of(pub_line: &str) -> Vec<u8> {
        PublicKey::from_openssh(pub_line)
            .unwrap()
            .key_data()
            .encode_vec()
            .unwrap()
    }

    fn private(text: &str) -> PrivateKey {
        PrivateKey::from_openssh(text).unwrap()
    }

    /// Signs with an ed25519 or ECDSA fixture through ssh-key.
    fn sign_with(private: &PrivateKey, data: &[u8]) -> Vec<u8> {
        let signature: Signature = private.try_sign(data).unwrap();
        signature.encode_vec().unwrap()
    }

    /// (private key, .pub line, algorithm) for the ssh-key-signed fixtures.
    fn ssh_key_fixtures() -> [(&'static str, &'static str, UserKeyAlg); 4] {
        [
            (
                include_str!("testdata/ed25519"),
                include_str!("testdata/ed25519.pub"),
                UserKeyAlg::Ed25519,
            ),
            (
                include_str!("testdata/ecdsa256"),
                include_str!("testdata/ecdsa256.pub"),
                UserKeyAlg::EcdsaP256,
            ),
            (
                include_str!("testdata/ecdsa384"),
                include_str!("testdata/ecdsa384.pub"),
                UserKeyAlg::EcdsaP384,
            ),
            (
                include_str!("testdata/ecdsa521"),
                include_str!("testdata/ecdsa521.pub"),
                UserKeyAlg::EcdsaP521,
            ),
        ]
    }

    fn rsa_key() -> HostKey {
        HostKey::from_private_key_file(include_bytes!("testdata/rsa2048")).unwrap()
    }

    /// A security-key signature blob (OpenSSH PROTOCOL.u2f): the token
    /// signs SHA256(application) || flags || counter || SHA256(data).
    fn sk_signature(
        name: &str,
        sign: impl Fn(&[u8]) -> Vec<u8>,
        application: &str,
        flags: u8,
        counter: u32,
        data: &[u8],
    ) -> Vec<u8> {
        let mut signed = Vec::new();
        signed.extend_from_slice(&Sha256::digest(application.as_bytes()));
        signed.push(flags);
        signed.extend_from_slice(&counter.to_be_bytes());
        signed.extend_from_slice(&Sha256::digest(data));
        let mut blob = Vec::new();
        name.encode(&mut blob).unwrap();
        sign(&signed).as_slice().encode(&mut blob).unwrap();
        blob.push(flags);
        blob.extend_from_slice(&counter.to_be_bytes());
        blob
    }

    /// An sk-ssh-ed25519 key over the ed25519 fixture, and a signer.
    fn sk_ed25519() -> (Vec<u8>, impl Fn(u8, &[u8]) -> Vec<u8>) {
        let private = private(include_str!("testdata/ed25519"));
        let KeypairData::Ed25519(keypair) = private.key_data().clone() else {
            panic!()
        };
        let key = KeyData::SkEd25519(SkEd25519::new(keypair.public, "ssh:"));
        let sign = move |flags, data: &[u8]| {
            sk_signature(
                "sk-ssh-ed25519@openssh.com",
                |m| {
                    let sig: Signature = keypair.try_sign(m).unwrap();
                    sig.as_bytes().to_vec()
                },
                "ssh:",
                flags,
                7,
                data,
            )
        };
        (key.encode_vec().unwrap(), sign)
    }

    /// An sk-ecdsa-sha2-nistp256 key over the P-256 fixture, and a signer.
    fn sk_ecdsa() -> (Vec<u8>, impl Fn(u8, &[u8]) -> Vec<u8>) {
        let private = private(include_str!("testdata/ecdsa256"));
        let KeyData::Ecdsa(ssh_key::public::EcdsaPublicKey::NistP256(point)) =
            private.public_key().key_data().clone()
        else {
            panic!()
        };
        let key = KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(point, "ssh:"));
        let sign = move |flags, data: &[u8]| {
            sk_signature(
                "sk-ecdsa-sha2-nistp256@openssh.com",
                |m| {
                    let sig: Signature = private.try_sign(m).unwrap();
                    sig.as_bytes().to_vec()
                },
                "ssh:",
                flags,
                9,
                data,
            )
        };
        (key.encode_vec().unwrap(), sign)
    }

    #[test]
    fn names_round_trip_and_refuse_legacy() {
        for alg in UserKeyAlg::ALL {
            assert_eq!(UserKeyAlg::from_name(alg.name()), Some(alg));
            // A certificate's signatures are its key's.
            assert_eq!(
                UserKeyAlg::from_ssh_algorithm(&alg.ssh_algorithm()),
                Some(alg.base())
            );
            assert_eq!(alg.is_cert(), alg.name().ends_with("-cert-v01@openssh.com"));
            assert_eq!(alg.is_cert(), !UserKeyAlg::PLAIN.contains(&alg));
        }
        // server-sig-algs by default: every accepted algorithm.
        let names: Vec<&str> = UserKeyAlg::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, crate::transport::SERVER_SIG_ALGS);
        for name in [
            "ssh-rsa",
            "ssh-dss",
            "ssh-rsa-cert-v01@openssh.com",
            "ssh-dss-cert-v01@openssh.com",
            "sk-ssh-ed25519-cert-v01@openssh.com",
            "",
            "SSH-ED25519",
        ] {
            assert_eq!(UserKeyAlg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn ed25519_and_ecdsa_signatures_verify() {
        for (private_text, public, alg) in ssh_key_fixtures() {
            let private = private(private_text);
            let blob = blob_of(public);
            let sig = sign_with(&private, DATA);
            let key = verify_user_signature(&blob, &sig, DATA).unwrap();
            assert_eq!(key.key_data(), private.public_key().key_data());
            verify_user_signature_for(alg.name(), &blob, &sig, DATA).unwrap();
            assert_eq!(
                parse_user_key(&blob, alg.name()).unwrap().key_data(),
                key.key_data()
            );
            // Another message, or another key, does not verify.
            assert_eq!(
                verify_user_signature(&blob, &sig, b"other"),
                Err(UserSigError::BadSignature)
            );
        }
    }

    #[test]
    fn rsa_sha2_signatures_from_ring_verify_and_sha1_is_refused() {
        let key = rsa_key();
        let blob = blob_of(include_str!("testdata/rsa2048.pub"));
        assert_eq!(key.public_blob(), blob);
        for (host_alg, user_alg) in [
            (HostKeyAlg::RsaSha2_512, UserKeyAlg::RsaSha2_512),
            (HostKeyAlg::RsaSha2_256, UserKeyAlg::RsaSha2_256),
        ] {
            let sig = key.sign(host_alg, DATA).unwrap();
            verify_user_signature(&blob, &sig, DATA).unwrap();
            verify_user_signature_for(user_alg.name(), &blob, &sig, DATA).unwrap();
            parse_user_key(&blob, user_alg.name()).unwrap();
        }
        // The request said rsa-sha2-512, the signature is rsa-sha2-256.
        let sig256 = key.sign(HostKeyAlg::RsaSha2_256, DATA).unwrap();
        assert_eq!(
            verify_user_signature_for("rsa-sha2-512", &blob, &sig256, DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
        // SHA-1: the name alone is refused, at query and at signature.
        assert_eq!(
            parse_user_key(&blob, "ssh-rsa"),
            Err(UserSigError::Unsupported("ssh-rsa".into()))
        );
        let raw = {
            let mut reader = &sig256[..];
            let _ = <String as ssh_encoding::Decode>::decode(&mut reader).unwrap();
            <Vec<u8> as ssh_encoding::Decode>::decode(&mut reader).unwrap()
        };
        let mut sha1 = Vec::new();
        "ssh-rsa".encode(&mut sha1).unwrap();
        raw.as_slice().encode(&mut sha1).unwrap();
        assert_eq!(
            verify_user_signature(&blob, &sha1, DATA),
            Err(UserSigError::Unsupported("ssh-rsa".into()))
        );
    }

    #[test]
    fn security_key_signatures_verify_with_user_presence_only() {
        let (ed_blob, ed_sign) = sk_ed25519();
        let (ec_blob, ec_sign) = sk_ecdsa();
        for (blob, sign, alg) in [
            (
                &ed_blob,
                &ed_sign as &dyn Fn(u8, &[u8]) -> Vec<u8>,
                UserKeyAlg::SkEd25519,
            ),
            (&ec_blob, &ec_sign, UserKeyAlg::SkEcdsaP256),
        ] {
            parse_user_key(blob, alg.name()).unwrap();
            let present = sign(SK_USER_PRESENT, DATA);
            verify_user_signature(blob, &present, DATA).unwrap();
            verify_user_signature_for(alg.name(), blob, &present, DATA).unwrap();
            assert_eq!(
                verify_user_signature(blob, &present, b"other"),
                Err(UserSigError::BadSignature)
            );
            assert_eq!(
                verify_user_signature(blob, &sign(0, DATA), DATA),
                Err(UserSigError::UserNotPresent)
            );
            // The flags are covered by the signature: setting the bit
            // afterwards breaks it.
            let mut forged = sign(0x04, DATA);
            let at = forged.len() - 5;
            forged[at] |= SK_USER_PRESENT;
            assert_eq!(
                verify_user_signature(blob, &forged, DATA),
                Err(UserSigError::BadSignature)
            );
        }
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let ed_private = private(include_str!("testdata/ed25519"));
        let ed_blob = blob_of(include_str!("testdata/ed25519.pub"));
        let p256_blob = blob_of(include_str!("testdata/ecdsa256.pub"));
        let p384_private = private(include_str!("testdata/ecdsa384"));
        let rsa_blob = blob_of(include_str!("testdata/rsa2048.pub"));
        for (blob, name) in [
            (&ed_blob, "rsa-sha2-512"),
            (&ed_blob, "ecdsa-sha2-nistp256"),
            (&ed_blob, "sk-ssh-ed25519@openssh.com"),
            (&p256_blob, "ecdsa-sha2-nistp384"),
            (&p256_blob, "sk-ecdsa-sha2-nistp256@openssh.com"),
            (&rsa_blob, "ssh-ed25519"),
        ] {
            assert_eq!(
                parse_user_key(blob, name),
                Err(UserSigError::AlgorithmMismatch),
                "{name}"
            );
        }
        // An ed25519 signature presented with an RSA key, a P-384
        // signature with a P-256 key.
        let ed_sig = sign_with(&ed_private, DATA);
        assert_eq!(
            verify_user_signature(&rsa_blob, &ed_sig, DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
        let p384_sig = sign_with(&p384_private, DATA);
        assert_eq!(
            verify_user_signature(&p256_blob, &p384_sig, DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
        // A plain ed25519 signature for an sk key (and the reverse).
        let (sk_blob, sk_sign) = sk_ed25519();
        assert_eq!(
            verify_user_signature(&sk_blob, &ed_sig, DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
        assert_eq!(
            verify_user_signature(&ed_blob, &sk_sign(SK_USER_PRESENT, DATA), DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
        // The request named one algorithm, the signature is another.
        assert_eq!(
            verify_user_signature_for("ecdsa-sha2-nistp256", &ed_blob, &ed_sig, DATA),
            Err(UserSigError::AlgorithmMismatch)
        );
    }

    #[test]
    fn refused_key_types() {
        let small = blob_of(include_str!("testdata/rsa1024.pub"));
        assert_eq!(
            parse_user_key(&small, "rsa-sha2-512"),
            Err(UserSigError::TooSmall { bits: 1024 })
        );
        let sig = rsa_key().sign(HostKeyAlg::RsaSha2_512, DATA).unwrap();
        assert_eq!(
            verify_user_signature(&small, &sig, DATA),
            Err(UserSigError::TooSmall { bits: 1024 })
        );
        let dsa = blob_of(include_str!("testdata/dsa.pub"));
        assert_eq!(
            parse_user_key(&dsa, "ssh-dss"),
            Err(UserSigError::Unsupported("ssh-dss".into()))
        );
        assert_eq!(
            verify_user_signature(&dsa, &sig, DATA),
            Err(UserSigError::Unsupported("ssh-dss".into()))
        );
        // A certificate blob (key type *-cert-v01@openssh.com) is refused,
        // here a truncated one.
        let mut cert = Vec::new();
        "ssh-ed25519-cert-v01@openssh.com"
            .encode(&mut cert)
            .unwrap();
        assert!(parse_user_key(&cert, "ssh-ed25519").is_err());
    }

    #[test]
    fn malformed_blobs_are_refused() {
        let ed_blob = blob_of(include_str!("testdata/ed25519.pub"));
        let key_bytes = &ed_blob[4 + 11 + 4..];
        let ed_key = |bytes: &[u8]| {
            let mut blob = Vec::new();
            "ssh-ed25519".encode(&mut blob).unwrap();
            bytes.encode(&mut blob).unwrap();
            blob
        };
        // 31- and 33-byte ed25519 keys.
        assert!(parse_user_key(&ed_key(&key_bytes[..31]), "ssh-ed25519").is_err());
        assert!(parse_user_key(&ed_key(&[key_bytes, &[0]].concat()), "ssh-ed25519").is_err());
        // Trailing bytes, truncation.
        let mut long = ed_blob.clone();
        long.push(0);
        assert!(matches!(
            parse_user_key(&long, "ssh-ed25519"),
            Err(UserSigError::Malformed(_))
        ));
        for cut in 0..ed_blob.len() {
            assert!(parse_user_key(&ed_blob[..cut], "ssh-ed25519").is_err());
        }
        // A small-order ed25519 point (the identity, y = 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            parse_user_key(&ed_key(&identity), "ssh-ed25519"),
            Err(UserSigError::InvalidKey)
        );
        // A y that is on no point of the curve (y = 2 has no x).
        let mut off = [0u8; 32];
        off[0] = 2;
        assert_eq!(
            parse_user_key(&ed_key(&off), "ssh-ed25519"),
            Err(UserSigError::InvalidKey)
        );
        // An ECDSA point off the curve: change one coordinate byte.
        for pub_line in [
            include_str!("testdata/ecdsa256.pub"),
            include_str!("testdata/ecdsa384.pub"),
            include_str!("testdata/ecdsa521.pub"),
        ] {
            let mut blob = blob_of(pub_line);
            let last = blob.len() - 1;
            blob[last] ^= 0x01;
            let name = PublicKey::from_openssh(pub_line).unwrap().algorithm();
            assert_eq!(
                parse_user_key(&blob, name.as_str()),
                Err(UserSigError::InvalidKey)
            );
        }
        // A signature blob with trailing bytes, or truncated.
        let private = private(include_str!("testdata/ed25519"));
        let sig = sign_with(&private, DATA);
        let mut long_sig = sig.clone();
        long_sig.push(0);
        assert!(matches!(
            verify_user_signature(&ed_blob, &long_sig, DATA),
            Err(UserSigError::Malformed(_))
        ));
        for cut in 0..sig.len() {
            assert!(verify_user_signature(&ed_blob, &sig[..cut], DATA).is_err());
        }
    }

    #[test]
    fn client_names_are_escaped_in_errors() {
        let name = "evil\nname\x1b[31m".repeat(10);
        let Err(UserSigError::Unsupported(shown)) = parse_user_key(&[], &name) else {
            panic!()
        };
        assert!(shown.is_ascii() && !shown.contains('\n') && !shown.contains('\x1b'));
        assert!(shown.ends_with("..."));
        assert!(shown.len() < 200);
    }

    #[test]
    fn rsa_exponent_and_modulus_checks() {
        let rsa = |e: &[u8], n: &[u8]| {
            KeyData::Rsa(
                RsaPublicKey::new(
                    ssh_key::Mpint::from_positive_bytes(e),
                    ssh_key::Mpint::from_positive_bytes(n),
                )
                .unwrap(),
            )
        };
        let mut n = vec![0xffu8; 256];
        assert_eq!(check_acceptable(&rsa(&[1, 0, 1], &n)), Ok(()));
        assert!(check_acceptable(&rsa(&[1, 0, 0], &n)).is_err(), "even e");
        assert!(check_acceptable(&rsa(&[1], &n)).is_err(), "e = 1");
        assert!(
            check_acceptable(&rsa(&[3, 0, 0, 0, 1], &n)).is_err(),
            "e of 34 bits"
        );
        assert_eq!(check_acceptable(&rsa(&[1, 0, 0, 0, 1], &n)), Ok(()));
        n[255] = 0xfe;
        assert!(check_acceptable(&rsa(&[1, 0, 1], &n)).is_err(), "even n");
        let big = vec![0xffu8; 1025];
        assert_eq!(
            check_acceptable(&rsa(&[1, 0, 1], &big)),
            Err(UserSigError::TooLarge { bits: 8200 })
        );
    }

    proptest! {
        #[test]
        fn random_blobs_never_panic_or_verify(
            key in proptest::collection::vec(any::<u8>(), 0..600),
            sig in proptest::collection::vec(any::<u8>(), 0..600),
            name in prop::sample::select(
                UserKeyAlg::ALL.iter().map(|a| a.name()).collect::<Vec<_>>()
            ),
        ) {
            let _ = parse_user_key(&key, name);
            prop_assert!(verify_user_signature(&key, &sig, DATA).is_err());
        }

        #[test]
        fn bit_flips_in_valid_signatures_never_verify(
            fixture in 0usize..4,
            index in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (private_text, public, _) = ssh_key_fixtures()[fixture];
            let blob = blob_of(public);
            let mut sig = sign_with(&private(private_text), DATA);
            let i = index.index(sig.len());
            sig[i] ^= 1 << bit;
            prop_assert!(verify_user_signature(&blob, &sig, DATA).is_err());
        }

        #[test]
        fn bit_flips_in_valid_keys_never_verify(
            fixture in 0usize..4,
            index in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (private_text, public, _) = ssh_key_fixtures()[fixture];
            let mut blob = blob_of(public);
            let sig = sign_with(&private(private_text), DATA);
            let i = index.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(verify_user_signature(&blob, &sig, DATA).is_err());
        }
    }
}
