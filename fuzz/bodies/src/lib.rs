//! The bodies of gitmouth's fuzz targets, as plain functions over `&[u8]`.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line calling the function of
//! the same name here. Keeping the bodies out of the libFuzzer binaries lets
//! the normal (stable) test suite replay the committed corpus through exactly
//! the same code (`tests/tests/fuzz_corpus.rs`), without libFuzzer.
//!
//! A body returns normally for every input the core handles correctly and
//! panics otherwise: on a panic inside the core (a panic
//! is a bug, never bad input), or when one of the invariants checked here
//! fails. Rejecting an input is never a failure.

pub mod seeds;

mod authorized_keys;
mod exec_command;
mod kexinit;
mod packet_reader;
mod proxy_header;
pub mod server_session;
mod version_line;

pub use authorized_keys::authorized_keys;
pub use exec_command::exec_command;
pub use kexinit::kexinit;
pub use packet_reader::{MODES, ReaderMode, packet_reader};
pub use proxy_header::proxy_header;
pub use server_session::{
    HOST_KEY_SEED, SESSION_SEED, SessionRun, Stages, control, run_session, server_config,
    server_session, session_stages,
};
pub use version_line::version_line;

/// A target's body: returns for any input, panics on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/` and the
/// binary under `fuzz/fuzz_targets/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("packet_reader", packet_reader),
    ("version_line", version_line),
    ("kexinit", kexinit),
    ("exec_command", exec_command),
    ("authorized_keys", authorized_keys),
    ("server_session", server_session),
    ("proxy_header", proxy_header),
];
