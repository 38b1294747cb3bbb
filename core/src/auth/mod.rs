//! User authentication (RFC 4252).

pub mod pubkey;
