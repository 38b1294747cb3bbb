//! Server host keys (RFC 4253 §6.6), signing with `ssh-ed25519` (RFC 8709),
//! `ecdsa-sha2-nistp256/384/521` (RFC 5656 §3) and `rsa-sha2-512` /
//! `rsa-sha2-256` (RFC 8332).
//!
//! Pure code: the runtime reads the key file and hands its bytes to
//! [`HostKey::from_private_key_file`], and writes what
//! [`HostKey::to_openssh_private`] returns when it generated the default key.
//!
//! Accepted private key files, all unencrypted (the server runs unattended):
//! - OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`), ed25519, ECDSA
//!   or RSA;
//! - PEM PKCS#1 RSA (`-----BEGIN RSA PRIVATE KEY-----`), which `ssh-keygen`
//!   wrote before OpenSSH 7.8 and which the original Openruko gitmouth used;
//! - PEM SEC1 ECDSA (`-----BEGIN EC PRIVATE KEY-----`), as `ssh-keygen -m PEM`
//!   and `openssl ecparam -genkey` write;
//! - PKCS#8 (`-----BEGIN PRIVATE KEY-----`) holding RSA, Ed25519 or ECDSA, as
//!   `openssl genpkey` writes.
//!
//! ECDSA host keys are read, never generated: they serve clients that verify
//! neither ed25519 nor SHA-2 RSA signatures (JSch 0.1.x), beside an ed25519
//! key. They sign deterministically (RFC 6979), so no randomness is needed.
//!
//! RSA keys sign through `ring`, whose private-key operation is constant
//! time; the `rsa` crate's is not (RUSTSEC-2023-0071), so it only ever
//! verifies here. SHA-1 `ssh-rsa` signatures are never made. DSA and
//! security-key host keys are refused with a message saying so.

use core::fmt;

use base64ct::Encoding as _;
use rand_core::CryptoRng;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA512, RSA_PKCS1_SHA256, RSA_PKCS1_SHA512, RsaKeyPair, UnparsedPublicKey,
};
use signature::{Signer as _, Verifier as _};
use ssh_encoding::{Decode, Encode, Reader};
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::public::{EcdsaPublicKey, KeyData, RsaPublicKey};
use ssh_key::{
    Algorithm, EcdsaCurve, HashAlg, LineEnding, Mpint, PrivateKey, PublicKey, Signature,
};
use zeroize::Zeroizing;

/// The smallest RSA modulus we accept, in bits (OpenSSH's own floor since 9.x
/// for new keys; NIST SP 800-131A).
pub const MIN_RSA_BITS: u32 = 2048;

/// The largest RSA modulus `ring` can sign with, in bits.
const MAX_RSA_SIGNING_BITS: u32 = 4096;

/// Magic at the start of the binary OpenSSH private key format
/// (OpenSSH PROTOCOL.key §1).
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// Signed once when an RSA key is loaded, so that a key whose parts do not
/// agree is refused at start-up, with a name, rather than at every key
/// exchange.
const SELF_TEST_MESSAGE: &[u8] = b"gitmouth host key self-test";

/// Host-key signature algorithms we can offer, in the names of RFC 8709,
/// RFC 5656 and RFC 8332. There is deliberately no SHA-1 `ssh-rsa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostKeyAlg {
    /// `ssh-ed25519` (RFC 8709).
    Ed25519,
    /// `ecdsa-sha2-nistp256` (RFC 5656).
    EcdsaNistp256,
    /// `ecdsa-sha2-nistp384` (RFC 5656).
    EcdsaNistp384,
    /// `ecdsa-sha2-nistp521` (RFC 5656).
    EcdsaNistp521,
    /// `rsa-sha2-512` (RFC 8332).
    RsaSha2_512,
    /// `rsa-sha2-256` (RFC 8332).
    RsaSha2_256,
}

impl HostKeyAlg {
    /// Every algorithm, in our order of preference (OpenSSH's).
    pub const ALL: [Self; 6] = [
        Self::Ed25519,
        Self::EcdsaNistp256,
        Self::EcdsaNistp384,
        Self::EcdsaNistp521,
        Self::RsaSha2_512,
        Self::RsaSha2_256,
    ];

    /// The algorithm's name as it appears in KEXINIT and in signature blobs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ssh-ed25519",
            Self::EcdsaNistp256 => "ecdsa-sha2-nistp256",
            Self::EcdsaNistp384 => "ecdsa-sha2-nistp384",
            Self::EcdsaNistp521 => "ecdsa-sha2-nistp521",
            Self::RsaSha2_512 => "rsa-sha2-512",
            Self::RsaSha2_256 => "rsa-sha2-256",
        }
    }

    /// The algorithm with this exact name, if we support it. `ssh-rsa`
    /// (SHA-1) gives `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The same algorithm in `ssh-key`'s vocabulary (for comparing with a
    /// decoded signature's algorithm).
    fn ssh_algorithm(self) -> Algorithm {
        match self {
            Self::Ed25519 => Algorithm::Ed25519,
            Self::EcdsaNistp256 | Self::EcdsaNistp384 | Self::EcdsaNistp521 => Algorithm::Ecdsa {
                curve: self.ecdsa_curve().unwrap_or(EcdsaCurve::NistP256),
            },
            Self::RsaSha2_512 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Self::RsaSha2_256 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        }
    }
}

impl HostKeyAlg {
    /// The curve of an ECDSA algorithm.
    fn ecdsa_curve(self) -> Option<EcdsaCurve> {
        match self {
            Self::EcdsaNistp256 => Some(EcdsaCurve::NistP256),
            Self::EcdsaNistp384 => Some(EcdsaCurve::NistP384),
            Self::EcdsaNistp521 => Some(EcdsaCurve::NistP521),
            _ => None,
        }
    }
}

impl fmt::Display for HostKeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a host key could not be loaded, used, or a host signature verified.
///
/// The messages are written for an operator's log and never contain key
/// material (only sizes, algorithm names and short descriptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyError {
    /// A well-formed key of a type or format we do not use as a host key
    /// (DSA, security keys, RSA over 4096 bits, ...).
    Unsupported(String),
    /// The input is not a well-formed key, key blob or signature blob.
    Malformed(String),
    /// The private key is protected by a passphrase.
    Encrypted,
    /// An RSA key whose modulus has fewer than [`MIN_RSA_BITS`] bits.
    TooSmall {
        /// The modulus size in bits.
        bits: u32,
    },
    /// [`HostKey::sign`] was asked for an algorithm this key cannot sign
    /// with (for example `rsa-sha2-512` with an ed25519 key).
    AlgorithmNotSupported(HostKeyAlg),
    /// The public key or the signature is of a different algorithm than the
    /// one negotiated.
    AlgorithmMismatch {
        /// The negotiated algorithm.
        expected: HostKeyAlg,
    },
    /// The signature is well formed but does not verify.
    BadSignature,
    /// The signing operation itself failed.
    SigningFailed,
}

impl fmt::Display for HostKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "unsupported host key: {what}"),
            Self::Malformed(what) => write!(f, "malformed key: {what}"),
            Self::Encrypted => f.write_str(
                "the host key is encrypted with a passphrase; the server runs unattended and \
                 needs an unencrypted key (remove the passphrase with \
                 `ssh-keygen -p -N '' -f FILE`, or generate a new key with \
                 `ssh-keygen -t ed25519 -N '' -f FILE`)",
            ),
            Self::TooSmall { bits } => write!(
                f,
                "RSA host key of {bits} bits is too small: at least {MIN_RSA_BITS} bits are \
                 required (generate a new key with `ssh-keygen -t ed25519 -N '' -f FILE`)"
            ),
            Self::AlgorithmNotSupported(alg) => {
                write!(f, "this host key cannot sign with {alg}")
            }
            Self::AlgorithmMismatch { expected } => write!(
                f,
                "the host key or its signature does not match the negotiated algorithm {expected}"
            ),
            Self::BadSignature => f.write_str("the host key signature does not verify"),
            Self::SigningFailed => f.write_str("signing with the host key failed"),
        }
    }
}

impl core::error::Error for HostKeyError {}

/// Shorthand for a [`HostKeyError::Malformed`].
fn malformed(what: impl Into<String>) -> HostKeyError {
    HostKeyError::Malformed(what.into())
}

/// An ssh-key ECDSA key pair from a curve's secret scalar.
macro_rules! ecdsa_keypair {
    ($variant:ident, $secret:expr) => {{
        let secret = $secret;
        let public = secret.public_key();
        EcdsaKeypair::$variant {
            public: public.into(),
            private: secret.into(),
        }
    }};
}

/// The private half, by algorithm.
enum Signer {
    /// `ssh-key` zeroizes the secret half when this is dropped.
    Ed25519(Box<Ed25519Keypair>),
    /// `ring`'s key pair (CRT form; constant-time signing).
    Rsa(Box<RsaKeyPair>),
    /// `ssh-key` zeroizes the scalar when this is dropped; it signs with the
    /// RustCrypto curves (RFC 6979 nonces).
    Ecdsa(Box<EcdsaKeypair>),
}

/// A server host key able to sign exchange hashes.
pub struct HostKey {
    signer: Signer,
    /// The public key, without a comment.
    public: PublicKey,
    /// K_S: the public key blob (RFC 4253 §6.6), encoded once.
    blob: Vec<u8>,
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only public facts: the key type and its fingerprint.
        f.debug_struct("HostKey")
            .field("algorithm", &self.public.algorithm().as_str())
            .field("fingerprint", &self.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

impl HostKey {
    /// Generates a new ed25519 key.
    pub fn generate_ed25519(rng: &mut dyn CryptoRng) -> HostKey {
        Self::from_ed25519(Ed25519Keypair::random(rng))
    }

    /// Parses a private key file's contents: OpenSSH format
    /// (`-----BEGIN OPENSSH PRIVATE KEY-----`, ed25519, ECDSA or RSA), PEM
    /// PKCS#1 RSA (`-----BEGIN RSA PRIVATE KEY-----`), PEM SEC1 ECDSA
    /// (`-----BEGIN EC PRIVATE KEY-----`) or PKCS#8 RSA, Ed25519 or ECDSA
    /// (`-----BEGIN PRIVATE KEY-----`), unencrypted.
    ///
    /// Refuses encrypted keys ([`HostKeyError::Encrypted`]), RSA under 2048
    /// bits ([`HostKeyError::TooSmall`]) and other key types
    /// ([`HostKeyError::Unsupported`]). Any input gives a value, never a panic.
    pub fn from_private_key_file(contents: &[u8]) -> Result<HostKey, HostKeyError> {
        let text = core::str::from_utf8(contents).map_err(|_| {
            malformed("the file is not text; expected a PEM private key (-----BEGIN ...)")
        })?;
        let start = text.trim_start();
        if start.starts_with("PuTTY-User-Key-File-") {
            return Err(HostKeyError::Unsupported(
                "PuTTY .ppk keys cannot be read; convert it with \
                 `puttygen KEY.ppk -O private-openssh -o FILE`"
                    .into(),
            ));
        }
        if ["ssh-", "ecdsa-sha2-", "sk-"]
            .iter()
            .any(|prefix| start.starts_with(prefix))
        {
            return Err(malformed(
                "this is a public key; the host key file must hold the private key",
            ));
        }
        let pem = Pem::parse(text)?;
        match pem.label {
            "OPENSSH PRIVATE KEY" => {
                pem.refuse_headers()?;
                Self::from_openssh_binary(&pem.data)
            }
            "RSA PRIVATE KEY" => {
                if pem.is_encrypted() {
                    return Err(HostKeyError::Encrypted);
                }
                pem.refuse_headers()?;
                Self::from_pkcs1_der(&pem.data)
            }
            "PRIVATE KEY" => {
                pem.refuse_headers()?;
                Self::from_pkcs8_der(&pem.data)
            }
            "ENCRYPTED PRIVATE KEY" => Err(HostKeyError::Encrypted),
            "EC PRIVATE KEY" => {
                if pem.is_encrypted() {
                    return Err(HostKeyError::Encrypted);
                }
                pem.refuse_headers()?;
                Self::from_sec1_der(&pem.data, None)
            }
            "DSA PRIVATE KEY" => Err(HostKeyError::Unsupported(
                "DSA host keys are not supported".into(),
            )),
            label if label.contains("PUBLIC KEY") => Err(malformed(
                "this is a public key; the host key file must hold the private key",
            )),
            label => Err(HostKeyError::Unsupported(format!(
                "a PEM block labelled \"{}\" is not a private key format we read",
                printable(label)
            ))),
        }
    }

    /// OpenSSH private-key file text, for writing the generated default key
    /// (the runtime sets mode 0600). Works for ed25519 keys; an RSA key gives
    /// [`HostKeyError::Unsupported`] (only the generated key is ever written).
    pub fn to_openssh_private(&self, comment: &str) -> Result<Zeroizing<String>, HostKeyError> {
        match &self.signer {
            Signer::Ed25519(keypair) => {
                let private =
                    PrivateKey::new(KeypairData::Ed25519((**keypair).clone()), comment)
                        .map_err(|_| HostKeyError::Unsupported("cannot encode this key".into()))?;
                private
                    .to_openssh(LineEnding::LF)
                    .map_err(|_| HostKeyError::Unsupported("cannot encode this key".into()))
            }
            Signer::Rsa(_) | Signer::Ecdsa(_) => Err(HostKeyError::Unsupported(
                "writing RSA or ECDSA host keys is not supported; only a generated ed25519 key \
                 is written"
                    .into(),
            )),
        }
    }

    /// The algorithms this key can sign with, in preference order:
    /// `[Ed25519]`, the one ECDSA algorithm of its curve, or
    /// `[RsaSha2_512, RsaSha2_256]`. Never SHA-1 `ssh-rsa`.
    pub fn algorithms(&self) -> &'static [HostKeyAlg] {
        match &self.signer {
            Signer::Ed25519(_) => &[HostKeyAlg::Ed25519],
            Signer::Rsa(_) => &[HostKeyAlg::RsaSha2_512, HostKeyAlg::RsaSha2_256],
            Signer::Ecdsa(keypair) => match keypair.curve() {
                EcdsaCurve::NistP256 => &[HostKeyAlg::EcdsaNistp256],
                EcdsaCurve::NistP384 => &[HostKeyAlg::EcdsaNistp384],
                EcdsaCurve::NistP521 => &[HostKeyAlg::EcdsaNistp521],
            },
        }
    }

    /// The public key blob K_S (RFC 4253 §6.6): `string "ssh-ed25519" ||
    /// string key` (RFC 8709 §4), `string "ecdsa-sha2-nistpN" || string
    /// "nistpN" || string Q` (RFC 5656 §3.1) or `string "ssh-rsa" || mpint e
    /// || mpint n`.
    pub fn public_blob(&self) -> Vec<u8> {
        self.blob.clone()
    }

    /// The public key blob, borrowed (the key exchange hashes it).
    pub fn public_blob_ref(&self) -> &[u8] {
        &self.blob
    }

    /// The public key (for fingerprints and `known_hosts` lines).
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The SHA256 fingerprint exactly as `ssh-keygen -l` prints it
    /// (`SHA256:` and unpadded base64), for the start-up log.
    pub fn fingerprint_sha256(&self) -> String {
        self.public.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key's type as OpenSSH names it (`ssh-ed25519`, `ssh-rsa`,
    /// `ecdsa-sha2-nistp256`, ...), for the start-up log.
    pub fn key_type(&self) -> &'static str {
        match &self.signer {
            Signer::Ed25519(_) => "ssh-ed25519",
            Signer::Rsa(_) => "ssh-rsa",
            Signer::Ecdsa(keypair) => match keypair.curve() {
                EcdsaCurve::NistP256 => "ecdsa-sha2-nistp256",
                EcdsaCurve::NistP384 => "ecdsa-sha2-nistp384",
                EcdsaCurve::NistP521 => "ecdsa-sha2-nistp521",
            },
        }
    }

    /// Signs `data` (the exchange hash H) and returns the SSH signature blob
    /// `string alg-name || string signature` (RFC 8709 §6, RFC 5656 §3.1.2:
    /// `mpint r || mpint s`, RFC 8332 §3).
    /// Errors if `alg` is not one of [`HostKey::algorithms`].
    pub fn sign(&self, alg: HostKeyAlg, data: &[u8]) -> Result<Vec<u8>, HostKeyError> {
        match (&self.signer, alg) {
            (Signer::Ed25519(keypair), HostKeyAlg::Ed25519) => {
                let signature: Signature = keypair
                    .try_sign(data)
                    .map_err(|_| HostKeyError::SigningFailed)?;
                signature
                    .encode_vec()
                    .map_err(|_| HostKeyError::SigningFailed)
            }
            (Signer::Ecdsa(keypair), _) if alg.ecdsa_curve() == Some(keypair.curve()) => {
                let signature: Signature = keypair
                    .try_sign(data)
                    .map_err(|_| HostKeyError::SigningFailed)?;
                signature
                    .encode_vec()
                    .map_err(|_| HostKeyError::SigningFailed)
            }
            (Signer::Rsa(pair), HostKeyAlg::RsaSha2_512 | HostKeyAlg::RsaSha2_256) => {
                let raw = rsa_sign(pair, alg, data)?;
                let mut blob = Vec::with_capacity(raw.len().saturating_add(24));
                alg.name()
                    .encode(&mut blob)
                    .and_then(|()| raw.as_slice().encode(&mut blob))
                    .map_err(|_| HostKeyError::SigningFailed)?;
                Ok(blob)
            }
            _ => Err(HostKeyError::AlgorithmNotSupported(alg)),
        }
    }

    /// A host key from an ed25519 key pair.
    fn from_ed25519(keypair: Ed25519Keypair) -> HostKey {
        let key_data = KeyData::Ed25519(keypair.public);
        // RFC 8709 §4: string "ssh-ed25519" || string key. Laid out by hand
        // because it has a fixed size and this path cannot fail; the tests
        // compare it with ssh-key's encoding and with ssh-keygen's .pub file.
        let mut blob = Vec::with_capacity(51);
        blob.extend_from_slice(&[0, 0, 0, 11]);
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(keypair.public.as_ref());
        HostKey {
            signer: Signer::Ed25519(Box::new(keypair)),
            public: PublicKey::from(key_data),
            blob,
        }
    }

    /// The binary OpenSSH private key format (OpenSSH PROTOCOL.key), after
    /// base64.
    fn from_openssh_binary(data: &[u8]) -> Result<HostKey, HostKeyError> {
        // Look at the cipher and the key type ourselves first, so that an
        // encrypted key or an unsupported type gets its own message even
        // where ssh-key would fail on it with a generic one.
        let (cipher, key_type) = peek_openssh(data)?;
        if cipher != b"none" {
            return Err(HostKeyError::Encrypted);
        }
        match key_type.as_slice() {
            b"ssh-ed25519"
            | b"ssh-rsa"
            | b"ecdsa-sha2-nistp256"
            | b"ecdsa-sha2-nistp384"
            | b"ecdsa-sha2-nistp521" => {}
            t if t.starts_with(b"sk-") => {
                return Err(HostKeyError::Unsupported(
                    "security-key (sk-) keys cannot be host keys".into(),
                ));
            }
            b"ssh-dss" => {
                return Err(HostKeyError::Unsupported(
                    "DSA host keys are not supported".into(),
                ));
            }
            other => {
                return Err(HostKeyError::Unsupported(format!(
                    "{} keys cannot be host keys",
                    printable(&String::from_utf8_lossy(other))
                )));
            }
        }
        let private = PrivateKey::from_bytes(data)
            .map_err(|e| malformed(format!("invalid OpenSSH private key ({e})")))?;
        match private.key_data() {
            KeypairData::Ed25519(keypair) => Ok(Self::from_ed25519(keypair.clone())),
            KeypairData::Rsa(keypair) => Self::from_openssh_rsa(keypair),
            KeypairData::Ecdsa(keypair) => Self::from_ecdsa(keypair.clone()),
            KeypairData::Encrypted(_) => Err(HostKeyError::Encrypted),
            _ => Err(HostKeyError::Unsupported(
                "only ed25519, ECDSA and RSA keys can be host keys".into(),
            )),
        }
    }

    /// An RSA key from the OpenSSH format, which stores n, e, d, iqmp, p, q
    /// but not the CRT exponents `ring` wants: those are computed here, once.
    fn from_openssh_rsa(keypair: &RsaKeypair) -> Result<HostKey, HostKeyError> {
        let negative = || malformed("negative RSA key component");
        let public = keypair.public();
        let private = keypair.private();
        let d = private.d().as_positive_bytes().ok_or_else(negative)?;
        let p = private.p().as_positive_bytes().ok_or_else(negative)?;
        let q = private.q().as_positive_bytes().ok_or_else(negative)?;
        // Check the size before the bignum work, so a small key is named as
        // such rather than as whatever the arithmetic trips on.
        let n = public.n().as_positive_bytes().ok_or_else(negative)?;
        check_rsa_size(n)?;
        let dp = crt_exponent(d, p).ok_or_else(|| malformed("invalid RSA prime p"))?;
        let dq = crt_exponent(d, q).ok_or_else(|| malformed("invalid RSA prime q"))?;
        rsa_host_key(&RsaParts {
            n,
            e: public.e().as_positive_bytes().ok_or_else(negative)?,
            d,
            p,
            q,
            dp: &dp,
            dq: &dq,
            qinv: private.iqmp().as_positive_bytes().ok_or_else(negative)?,
        })
    }

    /// PKCS#1 `RSAPrivateKey` (RFC 8017 Appendix A.1.2), DER.
    fn from_pkcs1_der(der: &[u8]) -> Result<HostKey, HostKeyError> {
        let bad = || malformed("invalid DER in the RSA private key");
        let mut outer = Der(der);
        let mut seq = Der(outer.expect(TAG_SEQUENCE).ok_or_else(bad)?);
        if !outer.is_empty() {
            return Err(bad());
        }
        match seq.uint().ok_or_else(bad)? {
            [] => {}
            [1] => {
                return Err(HostKeyError::Unsupported(
                    "multi-prime RSA keys are not supported".into(),
                ));
            }
            _ => return Err(bad()),
        }
        let mut next = || seq.uint().ok_or_else(bad);
        let parts = RsaParts {
            n: next()?,
            e: next()?,
            d: next()?,
            p: next()?,
            q: next()?,
            dp: next()?,
            dq: next()?,
            qinv: next()?,
        };
        if !seq.is_empty() {
            return Err(bad());
        }
        check_rsa_size(parts.n)?;
        rsa_host_key(&parts)
    }

    /// PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` (RFC 5208, RFC 5958),
    /// DER, holding an RSA or an Ed25519 (RFC 8410) key.
    fn from_pkcs8_der(der: &[u8]) -> Result<HostKey, HostKeyError> {
        let bad = || malformed("invalid DER in the PKCS#8 private key");
        let mut outer = Der(der);
        let mut info = Der(outer.expect(TAG_SEQUENCE).ok_or_else(bad)?);
        if !outer.is_empty() {
            return Err(bad());
        }
        match info.uint().ok_or_else(bad)? {
            [] | [1] => {}
            _ => return Err(bad()),
        }
        let mut alg = Der(info.expect(TAG_SEQUENCE).ok_or_else(bad)?);
        let oid = alg.expect(TAG_OID).ok_or_else(bad)?;
        let private = info.expect(TAG_OCTET_STRING).ok_or_else(bad)?;
        match oid {
            OID_RSA_ENCRYPTION => Self::from_pkcs1_der(private),
            OID_ED25519 => {
                let mut inner = Der(private);
                let seed = inner.expect(TAG_OCTET_STRING).ok_or_else(bad)?;
                let seed: &[u8; 32] = seed.try_into().map_err(|_| bad())?;
                if !inner.is_empty() || !alg.is_empty() {
                    return Err(bad());
                }
                let keypair = Ed25519Keypair::from_seed(seed);
                // A version 2 key may carry its public key; it must agree.
                while let Some((tag, value)) = info.tlv() {
                    if tag == TAG_PKCS8_PUBLIC_KEY
                        && value.split_first() != Some((&0, keypair.public.as_ref().as_slice()))
                    {
                        return Err(malformed(
                            "the PKCS#8 key's public key does not match its private key",
                        ));
                    }
                }
                if !info.is_empty() {
                    return Err(bad());
                }
                Ok(Self::from_ed25519(keypair))
            }
            OID_EC_PUBLIC_KEY => {
                // AlgorithmIdentifier parameters: the namedCurve (RFC 5480).
                let curve = alg.expect(TAG_OID).ok_or_else(bad)?;
                if !alg.is_empty() {
                    return Err(bad());
                }
                Self::from_sec1_der(private, Some(curve))
            }
            _ => Err(HostKeyError::Unsupported(
                "PKCS#8 keys other than RSA, Ed25519 and ECDSA are not supported".into(),
            )),
        }
    }

    /// SEC1 `ECPrivateKey` (RFC 5915), DER: version 1, the private scalar,
    /// the curve (`[0]`, required unless `outer_curve`, PKCS#8's, names it;
    /// both must agree when present) and optionally the public point (`[1]`),
    /// which must be the scalar's.
    fn from_sec1_der(der: &[u8], outer_curve: Option<&[u8]>) -> Result<HostKey, HostKeyError> {
        let bad = || malformed("invalid DER in the EC private key");
        let mut outer = Der(der);
        let mut seq = Der(outer.expect(TAG_SEQUENCE).ok_or_else(bad)?);
        if !outer.is_empty() || seq.uint().ok_or_else(bad)? != [1] {
            return Err(bad());
        }
        let scalar = seq.expect(TAG_OCTET_STRING).ok_or_else(bad)?;
        let mut curve = outer_curve;
        let mut public = None;
        while let Some((tag, value)) = seq.tlv() {
            match tag {
                TAG_SEC1_PARAMETERS => {
                    let named = Der(value).expect(TAG_OID).ok_or_else(bad)?;
                    if curve.is_some_and(|c| c != named) {
                        return Err(malformed("the EC key names two different curves"));
                    }
                    curve = Some(named);
                }
                TAG_SEC1_PUBLIC_KEY => {
                    // A BIT STRING: no unused bits, then the SEC1 point.
                    let bits = Der(value).expect(TAG_BIT_STRING).ok_or_else(bad)?;
                    let (&0, point) = bits.split_first().ok_or_else(bad)? else {
                        return Err(bad());
                    };
                    public = Some(point);
                }
                _ => return Err(bad()),
            }
        }
        let keypair = match curve.ok_or_else(|| malformed("the EC key names no curve"))? {
            OID_PRIME256V1 => ecdsa_keypair!(
                NistP256,
                p256::SecretKey::from_slice(scalar).map_err(|_| bad())?
            ),
            OID_SECP384R1 => ecdsa_keypair!(
                NistP384,
                p384::SecretKey::from_slice(scalar).map_err(|_| bad())?
            ),
            OID_SECP521R1 => ecdsa_keypair!(
                NistP521,
                p521::SecretKey::from_slice(scalar).map_err(|_| bad())?
            ),
            _ => {
                return Err(HostKeyError::Unsupported(
                    "ECDSA keys on curves other than NIST P-256, P-384 and P-521 are not \
                     supported"
                        .into(),
                ));
            }
        };
        if public.is_some_and(|point| point != keypair.public_key_bytes()) {
            return Err(malformed(
                "the EC key's public key does not match its private key",
            ));
        }
        Self::from_ecdsa(keypair)
    }

    /// A host key from an ECDSA key pair, once it has signed and verified a
    /// test message (the OpenSSH format stores the public point beside the
    /// scalar without anyone checking that they agree).
    fn from_ecdsa(keypair: EcdsaKeypair) -> Result<HostKey, HostKeyError> {
        let public = EcdsaPublicKey::from(&keypair);
        let key_data = KeyData::Ecdsa(public);
        let blob = key_data
            .encode_vec()
            .map_err(|_| malformed("cannot encode the ECDSA public key"))?;
        let key = HostKey {
            signer: Signer::Ecdsa(Box::new(keypair)),
            public: PublicKey::from(key_data),
            blob,
        };
        let alg = key.algorithms()[0];
        let signature = key.sign(alg, SELF_TEST_MESSAGE)?;
        verify_host_signature(alg, &key.blob, SELF_TEST_MESSAGE, &signature).map_err(|_| {
            malformed("the ECDSA key's public point does not match its private scalar")
        })?;
        Ok(key)
    }
}

/// Signs with `ring` and returns the raw PKCS#1 v1.5 signature (as long as
/// the modulus).
fn rsa_sign(pair: &RsaKeyPair, alg: HostKeyAlg, data: &[u8]) -> Result<Vec<u8>, HostKeyError> {
    let padding = match alg {
        HostKeyAlg::RsaSha2_512 => &RSA_PKCS1_SHA512,
        HostKeyAlg::RsaSha2_256 => &RSA_PKCS1_SHA256,
        _ => return Err(HostKeyError::AlgorithmNotSupported(alg)),
    };
    let mut signature = vec![0; pair.public().modulus_len()];
    // `RsaKeyPair::sign` demands a `&dyn SecureRandom`, a sealed trait, so
    // only ring's own `SystemRandom` fits. It is never read here: PKCS#1
    // v1.5 padding is deterministic and ring's PKCS1 encoder ignores the rng
    // (ring 0.17.14 src/rsa/padding/pkcs1.rs, `_rng`), and ring does not
    // blind. `SystemRandom::new()` itself touches nothing (it is a unit
    // struct), so the core still reads no OS randomness.
    #[allow(clippy::disallowed_types)]
    let unused_rng = ring::rand::SystemRandom::new();
    pair.sign(padding, &unused_rng, data, &mut signature)
        .map_err(|_| HostKeyError::SigningFailed)?;
    Ok(signature)
}

/// The eight numbers of a two-prime RSA private key, big-endian, without
/// leading zeros.
struct RsaParts<'a> {
    n: &'a [u8],
    e: &'a [u8],
    d: &'a [u8],
    p: &'a [u8],
    q: &'a [u8],
    dp: &'a [u8],
    dq: &'a [u8],
    qinv: &'a [u8],
}

/// Refuses a modulus under [`MIN_RSA_BITS`] or over what ring can sign with.
fn check_rsa_size(n: &[u8]) -> Result<u32, HostKeyError> {
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(HostKeyError::TooSmall { bits });
    }
    if bits > MAX_RSA_SIGNING_BITS {
        return Err(HostKeyError::Unsupported(format!(
            "RSA host key of {bits} bits: keys over {MAX_RSA_SIGNING_BITS} bits cannot sign \
             here (use ed25519, or RSA of 2048, 3072 or 4096 bits)"
        )));
    }
    Ok(bits)
}

/// Builds the `ring` key pair (which validates the parts), self-tests it and
/// derives the public blob.
fn rsa_host_key(parts: &RsaParts<'_>) -> Result<HostKey, HostKeyError> {
    let bits = check_rsa_size(parts.n)?;
    let pair = RsaKeyPair::from_components(&KeyPairComponents {
        public_key: PublicKeyComponents {
            n: parts.n,
            e: parts.e,
        },
        d: parts.d,
        p: parts.p,
        q: parts.q,
        dP: parts.dp,
        dQ: parts.dq,
        qInv: parts.qinv,
    })
    .map_err(|rejected| match rejected.to_string().as_str() {
        "PrivateModulusLenNotMultipleOf512Bits" => HostKeyError::Unsupported(format!(
            "RSA host key of {bits} bits: only 2048, 3072 and 4096-bit RSA keys can sign here"
        )),
        "TooSmall" | "TooLarge" => HostKeyError::Unsupported(
            "RSA host key with a public exponent below 65537 or over 33 bits".into(),
        ),
        "InconsistentComponents" | "InvalidComponent" => {
            malformed("the RSA key's numbers are inconsistent")
        }
        other => malformed(format!("RSA key rejected ({other})")),
    })?;
    // ring checks each private operation against the public key, so one
    // signature proves p, q, dP, dQ and qInv agree; verify it once more with
    // the public operation anyway, as a client would.
    let test = rsa_sign(&pair, HostKeyAlg::RsaSha2_512, SELF_TEST_MESSAGE)
        .map_err(|_| malformed("the RSA key's numbers are inconsistent (self-test failed)"))?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA512, pair.public().as_ref())
        .verify(SELF_TEST_MESSAGE, &test)
        .map_err(|_| malformed("the RSA key's numbers are inconsistent (self-test failed)"))?;
    let public = RsaPublicKey::new(
        Mpint::from_positive_bytes(parts.e),
        Mpint::from_positive_bytes(parts.n),
    )
    .map_err(|e| malformed(format!("invalid RSA public key ({e})")))?;
    let key_data = KeyData::Rsa(public);
    let blob = key_data
        .encode_vec()
        .map_err(|e| malformed(format!("cannot encode the RSA public key ({e})")))?;
    Ok(HostKey {
        signer: Signer::Rsa(Box::new(pair)),
        public: PublicKey::from(key_data),
        blob,
    })
}

/// `d mod (prime - 1)`, the CRT exponent for one prime, big-endian without
/// leading zeros. A one-time computation when a key is loaded, with
/// crypto-bigint's constant-time remainder (not a signing operation).
fn crt_exponent(d: &[u8], prime: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // ssh-key's `rsa` feature turns on ssh-encoding's `bigint`, which
    // re-exports crypto-bigint.
    use ssh_key::encoding::bigint::{BoxedUint, NonZero};

    // A prime below 3 would make p - 1 zero or wrap around.
    if bit_length(prime) < 2 {
        return None;
    }
    let d_bits = u32::try_from(d.len().checked_mul(8)?).ok()?;
    let p_bits = u32::try_from(prime.len().checked_mul(8)?).ok()?;
    let d = Zeroizing::new(BoxedUint::from_be_slice(d, d_bits.max(64)).ok()?);
    let p = Zeroizing::new(BoxedUint::from_be_slice(prime, p_bits.max(64)).ok()?);
    let p_minus_1 = p.wrapping_sub(BoxedUint::one_with_precision(p.bits_precision()));
    let modulus = Zeroizing::new(NonZero::new(p_minus_1).into_option()?);
    let remainder = Zeroizing::new(d.rem(&modulus));
    let mut bytes = remainder.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let out = bytes.get(start..).map(|b| Zeroizing::new(b.to_vec()));
    zeroize::Zeroize::zeroize(&mut bytes);
    out
}

/// The number of significant bits in a big-endian unsigned integer.
pub(crate) fn bit_length(bytes: &[u8]) -> u32 {
    let Some(start) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let significant = &bytes[start..];
    let whole = u32::try_from(significant.len()).unwrap_or(u32::MAX / 8);
    let first = significant.first().copied().unwrap_or(0);
    whole
        .saturating_mul(8)
        .saturating_sub(first.leading_zeros())
}

/// Reads the cipher name and the key type of a binary OpenSSH private key
/// (OpenSSH PROTOCOL.key §1) without decrypting or decoding the key.
fn peek_openssh(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), HostKeyError> {
    let bad = || malformed("not a valid OpenSSH private key");
    let mut reader = data.strip_prefix(OPENSSH_MAGIC).ok_or_else(bad)?;
    let cipher = Vec::<u8>::decode(&mut reader).map_err(|_| bad())?;
    let _kdf_name = Vec::<u8>::decode(&mut reader).map_err(|_| bad())?;
    let _kdf_options = Vec::<u8>::decode(&mut reader).map_err(|_| bad())?;
    let count = u32::decode(&mut reader).map_err(|_| bad())?;
    if count != 1 {
        return Err(HostKeyError::Unsupported(
            "an OpenSSH key file must hold exactly one key".into(),
        ));
    }
    let public = Vec::<u8>::decode(&mut reader).map_err(|_| bad())?;
    let key_type = Vec::<u8>::decode(&mut public.as_slice()).map_err(|_| bad())?;
    Ok((cipher, key_type))
}

/// Decodes a public key blob, refusing certificates and anything that does
/// not re-encode to the same bytes (a key type written as `rsa-sha2-256`,
/// trailing bytes, non-minimal numbers), so that one key has one blob and
/// one fingerprint.
pub(crate) fn decode_public_blob(blob: &[u8]) -> Result<KeyData, HostKeyError> {
    let mut reader = blob;
    let key = KeyData::decode(&mut reader)
        .map_err(|e| malformed(format!("invalid public key blob ({e})")))?;
    if !reader.is_finished() {
        return Err(malformed("trailing bytes after the public key blob"));
    }
    if key.is_certificate() {
        return Err(HostKeyError::Unsupported(
            "certificates are not supported".into(),
        ));
    }
    match key.encode_vec() {
        Ok(again) if again == blob => Ok(key),
        _ => Err(malformed("the public key blob is not in canonical form")),
    }
}

/// Decodes a signature blob (`string alg-name || string signature`, with
/// the security-key trailer where the algorithm has one), refusing trailing
/// bytes.
pub(crate) fn decode_signature_blob(blob: &[u8]) -> Result<Signature, HostKeyError> {
    let mut reader = blob;
    let signature = Signature::decode(&mut reader)
        .map_err(|e| malformed(format!("invalid signature blob ({e})")))?;
    if !reader.is_finished() {
        return Err(malformed("trailing bytes after the signature blob"));
    }
    Ok(signature)
}

/// The exact size of an RSA public key's modulus in bits.
pub(crate) fn rsa_bits(key: &RsaPublicKey) -> u32 {
    key.n().as_positive_bytes().map_or(0, bit_length)
}

/// Verifies a decoded signature over `data` with a decoded key (the caller
/// has checked that the algorithms fit). A short RSA signature is left-padded
/// to the modulus length, as OpenSSH does (ssh-rsa.c), since it is the same
/// integer; a long one is refused.
pub(crate) fn verify_decoded(
    key: &KeyData,
    signature: &Signature,
    data: &[u8],
) -> Result<(), HostKeyError> {
    if let (KeyData::Rsa(rsa), Algorithm::Rsa { .. }) = (key, signature.algorithm()) {
        let modulus_len = rsa.n().as_positive_bytes().map_or(0, <[u8]>::len);
        let raw = signature.as_bytes();
        if raw.len() > modulus_len {
            return Err(malformed("RSA signature longer than the modulus"));
        }
        if raw.len() < modulus_len {
            let mut padded = vec![0; modulus_len - raw.len()];
            padded.extend_from_slice(raw);
            let padded = Signature::new(signature.algorithm(), padded)
                .map_err(|_| malformed("invalid RSA signature"))?;
            return key
                .verify(data, &padded)
                .map_err(|_| HostKeyError::BadSignature);
        }
    }
    key.verify(data, signature)
        .map_err(|_| HostKeyError::BadSignature)
}

/// Verifies a host-key signature blob over `data` against a public key blob
/// (the client side of RFC 4253 §8, used by our test client): parses both
/// with ssh-key, checks that the key type and the signature's algorithm name
/// both fit `alg`, and verifies. RSA keys under 2048 bits are refused.
pub fn verify_host_signature(
    alg: HostKeyAlg,
    public_blob: &[u8],
    data: &[u8],
    signature_blob: &[u8],
) -> Result<(), HostKeyError> {
    let key = decode_public_blob(public_blob)?;
    match (&key, alg) {
        (KeyData::Ed25519(_), HostKeyAlg::Ed25519) => {}
        (KeyData::Ecdsa(ecdsa), _) if alg.ecdsa_curve() == Some(ecdsa.curve()) => {}
        (KeyData::Rsa(rsa), HostKeyAlg::RsaSha2_512 | HostKeyAlg::RsaSha2_256) => {
            let bits = rsa_bits(rsa);
            if bits < MIN_RSA_BITS {
                return Err(HostKeyError::TooSmall { bits });
            }
        }
        _ => return Err(HostKeyError::AlgorithmMismatch { expected: alg }),
    }
    let signature = decode_signature_blob(signature_blob)?;
    if signature.algorithm() != alg.ssh_algorithm() {
        return Err(HostKeyError::AlgorithmMismatch { expected: alg });
    }
    verify_decoded(&key, &signature, data)
}

/// What one of the server's host keys is used for (the start-up log says
/// it for each key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyUse {
    /// The first key in service of its type: it signs the key exchanges
    /// that negotiate its type, and it is announced after authentication.
    SignsKeyExchanges,
    /// Another key in service of a type an earlier key signs for: it is
    /// only announced (and proven on request), so that clients learn it
    /// before it takes over (OpenSSH `PROTOCOL` §2.5).
    AnnouncedOnly,
    /// Retiring (`--host-key-retiring`): never announced, still proven on
    /// request, and it signs the key exchanges of its type when no key in
    /// service has that type (clients that know only it still connect).
    Retiring {
        /// Whether it signs key exchanges (no key in service has its type).
        signs_key_exchanges: bool,
    },
}

impl HostKeyUse {
    /// A few words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SignsKeyExchanges => "signs key exchanges, announced",
            Self::AnnouncedOnly => "announced only",
            Self::Retiring {
                signs_key_exchanges: true,
            } => "retiring: not announced, signs key exchanges for clients that know only it",
            Self::Retiring {
                signs_key_exchanges: false,
            } => "retiring: not announced, proofs only",
        }
    }
}

impl fmt::Display for HostKeyUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The same key given twice, by its place among the keys in service then
/// the retiring ones (the caller names the files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateHostKey {
    /// The first place it was given.
    pub first: usize,
    /// The place it was given again.
    pub again: usize,
}

/// The server's host keys: those in service, in the operator's order, and
/// the retiring ones. Cheap to clone (shared).
///
/// Several keys of one type may be in service at once, for rotation: the
/// first of a type signs the key exchanges that negotiate it, the others
/// are announced so that clients with `UpdateHostKeys` learn them. A
/// retiring key is not announced (such clients then drop it from their
/// `known_hosts`), but it still proves itself on request and signs for its
/// type when no key in service has that type.
#[derive(Clone)]
pub struct HostKeys {
    /// Keys in service, then the retiring ones.
    keys: std::sync::Arc<[HostKey]>,
    /// Where the retiring keys start in `keys`.
    retiring_from: usize,
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeys")
            .field("in_service", &self.in_service())
            .field("retiring", &self.retiring())
            .finish()
    }
}

impl HostKeys {
    /// The keys in service (in order) and the retiring ones; the same key
    /// twice, anywhere, is refused: a client told of a key twice ignores
    /// the whole announcement (OpenSSH's does).
    pub fn new(
        in_service: Vec<HostKey>,
        retiring: Vec<HostKey>,
    ) -> Result<HostKeys, DuplicateHostKey> {
        let retiring_from = in_service.len();
        let keys: Vec<HostKey> = in_service.into_iter().chain(retiring).collect();
        for (again, key) in keys.iter().enumerate() {
            if let Some(first) = keys[..again].iter().position(|k| k.blob == key.blob) {
                return Err(DuplicateHostKey { first, again });
            }
        }
        Ok(HostKeys {
            keys: keys.into(),
            retiring_from,
        })
    }

    /// Every key, in service first, then retiring.
    pub fn all(&self) -> &[HostKey] {
        &self.keys
    }

    /// The keys in service, in order: the ones announced.
    pub fn in_service(&self) -> &[HostKey] {
        &self.keys[..self.retiring_from]
    }

    /// The retiring keys.
    pub fn retiring(&self) -> &[HostKey] {
        &self.keys[self.retiring_from..]
    }

    /// Every algorithm some key can sign with, in the keys' order, without
    /// repeats: what a KEXINIT may offer.
    pub fn algorithms(&self) -> Vec<HostKeyAlg> {
        let mut algs = Vec::new();
        for alg in self.keys.iter().flat_map(HostKey::algorithms) {
            if !algs.contains(alg) {
                algs.push(*alg);
            }
        }
        algs
    }

    /// The key that signs a key exchange that negotiated `alg`: the first
    /// in service that can, else the first retiring one that can.
    pub fn signing_key(&self, alg: HostKeyAlg) -> Option<&HostKey> {
        self.signing_index(alg).map(|i| &self.keys[i])
    }

    /// The retiring key that signs key exchanges negotiating `alg`, if the
    /// one that does is retiring (the session logs who still relies on it).
    pub fn retiring_signer(&self, alg: HostKeyAlg) -> Option<&HostKey> {
        self.signing_index(alg)
            .filter(|&i| i >= self.retiring_from)
            .map(|i| &self.keys[i])
    }

    fn signing_index(&self, alg: HostKeyAlg) -> Option<usize> {
        self.keys.iter().position(|k| k.algorithms().contains(&alg))
    }

    /// The key whose public blob is `blob`, retiring ones included (a
    /// client may ask any of them for a proof).
    pub fn find(&self, blob: &[u8]) -> Option<&HostKey> {
        self.keys.iter().find(|k| k.blob == blob)
    }

    /// Each key with what it is used for, in service first.
    pub fn uses(&self) -> Vec<(&HostKey, HostKeyUse)> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let signs = key
                    .algorithms()
                    .iter()
                    .any(|&alg| self.signing_index(alg) == Some(i));
                let role = match (i < self.retiring_from, signs) {
                    (true, true) => HostKeyUse::SignsKeyExchanges,
                    (true, false) => HostKeyUse::AnnouncedOnly,
                    (false, signs_key_exchanges) => HostKeyUse::Retiring {
                        signs_key_exchanges,
                    },
                };
                (key, role)
            })
            .collect()
    }
}

/// Keys in service and none retiring; a key given twice is kept once.
impl From<Vec<HostKey>> for HostKeys {
    fn from(keys: Vec<HostKey>) -> Self {
        let mut unique: Vec<HostKey> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.iter().any(|k| k.blob == key.blob) {
                unique.push(key);
            }
        }
        let retiring_from = unique.len();
        HostKeys {
            keys: unique.into(),
            retiring_from,
        }
    }
}

/// A string from a key file, made safe and short for a log line.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// One PEM block (RFC 7468, plus the RFC 1421 headers of legacy encrypted
/// PEM).
struct Pem<'a> {
    label: &'a str,
    headers: Vec<&'a str>,
    data: Zeroizing<Vec<u8>>,
}

impl<'a> Pem<'a> {
    /// The first PEM block in `text`; text around it is ignored, as OpenSSL
    /// and OpenSSH do.
    fn parse(text: &'a str) -> Result<Self, HostKeyError> {
        let mut lines = text.lines().map(str::trim);
        let label = loop {
            let Some(line) = lines.next() else {
                return Err(malformed(
                    "no PEM block found; expected an OpenSSH or PEM private key \
                     (-----BEGIN ... PRIVATE KEY-----)",
                ));
            };
            if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                break rest
                    .strip_suffix("-----")
                    .ok_or_else(|| malformed("invalid PEM BEGIN line"))?;
            }
        };
        let mut headers = Vec::new();
        let mut base64 = Zeroizing::new(String::with_capacity(text.len()));
        let mut ended = false;
        for line in lines {
            if let Some(rest) = line.strip_prefix("-----END ") {
                if rest.strip_suffix("-----") != Some(label) {
                    return Err(malformed("the PEM END line does not match its BEGIN line"));
                }
                ended = true;
                break;
            }
            if base64.is_empty() && line.contains(':') {
                headers.push(line);
                continue;
            }
            base64.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
        }
        if !ended {
            return Err(malformed("the key is truncated (no -----END line)"));
        }
        // Decode straight into a zeroizing buffer: this is the private key.
        let mut data = Zeroizing::new(vec![0; (base64.len() / 4).saturating_add(1) * 3]);
        let len = base64ct::Base64::decode(base64.as_bytes(), &mut data)
            .map_err(|_| malformed("the key's base64 is invalid"))?
            .len();
        data.truncate(len);
        Ok(Pem {
            label,
            headers,
            data,
        })
    }

    /// Whether the legacy PEM headers say the body is encrypted.
    fn is_encrypted(&self) -> bool {
        self.headers.iter().any(|h| {
            h.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("Proc-Type") && value.contains("ENCRYPTED")
            })
        })
    }

    /// Formats without headers must have none.
    fn refuse_headers(&self) -> Result<(), HostKeyError> {
        if self.headers.is_empty() {
            Ok(())
        } else {
            Err(malformed("unexpected header lines in the PEM block"))
        }
    }
}

/// DER tags and object identifiers used by PKCS#1 and PKCS#8.
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// `[1] IMPLICIT BIT STRING publicKey` in a PKCS#8 v2 `OneAsymmetricKey`.
const TAG_PKCS8_PUBLIC_KEY: u8 = 0x81;
/// 1.2.840.113549.1.1.1 (RFC 8017).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.3.101.112 (RFC 8410).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// 1.2.840.10045.2.1 (RFC 5480).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7 (RFC 5480).
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34 (RFC 5480).
const OID_SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1, 1.3.132.0.35 (RFC 5480).
const OID_SECP521R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// `[0] EXPLICIT parameters` and `[1] EXPLICIT publicKey` of a SEC1
/// `ECPrivateKey` (RFC 5915).
const TAG_SEC1_PARAMETERS: u8 = 0xa0;
const TAG_SEC1_PUBLIC_KEY: u8 = 0xa1;

/// A minimal DER reader: just enough for PKCS#1 and PKCS#8 private keys.
/// Every method returns `None` on malformed input; nothing panics.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next tag and value.
    fn tlv(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: 1 to 3 length octets (16 MiB is plenty for a key),
            // minimal as DER requires.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 3 {
                return None;
            }
            let (octets, after) = rest.split_at_checked(count)?;
            rest = after;
            if octets.first() == Some(&0) {
                return None;
            }
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None;
            }
            len
        };
        let (value, after) = rest.split_at_checked(len)?;
        self.0 = after;
        Some((tag, value))
    }

    /// The next value, which must carry `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.tlv()? {
            (t, value) if t == tag => Some(value),
            _ => None,
        }
    }

    /// The next INTEGER, which must be non-negative; returned without
    /// leading zeros (zero is the empty slice).
    fn uint(&mut self) -> Option<&'a [u8]> {
        let value = self.expect(TAG_INTEGER)?;
        if value.first()? & 0x80 != 0 {
            return None;
        }
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        value.get(start..)
    }

    /// Whether everything has been read.
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A private key fixture with what ssh-keygen said about it.
    struct Fixture {
        name: &'static str,
        private: &'static [u8],
        public: &'static str,
        fingerprint: &'static str,
    }

    macro_rules! fixture {
        ($name:literal) => {
            Fixture {
                name: $name,
                private: include_bytes!(concat!("testdata/", $name)),
                public: include_str!(concat!("testdata/", $name, ".pub")),
                fingerprint: include_str!(concat!("testdata/", $name, ".fp")),
            }
        };
    }

    /// Keys we accept.
    fn good() -> [Fixture; 14] {
        [
            fixture!("ed25519"),
            fixture!("ed25519_pkcs8"),
            fixture!("rsa2048_openssh"),
            fixture!("rsa3072_openssh"),
            fixture!("rsa4096_openssh"),
            fixture!("rsa2048_pem"),
            fixture!("rsa2048_pkcs8"),
            fixture!("ecdsa256"),
            fixture!("ecdsa384"),
            fixture!("ecdsa521"),
            fixture!("ecdsa256_pem"),
            fixture!("ecdsa384_pem"),
            fixture!("ecdsa256_pkcs8"),
            fixture!("ecdsa256_openssl"),
        ]
    }

    /// Keys we refuse.
    fn bad() -> [Fixture; 7] {
        [
            fixture!("rsa2560_openssh"),
            fixture!("rsa8192_pem"),
            fixture!("rsa1024_pem"),
            fixture!("rsa1024_openssh"),
            fixture!("ed25519_encrypted"),
            fixture!("rsa2048_pem_encrypted"),
            fixture!("dsa"),
        ]
    }

    const MESSAGE: &[u8] = include_bytes!("testdata/message.bin");

    /// The base64 field of a .pub line, decoded.
    fn pub_blob(line: &str) -> Vec<u8> {
        let b64 = line.split_whitespace().nth(1).unwrap();
        base64ct::Base64::decode_vec(b64).unwrap()
    }

    /// The `SHA256:...` field of `ssh-keygen -l` output.
    fn fp_field(line: &str) -> &str {
        line.split_whitespace().nth(1).unwrap()
    }

    /// The raw signature inside a signature blob, after checking its name.
    fn raw_signature(blob: &[u8], name: &str) -> Vec<u8> {
        let mut reader = blob;
        let alg = String::decode(&mut reader).unwrap();
        let raw = Vec::<u8>::decode(&mut reader).unwrap();
        assert!(reader.is_empty());
        assert_eq!(alg, name);
        raw
    }

    /// A deterministic rng for key generation in tests (not for production:
    /// the runtime supplies a real one).
    struct CountingRng(u64);

    impl rand_core::TryRng for CountingRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            // SplitMix64: enough spread for distinct test keys.
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            Ok(z ^ (z >> 31))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for chunk in dst.chunks_mut(8) {
                let word = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for CountingRng {}

    #[test]
    fn alg_names_round_trip_and_exclude_sha1() {
        for alg in HostKeyAlg::ALL {
            assert_eq!(HostKeyAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        assert_eq!(HostKeyAlg::from_name("ssh-rsa"), None);
        assert_eq!(HostKeyAlg::from_name("SSH-ED25519"), None);
        assert_eq!(HostKeyAlg::from_name(""), None);
        assert_eq!(
            HostKeyAlg::ALL.map(HostKeyAlg::name),
            [
                "ssh-ed25519",
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp521",
                "rsa-sha2-512",
                "rsa-sha2-256"
            ]
        );
    }

    #[test]
    fn good_fixtures_parse_with_blob_and_fingerprint_of_ssh_keygen() {
        for f in good() {
            let key = HostKey::from_private_key_file(f.private)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert_eq!(key.public_blob(), pub_blob(f.public), "{}", f.name);
            assert_eq!(key.public_blob_ref(), pub_blob(f.public), "{}", f.name);
            assert_eq!(
                key.public_key().key_data().encode_vec().unwrap(),
                pub_blob(f.public),
                "{}",
                f.name
            );
            assert_eq!(
                key.fingerprint_sha256(),
                fp_field(f.fingerprint),
                "{}",
                f.name
            );
            let expected: &[HostKeyAlg] = match &f.name[..f.name.len().min(8)] {
                "ed25519" | "ed25519_" => &[HostKeyAlg::Ed25519],
                "ecdsa256" => &[HostKeyAlg::EcdsaNistp256],
                "ecdsa384" => &[HostKeyAlg::EcdsaNistp384],
                "ecdsa521" => &[HostKeyAlg::EcdsaNistp521],
                _ => &[HostKeyAlg::RsaSha2_512, HostKeyAlg::RsaSha2_256],
            };
            assert_eq!(key.algorithms(), expected, "{}", f.name);
        }
    }

    #[test]
    fn signatures_verify_with_ssh_key_for_every_algorithm() {
        for f in good() {
            let key = HostKey::from_private_key_file(f.private).unwrap();
            let public = ssh_key::PublicKey::from_openssh(f.public).unwrap();
            for &alg in key.algorithms() {
                let blob = key.sign(alg, MESSAGE).unwrap();
                let signature = Signature::try_from(blob.as_slice()).unwrap();
                assert_eq!(signature.algorithm().as_str(), alg.name());
                public
                    .key_data()
                    .verify(MESSAGE, &signature)
                    .unwrap_or_else(|e| panic!("{} {alg}: {e}", f.name));
                assert!(public.key_data().verify(b"other", &signature).is_err());
                verify_host_signature(alg, &pub_blob(f.public), MESSAGE, &blob).unwrap();
                assert_eq!(
                    verify_host_signature(alg, &pub_blob(f.public), b"other", &blob),
                    Err(HostKeyError::BadSignature)
                );
            }
            // The algorithms the key does not have are refused.
            for alg in HostKeyAlg::ALL {
                if !key.algorithms().contains(&alg) {
                    assert_eq!(
                        key.sign(alg, MESSAGE),
                        Err(HostKeyError::AlgorithmNotSupported(alg))
                    );
                }
            }
        }
    }

    #[test]
    fn rsa_signatures_equal_openssl_and_verify_with_ring() {
        /// Private key file, .pub file, algorithm, OpenSSL's raw signature.
        type Vector = (&'static [u8], &'static [u8], HostKeyAlg, &'static [u8]);
        let vectors: [Vector; 6] = [
            (
                include_bytes!("testdata/rsa2048_pem"),
                include_bytes!("testdata/rsa2048_pem.pub"),
                HostKeyAlg::RsaSha2_512,
                include_bytes!("testdata/rsa2048_pem.sha512.sig"),
            ),
            (
                include_bytes!("testdata/rsa2048_pem"),
                include_bytes!("testdata/rsa2048_pem.pub"),
                HostKeyAlg::RsaSha2_256,
                include_bytes!("testdata/rsa2048_pem.sha256.sig"),
            ),
            (
                include_bytes!("testdata/rsa2048_openssh"),
                include_bytes!("testdata/rsa2048_openssh.pub"),
                HostKeyAlg::RsaSha2_512,
                include_bytes!("testdata/rsa2048_openssh.sha512.sig"),
            ),
            (
                include_bytes!("testdata/rsa2048_openssh"),
                include_bytes!("testdata/rsa2048_openssh.pub"),
                HostKeyAlg::RsaSha2_256,
                include_bytes!("testdata/rsa2048_openssh.sha256.sig"),
            ),
            (
                include_bytes!("testdata/rsa3072_openssh"),
                include_bytes!("testdata/rsa3072_openssh.pub"),
                HostKeyAlg::RsaSha2_512,
                include_bytes!("testdata/rsa3072_openssh.sha512.sig"),
            ),
            (
                include_bytes!("testdata/rsa2048_pkcs8"),
                include_bytes!("testdata/rsa2048_pkcs8.pub"),
                HostKeyAlg::RsaSha2_512,
                include_bytes!("testdata/rsa2048_pkcs8.sha512.sig"),
            ),
        ];
        for (private, public, alg, expected) in vectors {
            let key = HostKey::from_private_key_file(private).unwrap();
            let raw = raw_signature(&key.sign(alg, MESSAGE).unwrap(), alg.name());
            // PKCS#1 v1.5 is deterministic: ring and OpenSSL agree exactly.
            assert_eq!(raw, expected, "{alg}");
            // And ring's own public verification accepts it.
            let KeyData::Rsa(rsa) =
                decode_public_blob(&pub_blob(core::str::from_utf8(public).unwrap())).unwrap()
            else {
                panic!("not RSA")
            };
            let components = ring::signature::RsaPublicKeyComponents {
                n: rsa.n().as_positive_bytes().unwrap(),
                e: rsa.e().as_positive_bytes().unwrap(),
            };
            let params = match alg {
                HostKeyAlg::RsaSha2_512 => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
                _ => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            };
            components.verify(params, MESSAGE, &raw).unwrap();
            assert!(components.verify(params, b"other", &raw).is_err());
        }
    }

    #[test]
    fn ed25519_signatures_equal_openssl() {
        let vectors: [(&[u8], &[u8]); 2] = [
            (
                include_bytes!("testdata/ed25519"),
                include_bytes!("testdata/ed25519.sig"),
            ),
            (
                include_bytes!("testdata/ed25519_pkcs8"),
                include_bytes!("testdata/ed25519_pkcs8.sig"),
            ),
        ];
        for (private, expected) in vectors {
            let key = HostKey::from_private_key_file(private).unwrap();
            let blob = key.sign(HostKeyAlg::Ed25519, MESSAGE).unwrap();
            assert_eq!(blob.len(), 4 + 11 + 4 + 64);
            assert_eq!(raw_signature(&blob, "ssh-ed25519"), expected);
        }
    }

    #[test]
    fn refused_fixtures_say_why() {
        let ring_limit = |what: &str| {
            HostKeyError::Unsupported(format!(
                "RSA host key of {what}: only 2048, 3072 and 4096-bit RSA keys can sign here"
            ))
        };
        let expectations = [
            ("rsa2560_openssh", ring_limit("2560 bits")),
            (
                "rsa8192_pem",
                HostKeyError::Unsupported(
                    "RSA host key of 8192 bits: keys over 4096 bits cannot sign here (use \
                     ed25519, or RSA of 2048, 3072 or 4096 bits)"
                        .into(),
                ),
            ),
            ("rsa1024_pem", HostKeyError::TooSmall { bits: 1024 }),
            ("rsa1024_openssh", HostKeyError::TooSmall { bits: 1024 }),
            ("ed25519_encrypted", HostKeyError::Encrypted),
            ("rsa2048_pem_encrypted", HostKeyError::Encrypted),
            (
                "dsa",
                HostKeyError::Unsupported("DSA host keys are not supported".into()),
            ),
        ];
        for (f, (name, expected)) in bad().iter().zip(expectations) {
            assert_eq!(f.name, name);
            assert_eq!(
                HostKey::from_private_key_file(f.private).unwrap_err(),
                expected,
                "{name}"
            );
        }
    }

    /// ECDSA signatures made here (RustCrypto's curves, RFC 6979) verify
    /// with an independent implementation, ring, for the curves it has; and
    /// `r` and `s` are canonical mpints inside the blob (RFC 5656 §3.1.2).
    #[test]
    fn ecdsa_signatures_verify_with_ring() {
        use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};
        for (f, ring_alg, field) in [
            (fixture!("ecdsa256"), &ECDSA_P256_SHA256_FIXED, 32),
            (fixture!("ecdsa256_openssl"), &ECDSA_P256_SHA256_FIXED, 32),
            (fixture!("ecdsa384"), &ECDSA_P384_SHA384_FIXED, 48),
        ] {
            let key = HostKey::from_private_key_file(f.private).unwrap();
            let alg = key.algorithms()[0];
            let blob = key.sign(alg, MESSAGE).unwrap();
            let raw = raw_signature(&blob, alg.name());
            let mut reader = raw.as_slice();
            let mut fixed = Vec::new();
            for _ in 0..2 {
                let value = Mpint::decode(&mut reader).unwrap();
                let bytes = value.as_positive_bytes().unwrap();
                assert!(bytes.len() <= field && bytes[0] != 0, "{}", f.name);
                fixed.extend(std::iter::repeat_n(0, field - bytes.len()));
                fixed.extend_from_slice(bytes);
            }
            assert!(reader.is_empty());
            // K_S is `string name || string curve || string Q`: Q is last.
            let blob_key = key.public_blob();
            let point = &blob_key[blob_key.len() - (1 + 2 * field)..];
            UnparsedPublicKey::new(ring_alg, point)
                .verify(MESSAGE, &fixed)
                .unwrap_or_else(|_| panic!("{}: ring refused our signature", f.name));
            assert!(
                UnparsedPublicKey::new(ring_alg, point)
                    .verify(b"other", &fixed)
                    .is_err()
            );
            // Deterministic: the same message gives the same signature.
            assert_eq!(key.sign(alg, MESSAGE).unwrap(), blob);
        }
    }

    /// A SEC1 key whose stored public point is not its scalar's, or whose
    /// curve disagrees with its PKCS#8 wrapper, is refused by name.
    #[test]
    fn inconsistent_ecdsa_keys_refused() {
        let f = fixture!("ecdsa256_openssl");
        let pem = Pem::parse(core::str::from_utf8(f.private).unwrap()).unwrap();
        let mut der = pem.data.to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        let err = HostKey::from_sec1_der(&der, None).err().unwrap();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = HostKey::from_sec1_der(&pem.data, Some(OID_SECP384R1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("two different curves"), "{err}");
        assert!(HostKey::from_sec1_der(&pem.data, Some(OID_PRIME256V1)).is_ok());
    }

    #[test]
    fn error_messages_carry_no_key_material() {
        // Every refusal and every corruption of every fixture: no base64
        // run of the key file appears in the message.
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for f in good().iter().chain(bad().iter()) {
            inputs.push(f.private.to_vec());
            inputs.push(f.private[..f.private.len() / 2].to_vec());
            let mut flipped = f.private.to_vec();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0x01;
            inputs.push(flipped);
        }
        for input in inputs {
            if let Err(e) = HostKey::from_private_key_file(&input) {
                let message = e.to_string();
                let text = String::from_utf8_lossy(&input);
                for line in text.lines().filter(|l| l.len() > 16 && !l.contains(' ')) {
                    if !line.starts_with("-----") {
                        assert!(!message.contains(&line[..16]), "{message}");
                    }
                }
            }
        }
        // Debug of a key shows only public facts.
        let key = HostKey::from_private_key_file(good()[0].private).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("ssh-ed25519"), "{debug}");
        assert!(debug.contains(fp_field(good()[0].fingerprint)), "{debug}");
    }

    #[test]
    fn generated_key_round_trips_through_openssh_format() {
        let mut rng = CountingRng(7);
        let key = HostKey::generate_ed25519(&mut rng);
        assert_eq!(key.algorithms(), [HostKeyAlg::Ed25519]);
        let text = key.to_openssh_private("gitmouth host key").unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        let again = HostKey::from_private_key_file(text.as_bytes()).unwrap();
        assert_eq!(again.public_blob(), key.public_blob());
        assert_eq!(again.fingerprint_sha256(), key.fingerprint_sha256());
        // The written file carries the comment, as ssh-keygen -l would show.
        let parsed = PrivateKey::from_openssh(text.as_bytes()).unwrap();
        assert_eq!(parsed.comment().as_str_lossy(), "gitmouth host key");
        // Same signatures (Ed25519 is deterministic).
        assert_eq!(
            again.sign(HostKeyAlg::Ed25519, MESSAGE).unwrap(),
            key.sign(HostKeyAlg::Ed25519, MESSAGE).unwrap()
        );
        // The blob laid out by hand equals ssh-key's encoding.
        assert_eq!(
            key.public_key().key_data().encode_vec().unwrap(),
            key.public_blob()
        );
        // Another seed, another key.
        let other = HostKey::generate_ed25519(&mut CountingRng(8));
        assert_ne!(other.public_blob(), key.public_blob());
    }

    #[test]
    fn rsa_keys_are_not_written() {
        let key = HostKey::from_private_key_file(include_bytes!("testdata/rsa2048_pem")).unwrap();
        assert!(matches!(
            key.to_openssh_private("x"),
            Err(HostKeyError::Unsupported(_))
        ));
    }

    #[test]
    fn fixed_inputs_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no PEM block"),
            (b"   \n\n", "no PEM block"),
            (b"\xff\xfe", "not text"),
            (b"hello world", "no PEM block"),
            (b"-----BEGIN OPENSSH PRIVATE KEY-----\n", "truncated"),
            (
                b"-----BEGIN OPENSSH PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
                "does not match",
            ),
            (
                b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
                "base64",
            ),
            (
                b"-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
                "not a valid OpenSSH",
            ),
            (
                b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n",
                "invalid DER",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
                "invalid DER",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
                "CERTIFICATE",
            ),
            (
                b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
                "public key",
            ),
            (b"PuTTY-User-Key-File-3: ssh-ed25519\n", "PuTTY"),
        ];
        for (input, needle) in cases {
            let e = HostKey::from_private_key_file(input).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
        // A .pub file given by mistake.
        let public = include_bytes!("testdata/ed25519.pub");
        let e = HostKey::from_private_key_file(public).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
    }

    #[test]
    fn crlf_and_surrounding_text_are_accepted() {
        for f in good() {
            let text = core::str::from_utf8(f.private).unwrap();
            let crlf = format!(
                "comment before\r\n{}\r\ntrailing\r\n",
                text.replace('\n', "\r\n")
            );
            let key = HostKey::from_private_key_file(crlf.as_bytes()).unwrap();
            assert_eq!(key.public_blob(), pub_blob(f.public), "{}", f.name);
        }
    }

    #[test]
    fn ed25519_pkcs8_with_mismatched_public_key_is_refused() {
        // OneAsymmetricKey v2 (RFC 8410 §10.3) with a public key that is not
        // the seed's.
        let seed = [7u8; 32];
        let mut der = vec![0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03];
        der.extend_from_slice(OID_ED25519);
        der.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
        der.extend_from_slice(&seed);
        der.extend_from_slice(&[0x81, 0x21, 0x00]);
        let right = Ed25519Keypair::from_seed(&seed).public;
        let mut wrong = *right.as_ref();
        wrong[0] ^= 1;
        let mut good = der.clone();
        good.extend_from_slice(right.as_ref());
        der.extend_from_slice(&wrong);
        assert!(HostKey::from_pkcs8_der(&good).is_ok());
        assert!(matches!(
            HostKey::from_pkcs8_der(&der),
            Err(HostKeyError::Malformed(m)) if m.contains("does not match")
        ));
    }

    #[test]
    fn verify_refuses_mismatches() {
        let ed = HostKey::from_private_key_file(include_bytes!("testdata/ed25519")).unwrap();
        let rsa = HostKey::from_private_key_file(include_bytes!("testdata/rsa2048_pem")).unwrap();
        let ed_sig = ed.sign(HostKeyAlg::Ed25519, MESSAGE).unwrap();
        let rsa512 = rsa.sign(HostKeyAlg::RsaSha2_512, MESSAGE).unwrap();
        let rsa256 = rsa.sign(HostKeyAlg::RsaSha2_256, MESSAGE).unwrap();
        let mismatch = |expected| Err(HostKeyError::AlgorithmMismatch { expected });
        // Key type does not fit the negotiated algorithm.
        assert_eq!(
            verify_host_signature(HostKeyAlg::RsaSha2_512, &ed.public_blob(), MESSAGE, &ed_sig),
            mismatch(HostKeyAlg::RsaSha2_512)
        );
        assert_eq!(
            verify_host_signature(HostKeyAlg::Ed25519, &rsa.public_blob(), MESSAGE, &rsa512),
            mismatch(HostKeyAlg::Ed25519)
        );
        // Signature algorithm name does not fit (RFC 8332 §3: must match).
        assert_eq!(
            verify_host_signature(
                HostKeyAlg::RsaSha2_512,
                &rsa.public_blob(),
                MESSAGE,
                &rsa256
            ),
            mismatch(HostKeyAlg::RsaSha2_512)
        );
        // The same raw bytes relabelled as the other hash do not verify.
        let raw = raw_signature(&rsa512, "rsa-sha2-512");
        let mut relabelled = Vec::new();
        "rsa-sha2-256".encode(&mut relabelled).unwrap();
        raw.as_slice().encode(&mut relabelled).unwrap();
        assert_eq!(
            verify_host_signature(
                HostKeyAlg::RsaSha2_256,
                &rsa.public_blob(),
                MESSAGE,
                &relabelled
            ),
            Err(HostKeyError::BadSignature)
        );
        // SHA-1 ssh-rsa is never accepted as a host signature.
        let mut sha1 = Vec::new();
        "ssh-rsa".encode(&mut sha1).unwrap();
        raw.as_slice().encode(&mut sha1).unwrap();
        assert!(
            verify_host_signature(HostKeyAlg::RsaSha2_512, &rsa.public_blob(), MESSAGE, &sha1)
                .is_err()
        );
        // Trailing bytes after either blob.
        let mut long_key = ed.public_blob();
        long_key.push(0);
        assert!(matches!(
            verify_host_signature(HostKeyAlg::Ed25519, &long_key, MESSAGE, &ed_sig),
            Err(HostKeyError::Malformed(_))
        ));
        let mut long_sig = ed_sig.clone();
        long_sig.push(0);
        assert!(matches!(
            verify_host_signature(HostKeyAlg::Ed25519, &ed.public_blob(), MESSAGE, &long_sig),
            Err(HostKeyError::Malformed(_))
        ));
        // A small RSA key is refused even with a good signature.
        let small = pub_blob(include_str!("testdata/rsa1024_pem.pub"));
        assert_eq!(
            verify_host_signature(HostKeyAlg::RsaSha2_512, &small, MESSAGE, &rsa512),
            Err(HostKeyError::TooSmall { bits: 1024 })
        );
        // A key blob naming its type "rsa-sha2-512" is not canonical.
        let mut renamed = Vec::new();
        "rsa-sha2-512".encode(&mut renamed).unwrap();
        renamed.extend_from_slice(&rsa.public_blob()[4 + 7..]);
        assert!(matches!(
            verify_host_signature(HostKeyAlg::RsaSha2_512, &renamed, MESSAGE, &rsa512),
            Err(HostKeyError::Malformed(_))
        ));
    }

    #[test]
    fn short_rsa_signature_is_padded_like_openssh() {
        // Find a message whose signature starts with a zero byte, strip it,
        // and check the stripped form still verifies (and a lengthened one
        // does not).
        let rsa = HostKey::from_private_key_file(include_bytes!("testdata/rsa2048_pem")).unwrap();
        let public = rsa.public_blob();
        let mut found = false;
        for i in 0u32..4096 {
            let message = i.to_be_bytes();
            let raw = raw_signature(
                &rsa.sign(HostKeyAlg::RsaSha2_256, &message).unwrap(),
                "rsa-sha2-256",
            );
            if raw[0] != 0 {
                continue;
            }
            let mut short = Vec::new();
            "rsa-sha2-256".encode(&mut short).unwrap();
            raw[1..].encode(&mut short).unwrap();
            verify_host_signature(HostKeyAlg::RsaSha2_256, &public, &message, &short).unwrap();
            let mut long = Vec::new();
            "rsa-sha2-256".encode(&mut long).unwrap();
            [&[0u8][..], &raw].concat().encode(&mut long).unwrap();
            assert!(
                verify_host_signature(HostKeyAlg::RsaSha2_256, &public, &message, &long).is_err()
            );
            found = true;
            break;
        }
        assert!(found, "no signature with a leading zero among 4096");
    }

    #[test]
    fn crt_exponent_matches_pkcs1() {
        // The PEM fixture stores dP and dQ; computing them from d, p and q
        // must give the same numbers.
        let pem = Pem::parse(include_str!("testdata/rsa2048_pem")).unwrap();
        let mut outer = Der(&pem.data);
        let mut seq = Der(outer.expect(TAG_SEQUENCE).unwrap());
        let parts: Vec<&[u8]> = (0..9).map(|_| seq.uint().unwrap()).collect();
        let (d, p, q, dp, dq) = (parts[3], parts[4], parts[5], parts[6], parts[7]);
        assert_eq!(crt_exponent(d, p).unwrap().as_slice(), dp);
        assert_eq!(crt_exponent(d, q).unwrap().as_slice(), dq);
        assert!(crt_exponent(d, &[1]).is_none(), "p - 1 = 0");
        assert!(crt_exponent(d, &[0, 1]).is_none(), "p - 1 = 0");
        assert!(crt_exponent(d, &[]).is_none(), "p = 0");
        assert_eq!(crt_exponent(&[7], &[3]).unwrap().as_slice(), [1]);
        assert_eq!(crt_exponent(&[1, 1], &[0x11]).unwrap().as_slice(), [1]);
        assert!(crt_exponent(&[1, 0], &[0x11]).unwrap().is_empty(), "zero");
    }

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80]), 8);
        assert_eq!(bit_length(&[0x7f, 0]), 15);
        let mut n = vec![0xffu8; 256];
        assert_eq!(bit_length(&n), 2048);
        n[0] = 0x7f;
        assert_eq!(bit_length(&n), 2047);
    }

    #[test]
    fn inconsistent_rsa_numbers_are_refused() {
        // Flip a bit of each of d, p, q, dP, dQ, qInv in the PKCS#1 fixture.
        let pem = Pem::parse(include_str!("testdata/rsa2048_pem")).unwrap();
        let mut outer = Der(&pem.data);
        let mut seq = Der(outer.expect(TAG_SEQUENCE).unwrap());
        let parts: Vec<Vec<u8>> = (0..9).map(|_| seq.uint().unwrap().to_vec()).collect();
        let build = |parts: &[Vec<u8>]| {
            rsa_host_key(&RsaParts {
                n: &parts[1],
                e: &parts[2],
                d: &parts[3],
                p: &parts[4],
                q: &parts[5],
                dp: &parts[6],
                dq: &parts[7],
                qinv: &parts[8],
            })
        };
        assert!(build(&parts).is_ok());
        for index in 4..9 {
            let mut broken = parts.clone();
            let last = broken[index].len() - 1;
            broken[index][last] ^= 0x02;
            assert!(build(&broken).is_err(), "part {index}");
        }
    }

    /// The binary body of a fixture's PEM block.
    fn body(f: &Fixture) -> (&'static str, Vec<u8>) {
        let text = core::str::from_utf8(f.private).unwrap();
        let pem = Pem::parse(text).unwrap();
        (pem.label, pem.data.to_vec())
    }

    /// A PEM block around `data`.
    fn wrap(label: &str, data: &[u8]) -> Vec<u8> {
        let b64 = base64ct::Base64::encode_string(data);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes()
    }

    #[test]
    fn every_truncation_of_every_fixture_is_an_error() {
        for f in good().iter().chain(bad().iter()) {
            // The text, cut anywhere before its END line.
            let end = f.private.len() - f.private.iter().rev().position(|&b| b == b'-').unwrap();
            let end_line = f.private[..end]
                .windows(8)
                .rposition(|w| w == b"-----END")
                .unwrap();
            for cut in 0..end_line {
                assert!(HostKey::from_private_key_file(&f.private[..cut]).is_err());
            }
            // The binary body, cut at every length and re-wrapped: this
            // reaches the inner parsers.
            if f.name == "rsa2048_pem_encrypted" {
                continue;
            }
            let (label, data) = body(f);
            for cut in 0..data.len() {
                assert!(
                    HostKey::from_private_key_file(&wrap(label, &data[..cut])).is_err(),
                    "{} cut at {cut}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn every_byte_flip_of_the_binary_bodies_gives_a_value() {
        // Flipping bits of a good key gives either an error or a working
        // key (bits of comments and padding may not matter); never a panic.
        for f in good() {
            let (label, data) = body(&f);
            for i in 0..data.len() {
                let mut flipped = data.clone();
                flipped[i] ^= 0x41;
                // Whatever loads must still make signatures that verify
                // under the public key it reports.
                if let Ok(key) = HostKey::from_private_key_file(&wrap(label, &flipped)) {
                    for &alg in key.algorithms() {
                        let sig = key.sign(alg, MESSAGE).unwrap();
                        verify_host_signature(alg, &key.public_blob(), MESSAGE, &sig)
                            .unwrap_or_else(|e| panic!("{} flip at {i}: {e}", f.name));
                    }
                }
            }
        }
    }

    #[test]
    fn uses_say_which_key_signs() {
        use rand_core::SeedableRng;
        let ed =
            |seed| HostKey::generate_ed25519(&mut rand_chacha::ChaCha20Rng::from_seed([seed; 32]));
        let keys = HostKeys::new(vec![ed(1), ed(2)], vec![ed(3)]).unwrap();
        let uses: Vec<HostKeyUse> = keys.uses().into_iter().map(|(_, u)| u).collect();
        assert_eq!(
            uses,
            [
                HostKeyUse::SignsKeyExchanges,
                HostKeyUse::AnnouncedOnly,
                HostKeyUse::Retiring {
                    signs_key_exchanges: false
                }
            ]
        );
        let signer = keys.signing_key(HostKeyAlg::Ed25519).unwrap();
        assert_eq!(signer.public_blob_ref(), keys.all()[0].public_blob_ref());
        assert!(keys.retiring_signer(HostKeyAlg::Ed25519).is_none());
        assert!(keys.signing_key(HostKeyAlg::RsaSha2_512).is_none());
        // A retiring key alone of its type signs for it.
        let keys = HostKeys::new(vec![], vec![ed(3)]).unwrap();
        assert!(keys.retiring_signer(HostKeyAlg::Ed25519).is_some());
        assert_eq!(
            keys.uses()[0].1,
            HostKeyUse::Retiring {
                signs_key_exchanges: true
            }
        );
        // The same key twice is refused, wherever it appears.
        assert_eq!(
            HostKeys::new(vec![ed(1), ed(2)], vec![ed(1)]).unwrap_err(),
            DuplicateHostKey { first: 0, again: 2 }
        );
        // From a plain list, duplicates are kept once.
        let keys = HostKeys::from(vec![ed(1), ed(1), ed(2)]);
        assert_eq!(keys.all().len(), 2);
        assert!(keys.retiring().is_empty());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = HostKey::from_private_key_file(&input);
        }

        #[test]
        fn random_pem_bodies_never_panic(
            label in prop::sample::select(vec![
                "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY"
            ]),
            data in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            prop_assert!(HostKey::from_private_key_file(&wrap(label, &data)).is_err());
        }

        #[test]
        fn openssh_magic_with_random_tail_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let data = [OPENSSH_MAGIC, &tail].concat();
            let _ = HostKey::from_private_key_file(&wrap("OPENSSH PRIVATE KEY", &data));
        }

        #[test]
        fn random_blobs_never_verify(
            key in proptest::collection::vec(any::<u8>(), 0..600),
            sig in proptest::collection::vec(any::<u8>(), 0..600),
            alg in prop::sample::select(HostKeyAlg::ALL.to_vec()),
        ) {
            prop_assert!(verify_host_signature(alg, &key, MESSAGE, &sig).is_err());
        }

        #[test]
        fn corrupted_signatures_never_verify(
            index in 0usize..(4 + 11 + 4 + 64),
            bit in 0u8..8,
        ) {
            let key = HostKey::from_private_key_file(include_bytes!("testdata/ed25519")).unwrap();
            let mut sig = key.sign(HostKeyAlg::Ed25519, MESSAGE).unwrap();
            sig[index] ^= 1 << bit;
            prop_assert!(
                verify_host_signature(HostKeyAlg::Ed25519, &key.public_blob(), MESSAGE, &sig)
                    .is_err()
            );
        }
    }
}
