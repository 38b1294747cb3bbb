//! Start-up I/O: host keys and the standalone key store.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use gitmouth_core::config::{HostKeySource, HostKeyStep, Settings, host_key_step};
use gitmouth_core::server::{KeyStore, Mode, ServerConfig};
use gitmouth_core::transport::hostkey::HostKey;

/// Reads each host key, generating the default one when it is missing, as
/// the core decides; logs each key's fingerprint.
pub fn load_host_keys(sources: &[HostKeySource]) -> Result<Vec<HostKey>, String> {
    let mut keys = Vec::new();
    for source in sources {
        let path = match source {
            HostKeySource::Given(p) | HostKeySource::Default(p) => p,
        };
        let read = std::fs::read(path).map_err(|e| e.kind());
        let key = match host_key_step(source, read, crate::connection::seed())? {
            HostKeyStep::Loaded(key) => key,
            HostKeyStep::Create {
                key,
                path,
                contents,
            } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create host key {}: {e}", path.display()))?;
                file.write_all(contents.as_bytes())
                    .map_err(|e| format!("cannot write host key {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new host key");
                key
            }
        };
        tracing::info!(path = %path.display(), fingerprint = %key.fingerprint_sha256(), "host key");
        keys.push(key);
    }
    Ok(keys)
}

/// The session configuration for `settings`, with the standalone key
/// store it reads keys from.
pub fn server_config(
    settings: &Settings,
    host_keys: Vec<HostKey>,
) -> (ServerConfig, Arc<KeyStore>) {
    let store = Arc::new(KeyStore::new(crate::keys::load(&settings.authorized_keys)));
    let mode = Mode::Standalone {
        keys: store.clone(),
        repos: settings.data_dir.join("repos"),
    };
    (
        ServerConfig::from_settings(settings, host_keys, mode),
        store,
    )
}

/// This machine's host name, the default public host.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
