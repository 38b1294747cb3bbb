//! aes128-ctr and aes256-ctr (RFC 4344 §4) with hmac-sha2-256-etm@openssh.com
//! and hmac-sha2-512-etm@openssh.com (OpenSSH PROTOCOL §1.5, RFC 6668).
//!
//! The CTR keystream is one stream per direction: the 128-bit big-endian
//! counter starts at the IV and runs on across packets (wrapping at 2^128).
//! Encrypt-then-MAC leaves the 4-byte length in clear and computes
//! `HMAC(mac_key, uint32 seq || packet_length || encrypted body)`; on receipt
//! the MAC is verified before anything is decrypted.

use aes::{Aes128, Aes256};
use ctr::{
    Ctr128BE,
    cipher::{KeyIvInit, StreamCipher},
};
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::{Sha256, Sha512};
use zeroize::Zeroizing;

use super::{CipherAlg, MacAlg, MacError};

/// The derived IV is the initial counter block.
pub(super) const IV_LEN: usize = 16;

/// The running AES-CTR keystream of one direction.
pub(super) enum Keystream {
    Aes128(Ctr128BE<Aes128>),
    Aes256(Ctr128BE<Aes256>),
}

impl Keystream {
    /// aes128-ctr starting at counter block `iv`.
    pub(super) fn new_aes128(key: &[u8; 16], iv: &[u8; IV_LEN]) -> Self {
        Keystream::Aes128(Ctr128BE::new(key.into(), iv.into()))
    }

    /// aes256-ctr starting at counter block `iv`.
    pub(super) fn new_aes256(key: &[u8; 32], iv: &[u8; IV_LEN]) -> Self {
        Keystream::Aes256(Ctr128BE::new(key.into(), iv.into()))
    }

    /// XORs the next `data.len()` keystream bytes into `data`. The counter
    /// wraps at 2^128 (RFC 4344 §4: "modulo 2^L"), which `ctr` does without
    /// ever running out.
    fn apply(&mut self, data: &mut [u8]) {
        match self {
            Keystream::Aes128(ctr) => ctr.apply_keystream(data),
            Keystream::Aes256(ctr) => ctr.apply_keystream(data),
        }
    }
}

/// A keyed HMAC, cloned for each packet so the key's inner and outer hash
/// states are computed only once.
pub(super) enum Mac {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Mac {
    /// hmac-sha2-256-etm@openssh.com with a 32-byte key.
    pub(super) fn new_sha256(key: &[u8; 32]) -> Self {
        // HMAC zero-pads a short key to the hash's block size (RFC 2104 §2);
        // padding it here lets the infallible constructor take it.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        Mac::Sha256(Hmac::new((&*block).into()))
    }

    /// hmac-sha2-512-etm@openssh.com with a 64-byte key.
    pub(super) fn new_sha512(key: &[u8; 64]) -> Self {
        let mut block = Zeroizing::new([0u8; 128]);
        block[..64].copy_from_slice(key);
        Mac::Sha512(Hmac::new((&*block).into()))
    }

    fn alg(&self) -> MacAlg {
        match self {
            Mac::Sha256(_) => MacAlg::HmacSha256Etm,
            Mac::Sha512(_) => MacAlg::HmacSha512Etm,
        }
    }

    /// Writes `HMAC(seq || packet)` into `out` (exactly the tag length).
    fn compute(&self, seq: u32, packet: &[u8], out: &mut [u8]) {
        match self {
            Mac::Sha256(keyed) => {
                let mut mac = keyed.clone();
                mac.update(&seq.to_be_bytes());
                mac.update(packet);
                out.copy_from_slice(&mac.finalize().into_bytes());
            }
            Mac::Sha512(keyed) => {
                let mut mac = keyed.clone();
                mac.update(&seq.to_be_bytes());
                mac.update(packet);
                out.copy_from_slice(&mac.finalize().into_bytes());
            }
        }
    }

    /// Whether `tag` is `HMAC(seq || packet)`, compared in constant time (a
    /// tag of the wrong length never verifies).
    fn verify(&self, seq: u32, packet: &[u8], tag: &[u8]) -> bool {
        match self {
            Mac::Sha256(keyed) => {
                let mut mac = keyed.clone();
                mac.update(&seq.to_be_bytes());
                mac.update(packet);
                mac.verify_slice(tag).is_ok()
            }
            Mac::Sha512(keyed) => {
                let mut mac = keyed.clone();
                mac.update(&seq.to_be_bytes());
                mac.update(packet);
                mac.verify_slice(tag).is_ok()
            }
        }
    }
}

/// One direction's AES-CTR + EtM state.
pub(super) struct CtrEtm {
    keystream: Keystream,
    mac: Mac,
}

impl CtrEtm {
    pub(super) fn new(keystream: Keystream, mac: Mac) -> Self {
        CtrEtm { keystream, mac }
    }

    pub(super) fn cipher_alg(&self) -> CipherAlg {
        match self.keystream {
            Keystream::Aes128(_) => CipherAlg::Aes128Ctr,
            Keystream::Aes256(_) => CipherAlg::Aes256Ctr,
        }
    }

    pub(super) fn mac_alg(&self) -> MacAlg {
        self.mac.alg()
    }

    pub(super) fn tag_len(&self) -> usize {
        self.mac.alg().tag_len()
    }

    /// Encrypts `packet[4..]` in place (the length stays in clear) and
    /// writes the MAC over `seq || packet` as sent into `tag`.
    pub(super) fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        self.keystream.apply(&mut packet[4..]);
        self.mac.compute(seq, packet, tag);
    }

    /// Verifies the MAC over `seq || packet` as received and only then
    /// decrypts `packet[4..]`, so a forged packet neither reveals plaintext
    /// nor advances the keystream.
    pub(super) fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) -> Result<(), MacError> {
        if !self.mac.verify(seq, packet, tag) {
            return Err(MacError);
        }
        self.keystream.apply(&mut packet[4..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::test_support::{frame, hex};
    use super::super::{DirectionKeys, PacketCipher};
    use super::*;
    use aes::cipher::BlockCipherEncrypt;
    use proptest::prelude::*;

    const SP800_38A_IV: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    const SP800_38A_PLAINTEXT: &str = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
                                       30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt) and F.5.5
    /// (CTR-AES256.Encrypt) through the packet state, split across two
    /// packets of two blocks each: the keystream must carry on from the first
    /// packet into the second, and the length must stay in clear.
    #[test]
    fn sp800_38a_ctr_vectors_across_two_packets() {
        let cases = [
            (
                CipherAlg::Aes128Ctr,
                hex("2b7e151628aed2a6abf7158809cf4f3c"),
                hex(
                    "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
                     5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
                ),
            ),
            (
                CipherAlg::Aes256Ctr,
                hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
                hex(
                    "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
                     2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6",
                ),
            ),
        ];
        let plaintext = hex(SP800_38A_PLAINTEXT);
        for (cipher, key, ciphertext) in cases {
            let keys = DirectionKeys {
                cipher,
                mac: Some(MacAlg::HmacSha256Etm),
                iv: Zeroizing::new(hex(SP800_38A_IV)),
                enc_key: Zeroizing::new(key),
                mac_key: Zeroizing::new(vec![0; 32]),
            };
            let mut state = PacketCipher::new(&keys);
            let mut tag = [0u8; 32];
            for half in 0..2 {
                let mut packet = vec![0, 0, 0, 32];
                packet.extend_from_slice(&plaintext[half * 32..][..32]);
                state.seal(half as u32, &mut packet, &mut tag);
                assert_eq!(packet[..4], [0, 0, 0, 32], "{cipher:?}");
                assert_eq!(packet[4..], ciphertext[half * 32..][..32], "{cipher:?}");
            }
        }
    }

    /// The counter is 128 bits wide and wraps to zero: from an all-ones IV,
    /// the second block is encrypted with AES(0).
    #[test]
    fn counter_wraps_at_2_pow_128() {
        let key = [0x42u8; 16];
        let mut stream = Keystream::new_aes128(&key, &[0xff; 16]);
        let mut data = [0u8; 48];
        stream.apply(&mut data);
        let aes = Aes128::new(&key.into());
        for (i, counter) in [[0xffu8; 16], [0; 16], {
            let mut one = [0; 16];
            one[15] = 1;
            one
        }]
        .into_iter()
        .enumerate()
        {
            let mut block = counter.into();
            aes.encrypt_block(&mut block);
            assert_eq!(data[i * 16..][..16], block[..], "block {i}");
        }
    }

    /// The keystream of counter blocks `iv, iv+1, ...` computed from single
    /// AES block encryptions, independently of the `ctr` crate.
    fn reference_keystream(key: &[u8], iv: [u8; 16], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 16);
        let mut counter = u128::from_be_bytes(iv);
        while out.len() < len {
            let mut block = counter.to_be_bytes().into();
            if key.len() == 32 {
                Aes256::new_from_slice(key)
                    .unwrap()
                    .encrypt_block(&mut block);
            } else {
                Aes128::new_from_slice(key)
                    .unwrap()
                    .encrypt_block(&mut block);
            }
            out.extend_from_slice(&block);
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        out
    }

    proptest! {
        /// Several consecutive packets: each ciphertext body is the plaintext
        /// XOR the next stretch of one continuous keystream (computed block by
        /// block from the IV), and each tag is ring's HMAC over
        /// `uint32 seq || length || ciphertext`; the receiver opens them all.
        #[test]
        fn packets_match_an_independent_computation(
            aes256 in any::<bool>(),
            sha512 in any::<bool>(),
            key in proptest::collection::vec(any::<u8>(), 32),
            mac_key in proptest::collection::vec(any::<u8>(), 64),
            iv in prop_oneof![any::<u128>(), (u128::MAX - 40)..=u128::MAX],
            first_seq in prop_oneof![any::<u32>(), (u32::MAX - 3)..=u32::MAX],
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
        ) {
            let (cipher, key) = if aes256 {
                (CipherAlg::Aes256Ctr, &key[..])
            } else {
                (CipherAlg::Aes128Ctr, &key[..16])
            };
            let (mac, mac_key, ring_alg) = if sha512 {
                (MacAlg::HmacSha512Etm, &mac_key[..], ring::hmac::HMAC_SHA512)
            } else {
                (MacAlg::HmacSha256Etm, &mac_key[..32], ring::hmac::HMAC_SHA256)
            };
            let keys = DirectionKeys {
                cipher,
                mac: Some(mac),
                iv: Zeroizing::new(iv.to_be_bytes().to_vec()),
                enc_key: Zeroizing::new(key.to_vec()),
                mac_key: Zeroizing::new(mac_key.to_vec()),
            };
            let (mut tx, mut rx) = (PacketCipher::new(&keys), PacketCipher::new(&keys));
            let ring_key = ring::hmac::Key::new(ring_alg, mac_key);

            let packets: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p, 16, false, 0x11)).collect();
            let total_body: usize = packets.iter().map(|p| p.len() - 4).sum();
            let keystream = reference_keystream(key, iv.to_be_bytes(), total_body);

            let mut offset = 0;
            let mut seq = first_seq;
            for original in &packets {
                let body_len = original.len() - 4;
                let mut expected = original.clone();
                for (b, k) in expected[4..].iter_mut().zip(&keystream[offset..offset + body_len]) {
                    *b ^= k;
                }
                offset += body_len;
                let mut signed = seq.to_be_bytes().to_vec();
                signed.extend_from_slice(&expected);
                let expected_tag = ring::hmac::sign(&ring_key, &signed);

                let mut packet = original.clone();
                let mut tag = vec![0u8; mac.tag_len()];
                tx.seal(seq, &mut packet, &mut tag);
                prop_assert_eq!(&packet, &expected);
                prop_assert_eq!(&tag[..], expected_tag.as_ref());

                prop_assert_eq!(rx.decrypt_length(seq, packet[..4].try_into().unwrap()) as usize, body_len);
                prop_assert_eq!(rx.open(seq, &mut packet, &tag), Ok(()));
                prop_assert_eq!(&packet, original);
                seq = seq.wrapping_add(1);
            }
        }
    }
}
