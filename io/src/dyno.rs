//! TLS to dyno hosts with `futures-rustls`, verified as the operator set
//! (`DYNOHOST_CA_FILE`, `DYNOHOST_TLS_VERIFY`).

use std::time::Duration;

use crate::config::TlsSettings;
use async_net::TcpStream;
use futures_lite::AsyncWriteExt;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::ServerName;

/// How long reaching a dyno and its TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The TLS stream to one dyno.
pub type DynoStream = TlsStream<TcpStream>;

/// Opens rendezvous connections.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
}

impl Connector {
    /// A connector verifying as `tls` says.
    pub fn new(tls: &TlsSettings) -> Result<Self, String> {
        let config = crate::tls::client_config(tls, "DYNOHOST_CA_FILE")?;
        Ok(Self {
            tls: TlsConnector::from(config),
        })
    }

    /// Connects to `host:port` and writes `header` as the first record,
    /// alone (flushed before anything else can be written).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        header: &[u8],
    ) -> Result<DynoStream, String> {
        let attempt = async {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("dyno host {host:?}: {e}"))?;
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let mut tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{host}:{port}: TLS: {e}"))?;
            tls.write_all(header)
                .await
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            tls.flush()
                .await
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            Ok(tls)
        };
        let timeout = async {
            async_io::Timer::after(CONNECT_TIMEOUT).await;
            Err(format!(
                "{host}:{port}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        };
        futures_lite::future::or(attempt, timeout).await
    }
}
