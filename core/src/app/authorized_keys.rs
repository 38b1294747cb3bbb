//! authorized_keys.
