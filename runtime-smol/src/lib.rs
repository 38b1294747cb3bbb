//! gitmouth on the smol runtime.
//!
//! The executor's part only: accept connections and run each on its own
//! task, keep the authorized keys current, stop on SIGTERM or SIGINT. The
//! connection itself is driven by [`gitmouth_io::driver::drive`] and decided
//! by the core.

use std::sync::Arc;

use async_net::TcpListener;
use gitmouth_core::config::Settings;
use gitmouth_io::Shared;

/// Accepts connections on `listener` and serves each on its own task, until
/// the listener fails.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        smol::spawn(gitmouth_io::driver::drive(stream, peer, shared.clone())).detach();
    }
}

/// Runs a server with `settings` until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> Result<(), String> {
    smol::block_on(async {
        let (shared, keys) = gitmouth_io::startup::prepare(&settings)?;
        if let Some(store) = keys {
            smol::spawn(gitmouth_io::files::watch_authorized_keys(
                settings.authorized_keys.clone(),
                store,
            ))
            .detach();
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %local, "listening");
        let served = async {
            serve(listener, Arc::new(shared))
                .await
                .map_err(|e| format!("accept failed: {e}"))
        };
        futures_lite::future::or(gitmouth_io::startup::stop_signal(), served).await
    })
}
