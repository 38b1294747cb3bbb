//! Public-key user authentication, server side (RFC 4252 §5, §7), as a
//! state machine of its own: it takes USERAUTH_REQUESTs, asks who owns a
//! key ([`Outcome::Lookup`]), is told ([`UserAuth::answer`]) and ends with a
//! verified identity ([`Outcome::Authenticated`]). It knows nothing of
//! modes (who answers a lookup, and how) or of time limits.
//!
//! Only `publickey` is offered. A query (no signature) is answered
//! `PK_OK` only for a key that would be accepted; a refused query counts as
//! a failed attempt. The identity comes only from the key whose signature
//! was verified in the same request: nothing is remembered from a query
//! except the cached answer "this key exists", so querying key B and
//! signing with key A yields A's user, and signing with an unknown key C
//! yields nothing (the CVE-2024-45337 class).
//!
//! While a lookup is pending every later message waits undecoded (the
//! session reports [`UserAuth::is_pending`] to the link). An outage is not
//! a wrong key: the user gets a banner saying the key was not checked.

use crate::app::fingerprint;
use crate::transport::Transport;
use crate::transport::disconnect::DisconnectReason;
use crate::wire::{self, Parser, numbers};

use super::pubkey::{self, UserKeyAlg};

/// Who owns a key, as the session found out. `A` is whatever account the
/// session keeps beside the user's name (the platform's, in API mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<A> {
    /// The key belongs to this user.
    Known {
        /// The user's name.
        user: String,
        /// Their account.
        account: A,
    },
    /// No such key.
    Unknown,
    /// Nobody could say (never cached); the banner tells the user why.
    Unavailable {
        /// Shown before the failure (RFC 4252 §5.4).
        banner: String,
    },
}

/// A user whose key's signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<A> {
    /// The user's name.
    pub user: String,
    /// The SHA256 fingerprint of the verified key.
    pub fingerprint: String,
    /// Their account.
    pub account: A,
}

/// What the session must do after a message or an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<A> {
    /// Nothing more.
    Nothing,
    /// Find out who owns this key and [`UserAuth::answer`].
    Lookup {
        /// The key, in SSH wire encoding.
        blob: Vec<u8>,
        /// Its SHA256 fingerprint, for logs.
        fingerprint: String,
    },
    /// Authentication succeeded (USERAUTH_SUCCESS is sent).
    Authenticated(Verified<A>),
}

/// A publickey request waiting for its lookup.
#[derive(Debug)]
struct Pending {
    blob: Vec<u8>,
    alg: String,
    /// Whether its signature was already verified (a login), or it was a
    /// query.
    signed: bool,
    fingerprint: String,
}

/// Authentication of one connection.
#[derive(Debug)]
pub struct UserAuth<A> {
    max_attempts: u32,
    /// The user-key algorithms accepted.
    accepted: Vec<UserKeyAlg>,
    /// Failed attempts so far.
    failures: u32,
    /// Whether a `none` request has been seen (the first is free, as in
    /// OpenSSH: clients send it to learn the methods).
    none_seen: bool,
    /// Lookup answers for this connection, by key blob (bounded by the
    /// attempt limit, since every miss is a failure).
    cache: Vec<(Vec<u8>, Found<A>)>,
    pending: Option<Pending>,
    /// The user name of the first request: neither it nor the service may
    /// change (RFC 4252 §5 allows refusing that; OpenSSH disconnects).
    user: Option<Vec<u8>>,
    /// USERAUTH_REQUESTs of any kind so far.
    requests: u32,
}

/// USERAUTH_REQUESTs of any kind one connection may send: queries that
/// find a registered key are not failures, and without a cap a client
/// could ask about keys without end (ten keys, each queried then signed,
/// are 20).
pub const MAX_AUTH_REQUESTS: u32 = 20;

impl<A: Clone> UserAuth<A> {
    /// Authentication allowing `max_attempts` failures, with keys of the
    /// `accepted` algorithms.
    pub fn new(max_attempts: u32, accepted: Vec<UserKeyAlg>) -> Self {
        Self {
            max_attempts,
            accepted,
            failures: 0,
            none_seen: false,
            cache: Vec::new(),
            pending: None,
            user: None,
            requests: 0,
        }
    }

    /// Whether a lookup holds the next message back.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Abandons a lookup in flight; true if there was one.
    pub fn cancel(&mut self) -> bool {
        self.pending.take().is_some()
    }

    /// A USERAUTH_REQUEST.
    pub fn on_request(&mut self, t: &mut Transport, payload: &[u8]) -> Outcome<A> {
        let mut p = Parser::new(payload);
        let parsed = p
            .u8()
            .and_then(|_| Ok((p.string()?, p.string()?, p.string()?)));
        let Ok((user, service, method)) = parsed else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "malformed USERAUTH_REQUEST",
            );
            return Outcome::Nothing;
        };
        // RFC 4252 §5 lets the server refuse a change of user name or
        // service between requests; OpenSSH disconnects, and so do we (the
        // first request named `ssh-connection`, the only service offered).
        match &self.user {
            Some(first) if first.as_slice() != user || service != b"ssh-connection" => {
                tracing::info!("user name or service changed during authentication");
                t.disconnect(
                    DisconnectReason::ProtocolError,
                    "change of user name or service during authentication is not allowed",
                );
                return Outcome::Nothing;
            }
            Some(_) => {}
            None if service != b"ssh-connection" => {
                t.disconnect(
                    DisconnectReason::ServiceNotAvailable,
                    "only ssh-connection is offered",
                );
                return Outcome::Nothing;
            }
            None => self.user = Some(user.to_vec()),
        }
        self.requests += 1;
        if self.requests > MAX_AUTH_REQUESTS {
            tracing::info!(requests = self.requests, "too many authentication requests");
            t.disconnect(
                DisconnectReason::NoMoreAuthMethods,
                "too many authentication requests",
            );
            return Outcome::Nothing;
        }
        match method {
            b"publickey" => self.on_publickey(t, user, p),
            b"none" if !self.none_seen => {
                self.none_seen = true;
                send_failure(t);
                Outcome::Nothing
            }
            other => {
                tracing::debug!(method = %crate::log_safe(other), "method refused");
                self.fail(t);
                Outcome::Nothing
            }
        }
    }

    fn on_publickey(&mut self, t: &mut Transport, user: &[u8], mut rest: Parser<'_>) -> Outcome<A> {
        let parsed = (|| Ok::<_, wire::Malformed>((rest.bool()?, rest.utf8()?, rest.string()?)))();
        let Ok((signed, alg, blob)) = parsed else {
            t.disconnect(
                DisconnectReason::ProtocolError,
                "malformed publickey request",
            );
            return Outcome::Nothing;
        };
        if UserKeyAlg::from_name(alg).is_some_and(|a| !self.accepted.contains(&a)) {
            // One we know but the operator does not accept
            // (`--pubkey-accepted-algorithms`).
            tracing::info!(alg = %crate::log_safe(alg.as_bytes()), "user-key algorithm not accepted");
            self.fail(t);
            return Outcome::Nothing;
        }
        // A certificate's key is inside it: the user signs with that key,
        // and the certificate is judged by whoever answers the lookup.
        let is_cert = UserKeyAlg::from_name(alg).is_some_and(UserKeyAlg::is_cert);
        let parsed = if is_cert {
            pubkey::parse_user_cert(blob, alg).map(|(_, key_blob)| key_blob)
        } else {
            pubkey::parse_user_key(blob, alg).map(|_| blob.to_vec())
        };
        let key_blob = match parsed {
            Ok(key_blob) => key_blob,
            Err(e) => {
                tracing::info!(error = %e, "unacceptable user key");
                self.fail(t);
                return Outcome::Nothing;
            }
        };
        let fingerprint = fingerprint::sha256_blob(&key_blob);
        if signed {
            let signature = rest.string();
            let (Ok(signature), true) = (signature, rest.finish().is_ok()) else {
                t.disconnect(
                    DisconnectReason::ProtocolError,
                    "malformed publickey request",
                );
                return Outcome::Nothing;
            };
            let Some(session_id) = t.session_id() else {
                t.disconnect(
                    DisconnectReason::ProtocolError,
                    "authentication before key exchange",
                );
                return Outcome::Nothing;
            };
            // Verify first: a bad signature costs no lookup.
            let data = super::signed_data(session_id, user, alg, blob);
            if let Err(e) = pubkey::verify_user_signature_for(alg, &key_blob, signature, &data) {
                tracing::info!(key = %fingerprint, error = %e, "bad signature");
                self.fail(t);
                return Outcome::Nothing;
            }
        } else if rest.finish().is_err() {
            t.disconnect(DisconnectReason::ProtocolError, "malformed publickey query");
            return Outcome::Nothing;
        }
        let pending = Pending {
            blob: blob.to_vec(),
            alg: alg.to_owned(),
            signed,
            fingerprint,
        };
        let cached = self
            .cache
            .iter()
            .find(|(b, _)| b == blob)
            .map(|(_, found)| found.clone());
        match cached {
            Some(found) => self.finish(t, pending, found),
            None => {
                let outcome = Outcome::Lookup {
                    blob: pending.blob.clone(),
                    fingerprint: pending.fingerprint.clone(),
                };
                self.pending = Some(pending);
                outcome
            }
        }
    }

    /// The answer to [`Outcome::Lookup`] (ignored if none is pending).
    pub fn answer(&mut self, t: &mut Transport, found: Found<A>) -> Outcome<A> {
        let Some(pending) = self.pending.take() else {
            return Outcome::Nothing;
        };
        if !matches!(found, Found::Unavailable { .. }) {
            self.cache.push((pending.blob.clone(), found.clone()));
        }
        if t.is_closed() {
            return Outcome::Nothing;
        }
        self.finish(t, pending, found)
    }

    fn finish(&mut self, t: &mut Transport, pending: Pending, found: Found<A>) -> Outcome<A> {
        let Pending {
            blob,
            alg,
            signed,
            fingerprint,
        } = pending;
        match (found, signed) {
            (Found::Known { .. }, false) => {
                tracing::debug!(key = %fingerprint, "key query accepted");
                t.send(|out| {
                    wire::put_u8(out, numbers::USERAUTH_PK_OK);
                    wire::put_string(out, alg.as_bytes());
                    wire::put_string(out, &blob);
                });
                Outcome::Nothing
            }
            (Found::Known { user, account }, true) => {
                // The identity is that of the key just verified, and of no other.
                tracing::info!(user = %user, key = %fingerprint, "authenticated");
                t.send(|out| wire::put_u8(out, numbers::USERAUTH_SUCCESS));
                Outcome::Authenticated(Verified {
                    user,
                    fingerprint,
                    account,
                })
            }
            (Found::Unknown, _) => {
                tracing::info!(key = %fingerprint, "unknown key");
                self.fail(t);
                Outcome::Nothing
            }
            (Found::Unavailable { banner }, _) => {
                // RFC 4252 §5.4: shown before the failure, so nobody
                // mistakes an outage for a wrong key.
                t.send(|out| {
                    wire::put_u8(out, numbers::USERAUTH_BANNER);
                    wire::put_string(out, banner.as_bytes());
                    wire::put_string(out, b"");
                });
                self.fail(t);
                Outcome::Nothing
            }
        }
    }

    /// Counts a failed attempt and answers it, or ends the connection when
    /// the attempts are used up.
    fn fail(&mut self, t: &mut Transport) {
        self.failures += 1;
        if self.failures >= self.max_attempts {
            tracing::info!(failures = self.failures, "too many authentication failures");
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
