//! Target `packet_reader`: the binary packet protocol's reader (RFC 4253 §6)
//! over arbitrary bytes in arbitrary chunks, plaintext or keyed.
//!
//! Input layout: `mode` (one byte, an index into [`MODES`]), `n` (one byte:
//! `n % 8 + 1` chunk-size bytes follow), the chunk sizes (cycled), then the
//! byte stream. Besides "no panic", the body checks that the chunked decode
//! equals a decode of the whole stream fed at once (packets, sequence
//! numbers and the first error), that every payload holds at least a
//! message number, and that the reader never holds more than one packet's
//! worth of undecoded bytes after being drained.

use gitmouth_core::transport::cipher::{CipherAlg, DirectionKeys, MacAlg, PacketCipher};
use gitmouth_core::transport::packet::{MAX_PACKET_LEN, PacketError, PacketReader};
use rand_core::Rng;

/// How the reader is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderMode {
    /// Before the first NEWKEYS.
    Plaintext,
    /// Keyed with [`ReaderMode::keys`] for this cipher and MAC.
    Keyed(CipherAlg, Option<MacAlg>),
}

/// The modes the first input byte chooses from (modulo their number).
pub const MODES: [ReaderMode; 6] = [
    ReaderMode::Plaintext,
    ReaderMode::Keyed(CipherAlg::ChaCha20Poly1305, None),
    ReaderMode::Keyed(CipherAlg::Aes128Gcm, None),
    ReaderMode::Keyed(CipherAlg::Aes256Gcm, None),
    ReaderMode::Keyed(CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256Etm)),
    ReaderMode::Keyed(CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512Etm)),
];

impl ReaderMode {
    /// The fixed keys of this mode (`None` for plaintext). Fixed so that
    /// the seed generator can write packets the reader will open, letting
    /// the fuzzer start from streams that get past the MAC.
    pub fn keys(self) -> Option<DirectionKeys> {
        let ReaderMode::Keyed(cipher, mac) = self else {
            return None;
        };
        let pattern = |len: usize, mask: u8| (0..len).map(|i| i as u8 ^ mask).collect::<Vec<u8>>();
        Some(DirectionKeys {
            cipher,
            mac,
            iv: pattern(cipher.iv_len(), 0).into(),
            enc_key: pattern(cipher.key_len(), 0x5a).into(),
            mac_key: pattern(mac.map_or(0, |m| m.key_len()), 0x33).into(),
        })
    }

    /// The cipher state of this mode.
    pub fn cipher(self) -> PacketCipher {
        match self.keys() {
            Some(keys) => PacketCipher::new(&keys),
            None => PacketCipher::plaintext(),
        }
    }

    /// This mode's index in [`MODES`], the input's first byte.
    pub fn index(self) -> u8 {
        MODES.iter().position(|m| *m == self).unwrap_or(0) as u8
    }
}

/// A chunk-size byte's meaning: mostly small chunks, sometimes large ones.
fn chunk_len(b: u8) -> usize {
    match b {
        0..=0xef => usize::from(b) + 1,
        _ => usize::from(b - 0xef) * 4096,
    }
}

/// What the reader made of a stream.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    /// Sequence number and payload of each packet, in order.
    packets: Vec<(u32, Vec<u8>)>,
    /// The error that ended decoding, if any.
    error: Option<PacketError>,
}

/// Feeds `stream` in chunks of the given sizes (cycled; all at once when
/// `sizes` is empty), draining the reader after each chunk.
fn decode(mode: ReaderMode, stream: &[u8], sizes: &[u8]) -> Decoded {
    let mut reader = PacketReader::new();
    reader.set_cipher(mode.cipher());
    let mut out = Decoded {
        packets: Vec::new(),
        error: None,
    };
    let mut at = 0;
    let mut cut = sizes.iter().cycle();
    loop {
        let rest = stream.len() - at;
        let n = cut.next().map_or(rest, |&b| chunk_len(b).min(rest));
        reader.feed(&stream[at..at + n]);
        at += n;
        loop {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    assert_eq!(
                        packet.seq,
                        out.packets.len() as u32,
                        "sequence numbers count packets"
                    );
                    let payload = reader.payload(&packet);
                    // The session indexes payload[0]: the reader promises a
                    // message number (its length check demands one).
                    assert!(!payload.is_empty(), "empty payload decoded");
                    assert!(payload.len() < MAX_PACKET_LEN as usize);
                    out.packets.push((packet.seq, payload.to_vec()));
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        // Drained: what is left is less than one packet, which the length
        // check bounds, so a peer cannot make the reader hold more.
        let bound = 4 + MAX_PACKET_LEN as usize + 64;
        assert!(
            reader.buffered() < bound,
            "{} bytes buffered after draining",
            reader.buffered()
        );
        if at == stream.len() {
            return out;
        }
    }
}

/// The body of the `packet_reader` target.
pub fn packet_reader(data: &[u8]) {
    let [mode, n, rest @ ..] = data else {
        return;
    };
    let mode = MODES[usize::from(*mode) % MODES.len()];
    let (sizes, stream) = rest.split_at((usize::from(n % 8) + 1).min(rest.len()));
    let chunked = decode(mode, stream, sizes);
    let whole = decode(mode, stream, &[]);
    assert_eq!(
        chunked, whole,
        "chunking changed what was decoded ({mode:?})"
    );
}

/// A `packet_reader` input: `mode`, the chunk sizes, then `stream`.
pub(crate) fn input(mode: ReaderMode, sizes: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!((1..=8).contains(&sizes.len()));
    let mut out = vec![mode.index(), sizes.len() as u8 - 1];
    out.extend_from_slice(sizes);
    out.extend_from_slice(stream);
    out
}

/// Packets with these payloads, sealed as the writer of `mode` would.
pub(crate) fn stream(mode: ReaderMode, rng: &mut dyn Rng, payloads: &[&[u8]]) -> Vec<u8> {
    let mut writer = gitmouth_core::transport::packet::PacketWriter::new();
    writer.set_cipher(mode.cipher());
    for payload in payloads {
        writer.packet(rng, |out| out.extend_from_slice(payload));
    }
    writer.pending().to_vec()
}
