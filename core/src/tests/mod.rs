//! Unit tests of the core's layers through the in-memory harness
//! ([`crate::test_util`]): each layer's behaviour as a client sees it. They
//! live beside the layers, not in them, so that a layer's own code imports
//! nothing of the client or the harness.

mod connection;
mod server;
