//! mlkem768x25519-sha256 (draft-ietf-sshm-mlkem-hybrid-kex, as OpenSSH 10 implements it).
//!
//! `Q_C` (C_INIT) = ML-KEM-768 encapsulation key (1184) ‖ X25519 public (32);
//! `Q_S` (S_REPLY) = ML-KEM-768 ciphertext (1088) ‖ X25519 public (32); `K` =
//! string SHA-256(ML-KEM shared secret (32) ‖ X25519 shared secret (32, raw)).
//!
//! The client's key pair comes from a 64-byte seed (d ‖ z, FIPS 203
//! ML-KEM.KeyGen_internal) and the server's encapsulation from a 32-byte
//! message m (ML-KEM.Encaps_internal), both drawn from the caller's rng.

use ml_kem::kem::{Decapsulate, KeyExport, TryKeyInit};
use ml_kem::{B32, DecapsulationKey768, EncapsulationKey768, Seed};
use sha2::Sha256;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use super::curve25519::{self, agree, public_bytes};
use super::{KexError, SharedSecret};

/// Length of an ML-KEM-768 encapsulation key (FIPS 203 §8: 384k + 32, k = 3).
pub(super) const EK_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext (FIPS 203 §8: 32(d_u k + d_v), d_u = 10, d_v = 4).
pub(super) const CT_LEN: usize = 1088;
/// Length of `Q_C`: encapsulation key, then X25519 public value.
pub(super) const CLIENT_SHARE_LEN: usize = EK_LEN + curve25519::SHARE_LEN;
/// Length of `Q_S`: ciphertext, then X25519 public value.
pub(super) const SERVER_SHARE_LEN: usize = CT_LEN + curve25519::SHARE_LEN;

// The crate's sizes are types; pin them to the draft's numbers at compile time.
const _: () = assert!(size_of::<ml_kem::kem::Key<EncapsulationKey768>>() == EK_LEN);
const _: () = assert!(size_of::<ml_kem::ml_kem_768::Ciphertext>() == CT_LEN);

/// ML-KEM-768 encapsulation (FIPS 203 Algorithm 17, with the §7.2 input
/// check) to the key `ek` with message `m`: the ciphertext and shared key.
pub(super) fn encapsulate(
    ek: &[u8],
    m: &[u8; 32],
) -> Result<([u8; CT_LEN], Zeroizing<[u8; 32]>), KexError> {
    if ek.len() != EK_LEN {
        return Err(KexError::BadShareLength);
    }
    // Fails only on the modulus check: a coefficient not below q = 3329.
    let ek = EncapsulationKey768::new_from_slice(ek).map_err(|_| KexError::InvalidShare)?;
    let mut m = B32::from(*m);
    let (ct, mut k) = ek.encapsulate_deterministic(&m);
    m.zeroize();
    let shared = Zeroizing::new(k.0);
    k.zeroize();
    Ok((ct.0, shared))
}

/// ML-KEM-768 decapsulation (FIPS 203 Algorithm 18): never fails on a
/// ciphertext of the right length; a forged one gives the implicit-rejection key.
pub(super) fn decapsulate(
    dk: &DecapsulationKey768,
    ct: &[u8],
) -> Result<Zeroizing<[u8; 32]>, KexError> {
    let ct = ml_kem::ml_kem_768::Ciphertext::try_from(ct).map_err(|_| KexError::BadShareLength)?;
    let mut k = dk.decapsulate(&ct);
    let shared = Zeroizing::new(k.0);
    k.zeroize();
    Ok(shared)
}

/// Server side on given randomness: encapsulate to the client's key with `m`,
/// X25519 with `x25519`.
pub(super) fn server(
    client_share: &[u8],
    x25519: &StaticSecret,
    m: &[u8; 32],
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    if client_share.len() != CLIENT_SHARE_LEN {
        return Err(KexError::BadShareLength);
    }
    let (ek, x25519_peer) = client_share.split_at(EK_LEN);
    // X25519 first: the cheap check refuses a low-order point before the KEM runs.
    let ecdh = agree(x25519, x25519_peer)?;
    let (ct, kem_secret) = encapsulate(ek, m)?;
    let mut reply = Vec::with_capacity(SERVER_SHARE_LEN);
    reply.extend_from_slice(&ct);
    reply.extend_from_slice(&public_bytes(x25519));
    Ok((
        reply,
        SharedSecret::hybrid::<Sha256>(&kem_secret[..], &ecdh[..]),
    ))
}

/// The client's ephemeral secrets: ML-KEM-768 decapsulation key and X25519
/// scalar, both zeroized on drop (ml-kem's `zeroize` feature for the former).
pub(super) struct Client {
    dk: DecapsulationKey768,
    x25519: StaticSecret,
}

impl Client {
    /// Derives the key pair from `seed` (d ‖ z); returns the state and `Q_C`.
    pub(super) fn start(x25519: StaticSecret, seed: &[u8; 64]) -> (Client, Vec<u8>) {
        let dk = DecapsulationKey768::from_seed(Seed::from(*seed));
        let mut share = Vec::with_capacity(CLIENT_SHARE_LEN);
        share.extend_from_slice(&dk.encapsulation_key().to_bytes());
        share.extend_from_slice(&public_bytes(&x25519));
        (Client { dk, x25519 }, share)
    }

    /// `K` from the server's share.
    pub(super) fn finish(&self, server_share: &[u8]) -> Result<SharedSecret, KexError> {
        if server_share.len() != SERVER_SHARE_LEN {
            return Err(KexError::BadShareLength);
        }
        let (ct, x25519_peer) = server_share.split_at(CT_LEN);
        let ecdh = agree(&self.x25519, x25519_peer)?;
        let kem_secret = decapsulate(&self.dk, ct)?;
        Ok(SharedSecret::hybrid::<Sha256>(&kem_secret[..], &ecdh[..]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shake::{ExtendableOutput, Shake128, Update, XofReader};

    use sha2::Digest;

    use super::super::test_util::{hex, hex_array};
    use super::*;

    /// C2SP CCTV "accumulated pq-crystals vectors" for FIPS 203 (final):
    /// d, z, m and a random ciphertext are drawn from SHAKE-128("") for each
    /// of 10 000 tests; ek, dk (expanded), ct, the encapsulated key and the
    /// implicit-rejection key of the random ciphertext go into a second
    /// SHAKE-128, whose first 32 bytes are published. Runs the crate through
    /// exactly the calls this module makes (from_seed, encapsulate with the
    /// §7.2 check, decapsulate), covering both decapsulation paths.
    #[test]
    fn cctv_accumulated_10000() {
        let mut rng = Shake128::default().finalize_xof();
        let mut acc = Shake128::default();
        for _ in 0..10_000 {
            let mut seed = [0u8; 64];
            let mut m = [0u8; 32];
            let mut bad_ct = [0u8; CT_LEN];
            rng.read(&mut seed);
            rng.read(&mut m);
            rng.read(&mut bad_ct);

            let (client, q_c) = Client::start(StaticSecret::from([9; 32]), &seed);
            let ek = &q_c[..EK_LEN];
            acc.update(ek);
            #[allow(deprecated)] // the expanded form is what the vectors hash
            let dk_expanded = ml_kem::ExpandedKeyEncoding::to_expanded_bytes(&client.dk);
            acc.update(&dk_expanded);

            let (ct, k) = encapsulate(ek, &m).unwrap();
            acc.update(&ct);
            acc.update(&k[..]);
            assert_eq!(*decapsulate(&client.dk, &ct).unwrap(), *k);

            let k_bad = decapsulate(&client.dk, &bad_ct).unwrap();
            acc.update(&k_bad[..]);
        }
        let mut digest = [0u8; 32];
        acc.finalize_xof().read(&mut digest);
        assert_eq!(
            digest,
            hex_array("f959d18d3d1180121433bf0e05f11e7908cf9d03edc150b2b07cb90bef5bc1c1")
        );
    }

    /// Wycheproof mlkem_768_test.json tcId 1 (C2SP CCTV "strcmp"): key pair
    /// from a seed, and a ciphertext that must take the implicit-rejection path.
    #[test]
    fn wycheproof_strcmp_vector() {
        let seed = hex_array::<64>(
            "cbfc4405d1b2a3a386c94c25e0f2d5f5ee92cb0388ff4d6aa04223086d51c3fd\
             24752da14c9fc3b8ae0d9e4a8b1016b8d8fc69e229c03ea2ef08a4ae0cffc37f",
        );
        let (client, q_c) = Client::start(StaticSecret::from([9; 32]), &seed);
        assert_eq!(
            q_c[..EK_LEN],
            hex(include_str!("testdata/mlkem768_strcmp_ek.hex"))
        );
        let ct = hex(include_str!("testdata/mlkem768_strcmp_c.hex"));
        assert_eq!(
            *decapsulate(&client.dk, &ct).unwrap(),
            hex_array::<32>("76c10bb1d86d96d7eb18e298363e51f7728e113f455df7d15017940ed3541451")
        );
    }

    /// A fresh, valid client share for the refusal tests.
    fn client_share() -> Vec<u8> {
        Client::start(StaticSecret::from([1; 32]), &[2; 64]).1
    }

    /// FIPS 203 §7.2 modulus check: an encapsulation key whose first 12-bit
    /// coefficient is q (3329, the Wycheproof boundary case) or 4095 is refused.
    #[test]
    fn modulus_overflow_refused() {
        let x = StaticSecret::from([3; 32]);
        let valid = client_share();
        assert!(server(&valid, &x, &[4; 32]).is_ok());
        for coefficient in [3329u16, 4095] {
            let mut share = valid.clone();
            // Coefficient 0 is byte 0 and the low nibble of byte 1 (ByteEncode12).
            share[0] = (coefficient & 0xff) as u8;
            share[1] = (share[1] & 0xf0) | (coefficient >> 8) as u8;
            assert_eq!(
                server(&share, &x, &[4; 32]).unwrap_err(),
                KexError::InvalidShare,
                "{coefficient}"
            );
        }
        // The largest valid coefficient, q - 1, passes.
        let mut share = valid;
        share[0] = (3328u16 & 0xff) as u8;
        share[1] = (share[1] & 0xf0) | (3328u16 >> 8) as u8;
        assert!(server(&share, &x, &[4; 32]).is_ok());
    }

    #[test]
    fn fixed_seed_agreement_and_layout() {
        let x_c = StaticSecret::from([5u8; 32]);
        let x_s = StaticSecret::from([6u8; 32]);
        let (client, q_c) = Client::start(x_c.clone(), &[7; 64]);
        assert_eq!(q_c.len(), CLIENT_SHARE_LEN);
        assert_eq!(q_c[EK_LEN..], public_bytes(&x_c));
        let (q_s, k_server) = server(&q_c, &x_s, &[8; 32]).unwrap();
        assert_eq!(q_s.len(), SERVER_SHARE_LEN);
        assert_eq!(q_s[CT_LEN..], public_bytes(&x_s));
        assert_eq!(client.finish(&q_s).unwrap().encoded(), k_server.encoded());

        // K combines the ML-KEM key and the X25519 one, KEM first, SHA-256.
        let (ct, kem) = encapsulate(&q_c[..EK_LEN], &[8; 32]).unwrap();
        assert_eq!(q_s[..CT_LEN], ct);
        let ecdh = agree(&x_s, &q_c[EK_LEN..]).unwrap();
        let mut expected = vec![0, 0, 0, 32];
        expected.extend_from_slice(&Sha256::digest([&kem[..], &ecdh[..]].concat()));
        assert_eq!(k_server.encoded(), expected);
    }

    #[test]
    fn wrong_lengths_refused() {
        let x = StaticSecret::from([3; 32]);
        let share = client_share();
        for len in [0, EK_LEN, CLIENT_SHARE_LEN - 1, CLIENT_SHARE_LEN + 1] {
            let mut s = share.clone();
            s.resize(len, 0);
            assert_eq!(
                server(&s, &x, &[4; 32]).unwrap_err(),
                KexError::BadShareLength
            );
        }
        for len in [0, EK_LEN - 1, EK_LEN + 1] {
            assert_eq!(
                encapsulate(&share[..len.min(share.len())], &[4; 32]).unwrap_err(),
                KexError::BadShareLength
            );
        }
        let (client, _) = Client::start(x, &[2; 64]);
        for len in [0, CT_LEN - 1, CT_LEN, CT_LEN + 1] {
            assert_eq!(
                decapsulate(&client.dk, &vec![0; len][..]).is_ok(),
                len == CT_LEN
            );
        }
    }
}
