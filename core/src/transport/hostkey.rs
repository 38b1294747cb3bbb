//! Host keys.
