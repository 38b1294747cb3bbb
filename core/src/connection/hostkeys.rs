//! Host-key update and rotation (OpenSSH `PROTOCOL` §2.5):
//! `hostkeys-00@openssh.com` and `hostkeys-prove-00@openssh.com`.
//!
//! Once a user has authenticated, the server tells the client every host
//! key in service, in one global request that wants no reply:
//!
//! ```text
//!   byte      SSH_MSG_GLOBAL_REQUEST
//!   string    "hostkeys-00@openssh.com"
//!   boolean   FALSE
//!   string    key blob      (one per key, to the end of the message)
//! ```
//!
//! A client with `UpdateHostKeys` asks for proof of the keys it did not
//! know (the same layout, named `hostkeys-prove-00@openssh.com`, wanting a
//! reply), and the server answers `SSH_MSG_REQUEST_SUCCESS` with one
//! signature per key, in the request's order, each over
//! `string "hostkeys-prove-00@openssh.com" || string session identifier ||
//! string key blob`, or `SSH_MSG_REQUEST_FAILURE` if any key is not one of
//! its own. The client then adds the proven keys to its `known_hosts` and
//! drops the ones of this host that were not announced: that is how a
//! retiring key leaves, and how a new one arrives before it signs.
//!
//! Nothing here runs before authentication: the session refuses every
//! global request until then.

use crate::transport::Transport;
use crate::transport::hostkey::{self, HostKey, HostKeyAlg, HostKeys};
use crate::transport::negotiate::KexInit;
use crate::wire::{self, Parser, numbers};

/// The announcement's request name.
pub const HOSTKEYS: &str = "hostkeys-00@openssh.com";
/// The proof request's name, also the first field of what each proof signs.
pub const HOSTKEYS_PROVE: &str = "hostkeys-prove-00@openssh.com";

/// Proof requests answered per connection: OpenSSH's client sends one, so
/// a few more only cost signatures a client could demand in a loop.
pub const MAX_PROVE_REQUESTS: u32 = 4;

/// Why a proof request was refused (answered with `REQUEST_FAILURE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProveRefused {
    /// A field ran past the end of the message.
    Malformed,
    /// More keys than the server holds: some must be repeats or strangers.
    TooManyKeys {
        /// How many the request named (counted up to one past the limit).
        asked: usize,
    },
    /// A key that is not one of the server's (its type, for the log).
    UnknownKey(String),
    /// This connection already had its [`MAX_PROVE_REQUESTS`].
    TooManyRequests,
    /// Signing failed (or no session identifier yet, which cannot happen
    /// after authentication).
    SigningFailed,
}

impl core::fmt::Display for ProveRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed request"),
            Self::TooManyKeys { asked } => {
                write!(f, "{asked} keys asked for, more than the server holds")
            }
            Self::UnknownKey(kind) => write!(f, "not one of our host keys ({kind} key)"),
            Self::TooManyRequests => write!(
                f,
                "more than {MAX_PROVE_REQUESTS} proof requests on one connection"
            ),
            Self::SigningFailed => f.write_str("signing failed"),
        }
    }
}

/// One connection's part in the host-key update: the announcement, sent
/// once, and the proofs asked for.
#[derive(Debug, Default)]
pub struct HostKeyUpdate {
    announced: bool,
    prove_requests: u32,
}

impl HostKeyUpdate {
    /// Nothing announced or proven yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the announcement of every key in service, the first time it is
    /// called (right after authentication); the number of keys announced,
    /// or `None` when nothing was sent (already sent, no key in service, or
    /// a client known to break on it).
    pub fn announce(&mut self, t: &mut Transport, keys: &HostKeys) -> Option<usize> {
        if self.announced {
            return None;
        }
        self.announced = true;
        let announced = keys.in_service();
        if announced.is_empty() || !takes_announcement(t.peer_version().unwrap_or_default()) {
            return None;
        }
        t.send(|out| {
            wire::put_u8(out, numbers::GLOBAL_REQUEST);
            wire::put_string(out, HOSTKEYS.as_bytes());
            wire::put_bool(out, false);
            for key in announced {
                wire::put_string(out, key.public_blob_ref());
            }
        });
        Some(announced.len())
    }

    /// Answers a `hostkeys-prove-00@openssh.com` request whose key blobs
    /// are `body` (what follows the request name and want-reply flag):
    /// `REQUEST_SUCCESS` with the proofs, or `REQUEST_FAILURE` and why
    /// (for the log). Without `want_reply` nothing is signed or sent.
    pub fn on_prove(
        &mut self,
        t: &mut Transport,
        keys: &HostKeys,
        body: &[u8],
        want_reply: bool,
    ) -> Result<usize, ProveRefused> {
        if !want_reply {
            return Ok(0);
        }
        let result = self.prove(t, keys, body);
        match &result {
            Ok(proofs) => t.send(|out| {
                wire::put_u8(out, numbers::REQUEST_SUCCESS);
                for proof in proofs {
                    wire::put_string(out, proof);
                }
            }),
            Err(_) => t.send(|out| wire::put_u8(out, numbers::REQUEST_FAILURE)),
        }
        result.map(|proofs| proofs.len())
    }

    /// The proofs for a request, in its order.
    fn prove(
        &mut self,
        t: &Transport,
        keys: &HostKeys,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, ProveRefused> {
        if self.prove_requests >= MAX_PROVE_REQUESTS {
            return Err(ProveRefused::TooManyRequests);
        }
        self.prove_requests += 1;
        // Bounded before anything is kept: a request may name each of our
        // keys once, so more blobs than keys is refused as soon as it is
        // counted.
        let limit = keys.all().len();
        let mut wanted: Vec<&HostKey> = Vec::new();
        let mut p = Parser::new(body);
        while !p.is_empty() {
            let blob = p.string().map_err(|_| ProveRefused::Malformed)?;
            if wanted.len() == limit {
                return Err(ProveRefused::TooManyKeys { asked: limit + 1 });
            }
            let key = keys
                .find(blob)
                .ok_or_else(|| ProveRefused::UnknownKey(blob_type(blob)))?;
            wanted.push(key);
        }
        let session_id = t.session_id().ok_or(ProveRefused::SigningFailed)?;
        let negotiated = t.negotiated().map(|n| n.host_key);
        wanted
            .into_iter()
            .map(|key| {
                let alg = proof_algorithm(key.algorithms(), negotiated, t.peer_kexinit())
                    .ok_or(ProveRefused::SigningFailed)?;
                key.sign(alg, &signed_data(session_id, key.public_blob_ref()))
                    .map_err(|_| ProveRefused::SigningFailed)
            })
            .collect()
    }
}

/// What a proof signs: `string "hostkeys-prove-00@openssh.com" || string
/// session identifier || string key blob`.
pub fn signed_data(session_id: &[u8], key_blob: &[u8]) -> Vec<u8> {
    let mut data =
        Vec::with_capacity(HOSTKEYS_PROVE.len() + session_id.len() + key_blob.len() + 12);
    wire::put_string(&mut data, HOSTKEYS_PROVE.as_bytes());
    wire::put_string(&mut data, session_id);
    wire::put_string(&mut data, key_blob);
    data
}

/// The algorithm a proof by a key that signs with `algs` uses, as OpenSSH's
/// sshd chooses it (and its client expects): the key's own, and for RSA
/// the algorithm the key exchange negotiated if that was RSA, else
/// `rsa-sha2-512` if the client's KEXINIT lists it, else `rsa-sha2-256` if
/// it lists that (sshd would fall back to SHA-1 `ssh-rsa`, which we never
/// sign; `rsa-sha2-512` then).
pub fn proof_algorithm(
    algs: &[HostKeyAlg],
    negotiated: Option<HostKeyAlg>,
    peer_kexinit: &[u8],
) -> Option<HostKeyAlg> {
    let first = algs.first().copied()?;
    if !algs.contains(&HostKeyAlg::RsaSha2_512) {
        return Some(first);
    }
    if let Some(alg) = negotiated.filter(|alg| algs.contains(alg)) {
        return Some(alg);
    }
    let offered = KexInit::parse(peer_kexinit).map(|k| k.host_key).ok();
    let lists = |alg: HostKeyAlg| offered.is_some_and(|list| list.contains(alg.name()));
    if !lists(HostKeyAlg::RsaSha2_512) && lists(HostKeyAlg::RsaSha2_256) {
        Some(HostKeyAlg::RsaSha2_256)
    } else {
        Some(HostKeyAlg::RsaSha2_512)
    }
}

/// Whether a client of this identification string can take the
/// announcement: OpenSSH's sshd spares Cisco 1.x and TTSSH up to 2.72,
/// which break on it (its `SSH_BUG_HOSTKEYS`).
pub fn takes_announcement(peer_version: &[u8]) -> bool {
    let software = peer_version
        .strip_prefix(b"SSH-2.0-")
        .unwrap_or(peer_version);
    let old_ttssh = software.strip_prefix(b"TTSSH/2.").is_some_and(|minor| {
        matches!(minor.first(), Some(b'1'..=b'6'))
            || [b"70".as_slice(), b"71", b"72"]
                .iter()
                .any(|m| minor.starts_with(m))
    });
    !(software.starts_with(b"Cisco-1.") || old_ttssh)
}

/// The key type a blob names, made safe for a log line.
fn blob_type(blob: &[u8]) -> String {
    let mut p = Parser::new(blob);
    crate::log_safe(p.string().unwrap_or(b"malformed"))
}

/// The key blobs of an announcement or a proof request (what follows the
/// request name and want-reply flag), for our client.
pub fn parse_key_blobs(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut p = Parser::new(body);
    let mut blobs = Vec::new();
    while !p.is_empty() {
        blobs.push(p.string().ok()?.to_vec());
    }
    Some(blobs)
}

/// Checks a `REQUEST_SUCCESS` body against the keys whose proof was asked
/// for, as OpenSSH's client does (our client's side, for tests): one
/// signature per key in order, nothing after, each verifying; an RSA key's
/// proof must use the negotiated algorithm when that was RSA, and
/// `rsa-sha2-512` or `rsa-sha2-256` otherwise.
pub fn verify_proofs(
    asked: &[Vec<u8>],
    session_id: &[u8],
    negotiated: HostKeyAlg,
    reply: &[u8],
) -> Result<(), String> {
    let mut p = Parser::new(reply);
    for (i, blob) in asked.iter().enumerate() {
        let signature = p.string().map_err(|_| format!("no proof for key {i}"))?;
        let key_type = Parser::new(blob).string().unwrap_or_default();
        let alg = if key_type == b"ssh-rsa" {
            if matches!(
                negotiated,
                HostKeyAlg::RsaSha2_512 | HostKeyAlg::RsaSha2_256
            ) {
                negotiated
            } else {
                let name = Parser::new(signature).utf8().unwrap_or_default();
                HostKeyAlg::from_name(name)
                    .filter(|a| matches!(a, HostKeyAlg::RsaSha2_512 | HostKeyAlg::RsaSha2_256))
                    .ok_or_else(|| format!("key {i}: RSA proof with {name:?}"))?
            }
        } else {
            core::str::from_utf8(key_type)
                .ok()
                .and_then(HostKeyAlg::from_name)
                .ok_or_else(|| format!("key {i}: unknown key type"))?
        };
        hostkey::verify_host_signature(alg, blob, &signed_data(session_id, blob), signature)
            .map_err(|e| format!("key {i}: {e}"))?;
    }
    p.finish()
        .map_err(|_| "bytes after the last proof".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rsa_proofs_follow_openssh() {
        let rsa = [HostKeyAlg::RsaSha2_512, HostKeyAlg::RsaSha2_256];
        let ed = [HostKeyAlg::Ed25519];
        let kexinit = |host_key: &str| {
            let mut k = vec![numbers::KEXINIT];
            k.extend_from_slice(&[0; 16]);
            for list in [
                "curve25519-sha256",
                host_key,
                "a",
                "a",
                "m",
                "m",
                "none",
                "none",
                "",
                "",
            ] {
                wire::put_string(&mut k, list.as_bytes());
            }
            wire::put_bool(&mut k, false);
            wire::put_u32(&mut k, 0);
            k
        };
        // The key's own algorithm for anything but RSA.
        assert_eq!(
            proof_algorithm(&ed, Some(HostKeyAlg::RsaSha2_256), &[]),
            Some(HostKeyAlg::Ed25519)
        );
        // RSA: the negotiated RSA algorithm wins.
        assert_eq!(
            proof_algorithm(
                &rsa,
                Some(HostKeyAlg::RsaSha2_256),
                &kexinit("rsa-sha2-512")
            ),
            Some(HostKeyAlg::RsaSha2_256)
        );
        // Else what the client lists, 512 first.
        let ed_neg = Some(HostKeyAlg::Ed25519);
        assert_eq!(
            proof_algorithm(
                &rsa,
                ed_neg,
                &kexinit("ssh-ed25519,rsa-sha2-256,rsa-sha2-512")
            ),
            Some(HostKeyAlg::RsaSha2_512)
        );
        assert_eq!(
            proof_algorithm(&rsa, ed_neg, &kexinit("ssh-ed25519,rsa-sha2-256")),
            Some(HostKeyAlg::RsaSha2_256)
        );
        assert_eq!(
            proof_algorithm(&rsa, ed_neg, &kexinit("ssh-ed25519")),
            Some(HostKeyAlg::RsaSha2_512)
        );
        assert_eq!(
            proof_algorithm(&rsa, ed_neg, b"junk"),
            Some(HostKeyAlg::RsaSha2_512)
        );
        assert_eq!(proof_algorithm(&[], ed_neg, &[]), None);
    }

    #[test]
    fn clients_that_break_on_the_announcement_are_spared() {
        for (version, takes) in [
            (&b"SSH-2.0-OpenSSH_9.2p1 Debian-2"[..], true),
            (b"SSH-2.0-PuTTY_Release_0.78", true),
            (b"SSH-2.0-Cisco-1.25", false),
            (b"SSH-2.0-TTSSH/2.72 Win32", false),
            (b"SSH-2.0-TTSSH/2.5", false),
            (b"SSH-2.0-TTSSH/2.73", true),
            (b"SSH-2.0-TTSSH/2.9", true),
            (b"", true),
        ] {
            assert_eq!(takes_announcement(version), takes, "{version:?}");
        }
    }

    #[test]
    fn key_blob_lists_parse_to_the_end_or_not_at_all() {
        let mut body = Vec::new();
        wire::put_string(&mut body, b"one");
        wire::put_string(&mut body, b"");
        assert_eq!(
            parse_key_blobs(&body),
            Some(vec![b"one".to_vec(), Vec::new()])
        );
        assert_eq!(parse_key_blobs(&[]), Some(Vec::new()));
        for cut in [1, 3, 5, 8] {
            assert_eq!(parse_key_blobs(&body[..cut]), None, "{cut}");
        }
    }
}
