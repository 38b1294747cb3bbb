//! Public-key user authentication, server side (RFC 4252 §5, §7).
//!
//! Only `publickey` is offered. A query (no signature) is answered
//! `PK_OK` only for a key that would be accepted; a refused query counts as
//! a failed attempt. The identity comes only from the
//! key whose signature was verified in the same request: nothing is
//! remembered from a query except the cached answer "this key exists", so
//! querying key B and signing with key A yields A's user, and signing with
//! an unknown key C yields nothing (the CVE-2024-45337 class).
//!
//! In API mode a lookup is an HTTP request: the request waits (and every
//! message after it stays undecoded) until the answer comes. An outage is
//! not a wrong key: the user gets a banner saying the key was not checked.

use std::time::Instant;

use crate::app::api::{self, ApiUser, HttpError, HttpResponse, LookupResult};
use crate::app::fingerprint;
use crate::app::messages;
use crate::auth::pubkey;
use crate::transport::Transport;
use crate::transport::disconnect::DisconnectReason;
use crate::wire::{self, Parser, numbers};

use super::{Identity, Mode, Output, Phase, RequestId, ServerUpper};

/// What a key lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The key belongs to this user (and, in API mode, this account).
    Known(String, Option<ApiUser>),
    /// No such key.
    Unknown,
    /// The platform could not say (never cached).
    Unavailable,
}

/// A publickey request waiting for its lookup.
#[derive(Debug)]
struct Pending {
    id: RequestId,
    blob: Vec<u8>,
    alg: String,
    /// Whether its signature was already verified (a login), or it was a
    /// query.
    signed: bool,
    fingerprint: String,
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
    pending: Option<Pending>,
}

impl AuthState {
    /// Whether a lookup holds the next message back.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Failed attempts so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// Abandons any lookup in flight, returning its id.
    pub(super) fn cancel(&mut self) -> Option<RequestId> {
        self.pending.take().map(|p| p.id)
    }
}

impl ServerUpper {
    pub(super) fn on_userauth(&mut self, t: &mut Transport, now: Instant, payload: &[u8]) {
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
        if service != b"ssh-connection" {
            t.disconnect(
                DisconnectReason::ServiceNotAvailable,
                "only ssh-connection is offered",
            );
            return;
        }
        match method {
            b"publickey" => self.on_publickey(t, now, user, p),
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

    fn on_publickey(&mut self, t: &mut Transport, now: Instant, user: &[u8], mut rest: Parser<'_>) {
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
        let fingerprint = fingerprint::sha256(&key);
        if signed {
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
            // Verify first: a bad signature costs no lookup.
            let data = crate::auth::signed_data(session_id, user, alg, blob);
            if let Err(e) = pubkey::verify_user_signature_for(alg, blob, signature, &data) {
                tracing::info!(session = %self.id, key = %fingerprint, error = %e, "bad signature");
                self.fail(t);
                return;
            }
        } else if rest.finish().is_err() {
            t.disconnect(DisconnectReason::ProtocolError, "malformed publickey query");
            return;
        }
        let pending = Pending {
            id: RequestId(0),
            blob: blob.to_vec(),
            alg: alg.to_owned(),
            signed,
            fingerprint,
        };
        match self.lookup(blob) {
            Some(found) => self.finish_publickey(t, now, pending, found),
            None => self.start_lookup(pending),
        }
    }

    /// Answers from the connection's cache; `None` when the key's owner
    /// must be asked for.
    fn lookup(&mut self, blob: &[u8]) -> Option<Lookup> {
        self.auth
            .cache
            .iter()
            .find(|(b, _)| b == blob)
            .map(|(_, found)| found.clone())
    }

    /// Asks who owns the key: the runtime, from the current
    /// `authorized_keys` (standalone), or the platform (API mode).
    fn start_lookup(&mut self, mut pending: Pending) {
        pending.id = self.next_id();
        let output = match &self.config.mode {
            Mode::Standalone { .. } => Output::LookupKey {
                id: pending.id,
                blob: pending.blob.clone(),
            },
            Mode::Api { api, .. } => {
                tracing::info!(session = %self.id, key = %pending.fingerprint, "looking the key up");
                Output::Http {
                    id: pending.id,
                    request: api::lookup_request(api, &fingerprint::md5_hex(&pending.blob)),
                }
            }
        };
        self.outputs.push_back(output);
        self.auth.pending = Some(pending);
    }

    /// The runtime answered a standalone key lookup.
    pub(super) fn on_key_looked_up(
        &mut self,
        t: &mut Transport,
        now: Instant,
        id: RequestId,
        user: Option<String>,
    ) {
        let Some(pending) = self.auth.pending.take_if(|p| p.id == id) else {
            return;
        };
        let found = match user {
            Some(user) => Lookup::Known(user, None),
            None => Lookup::Unknown,
        };
        self.auth.cache.push((pending.blob.clone(), found.clone()));
        if !t.is_closed() {
            self.finish_publickey(t, now, pending, found);
        }
    }

    /// The platform answered a key lookup.
    pub(super) fn on_lookup_done(
        &mut self,
        t: &mut Transport,
        now: Instant,
        id: RequestId,
        result: Result<HttpResponse, HttpError>,
    ) {
        let Some(pending) = self.auth.pending.take_if(|p| p.id == id) else {
            return;
        };
        let found = match api::parse_lookup(&result) {
            LookupResult::Found(user) => Lookup::Known(user.id.clone(), Some(user)),
            LookupResult::Unknown => Lookup::Unknown,
            LookupResult::Unavailable(why) => {
                tracing::error!(session = %self.id, error = %why, "the platform did not answer the key lookup");
                Lookup::Unavailable
            }
        };
        if found != Lookup::Unavailable {
            self.auth.cache.push((pending.blob.clone(), found.clone()));
        }
        if !t.is_closed() {
            self.finish_publickey(t, now, pending, found);
        }
    }

    fn finish_publickey(
        &mut self,
        t: &mut Transport,
        now: Instant,
        pending: Pending,
        found: Lookup,
    ) {
        let Pending {
            blob,
            alg,
            signed,
            fingerprint,
            ..
        } = pending;
        match (found, signed) {
            (Lookup::Known(..), false) => {
                tracing::debug!(session = %self.id, key = %fingerprint, "key query accepted");
                t.send(|out| {
                    wire::put_u8(out, numbers::USERAUTH_PK_OK);
                    wire::put_string(out, alg.as_bytes());
                    wire::put_string(out, &blob);
                });
            }
            (Lookup::Known(user, account), true) => {
                // The identity is that of the key just verified, and of no other.
                tracing::info!(session = %self.id, user = %user, key = %fingerprint, "authenticated");
                let identity = Identity { user, fingerprint };
                self.outputs
                    .push_back(Output::Authenticated(identity.clone()));
                self.identity = Some(identity);
                self.api_user = account;
                self.phase = Phase::Connected;
                self.login_deadline = None;
                self.limits = Some(super::Limits {
                    last_activity: now,
                    end: now + self.config.max_session,
                    hard_stop: None,
                });
                t.send(|out| wire::put_u8(out, numbers::USERAUTH_SUCCESS));
                self.arm_keepalive(now);
            }
            (Lookup::Unknown, _) => {
                tracing::info!(session = %self.id, key = %fingerprint, "unknown key");
                self.fail(t);
            }
            (Lookup::Unavailable, _) => {
                // RFC 4252 §5.4: shown before the failure, so nobody
                // mistakes an outage for a wrong key.
                let text = messages::with_session_id(messages::platform_unavailable(), &self.id);
                t.send(|out| {
                    wire::put_u8(out, numbers::USERAUTH_BANNER);
                    wire::put_string(out, text.as_bytes());
                    wire::put_string(out, b"");
                });
                self.fail(t);
            }
        }
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
