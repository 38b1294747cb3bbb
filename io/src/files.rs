//! Standalone mode's authorized keys and access file: loaded at start,
//! re-read when the file changes (checked every two seconds) and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gitmouth_core::app::access::AccessRules;
use gitmouth_core::app::authorized_keys::{Admission, AuthorizedKeys, LineRefusal};
use gitmouth_core::auth::certs::{self, FileError, RevokedKeys, UserCas};

/// The authorized keys of standalone mode, replaced whole when the file
/// changes. Sessions never see it: the driver answers their key lookups
/// (`Output::LookupKey`) from the set current when the lookup comes.
#[derive(Debug)]
pub struct KeyStore {
    current: RwLock<Arc<AuthorizedKeys>>,
    /// The file, which a reloaded configuration may change.
    path: RwLock<PathBuf>,
    /// The trusted user CAs (`--trusted-user-ca-keys`), if any.
    cas: CertFile<UserCas>,
    /// The revoked keys (`--revoked-keys`), if any.
    revoked: CertFile<RevokedKeys>,
    /// The access file (`--access`) and its last good rules; no file:
    /// single-team mode.
    access: RwLock<(Option<PathBuf>, Option<Arc<AccessRules>>)>,
}

impl Default for KeyStore {
    fn default() -> Self {
        Self::new(AuthorizedKeys::empty(), PathBuf::new())
    }
}

/// One of the certificate files: its path and its last good content.
#[derive(Debug)]
struct CertFile<T> {
    inner: RwLock<(Option<PathBuf>, Arc<T>)>,
    /// What the option is called, for logs.
    what: &'static str,
    parse: fn(&str) -> Result<T, FileError>,
}

impl<T: Default> CertFile<T> {
    fn new(what: &'static str, parse: fn(&str) -> Result<T, FileError>) -> Self {
        Self {
            inner: RwLock::new((None, Arc::new(T::default()))),
            what,
            parse,
        }
    }

    fn path(&self) -> Option<PathBuf> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    fn get(&self) -> Arc<T> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Reads `path` (or empties the content when `None`). A file that
    /// cannot be read or parsed keeps the last good content, and says why.
    fn load(&self, path: Option<PathBuf>) -> Result<(), String> {
        let content = match &path {
            None => T::default(),
            Some(file) => read_cert_file(file, self.parse)
                .map_err(|e| format!("--{} {}: {e}", self.what, file.display()))?,
        };
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = (path, Arc::new(content));
        Ok(())
    }

    /// [`Self::load`], logging a failure (the last good content stays).
    fn reload(&self, path: Option<PathBuf>) {
        match self.load(path.clone()) {
            Ok(()) => {
                if let Some(file) = path {
                    tracing::info!(file = %file.display(), what = self.what, "certificate file loaded");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot re-read: the last good content stays in use");
            }
        }
    }
}

fn read_cert_file<T>(path: &Path, parse: fn(&str) -> Result<T, FileError>) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse(&text).map_err(|e| e.to_string())
}

/// Who a key lookup found, or why nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The key's (or certificate's) user.
    User(String),
    /// A key in no file.
    Unknown,
    /// A revoked key, or a certificate refused for this reason.
    Refused(certs::Refusal),
    /// A key whose every `authorized_keys` line refuses it now (`from=`,
    /// `expiry-time=`), with each line's reason.
    KeyRefused(Vec<LineRefusal>),
}

impl KeyStore {
    /// A store holding `keys`, read from `path`.
    pub fn new(keys: AuthorizedKeys, path: PathBuf) -> Self {
        Self {
            current: RwLock::new(Arc::new(keys)),
            path: RwLock::new(path),
            cas: CertFile::new("trusted-user-ca-keys", UserCas::parse),
            revoked: CertFile::new("revoked-keys", RevokedKeys::parse),
            access: RwLock::new((None, None)),
        }
    }

    /// Reads the certificate files for the first time: one that cannot be
    /// read or parsed is an error (the server does not start).
    pub fn load_cert_files(
        &self,
        cas: Option<PathBuf>,
        revoked: Option<PathBuf>,
    ) -> Result<(), String> {
        self.cas.load(cas)?;
        self.revoked.load(revoked)?;
        if let Some(file) = self.cas.path() {
            tracing::info!(file = %file.display(), cas = self.cas.get().len(), "trusted user CA keys loaded");
        }
        if let Some(file) = self.revoked.path() {
            tracing::info!(file = %file.display(), keys = self.revoked.get().len(), "revoked keys loaded");
        }
        Ok(())
    }

    /// Takes the certificate files from these paths from now on (read at
    /// once; one that fails keeps the last good content).
    pub fn set_cert_paths(&self, cas: Option<PathBuf>, revoked: Option<PathBuf>) {
        self.cas.reload(cas);
        self.revoked.reload(revoked);
    }

    /// Every file watched: authorized_keys, the certificate files and
    /// the access file.
    fn paths(&self) -> Vec<Option<PathBuf>> {
        vec![
            Some(self.path()),
            self.cas.path(),
            self.revoked.path(),
            self.access_path(),
        ]
    }

    /// Who may log in with the key or certificate `blob`, at `now`
    /// (seconds since the Unix epoch), from `client`: the decision is the
    /// core's ([`certs::check`], [`AuthorizedKeys::admit`]), fed with the
    /// current files.
    pub fn lookup(&self, blob: &[u8], now: u64, client: std::net::IpAddr) -> Owner {
        let revoked = self.revoked.get();
        if certs::is_certificate(blob) {
            // The user is the first principal the access file knows.
            let access = self.access();
            let known = |name: &str| access.as_ref().is_none_or(|rules| rules.knows(name));
            return match certs::check(blob, &self.cas.get(), &revoked, now, client, &known) {
                Ok(user) => {
                    tracing::info!(
                        principal = %user.principal,
                        key_id = %user.key_id,
                        serial = user.serial,
                        ca = %user.ca,
                        "certificate accepted"
                    );
                    Owner::User(user.principal)
                }
                Err(refusal) => Owner::Refused(refusal),
            };
        }
        if revoked.is_revoked(blob) {
            return Owner::Refused(certs::Refusal::Revoked);
        }
        match self.snapshot().admit(blob, client, now) {
            Admission::Admitted(entry) => Owner::User(entry.user.clone()),
            Admission::Unknown => Owner::Unknown,
            Admission::Refused(lines) => Owner::KeyRefused(lines),
        }
    }

    /// Takes the access rules from `path` (none: single-team mode): read
    /// at once, and refused (the store unchanged) if the file cannot be
    /// read or parsed.
    pub fn load_access(&self, path: Option<PathBuf>) -> Result<(), String> {
        let rules = path.as_deref().map(read_access).transpose()?;
        if let Some(rules) = &rules {
            tracing::info!(file = %path.as_deref().unwrap_or(Path::new("")).display(), rules = rules.repos.len(), deploy_keys = rules.deploys.len(), "access rules loaded");
        }
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = (path, rules.map(Arc::new));
        Ok(())
    }

    /// The access file, if any.
    pub fn access_path(&self) -> Option<PathBuf> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reads the access file again; a file that fails keeps the last good
    /// rules, and the error is logged.
    pub fn reload_access(&self) {
        if let Err(e) = self.load_access(self.access_path()) {
            tracing::error!(error = %e, "the access file is refused; the last good rules stay");
        }
    }

    /// The current access rules (`None`: single-team mode).
    pub fn access(&self) -> Option<Arc<AccessRules>> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The file the keys come from.
    pub fn path(&self) -> PathBuf {
        self.path.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the keys from `path` from now on (read at once).
    pub fn set_path(&self, path: PathBuf) {
        *self.path.write().unwrap_or_else(|p| p.into_inner()) = path;
        self.reload();
    }

    /// Reads the files again (a certificate or access file that fails
    /// keeps its last good content).
    pub fn reload(&self) {
        self.replace(load_authorized_keys(&self.path()));
        self.cas.reload(self.cas.path());
        self.revoked.reload(self.revoked.path());
        self.reload_access();
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

/// Reads and parses the access file: the error names the file and the
/// line.
pub fn read_access(path: &Path) -> Result<AccessRules, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--access {}: {e}", path.display()))?;
    AccessRules::parse(&text).map_err(|e| format!("--access {}: {e}", path.display()))
}

/// Keeps `store` equal to its files, for the life of the server: the
/// files' metadata is compared every two seconds (SIGHUP re-reads them
/// too, with the configuration: [`crate::server`]).
pub async fn watch_authorized_keys(store: Arc<KeyStore>) {
    let stamps = |paths: &[Option<PathBuf>]| -> Vec<Stamp> {
        paths.iter().map(|p| p.as_deref().and_then(stamp)).collect()
    };
    let mut paths = store.paths();
    let mut last = stamps(&paths);
    loop {
        async_io::Timer::after(POLL).await;
        let now_paths = store.paths();
        if now_paths != paths {
            // Re-read by whoever changed them.
            paths = now_paths;
            last = stamps(&paths);
            continue;
        }
        let now = stamps(&paths);
        if now != last {
            last = now;
            store.reload();
        }
    }
}

/// Removes the directory `path` with everything in it
/// ([`gitmouth_core::server::Output::RemoveDir`]); one already gone is
/// nothing to do, another failure is logged.
pub fn remove_dir(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove"),
    }
}

/// Removes every directory directly in `dir` whose name starts with
/// `prefix` ([`gitmouth_core::actions::Output::RemoveDirsIn`]): a push's
/// quarantine directories. Files, and symbolic links, are left alone.
pub fn remove_dirs_in(dir: &Path, prefix: &str) {
    for path in dirs_named(dir, prefix) {
        tracing::info!(path = %path.display(), "removing what an unfinished push left");
        remove_dir(&path);
    }
}

/// The directories (not symbolic links) directly in `dir` whose names
/// start with `prefix`.
fn dirs_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// How old a temporary repository must be for
/// [`remove_stale_temporary_repositories`] to take it for a crash's: one
/// being made now is seconds old, and other instances sharing the data
/// directory may be making one.
pub const STALE_INIT_AGE: Duration = Duration::from_secs(3600);

/// At start (standalone mode): removes the temporary repositories of
/// push-to-create (`<repos>/.init-*`, see
/// [`gitmouth_core::actions::INIT_PREFIX`]) last modified more than
/// `older_than` before `now`, which a crash left behind. Younger ones may
/// be another instance's, at work. Returns what it removed; a missing
/// `repos` is nothing to do.
///
/// Called as `remove_stale_temporary_repositories(&repos,
/// STALE_INIT_AGE, SystemTime::now())`.
pub fn remove_stale_temporary_repositories(
    repos: &Path,
    older_than: Duration,
    now: std::time::SystemTime,
) -> Vec<PathBuf> {
    let prefix = gitmouth_core::actions::INIT_PREFIX;
    let mut removed = Vec::new();
    for path in dirs_named(repos, prefix) {
        let modified = std::fs::symlink_metadata(&path).and_then(|m| m.modified());
        let stale = modified.is_ok_and(|m| now.duration_since(m).is_ok_and(|age| age > older_than));
        if stale {
            tracing::info!(path = %path.display(), "removing a temporary repository left by a crash");
            remove_dir(&path);
            if !path.exists() {
                removed.push(path);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::SystemTime;

    /// A fresh scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "gitmouth-files-{name}-{}-{:?}",
                std::process::id(),
                SystemTime::now()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn age(path: &Path, secs: u64) {
        let then = SystemTime::now() - Duration::from_secs(secs);
        let f = std::fs::File::open(path).unwrap();
        f.set_modified(then).unwrap();
    }

    #[test]
    fn only_old_temporary_repositories_are_swept() {
        let dir = Scratch::new("sweep");
        let repos = dir.path().join("repos");
        let old = repos.join(".init-deadbeef-7");
        let young = repos.join(".init-cafef00d-3");
        let repo = repos.join("app.git");
        let file = repos.join(".init-file");
        for d in [&old, &young, &repo] {
            std::fs::create_dir_all(d.join("objects")).unwrap();
            std::fs::write(d.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        }
        std::fs::write(&file, "not a directory").unwrap();
        for d in [&old, &repo] {
            age(d, 2 * 3600);
        }
        age(&file, 2 * 3600);
        let removed =
            remove_stale_temporary_repositories(&repos, STALE_INIT_AGE, SystemTime::now());
        assert_eq!(removed, vec![old.clone()]);
        assert!(!old.exists());
        assert!(young.join("HEAD").is_file(), "a young one may be at work");
        assert!(repo.join("HEAD").is_file(), "a repository is never swept");
        assert!(file.is_file());
        // Nothing to sweep, or no directory at all: nothing happens.
        assert!(
            remove_stale_temporary_repositories(&repos, STALE_INIT_AGE, SystemTime::now())
                .is_empty()
        );
        assert!(
            remove_stale_temporary_repositories(
                &dir.path().join("missing"),
                STALE_INIT_AGE,
                SystemTime::now()
            )
            .is_empty()
        );
    }

    #[test]
    fn quarantine_directories_go_and_nothing_else() {
        let dir = Scratch::new("quarantine");
        let objects = dir.path().join("objects");
        let q1 = objects.join("tmp_objdir-incoming-abc123");
        let q2 = objects.join("tmp_objdir-incoming-XYZ");
        let pack = objects.join("pack");
        for d in [&q1, &q2, &pack] {
            std::fs::create_dir_all(d.join("pack")).unwrap();
        }
        std::fs::write(q1.join("pack/tmp_pack_1"), [0u8; 1024]).unwrap();
        let file = objects.join("tmp_objdir-incoming-file");
        std::fs::write(&file, "x").unwrap();
        remove_dirs_in(&objects, gitmouth_core::actions::QUARANTINE_PREFIX);
        assert!(!q1.exists() && !q2.exists());
        assert!(pack.is_dir() && file.is_file());
        // Gone already, or never there: nothing to do.
        remove_dir(&q1);
        remove_dirs_in(&dir.path().join("missing"), "x");
    }
}
