//! How fast the packet layer seals and opens 32 KiB packets, per cipher, on
//! one core: a timed loop, not a test of correctness (the cipher module's
//! known-answer and property tests are). Ignored by default; run it in a
//! release build:
//!
//!     cargo test --release -p gitmouth-core --test packet_speed -- --ignored --nocapture
//!
//! and compare with `openssl speed -evp aes-128-gcm -bytes 32768` (and
//! `chacha20-poly1305`) on the same machine. Rates are per second of the
//! thread's own CPU time, so that other work on a shared machine inflates
//! them less than it would wall time. ring's primitives are timed beside
//! the packet layer, called directly on the same packets.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gitmouth_core::transport::cipher::{CipherAlg, DirectionKeys, MacAlg, PacketCipher};
use zeroize::Zeroizing;

/// Bytes of one packet (length field included): the largest channel data
/// packet OpenSSH sends is about this.
const PACKET: usize = 32 * 1024;
/// Packets sealed ahead of each timed batch of opens.
const BATCH: usize = 32;
/// CPU time spent on each measurement.
const RUN: Duration = Duration::from_millis(1000);

/// The thread's CPU time so far.
fn cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A way to seal and open, keyed the same in both directions.
trait Aead {
    fn tag_len(&self) -> usize;
    fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]);
    fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]);
}

/// The packet layer: a sealing and an opening state.
struct Layer(PacketCipher, PacketCipher);

impl Aead for Layer {
    fn tag_len(&self) -> usize {
        self.0.tag_len()
    }
    fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        self.0.seal(seq, packet, tag);
    }
    fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) {
        self.1.open(seq, packet, tag).unwrap();
    }
}

/// ring's AES-GCM, nonce = 8 zero bytes || seq, the length as AAD.
struct RingGcm(ring::aead::LessSafeKey);

impl RingGcm {
    fn nonce(seq: u32) -> ring::aead::Nonce {
        let mut n = [0u8; 12];
        n[8..].copy_from_slice(&seq.to_be_bytes());
        ring::aead::Nonce::assume_unique_for_key(n)
    }
}

impl Aead for RingGcm {
    fn tag_len(&self) -> usize {
        16
    }
    fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        let (aad, body) = packet.split_at_mut(4);
        let aad = ring::aead::Aad::from(<[u8; 4]>::try_from(&*aad).unwrap());
        let t = self
            .0
            .seal_in_place_separate_tag(Self::nonce(seq), aad, body)
            .unwrap();
        tag.copy_from_slice(t.as_ref());
    }
    fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) {
        let (aad, body) = packet.split_at_mut(4);
        let aad = ring::aead::Aad::from(<[u8; 4]>::try_from(&*aad).unwrap());
        let tag = ring::aead::Tag::try_from(tag).unwrap();
        self.0
            .open_in_place_separate_tag(Self::nonce(seq), aad, tag, body, 0..)
            .unwrap();
    }
}

/// ring's chacha20-poly1305@openssh.com.
struct RingChaCha(
    ring::aead::chacha20_poly1305_openssh::SealingKey,
    ring::aead::chacha20_poly1305_openssh::OpeningKey,
);

impl Aead for RingChaCha {
    fn tag_len(&self) -> usize {
        16
    }
    fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        self.0.seal_in_place(seq, packet, tag.try_into().unwrap());
    }
    fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) {
        self.1
            .open_in_place(seq, packet, tag.try_into().unwrap())
            .unwrap();
    }
}

/// Seal and open rates, in MB/s (10^6 bytes of packet per CPU second).
fn measure(aead: &mut dyn Aead) -> (f64, f64) {
    let mut packets = vec![vec![0u8; PACKET]; BATCH];
    let mut tags = vec![vec![0u8; aead.tag_len()]; BATCH];
    let mut seq = 0u32;
    let (mut sealed, mut opened) = (0usize, 0usize);
    let (mut seal_time, mut open_time) = (Duration::ZERO, Duration::ZERO);
    while seal_time < RUN || open_time < RUN {
        let start = cpu();
        for (i, (packet, tag)) in packets.iter_mut().zip(&mut tags).enumerate() {
            packet[..4].copy_from_slice(&(PACKET as u32 - 4).to_be_bytes());
            aead.seal(seq.wrapping_add(i as u32), packet, tag);
        }
        seal_time += cpu() - start;
        sealed += BATCH;
        let start = cpu();
        for (i, (packet, tag)) in packets.iter_mut().zip(&tags).enumerate() {
            aead.open(seq.wrapping_add(i as u32), packet, tag);
        }
        open_time += cpu() - start;
        opened += BATCH;
        seq = seq.wrapping_add(BATCH as u32);
    }
    let rate = |n: usize, t: Duration| (n * PACKET) as f64 / t.as_secs_f64() / 1e6;
    (rate(sealed, seal_time), rate(opened, open_time))
}

fn keys(cipher: CipherAlg, mac: Option<MacAlg>) -> DirectionKeys {
    DirectionKeys {
        cipher,
        mac,
        iv: Zeroizing::new(vec![7; cipher.iv_len()]),
        enc_key: Zeroizing::new(vec![9; cipher.key_len()]),
        mac_key: Zeroizing::new(vec![5; mac.map_or(0, |m| m.key_len())]),
    }
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn packet_layer_speed() {
    use ring::aead::{
        AES_128_GCM, AES_256_GCM, LessSafeKey, UnboundKey, chacha20_poly1305_openssh,
    };
    let mut cases: Vec<(String, Box<dyn Aead>)> = Vec::new();
    for (cipher, mac) in [
        (CipherAlg::Aes128Gcm, None),
        (CipherAlg::Aes256Gcm, None),
        (CipherAlg::ChaCha20Poly1305, None),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256Etm)),
    ] {
        let name = match mac {
            Some(m) => format!("{}+{}", cipher.name(), m.name()),
            None => cipher.name().to_owned(),
        };
        let k = keys(cipher, mac);
        cases.push((
            name,
            Box::new(Layer(PacketCipher::new(&k), PacketCipher::new(&k))),
        ));
    }
    for (alg, name, len) in [
        (&AES_128_GCM, "ring AES-128-GCM, direct", 16),
        (&AES_256_GCM, "ring AES-256-GCM, direct", 32),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &vec![9; len]).unwrap());
        cases.push((name.to_owned(), Box::new(RingGcm(key))));
    }
    let key = [9u8; 64];
    cases.push((
        "ring chacha20-poly1305@openssh.com, direct".to_owned(),
        Box::new(RingChaCha(
            chacha20_poly1305_openssh::SealingKey::new(&key),
            chacha20_poly1305_openssh::OpeningKey::new(&key),
        )),
    ));
    println!(
        "{:<52} {:>10} {:>10}",
        "32 KiB packets, one core (CPU time)", "seal MB/s", "open MB/s"
    );
    for (name, aead) in &mut cases {
        let (seal, open) = measure(aead.as_mut());
        println!("{name:<52} {seal:>10.0} {open:>10.0}");
    }
}
