//! chacha20-poly1305@openssh.com (OpenSSH PROTOCOL.chacha20poly1305).
//!
//! Two ChaCha20 instances with the original 64-bit nonce (the sequence
//! number as a big-endian uint64): K_1 encrypts only the 4-byte length, K_2
//! gives the one-time Poly1305 key (block 0) and encrypts the rest of the
//! packet (from block 1). The tag is Poly1305 over the encrypted length and
//! the encrypted body, unpadded.

use chacha20::{
    ChaCha20Legacy, LegacyNonce,
    cipher::{KeyIvInit, StreamCipher},
};
use poly1305::{
    Poly1305,
    universal_hash::{KeyInit, UniversalHash},
};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::MacError;

/// 512 bits of key material: K_2 then K_1.
pub(super) const KEY_LEN: usize = 64;
/// Poly1305's tag length.
pub(super) const TAG_LEN: usize = 16;

/// The keyed state. ChaCha20 has no key schedule worth caching, so each
/// packet builds its two stream states from these keys on the stack.
pub(super) struct ChaChaPoly {
    /// K_1, the LAST 32 bytes of the key material: encrypts the length only.
    k1: Zeroizing<[u8; 32]>,
    /// K_2, the FIRST 32 bytes: Poly1305 key and the packet body.
    k2: Zeroizing<[u8; 32]>,
}

/// The nonce for sequence number `seq`: `uint64(seq)`, big-endian.
fn nonce(seq: u32) -> LegacyNonce {
    let mut nonce = [0u8; 8];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    nonce.into()
}

/// Poly1305 over `data`, feeding whole blocks through the vectorised path.
fn poly1305_tag(mut mac: Poly1305, data: &[u8]) -> [u8; TAG_LEN] {
    let (blocks, rest) = poly1305::Block::slice_as_chunks(data);
    mac.update(blocks);
    mac.compute_unpadded(rest).into()
}

impl ChaChaPoly {
    /// Splits the 64-byte key: the first half is K_2 and the second is K_1
    /// (the order PROTOCOL.chacha20poly1305 gives, which ssh-cipher's doc
    /// example reverses).
    pub(super) fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut k1 = Zeroizing::new([0u8; 32]);
        let mut k2 = Zeroizing::new([0u8; 32]);
        k2.copy_from_slice(&key[..32]);
        k1.copy_from_slice(&key[32..]);
        ChaChaPoly { k1, k2 }
    }

    /// The K_1 keystream for `seq`, from block counter 0.
    fn length_cipher(&self, nonce: &LegacyNonce) -> ChaCha20Legacy {
        ChaCha20Legacy::new((&*self.k1).into(), nonce)
    }

    /// The K_2 keystream for `seq`, positioned at block 1, and the Poly1305
    /// instance keyed with the first 32 bytes of block 0.
    fn body_cipher(&self, nonce: &LegacyNonce) -> (ChaCha20Legacy, Poly1305) {
        let mut cipher = ChaCha20Legacy::new((&*self.k2).into(), nonce);
        let mut poly_key = Zeroizing::new([0u8; 32]);
        cipher.apply_keystream(&mut *poly_key);
        // The rest of block 0 is discarded so that the body starts at block 1.
        let mut discard = Zeroizing::new([0u8; 32]);
        cipher.apply_keystream(&mut *discard);
        let mac = Poly1305::new((&*poly_key).into());
        (cipher, mac)
    }

    /// Decrypts the length field with K_1.
    pub(super) fn decrypt_length(&self, seq: u32, mut first4: [u8; 4]) -> u32 {
        self.length_cipher(&nonce(seq)).apply_keystream(&mut first4);
        u32::from_be_bytes(first4)
    }

    /// Encrypts `packet` (at least 4 bytes: length then body) in place and
    /// writes the tag.
    pub(super) fn seal(&self, seq: u32, packet: &mut [u8], tag: &mut [u8; TAG_LEN]) {
        let nonce = nonce(seq);
        let (length, body) = packet.split_at_mut(4);
        self.length_cipher(&nonce).apply_keystream(length);
        let (mut cipher, mac) = self.body_cipher(&nonce);
        cipher.apply_keystream(body);
        *tag = poly1305_tag(mac, packet);
    }

    /// Verifies the tag over `packet` (at least 4 bytes, as received) and
    /// only then decrypts both the length and the body in place.
    pub(super) fn open(
        &self,
        seq: u32,
        packet: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), MacError> {
        let nonce = nonce(seq);
        let (mut cipher, mac) = self.body_cipher(&nonce);
        let expected = poly1305_tag(mac, packet);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(MacError);
        }
        let (length, body) = packet.split_at_mut(4);
        self.length_cipher(&nonce).apply_keystream(length);
        cipher.apply_keystream(body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::test_support::{frame, hex};
    use super::*;
    use proptest::prelude::*;
    use ring::aead::chacha20_poly1305_openssh::{OpeningKey, SealingKey};

    /// The K_2 half of the construction against the vector in ssh-cipher
    /// 0.3's own tests: K_2, sequence number 3, the encrypted length
    /// `5709db2d` as associated data and a 24-byte body (an SSH_MSG_SERVICE_REQUEST
    /// for "ssh-userauth"). The length bytes are given to `open` as received;
    /// with K_1 all zero, what it decrypts them to is checked against ring.
    #[test]
    fn ssh_cipher_k2_vector_opens() {
        let k2 = hex("379a8ca9e7e705763633213511e8d92eb148a46f1dd0045ec8164e5d23e456eb");
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&k2);
        let state = ChaChaPoly::new(&key);
        let mut packet = hex("5709db2d 6dcfb03be8a55e7f0220465672edd921489ea0171198e8a7");
        let tag: [u8; 16] = hex("3e82fe0a2db7128d58ef8d9047963ca3").try_into().unwrap();
        state.open(3, &mut packet, &tag).unwrap();
        assert_eq!(
            packet[4..],
            hex("06050000000c7373682d7573657261757468de5949ab061f")[..]
        );
        let ring_len =
            OpeningKey::new(&key).decrypt_packet_length(3, hex("5709db2d").try_into().unwrap());
        assert_eq!(packet[..4], ring_len[..]);
    }

    #[test]
    fn key_halves_are_k2_then_k1() {
        let mut key = [0u8; 64];
        key[32..].fill(1); // K_1
        let state = ChaChaPoly::new(&key);
        assert_eq!(*state.k2, [0u8; 32]);
        assert_eq!(*state.k1, [1u8; 32]);
    }

    proptest! {
        /// Byte-identical to ring's independent implementation, and each side
        /// opens what the other sealed.
        #[test]
        fn matches_ring(
            key in proptest::collection::vec(any::<u8>(), 64),
            seq in prop_oneof![any::<u32>(), (u32::MAX - 3)..=u32::MAX],
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            pad in any::<u8>(),
        ) {
            let key: [u8; 64] = key.try_into().unwrap();
            let state = ChaChaPoly::new(&key);
            let original = frame(&payload, 8, false, pad);

            let mut ours = original.clone();
            let mut our_tag = [0u8; 16];
            state.seal(seq, &mut ours, &mut our_tag);

            let mut theirs = original.clone();
            let mut their_tag = [0u8; 16];
            SealingKey::new(&key).seal_in_place(seq, &mut theirs, &mut their_tag);
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(our_tag, their_tag);

            // decrypt_length agrees with ring's and gives the real length.
            let opening = OpeningKey::new(&key);
            let first4: [u8; 4] = ours[..4].try_into().unwrap();
            prop_assert_eq!(
                state.decrypt_length(seq, first4).to_be_bytes(),
                opening.decrypt_packet_length(seq, first4)
            );
            prop_assert_eq!(state.decrypt_length(seq, first4) as usize, original.len() - 4);

            // ring opens ours.
            let mut by_ring = ours.clone();
            let plain = opening.open_in_place(seq, &mut by_ring, &our_tag).unwrap();
            prop_assert_eq!(plain, &original[4..]);

            // We open ring's.
            state.open(seq, &mut theirs, &their_tag).unwrap();
            prop_assert_eq!(&theirs, &original);
        }

        /// decrypt_length agrees with ring on arbitrary bytes too.
        #[test]
        fn decrypt_length_matches_ring(
            key in proptest::collection::vec(any::<u8>(), 64),
            seq in any::<u32>(),
            first4 in any::<[u8; 4]>(),
        ) {
            let key: [u8; 64] = key.try_into().unwrap();
            prop_assert_eq!(
                ChaChaPoly::new(&key).decrypt_length(seq, first4).to_be_bytes(),
                OpeningKey::new(&key).decrypt_packet_length(seq, first4)
            );
        }
    }
}
