//! chacha20-poly1305@openssh.com (OpenSSH PROTOCOL.chacha20poly1305).
//!
//! Two ChaCha20 instances with the original 64-bit nonce (the sequence
//! number as a big-endian uint64): K_1 encrypts only the 4-byte length, K_2
//! gives the one-time Poly1305 key (block 0) and encrypts the rest of the
//! packet (from block 1). The tag is Poly1305 over the encrypted length and
//! the encrypted body, unpadded.

use chacha20::{
    ChaCha20Legacy, LegacyNonce,
    cipher::{KeyIvInit, StreamCipher, StreamCipherSeek},
};
use poly1305::{
    Poly1305,
    universal_hash::{KeyInit, UniversalHash},
};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

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
    /// The length keystream [`ChaChaPoly::decrypt_length`] made last, with
    /// its sequence number: the reader asks for a packet's length first and
    /// opens the packet once it has all of it, and `open` takes this rather
    /// than making the same group of blocks again (`gm-packet-bench`, read
    /// through the framing: 35 -> 37 MB/s for 64-byte packets, 425 -> 451
    /// for 1 KiB).
    last_length: Option<(u32, [u8; 4])>,
}

/// The nonce for sequence number `seq`: `uint64(seq)`, big-endian.
fn nonce(seq: u32) -> LegacyNonce {
    let mut nonce = [0u8; 8];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    nonce.into()
}

/// A ChaCha20 block's size.
const BLOCK: usize = 64;

/// The keystream is asked of `chacha20` in groups of four blocks, never
/// one block alone. Its AVX2 back end makes four blocks at a time and
/// keeps one when asked for one; its AVX-512 back end makes four in one
/// vector, but a single block in functions compiled without AVX-512VL,
/// where every vector operation is a call. Measured with `gm-packet-bench
/// --size 64` (see `bench/README.md`): one block from the AVX-512 back end
/// cost more than four.
const GROUP: usize = 4 * BLOCK;
/// K_1's keystream made for the length: one group, of which the length
/// uses 4 bytes.
const LENGTH_KEYSTREAM: usize = GROUP;
/// K_2's keystream made at the start of each packet: block 0 (the Poly1305
/// key) and the body's first three blocks, which cover all of a small
/// packet's body.
const BODY_PREFIX: usize = GROUP;

/// XORs `keystream` (at least as long) into `data`.
fn xor_in_place(data: &mut [u8], keystream: &[u8]) {
    for (byte, key) in data.iter_mut().zip(keystream) {
        *byte ^= key;
    }
}

/// The first `N` bytes of `key`'s keystream for `nonce` (`N` a multiple of
/// [`GROUP`]).
fn keystream<const N: usize>(key: &[u8; 32], nonce: &LegacyNonce) -> Keystream<N> {
    let mut blocks = Keystream([0u8; N]);
    ChaCha20Legacy::new(key.into(), nonce).apply_keystream(&mut blocks.0);
    blocks
}

/// Keystream bytes, cleared when dropped. Cleared as a slice: `zeroize`
/// clears an array (what `Zeroizing<[u8; N]>` holds) one volatile byte
/// write at a time, which cost several percent of a 1 KiB packet.
struct Keystream<const N: usize>([u8; N]);

impl<const N: usize> Drop for Keystream<N> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// `a` XOR `b`.
fn xor4(a: [u8; 4], b: [u8; 4]) -> [u8; 4] {
    (u32::from_ne_bytes(a) ^ u32::from_ne_bytes(b)).to_ne_bytes()
}

/// Encrypts or decrypts the 4-byte length field in place.
fn apply_length(length: &mut [u8], keystream: [u8; 4]) {
    let mut field = [0u8; 4];
    field.copy_from_slice(length);
    length.copy_from_slice(&xor4(field, keystream));
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
        ChaChaPoly {
            k1,
            k2,
            last_length: None,
        }
    }

    /// The length's keystream: the first 4 bytes of K_1's block 0.
    fn length_keystream(&self, nonce: &LegacyNonce) -> [u8; 4] {
        let blocks = keystream::<LENGTH_KEYSTREAM>(&self.k1, nonce);
        [blocks.0[0], blocks.0[1], blocks.0[2], blocks.0[3]]
    }

    /// K_2's first blocks for `nonce` (see [`BODY_PREFIX`]), and the
    /// Poly1305 instance keyed with the first 32 bytes of block 0.
    fn body_keystream(&self, nonce: &LegacyNonce) -> (Keystream<BODY_PREFIX>, Poly1305) {
        let prefix = keystream::<BODY_PREFIX>(&self.k2, nonce);
        let mut poly_key = Keystream([0u8; 32]);
        poly_key.0.copy_from_slice(&prefix.0[..32]);
        (prefix, Poly1305::new((&poly_key.0).into()))
    }

    /// Encrypts or decrypts `body` with K_2 from block 1 (the rest of
    /// block 0 is discarded): its start from `prefix`, the rest from a
    /// stream positioned after it: whole groups (see [`GROUP`]) straight,
    /// and the keystream of the last, partial group made whole and
    /// XORed.
    fn apply_body(&self, nonce: &LegacyNonce, prefix: &Keystream<BODY_PREFIX>, body: &mut [u8]) {
        let (head, rest) = body.split_at_mut(body.len().min(BODY_PREFIX - BLOCK));
        xor_in_place(head, &prefix.0[BLOCK..]);
        if rest.is_empty() {
            return;
        }
        let mut cipher = ChaCha20Legacy::new((&*self.k2).into(), nonce);
        cipher.seek(BODY_PREFIX as u64);
        let (groups, tail) = rest.split_at_mut(rest.len() / GROUP * GROUP);
        cipher.apply_keystream(groups);
        if !tail.is_empty() {
            let mut keystream = Keystream([0u8; GROUP]);
            cipher.apply_keystream(&mut keystream.0);
            xor_in_place(tail, &keystream.0);
        }
    }

    /// Decrypts the length field with K_1.
    pub(super) fn decrypt_length(&mut self, seq: u32, first4: [u8; 4]) -> u32 {
        let keystream = self.length_keystream(&nonce(seq));
        self.last_length = Some((seq, keystream));
        u32::from_be_bytes(xor4(first4, keystream))
    }

    /// Encrypts `packet` (at least 4 bytes: length then body) in place and
    /// writes the tag.
    pub(super) fn seal(&self, seq: u32, packet: &mut [u8], tag: &mut [u8; TAG_LEN]) {
        let nonce = nonce(seq);
        let (length, body) = packet.split_at_mut(4);
        apply_length(length, self.length_keystream(&nonce));
        let (prefix, mac) = self.body_keystream(&nonce);
        self.apply_body(&nonce, &prefix, body);
        *tag = poly1305_tag(mac, packet);
    }

    /// Verifies the tag over `packet` (at least 4 bytes, as received) and
    /// only then decrypts both the length and the body in place.
    pub(super) fn open(
        &mut self,
        seq: u32,
        packet: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), MacError> {
        let nonce = nonce(seq);
        let (prefix, mac) = self.body_keystream(&nonce);
        let expected = poly1305_tag(mac, packet);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(MacError);
        }
        let keystream = match self.last_length.take() {
            Some((made_for, keystream)) if made_for == seq => keystream,
            _ => self.length_keystream(&nonce),
        };
        let (length, body) = packet.split_at_mut(4);
        apply_length(length, keystream);
        self.apply_body(&nonce, &prefix, body);
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
        let mut state = ChaChaPoly::new(&key);
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
            let mut state = ChaChaPoly::new(&key);
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

        /// `open` uses the length keystream `decrypt_length` kept only for
        /// the packet it was made for: after the length of another packet,
        /// or of none, it still opens what was sealed.
        #[test]
        fn open_takes_the_kept_length_keystream_only_for_its_packet(
            key in any::<[u8; 32]>(),
            seq in any::<u32>(),
            other in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut full = [0u8; 64];
            full[..32].copy_from_slice(&key);
            full[32..].copy_from_slice(&key.map(|b| b ^ 0x5a));
            let mut state = ChaChaPoly::new(&full);
            let original = frame(&payload, 8, false, 0);
            let mut sealed = original.clone();
            let mut tag = [0u8; 16];
            state.seal(seq, &mut sealed, &mut tag);
            let first4: [u8; 4] = sealed[..4].try_into().unwrap();
            // A length asked for another packet, then this one's opened.
            state.decrypt_length(other, first4);
            let mut opened = sealed.clone();
            state.open(seq, &mut opened, &tag).unwrap();
            prop_assert_eq!(&opened, &original);
            // Nothing kept now: opening again makes the keystream itself.
            let mut again = sealed.clone();
            state.open(seq, &mut again, &tag).unwrap();
            prop_assert_eq!(&again, &original);
            // The usual order: the length, then the packet.
            prop_assert_eq!(state.decrypt_length(seq, first4) as usize, original.len() - 4);
            let mut in_order = sealed;
            state.open(seq, &mut in_order, &tag).unwrap();
            prop_assert_eq!(&in_order, &original);
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
