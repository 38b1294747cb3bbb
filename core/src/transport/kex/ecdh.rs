//! ecdh-sha2-nistp256, -nistp384 and -nistp521 (RFC 5656 §4, §6.2.1).
//!
//! `Q_C` and `Q_S` are ephemeral public points in SEC1 uncompressed form
//! (`04 || x || y`); `K` is the x-coordinate of the shared point, read as a
//! big-endian integer and encoded as an mpint. Only uncompressed points are
//! taken, as OpenSSH takes them; a point not on the curve (or the identity)
//! is refused before any secret is used with it (RFC 5656 §4: "MUST verify").
//!
//! Offered only with `--legacy-algorithms` (or when named in
//! `--kex-algorithms`): clients that have no curve25519, JSch 0.1.x first.

use p256::elliptic_curve::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::{FromSec1Point, ModulusSize, ToSec1Point};
use p256::elliptic_curve::{
    AffinePoint, CurveArithmetic, FieldBytesSize, Generate, PublicKey, SecretKey,
};
use rand_core::CryptoRng;

use super::{KexError, SharedSecret};

/// The three NIST curves of RFC 5656.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Curve {
    /// P-256 (secp256r1), with SHA-256.
    P256,
    /// P-384 (secp384r1), with SHA-384.
    P384,
    /// P-521 (secp521r1), with SHA-512.
    P521,
}

impl Curve {
    /// Length of a share: the uncompressed point, `1 + 2 * field bytes`.
    pub(super) const fn share_len(self) -> usize {
        match self {
            Curve::P256 => 1 + 2 * 32,
            Curve::P384 => 1 + 2 * 48,
            Curve::P521 => 1 + 2 * 66,
        }
    }
}

/// A client's ephemeral secret on one of the curves (zeroized on drop by
/// the elliptic-curve crates).
pub(super) enum Client {
    P256(SecretKey<p256::NistP256>),
    P384(SecretKey<p384::NistP384>),
    P521(SecretKey<p521::NistP521>),
}

impl Client {
    /// A fresh secret from `rng`, and our share.
    pub(super) fn start(curve: Curve, rng: &mut dyn CryptoRng) -> (Client, Vec<u8>) {
        match curve {
            Curve::P256 => {
                let secret = SecretKey::generate_from_rng(rng);
                let share = point(&secret.public_key());
                (Client::P256(secret), share)
            }
            Curve::P384 => {
                let secret = SecretKey::generate_from_rng(rng);
                let share = point(&secret.public_key());
                (Client::P384(secret), share)
            }
            Curve::P521 => {
                let secret = SecretKey::generate_from_rng(rng);
                let share = point(&secret.public_key());
                (Client::P521(secret), share)
            }
        }
    }

    /// `K` from our secret and the server's share.
    pub(super) fn finish(&self, server_share: &[u8]) -> Result<SharedSecret, KexError> {
        match self {
            Client::P256(secret) => agree(Curve::P256, secret, server_share),
            Client::P384(secret) => agree(Curve::P384, secret, server_share),
            Client::P521(secret) => agree(Curve::P521, secret, server_share),
        }
    }
}

/// Server side: a fresh secret from `rng`, our share `Q_S`, and `K`. The
/// client's share is checked before the secret is drawn.
pub(super) fn server(
    curve: Curve,
    client_share: &[u8],
    rng: &mut dyn CryptoRng,
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    match curve {
        Curve::P256 => {
            server_on::<p256::NistP256>(curve, client_share, || SecretKey::generate_from_rng(rng))
        }
        Curve::P384 => {
            server_on::<p384::NistP384>(curve, client_share, || SecretKey::generate_from_rng(rng))
        }
        Curve::P521 => {
            server_on::<p521::NistP521>(curve, client_share, || SecretKey::generate_from_rng(rng))
        }
    }
}

/// The server's exchange on curve `C` with the secret `secret` returns
/// (drawn only after the client's point has been checked).
fn server_on<C>(
    curve: Curve,
    client_share: &[u8],
    secret: impl FnOnce() -> SecretKey<C>,
) -> Result<(Vec<u8>, SharedSecret), KexError>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
{
    let peer = parse_point::<C>(curve, client_share)?;
    let secret = secret();
    let k = shared(&secret, &peer);
    Ok((point(&secret.public_key()), k))
}

/// `K` from our secret and the peer's share.
fn agree<C>(curve: Curve, secret: &SecretKey<C>, peer: &[u8]) -> Result<SharedSecret, KexError>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
{
    let peer = parse_point::<C>(curve, peer)?;
    Ok(shared(secret, &peer))
}

/// The x-coordinate of `secret · peer` as an mpint (the elliptic-curve
/// crate's shared secret is zeroized on drop).
fn shared<C>(secret: &SecretKey<C>, peer: &PublicKey<C>) -> SharedSecret
where
    C: CurveArithmetic,
{
    let x = diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    SharedSecret::mpint(x.raw_secret_bytes())
}

/// A peer's share as a point of `curve` (which is `C`): exactly the
/// uncompressed length, tag 4, on the curve and not the identity.
fn parse_point<C>(curve: Curve, share: &[u8]) -> Result<PublicKey<C>, KexError>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
{
    if share.len() != curve.share_len() {
        return Err(KexError::BadShareLength);
    }
    if share[0] != 0x04 {
        return Err(KexError::InvalidShare);
    }
    PublicKey::<C>::from_sec1_bytes(share).map_err(|_| KexError::InvalidShare)
}

/// Our public point in uncompressed form.
fn point<C>(public: &PublicKey<C>) -> Vec<u8>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
{
    public.to_sec1_point(false).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand_core::SeedableRng;

    use super::super::test_util::legacy_vector;
    use super::*;

    fn server_with(curve: Curve, client_share: &[u8], secret: &[u8]) -> (Vec<u8>, SharedSecret) {
        match curve {
            Curve::P256 => server_on::<p256::NistP256>(curve, client_share, || {
                SecretKey::from_slice(secret).unwrap()
            }),
            Curve::P384 => server_on::<p384::NistP384>(curve, client_share, || {
                SecretKey::from_slice(secret).unwrap()
            }),
            Curve::P521 => server_on::<p521::NistP521>(curve, client_share, || {
                SecretKey::from_slice(secret).unwrap()
            }),
        }
        .unwrap()
    }

    fn client_with(curve: Curve, secret: &[u8]) -> Client {
        match curve {
            Curve::P256 => Client::P256(SecretKey::from_slice(secret).unwrap()),
            Curve::P384 => Client::P384(SecretKey::from_slice(secret).unwrap()),
            Curve::P521 => Client::P521(SecretKey::from_slice(secret).unwrap()),
        }
    }

    const CURVES: [(Curve, &str); 3] = [
        (Curve::P256, "ecdh-sha2-nistp256"),
        (Curve::P384, "ecdh-sha2-nistp384"),
        (Curve::P521, "ecdh-sha2-nistp521"),
    ];

    /// Both roles against OpenSSL's answers (testdata/legacy_kex_vectors.py).
    #[test]
    fn openssl_known_answers_both_roles() {
        for (curve, method) in CURVES {
            let v = |field| legacy_vector(method, field);
            let (q_s, k) = server_with(curve, &v("client_share"), &v("server_secret"));
            assert_eq!(q_s, v("server_share"), "{method}");
            assert_eq!(q_s.len(), curve.share_len());
            assert_eq!(k.encoded(), v("k"), "{method}");

            let client = client_with(curve, &v("client_secret"));
            assert_eq!(client.finish(&v("server_share")).unwrap().encoded(), v("k"));
            let our_share = match &client {
                Client::P256(s) => point(&s.public_key()),
                Client::P384(s) => point(&s.public_key()),
                Client::P521(s) => point(&s.public_key()),
            };
            assert_eq!(our_share, v("client_share"), "{method}");
        }
    }

    /// Off-curve points, the wrong tag (compressed, hybrid, infinity) and
    /// a coordinate not below the field prime are refused; so is every
    /// length but the exact one.
    #[test]
    fn bad_points_refused() {
        for (curve, method) in CURVES {
            let good = legacy_vector(method, "client_share");
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
            assert!(server(curve, &good, &mut rng).is_ok());

            let mut off_curve = good.clone();
            let last = off_curve.len() - 1;
            off_curve[last] ^= 1;
            let mut wrong_tag = good.clone();
            let field = (good.len() - 1) / 2;
            let mut compressed = vec![0x02 | (good[last] & 1)];
            compressed.extend_from_slice(&good[1..=field]);
            let mut all_ones = vec![0x04];
            all_ones.extend(std::iter::repeat_n(0xff, 2 * field));
            let mut zero = vec![0x04];
            zero.extend(std::iter::repeat_n(0, 2 * field));
            for tag in [0x00, 0x02, 0x03, 0x06, 0x07] {
                wrong_tag[0] = tag;
                assert_eq!(
                    server(curve, &wrong_tag, &mut rng).unwrap_err(),
                    KexError::InvalidShare,
                    "{method} tag {tag}"
                );
            }
            for bad in [off_curve, all_ones, zero] {
                assert_eq!(
                    server(curve, &bad, &mut rng).unwrap_err(),
                    KexError::InvalidShare,
                    "{method}"
                );
            }
            for len in [0, 1, compressed.len(), good.len() - 1, good.len() + 1] {
                let mut share = good.clone();
                share.resize(len, 0);
                if len == compressed.len() {
                    share = compressed.clone();
                }
                assert_eq!(
                    server(curve, &share, &mut rng).unwrap_err(),
                    KexError::BadShareLength,
                    "{method} length {len}"
                );
            }
            let (client, _) = Client::start(curve, &mut rng);
            let mut bad = good.clone();
            bad[last] ^= 1;
            assert_eq!(client.finish(&bad).unwrap_err(), KexError::InvalidShare);
        }
    }
}
