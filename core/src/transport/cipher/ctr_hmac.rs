//! aes128-ctr and aes256-ctr (RFC 4344 §4) with the SHA-2 HMACs, in both
//! orders: encrypt-then-MAC, hmac-sha2-256-etm@openssh.com and
//! hmac-sha2-512-etm@openssh.com (OpenSSH PROTOCOL §1.5), and RFC 4253's
//! original encrypt-and-MAC, hmac-sha2-256 and hmac-sha2-512 (RFC 6668),
//! offered only with `--legacy-algorithms`.
//!
//! The CTR keystream is one stream per direction: the 128-bit big-endian
//! counter starts at the IV and runs on across packets (wrapping at 2^128).
//!
//! - Encrypt-then-MAC leaves the 4-byte length in clear and computes
//!   `HMAC(mac_key, uint32 seq || packet_length || encrypted body)`; on
//!   receipt the MAC is verified before anything is decrypted.
//! - Encrypt-and-MAC encrypts the length with the rest and computes
//!   `HMAC(mac_key, uint32 seq || whole plaintext packet)` (RFC 4253 §6.4),
//!   so the receiver must decrypt the length before it can authenticate
//!   anything: the framing reads it only to size the read, and a packet whose
//!   MAC fails ends the connection before any of its content is used. CTR
//!   has no padding oracle, which is why OpenSSH still offers this order.

use aes::{Aes128, Aes256};
use ctr::{
    Ctr128BE,
    cipher::{KeyIvInit, StreamCipher, StreamCipherSeek},
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

    /// Bytes of keystream used so far. A position, not the counter: it
    /// counts from the IV, and 2^64 bytes is far past any re-key limit.
    fn position(&self) -> u64 {
        match self {
            Keystream::Aes128(ctr) => ctr.current_pos(),
            Keystream::Aes256(ctr) => ctr.current_pos(),
        }
    }

    /// Goes back to `position` (one returned by [`Keystream::position`]).
    fn rewind(&mut self, position: u64) {
        match self {
            Keystream::Aes128(ctr) => ctr.seek(position),
            Keystream::Aes256(ctr) => ctr.seek(position),
        }
    }
}

/// A keyed HMAC, cloned for each packet so the key's inner and outer hash
/// states are computed only once. Which order it is used in is the
/// [`CtrHmac`]'s business.
pub(super) enum Mac {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Mac {
    /// HMAC-SHA-256 with a 32-byte key.
    pub(super) fn new_sha256(key: &[u8; 32]) -> Self {
        // HMAC zero-pads a short key to the hash's block size (RFC 2104 §2);
        // padding it here lets the infallible constructor take it.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        Mac::Sha256(Hmac::new((&*block).into()))
    }

    /// HMAC-SHA-512 with a 64-byte key.
    pub(super) fn new_sha512(key: &[u8; 64]) -> Self {
        let mut block = Zeroizing::new([0u8; 128]);
        block[..64].copy_from_slice(key);
        Mac::Sha512(Hmac::new((&*block).into()))
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

/// One direction's AES-CTR + HMAC state, in the order its MAC names.
pub(super) struct CtrHmac {
    keystream: Keystream,
    mac: Mac,
    alg: MacAlg,
}

impl CtrHmac {
    /// `mac` must be keyed for `alg`'s hash (the caller matched them).
    pub(super) fn new(keystream: Keystream, mac: Mac, alg: MacAlg) -> Self {
        CtrHmac {
            keystream,
            mac,
            alg,
        }
    }

    pub(super) fn cipher_alg(&self) -> CipherAlg {
        match self.keystream {
            Keystream::Aes128(_) => CipherAlg::Aes128Ctr,
            Keystream::Aes256(_) => CipherAlg::Aes256Ctr,
        }
    }

    pub(super) fn mac_alg(&self) -> MacAlg {
        self.alg
    }

    pub(super) fn tag_len(&self) -> usize {
        self.alg.tag_len()
    }

    /// Whether the length travels in clear (EtM) rather than encrypted.
    pub(super) fn length_in_clear(&self) -> bool {
        self.alg.is_etm()
    }

    /// The packet length from the first four bytes as received: as is for
    /// EtM; for encrypt-and-MAC, decrypted and the keystream rewound, so
    /// that nothing has advanced when [`CtrHmac::open`] runs.
    pub(super) fn decrypt_length(&mut self, first4: [u8; 4]) -> u32 {
        if self.alg.is_etm() {
            return u32::from_be_bytes(first4);
        }
        let mut length = first4;
        let position = self.keystream.position();
        self.keystream.apply(&mut length);
        self.keystream.rewind(position);
        u32::from_be_bytes(length)
    }

    /// Encrypts in place and writes the MAC into `tag`: EtM encrypts
    /// `packet[4..]` and MACs `seq || packet` as sent; encrypt-and-MAC MACs
    /// `seq || packet` in plaintext and then encrypts all of it.
    pub(super) fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        if self.alg.is_etm() {
            self.keystream.apply(&mut packet[4..]);
            self.mac.compute(seq, packet, tag);
        } else {
            self.mac.compute(seq, packet, tag);
            self.keystream.apply(packet);
        }
    }

    /// Authenticates and decrypts in place; on failure `packet` and the
    /// keystream are as they were. EtM verifies the MAC over `seq || packet`
    /// as received before decrypting `packet[4..]`, so a forged packet
    /// reveals nothing. Encrypt-and-MAC must decrypt first (the MAC covers
    /// the plaintext); on a bad MAC it rewinds the keystream and encrypts
    /// the bytes back.
    pub(super) fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) -> Result<(), MacError> {
        if self.alg.is_etm() {
            if !self.mac.verify(seq, packet, tag) {
                return Err(MacError);
            }
            self.keystream.apply(&mut packet[4..]);
            return Ok(());
        }
        let position = self.keystream.position();
        self.keystream.apply(packet);
        if self.mac.verify(seq, packet, tag) {
            return Ok(());
        }
        self.keystream.rewind(position);
        self.keystream.apply(packet);
        self.keystream.rewind(position);
        Err(MacError)
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

    /// Encrypt-and-MAC known answers from an independent implementation
    /// (Python's `cryptography` AES-CTR and `hmac`; RFC 6668 gives no
    /// vectors): two consecutive packets with sequence numbers 3 and 4, keys
    /// `00 01 ..`, IV `40 41 .. 4f`, MAC key `80 81 ..`.
    #[test]
    fn encrypt_and_mac_known_answers() {
        let plaintext = hex("0000001c0d5353482d6c65676163792d4b415411111111111111111111111111");
        let cases = [
            (
                CipherAlg::Aes128Ctr,
                MacAlg::HmacSha256,
                [
                    (
                        "d533e58748f200a55332f93a9d9e3387798889d3213bbef9dbaac433df31340a",
                        "f93eabf4e53f38e4b81eca67a9f5b5d05fa0f10864d872ffc80ffd62e96c70a6",
                    ),
                    (
                        "463d9dbc40828aeab1e0bd8e7309061d59b29cc5d8e431d315509bad1add9f3f",
                        "08e7084fca916da21cb2171867b2a6767b5c9ba9cde14f5b56710d5e1c87890f",
                    ),
                ],
            ),
            (
                CipherAlg::Aes256Ctr,
                MacAlg::HmacSha512,
                [
                    (
                        "a37edf239a09e9a7be1707a0ec38c87afb344a82b9ff75509af8acdf41474420",
                        "ddb3f7ec02eb40bf30660525d66822060571f0862db28dbdc41df7a04efa53b4\
                         c8105d0232bdeb648dad442947e9e484412ceb0a35f08698b814295fe6c9c0aa",
                    ),
                    (
                        "e570a3f7a0b3f44cc0a5dba92595445ef9b55513aa01f70c41260170f0119577",
                        "0bd1da8b503e17f51ba51dc5365cbe58cb4c06a02af3bc6be37d8895d8c758f1\
                         7a5d386e1e45044e6284762b5e6a94879f8fded04a915140ce10197b9672a038",
                    ),
                ],
            ),
        ];
        for (cipher, mac, packets) in cases {
            let keys = DirectionKeys {
                cipher,
                mac: Some(mac),
                iv: Zeroizing::new((0x40..0x50).collect()),
                enc_key: Zeroizing::new((0..cipher.key_len() as u8).collect()),
                mac_key: Zeroizing::new((0x80..0x80 + mac.key_len() as u8).collect()),
            };
            let (mut tx, mut rx) = (PacketCipher::new(&keys), PacketCipher::new(&keys));
            for (seq, (ciphertext, expected_tag)) in (3..).zip(packets) {
                let mut packet = plaintext.clone();
                let mut tag = vec![0u8; mac.tag_len()];
                tx.seal(seq, &mut packet, &mut tag);
                assert_eq!(packet, hex(ciphertext), "{mac:?} packet {seq}");
                assert_eq!(tag, hex(expected_tag), "{mac:?} packet {seq}");
                assert_eq!(rx.decrypt_length(seq, packet[..4].try_into().unwrap()), 28);
                assert_eq!(rx.open(seq, &mut packet, &tag), Ok(()));
                assert_eq!(packet, plaintext);
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
        /// Several consecutive packets, in either MAC order: the ciphertext
        /// is the plaintext XOR the next stretch of one continuous keystream
        /// (computed block by block from the IV), over the body only for EtM
        /// and over the whole packet for encrypt-and-MAC; each tag is ring's
        /// HMAC over `uint32 seq ||` the packet as sent (EtM) or in plaintext
        /// (encrypt-and-MAC); the receiver reads each length and opens them all.
        #[test]
        fn packets_match_an_independent_computation(
            aes256 in any::<bool>(),
            sha512 in any::<bool>(),
            etm in any::<bool>(),
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
            let (mac, mac_key, ring_alg) = match (sha512, etm) {
                (true, true) => (MacAlg::HmacSha512Etm, &mac_key[..], ring::hmac::HMAC_SHA512),
                (true, false) => (MacAlg::HmacSha512, &mac_key[..], ring::hmac::HMAC_SHA512),
                (false, true) => (MacAlg::HmacSha256Etm, &mac_key[..32], ring::hmac::HMAC_SHA256),
                (false, false) => (MacAlg::HmacSha256, &mac_key[..32], ring::hmac::HMAC_SHA256),
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

            // EtM pads the body to the block size, encrypt-and-MAC the whole packet.
            let packets: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p, 16, !etm, 0x11)).collect();
            let skip = if etm { 4 } else { 0 };
            let total: usize = packets.iter().map(|p| p.len() - skip).sum();
            let keystream = reference_keystream(key, iv.to_be_bytes(), total);

            let mut offset = 0;
            let mut seq = first_seq;
            for original in &packets {
                let encrypted_len = original.len() - skip;
                let mut expected = original.clone();
                for (b, k) in expected[skip..].iter_mut().zip(&keystream[offset..offset + encrypted_len]) {
                    *b ^= k;
                }
                offset += encrypted_len;
                let mut signed = seq.to_be_bytes().to_vec();
                signed.extend_from_slice(if etm { &expected } else { original });
                let expected_tag = ring::hmac::sign(&ring_key, &signed);

                let mut packet = original.clone();
                let mut tag = vec![0u8; mac.tag_len()];
                tx.seal(seq, &mut packet, &mut tag);
                prop_assert_eq!(&packet, &expected);
                prop_assert_eq!(&tag[..], expected_tag.as_ref());

                // Reading the length twice changes nothing.
                let first4 = packet[..4].try_into().unwrap();
                prop_assert_eq!(rx.decrypt_length(seq, first4) as usize, original.len() - 4);
                prop_assert_eq!(rx.decrypt_length(seq, first4) as usize, original.len() - 4);
                prop_assert_eq!(rx.open(seq, &mut packet, &tag), Ok(()));
                prop_assert_eq!(&packet, original);
                seq = seq.wrapping_add(1);
            }
        }

        /// Encrypt-and-MAC: a packet whose MAC fails leaves the bytes and the
        /// keystream as they were, so the genuine packet still opens after it
        /// (the connection is dropped in practice; the state stays coherent).
        #[test]
        fn encrypt_and_mac_failure_restores_everything(
            sha512 in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<proptest::sample::Index>(),
        ) {
            let mac = if sha512 { MacAlg::HmacSha512 } else { MacAlg::HmacSha256 };
            let keys = DirectionKeys {
                cipher: CipherAlg::Aes128Ctr,
                mac: Some(mac),
                iv: Zeroizing::new(vec![3; 16]),
                enc_key: Zeroizing::new(vec![4; 16]),
                mac_key: Zeroizing::new(vec![5; mac.key_len()]),
            };
            let (mut tx, mut rx) = (PacketCipher::new(&keys), PacketCipher::new(&keys));
            let mut packet = frame(&payload, 16, true, 0);
            let mut tag = vec![0u8; mac.tag_len()];
            tx.seal(7, &mut packet, &mut tag);
            let mut forged = packet.clone();
            let at = flip.index(forged.len());
            forged[at] ^= 0x01;
            let received = forged.clone();
            prop_assert_eq!(rx.open(7, &mut forged, &tag), Err(MacError));
            prop_assert_eq!(&forged, &received);
            prop_assert_eq!(rx.open(7, &mut packet, &tag), Ok(()));
        }
    }
}
