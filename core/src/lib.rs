//! The sans-IO core of gitmouth: an SSH server for git.
//!
//! Everything that decides anything lives here: the SSH transport, user
//! authentication, the connection protocol, the git command and its
//! lifecycle. Nothing here opens a socket, spawns a process, reads a file or
//! a clock: time is an argument and randomness comes from a seed.

pub mod actions;
pub mod admission;
pub mod algorithms;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod connection;
pub mod job;
pub mod link;
pub mod lock_table;
pub mod proxy;
pub mod server;
pub mod setup;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod timer;
pub mod transport;
pub mod wire;

/// Secret bytes (a key, a header holding one): usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(zeroize::Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(bytes))
    }

    /// The bytes themselves.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

/// Renders client-controlled bytes for a log line: non-printable bytes
/// escaped, at most 200 characters, so a peer can neither forge log lines
/// nor flood them.
pub fn log_safe(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if out.len() >= MAX {
            out.push_str(&format!("…(+{} bytes)", bytes.len() - i));
            break;
        }
        out.extend(b.escape_ascii().map(char::from));
    }
    out
}
