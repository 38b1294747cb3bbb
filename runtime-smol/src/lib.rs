//! gitmouth on the smol runtime.
//!
//! The executor's part only: bind the listener, run each connection on a
//! smol task. Serving is [`gitmouth_io::server::run`]; each connection is
//! driven by [`gitmouth_io::driver::drive`] and decided by the core.

use gitmouth_io::config::Settings;

/// Runs a server with `settings` until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> Result<(), String> {
    smol::block_on(async {
        let listener = async_net::TcpListener::bind(settings.listen)
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
        let spawn = |task| smol::spawn(task).detach();
        gitmouth_io::server::run(&settings, local, accept, spawn).await
    })
}
