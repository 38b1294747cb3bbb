//! Key exchange.
