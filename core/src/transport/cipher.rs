//! Packet ciphers and MACs.
