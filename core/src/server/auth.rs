//! Public-key user authentication, server side (RFC 4252 §5, §7).
//!
//! Only `publickey` is offered. A query (no signature) is answered
//! `PK_OK` only for a key that would be accepted; a refused query counts as
//! a failed attempt (SECURITY.md rule 2). The identity comes only from the
//! key whose signature was verified in the same request: nothing is
//! remembered from a query except the cached answer "this key exists", so
//! querying key B and signing with key A yields A's user, and signing with
//! an unknown key C yields nothing (the CVE-2024-45337 class).

use std::time::Instant;

use crate::app::fingerprint;
use crate::auth::pubkey;
use crate::transport::Transport;
use crate::transport::disconnect::DisconnectReason;
use crate::wire::{self, Parser, numbers};

use super::{Identity, Mode, Phase, ServerUpper};

/// What a key lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The key belongs to this user.
    Known(String),
    /// No such key.
    Unknown,
}

/// Authentication bookkeeping of one connection.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    /// Failed attempts so far.
    failures: u32,
    /// Whether a `none` request has been seen (the first is free, as in
    /// OpenSSH: clients send it to learn the methods).
    none_seen: bool,
    /// Lookup answers for this connection, by key blob (bounded by the
    /// attempt limit, since every miss is a failure).
    cache: Vec<(Vec<u8>, Lookup)>,
}

impl AuthState {
    /// Whether a lookup holds the next message back. Standalone lookups
    /// are immediate.
    pub(super) fn is_pending(&self) -> bool {
        false
    }

    /// Abandons any lookup in flight.
    pub(super) fn cancel(&mut self) {}
}

/// A parsed USERAUTH_REQUEST.
struct Request<'a> {
    user: &'a [u8],
    service: &'a [u8],
    method: &'a [u8],
    rest: Parser<'a>,
}

impl ServerUpper {
    pub(super) fn on_userauth(&mut self, t: &mut Transport, _now: Instant, payload: &[u8]) {
        let mut p = Parser::new(payload);
        let parsed = p
            .u8()
            .and_then(|_| Ok((p.string()?, p.string()?, p.string()?)));
        let Ok((user, service, method)) = parsed else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "malformed USERAUTH_REQUEST",
            );
            return;
        };
        let request = Request {
            user,
            service,
            method,
            rest: p,
        };
        if request.service != b"ssh-connection" {
            t.disconnect(
                DisconnectReason::ServiceNotAvailable,
                "only ssh-connection is offered",
            );
            return;
        }
        match request.method {
            b"publickey" => self.on_publickey(t, request),
            b"none" if !self.auth.none_seen => {
                self.auth.none_seen = true;
                send_failure(t);
            }
            other => {
                tracing::debug!(session = %self.id, method = %crate::log_safe(other), "method refused");
                self.fail(t);
            }
        }
    }

    fn on_publickey(&mut self, t: &mut Transport, request: Request<'_>) {
        let Request { user, mut rest, .. } = request;
        let parsed = (|| Ok::<_, wire::Malformed>((rest.bool()?, rest.utf8()?, rest.string()?)))();
        let Ok((signed, alg, blob)) = parsed else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "malformed publickey request",
            );
            return;
        };
        let key = match pubkey::parse_user_key(blob, alg) {
            Ok(key) => key,
            Err(e) => {
                tracing::info!(session = %self.id, error = %e, "unacceptable user key");
                self.fail(t);
                return;
            }
        };
        let fp = fingerprint::sha256(&key);
        if !signed {
            if rest.finish().is_err() {
                t.disconnect(DisconnectReason::ProtocolError, "malformed publickey query");
                return;
            }
            match self.lookup(blob) {
                Lookup::Known(_) => {
                    tracing::debug!(session = %self.id, key = %fp, "key query accepted");
                    t.send(|out| {
                        wire::put_u8(out, numbers::USERAUTH_PK_OK);
                        wire::put_string(out, alg.as_bytes());
                        wire::put_string(out, blob);
                    });
                }
                Lookup::Unknown => {
                    tracing::info!(session = %self.id, key = %fp, "unknown key offered");
                    self.fail(t);
                }
            }
            return;
        }
        let signature = rest.string();
        let (Ok(signature), true) = (signature, rest.finish().is_ok()) else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "malformed publickey request",
            );
            return;
        };
        let Some(session_id) = t.session_id() else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "authentication before key exchange",
            );
            return;
        };
        let data = crate::auth::signed_data(session_id, user, alg, blob);
        if let Err(e) = pubkey::verify_user_signature_for(alg, blob, signature, &data) {
            tracing::info!(session = %self.id, key = %fp, error = %e, "bad signature");
            self.fail(t);
            return;
        }
        // The identity is that of the key just verified, and of no other.
        match self.lookup(blob) {
            Lookup::Known(name) => {
                tracing::info!(session = %self.id, user = %name, key = %fp, "authenticated");
                self.identity = Some(Identity {
                    user: name,
                    fingerprint: fp,
                });
                self.phase = Phase::Connected;
                self.login_deadline = None;
                t.send(|out| wire::put_u8(out, numbers::USERAUTH_SUCCESS));
            }
            Lookup::Unknown => {
                tracing::info!(session = %self.id, key = %fp, "unknown key");
                self.fail(t);
            }
        }
    }

    /// Looks a key up, answering from the connection's cache when it can.
    fn lookup(&mut self, blob: &[u8]) -> Lookup {
        if let Some((_, found)) = self.auth.cache.iter().find(|(b, _)| b == blob) {
            return found.clone();
        }
        let found = match &self.config.mode {
            Mode::Standalone { keys, .. } => match keys.snapshot().find_blob(blob) {
                Some(entry) => Lookup::Known(entry.user.clone()),
                None => Lookup::Unknown,
            },
        };
        self.auth.cache.push((blob.to_vec(), found.clone()));
        found
    }

    /// Counts a failed attempt and answers it, or ends the connection when
    /// the attempts are used up.
    fn fail(&mut self, t: &mut Transport) {
        self.auth.failures += 1;
        if self.auth.failures >= self.config.max_auth_attempts {
            tracing::info!(session = %self.id, failures = self.auth.failures, "too many authentication failures");
            t.disconnect(
                DisconnectReason::NoMoreAuthMethods,
                "too many authentication failures",
            );
            return;
        }
        send_failure(t);
    }
}

fn send_failure(t: &mut Transport) {
    t.send(|out| {
        wire::put_u8(out, numbers::USERAUTH_FAILURE);
        wire::put_name_list(out, ["publickey"]);
        wire::put_bool(out, false);
    });
}
