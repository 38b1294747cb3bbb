//! Key exchange (stub until the real module lands).
#![allow(missing_docs, clippy::too_many_arguments)]
use rand_core::CryptoRng;
use zeroize::Zeroizing;
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KexAlg { MlKem768X25519Sha256, Sntrup761X25519Sha512, Sntrup761X25519Sha512OpenSsh, Curve25519Sha256, Curve25519Sha256LibSsh }
impl KexAlg {
    pub const ALL: [KexAlg; 5] = [Self::MlKem768X25519Sha256, Self::Sntrup761X25519Sha512, Self::Sntrup761X25519Sha512OpenSsh, Self::Curve25519Sha256, Self::Curve25519Sha256LibSsh];
    pub fn name(self) -> &'static str { "x" }
    pub fn from_name(_name: &str) -> Option<Self> { None }
    pub fn hash(self) -> HashAlg { HashAlg::Sha256 }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)] pub enum HashAlg { Sha256, Sha512 }
pub struct SharedSecret(Zeroizing<Vec<u8>>);
impl SharedSecret { pub fn encoded(&self) -> &[u8] { &self.0 } }
#[derive(Debug, Clone, Copy, PartialEq, Eq)] pub enum KexError { BadShareLength }
impl std::fmt::Display for KexError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("x") } }
pub fn server_exchange(_alg: KexAlg, _client_share: &[u8], _rng: &mut dyn CryptoRng) -> Result<(Vec<u8>, SharedSecret), KexError> { Err(KexError::BadShareLength) }
pub struct ClientKex;
impl ClientKex {
    pub fn start(_alg: KexAlg, _rng: &mut dyn CryptoRng) -> (ClientKex, Vec<u8>) { (ClientKex, vec![]) }
    pub fn finish(self, _server_share: &[u8]) -> Result<SharedSecret, KexError> { Err(KexError::BadShareLength) }
}
pub fn exchange_hash(_hash: HashAlg, _v_c: &[u8], _v_s: &[u8], _i_c: &[u8], _i_s: &[u8], _k_s: &[u8], _q_c: &[u8], _q_s: &[u8], _k: &SharedSecret) -> Vec<u8> { vec![] }
pub fn derive_key(_hash: HashAlg, _k: &SharedSecret, _h: &[u8], _letter: u8, _session_id: &[u8], len: usize) -> Zeroizing<Vec<u8>> { Zeroizing::new(vec![0; len]) }
