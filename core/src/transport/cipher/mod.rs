//! Packet encryption and MACs for one direction of the binary packet protocol
//! (RFC 4253 §6.3-6.4): chacha20-poly1305@openssh.com (OpenSSH
//! PROTOCOL.chacha20poly1305), aes*-gcm@openssh.com (RFC 5647 with OpenSSH's
//! negotiation rules), and aes*-ctr (RFC 4344 §4) with the SHA-2 HMACs
//! (RFC 6668), encrypt-then-MAC (OpenSSH PROTOCOL §1.5) or, for old clients
//! and only when configured, encrypt-and-MAC.
//!
//! The packet framing owns the buffers; this module only transforms them in
//! place. For one received packet the framing layer calls
//! [`PacketCipher::decrypt_length`] on the first four bytes as soon as they
//! have arrived, waits for the rest of the packet and the `tag_len()` bytes of
//! tag, then calls [`PacketCipher::open`]. For one packet to send it lays out
//! `packet_length || padding_length || payload || padding` in plaintext,
//! calls [`PacketCipher::seal`] and sends the buffer followed by the tag.
//!
//! Every default mode authenticates the packet length without the framing
//! having to decrypt anything unauthenticated (chacha encrypts it under a
//! separate key, GCM and EtM leave it in clear as associated data). The
//! encrypt-and-MAC HMACs (`hmac-sha2-256`, `hmac-sha2-512`) cannot: the
//! length is decrypted before the MAC over the plaintext can be checked.
//! With CTR that is no padding oracle, but audits fault it, so they are off
//! unless `--legacy-algorithms` or `--macs` asks for them; the CBC ciphers
//! and SHA-1 MACs are not implemented at all.
//!
//! Nothing here allocates per packet: keyed states are built once in
//! [`PacketCipher::new`] and each packet only copies small fixed-size states
//! on the stack.

mod chacha;
mod ctr_hmac;
mod gcm;

use core::fmt;

use zeroize::Zeroizing;

/// Cipher algorithms, in our order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipherAlg {
    /// `chacha20-poly1305@openssh.com`: the preferred AEAD, fast without AES hardware.
    ChaCha20Poly1305,
    /// `aes256-gcm@openssh.com`.
    Aes256Gcm,
    /// `aes128-gcm@openssh.com`.
    Aes128Gcm,
    /// `aes256-ctr` (RFC 4344), with one of the HMACs.
    Aes256Ctr,
    /// `aes128-ctr` (RFC 4344), with one of the HMACs.
    Aes128Ctr,
}

impl CipherAlg {
    /// Every supported cipher, most preferred first.
    pub const ALL: [CipherAlg; 5] = [
        CipherAlg::ChaCha20Poly1305,
        CipherAlg::Aes256Gcm,
        CipherAlg::Aes128Gcm,
        CipherAlg::Aes256Ctr,
        CipherAlg::Aes128Ctr,
    ];

    /// The algorithm's name in KEXINIT name-lists.
    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::ChaCha20Poly1305 => "chacha20-poly1305@openssh.com",
            CipherAlg::Aes256Gcm => "aes256-gcm@openssh.com",
            CipherAlg::Aes128Gcm => "aes128-gcm@openssh.com",
            CipherAlg::Aes256Ctr => "aes256-ctr",
            CipherAlg::Aes128Ctr => "aes128-ctr",
        }
    }

    /// The algorithm with this exact (case-sensitive) name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Bytes of encryption key to derive (RFC 4253 §7.2, letters C/D).
    pub fn key_len(self) -> usize {
        match self {
            CipherAlg::ChaCha20Poly1305 => chacha::KEY_LEN,
            CipherAlg::Aes256Gcm | CipherAlg::Aes256Ctr => 32,
            CipherAlg::Aes128Gcm | CipherAlg::Aes128Ctr => 16,
        }
    }

    /// Bytes of IV to derive (RFC 4253 §7.2, letters A/B); chacha uses none.
    pub fn iv_len(self) -> usize {
        match self {
            CipherAlg::ChaCha20Poly1305 => 0,
            CipherAlg::Aes256Gcm | CipherAlg::Aes128Gcm => gcm::IV_LEN,
            CipherAlg::Aes256Ctr | CipherAlg::Aes128Ctr => ctr_hmac::IV_LEN,
        }
    }

    /// Whether the cipher authenticates by itself: the negotiated MAC is then
    /// ignored and no MAC key is derived (PROTOCOL.chacha20poly1305, and
    /// OpenSSH's rule for AES-GCM that replaced RFC 5647 §5.1).
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            CipherAlg::ChaCha20Poly1305 | CipherAlg::Aes256Gcm | CipherAlg::Aes128Gcm
        )
    }

    /// The block size the padded packet must be a multiple of (RFC 4253 §6).
    pub fn block_size(self) -> usize {
        match self {
            // A stream cipher: RFC 4253's minimum of 8 applies.
            CipherAlg::ChaCha20Poly1305 => 8,
            _ => 16,
        }
    }
}

/// MACs, used only with the CTR ciphers (an AEAD cipher ignores the
/// negotiated MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacAlg {
    /// `hmac-sha2-256-etm@openssh.com`: encrypt-then-MAC.
    HmacSha256Etm,
    /// `hmac-sha2-512-etm@openssh.com`: encrypt-then-MAC.
    HmacSha512Etm,
    /// `hmac-sha2-256` (RFC 6668): encrypt-and-MAC, for old clients only.
    HmacSha256,
    /// `hmac-sha2-512` (RFC 6668): encrypt-and-MAC, for old clients only.
    HmacSha512,
}

impl MacAlg {
    /// Every supported MAC, most preferred first.
    pub const ALL: [MacAlg; 4] = [
        MacAlg::HmacSha256Etm,
        MacAlg::HmacSha512Etm,
        MacAlg::HmacSha256,
        MacAlg::HmacSha512,
    ];

    /// The MACs offered by default: the encrypt-then-MAC ones.
    pub const DEFAULT: [MacAlg; 2] = [MacAlg::HmacSha256Etm, MacAlg::HmacSha512Etm];

    /// What `--legacy-algorithms` appends to the default.
    pub const LEGACY: [MacAlg; 2] = [MacAlg::HmacSha256, MacAlg::HmacSha512];

    /// The algorithm's name in KEXINIT name-lists.
    pub fn name(self) -> &'static str {
        match self {
            MacAlg::HmacSha256Etm => "hmac-sha2-256-etm@openssh.com",
            MacAlg::HmacSha512Etm => "hmac-sha2-512-etm@openssh.com",
            MacAlg::HmacSha256 => "hmac-sha2-256",
            MacAlg::HmacSha512 => "hmac-sha2-512",
        }
    }

    /// The algorithm with this exact (case-sensitive) name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Whether the MAC is computed over the ciphertext, with the length in
    /// clear (OpenSSH PROTOCOL §1.5), rather than over the plaintext.
    pub fn is_etm(self) -> bool {
        matches!(self, MacAlg::HmacSha256Etm | MacAlg::HmacSha512Etm)
    }

    /// Bytes of MAC key to derive (RFC 6668 §2: the hash's output length).
    pub fn key_len(self) -> usize {
        match self {
            MacAlg::HmacSha256Etm | MacAlg::HmacSha256 => 32,
            MacAlg::HmacSha512Etm | MacAlg::HmacSha512 => 64,
        }
    }

    /// Bytes of MAC appended to each packet (never truncated, RFC 6668 §2).
    pub fn tag_len(self) -> usize {
        self.key_len()
    }
}

/// Keys for one direction, as derived by the key exchange (RFC 4253 §7.2).
pub struct DirectionKeys {
    /// The negotiated cipher.
    pub cipher: CipherAlg,
    /// The negotiated MAC; ignored when `cipher.is_aead()`.
    pub mac: Option<MacAlg>,
    /// Initial IV, exactly `cipher.iv_len()` bytes.
    pub iv: Zeroizing<Vec<u8>>,
    /// Encryption key, exactly `cipher.key_len()` bytes.
    pub enc_key: Zeroizing<Vec<u8>>,
    /// Integrity key, exactly `mac.key_len()` bytes; ignored (normally empty)
    /// when `cipher.is_aead()`.
    pub mac_key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for DirectionKeys {
    /// Shows the algorithms and key lengths, never the key bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("cipher", &self.cipher)
            .field("mac", &self.mac)
            .field("iv_len", &self.iv.len())
            .field("enc_key_len", &self.enc_key.len())
            .field("mac_key_len", &self.mac_key.len())
            .finish_non_exhaustive()
    }
}

/// A received packet failed authentication: its MAC or AEAD tag does not
/// match. The peer (or something on the path) sent corrupted or forged bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct MacError;

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message authentication failed")
    }
}

impl std::error::Error for MacError {}

/// [`DirectionKeys`] that do not fit their algorithms: a bug in whoever
/// derived them, never something a peer can cause.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum KeyError {
    /// A key or IV is not the length its algorithm needs.
    WrongLength {
        /// Which field of [`DirectionKeys`]: `"enc_key"`, `"iv"` or `"mac_key"`.
        field: &'static str,
        /// The length the algorithm needs.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A cipher that needs a MAC (a CTR cipher) was given none.
    MacMissing(CipherAlg),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongLength {
                field,
                expected,
                actual,
            } => write!(
                f,
                "{field} is {actual} bytes, the algorithm needs {expected}"
            ),
            KeyError::MacMissing(cipher) => write!(f, "{} needs a MAC", cipher.name()),
        }
    }
}

impl std::error::Error for KeyError {}

/// One direction's packet protection state.
///
/// Its `Debug` output names the algorithms and shows no key material.
pub struct PacketCipher {
    mode: Mode,
}

/// The keyed state of each mode. The keyed states are boxed so that a
/// `PacketCipher` stays small to move (AES key schedules and HMAC states are
/// several hundred bytes); the box is allocated once per key exchange.
enum Mode {
    Plaintext,
    ChaCha(Box<chacha::ChaChaPoly>),
    Gcm(Box<gcm::Gcm>),
    CtrHmac(Box<ctr_hmac::CtrHmac>),
}

/// Checks that `bytes` is exactly `N` long and borrows it as an array.
fn exact<'a, const N: usize>(
    field: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8; N], KeyError> {
    bytes.try_into().map_err(|_| KeyError::WrongLength {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

impl PacketCipher {
    /// The state before the first NEWKEYS: no encryption, no MAC.
    pub fn plaintext() -> Self {
        PacketCipher {
            mode: Mode::Plaintext,
        }
    }

    /// Keys this direction, checking every length.
    ///
    /// For an AEAD cipher `keys.mac` and `keys.mac_key` are ignored.
    pub fn try_new(keys: &DirectionKeys) -> Result<Self, KeyError> {
        let mode = match keys.cipher {
            CipherAlg::ChaCha20Poly1305 => {
                exact::<0>("iv", &keys.iv)?;
                let key = exact::<{ chacha::KEY_LEN }>("enc_key", &keys.enc_key)?;
                Mode::ChaCha(Box::new(chacha::ChaChaPoly::new(key)))
            }
            CipherAlg::Aes256Gcm => {
                let iv = exact::<{ gcm::IV_LEN }>("iv", &keys.iv)?;
                let key = exact::<32>("enc_key", &keys.enc_key)?;
                Mode::Gcm(Box::new(gcm::Gcm::new_aes256(key, iv)))
            }
            CipherAlg::Aes128Gcm => {
                let iv = exact::<{ gcm::IV_LEN }>("iv", &keys.iv)?;
                let key = exact::<16>("enc_key", &keys.enc_key)?;
                Mode::Gcm(Box::new(gcm::Gcm::new_aes128(key, iv)))
            }
            CipherAlg::Aes256Ctr | CipherAlg::Aes128Ctr => {
                let mac_alg = keys.mac.ok_or(KeyError::MacMissing(keys.cipher))?;
                let iv = exact::<{ ctr_hmac::IV_LEN }>("iv", &keys.iv)?;
                let keystream = if keys.cipher == CipherAlg::Aes256Ctr {
                    ctr_hmac::Keystream::new_aes256(exact::<32>("enc_key", &keys.enc_key)?, iv)
                } else {
                    ctr_hmac::Keystream::new_aes128(exact::<16>("enc_key", &keys.enc_key)?, iv)
                };
                let mac = match mac_alg {
                    MacAlg::HmacSha256Etm | MacAlg::HmacSha256 => {
                        ctr_hmac::Mac::new_sha256(exact::<32>("mac_key", &keys.mac_key)?)
                    }
                    MacAlg::HmacSha512Etm | MacAlg::HmacSha512 => {
                        ctr_hmac::Mac::new_sha512(exact::<64>("mac_key", &keys.mac_key)?)
                    }
                };
                Mode::CtrHmac(Box::new(ctr_hmac::CtrHmac::new(keystream, mac, mac_alg)))
            }
        };
        Ok(PacketCipher { mode })
    }

    /// Keys this direction.
    ///
    /// # Panics
    ///
    /// If a key or IV has the wrong length for its algorithm, or a CTR cipher
    /// has no MAC: a bug in the key derivation, never the peer's doing (see
    /// [`PacketCipher::try_new`] for the checking version).
    pub fn new(keys: &DirectionKeys) -> Self {
        match Self::try_new(keys) {
            Ok(cipher) => cipher,
            Err(e) => panic!("PacketCipher::new with bad keys ({keys:?}): {e}"),
        }
    }

    /// The block size the padded packet must be a multiple of: 8 for
    /// plaintext and chacha, 16 for the AES modes.
    pub fn block_size(&self) -> usize {
        match &self.mode {
            Mode::Plaintext | Mode::ChaCha(_) => 8,
            Mode::Gcm(_) | Mode::CtrHmac(_) => 16,
        }
    }

    /// Bytes of MAC or tag that follow each packet: 0 for plaintext, 16 for
    /// chacha and GCM, the HMAC's output length for CTR.
    pub fn tag_len(&self) -> usize {
        match &self.mode {
            Mode::Plaintext => 0,
            Mode::ChaCha(_) => chacha::TAG_LEN,
            Mode::Gcm(_) => gcm::TAG_LEN,
            Mode::CtrHmac(state) => state.tag_len(),
        }
    }

    /// Whether the 4-byte packet_length is excluded from the block-size
    /// multiple: true for chacha, GCM and EtM, which treat it as associated
    /// data (RFC 5647 §7.2, PROTOCOL §1.5); false for plaintext and
    /// encrypt-and-MAC, which encrypt it with the rest (RFC 4253 §6).
    pub fn length_excluded_from_padding(&self) -> bool {
        match &self.mode {
            Mode::Plaintext => false,
            Mode::ChaCha(_) | Mode::Gcm(_) => true,
            Mode::CtrHmac(state) => state.length_in_clear(),
        }
    }

    /// Reads packet_length from the first four bytes as received, decrypting
    /// it for chacha20-poly1305 (with K_1 and the sequence number) and for
    /// encrypt-and-MAC (with the keystream, rewound afterwards), without
    /// changing what the next call or [`PacketCipher::open`] sees.
    ///
    /// The result is not authenticated until [`PacketCipher::open`] succeeds;
    /// the framing may only use it to bound and size the read.
    pub fn decrypt_length(&mut self, seq: u32, first4: [u8; 4]) -> u32 {
        match &mut self.mode {
            Mode::ChaCha(state) => state.decrypt_length(seq, first4),
            Mode::CtrHmac(state) => state.decrypt_length(first4),
            Mode::Plaintext | Mode::Gcm(_) => u32::from_be_bytes(first4),
        }
    }

    /// Verifies `tag` over the packet as received and, only if it verifies,
    /// decrypts it in place.
    ///
    /// `packet` is the 4 length bytes exactly as received followed by the rest
    /// of the packet (padding_length, payload, padding); `tag` is the
    /// `tag_len()` bytes that followed it. The tag comparison is constant-time.
    /// On success all of `packet` is plaintext: `packet[4..]` is decrypted,
    /// and for chacha and encrypt-and-MAC the length bytes are decrypted too,
    /// so `packet[..4]` holds the plaintext packet_length in every mode.
    ///
    /// # Errors
    ///
    /// [`MacError`] if the tag does not verify, `tag` is not `tag_len()` bytes
    /// or `packet` is shorter than 4 bytes. Then `packet` holds no
    /// unauthenticated plaintext (it is untouched, except that AES-GCM, which
    /// decrypts as it authenticates, zeroes the bytes after the length) and
    /// this state changed nothing, but the connection must be treated as dead.
    pub fn open(&mut self, seq: u32, packet: &mut [u8], tag: &[u8]) -> Result<(), MacError> {
        if packet.len() < 4 {
            return Err(MacError);
        }
        match &mut self.mode {
            Mode::Plaintext if tag.is_empty() => Ok(()),
            Mode::Plaintext => Err(MacError),
            Mode::ChaCha(state) => state.open(seq, packet, tag.try_into().map_err(|_| MacError)?),
            Mode::Gcm(state) => state.open(packet, tag.try_into().map_err(|_| MacError)?),
            Mode::CtrHmac(state) => state.open(seq, packet, tag),
        }
    }

    /// Encrypts in place.
    ///
    /// `packet` is the plaintext packet_length (4 bytes, big-endian),
    /// padding_length, payload and padding; afterwards it holds the bytes to
    /// send (chacha and encrypt-and-MAC also encrypt the length; the other
    /// modes leave it in clear) and `tag` holds the MAC or tag to append.
    ///
    /// # Panics
    ///
    /// If `packet` is shorter than 4 bytes, `tag` is not exactly `tag_len()`
    /// bytes, or (GCM) `packet` exceeds AES-GCM's 64 GiB limit: all bugs in
    /// the caller's framing, which caps packets far lower.
    pub fn seal(&mut self, seq: u32, packet: &mut [u8], tag: &mut [u8]) {
        assert!(packet.len() >= 4, "a packet starts with its 4-byte length");
        assert_eq!(tag.len(), self.tag_len(), "tag buffer must be tag_len()");
        match &mut self.mode {
            Mode::Plaintext => {}
            // The conversions always succeed after the assert above.
            Mode::ChaCha(state) => {
                if let Ok(tag) = tag.try_into() {
                    state.seal(seq, packet, tag);
                }
            }
            Mode::Gcm(state) => {
                if let Ok(tag) = tag.try_into() {
                    state.seal(packet, tag);
                }
            }
            Mode::CtrHmac(state) => state.seal(seq, packet, tag),
        }
    }
}

impl fmt::Debug for PacketCipher {
    /// Names the mode and algorithms; never shows keys or counters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("PacketCipher");
        match &self.mode {
            Mode::Plaintext => s.field("mode", &"plaintext"),
            Mode::ChaCha(_) => s.field("cipher", &CipherAlg::ChaCha20Poly1305),
            Mode::Gcm(state) => s.field("cipher", &state.alg()),
            Mode::CtrHmac(state) => s
                .field("cipher", &state.cipher_alg())
                .field("mac", &state.mac_alg()),
        };
        s.finish_non_exhaustive()
    }
}

/// Helpers shared by the tests of this module and its submodules.
#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used)]

    /// Decodes a hex string (whitespace ignored).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len().is_multiple_of(2), "odd hex length");
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// Lays out a plaintext packet as the framing would (RFC 4253 §6):
    /// `packet_length || padding_length || payload || padding`, with at least
    /// 4 bytes of padding so that the padded length is a multiple of
    /// `block_size`, counting the length field only if `length_included`.
    pub(crate) fn frame(
        payload: &[u8],
        block_size: usize,
        length_included: bool,
        pad_byte: u8,
    ) -> Vec<u8> {
        let counted = usize::from(length_included) * 4 + 1 + payload.len();
        let mut padding = block_size - counted % block_size;
        if padding < 4 {
            padding += block_size;
        }
        let packet_length = u32::try_from(1 + payload.len() + padding).unwrap();
        let mut packet = Vec::with_capacity(4 + packet_length as usize);
        packet.extend_from_slice(&packet_length.to_be_bytes());
        packet.push(u8::try_from(padding).unwrap());
        packet.extend_from_slice(payload);
        packet.extend(std::iter::repeat_n(pad_byte, padding));
        packet
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::test_support::frame;
    use super::*;
    use proptest::prelude::*;

    /// Every (cipher, MAC) pairing this module supports.
    const CONFIGS: [(CipherAlg, Option<MacAlg>); 11] = [
        (CipherAlg::ChaCha20Poly1305, None),
        (CipherAlg::Aes256Gcm, None),
        (CipherAlg::Aes128Gcm, None),
        (CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha256Etm)),
        (CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512Etm)),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256Etm)),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha512Etm)),
        (CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha256)),
        (CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512)),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256)),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha512)),
    ];

    /// Whether `config` sends the length encrypted (chacha, encrypt-and-MAC).
    fn length_encrypted(config: (CipherAlg, Option<MacAlg>)) -> bool {
        config.0 == CipherAlg::ChaCha20Poly1305 || config.1.is_some_and(|m| !m.is_etm())
    }

    /// Keys for `config` cut from `material` (at least 64 + 16 + 64 bytes).
    fn keys(config: (CipherAlg, Option<MacAlg>), material: &[u8]) -> DirectionKeys {
        let (cipher, mac) = config;
        let (enc, rest) = material.split_at(cipher.key_len());
        let (iv, rest) = rest.split_at(cipher.iv_len());
        let mac_key = &rest[..mac.map_or(0, MacAlg::key_len)];
        DirectionKeys {
            cipher,
            mac,
            iv: Zeroizing::new(iv.to_vec()),
            enc_key: Zeroizing::new(enc.to_vec()),
            mac_key: Zeroizing::new(mac_key.to_vec()),
        }
    }

    /// A sender and a receiver keyed alike.
    fn pair(config: (CipherAlg, Option<MacAlg>), material: &[u8]) -> (PacketCipher, PacketCipher) {
        let k = keys(config, material);
        (PacketCipher::new(&k), PacketCipher::new(&k))
    }

    fn frame_for(cipher: &PacketCipher, payload: &[u8]) -> Vec<u8> {
        frame(
            payload,
            cipher.block_size(),
            !cipher.length_excluded_from_padding(),
            0xa5,
        )
    }

    #[test]
    fn names_round_trip_and_sizes_match_the_specs() {
        let table = [
            (
                CipherAlg::ChaCha20Poly1305,
                "chacha20-poly1305@openssh.com",
                64,
                0,
                true,
                8,
            ),
            (
                CipherAlg::Aes256Gcm,
                "aes256-gcm@openssh.com",
                32,
                12,
                true,
                16,
            ),
            (
                CipherAlg::Aes128Gcm,
                "aes128-gcm@openssh.com",
                16,
                12,
                true,
                16,
            ),
            (CipherAlg::Aes256Ctr, "aes256-ctr", 32, 16, false, 16),
            (CipherAlg::Aes128Ctr, "aes128-ctr", 16, 16, false, 16),
        ];
        assert_eq!(CipherAlg::ALL.to_vec(), table.map(|row| row.0).to_vec());
        for (alg, name, key_len, iv_len, aead, block) in table {
            assert_eq!(alg.name(), name);
            assert_eq!(CipherAlg::from_name(name), Some(alg));
            assert_eq!(alg.key_len(), key_len);
            assert_eq!(alg.iv_len(), iv_len);
            assert_eq!(alg.is_aead(), aead);
            assert_eq!(alg.block_size(), block);
        }
        let macs = [
            (
                MacAlg::HmacSha256Etm,
                "hmac-sha2-256-etm@openssh.com",
                32,
                true,
            ),
            (
                MacAlg::HmacSha512Etm,
                "hmac-sha2-512-etm@openssh.com",
                64,
                true,
            ),
            (MacAlg::HmacSha256, "hmac-sha2-256", 32, false),
            (MacAlg::HmacSha512, "hmac-sha2-512", 64, false),
        ];
        assert_eq!(MacAlg::ALL.to_vec(), macs.map(|row| row.0).to_vec());
        for (alg, name, len, etm) in macs {
            assert_eq!(alg.name(), name);
            assert_eq!(MacAlg::from_name(name), Some(alg));
            assert_eq!(alg.key_len(), len);
            assert_eq!(alg.tag_len(), len);
            assert_eq!(alg.is_etm(), etm);
            // Exactly the encrypt-and-MAC ones are legacy.
            assert_eq!(MacAlg::DEFAULT.contains(&alg), etm);
            assert_eq!(MacAlg::LEGACY.contains(&alg), !etm);
        }
        for unknown in [
            "",
            "aes256-cbc",
            "AES256-CTR",
            "hmac-sha1",
            "hmac-sha2-256-etm",
            "umac-64-etm@openssh.com",
            "chacha20-poly1305",
        ] {
            assert_eq!(CipherAlg::from_name(unknown), None);
            assert_eq!(MacAlg::from_name(unknown), None);
        }
    }

    #[test]
    fn per_mode_sizes() {
        let material = [7u8; 160];
        let plain = PacketCipher::plaintext();
        assert_eq!((plain.block_size(), plain.tag_len()), (8, 0));
        assert!(!plain.length_excluded_from_padding());
        for config in CONFIGS {
            let (c, _) = pair(config, &material);
            assert_eq!(c.block_size(), config.0.block_size(), "{config:?}");
            let tag_len = config.1.map_or(16, MacAlg::tag_len);
            assert_eq!(c.tag_len(), tag_len, "{config:?}");
            let encrypt_and_mac = config.1.is_some_and(|m| !m.is_etm());
            assert_eq!(
                c.length_excluded_from_padding(),
                !encrypt_and_mac,
                "{config:?}"
            );
        }
    }

    #[test]
    fn bad_keys_are_reported_not_used() {
        let material = [1u8; 160];
        for config in CONFIGS {
            let good = keys(config, &material);
            assert!(PacketCipher::try_new(&good).is_ok());

            let mut k = keys(config, &material);
            k.enc_key.push(0);
            assert_eq!(
                PacketCipher::try_new(&k).err(),
                Some(KeyError::WrongLength {
                    field: "enc_key",
                    expected: config.0.key_len(),
                    actual: config.0.key_len() + 1,
                })
            );

            let mut k = keys(config, &material);
            k.iv.push(0);
            assert!(matches!(
                PacketCipher::try_new(&k),
                Err(KeyError::WrongLength { field: "iv", .. })
            ));

            let mut k = keys(config, &material);
            k.mac_key.pop();
            if config.0.is_aead() {
                // An AEAD ignores the MAC and its key entirely.
                assert!(PacketCipher::try_new(&k).is_ok());
            } else {
                assert!(matches!(
                    PacketCipher::try_new(&k),
                    Err(KeyError::WrongLength {
                        field: "mac_key",
                        ..
                    })
                ));
                k.mac = None;
                assert_eq!(
                    PacketCipher::try_new(&k).err(),
                    Some(KeyError::MacMissing(config.0))
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "bad keys")]
    fn new_panics_on_bad_keys() {
        let mut k = keys(CONFIGS[0], &[0u8; 160]);
        k.enc_key.truncate(32);
        let _ = PacketCipher::new(&k);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let material = [0x5au8; 160];
        for config in CONFIGS {
            let k = keys(config, &material);
            let shown = format!("{k:?} {:?}", PacketCipher::new(&k));
            assert!(shown.contains(&format!("{:?}", config.0)), "{shown}");
            // 0x5a is 90: no byte of the keys may appear, in any radix.
            assert!(
                !shown.contains("90") && !shown.to_lowercase().contains("5a"),
                "{shown}"
            );
        }
        assert!(format!("{:?}", PacketCipher::plaintext()).contains("plaintext"));
    }

    #[test]
    fn plaintext_mode_passes_bytes_through() {
        let mut c = PacketCipher::plaintext();
        let original = frame(b"hello", 8, true, 0);
        let mut packet = original.clone();
        c.seal(3, &mut packet, &mut []);
        assert_eq!(packet, original);
        assert_eq!(c.decrypt_length(3, packet[..4].try_into().unwrap()), 12);
        assert_eq!(c.open(3, &mut packet, &[]), Ok(()));
        assert_eq!(packet, original);
        // A tag where none is expected is a MAC failure, not ignored.
        assert_eq!(c.open(3, &mut packet, &[0]), Err(MacError));
    }

    #[test]
    fn malformed_open_arguments_are_errors_not_panics() {
        let material = [3u8; 160];
        for config in CONFIGS {
            let (mut tx, mut rx) = pair(config, &material);
            let mut packet = frame_for(&tx, b"payload");
            let mut tag = vec![0u8; tx.tag_len()];
            tx.seal(0, &mut packet, &mut tag);
            for short in 0..4 {
                let mut p = packet[..short].to_vec();
                assert_eq!(rx.open(0, &mut p, &tag), Err(MacError), "{config:?}");
            }
            let mut longer = tag.clone();
            longer.push(0);
            for bad_tag in [&tag[..tag.len() - 1], &longer[..], &[]] {
                let mut p = packet.clone();
                assert_eq!(rx.open(0, &mut p, bad_tag), Err(MacError), "{config:?}");
                assert_eq!(p, packet, "{config:?}: nothing decrypted");
            }
            // The failed attempts changed nothing: the real packet still opens.
            assert_eq!(rx.open(0, &mut packet, &tag), Ok(()), "{config:?}");
        }
    }

    #[test]
    fn wrong_sequence_number_fails_where_it_is_authenticated() {
        // chacha and EtM bind the sequence number; GCM's nonce is its own
        // invocation counter, so only the first two are checked here.
        let material = [9u8; 160];
        for config in CONFIGS
            .into_iter()
            .filter(|c| !matches!(c.0, CipherAlg::Aes256Gcm | CipherAlg::Aes128Gcm))
        {
            let (mut tx, mut rx) = pair(config, &material);
            let mut packet = frame_for(&tx, b"0123456789");
            let mut tag = vec![0u8; tx.tag_len()];
            tx.seal(41, &mut packet, &mut tag);
            let received = packet.clone();
            assert_eq!(rx.open(42, &mut packet, &tag), Err(MacError), "{config:?}");
            assert_eq!(packet, received);
            assert_eq!(rx.open(41, &mut packet, &tag), Ok(()), "{config:?}");
        }
    }

    #[test]
    #[should_panic(expected = "tag_len")]
    fn seal_panics_on_a_wrong_tag_buffer() {
        let (mut tx, _) = pair(CONFIGS[0], &[0u8; 160]);
        let mut packet = frame_for(&tx, b"x");
        tx.seal(0, &mut packet, &mut [0u8; 15]);
    }

    fn config_strategy() -> impl Strategy<Value = (CipherAlg, Option<MacAlg>)> {
        proptest::sample::select(CONFIGS.to_vec())
    }

    fn seq_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), (u32::MAX - 8)..=u32::MAX, 0u32..8]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Consecutive packets of random sizes survive seal then open in every
        /// mode, including across the sequence number's wrap to 0.
        #[test]
        fn round_trip(
            config in config_strategy(),
            material in proptest::collection::vec(any::<u8>(), 160),
            first_seq in seq_strategy(),
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..12),
        ) {
            let (mut tx, mut rx) = pair(config, &material);
            let mut seq = first_seq;
            for payload in &payloads {
                let original = frame_for(&tx, payload);
                let mut packet = original.clone();
                let mut tag = vec![0u8; tx.tag_len()];
                tx.seal(seq, &mut packet, &mut tag);

                // The padded length is a multiple of the block size, the
                // length field excluded where the mode excludes it, as the
                // framing will check.
                let counted = if tx.length_excluded_from_padding() { packet.len() - 4 } else { packet.len() };
                prop_assert_eq!(counted % tx.block_size(), 0);
                // The body is encrypted (a 16+-byte match by chance is 2^-128).
                prop_assert_ne!(&packet[4..], &original[4..]);
                if length_encrypted(config) {
                    prop_assert_ne!(&packet[..4], &original[..4]);
                } else {
                    prop_assert_eq!(&packet[..4], &original[..4]);
                }

                let first4 = packet[..4].try_into().unwrap();
                prop_assert_eq!(rx.decrypt_length(seq, first4) as usize, original.len() - 4);
                prop_assert_eq!(rx.open(seq, &mut packet, &tag), Ok(()));
                prop_assert_eq!(&packet, &original);
                seq = seq.wrapping_add(1);
            }
        }

        /// One flipped bit anywhere in the length, body or tag of a packet
        /// (after some packets went through fine) makes `open` fail and
        /// leaves the received bytes exactly as they were (AES-GCM: the
        /// length as received and zeros, nothing decrypted).
        #[test]
        fn any_flipped_bit_is_rejected(
            config in config_strategy(),
            material in proptest::collection::vec(any::<u8>(), 160),
            first_seq in seq_strategy(),
            earlier in 0usize..3,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<proptest::sample::Index>(),
        ) {
            let is_gcm = matches!(config.0, CipherAlg::Aes256Gcm | CipherAlg::Aes128Gcm);
            let (mut tx, mut rx) = pair(config, &material);
            let mut seq = first_seq;
            for _ in 0..earlier {
                let mut packet = frame_for(&tx, b"earlier packet");
                let mut tag = vec![0u8; tx.tag_len()];
                tx.seal(seq, &mut packet, &mut tag);
                prop_assert_eq!(rx.open(seq, &mut packet, &tag), Ok(()));
                seq = seq.wrapping_add(1);
            }

            let mut packet = frame_for(&tx, &payload);
            let mut tag = vec![0u8; tx.tag_len()];
            tx.seal(seq, &mut packet, &mut tag);

            let total_bits = (packet.len() + tag.len()) * 8;
            let bit = bit.index(total_bits);
            let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
            if byte < packet.len() {
                packet[byte] ^= mask;
            } else {
                tag[byte - packet.len()] ^= mask;
            }
            let received = packet.clone();
            prop_assert_eq!(rx.open(seq, &mut packet, &tag), Err(MacError));
            // Nothing decrypted is left: untouched, or (AES-GCM, which
            // decrypts as it authenticates) zeroed after the length.
            let wiped = packet[..4] == received[..4] && packet[4..].iter().all(|&b| b == 0);
            prop_assert!(packet == received || (is_gcm && wiped));
        }
    }
}
