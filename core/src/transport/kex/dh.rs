//! diffie-hellman-group14-sha256 and diffie-hellman-group16-sha512 (RFC 8268
//! §3, RFC 4253 §8), on the 2048- and 4096-bit MODP groups of RFC 3526 with
//! generator 2.
//!
//! The shares are the mpints `e` (`KEXDH_INIT`) and `f` (`KEXDH_REPLY`);
//! this module takes and gives their bytes without the length prefix, so
//! that the exchange's message layout and hash are the same as for the
//! other methods (an mpint is encoded exactly as a string of those bytes).
//! `K = e^y mod p` is an mpint. A share is refused unless it is a positive
//! integer with `1 < e < p - 1` and more than one bit set (RFC 4253 §8;
//! OpenSSH's `dh_pub_is_valid`). Exponents are 512 bits, twice the
//! strength of the strongest cipher's key, as OpenSSH sizes them; the
//! exponentiation is constant-time.
//!
//! Offered only with `--legacy-algorithms` (or when named in
//! `--kex-algorithms`), for old libssh2 builds and old OpenSSH.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U512, U2048, U4096, Uint};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::{KexError, SharedSecret};

/// Bytes of the secret exponent.
pub(super) const EXPONENT_LEN: usize = 64;

/// The RFC 3526 group 14 prime (2048 bits, §3).
const GROUP14: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

/// The RFC 3526 group 16 prime (4096 bits, §5).
const GROUP16: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA993B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF";

/// The two MODP groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Group {
    /// 2048-bit MODP group 14, with SHA-256.
    Group14,
    /// 4096-bit MODP group 16, with SHA-512.
    Group16,
}

impl Group {
    /// Bytes of the modulus; a share's mpint has at most one more (a zero
    /// byte before a set top bit).
    pub(super) const fn modulus_len(self) -> usize {
        match self {
            Group::Group14 => 256,
            Group::Group16 => 512,
        }
    }
}

/// A client's secret exponent, zeroized on drop.
pub(super) struct Client {
    group: Group,
    exponent: Zeroizing<[u8; EXPONENT_LEN]>,
}

impl Client {
    /// A fresh exponent from `rng`, and our share `e`.
    pub(super) fn start(group: Group, rng: &mut dyn CryptoRng) -> (Client, Vec<u8>) {
        let mut exponent = Zeroizing::new([0u8; EXPONENT_LEN]);
        rng.fill_bytes(exponent.as_mut());
        let share = public(group, &exponent);
        (Client { group, exponent }, share)
    }

    /// `K` from our exponent and the server's share `f`.
    pub(super) fn finish(&self, server_share: &[u8]) -> Result<SharedSecret, KexError> {
        shared(self.group, server_share, &self.exponent)
    }
}

/// Server side: checks `e`, draws our exponent from `rng`, and returns our
/// share `f` and `K`.
pub(super) fn server(
    group: Group,
    client_share: &[u8],
    rng: &mut dyn CryptoRng,
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    // Checked (and refused) before any randomness is drawn.
    check_share(group, client_share)?;
    let mut exponent = Zeroizing::new([0u8; EXPONENT_LEN]);
    rng.fill_bytes(exponent.as_mut());
    server_with(group, client_share, &exponent)
}

/// Server side on a given exponent.
fn server_with(
    group: Group,
    client_share: &[u8],
    exponent: &[u8; EXPONENT_LEN],
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    let k = shared(group, client_share, exponent)?;
    Ok((public(group, exponent), k))
}

/// Our share `g^x mod p`, as mpint bytes.
fn public(group: Group, exponent: &[u8; EXPONENT_LEN]) -> Vec<u8> {
    let mut two = [0u8; 1];
    two[0] = 2;
    let mut value = match group {
        Group::Group14 => modpow::<{ U2048::LIMBS }>(GROUP14, &two, exponent),
        Group::Group16 => modpow::<{ U4096::LIMBS }>(GROUP16, &two, exponent),
    };
    let share = mpint_body(&value);
    value.zeroize();
    share
}

/// `K = peer^x mod p` after checking the peer's share.
fn shared(
    group: Group,
    peer: &[u8],
    exponent: &[u8; EXPONENT_LEN],
) -> Result<SharedSecret, KexError> {
    let magnitude = check_share(group, peer)?;
    let value = Zeroizing::new(match group {
        Group::Group14 => modpow::<{ U2048::LIMBS }>(GROUP14, magnitude, exponent),
        Group::Group16 => modpow::<{ U4096::LIMBS }>(GROUP16, magnitude, exponent),
    });
    Ok(SharedSecret::mpint(&value))
}

/// Checks a share and returns its magnitude (big-endian, no sign byte):
/// non-negative, not longer than the modulus, `1 < value < p - 1`, and not a
/// power of two (one bit set), as OpenSSH refuses it.
fn check_share(group: Group, share: &[u8]) -> Result<&[u8], KexError> {
    if share.len() > group.modulus_len() + 1 {
        return Err(KexError::BadShareLength);
    }
    if share.first().is_some_and(|&b| b & 0x80 != 0) {
        // A negative mpint.
        return Err(KexError::InvalidShare);
    }
    let start = share.iter().position(|&b| b != 0).unwrap_or(share.len());
    let magnitude = &share[start..];
    if magnitude.len() > group.modulus_len() {
        return Err(KexError::InvalidShare);
    }
    let bits_set: u32 = magnitude.iter().map(|b| b.count_ones()).sum();
    if bits_set <= 1 {
        // 0, 1 and the powers of two, which leak the exponent's low bits.
        return Err(KexError::InvalidShare);
    }
    let below_p_minus_1 = match group {
        Group::Group14 => below_p_minus_1::<{ U2048::LIMBS }>(GROUP14, magnitude),
        Group::Group16 => below_p_minus_1::<{ U4096::LIMBS }>(GROUP16, magnitude),
    };
    if !below_p_minus_1 {
        return Err(KexError::InvalidShare);
    }
    Ok(magnitude)
}

/// `value` read as an integer of `L` limbs (`value` is at most that long).
fn widen<const L: usize>(value: &[u8]) -> Uint<L> {
    let mut bytes = Zeroizing::new(vec![0u8; L * 8]);
    let at = bytes.len() - value.len();
    bytes[at..].copy_from_slice(value);
    Uint::<L>::from_be_slice(&bytes)
}

/// Whether `value < p - 1` (variable time: `value` is public).
fn below_p_minus_1<const L: usize>(p_hex: &str, value: &[u8]) -> bool {
    let p = Uint::<L>::from_be_hex(p_hex);
    let p_minus_1 = p.wrapping_sub(&Uint::ONE);
    widen::<L>(value) < p_minus_1
}

/// `base^exponent mod p`, big-endian, the modulus's length; constant time in
/// the exponent (whose bit length, 512, is public).
fn modpow<const L: usize>(p_hex: &str, base: &[u8], exponent: &[u8; EXPONENT_LEN]) -> Vec<u8> {
    let modulus = Odd::new(Uint::<L>::from_be_hex(p_hex))
        .into_option()
        .unwrap_or_else(|| unreachable!("the RFC 3526 primes are odd"));
    let params = FixedMontyParams::new_vartime(modulus);
    let mut x = U512::from_be_slice(exponent);
    let mut result = FixedMontyForm::new(&widen::<L>(base), &params)
        .pow_bounded_exp(&x, U512::BITS)
        .retrieve();
    x.zeroize();
    let bytes = result.to_be_bytes().as_ref().to_vec();
    result.zeroize();
    bytes
}

/// A non-negative big-endian magnitude as mpint bytes: leading zeros
/// stripped, one zero added back before a set top bit.
fn mpint_body(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[start..];
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::super::test_util::{hex, legacy_vector};
    use super::*;

    const GROUPS: [(Group, &str, &str); 2] = [
        (Group::Group14, "diffie-hellman-group14-sha256", GROUP14),
        (Group::Group16, "diffie-hellman-group16-sha512", GROUP16),
    ];

    fn exponent(bytes: &[u8]) -> [u8; EXPONENT_LEN] {
        bytes.try_into().unwrap()
    }

    /// The primes are OpenSSL's built-in RFC 3526 groups (checked against
    /// the RFC's formula by testdata/legacy_kex_vectors.py).
    #[test]
    fn primes_are_openssls() {
        for (group, method, p) in GROUPS {
            assert_eq!(hex(p), legacy_vector(method, "prime"), "{method}");
            assert_eq!(hex(p).len(), group.modulus_len());
        }
    }

    /// Both roles against Python's integers (testdata/legacy_kex_vectors.py).
    #[test]
    fn python_known_answers_both_roles() {
        for (group, method, _) in GROUPS {
            let v = |field| legacy_vector(method, field);
            let (f, k) =
                server_with(group, &v("client_share"), &exponent(&v("server_secret"))).unwrap();
            assert_eq!(f, v("server_share"), "{method}");
            assert_eq!(k.encoded(), v("k"), "{method}");

            let client = Client {
                group,
                exponent: Zeroizing::new(exponent(&v("client_secret"))),
            };
            assert_eq!(public(group, &client.exponent), v("client_share"));
            assert_eq!(client.finish(&v("server_share")).unwrap().encoded(), v("k"));
        }
    }

    #[test]
    fn out_of_range_shares_refused() {
        for (group, method, p) in GROUPS {
            let p = hex(p);
            let mut p_minus_1 = p.clone();
            *p_minus_1.last_mut().unwrap() -= 1;
            let mut p_minus_2 = p.clone();
            *p_minus_2.last_mut().unwrap() -= 2;
            let mut with_sign = vec![0];
            with_sign.extend_from_slice(&p_minus_2);
            let mut rng = ChaCha20Rng::seed_from_u64(3);
            // The largest acceptable share, with and without its sign byte
            // (a leading zero is tolerated: it is hashed as sent).
            assert!(server(group, &with_sign, &mut rng).is_ok(), "{method}");
            assert!(
                server(group, &p_minus_2, &mut rng).is_err(),
                "{method}: negative"
            );
            for bad in [
                vec![],
                vec![0],
                vec![1],
                vec![0, 2],
                vec![0x40, 0, 0, 0],
                [vec![0], p_minus_1.clone()].concat(),
                [vec![0], p.clone()].concat(),
                [vec![0], vec![0xff; group.modulus_len()]].concat(),
                vec![0x80, 1],
            ] {
                assert_eq!(
                    server(group, &bad, &mut rng).unwrap_err(),
                    KexError::InvalidShare,
                    "{method} {:02x?}",
                    &bad[..bad.len().min(4)]
                );
            }
            let too_long = vec![1; group.modulus_len() + 2];
            assert_eq!(
                server(group, &too_long, &mut rng).unwrap_err(),
                KexError::BadShareLength
            );
            // Leading zeros before a short value are tolerated too.
            assert!(server(group, &[0, 0, 0, 3], &mut rng).is_ok());
        }
    }

    #[test]
    fn mpint_body_is_canonical() {
        assert_eq!(mpint_body(&[0, 0, 0x7f]), [0x7f]);
        assert_eq!(mpint_body(&[0, 0x80, 1]), [0, 0x80, 1]);
        assert_eq!(mpint_body(&[]), [0u8; 0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        #[test]
        fn client_and_server_agree(c in any::<u64>(), s in any::<u64>(), g16 in any::<bool>()) {
            let group = if g16 { Group::Group16 } else { Group::Group14 };
            let (client, e) = Client::start(group, &mut ChaCha20Rng::seed_from_u64(c));
            let (f, k_server) = server(group, &e, &mut ChaCha20Rng::seed_from_u64(s)).unwrap();
            let k_client = client.finish(&f).unwrap();
            prop_assert_eq!(k_client.encoded(), k_server.encoded());
            // Both shares are canonical positive mpints.
            for share in [&e, &f] {
                prop_assert!(share[0] & 0x80 == 0);
                prop_assert!(share[0] != 0 || share[1] & 0x80 != 0);
                prop_assert!(share.len() <= group.modulus_len() + 1);
            }
        }
    }
}
