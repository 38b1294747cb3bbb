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
        // No Nagle delay: small packets (git's advertisements, window
        // adjusts) go out at once.
        let accept = || async {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((stream, peer))
        };
        let spawn = |task| smol::spawn(task).detach();
        gitmouth_io::server::run(&settings, listener.local_addr(), accept, spawn).await
    })
}
