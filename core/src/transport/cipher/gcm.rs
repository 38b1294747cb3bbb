//! aes128-gcm@openssh.com and aes256-gcm@openssh.com (RFC 5647 §7, with
//! OpenSSH's rule that the cipher's own tag replaces the negotiated MAC).
//!
//! The 12-byte nonce is a 4-byte fixed field and an 8-byte invocation
//! counter, both from the derived IV; the counter is incremented (big-endian,
//! wrapping at 2^64, never carrying into the fixed field) after every packet,
//! independently of the sequence number. The 4-byte packet_length is the
//! associated data and stays in clear; the rest of the packet is encrypted.

use aes_gcm::{
    Aes128Gcm, Aes256Gcm,
    aead::{AeadInOut, KeyInit},
};

use super::{CipherAlg, MacError};

/// The derived IV: fixed field and initial invocation counter.
pub(super) const IV_LEN: usize = 12;
/// GCM's full 16-byte tag (RFC 5647 never truncates it).
pub(super) const TAG_LEN: usize = 16;

/// The two key sizes, each with its key schedule and GHASH key precomputed.
enum Key {
    Aes128(Aes128Gcm),
    Aes256(Aes256Gcm),
}

/// One direction's AES-GCM state.
pub(super) struct Gcm {
    key: Key,
    /// The first 4 bytes of the IV, constant for the life of the keys.
    fixed: [u8; 4],
    /// The last 8 bytes of the IV, as a big-endian integer, plus the number
    /// of packets processed since.
    invocation: u64,
}

impl Gcm {
    fn with_key(key: Key, iv: &[u8; IV_LEN]) -> Self {
        let (fixed, invocation) = iv.split_at(4);
        let mut fixed_bytes = [0u8; 4];
        fixed_bytes.copy_from_slice(fixed);
        let mut invocation_bytes = [0u8; 8];
        invocation_bytes.copy_from_slice(invocation);
        Gcm {
            key,
            fixed: fixed_bytes,
            invocation: u64::from_be_bytes(invocation_bytes),
        }
    }

    /// aes128-gcm@openssh.com.
    pub(super) fn new_aes128(key: &[u8; 16], iv: &[u8; IV_LEN]) -> Self {
        Self::with_key(Key::Aes128(Aes128Gcm::new(key.into())), iv)
    }

    /// aes256-gcm@openssh.com.
    pub(super) fn new_aes256(key: &[u8; 32], iv: &[u8; IV_LEN]) -> Self {
        Self::with_key(Key::Aes256(Aes256Gcm::new(key.into())), iv)
    }

    /// Which of the two algorithms this is.
    pub(super) fn alg(&self) -> CipherAlg {
        match self.key {
            Key::Aes128(_) => CipherAlg::Aes128Gcm,
            Key::Aes256(_) => CipherAlg::Aes256Gcm,
        }
    }

    /// The nonce for the next packet: fixed || invocation counter.
    fn nonce(&self) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
        let mut nonce = [0u8; IV_LEN];
        nonce[..4].copy_from_slice(&self.fixed);
        nonce[4..].copy_from_slice(&self.invocation.to_be_bytes());
        nonce.into()
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
        let sealed = match &self.key {
            Key::Aes128(key) => key.encrypt_inout_detached(&nonce, aad, body.into()),
            Key::Aes256(key) => key.encrypt_inout_detached(&nonce, aad, body.into()),
        };
        *tag = sealed
            .expect("an SSH packet is far below AES-GCM's 64 GiB limit")
            .into();
        self.invocation = self.invocation.wrapping_add(1);
    }

    /// Verifies the tag over `packet` (at least 4 bytes, as received) and,
    /// only if it verifies, decrypts `packet[4..]` in place and moves to the
    /// next nonce. aes-gcm computes the tag over the ciphertext and compares
    /// it in constant time before it decrypts anything.
    pub(super) fn open(&mut self, packet: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), MacError> {
        let nonce = self.nonce();
        let (aad, body) = packet.split_at_mut(4);
        let tag = tag.into();
        match &self.key {
            Key::Aes128(key) => key.decrypt_inout_detached(&nonce, aad, body.into(), tag),
            Key::Aes256(key) => key.decrypt_inout_detached(&nonce, aad, body.into(), tag),
        }
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
    use proptest::prelude::*;
    use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    /// The McGrew-Viega GCM test cases 4 (AES-128) and 16 (AES-256), as
    /// published with NIST's GCM validation: 60-byte plaintext, 20-byte AAD,
    /// 96-bit IV, through the same aes-gcm calls `seal` and `open` make.
    #[test]
    fn gcm_spec_vectors_through_the_underlying_calls() {
        let iv = hex("cafebabefacedbaddecaf888");
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plaintext = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let key128 = hex("feffe9928665731c6d6a8f9467308308");
        let key256 = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let cases = [
            (
                Key::Aes128(Aes128Gcm::new_from_slice(&key128).unwrap()),
                hex(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                ),
                hex("5bc94fbc3221a5db94fae95ae7121a47"),
            ),
            (
                Key::Aes256(Aes256Gcm::new_from_slice(&key256).unwrap()),
                hex(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                ),
                hex("76fc6ece0f4e1768cddf8853bb2d551b"),
            ),
        ];
        let nonce = <[u8; 12]>::try_from(&iv[..]).unwrap().into();
        for (key, ciphertext, tag) in cases {
            let mut buf = plaintext.clone();
            let got = match &key {
                Key::Aes128(k) => k.encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into()),
                Key::Aes256(k) => k.encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into()),
            }
            .unwrap();
            assert_eq!(buf, ciphertext);
            assert_eq!(got[..], tag[..]);
            let tag16: [u8; 16] = tag.try_into().unwrap();
            match &key {
                Key::Aes128(k) => k.decrypt_inout_detached(
                    &nonce,
                    &aad,
                    buf.as_mut_slice().into(),
                    (&tag16).into(),
                ),
                Key::Aes256(k) => k.decrypt_inout_detached(
                    &nonce,
                    &aad,
                    buf.as_mut_slice().into(),
                    (&tag16).into(),
                ),
            }
            .unwrap();
            assert_eq!(buf, plaintext);
        }
    }

    /// ring's AES-GCM, keyed alike, with the nonce computed independently.
    fn ring_seal(key: &[u8], nonce: [u8; 12], packet: &mut [u8]) -> [u8; 16] {
        let alg = if key.len() == 32 {
            &AES_256_GCM
        } else {
            &AES_128_GCM
        };
        let key = LessSafeKey::new(UnboundKey::new(alg, key).unwrap());
        let (aad, body) = packet.split_at_mut(4);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(<[u8; 4]>::try_from(&*aad).unwrap()),
                body,
            )
            .unwrap();
        tag.as_ref().try_into().unwrap()
    }

    proptest! {
        /// Several consecutive packets match ring's AES-GCM with nonce
        /// `fixed || counter + i` and AAD = the 4 clear length bytes,
        /// including the counter's wrap from 2^64 - 1 to 0 (which must not
        /// carry into the fixed field); and we open ring's packets.
        #[test]
        fn consecutive_packets_match_ring(
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
            let new = |iv: &[u8; 12]| if aes256 {
                Gcm::new_aes256(key.try_into().unwrap(), iv)
            } else {
                Gcm::new_aes128(key.try_into().unwrap(), iv)
            };
            let (mut tx, mut rx) = (new(&iv), new(&iv));
            for (i, payload) in payloads.iter().enumerate() {
                let original = frame(payload, 16, false, 0);
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&fixed);
                nonce[4..].copy_from_slice(&counter.wrapping_add(i as u64).to_be_bytes());

                let mut expected = original.clone();
                let expected_tag = ring_seal(key, nonce, &mut expected);

                let mut packet = original.clone();
                let mut tag = [0u8; 16];
                tx.seal(&mut packet, &mut tag);
                prop_assert_eq!(&packet, &expected);
                prop_assert_eq!(tag, expected_tag);

                // The receiver opens ring's bytes (identical, so also ours).
                rx.open(&mut expected, &expected_tag).unwrap();
                prop_assert_eq!(&expected, &original);
            }
        }
    }
}
