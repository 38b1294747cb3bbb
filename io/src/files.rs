//! Standalone mode's authorized keys: loaded at start, re-read when the file
//! changes (checked every two seconds) and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gitmouth_core::app::authorized_keys::AuthorizedKeys;

/// The authorized keys of standalone mode, replaced whole when the file
/// changes. Sessions never see it: the driver answers their key lookups
/// (`Output::LookupKey`) from the set current when the lookup comes.
#[derive(Debug, Default)]
pub struct KeyStore {
    current: RwLock<Arc<AuthorizedKeys>>,
}

impl KeyStore {
    /// A store holding `keys`.
    pub fn new(keys: AuthorizedKeys) -> Self {
        Self {
            current: RwLock::new(Arc::new(keys)),
        }
    }

    /// Replaces the keys.
    pub fn replace(&self, keys: AuthorizedKeys) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(keys);
    }

    /// The current keys.
    pub fn snapshot(&self) -> Arc<AuthorizedKeys> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whose key `blob` (SSH wire encoding) is, if anyone's.
    pub fn owner(&self, blob: &[u8]) -> Option<String> {
        self.snapshot().find_blob(blob).map(|e| e.user.clone())
    }
}

/// How often the file's metadata is compared.
const POLL: Duration = Duration::from_secs(2);

/// What identifies one version of the file.
type Stamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Reads and parses the file, logging what the core reports.
pub fn load_authorized_keys(path: &Path) -> AuthorizedKeys {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (keys, errors) = AuthorizedKeys::parse(&text);
            for e in errors {
                tracing::warn!(file = %path.display(), line = e.line, reason = %e.reason, "authorized_keys line skipped");
            }
            if keys.is_empty() {
                tracing::warn!(file = %path.display(), "no usable keys: add OpenSSH public keys (one per line) to this file");
            } else {
                tracing::info!(file = %path.display(), keys = keys.len(), "authorized keys loaded");
            }
            keys
        }
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "no authorized keys yet: put OpenSSH public keys in this file (a .pub file works); it is picked up without a restart"
            );
            AuthorizedKeys::empty()
        }
    }
}

/// Keeps `store` equal to the file at `path`, for the life of the server.
pub async fn watch_authorized_keys(path: PathBuf, store: Arc<KeyStore>) {
    use futures_lite::StreamExt;
    let mut last = stamp(&path);
    let mut hup = async_signal::Signals::new([async_signal::Signal::Hup]).ok();
    loop {
        let tick = async {
            async_io::Timer::after(POLL).await;
            false
        };
        let signalled = match hup.as_mut() {
            Some(signals) => {
                futures_lite::future::or(async { signals.next().await.is_some() }, tick).await
            }
            None => tick.await,
        };
        let now = stamp(&path);
        if signalled || now != last {
            last = now;
            if signalled {
                tracing::info!("SIGHUP: re-reading authorized keys");
            }
            store.replace(load_authorized_keys(&path));
        }
    }
}
