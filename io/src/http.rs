//! HTTP requests to the API server, as the core builds them: the bytes and
//! the reply's framing are the core's ([`gitmouth_core::app::http`]); here
//! a connection is opened (TLS with rustls for `https`, verified as the
//! operator set), written, read, and closed. Dropping the future closes the
//! connection, so an abandoned request ends at once.
//!
//! Why not surf or isahc: surf is unmaintained (RUSTSEC-2025-0036), and its
//! curl backend speaks TLS through the system OpenSSL, not rustls; and both
//! surf-on-curl and isahc 2 (on curl's rustls backend) keep an abandoned
//! transfer open until the server answers or the timeout passes — isahc
//! checks for cancellation only when response bytes arrive — so a client
//! hanging up during provisioning would leave the request open (our
//! end-to-end tests caught it). Three body-less requests need no more than
//! this module and the core's framing.
//!
//! No time limit is kept here: the core arms one for each request (its
//! `timeout`) and, when it passes, abandons the request
//! ([`gitmouth_core::server::Output::Cancel`]), which drops this future.

use crate::config::TlsSettings;
use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsConnector;
use gitmouth_core::app::api::{HttpError, HttpRequest, HttpResponse};
use gitmouth_core::app::http::{ResponseReader, encode_request, target};
use rustls::pki_types::ServerName;

/// A client for the API server.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
}

impl Client {
    /// A client verifying certificates as `tls` says.
    pub fn new(tls: &TlsSettings) -> Result<Self, String> {
        let config = crate::tls::client_config(tls, "APISERVER_CA_FILE")?;
        Ok(Self {
            tls: TlsConnector::from(config),
        })
    }

    /// Makes the request (for as long as the core waits for it).
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let t = target(&request.url)?;
        let place = format!("{}:{}", t.host, t.port);
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| HttpError::Failed(format!("{place}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let bytes = encode_request(&request, &t);
        if t.tls {
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| HttpError::Failed(format!("{place}: {e}")))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Failed(format!("{place}: TLS: {e}")))?;
            exchange_on(tls, &bytes, request.max_body).await
        } else {
            exchange_on(tcp, &bytes, request.max_body).await
        }
    }
}

async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    let io = |e: std::io::Error| HttpError::Failed(e.to_string());
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut reader = ResponseReader::new(max_body);
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // The end of the stream without TLS close_notify: the reply is
            // complete only if its framing says so.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return reader.finish();
        }
        if let Some(reply) = reader.feed(&buf[..n])? {
            return Ok(reply);
        }
    }
}
