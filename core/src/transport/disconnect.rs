//! Disconnection (RFC 4253 §11.1; reason codes from RFC 4250 §4.2.2).

use crate::wire::{self, Parsed, Parser, numbers};

/// DISCONNECT reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DisconnectReason {
    /// SSH_DISCONNECT_HOST_NOT_ALLOWED_TO_CONNECT.
    HostNotAllowed = 1,
    /// SSH_DISCONNECT_PROTOCOL_ERROR.
    ProtocolError = 2,
    /// SSH_DISCONNECT_KEY_EXCHANGE_FAILED.
    KeyExchangeFailed = 3,
    /// SSH_DISCONNECT_MAC_ERROR.
    MacError = 5,
    /// SSH_DISCONNECT_SERVICE_NOT_AVAILABLE.
    ServiceNotAvailable = 7,
    /// SSH_DISCONNECT_PROTOCOL_VERSION_NOT_SUPPORTED.
    VersionNotSupported = 8,
    /// SSH_DISCONNECT_HOST_KEY_NOT_VERIFIABLE.
    HostKeyNotVerifiable = 9,
    /// SSH_DISCONNECT_CONNECTION_LOST.
    ConnectionLost = 10,
    /// SSH_DISCONNECT_BY_APPLICATION.
    ByApplication = 11,
    /// SSH_DISCONNECT_TOO_MANY_CONNECTIONS.
    TooManyConnections = 12,
    /// SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE.
    NoMoreAuthMethods = 14,
}

impl DisconnectReason {
    /// The code on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Why a connection ended, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We sent DISCONNECT.
    Sent {
        /// Its reason code.
        reason: DisconnectReason,
        /// Its description.
        description: String,
    },
    /// The peer sent DISCONNECT.
    Received {
        /// Its reason code.
        code: u32,
        /// Its description, escaped for a log.
        description: String,
    },
    /// The peer closed the TCP connection (or the runtime lost it).
    PeerClosed,
    /// The version exchange failed; no packet could be sent.
    BadVersion(&'static str),
    /// The session ended normally: the channel closed.
    Finished,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sent {
                reason,
                description,
            } => write!(f, "disconnected (code {}): {description}", reason.code()),
            Self::Received { code, description } => {
                write!(f, "peer disconnected (code {code}): {description}")
            }
            Self::PeerClosed => f.write_str("connection closed by peer"),
            Self::BadVersion(why) => write!(f, "version exchange failed: {why}"),
            Self::Finished => f.write_str("session finished"),
        }
    }
}

/// Appends a DISCONNECT payload.
pub fn write_disconnect(out: &mut Vec<u8>, reason: DisconnectReason, description: &str) {
    wire::put_u8(out, numbers::DISCONNECT);
    wire::put_u32(out, reason.code());
    wire::put_string(out, description.as_bytes());
    wire::put_string(out, b"");
}

/// Parses a DISCONNECT payload into its code and (log-safe) description.
pub fn parse_disconnect(payload: &[u8]) -> Parsed<(u32, String)> {
    let mut p = Parser::new(payload);
    p.u8()?;
    let code = p.u32()?;
    let description = p.string()?;
    Ok((code, crate::log_safe(description)))
}
