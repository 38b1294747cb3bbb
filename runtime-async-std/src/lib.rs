//! gitmouth on the async-std runtime.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); smol is the
//! recommended runtime. This crate lets a program that already runs
//! async-std embed gitmouth without a second executor. The executor's part
//! only: bind the listener, run each connection on an async-std task.
//! Serving is [`gitmouth_io::server::run`]; each connection is driven by
//! [`gitmouth_io::driver::drive`] and decided by the core.

use gitmouth_io::config::Settings;

/// Runs a server with `settings` until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> Result<(), String> {
    async_std::task::block_on(async {
        let listener = async_std::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let local = listener.local_addr();
        // The accept closure owns the listener, so that the server closes
        // it (refusing new connections at once) when it stops accepting.
        // No Nagle delay: small packets (git's advertisements, window
        // adjusts) go out at once.
        let listener = std::sync::Arc::new(listener);
        let accept = move || {
            let listener = listener.clone();
            async move {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((stream, peer))
            }
        };
        let spawn = |task| {
            async_std::task::spawn(task);
        };
        gitmouth_io::server::run(&settings, local, accept, spawn).await
    })
}
