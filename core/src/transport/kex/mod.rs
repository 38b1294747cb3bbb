//! Key-exchange primitives (RFC 4253 §7.2 and §8; RFC 8731; the sntrup761 and ML-KEM hybrid drafts), both roles, as pure functions.
//!
//! This module computes; it does not converse. The KEXINIT negotiation and
//! the message flow (`SSH_MSG_KEX_ECDH_INIT` = 30, `SSH_MSG_KEX_ECDH_REPLY` =
//! 31, `NEWKEYS`) live elsewhere and call, per exchange:
//!
//! - the server: [`server_exchange`] on the client's share `Q_C`, giving the
//!   reply share `Q_S` and the shared secret `K`;
//! - the client (our test client, fuzzing, benchmarks): [`ClientKex::start`]
//!   for `Q_C`, then [`ClientKex::finish`] on `Q_S` for `K`;
//! - both: [`exchange_hash`] for `H`, then [`derive_key`] for each of the six
//!   keys.
//!
//! | method | `Q_C` | `Q_S` | `K` |
//! |---|---|---|---|
//! | `mlkem768x25519-sha256` | ML-KEM-768 ek (1184) ‖ X25519 (32) | ML-KEM-768 ct (1088) ‖ X25519 (32) | string SHA-256(k_pq ‖ k_cl) |
//! | `sntrup761x25519-sha512` (and `@openssh.com`) | sntrup761 pk (1158) ‖ X25519 (32) | sntrup761 ct (1039) ‖ X25519 (32) | string SHA-512(k_pq ‖ k_cl) |
//! | `curve25519-sha256` (and `@libssh.org`) | X25519 (32) | X25519 (32) | mpint X25519 output |
//! | `ecdh-sha2-nistp256/384/521` (legacy) | SEC1 point (65/97/133) | SEC1 point | mpint x-coordinate |
//! | `diffie-hellman-group14-sha256`, `-group16-sha512` (legacy) | mpint e | mpint f | mpint g^xy mod p |
//!
//! Every fixed-size share is checked for its exact length, an all-zero
//! X25519 result is refused in every method (RFC 8731 §3; OpenSSH does the
//! same in both hybrids), an ML-KEM encapsulation key must pass the FIPS 203
//! §7.2 modulus check, a NIST point must be on its curve, and a DH value must
//! lie strictly between 1 and p − 1. Peer input never panics: it yields a
//! [`KexError`].
//!
//! The legacy methods are implemented for clients without curve25519 and
//! are not offered by default ([`KexAlg::DEFAULT`]); `--legacy-algorithms`
//! appends [`KexAlg::LEGACY`]. Their shares travel in the same messages
//! (numbers 30 and 31): a DH mpint is encoded exactly as a string of its
//! bytes, so the message layout and the exchange hash are those of RFC 5656
//! §4 for every method.
//!
//! Randomness comes only from the caller's rng, drawn as explicit seeds (an
//! X25519 scalar, then the KEM's seed), so that with a seeded rng an exchange
//! is reproducible. Every secret lives in a zeroizing container.

mod curve25519;
mod dh;
mod ecdh;
mod hash;
mod mlkem;
mod sntrup;

use core::fmt;

use rand_core::CryptoRng;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

pub use hash::{HashAlg, derive_key, exchange_hash};

/// Key-exchange methods we implement, in our order of preference
/// (post-quantum first, the legacy methods last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KexAlg {
    /// `mlkem768x25519-sha256`: ML-KEM-768 and X25519, SHA-256 (draft-ietf-sshm-mlkem-hybrid-kex).
    MlKem768X25519Sha256,
    /// `sntrup761x25519-sha512`: Streamlined NTRU Prime 761 and X25519, SHA-512.
    Sntrup761X25519Sha512,
    /// `sntrup761x25519-sha512@openssh.com`: OpenSSH's name for the same method.
    Sntrup761X25519Sha512OpenSsh,
    /// `curve25519-sha256`: X25519, SHA-256 (RFC 8731).
    Curve25519Sha256,
    /// `curve25519-sha256@libssh.org`: the pre-RFC name for the same method.
    Curve25519Sha256LibSsh,
    /// `ecdh-sha2-nistp256` (RFC 5656): legacy, for clients without curve25519.
    EcdhNistp256,
    /// `ecdh-sha2-nistp384` (RFC 5656): legacy.
    EcdhNistp384,
    /// `ecdh-sha2-nistp521` (RFC 5656): legacy.
    EcdhNistp521,
    /// `diffie-hellman-group16-sha512` (RFC 8268): legacy.
    DhGroup16Sha512,
    /// `diffie-hellman-group14-sha256` (RFC 8268): legacy.
    DhGroup14Sha256,
}

impl KexAlg {
    /// Every method we implement, in our order of preference.
    pub const ALL: [KexAlg; 10] = [
        KexAlg::MlKem768X25519Sha256,
        KexAlg::Sntrup761X25519Sha512,
        KexAlg::Sntrup761X25519Sha512OpenSsh,
        KexAlg::Curve25519Sha256,
        KexAlg::Curve25519Sha256LibSsh,
        KexAlg::EcdhNistp256,
        KexAlg::EcdhNistp384,
        KexAlg::EcdhNistp521,
        KexAlg::DhGroup16Sha512,
        KexAlg::DhGroup14Sha256,
    ];

    /// The methods offered by default: post-quantum first, curve25519 as the
    /// classical fallback.
    pub const DEFAULT: [KexAlg; 5] = [
        KexAlg::MlKem768X25519Sha256,
        KexAlg::Sntrup761X25519Sha512,
        KexAlg::Sntrup761X25519Sha512OpenSsh,
        KexAlg::Curve25519Sha256,
        KexAlg::Curve25519Sha256LibSsh,
    ];

    /// What `--legacy-algorithms` appends to the default, in OpenSSH's order.
    pub const LEGACY: [KexAlg; 5] = [
        KexAlg::EcdhNistp256,
        KexAlg::EcdhNistp384,
        KexAlg::EcdhNistp521,
        KexAlg::DhGroup16Sha512,
        KexAlg::DhGroup14Sha256,
    ];

    /// The method's name as it appears in KEXINIT.
    pub fn name(self) -> &'static str {
        match self {
            KexAlg::MlKem768X25519Sha256 => "mlkem768x25519-sha256",
            KexAlg::Sntrup761X25519Sha512 => "sntrup761x25519-sha512",
            KexAlg::Sntrup761X25519Sha512OpenSsh => "sntrup761x25519-sha512@openssh.com",
            KexAlg::Curve25519Sha256 => "curve25519-sha256",
            KexAlg::Curve25519Sha256LibSsh => "curve25519-sha256@libssh.org",
            KexAlg::EcdhNistp256 => "ecdh-sha2-nistp256",
            KexAlg::EcdhNistp384 => "ecdh-sha2-nistp384",
            KexAlg::EcdhNistp521 => "ecdh-sha2-nistp521",
            KexAlg::DhGroup16Sha512 => "diffie-hellman-group16-sha512",
            KexAlg::DhGroup14Sha256 => "diffie-hellman-group14-sha256",
        }
    }

    /// The method named `name` (exact, case-sensitive match), if we implement it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The hash used for the exchange hash, key derivation and (for the
    /// hybrids) combining the two shared secrets.
    pub fn hash(self) -> HashAlg {
        match self {
            KexAlg::MlKem768X25519Sha256
            | KexAlg::Curve25519Sha256
            | KexAlg::Curve25519Sha256LibSsh
            | KexAlg::EcdhNistp256
            | KexAlg::DhGroup14Sha256 => HashAlg::Sha256,
            KexAlg::EcdhNistp384 => HashAlg::Sha384,
            KexAlg::Sntrup761X25519Sha512
            | KexAlg::Sntrup761X25519Sha512OpenSsh
            | KexAlg::EcdhNistp521
            | KexAlg::DhGroup16Sha512 => HashAlg::Sha512,
        }
    }

    /// The exact length of the client's share `Q_C` for this method; `None`
    /// for finite-field DH, whose share is an mpint of varying length,
    /// checked by value.
    pub fn client_share_len(self) -> Option<usize> {
        match self {
            KexAlg::MlKem768X25519Sha256 => Some(mlkem::CLIENT_SHARE_LEN),
            KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
                Some(sntrup::CLIENT_SHARE_LEN)
            }
            _ => self.symmetric_share_len(),
        }
    }

    /// The exact length of the server's share `Q_S` for this method; `None`
    /// for finite-field DH.
    pub fn server_share_len(self) -> Option<usize> {
        match self {
            KexAlg::MlKem768X25519Sha256 => Some(mlkem::SERVER_SHARE_LEN),
            KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
                Some(sntrup::SERVER_SHARE_LEN)
            }
            _ => self.symmetric_share_len(),
        }
    }

    /// The share length of the methods whose two shares have one length.
    fn symmetric_share_len(self) -> Option<usize> {
        match self {
            KexAlg::Curve25519Sha256 | KexAlg::Curve25519Sha256LibSsh => {
                Some(curve25519::SHARE_LEN)
            }
            KexAlg::EcdhNistp256 => Some(ecdh::Curve::P256.share_len()),
            KexAlg::EcdhNistp384 => Some(ecdh::Curve::P384.share_len()),
            KexAlg::EcdhNistp521 => Some(ecdh::Curve::P521.share_len()),
            _ => None,
        }
    }

    /// Whether this is one of [`KexAlg::LEGACY`].
    pub fn is_legacy(self) -> bool {
        Self::LEGACY.contains(&self)
    }
}

impl fmt::Display for KexAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shared secret `K`, already in the encoding in which it enters the
/// exchange hash and key derivation: an mpint for curve25519-sha256 (RFC 8731
/// §3), a string for the two hybrids. Zeroized on drop; `Debug` never prints it.
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// `K` as it enters the exchange hash and key derivation, length prefix included.
    pub fn encoded(&self) -> &[u8] {
        &self.0
    }

    /// `magnitude` (big-endian, unsigned) as an SSH mpint (RFC 4251 §5):
    /// leading zero bytes stripped, one zero byte added back if the top bit
    /// is set, so that the value reads as positive.
    fn mpint(magnitude: &[u8]) -> Self {
        let start = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let digits = &magnitude[start..];
        let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
        let len = digits.len() + usize::from(pad);
        // Capacity fixed up front: a reallocation would leave a copy of K in
        // freed memory that Zeroizing never sees.
        let mut out = Zeroizing::new(Vec::with_capacity(4 + len));
        out.extend_from_slice(&length_prefix(len));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(digits);
        SharedSecret(out)
    }

    /// The hybrids' `K`: string HASH(KEM secret ‖ X25519 secret), KEM
    /// first (sntrup761x25519 with SHA-512, mlkem768x25519 with SHA-256).
    fn hybrid<D: sha2::Digest>(kem_secret: &[u8], ecdh: &[u8]) -> Self {
        use zeroize::Zeroize;
        let mut digest = D::new()
            .chain_update(kem_secret)
            .chain_update(ecdh)
            .finalize();
        let k = Self::string(&digest);
        digest.as_mut_slice().zeroize();
        k
    }

    /// `bytes` as an SSH string (RFC 4251 §5): u32 length, then the bytes.
    fn string(bytes: &[u8]) -> Self {
        let mut out = Zeroizing::new(Vec::with_capacity(4 + bytes.len()));
        out.extend_from_slice(&length_prefix(bytes.len()));
        out.extend_from_slice(bytes);
        SharedSecret(out)
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// The u32 length prefix of an SSH string. Everything hashed here comes from
/// packets capped far below 4 GiB; a longer input would only give a wrong
/// (never a panicking) result.
fn length_prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Why a key exchange failed. Every variant is the peer's fault and ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexError {
    /// The peer's share (`Q_C` or `Q_S`) does not have the method's exact length.
    BadShareLength,
    /// The X25519 result is all zeros: the peer sent a low-order point (RFC 8731 §3).
    NonContributory,
    /// The share has the right length but holds an invalid key: an ML-KEM-768
    /// encapsulation key failing the FIPS 203 §7.2 modulus check.
    InvalidShare,
}

impl fmt::Display for KexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KexError::BadShareLength => "key exchange share has the wrong length",
            KexError::NonContributory => "X25519 shared secret is all zeros (low-order point)",
            KexError::InvalidShare => "key exchange share is not a valid public key",
        })
    }
}

impl core::error::Error for KexError {}

/// Server side: given the client's ephemeral share `Q_C` (the string in
/// `KEX_ECDH_INIT`), returns our reply share `Q_S` (the string for
/// `KEX_ECDH_REPLY`) and `K`.
///
/// The share's length is checked before any randomness is drawn or any
/// cryptography is done.
pub fn server_exchange(
    alg: KexAlg,
    client_share: &[u8],
    rng: &mut dyn CryptoRng,
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    if alg
        .client_share_len()
        .is_some_and(|len| client_share.len() != len)
    {
        return Err(KexError::BadShareLength);
    }
    match alg {
        KexAlg::MlKem768X25519Sha256 => {
            let x25519 = StaticSecret::random_from_rng(&mut *rng);
            let mut m = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(m.as_mut());
            mlkem::server(client_share, &x25519, &m)
        }
        KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
            let x25519 = StaticSecret::random_from_rng(&mut *rng);
            let mut seed = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(seed.as_mut());
            sntrup::server(client_share, &x25519, &seed)
        }
        KexAlg::Curve25519Sha256 | KexAlg::Curve25519Sha256LibSsh => {
            curve25519::server(client_share, &StaticSecret::random_from_rng(rng))
        }
        KexAlg::EcdhNistp256 => ecdh::server(ecdh::Curve::P256, client_share, rng),
        KexAlg::EcdhNistp384 => ecdh::server(ecdh::Curve::P384, client_share, rng),
        KexAlg::EcdhNistp521 => ecdh::server(ecdh::Curve::P521, client_share, rng),
        KexAlg::DhGroup14Sha256 => dh::server(dh::Group::Group14, client_share, rng),
        KexAlg::DhGroup16Sha512 => dh::server(dh::Group::Group16, client_share, rng),
    }
}

/// Client side of one key exchange: the ephemeral secrets between sending
/// `Q_C` and receiving `Q_S` (used by our own test client, fuzzing and
/// benchmarks). Every secret in it is zeroized on drop.
pub struct ClientKex {
    alg: KexAlg,
    state: ClientState,
}

/// The per-method ephemeral secrets of a [`ClientKex`].
enum ClientState {
    MlKem(mlkem::Client),
    Sntrup(sntrup::Client),
    Curve25519(StaticSecret),
    Ecdh(ecdh::Client),
    Dh(dh::Client),
}

impl ClientKex {
    /// Draws ephemeral secrets for `alg` and returns them with our share `Q_C`
    /// (the string for `KEX_ECDH_INIT`).
    pub fn start(alg: KexAlg, rng: &mut dyn CryptoRng) -> (ClientKex, Vec<u8>) {
        let (state, share) = match alg {
            KexAlg::MlKem768X25519Sha256 => {
                let x25519 = StaticSecret::random_from_rng(&mut *rng);
                let mut seed = Zeroizing::new([0u8; 64]);
                rng.fill_bytes(seed.as_mut());
                let (client, share) = mlkem::Client::start(x25519, &seed);
                (ClientState::MlKem(client), share)
            }
            KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
                let x25519 = StaticSecret::random_from_rng(&mut *rng);
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(seed.as_mut());
                let (client, share) = sntrup::Client::start(x25519, &seed);
                (ClientState::Sntrup(client), share)
            }
            KexAlg::Curve25519Sha256 | KexAlg::Curve25519Sha256LibSsh => {
                let x25519 = StaticSecret::random_from_rng(rng);
                let share = curve25519::public_bytes(&x25519).to_vec();
                (ClientState::Curve25519(x25519), share)
            }
            KexAlg::EcdhNistp256 | KexAlg::EcdhNistp384 | KexAlg::EcdhNistp521 => {
                let curve = match alg {
                    KexAlg::EcdhNistp256 => ecdh::Curve::P256,
                    KexAlg::EcdhNistp384 => ecdh::Curve::P384,
                    _ => ecdh::Curve::P521,
                };
                let (client, share) = ecdh::Client::start(curve, rng);
                (ClientState::Ecdh(client), share)
            }
            KexAlg::DhGroup14Sha256 | KexAlg::DhGroup16Sha512 => {
                let group = if alg == KexAlg::DhGroup14Sha256 {
                    dh::Group::Group14
                } else {
                    dh::Group::Group16
                };
                let (client, share) = dh::Client::start(group, rng);
                (ClientState::Dh(client), share)
            }
        };
        (ClientKex { alg, state }, share)
    }

    /// The method this exchange runs.
    pub fn alg(&self) -> KexAlg {
        self.alg
    }

    /// Given the server's share `Q_S` (the string in `KEX_ECDH_REPLY`), returns `K`.
    pub fn finish(self, server_share: &[u8]) -> Result<SharedSecret, KexError> {
        if self
            .alg
            .server_share_len()
            .is_some_and(|len| server_share.len() != len)
        {
            return Err(KexError::BadShareLength);
        }
        match &self.state {
            ClientState::MlKem(client) => client.finish(server_share),
            ClientState::Sntrup(client) => client.finish(server_share),
            ClientState::Curve25519(x25519) => curve25519::client_finish(x25519, server_share),
            ClientState::Ecdh(client) => client.finish(server_share),
            ClientState::Dh(client) => client.finish(server_share),
        }
    }
}

impl fmt::Debug for ClientKex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKex")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the kex tests.

    /// Decodes hex (either case, whitespace ignored); panics on bad input, tests only.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => panic!("not hex: {b:#x}"),
            })
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
    }

    /// X25519 u-coordinates whose product with any clamped scalar is the
    /// identity: 0, 1, the two points of order 8, p-1 (order 2), p and p+1
    /// (non-canonical 0 and 1), and two with the ignored top bit set.
    pub(crate) const LOW_ORDER_POINTS: [&str; 9] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000080",
    ];

    /// A field of the legacy methods' known answers
    /// (`testdata/legacy_kex_vectors.txt`, made by the script beside it).
    pub(crate) fn legacy_vector(method: &str, field: &str) -> Vec<u8> {
        const VECTORS: &str = include_str!("testdata/legacy_kex_vectors.txt");
        VECTORS
            .lines()
            .find_map(|line| {
                let mut words = line.split(' ');
                (words.next() == Some(method) && words.next() == Some(field))
                    .then(|| hex(words.next().unwrap_or_default()))
            })
            .unwrap_or_else(|| panic!("no vector {method} {field}"))
    }

    /// [`hex`] into a fixed-size array; panics on a wrong length, tests only.
    pub(crate) fn hex_array<const N: usize>(s: &str) -> [u8; N] {
        match hex(s).try_into() {
            Ok(array) => array,
            Err(v) => panic!("expected {N} bytes, got {}", Vec::len(&v)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::test_util::{LOW_ORDER_POINTS, hex};
    use super::*;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    /// Runs a whole exchange with a seeded rng per side.
    fn exchange(alg: KexAlg, client_seed: u64, server_seed: u64) -> (Vec<u8>, Vec<u8>) {
        let (client, q_c) = ClientKex::start(alg, &mut rng(client_seed));
        let (q_s, k_server) = server_exchange(alg, &q_c, &mut rng(server_seed)).unwrap();
        let k_client = client.finish(&q_s).unwrap();
        if let Some(len) = alg.client_share_len() {
            assert_eq!(q_c.len(), len);
        }
        if let Some(len) = alg.server_share_len() {
            assert_eq!(q_s.len(), len);
        }
        (k_client.encoded().to_vec(), k_server.encoded().to_vec())
    }

    #[test]
    fn names_round_trip_in_preference_order() {
        let names: Vec<&str> = KexAlg::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "mlkem768x25519-sha256",
                "sntrup761x25519-sha512",
                "sntrup761x25519-sha512@openssh.com",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org",
                "ecdh-sha2-nistp256",
                "ecdh-sha2-nistp384",
                "ecdh-sha2-nistp521",
                "diffie-hellman-group16-sha512",
                "diffie-hellman-group14-sha256",
            ]
        );
        // The default and the legacy methods split the list between them.
        assert_eq!([KexAlg::DEFAULT, KexAlg::LEGACY].concat(), KexAlg::ALL);
        for alg in KexAlg::ALL {
            assert_eq!(alg.is_legacy(), !KexAlg::DEFAULT.contains(&alg), "{alg}");
        }
        for alg in KexAlg::ALL {
            assert_eq!(KexAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        for unknown in [
            "",
            "curve25519-sha256 ",
            "CURVE25519-SHA256",
            "diffie-hellman-group14-sha1",
            "diffie-hellman-group1-sha1",
            "diffie-hellman-group-exchange-sha256",
            "ecdh-sha2-nistp224",
            "mlkem768x25519-sha256@openssh.com",
            "sntrup761x25519-sha512@openssh.co",
        ] {
            assert_eq!(KexAlg::from_name(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn hash_per_method() {
        use HashAlg::*;
        let hashes: Vec<HashAlg> = KexAlg::ALL.iter().map(|a| a.hash()).collect();
        assert_eq!(
            hashes,
            [
                Sha256, Sha512, Sha512, Sha256, Sha256, Sha256, Sha384, Sha512, Sha512, Sha256
            ]
        );
        assert_eq!(Sha256.output_len(), 32);
        assert_eq!(Sha512.output_len(), 64);
    }

    #[test]
    fn share_lengths_per_method() {
        let lens: Vec<(Option<usize>, Option<usize>)> = KexAlg::ALL
            .iter()
            .map(|a| (a.client_share_len(), a.server_share_len()))
            .collect();
        assert_eq!(
            lens,
            [
                (Some(1184 + 32), Some(1088 + 32)),
                (Some(1158 + 32), Some(1039 + 32)),
                (Some(1158 + 32), Some(1039 + 32)),
                (Some(32), Some(32)),
                (Some(32), Some(32)),
                (Some(65), Some(65)),
                (Some(97), Some(97)),
                (Some(133), Some(133)),
                (None, None),
                (None, None),
            ]
        );
    }

    #[test]
    fn mpint_encoding_rfc4251() {
        // RFC 4251 §5's own examples, then the cases that matter for K.
        let cases: [(&[u8], &str); 6] = [
            (&[], "00000000"),
            (&[0, 0, 0], "00000000"),
            (
                &[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
                "0000000809a378f9b2e332a7",
            ),
            (&[0x80], "000000020080"),
            (&[0x00, 0x00, 0x7f, 0x01], "000000027f01"),
            (&[0x00, 0xff, 0x01], "0000000300ff01"),
        ];
        for (magnitude, expected) in cases {
            assert_eq!(
                SharedSecret::mpint(magnitude).encoded(),
                hex(expected),
                "{magnitude:02x?}"
            );
        }
    }

    #[test]
    fn string_encoding() {
        assert_eq!(SharedSecret::string(&[]).encoded(), [0, 0, 0, 0]);
        assert_eq!(
            SharedSecret::string(&[0, 0x80, 1]).encoded(),
            [0, 0, 0, 3, 0, 0x80, 1]
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let k = SharedSecret::string(&[0xab; 32]);
        let printed = format!("{k:?}");
        assert!(
            !printed.contains("ab") && !printed.contains("171"),
            "{printed}"
        );
        for alg in KexAlg::ALL {
            let (client, _) = ClientKex::start(alg, &mut rng(1));
            let printed = format!("{client:?}");
            assert!(printed.contains(&format!("{alg:?}")), "{printed}");
            assert!(!printed.contains("[") && printed.len() < 80, "{printed}");
        }
    }

    #[test]
    fn errors_display() {
        for e in [
            KexError::BadShareLength,
            KexError::NonContributory,
            KexError::InvalidShare,
        ] {
            assert!(!e.to_string().is_empty());
            let _: &dyn core::error::Error = &e;
        }
    }

    #[test]
    fn k_encoding_per_method() {
        for alg in KexAlg::ALL {
            let (k, _) = exchange(alg, 7, 8);
            match alg {
                KexAlg::MlKem768X25519Sha256 => {
                    assert_eq!(k[..4], [0, 0, 0, 32]);
                    assert_eq!(k.len(), 4 + 32);
                }
                KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
                    assert_eq!(k[..4], [0, 0, 0, 64]);
                    assert_eq!(k.len(), 4 + 64);
                }
                KexAlg::Curve25519Sha256
                | KexAlg::Curve25519Sha256LibSsh
                | KexAlg::EcdhNistp256
                | KexAlg::EcdhNistp384
                | KexAlg::EcdhNistp521
                | KexAlg::DhGroup14Sha256
                | KexAlg::DhGroup16Sha512 => {
                    let len = u32::from_be_bytes(k[..4].try_into().unwrap()) as usize;
                    assert_eq!(k.len(), 4 + len);
                    let field = match alg {
                        KexAlg::EcdhNistp256 => 32,
                        KexAlg::EcdhNistp384 => 48,
                        KexAlg::EcdhNistp521 => 66,
                        KexAlg::DhGroup14Sha256 => 256,
                        KexAlg::DhGroup16Sha512 => 512,
                        _ => 32,
                    };
                    assert!((1..=field + 1).contains(&len), "{alg}");
                    // A canonical positive mpint: no redundant leading zero,
                    // and a zero byte exactly when the next has its top bit set.
                    if k[4] == 0 {
                        assert!(len > 1 && k[5] & 0x80 != 0, "{alg}");
                    }
                    assert_eq!(k[4] & 0x80, 0);
                }
            }
        }
    }

    #[test]
    fn aliases_are_the_same_method() {
        // Same rng stream, same bytes: the names differ, the computation not.
        for (a, b) in [
            (
                KexAlg::Sntrup761X25519Sha512,
                KexAlg::Sntrup761X25519Sha512OpenSsh,
            ),
            (KexAlg::Curve25519Sha256, KexAlg::Curve25519Sha256LibSsh),
        ] {
            let (_, q_c_a) = ClientKex::start(a, &mut rng(3));
            let (_, q_c_b) = ClientKex::start(b, &mut rng(3));
            assert_eq!(q_c_a, q_c_b);
            let (q_s_a, k_a) = server_exchange(a, &q_c_a, &mut rng(4)).unwrap();
            let (q_s_b, k_b) = server_exchange(b, &q_c_a, &mut rng(4)).unwrap();
            assert_eq!(q_s_a, q_s_b);
            assert_eq!(k_a.encoded(), k_b.encoded());
        }
    }

    #[test]
    fn seeded_exchanges_are_reproducible_and_distinct() {
        for alg in KexAlg::ALL {
            let (k1, _) = exchange(alg, 10, 20);
            let (k2, _) = exchange(alg, 10, 20);
            let (k3, _) = exchange(alg, 10, 21);
            let (k4, _) = exchange(alg, 11, 20);
            assert_eq!(k1, k2, "{alg}");
            assert_ne!(k1, k3, "{alg}");
            assert_ne!(k1, k4, "{alg}");
        }
    }

    /// Every method with fixed-length shares (finite-field DH checks its
    /// shares by value: dh.rs).
    fn fixed_length_methods() -> impl Iterator<Item = KexAlg> {
        KexAlg::ALL
            .into_iter()
            .filter(|alg| alg.client_share_len().is_some())
    }

    #[test]
    fn wrong_lengths_refused_both_roles() {
        assert_eq!(fixed_length_methods().count(), 8);
        for alg in fixed_length_methods() {
            let (client, q_c) = ClientKex::start(alg, &mut rng(5));
            let (q_s, _) = server_exchange(alg, &q_c, &mut rng(6)).unwrap();
            for len in [0, 1, 31, 32, 33, q_c.len() - 1, q_c.len() + 1, 4096] {
                if Some(len) == alg.client_share_len() {
                    continue;
                }
                let mut share = q_c.clone();
                share.resize(len, 0x42);
                assert_eq!(
                    server_exchange(alg, &share, &mut rng(6)).unwrap_err(),
                    KexError::BadShareLength,
                    "{alg} client share of {len}"
                );
            }
            for len in [0, 1, 31, 32, 33, q_s.len() - 1, q_s.len() + 1, 4096] {
                if Some(len) == alg.server_share_len() {
                    continue;
                }
                let (client, _) = ClientKex::start(alg, &mut rng(5));
                let mut share = q_s.clone();
                share.resize(len, 0x42);
                assert_eq!(
                    client.finish(&share).unwrap_err(),
                    KexError::BadShareLength,
                    "{alg} server share of {len}"
                );
            }
            // The unmodified shares still agree (the loop above did not test a
            // vacuous refusal).
            let (q_s, k_server) = server_exchange(alg, &q_c, &mut rng(6)).unwrap();
            assert_eq!(client.finish(&q_s).unwrap().encoded(), k_server.encoded());
        }
    }

    #[test]
    fn low_order_x25519_refused_in_every_method_both_roles() {
        // Every method with an X25519 half: all the default ones.
        for alg in KexAlg::DEFAULT {
            let (_, q_c) = ClientKex::start(alg, &mut rng(9));
            let (q_s, _) = server_exchange(alg, &q_c, &mut rng(10)).unwrap();
            for point in LOW_ORDER_POINTS {
                // The X25519 public value is the last 32 bytes in every method.
                let mut bad_q_c = q_c.clone();
                let at = bad_q_c.len() - 32;
                bad_q_c[at..].copy_from_slice(&hex(point));
                assert_eq!(
                    server_exchange(alg, &bad_q_c, &mut rng(10)).unwrap_err(),
                    KexError::NonContributory,
                    "{alg} server, point {point}"
                );
                let mut bad_q_s = q_s.clone();
                let at = bad_q_s.len() - 32;
                bad_q_s[at..].copy_from_slice(&hex(point));
                let (client, _) = ClientKex::start(alg, &mut rng(9));
                assert_eq!(
                    client.finish(&bad_q_s).unwrap_err(),
                    KexError::NonContributory,
                    "{alg} client, point {point}"
                );
            }
        }
    }

    /// Shares of random length, and of the exact length (or, for DH, of
    /// about the modulus's length) with random content.
    fn share_for(len: Option<usize>) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1300),
            prop::collection::vec(any::<u8>(), len.unwrap_or(256)),
            prop::collection::vec(any::<u8>(), len.map_or(510..514, |l| l..l + 1)),
        ]
    }

    fn any_alg() -> impl Strategy<Value = KexAlg> {
        prop::sample::select(KexAlg::ALL.to_vec())
    }

    proptest! {
        // Each case runs all ten methods; sntrup761 key generation dominates.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn client_and_server_agree(c in any::<u64>(), s in any::<u64>()) {
            for alg in KexAlg::ALL {
                let (k_client, k_server) = exchange(alg, c, s);
                prop_assert_eq!(k_client, k_server, "{}", alg);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn server_never_panics(
            (alg, share) in any_alg().prop_flat_map(|a| (Just(a), share_for(a.client_share_len()))),
            seed in any::<u64>(),
        ) {
            match (server_exchange(alg, &share, &mut rng(seed)), alg.client_share_len()) {
                (Ok((q_s, _)), Some(len)) => {
                    prop_assert_eq!(share.len(), len);
                    prop_assert_eq!(Some(q_s.len()), alg.server_share_len());
                }
                (Ok(_), None) => prop_assert!(share.len() <= 513),
                (Err(KexError::BadShareLength), Some(len)) => prop_assert_ne!(share.len(), len),
                (Err(KexError::BadShareLength), None) => prop_assert!(share.len() > 257),
                (Err(_), Some(len)) => prop_assert_eq!(share.len(), len),
                (Err(_), None) => {}
            }
        }

        #[test]
        fn client_never_panics(
            (alg, share) in any_alg().prop_flat_map(|a| (Just(a), share_for(a.server_share_len()))),
            seed in any::<u64>(),
        ) {
            let (client, _) = ClientKex::start(alg, &mut rng(seed));
            match (client.finish(&share), alg.server_share_len()) {
                (Ok(k), _) => prop_assert!(k.encoded().len() > 4),
                (Err(KexError::BadShareLength), Some(len)) => prop_assert_ne!(share.len(), len),
                (Err(KexError::BadShareLength), None) => prop_assert!(share.len() > 257),
                (Err(_), Some(len)) => prop_assert_eq!(share.len(), len),
                (Err(_), None) => {}
            }
        }

        #[test]
        fn mpint_matches_ssh_encoding(magnitude in prop::collection::vec(any::<u8>(), 0..40)) {
            // An independent encoder: ssh-encoding's Mpint.
            use ssh_encoding::Encode;
            let theirs = ssh_encoding::Mpint::from_positive_bytes(&magnitude).encode_vec().unwrap();
            let ours = SharedSecret::mpint(&magnitude);
            prop_assert_eq!(ours.encoded(), &theirs[..]);
        }
    }
}
