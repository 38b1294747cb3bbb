//! Start-up decisions that need no I/O: what a host-key source yields.
//!
//! The runtime reads the file and writes a generated key; this decides.

use std::path::PathBuf;

/// Where a host key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeySource {
    /// Named by the operator: must exist.
    Given(PathBuf),
    /// The default path: generated (ed25519, mode 0600) when missing.
    Default(PathBuf),
}

/// What to do with one host key source, given the result of reading it.
pub enum HostKeyStep {
    /// The file held a usable key.
    Loaded(crate::transport::hostkey::HostKey),
    /// The default key is missing: write `contents` to `path` (mode 0600,
    /// creating the directory), then use `key`.
    Create {
        /// The new key.
        key: crate::transport::hostkey::HostKey,
        /// Where to write it.
        path: PathBuf,
        /// OpenSSH private-key text.
        contents: zeroize::Zeroizing<String>,
    },
}

/// Decides what a host key source yields: parse what was read, generate the
/// default key when it is missing, and refuse anything else with a message
/// naming the file. `seed` feeds key generation.
pub fn host_key_step(
    source: &HostKeySource,
    read: Result<Vec<u8>, std::io::ErrorKind>,
    seed: [u8; 32],
) -> Result<HostKeyStep, String> {
    use crate::transport::hostkey::HostKey;
    use rand_core::SeedableRng;
    let (path, may_create) = match source {
        HostKeySource::Given(p) => (p, false),
        HostKeySource::Default(p) => (p, true),
    };
    match read {
        Ok(bytes) => HostKey::from_private_key_file(&bytes)
            .map(HostKeyStep::Loaded)
            .map_err(|e| format!("host key {}: {e}", path.display())),
        Err(std::io::ErrorKind::NotFound) if may_create => {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
            let key = HostKey::generate_ed25519(&mut rng);
            let contents = key
                .to_openssh_private("gitmouth host key")
                .map_err(|e| format!("cannot encode a new host key: {e}"))?;
            Ok(HostKeyStep::Create {
                key,
                path: path.clone(),
                contents,
            })
        }
        Err(std::io::ErrorKind::NotFound) => Err(format!(
            "host key {} does not exist (a key named with --host-key, --host-key-retiring or GITMOUTH_PRIVATE_KEY is never generated)",
            path.display()
        )),
        Err(kind) => Err(format!("host key {}: cannot read: {kind}", path.display())),
    }
}
