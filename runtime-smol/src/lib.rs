//! gitmouth on the smol runtime.
//!
//! A thin driver: it accepts TCP connections, runs one
//! [`gitmouth_core::server::Session`] per connection and performs what the
//! session asks for. Every decision is the core's.

mod backend;
mod connection;
mod keys;
mod startup;

pub use connection::drive;
pub use startup::{host_name, load_host_keys, server_config};

use std::sync::Arc;

use async_net::TcpListener;
use gitmouth_core::server::ServerConfig;

/// Accepts connections on `listener` and serves each on its own task, until
/// the listener fails.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let config = config.clone();
        smol::spawn(async move {
            connection::drive(stream, peer, config).await;
        })
        .detach();
    }
}

/// Runs a server with `settings` until SIGTERM or SIGINT.
pub fn run(settings: gitmouth_core::config::Settings) -> Result<(), String> {
    smol::block_on(async {
        let host_keys = load_host_keys(&settings.host_keys)?;
        let (config, store) = server_config(&settings, host_keys);
        let config = Arc::new(config);
        smol::spawn(keys::watch(settings.authorized_keys.clone(), store)).detach();
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(address = %local, "listening");
        let stop = async {
            use async_signal::{Signal, Signals};
            use futures_lite::StreamExt;
            let mut signals =
                Signals::new([Signal::Term, Signal::Int]).map_err(|e| e.to_string())?;
            let signal = signals.next().await;
            tracing::info!(?signal, "stopping");
            Ok::<(), String>(())
        };
        let served = async {
            serve(listener, config)
                .await
                .map_err(|e| format!("accept failed: {e}"))
        };
        futures_lite::future::or(stop, served).await
    })
}
