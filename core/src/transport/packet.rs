//! Binary packet protocol (RFC 4253 §6): framing, padding, sequence numbers.
//!
//! The reader decodes any chunking of the byte stream: bytes are appended as
//! they come and whole packets are opened in place where they lie. A claimed
//! length is checked against [`MAX_PACKET_LEN`] as soon as its four bytes are
//! readable, before anything is reserved for it. The writer builds each
//! packet directly in the outgoing buffer and seals it there, so steady-state
//! relaying allocates nothing.

use std::ops::Range;

use rand_core::Rng;

use super::cipher::PacketCipher;

/// Largest `packet_length` accepted. RFC 4253
/// §6.1 requires 35000 bytes; real peers stay near 32 KiB of payload.
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// The payload size we announce as our channels' maximum packet size leaves
/// room for headers under the cap.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Why a packet was refused. Each is fatal to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// `packet_length` above [`MAX_PACKET_LEN`].
    TooLong(u32),
    /// `packet_length` too small or not a multiple of the block size.
    BadLength(u32),
    /// Padding shorter than 4 bytes or longer than the packet.
    BadPadding,
    /// The MAC or AEAD tag did not verify.
    Mac,
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong(n) => write!(f, "packet length {n} exceeds the limit"),
            Self::BadLength(n) => write!(f, "invalid packet length {n}"),
            Self::BadPadding => f.write_str("invalid padding"),
            Self::Mac => f.write_str("message authentication code incorrect"),
        }
    }
}

impl std::error::Error for PacketError {}

/// One decoded packet: where its payload lies in the reader's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Its sequence number (for UNIMPLEMENTED replies).
    pub seq: u32,
    /// The payload's bytes within [`PacketReader::payload`].
    pub payload: Range<usize>,
}

/// Bytes and packets carried under the current keys (RFC 4253 §9 rekeying).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Volume {
    /// Bytes on the wire.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
}

/// Decodes packets from the incoming byte stream.
pub struct PacketReader {
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    start: usize,
    cipher: PacketCipher,
    seq: u32,
    /// The decrypted length of the packet at `start`, once known.
    pending_len: Option<u32>,
    volume: Volume,
}

impl Default for PacketReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketReader {
    /// A reader expecting plaintext packets.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            cipher: PacketCipher::plaintext(),
            seq: 0,
            pending_len: None,
            volume: Volume::default(),
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.len() + data.len() > self.buf.capacity() {
            // Move the unconsumed tail to the front rather than grow.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not consumed, for the version exchange, which
    /// precedes the packets.
    pub fn raw(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Drops `n` raw bytes (a version or preamble line).
    pub fn consume_raw(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Number of bytes buffered and not consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Installs the keys that take effect after NEWKEYS.
    pub fn set_cipher(&mut self, cipher: PacketCipher) {
        self.cipher = cipher;
        self.volume = Volume::default();
    }

    /// Resets the sequence number (strict key exchange, after NEWKEYS).
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// The sequence number the next packet will have.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// What was received under the current keys.
    pub fn volume(&self) -> Volume {
        self.volume
    }

    /// A decoded packet's payload.
    pub fn payload(&self, packet: &Packet) -> &[u8] {
        &self.buf[packet.payload.clone()]
    }

    /// Decodes the next whole packet, if one has arrived. The payload stays
    /// valid until the next call to `feed` or `next_packet`.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PacketError> {
        let avail = self.buf.len() - self.start;
        let len = match self.pending_len {
            Some(len) => len,
            None => {
                if avail < 4 {
                    return Ok(None);
                }
                let mut first = [0u8; 4];
                first.copy_from_slice(&self.buf[self.start..self.start + 4]);
                let len = self.cipher.decrypt_length(self.seq, first);
                self.check_length(len)?;
                self.pending_len = Some(len);
                len
            }
        };
        let body_end = 4 + len as usize;
        let total = body_end + self.cipher.tag_len();
        if avail < total {
            return Ok(None);
        }
        let seq = self.seq;
        let packet = &mut self.buf[self.start..self.start + total];
        let (body, tag) = packet.split_at_mut(body_end);
        self.cipher
            .open(seq, body, tag)
            .map_err(|_| PacketError::Mac)?;
        let padding = usize::from(body[4]);
        if padding < 4 || padding + 1 >= len as usize {
            return Err(PacketError::BadPadding);
        }
        let payload = self.start + 5..self.start + body_end - padding;
        self.start += total;
        self.pending_len = None;
        self.seq = self.seq.wrapping_add(1);
        self.volume.bytes += total as u64;
        self.volume.packets += 1;
        Ok(Some(Packet { seq, payload }))
    }

    fn check_length(&self, len: u32) -> Result<(), PacketError> {
        if len > MAX_PACKET_LEN {
            return Err(PacketError::TooLong(len));
        }
        let block = self.cipher.block_size() as u32;
        let framed = if self.cipher.length_excluded_from_padding() {
            len
        } else {
            len + 4
        };
        // Smallest: padding_length, a message number, four bytes of padding.
        if len < 6 || framed % block != 0 {
            return Err(PacketError::BadLength(len));
        }
        Ok(())
    }
}

/// Frames and seals outgoing packets into one buffer the runtime drains.
pub struct PacketWriter {
    out: Vec<u8>,
    /// Bytes of `out` already handed to the socket.
    sent: usize,
    cipher: PacketCipher,
    seq: u32,
    volume: Volume,
}

impl Default for PacketWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketWriter {
    /// A writer sending plaintext packets.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            sent: 0,
            cipher: PacketCipher::plaintext(),
            seq: 0,
            volume: Volume::default(),
        }
    }

    /// Queues bytes outside the packet protocol (the version line).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queues one packet whose payload `build` appends to the buffer it is
    /// given (which already holds earlier packets: append only). Random
    /// padding comes from `rng`.
    pub fn packet(&mut self, rng: &mut dyn Rng, build: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 5]);
        build(&mut self.out);
        let payload_len = self.out.len() - start - 5;
        let block = self.cipher.block_size();
        let framed = if self.cipher.length_excluded_from_padding() {
            1 + payload_len
        } else {
            5 + payload_len
        };
        let mut padding = block - framed % block;
        if padding < 4 {
            padding += block;
        }
        let pad_at = self.out.len();
        self.out.resize(pad_at + padding, 0);
        rng.fill_bytes(&mut self.out[pad_at..]);
        let packet_len = 1 + payload_len + padding;
        self.out[start..start + 4].copy_from_slice(&(packet_len as u32).to_be_bytes());
        self.out[start + 4] = padding as u8;
        let body_end = self.out.len();
        self.out.resize(body_end + self.cipher.tag_len(), 0);
        let (body, tag) = self.out[start..].split_at_mut(body_end - start);
        self.cipher.seal(self.seq, body, tag);
        self.seq = self.seq.wrapping_add(1);
        self.volume.bytes += (self.out.len() - start) as u64;
        self.volume.packets += 1;
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Marks `n` pending bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > 64 * 1024 && self.sent * 2 > self.out.len() {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Installs the keys that take effect after our NEWKEYS.
    pub fn set_cipher(&mut self, cipher: PacketCipher) {
        self.cipher = cipher;
        self.volume = Volume::default();
    }

    /// Resets the sequence number (strict key exchange, after NEWKEYS).
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// The sequence number the next packet will have.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// What was sent under the current keys.
    pub fn volume(&self) -> Volume {
        self.volume
    }

    /// Largest payload worth one packet's overhead for the current cipher.
    pub fn overhead(&self) -> usize {
        4 + 1 + 2 * self.cipher.block_size() + self.cipher.tag_len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::transport::cipher::{CipherAlg, DirectionKeys, MacAlg};
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use zeroize::Zeroizing;

    fn keys(cipher: CipherAlg, mac: Option<MacAlg>) -> DirectionKeys {
        let mac_len = mac.map_or(0, |m| m.key_len());
        DirectionKeys {
            cipher,
            mac,
            iv: Zeroizing::new((0..cipher.iv_len() as u8).collect()),
            enc_key: Zeroizing::new((0..cipher.key_len() as u8).map(|b| b ^ 0x5a).collect()),
            mac_key: Zeroizing::new((0..mac_len as u8).map(|b| b ^ 0x33).collect()),
        }
    }

    fn modes() -> Vec<Option<DirectionKeys>> {
        let mut v = vec![None];
        for c in CipherAlg::ALL {
            if c.is_aead() {
                v.push(Some(keys(c, None)));
            } else {
                for m in MacAlg::ALL {
                    v.push(Some(keys(c, Some(m))));
                }
            }
        }
        v
    }

    fn pair(mode: &Option<DirectionKeys>) -> (PacketWriter, PacketReader) {
        let mut w = PacketWriter::new();
        let mut r = PacketReader::new();
        if let Some(k) = mode {
            w.set_cipher(PacketCipher::new(k));
            r.set_cipher(PacketCipher::new(k));
        }
        (w, r)
    }

    fn payloads() -> Vec<Vec<u8>> {
        (0..40usize)
            .map(|i| (0..(i * 37 % 300 + 1)).map(|b| (b + i) as u8).collect())
            .collect()
    }

    #[test]
    fn every_mode_round_trips() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        for mode in modes() {
            let (mut w, mut r) = pair(&mode);
            for p in payloads() {
                w.packet(&mut rng, |out| out.extend_from_slice(&p));
            }
            r.feed(w.pending());
            for (i, p) in payloads().iter().enumerate() {
                let packet = r.next_packet().unwrap().unwrap();
                assert_eq!(packet.seq, i as u32);
                assert_eq!(r.payload(&packet), &p[..]);
            }
            assert_eq!(r.next_packet().unwrap(), None);
        }
    }

    #[test]
    fn a_flipped_bit_is_a_mac_error_at_every_offset() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        for mode in modes().into_iter().flatten() {
            let mut w = PacketWriter::new();
            w.set_cipher(PacketCipher::new(&mode));
            w.packet(&mut rng, |out| out.extend_from_slice(b"\x5ehello, world"));
            let wire = w.pending().to_vec();
            for offset in 0..wire.len() {
                let mut bad = wire.clone();
                bad[offset] ^= 0x10;
                let mut r = PacketReader::new();
                r.set_cipher(PacketCipher::new(&mode));
                r.feed(&bad);
                // A flipped length byte may also be refused as a bad length,
                // or leave the reader waiting for more; it never succeeds.
                match r.next_packet() {
                    Ok(Some(_)) => panic!("{:?}: flip at {offset} accepted", mode.cipher),
                    Ok(None) => assert!(offset < 4, "{:?} stalled at {offset}", mode.cipher),
                    Err(PacketError::Mac) => {}
                    Err(e) => assert!(offset < 4, "{:?}: {e} at {offset}", mode.cipher),
                }
            }
        }
    }

    #[test]
    fn absurd_lengths_are_refused_before_waiting_for_them() {
        for len in [0u32, 3, 5, 0x7fff_ffff, 0xffff_ffff, MAX_PACKET_LEN + 4] {
            let mut r = PacketReader::new();
            r.feed(&len.to_be_bytes());
            assert!(r.next_packet().is_err(), "{len}");
            assert!(r.buf.capacity() < 64, "reserved for {len}");
        }
        // Not a multiple of the block size.
        let mut r = PacketReader::new();
        r.feed(&13u32.to_be_bytes());
        assert_eq!(r.next_packet(), Err(PacketError::BadLength(13)));
    }

    #[test]
    fn short_padding_is_refused() {
        // packet_length 12, padding_length 3: 8 payload bytes.
        let mut bytes = 12u32.to_be_bytes().to_vec();
        bytes.push(3);
        bytes.extend_from_slice(&[0x5e; 11]);
        let mut r = PacketReader::new();
        r.feed(&bytes);
        assert_eq!(r.next_packet(), Err(PacketError::BadPadding));
        // Padding covering the whole packet leaves no message number.
        let mut bytes = 12u32.to_be_bytes().to_vec();
        bytes.push(11);
        bytes.extend_from_slice(&[0; 11]);
        let mut r = PacketReader::new();
        r.feed(&bytes);
        assert_eq!(r.next_packet(), Err(PacketError::BadPadding));
    }

    #[test]
    fn the_largest_packet_passes() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mode = keys(CipherAlg::ChaCha20Poly1305, None);
        let (mut w, mut r) = pair(&Some(mode));
        let big = vec![7u8; MAX_PACKET_LEN as usize - 64];
        w.packet(&mut rng, |out| out.extend_from_slice(&big));
        r.feed(w.pending());
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(r.payload(&p).len(), big.len());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_packets(
            mode_index in 0usize..8,
            cuts in proptest::collection::vec(1usize..200, 1..60),
        ) {
            let modes = modes();
            let mode = &modes[mode_index % modes.len()];
            let mut rng = ChaCha20Rng::from_seed([4; 32]);
            let (mut w, mut r) = pair(mode);
            for p in payloads() {
                w.packet(&mut rng, |out| out.extend_from_slice(&p));
            }
            let wire = w.pending().to_vec();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                r.feed(&wire[at..at + n]);
                at += n;
                while let Some(p) = r.next_packet().unwrap() {
                    got.push(r.payload(&p).to_vec());
                }
            }
            prop_assert_eq!(got, payloads());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), keyed in any::<bool>()) {
            let mut r = PacketReader::new();
            if keyed {
                r.set_cipher(PacketCipher::new(&keys(CipherAlg::Aes128Gcm, None)));
            }
            r.feed(&bytes);
            while let Ok(Some(_)) = r.next_packet() {}
        }
    }
}
