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
///
/// Besides packets built from a payload ([`PacketWriter::packet`]), the
/// writer lends the payload area of its next channel-data packets
/// ([`PacketWriter::lend`]): the runtime reads a command's output straight
/// into it, and [`PacketWriter::commit`] frames and seals what was read
/// where it lies, so relayed bytes are never copied inside the process.
pub struct PacketWriter {
    /// `out[sent..end]` waits for the socket. Bytes past `end` are
    /// scratch a lend reuses: they stay initialised, so that lending
    /// zeroes nothing once the buffer has reached its working size.
    out: Vec<u8>,
    /// End of the queued bytes.
    end: usize,
    /// Bytes of `out` already handed to the socket.
    sent: usize,
    cipher: PacketCipher,
    seq: u32,
    volume: Volume,
}

/// Data packets lent by [`PacketWriter::lend`]: where their payload areas
/// lie in the writer's buffer. Valid until the writer queues anything
/// else; a stale one lends and commits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lend {
    /// Where the first packet begins (the writer's `end` when lent).
    start: usize,
    /// The writer's next sequence number when lent.
    seq: u32,
    /// What each payload starts with, before the data's length.
    head: [u8; MAX_LEND_HEAD],
    head_len: usize,
    /// Data bytes in a full packet.
    chunk: usize,
    /// Bytes a full packet takes on the wire.
    stride: usize,
    /// Data bytes lent in all.
    total: usize,
}

/// Most data bytes one lend covers (a larger `total` is cut to this): the
/// buffer a lend reserves stays bounded whatever the peer's window.
pub const MAX_LEND: usize = 1024 * 1024;

/// Longest payload head a lend takes: an SSH_MSG_CHANNEL_EXTENDED_DATA's
/// message number, recipient channel and data type code.
pub const MAX_LEND_HEAD: usize = 9;

impl Lend {
    /// How many data bytes may be read into the lent areas.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing is lent.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Where the data of each packet begins, from the packet's start:
    /// `packet_length`, `padding_length`, the head and the data's length.
    fn data_offset(&self) -> usize {
        4 + 1 + self.head_len + 4
    }
}

/// The data areas of a [`Lend`], in order: the first packet's, then the
/// next one's, and so on (each `chunk` bytes but the last). What is read
/// into them fills them in this order, as `readv` does.
pub struct LentSlices<'a> {
    rest: &'a mut [u8],
    offset: usize,
    chunk: usize,
    stride: usize,
    left: usize,
}

impl<'a> Iterator for LentSlices<'a> {
    type Item = &'a mut [u8];

    fn next(&mut self) -> Option<&'a mut [u8]> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(self.chunk);
        let rest = std::mem::take(&mut self.rest);
        let (packet, tail) = rest.split_at_mut(self.stride.min(rest.len()));
        self.rest = tail;
        self.left -= n;
        Some(&mut packet[self.offset..self.offset + n])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left.div_ceil(self.chunk.max(1));
        (n, Some(n))
    }
}

impl ExactSizeIterator for LentSlices<'_> {}

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
            end: 0,
            sent: 0,
            cipher: PacketCipher::plaintext(),
            seq: 0,
            volume: Volume::default(),
        }
    }

    /// Queues bytes outside the packet protocol (the version line).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.out.truncate(self.end);
        self.out.extend_from_slice(bytes);
        self.end = self.out.len();
    }

    /// Padding for a payload of `payload_len` bytes: the least that
    /// aligns the packet to the cipher's block, at least 4 bytes.
    fn padding(&self, payload_len: usize) -> usize {
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
        padding
    }

    /// Bytes a packet with a payload of `payload_len` bytes takes on the
    /// wire (never fewer for a longer payload).
    fn wire_len(&self, payload_len: usize) -> usize {
        4 + 1 + payload_len + self.padding(payload_len) + self.cipher.tag_len()
    }

    /// Frames the packet whose payload lies at `out[start + 5..start + 5 +
    /// payload_len]`: length, padding length, random padding, seal. The
    /// buffer must hold the packet's whole wire length from `start`.
    /// Returns where the packet ends.
    fn seal_at(&mut self, rng: &mut dyn Rng, start: usize, payload_len: usize) -> usize {
        let padding = self.padding(payload_len);
        let packet_len = 1 + payload_len + padding;
        let pad_at = start + 5 + payload_len;
        let body_end = pad_at + padding;
        let packet_end = body_end + self.cipher.tag_len();
        rng.fill_bytes(&mut self.out[pad_at..body_end]);
        self.out[start..start + 4].copy_from_slice(&(packet_len as u32).to_be_bytes());
        self.out[start + 4] = padding as u8;
        let (body, tag) = self.out[start..packet_end].split_at_mut(body_end - start);
        self.cipher.seal(self.seq, body, tag);
        self.seq = self.seq.wrapping_add(1);
        self.volume.bytes += (packet_end - start) as u64;
        self.volume.packets += 1;
        packet_end
    }

    /// Queues one packet whose payload `build` appends to the buffer it is
    /// given (which already holds earlier packets: append only). Random
    /// padding comes from `rng`.
    pub fn packet(&mut self, rng: &mut dyn Rng, build: impl FnOnce(&mut Vec<u8>)) {
        let start = self.end;
        self.out.truncate(start);
        self.out.extend_from_slice(&[0; 5]);
        build(&mut self.out);
        let payload_len = self.out.len() - start - 5;
        let wire = self.wire_len(payload_len);
        self.out.resize(start + wire, 0);
        self.end = self.seal_at(rng, start, payload_len);
    }

    /// Lends the payload areas of the next packets, each payload being
    /// `head` (at most [`MAX_LEND_HEAD`] bytes), the data's length as a
    /// `uint32`, then at most `chunk` bytes of data: SSH_MSG_CHANNEL_DATA
    /// and EXTENDED_DATA. `total` data bytes are lent in all (at most
    /// [`MAX_LEND`]), in as many packets as that takes. Read into [`PacketWriter::lent_slices`],
    /// then [`PacketWriter::commit`] what was read. Nothing is queued
    /// until then; a lend not committed costs nothing.
    pub fn lend(&mut self, head: &[u8], chunk: usize, total: usize) -> Option<Lend> {
        if total == 0 || chunk == 0 || head.len() > MAX_LEND_HEAD {
            return None;
        }
        let total = total.min(MAX_LEND);
        let mut lend = Lend {
            start: self.end,
            seq: self.seq,
            head: [0; MAX_LEND_HEAD],
            head_len: head.len(),
            chunk,
            stride: self.wire_len(head.len() + 4 + chunk),
            total,
        };
        lend.head[..head.len()].copy_from_slice(head);
        let packets = total.div_ceil(chunk);
        let last = total - (packets - 1) * chunk;
        let room = (packets - 1) * lend.stride + self.wire_len(head.len() + 4 + last);
        if self.out.len() < lend.start + room {
            self.out.resize(lend.start + room, 0);
        }
        Some(lend)
    }

    /// Whether `lend` still describes the next packets.
    fn is_current(&self, lend: &Lend) -> bool {
        lend.start == self.end && lend.seq == self.seq && lend.total > 0
    }

    /// The data areas `lend` lent, in order (none if it is stale).
    pub fn lent_slices(&mut self, lend: &Lend) -> LentSlices<'_> {
        let current = self.is_current(lend);
        let rest = if current {
            &mut self.out[lend.start..]
        } else {
            &mut []
        };
        LentSlices {
            rest,
            offset: lend.data_offset(),
            chunk: lend.chunk,
            stride: lend.stride,
            left: if current { lend.total } else { 0 },
        }
    }

    /// Queues the first `n` bytes read into `lend`'s areas (in their
    /// order) as packets: each full area a packet of `chunk` bytes of
    /// data, the last one filled as far as it was. Returns how many bytes
    /// were queued: `n` (at most the lend's length), or 0 for a stale
    /// lend.
    pub fn commit(&mut self, rng: &mut dyn Rng, lend: &Lend, n: usize) -> usize {
        if !self.is_current(lend) {
            return 0;
        }
        let n = n.min(lend.total);
        let head = &lend.head[..lend.head_len];
        let mut at = lend.start;
        let mut left = n;
        while left > 0 {
            let len = left.min(lend.chunk);
            let h = at + 5;
            self.out[h..h + head.len()].copy_from_slice(head);
            let l = h + head.len();
            self.out[l..l + 4].copy_from_slice(&(len as u32).to_be_bytes());
            at = self.seal_at(rng, at, head.len() + 4 + len);
            left -= len;
        }
        self.end = at;
        n
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.sent..self.end]
    }

    /// Marks `n` pending bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.end);
        if self.sent == self.end {
            self.sent = 0;
            self.end = 0;
        } else if self.sent > 64 * 1024 && self.sent * 2 > self.end {
            self.out.copy_within(self.sent..self.end, 0);
            self.end -= self.sent;
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

    /// Decodes every packet the writer queued and checks each lent one:
    /// its payload is `head`, the data's length, the data, no more than
    /// `chunk` bytes of it. Returns the data, joined, and the other
    /// payloads.
    fn decode_lent(
        bytes: &[u8],
        r: &mut PacketReader,
        head: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Vec<Vec<u8>>) {
        r.feed(bytes);
        let (mut data, mut others) = (Vec::new(), Vec::new());
        while let Some(p) = r.next_packet().unwrap() {
            let payload = r.payload(&p);
            if payload.starts_with(head) {
                let body = &payload[head.len()..];
                let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
                assert_eq!(len, body.len() - 4, "the data's length");
                assert!(
                    len >= 1 && len <= chunk,
                    "{len} bytes in a packet of {chunk}"
                );
                data.extend_from_slice(&body[4..]);
            } else {
                others.push(payload.to_vec());
            }
        }
        (data, others)
    }

    #[test]
    fn a_stale_lend_lends_and_commits_nothing() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        for mode in modes() {
            let (mut w, mut r) = pair(&mode);
            let lend = w.lend(&[94, 0, 0, 0, 1], 100, 250).unwrap();
            assert_eq!(
                w.lent_slices(&lend).map(|s| s.len()).collect::<Vec<_>>(),
                [100, 100, 50]
            );
            // Something else is queued first: the lend is void.
            w.packet(&mut rng, |out| out.extend_from_slice(b"\x02other"));
            assert_eq!(w.lent_slices(&lend).count(), 0);
            assert_eq!(w.commit(&mut rng, &lend, 250), 0);
            let (data, others) = decode_lent(w.pending(), &mut r, &[94, 0, 0, 0, 1], 100);
            assert!(data.is_empty());
            assert_eq!(others, [b"\x02other".to_vec()]);
        }
        // Nothing to lend.
        let mut w = PacketWriter::new();
        assert_eq!(w.lend(&[94], 100, 0), None);
        assert_eq!(w.lend(&[94], 0, 100), None);
        assert_eq!(w.lend(&[0; MAX_LEND_HEAD + 1], 100, 100), None);
        // Whatever the window, a lend reserves a bounded room.
        let huge = w.lend(&[94], 32768, usize::MAX).unwrap();
        assert_eq!(huge.len(), MAX_LEND);
        assert_eq!(w.lent_slices(&huge).count(), MAX_LEND / 32768);
        assert!(w.out.len() < MAX_LEND + MAX_LEND / 32);
    }

    proptest! {
        /// Lends filled by reads of any sizes, committed in part or not at
        /// all, between other packets and the socket's writes, under every
        /// cipher: the peer reads exactly the bytes read, in order, in
        /// packets of at most `chunk` bytes of data.
        #[test]
        fn lent_packets_carry_exactly_what_was_read(
            mode_index in 0usize..16,
            chunk in 1usize..3000,
            stderr in any::<bool>(),
            steps in proptest::collection::vec((1usize..10_000, 0usize..10_001, 0u8..4), 1..40),
        ) {
            let modes = modes();
            let mode = &modes[mode_index % modes.len()];
            let mut rng = ChaCha20Rng::from_seed([6; 32]);
            let (mut w, mut r) = pair(mode);
            let head: &[u8] = if stderr { &[95, 0, 0, 0, 7, 0, 0, 0, 1] } else { &[94, 0, 0, 0, 7] };
            let (mut sent, mut others, mut next) = (Vec::new(), Vec::new(), 0u8);
            let (mut got, mut got_others) = (Vec::new(), Vec::new());
            let mut fed = 0;
            for (total, read, what) in steps {
                let mut lend = w.lend(head, chunk, total).unwrap();
                prop_assert_eq!(lend.len(), total);
                let n = read.min(total);
                // A read fills the areas in order, each at most `chunk`.
                let mut left = n;
                for area in w.lent_slices(&lend) {
                    prop_assert!(area.len() <= chunk);
                    let k = area.len().min(left);
                    for b in &mut area[..k] {
                        *b = next;
                        sent.push(next);
                        next = next.wrapping_add(1);
                    }
                    left -= k;
                }
                match what {
                    // Read, but dropped uncommitted: nothing goes.
                    0 => {
                        sent.truncate(sent.len() - n);
                        lend = w.lend(head, chunk, 1).unwrap();
                        prop_assert_eq!(w.commit(&mut rng, &lend, 0), 0);
                    }
                    _ => prop_assert_eq!(w.commit(&mut rng, &lend, n), n),
                }
                if what == 2 {
                    let p = vec![2, what, next];
                    w.packet(&mut rng, |out| out.extend_from_slice(&p));
                    others.push(p);
                }
                if what == 3 {
                    // The socket takes some: the rest moves to the front
                    // (or the buffer starts over) before the next lend.
                    let (data, o) = decode_lent(&w.pending()[fed..], &mut r, head, chunk);
                    got.extend(data);
                    got_others.extend(o);
                    fed = w.pending().len();
                    let taken = (read * 37).min(fed);
                    w.consume(taken);
                    fed -= taken;
                }
            }
            let (data, o) = decode_lent(&w.pending()[fed..], &mut r, head, chunk);
            got.extend(data);
            got_others.extend(o);
            prop_assert_eq!(got, sent);
            prop_assert_eq!(got_others, others);
        }

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
