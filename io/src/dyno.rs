//! TLS to dyno hosts with `futures-rustls`, verified against
//! `DYNOHOST_CA_FILE` or the system roots (or not at all when the operator
//! says so, as the original never verified).

use std::sync::Arc;
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::AsyncWriteExt;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use gitmouth_core::config::TlsSettings;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = if tls.verify {
            let mut roots = rustls::RootCertStore::empty();
            match &tls.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("DYNOHOST_CA_FILE {}: {e}", path.display()))?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert =
                            cert.map_err(|e| format!("DYNOHOST_CA_FILE {}: {e}", path.display()))?;
                        roots
                            .add(cert)
                            .map_err(|e| format!("DYNOHOST_CA_FILE {}: {e}", path.display()))?;
                    }
                    if roots.is_empty() {
                        return Err(format!(
                            "DYNOHOST_CA_FILE {} holds no certificate",
                            path.display()
                        ));
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        };
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
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

/// `DYNOHOST_TLS_VERIFY=false`: accepts any certificate (signatures are
/// still checked, so the handshake itself is sound).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
