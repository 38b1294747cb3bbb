//! TLS to dyno hosts with `futures-rustls`, verified as the operator set
//! (`DYNOHOST_CA_FILE`, `DYNOHOST_TLS_VERIFY`). The time a connection
//! may take is the core's to keep: it closes one that takes too long
//! ([`gitmouth_core::server::Output::CloseDyno`]), which drops the future.

use crate::config::TlsSettings;
use async_net::TcpStream;
use futures_lite::AsyncWriteExt;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::ServerName;

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
    }
}
