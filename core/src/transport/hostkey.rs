//! Host keys (stub until the real module lands).
#![allow(missing_docs)]
use rand_core::CryptoRng;
pub struct HostKey;
#[derive(Debug)] pub enum HostKeyError { Malformed(String) }
impl std::fmt::Display for HostKeyError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("x") } }
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)] pub enum HostKeyAlg { Ed25519, RsaSha2_512, RsaSha2_256 }
impl HostKeyAlg { pub fn name(self) -> &'static str { "x" } pub fn from_name(_n: &str) -> Option<Self> { None } pub const ALL: [Self; 3] = [Self::Ed25519, Self::RsaSha2_512, Self::RsaSha2_256]; }
impl HostKey {
    pub fn generate_ed25519(_rng: &mut dyn CryptoRng) -> HostKey { HostKey }
    pub fn from_private_key_file(_contents: &[u8]) -> Result<HostKey, HostKeyError> { Ok(HostKey) }
    pub fn to_openssh_private(&self, _comment: &str) -> Result<zeroize::Zeroizing<String>, HostKeyError> { Ok(Default::default()) }
    pub fn algorithms(&self) -> &'static [HostKeyAlg] { &[] }
    pub fn public_blob(&self) -> Vec<u8> { vec![] }
    pub fn fingerprint_sha256(&self) -> String { String::new() }
    pub fn sign(&self, _alg: HostKeyAlg, _data: &[u8]) -> Result<Vec<u8>, HostKeyError> { Ok(vec![]) }
}
pub fn verify_host_signature(_alg: HostKeyAlg, _public_blob: &[u8], _data: &[u8], _signature_blob: &[u8]) -> Result<(), HostKeyError> { Ok(()) }
