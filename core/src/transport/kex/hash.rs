//! The exchange hash (RFC 4253 §8, RFC 5656 §4, RFC 8731 §3) and key derivation (RFC 4253 §7.2).

use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::{Zeroize, Zeroizing};

use super::{SharedSecret, length_prefix};

/// The hash function of a key-exchange method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-384 (FIPS 180-4), for ecdh-sha2-nistp384 (RFC 5656 §6.2.1).
    Sha384,
    /// SHA-512 (FIPS 180-4).
    Sha512,
}

impl HashAlg {
    /// The digest length in bytes: the length of `H`, hence of the session id.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            HashAlg::Sha256 => Hasher::Sha256(Sha256::new()),
            HashAlg::Sha384 => Hasher::Sha384(Sha384::new()),
            HashAlg::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
}

/// A running hash of either kind; with sha2's `zeroize` feature its state
/// (which absorbs K) is wiped on drop.
enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// Appends `bytes` as an SSH string (u32 length, then the bytes).
    fn update_string(&mut self, bytes: &[u8]) {
        self.update(&length_prefix(bytes.len()));
        self.update(bytes);
    }

    /// Appends the digest to `out` and wipes the temporary copy of it.
    fn finish_into(self, out: &mut Vec<u8>) {
        match self {
            Hasher::Sha256(h) => {
                let mut digest = h.finalize();
                out.extend_from_slice(&digest);
                digest.as_mut_slice().zeroize();
            }
            Hasher::Sha384(h) => {
                let mut digest = h.finalize();
                out.extend_from_slice(&digest);
                digest.as_mut_slice().zeroize();
            }
            Hasher::Sha512(h) => {
                let mut digest = h.finalize();
                out.extend_from_slice(&digest);
                digest.as_mut_slice().zeroize();
            }
        }
    }
}

/// Exchange hash `H = HASH(string V_C || string V_S || string I_C || string
/// I_S || string K_S || string Q_C || string Q_S || K)` (RFC 4253 §8 with the
/// ECDH layout of RFC 5656 §4 that RFC 8731 §3 and the hybrid drafts reuse).
///
/// `v_c`, `v_s` are the identification lines without CR LF; `i_c`, `i_s` the
/// KEXINIT payloads (message number included); `k_s` the host key blob; `q_c`,
/// `q_s` the shares; `k` is taken as [`SharedSecret::encoded`] (already an
/// mpint or a string, so not wrapped again).
// The arguments are the protocol's own nine fields, in its order; a struct
// would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn exchange_hash(
    hash: HashAlg,
    v_c: &[u8],
    v_s: &[u8],
    i_c: &[u8],
    i_s: &[u8],
    k_s: &[u8],
    q_c: &[u8],
    q_s: &[u8],
    k: &SharedSecret,
) -> Vec<u8> {
    let mut hasher = hash.hasher();
    for field in [v_c, v_s, i_c, i_s, k_s, q_c, q_s] {
        hasher.update_string(field);
    }
    hasher.update(k.encoded());
    let mut h = Vec::with_capacity(hash.output_len());
    hasher.finish_into(&mut h);
    h
}

/// Key derivation (RFC 4253 §7.2): `K1 = HASH(K || H || letter ||
/// session_id)`, extended with `K2 = HASH(K || H || K1)`, `K3 = HASH(K || H ||
/// K1 || K2)`, ... until `len` bytes, then truncated to `len`.
///
/// `letter` is `b'A'` to `b'F'` (IVs, encryption keys, integrity keys, client
/// to server first); `session_id` is the `H` of the first exchange.
pub fn derive_key(
    hash: HashAlg,
    k: &SharedSecret,
    h: &[u8],
    letter: u8,
    session_id: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let block = hash.output_len();
    // Room for every whole block up front: growing the Vec would leave copies
    // of key material in freed memory, out of Zeroizing's reach.
    let mut out = Zeroizing::new(Vec::with_capacity(len.div_ceil(block) * block));
    if len == 0 {
        return out;
    }
    let mut hasher = hash.hasher();
    hasher.update(k.encoded());
    hasher.update(h);
    hasher.update(&[letter]);
    hasher.update(session_id);
    hasher.finish_into(&mut out);
    while out.len() < len {
        let mut hasher = hash.hasher();
        hasher.update(k.encoded());
        hasher.update(h);
        hasher.update(&out);
        hasher.finish_into(&mut out);
    }
    // Truncating leaves the tail in the Vec's capacity, which Zeroizing wipes
    // along with the rest on drop.
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::test_util::hex;
    use super::*;

    struct Inputs {
        v_c: &'static [u8],
        v_s: &'static [u8],
        i_c: Vec<u8>,
        i_s: Vec<u8>,
        k_s: Vec<u8>,
        q_c: Vec<u8>,
        q_s: Vec<u8>,
    }

    fn inputs() -> Inputs {
        let mut i_c = vec![20];
        i_c.extend_from_slice(b"client-kexinit");
        let mut i_s = vec![20];
        i_s.extend_from_slice(b"server-kexinit");
        let mut k_s = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20".to_vec();
        k_s.extend_from_slice(&[0x11; 32]);
        Inputs {
            v_c: b"SSH-2.0-OpenSSH_9.9",
            v_s: b"SSH-2.0-gitmouth_0.1",
            i_c,
            i_s,
            k_s,
            q_c: vec![0x22; 32],
            q_s: vec![0x33; 32],
        }
    }

    /// A K that exercises both mpint rules: two leading zero bytes stripped,
    /// one added back for the top bit.
    fn k_mpint() -> SharedSecret {
        let mut magnitude = vec![0, 0, 0x80];
        magnitude.extend_from_slice(&[0x44; 29]);
        SharedSecret::mpint(&magnitude)
    }

    fn k_string() -> SharedSecret {
        SharedSecret::string(&[0x55; 64])
    }

    /// The concatenation, written out by hand with literal length prefixes.
    fn by_hand(k: &SharedSecret) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"\x00\x00\x00\x13SSH-2.0-OpenSSH_9.9");
        buf.extend_from_slice(b"\x00\x00\x00\x14SSH-2.0-gitmouth_0.1");
        buf.extend_from_slice(b"\x00\x00\x00\x0f\x14client-kexinit");
        buf.extend_from_slice(b"\x00\x00\x00\x0f\x14server-kexinit");
        buf.extend_from_slice(b"\x00\x00\x00\x33\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20");
        buf.extend_from_slice(&[0x11; 32]);
        buf.extend_from_slice(b"\x00\x00\x00\x20");
        buf.extend_from_slice(&[0x22; 32]);
        buf.extend_from_slice(b"\x00\x00\x00\x20");
        buf.extend_from_slice(&[0x33; 32]);
        buf.extend_from_slice(k.encoded());
        buf
    }

    fn h(hash: HashAlg, k: &SharedSecret) -> Vec<u8> {
        let i = inputs();
        exchange_hash(
            hash, i.v_c, i.v_s, &i.i_c, &i.i_s, &i.k_s, &i.q_c, &i.q_s, k,
        )
    }

    #[test]
    fn k_encodings_used_below() {
        let mut expected = hex("0000001f0080");
        expected.extend_from_slice(&[0x44; 29]);
        assert_eq!(k_mpint().encoded(), expected);
        assert_eq!(k_string().encoded()[..4], [0, 0, 0, 64]);
    }

    #[test]
    fn exchange_hash_sha256_mpint_k() {
        let k = k_mpint();
        let got = h(HashAlg::Sha256, &k);
        assert_eq!(got, Sha256::digest(by_hand(&k)).to_vec());
        // Python hashlib over the same bytes.
        assert_eq!(
            got,
            hex("9d7366e7eb621f48f28ae5e364a323bc0a1bec48112e2ccdcb53daf72c7405ad")
        );
    }

    #[test]
    fn exchange_hash_sha384_mpint_k() {
        let k = k_mpint();
        let got = h(HashAlg::Sha384, &k);
        assert_eq!(got, Sha384::digest(by_hand(&k)).to_vec());
        // Python hashlib over the same bytes.
        assert_eq!(
            got,
            hex("3e79d4a322f9950c2ba4cc6d15e8147ff653ce69bd2f9520\
                 f1fa32637690bed4ee650e4bcda33045636fbc5425818545")
        );
        assert_eq!(HashAlg::Sha384.output_len(), 48);
    }

    #[test]
    fn exchange_hash_sha512_string_k() {
        let k = k_string();
        let got = h(HashAlg::Sha512, &k);
        assert_eq!(got, Sha512::digest(by_hand(&k)).to_vec());
        assert_eq!(
            got,
            hex(
                "56af248b5d5a9b3acb09b1030292fc84c8c6b3f04addfabbf6dff233f985dee2\
                 a738c6512d570fb7f4c1ef688e0e6013bf268775ceb843321a9eb69e4aa022e1"
            )
        );
    }

    #[test]
    fn exchange_hash_depends_on_every_field() {
        let k = k_mpint();
        let base = h(HashAlg::Sha256, &k);
        let i = inputs();
        let fields: [&[u8]; 7] = [i.v_c, i.v_s, &i.i_c, &i.i_s, &i.k_s, &i.q_c, &i.q_s];
        for which in 0..fields.len() {
            let mut changed: Vec<Vec<u8>> = fields.iter().map(|f| f.to_vec()).collect();
            changed[which].push(0);
            let c = &changed;
            let got = exchange_hash(
                HashAlg::Sha256,
                &c[0],
                &c[1],
                &c[2],
                &c[3],
                &c[4],
                &c[5],
                &c[6],
                &k,
            );
            assert_ne!(got, base, "field {which}");
        }
        assert_ne!(h(HashAlg::Sha256, &k_string()), base);
    }

    #[test]
    fn derive_key_sha256_three_blocks() {
        let k = k_mpint();
        let h = [0x66; 32];
        let sid = [0x77; 32];
        let got = derive_key(HashAlg::Sha256, &k, &h, b'C', &sid, 80);

        // By hand: K1 = HASH(K || H || "C" || sid), K2 = HASH(K || H || K1),
        // K3 = HASH(K || H || K1 || K2).
        let k1 = Sha256::new()
            .chain_update(k.encoded())
            .chain_update(h)
            .chain_update(b"C")
            .chain_update(sid)
            .finalize();
        let k2 = Sha256::new()
            .chain_update(k.encoded())
            .chain_update(h)
            .chain_update(k1)
            .finalize();
        let k3 = Sha256::new()
            .chain_update(k.encoded())
            .chain_update(h)
            .chain_update(k1)
            .chain_update(k2)
            .finalize();
        let expected = [k1.as_slice(), k2.as_slice(), &k3[..16]].concat();
        assert_eq!(*got, expected);
        // Python hashlib, same rule.
        assert_eq!(
            *got,
            hex(
                "03e56ce53f8c4f6689a36bd3cff7f3462de2aed07fd93d6b2f5c9e495fcfb1e2\
                 878817598b4430a539486dd50924269f0bac1e9f4df0b188885a48d04a63edb6\
                 e5c9b47dd580ad2ce4132f621d2e56b5"
            )
        );
    }

    #[test]
    fn derive_key_sha512_two_blocks() {
        let k = k_string();
        let h = [0x88; 64];
        let sid = [0x99; 64];
        let got = derive_key(HashAlg::Sha512, &k, &h, b'A', &sid, 100);
        let k1 = Sha512::new()
            .chain_update(k.encoded())
            .chain_update(h)
            .chain_update(b"A")
            .chain_update(sid)
            .finalize();
        let k2 = Sha512::new()
            .chain_update(k.encoded())
            .chain_update(h)
            .chain_update(k1)
            .finalize();
        assert_eq!(*got, [k1.as_slice(), &k2[..36]].concat());
        assert_eq!(
            *got,
            hex(
                "8081627c7fcd109f87317d848afaa2bd43960c3d0d7b9662ed27198b6e554a87\
                 1e4c6f0d7a50ccbb9a2c9a57c950e50e7657d520ae5b4ef2fa993af693450584\
                 b985f99ec2452e631a743ffe8dfa099b6eb7d5bb6386f7bb357293b9a8287813\
                 c7bff89d"
            )
        );
    }

    #[test]
    fn derive_key_prefixes_and_lengths() {
        let k = k_mpint();
        let (h, sid) = ([1; 32], [2; 32]);
        let long = derive_key(HashAlg::Sha256, &k, &h, b'E', &sid, 200);
        assert_eq!(long.len(), 200);
        for len in [0, 1, 16, 31, 32, 33, 64, 65, 199] {
            let short = derive_key(HashAlg::Sha256, &k, &h, b'E', &sid, len);
            assert_eq!(*short, long[..len], "len {len}");
        }
        // Each letter gives a different key.
        let letters: Vec<_> = (b'A'..=b'F')
            .map(|l| derive_key(HashAlg::Sha256, &k, &h, l, &sid, 32))
            .collect();
        for (i, a) in letters.iter().enumerate() {
            for b in &letters[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
