//! HTTP requests to the API server, as the core builds them, with `isahc`
//! (libcurl with its rustls backend: the TLS stack is rustls, verified
//! against `APISERVER_CA_FILE` or the system roots).

use futures_lite::AsyncReadExt;
use gitmouth_core::app::api::{HttpError, HttpRequest, HttpResponse, Method};
use gitmouth_core::config::TlsSettings;
use isahc::config::Configurable;

/// Connecting may take at most this long, whatever the request's limit.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A client for the API server.
#[derive(Clone)]
pub struct Client {
    inner: isahc::HttpClient,
}

impl Client {
    /// A client verifying certificates as `tls` says.
    pub fn new(tls: &TlsSettings) -> Result<Self, String> {
        use isahc::tls::{TlsConfig, TrustStore};
        let mut config = TlsConfig::builder();
        if let Some(ca) = &tls.ca_file {
            if !ca.is_file() {
                return Err(format!("APISERVER_CA_FILE {} does not exist", ca.display()));
            }
            config = config.trust_store(TrustStore::from_file(ca.clone()));
        }
        if !tls.verify {
            config = config
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hosts(true);
        }
        let inner = isahc::HttpClient::builder()
            .tls_config(config.build())
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect_policy(isahc::config::RedirectPolicy::None)
            .build()
            .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
        Ok(Self { inner })
    }

    /// Makes the request; dropping the future abandons it.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let builder = match request.method {
            Method::Get => isahc::Request::get(&request.url),
            Method::Post => isahc::Request::post(&request.url),
        };
        let built = builder
            .header("Authorization", request.authorization.as_str())
            .header("Accept", "application/json, text/plain")
            .timeout(request.timeout)
            .body(isahc::AsyncBody::empty())
            .map_err(|e| HttpError::Failed(format!("bad request: {e}")))?;
        let response = self.inner.send_async(built).await.map_err(|e| {
            if e.is_timeout() {
                HttpError::Timeout
            } else {
                HttpError::Failed(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let limit = request.max_body as u64 + 1;
        response
            .into_body()
            .take(limit)
            .read_to_end(&mut body)
            .await
            .map_err(|e| HttpError::Failed(format!("reading the reply: {e}")))?;
        if body.len() > request.max_body {
            return Err(HttpError::TooLarge);
        }
        Ok(HttpResponse { status, body })
    }
}
