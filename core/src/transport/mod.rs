//! The SSH transport layer (RFC 4253), server and client roles.

pub mod cipher;
pub mod hostkey;
pub mod kex;
