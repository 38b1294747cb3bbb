//! Public-key fingerprints: MD5 of the key blob (the Openruko key lookup,
//! `docs/openruko.md` §1) and SHA-256 as `ssh-keygen -l` prints it.
//!
//! The key blob is the RFC 4253 §6.6 public-key encoding: the base64-decoded
//! second field of an `authorized_keys` line, or the `public key blob` string
//! of an RFC 4252 §7 `publickey` request.

use md5::{Digest, Md5};
use ssh_key::{HashAlg, PublicKey};

/// The Openruko fingerprint of a raw public-key blob: MD5 over the blob, as
/// 32 lower-case hex digits without colons.
///
/// This is `ssh-keygen -E md5 -l` without its `MD5:` prefix and colons; the
/// platform stores the same string when a user adds a key, so any other
/// spelling would make every lookup miss.
pub fn md5_hex(blob: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(blob);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The SHA-256 fingerprint of a public key exactly as `ssh-keygen -l` prints
/// it: `SHA256:` followed by unpadded base64.
pub fn sha256(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The SHA-256 fingerprint of a public-key blob, spelled as [`sha256`]
/// spells it (`SHA256:` and unpadded base64 of the blob's digest).
pub fn sha256_blob(blob: &[u8]) -> String {
    use base64ct::{Base64Unpadded, Encoding};
    use sha2::{Digest as _, Sha256};
    format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(blob))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ssh_encoding::Decode;

    /// Each fixture with the fingerprints `ssh-keygen -E md5 -l -f` and
    /// `ssh-keygen -l -f` (OpenSSH 9.2p1) printed for it, MD5 with the
    /// `MD5:` prefix and colons removed.
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            include_str!("testdata/ed25519.pub"),
            "70a4f675b7dc595eee976ad8779e0b0d",
            "SHA256:q7QMeK31xOKSauuFOL69pdaomaUTp9aFkLXG1LBjFPU",
        ),
        (
            include_str!("testdata/ed25519_alice.pub"),
            "0b85964de58821b5f5521330e4d132b6",
            "SHA256:o1rwshGp1dU5DoA1eTCuMvVk17oWL2oH3wYexYBCyRk",
        ),
        (
            include_str!("testdata/ed25519_nocomment.pub"),
            "efc7c503c2b2d5fb6b2a9640dad9671a",
            "SHA256:3bslbvvVyw8o3UUPu1PRJgv+ciGnqR2kAnItXGX6eXc",
        ),
        (
            include_str!("testdata/ecdsa_p256.pub"),
            "33dbb686356654610448fc1d6413fd73",
            "SHA256:baiG/V1c18ZB3XmuMn7vW9AXC/QnEHNteRJxHk0q6TM",
        ),
        (
            include_str!("testdata/ecdsa_p384.pub"),
            "d7522dcc2be37795b7a2f701738e63fc",
            "SHA256:lLCMEcn7KpVIkBo+2t6xZMN9pIg/WA3ws5bmTesA31I",
        ),
        (
            include_str!("testdata/ecdsa_p521.pub"),
            "1975d3d6d8b3ee2be1065ea4db7c66a6",
            "SHA256:Os3vri+9QMPeaUC6a0VtDVuE/7B2Z/nYFOjEvCT5iJ4",
        ),
        (
            include_str!("testdata/rsa_1024.pub"),
            "3203bb0fc83e883e2271f40f3e0cbf88",
            "SHA256:il0WArUGnezdCkYC63xgMk4s025C+ahMJ4o0MrpPWwo",
        ),
        (
            include_str!("testdata/rsa_2048.pub"),
            "1fe745516a3fb5995049fa3d4c97033a",
            "SHA256:IT5sWzpQtYcN4VfuBzoNGueVNyRWvpQxYyVLcXJVuck",
        ),
        (
            include_str!("testdata/rsa_3072.pub"),
            "510674cb75b9dfe5fbe12ad302200b0b",
            "SHA256:6fqJS8HDWKQun9u3OkcOkj253xaLm+EMumfR/fLP2QM",
        ),
        (
            include_str!("testdata/sk_ed25519.pub"),
            "83070e4d78c0efb1b20b0e31654fca5e",
            "SHA256:P+Fo+mZcFjYnnQuYkJFqOI9QU7qt7HPyOjnpIYcxNFk",
        ),
        (
            include_str!("testdata/sk_ecdsa_p256.pub"),
            "c4e281ddccb52195c72477bbdcfdd1f0",
            "SHA256:G8B3PBsAZ4eZegfdTg53tC340uboEMPsw4p0Yz68tqQ",
        ),
    ];

    /// The base64-decoded second field of a `.pub` line, decoded independently
    /// of ssh-key's encoder so the MD5 test does not trust a round trip.
    fn raw_blob(line: &str) -> Vec<u8> {
        let b64 = line.split_whitespace().nth(1).unwrap();
        <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64).unwrap()
    }

    #[test]
    fn md5_matches_ssh_keygen() {
        for (line, md5, _) in VECTORS {
            assert_eq!(md5_hex(&raw_blob(line)), *md5, "{line}");
        }
    }

    #[test]
    fn md5_of_reencoded_key_matches_raw_blob() {
        // The auth layer holds a parsed key, not the file's bytes: its
        // encoding must hash the same as the blob the file carried.
        for (line, md5, _) in VECTORS {
            let key = PublicKey::from_openssh(line).unwrap();
            let blob = ssh_encoding::Encode::encode_vec(key.key_data()).unwrap();
            assert_eq!(md5_hex(&blob), *md5, "{line}");
        }
    }

    #[test]
    fn sha256_matches_ssh_keygen() {
        for (line, _, sha) in VECTORS {
            let key = PublicKey::from_openssh(line).unwrap();
            assert_eq!(sha256(&key), *sha, "{line}");
        }
    }

    #[test]
    fn md5_hex_shape_and_rfc1321_vectors() {
        // RFC 1321 appendix A.5 test suite.
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(b"message digest"),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
    }

    #[test]
    fn raw_blob_decodes_as_key_data() {
        // Guards the helper above: a blob that is not a key would make the
        // MD5 test compare garbage with garbage.
        for (line, _, _) in VECTORS {
            let blob = raw_blob(line);
            ssh_key::public::KeyData::decode(&mut blob.as_slice()).unwrap();
        }
    }
}
