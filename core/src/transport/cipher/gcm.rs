//! aes128-gcm@openssh.com and aes256-gcm@openssh.com (RFC 5647 §7, with
//! OpenSSH's rule that the cipher's own tag replaces the negotiated MAC).
//!
//! The 12-byte nonce is a 4-byte fixed field and an 8-byte invocation
//! counter, both from the derived IV; the counter is incremented (big-endian,
//! wrapping at 2^64, never carrying into the fixed field) after every packet,
//! independently of the sequence number. The 4-byte packet_length is the
//! associated data and stays in clear; the rest of the packet is encrypted.
//!
//! ring's AES-GCM runs here (its assembly: AES-NI or VAES with CLMUL, the
//! encryption and GHASH interleaved in one pass): on 32 KiB packets it seals
//! and opens about three times as fast as RustCrypto's `aes-gcm`, which the
//! tests keep as the reference it must agree with (`tests/packet_speed.rs`,
//! README "Which implementation runs").

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::{CipherAlg, MacError};

/// The derived IV: fixed field and initial invocation counter.
pub(super) const IV_LEN: usize = 12;
/// GCM's full 16-byte tag (RFC 5647 never truncates it).
pub(super) const TAG_LEN: usize = 16;

/// One direction's AES-GCM state.
pub(super) struct Gcm {
    /// The key schedule and GHASH key, precomputed by ring.
    key: LessSafeKey,
    /// The first 4 bytes of the IV, constant for the life of the keys.
    fixed: [u8; 4],
    /// The last 8 bytes of the IV, as a big-endian integer, plus the number
    /// of packets processed since.
    invocation: u64,
}

impl Gcm {
    fn with_key(alg: &'static ring::aead::Algorithm, key: &[u8], iv: &[u8; IV_LEN]) -> Self {
        let (fixed, invocation) = iv.split_at(4);
        let mut fixed_bytes = [0u8; 4];
        fixed_bytes.copy_from_slice(fixed);
        let mut invocation_bytes = [0u8; 8];
        invocation_bytes.copy_from_slice(invocation);
        // The only error is a key of the wrong length, which the array
        // types of the two constructors rule out.
        let key = UnboundKey::new(alg, key).expect("an AES key of the algorithm's length");
        Gcm {
            key: LessSafeKey::new(key),
            fixed: fixed_bytes,
            invocation: u64::from_be_bytes(invocation_bytes),
        }
    }

    /// aes128-gcm@openssh.com.
    pub(super) fn new_aes128(key: &[u8; 16], iv: &[u8; IV_LEN]) -> Self {
        Self::with_key(&AES_128_GCM, key, iv)
    }

    /// aes256-gcm@openssh.com.
    pub(super) fn new_aes256(key: &[u8; 32], iv: &[u8; IV_LEN]) -> Self {
        Self::with_key(&AES_256_GCM, key, iv)
    }

    /// Which of the two algorithms this is.
    pub(super) fn alg(&self) -> CipherAlg {
        if self.key.algorithm() == &AES_256_GCM {
            CipherAlg::Aes256Gcm
        } else {
            CipherAlg::Aes128Gcm
        }
    }

    /// The nonce for the next packet: fixed || invocation counter.
    fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; IV_LEN];
        nonce[..4].copy_from_slice(&self.fixed);
        nonce[4..].copy_from_slice(&self.invocation.to_be_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts `packet[4..]` in place with `packet[..4]` as associated data,
    /// writes the tag and moves to the next nonce.
    ///
    /// # Panics
    ///
    /// If `packet` is shorter than 4 bytes or longer than GCM's limit of
    /// 2^36 - 32 bytes; the framing caps packets far lower.
    pub(super) fn seal(&mut self, packet: &mut [u8], tag: &mut [u8; TAG_LEN]) {
        let nonce = self.nonce();
        let (aad, body) = packet.split_at_mut(4);
        let aad = Aad::from([aad[0], aad[1], aad[2], aad[3]]);
        let sealed = self
            .key
            .seal_in_place_separate_tag(nonce, aad, body)
            .expect("an SSH packet is far below AES-GCM's 64 GiB limit");
        tag.copy_from_slice(sealed.as_ref());
        self.invocation = self.invocation.wrapping_add(1);
    }

    /// Verifies the tag over `packet` (at least 4 bytes, as received) and,
    /// only if it verifies, keeps `packet[4..]` decrypted in place and moves
    /// to the next nonce. ring decrypts as it authenticates, in one pass;
    /// when the tag does not verify it wipes what it decrypted, so `packet`
    /// then holds the length as received and zeros, never unauthenticated
    /// plaintext, and the nonce does not move.
    pub(super) fn open(&mut self, packet: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), MacError> {
        let nonce = self.nonce();
        let (aad, body) = packet.split_at_mut(4);
        let aad = Aad::from([aad[0], aad[1], aad[2], aad[3]]);
        self.key
            .open_in_place_separate_tag(nonce, aad, Tag::from(*tag), body, 0..)
            .map_err(|_| MacError)?;
        self.invocation = self.invocation.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::test_support::{frame, hex};
    use super::*;
    use aes_gcm::{
        Aes128Gcm, Aes256Gcm,
        aead::{AeadInOut, KeyInit},
    };
    use proptest::prelude::*;

    /// The McGrew-Viega GCM test cases 4 (AES-128) and 16 (AES-256), as
    /// published with NIST's GCM validation: 60-byte plaintext, 20-byte AAD,
    /// 96-bit IV, through the same ring calls `seal` and `open` make.
    #[test]
    fn gcm_spec_vectors_through_the_underlying_calls() {
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plaintext = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let cases = [
            (
                &AES_128_GCM,
                hex("feffe9928665731c6d6a8f9467308308"),
                hex(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                ),
                hex("5bc94fbc3221a5db94fae95ae7121a47"),
            ),
            (
                &AES_256_GCM,
                hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
                hex(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                ),
                hex("76fc6ece0f4e1768cddf8853bb2d551b"),
            ),
        ];
        for (alg, key, ciphertext, tag) in cases {
            let key = LessSafeKey::new(UnboundKey::new(alg, &key).unwrap());
            let mut buf = plaintext.clone();
            let got = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(&aad),
                    &mut buf,
                )
                .unwrap();
            assert_eq!(buf, ciphertext);
            assert_eq!(got.as_ref(), &tag[..]);
            let tag = Tag::try_from(&tag[..]).unwrap();
            key.open_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                tag,
                &mut buf,
                0..,
            )
            .unwrap();
            assert_eq!(buf, plaintext);
        }
    }

    /// The reference: RustCrypto's `aes-gcm` (what this module ran before
    /// it moved to ring), keyed alike, with the nonce computed independently.
    fn reference_seal(key: &[u8], nonce: [u8; 12], packet: &mut [u8]) -> [u8; 16] {
        let (aad, body) = packet.split_at_mut(4);
        let nonce = nonce.into();
        let tag = if key.len() == 32 {
            Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached(&nonce, aad, body.into())
        } else {
            Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached(&nonce, aad, body.into())
        };
        tag.unwrap().into()
    }

    fn new(aes256: bool, key: &[u8], iv: &[u8; 12]) -> Gcm {
        if aes256 {
            Gcm::new_aes256(key.try_into().unwrap(), iv)
        } else {
            Gcm::new_aes128(key.try_into().unwrap(), iv)
        }
    }

    #[test]
    fn alg_names_the_key_size() {
        assert_eq!(new(false, &[1; 16], &[0; 12]).alg(), CipherAlg::Aes128Gcm);
        assert_eq!(new(true, &[1; 32], &[0; 12]).alg(), CipherAlg::Aes256Gcm);
    }

    proptest! {
        /// Several consecutive packets match RustCrypto's AES-GCM with nonce
        /// `fixed || counter + i` and AAD = the 4 clear length bytes,
        /// including the counter's wrap from 2^64 - 1 to 0 (which must not
        /// carry into the fixed field); and we open the reference's packets.
        #[test]
        fn consecutive_packets_match_the_reference(
            aes256 in any::<bool>(),
            key in proptest::collection::vec(any::<u8>(), 32),
            fixed in any::<[u8; 4]>(),
            counter in prop_oneof![any::<u64>(), (u64::MAX - 4)..=u64::MAX],
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 1..8),
        ) {
            let key = if aes256 { &key[..] } else { &key[..16] };
            let mut iv = [0u8; 12];
            iv[..4].copy_from_slice(&fixed);
            iv[4..].copy_from_slice(&counter.to_be_bytes());
            let (mut tx, mut rx) = (new(aes256, key, &iv), new(aes256, key, &iv));
            for (i, payload) in payloads.iter().enumerate() {
                let original = frame(payload, 16, false, 0);
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&fixed);
                nonce[4..].copy_from_slice(&counter.wrapping_add(i as u64).to_be_bytes());

                let mut expected = original.clone();
                let expected_tag = reference_seal(key, nonce, &mut expected);

                let mut packet = original.clone();
                let mut tag = [0u8; 16];
                tx.seal(&mut packet, &mut tag);
                prop_assert_eq!(&packet, &expected);
                prop_assert_eq!(tag, expected_tag);

                // The receiver opens the reference's bytes (identical, so
                // also ours).
                rx.open(&mut expected, &expected_tag).unwrap();
                prop_assert_eq!(&expected, &original);
            }
        }

        /// A packet whose bytes or tag were altered fails, leaves the length
        /// as received and no plaintext (ring wipes what it decrypted), and
        /// does not move the nonce: the genuine packet opens afterwards.
        #[test]
        fn a_forgery_fails_and_reveals_nothing(
            aes256 in any::<bool>(),
            key in proptest::collection::vec(any::<u8>(), 32),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<prop::sample::Index>(),
        ) {
            let key = if aes256 { &key[..] } else { &key[..16] };
            let (mut tx, mut rx) = (new(aes256, key, &[3; 12]), new(aes256, key, &[3; 12]));
            let mut packet = frame(&payload, 16, false, 0);
            let mut tag = [0u8; 16];
            tx.seal(&mut packet, &mut tag);
            let (mut forged, mut forged_tag) = (packet.clone(), tag);
            let bit = bit.index((packet.len() + 16) * 8);
            if bit / 8 < packet.len() {
                forged[bit / 8] ^= 1 << (bit % 8);
            } else {
                forged_tag[bit / 8 - packet.len()] ^= 1 << (bit % 8);
            }
            let received = forged.clone();
            prop_assert_eq!(rx.open(&mut forged, &forged_tag), Err(MacError));
            prop_assert_eq!(&forged[..4], &received[..4]);
            prop_assert!(forged[4..].iter().all(|&b| b == 0));
            prop_assert_eq!(rx.open(&mut packet, &tag), Ok(()));
        }
    }
}
