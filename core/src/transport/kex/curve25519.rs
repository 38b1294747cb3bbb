//! curve25519-sha256 (RFC 8731 §3), and the X25519 half shared by both hybrids.
//!
//! Secrets are x25519-dalek `StaticSecret`s rather than `EphemeralSecret`s
//! only so that tests can run the exchange on fixed scalars (the RFC 7748
//! vectors); each is still used for one exchange and zeroized on drop.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{KexError, SharedSecret};

/// Length of an X25519 public value, and of both curve25519-sha256 shares.
pub(super) const SHARE_LEN: usize = 32;

/// Our public value for `secret`.
pub(super) fn public_bytes(secret: &StaticSecret) -> [u8; SHARE_LEN] {
    PublicKey::from(secret).to_bytes()
}

/// X25519 of our secret and the peer's public value, refusing a value of the
/// wrong length and an all-zero result (a low-order point; RFC 8731 §3
/// requires the check, RFC 7748 §6.1 describes it).
pub(super) fn agree(
    secret: &StaticSecret,
    peer: &[u8],
) -> Result<Zeroizing<[u8; SHARE_LEN]>, KexError> {
    let peer: [u8; SHARE_LEN] = peer.try_into().map_err(|_| KexError::BadShareLength)?;
    let shared = secret.diffie_hellman(&PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(KexError::NonContributory);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// Server side on a given secret: `Q_S` is our public value, `K` the X25519
/// output read as a big-endian integer and encoded as an mpint (RFC 8731 §3).
pub(super) fn server(
    client_share: &[u8],
    secret: &StaticSecret,
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    let raw = agree(secret, client_share)?;
    Ok((public_bytes(secret).to_vec(), SharedSecret::mpint(&raw[..])))
}

/// Client side: `K` from our secret and the server's share.
pub(super) fn client_finish(
    secret: &StaticSecret,
    server_share: &[u8],
) -> Result<SharedSecret, KexError> {
    let raw = agree(secret, server_share)?;
    Ok(SharedSecret::mpint(&raw[..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::test_util::{hex, hex_array};
    use super::super::{HashAlg, exchange_hash};
    use super::*;

    fn secret(hex_scalar: &str) -> StaticSecret {
        StaticSecret::from(hex_array::<32>(hex_scalar))
    }

    /// RFC 7748 §5.2, the two single-shot vectors: the scalar is given
    /// unclamped and X25519 clamps it.
    #[test]
    fn rfc7748_5_2_vectors() {
        let vectors = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (scalar, u, out) in vectors {
            assert_eq!(*agree(&secret(scalar), &hex(u)).unwrap(), hex(out)[..]);
        }
    }

    /// RFC 7748 §5.2, the iterated vector after 1 and 1000 iterations:
    /// `k, u = X25519(k, u), k`, starting from k = u = 9.
    #[test]
    fn rfc7748_5_2_iterated() {
        let mut k = [0u8; 32];
        k[0] = 9;
        let mut u = k;
        for i in 1..=1000 {
            let out = *agree(&StaticSecret::from(k), &u).unwrap();
            u = k;
            k = out;
            if i == 1 {
                assert_eq!(
                    k,
                    hex_array("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
                );
            }
        }
        assert_eq!(
            k,
            hex_array("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
        );
    }

    /// RFC 7748 §6.1, through the curve25519-sha256 server and client paths:
    /// Alice is the client, Bob the server.
    #[test]
    fn rfc7748_6_1_through_kex() {
        let alice = secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_pub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let bob = secret("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let bob_pub = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
        // K is 0x4a5d..., top bit clear: an mpint of 32 bytes, no padding.
        let k = "000000204a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

        assert_eq!(public_bytes(&alice)[..], hex(alice_pub)[..]);
        let (q_s, k_server) = server(&hex(alice_pub), &bob).unwrap();
        assert_eq!(q_s, hex(bob_pub));
        assert_eq!(k_server.encoded(), hex(k));
        let k_client = client_finish(&alice, &q_s).unwrap();
        assert_eq!(k_client.encoded(), hex(k));
    }

    /// End to end, K and H: paramiko's tests/test_kex.py (test_15 client,
    /// test_16 server) run curve25519-sha256 on a fixed private key against a
    /// fixed peer share with dummy version strings, KEXINITs and host key.
    /// Its K, 0x9d9f..., has the top bit set, so the mpint gains a zero byte.
    #[test]
    fn paramiko_curve25519_vectors() {
        let ours = secret("2184abc7eb3e656d2349d2470ee695b570c227340c2b2863b6c9ff427af1f040");
        let peer = hex("8d13a119452382a1ada8eea4c979f3e63ad3f0c7366786d6c5b54b87219bae49");
        // paramiko's K = 71294722834835117201316639182051104803802881348227506835068888449366462300724
        let k_expected =
            hex("00000021009d9f621481584e252d588a2632205cc32cbd1f1cf6d9b01f3f565b4665580234");

        // Client role: paramiko is the client ("SSH-2.0-paramiko_1.0").
        let q_c = public_bytes(&ours);
        let k = client_finish(&ours, &peer).unwrap();
        assert_eq!(k.encoded(), k_expected);
        let h = exchange_hash(
            HashAlg::Sha256,
            b"SSH-2.0-paramiko_1.0",
            b"SSH-2.0-lame",
            b"local-kex-init",
            b"remote-kex-init",
            b"fake-host-key",
            &q_c,
            &peer,
            &k,
        );
        assert_eq!(
            h,
            hex("05B6F6437C0CF38D1A6C5A6F6E2558DEB54E7FC62447EBFB1E5D7407326A5475")
        );

        // Server role: paramiko is the server, its host key blob "fake-key".
        let (q_s, k) = server(&peer, &ours).unwrap();
        assert_eq!(k.encoded(), k_expected);
        let h = exchange_hash(
            HashAlg::Sha256,
            b"SSH-2.0-lame",
            b"SSH-2.0-paramiko_1.0",
            b"remote-kex-init",
            b"local-kex-init",
            b"fake-key",
            &peer,
            &q_s,
            &k,
        );
        assert_eq!(
            h,
            hex("DF08FCFCF31560FEE639D9B6D56D760BC3455B5ADA148E4514181023E7A9B042")
        );
    }

    #[test]
    fn low_order_points_refused() {
        let ours = secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        for point in super::super::test_util::LOW_ORDER_POINTS {
            assert_eq!(
                server(&hex(point), &ours).unwrap_err(),
                KexError::NonContributory,
                "{point}"
            );
            assert_eq!(
                client_finish(&ours, &hex(point)).unwrap_err(),
                KexError::NonContributory,
                "{point}"
            );
        }
        // A point next to them is fine: the check is not vacuous.
        assert!(server(&hex(&format!("02{}", "00".repeat(31))), &ours).is_ok());
    }

    #[test]
    fn wrong_lengths_refused() {
        let ours = secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        for len in [0, 1, 31, 33, 64] {
            let share = vec![9u8; len];
            assert_eq!(
                agree(&ours, &share).unwrap_err(),
                KexError::BadShareLength,
                "{len}"
            );
        }
    }
}
