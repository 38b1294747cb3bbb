//! The git lifecycle: commands, authorization sources, backends and the
//! messages users see.

pub mod access;
pub mod api;
pub mod authorized_keys;
pub mod command;
pub mod dyno;
pub mod fingerprint;
pub mod http;
pub mod key_options;
pub mod messages;
pub mod repo_format;
