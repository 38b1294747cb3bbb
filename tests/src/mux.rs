//! What the end-to-end tests of one SSH connection carrying several
//! sessions share: OpenSSH ControlMaster set-up, the connections a server
//! logged, and a server with one pushed repository.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::{Git, Runtime, Server, ServerOptions, Ssh, keygen, run_with_timeout, start_git_server};

/// A failure bound only: every wait below ends on an event.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The peers (`127.0.0.1:PORT`) of every connection the server logged: one
/// per TCP connection.
pub fn peers(server: &Server) -> BTreeSet<String> {
    server
        .log()
        .lines()
        .filter_map(span_peer)
        .map(str::to_owned)
        .collect()
}

/// The peer in a log line's connection span, `conn{session=ID peer=ADDR}`.
fn span_peer(line: &str) -> Option<&str> {
    let span = line.split("conn{").nth(1)?.split('}').next()?;
    span.split(' ')
        .find_map(|field| field.strip_prefix("peer="))
}

/// The peer of the connection whose log line contains `needle`, the first
/// such line not of a peer in `known`.
pub fn new_peer_with(server: &Server, needle: &str, known: &BTreeSet<String>) -> Option<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(span_peer)
        .find(|p| !known.contains(*p))
        .map(str::to_owned)
}

/// Log lines of connection `peer` containing `needle`.
pub fn lines_of(server: &Server, peer: &str, needle: &str) -> usize {
    server
        .log()
        .lines()
        .filter(|l| span_peer(l) == Some(peer) && l.contains(needle))
        .count()
}

/// A git server with repository `shared` pushed (one commit on `main`),
/// reached with `key`; returns the server, the key and the pushed commit.
pub fn server_with_repo(
    runtime: Runtime,
    dir: &Path,
    args: &[&str],
) -> (Server, std::path::PathBuf, String) {
    let key = keygen(dir, "ed25519", "id", "alice");
    let server = start_git_server(runtime, dir, &[&key], ServerOptions::default().args(args));
    let ssh = server.ssh().key(&key);
    let git = Git::new(&dir.join("home")).ssh(&ssh);
    let src = dir.join("src");
    git.ok(dir, &["init", "-q", "-b", "main", src.to_str().unwrap()]);
    std::fs::write(src.join("README"), "one connection, many sessions\n").unwrap();
    git.ok(&src, &["add", "README"]);
    git.ok(&src, &["commit", "-q", "-m", "first"]);
    git.ok(&src, &["push", "-q", &ssh.url("shared"), "main"]);
    let tip = git.ok(&src, &["rev-parse", "HEAD"]).trim().to_owned();
    (server, key, tip)
}

/// `ssh` sharing one master connection through `dir/cm-%C`, the master
/// staying on in the background for 30 s after its last session.
pub fn muxed(server: &Server, key: &Path, dir: &Path) -> Ssh {
    foreground_muxed(server, key, dir).option("ControlPersist=30")
}

/// `ssh` sharing one master connection through `dir/cm-%C`; the first one
/// stays the master in the foreground (no `ControlPersist`, which would
/// fork it off after authentication).
pub fn foreground_muxed(server: &Server, key: &Path, dir: &Path) -> Ssh {
    server
        .ssh()
        .key(key)
        .option("ControlMaster=auto")
        .option(&format!("ControlPath={}/cm-%C", dir.display()))
}

/// `ssh -O <command>` for the master of `ssh`.
pub fn control(ssh: &Ssh, command: &str) -> std::process::Output {
    let mut cmd = ssh.clone().arg("-O").arg(command).command(&[]);
    cmd.stdin(Stdio::null());
    run_with_timeout(cmd, LIMIT)
}

/// Stops the master (`ssh -O exit`) when dropped, even on a failure.
pub struct Master(pub Ssh);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = control(&self.0, "exit");
    }
}
