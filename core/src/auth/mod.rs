//! User authentication (RFC 4252).

pub mod certs;
pub mod pubkey;
pub mod server;

use crate::wire::{self, numbers};

/// The data a publickey signature covers (RFC 4252 §7), built from the
/// request's own fields.
pub fn signed_data(session_id: &[u8], user: &[u8], alg: &str, blob: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(session_id.len() + user.len() + blob.len() + 64);
    wire::put_string(&mut data, session_id);
    wire::put_u8(&mut data, numbers::USERAUTH_REQUEST);
    wire::put_string(&mut data, user);
    wire::put_string(&mut data, b"ssh-connection");
    wire::put_string(&mut data, b"publickey");
    wire::put_bool(&mut data, true);
    wire::put_string(&mut data, alg.as_bytes());
    wire::put_string(&mut data, blob);
    data
}
