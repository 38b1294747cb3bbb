//! The sans-IO core of gitmouth: an SSH server for git.
//!
//! Everything that decides anything lives here: the SSH transport, user
//! authentication, the connection protocol, the git command and its
//! lifecycle. Nothing here opens a socket, spawns a process, reads a file or
//! a clock: time is an argument and randomness comes from a seed.

pub mod app;
pub mod auth;
pub mod transport;
pub mod wire;
