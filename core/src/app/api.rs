//! The Openruko API server's three calls (`docs/openruko.md` §1-3), as
//! data: the requests are built here and the replies parsed here, strictly;
//! a runtime only carries them.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use crate::app::command::{GitVerb, RepoName};

/// Largest reply body we read from the API server: the real replies are a
/// few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Where the API server is and how we authenticate to it.
#[derive(Clone)]
pub struct ApiServer {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The platform's super-user key (`APISERVER_KEY`); never logged.
    pub key: Zeroizing<String>,
    /// Time limit of the key lookup and the access check.
    pub timeout: Duration,
    /// Time limit of provisioning, which waits for a dyno host.
    pub provision_timeout: Duration,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.base_url())
            .field("key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("provision_timeout", &self.provision_timeout)
            .finish()
    }
}

/// URL scheme of the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// Parses `APISERVER_PROTOCOL`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            _ => None,
        }
    }

    /// The scheme's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl ApiServer {
    /// `scheme://host:port`.
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// HTTP methods we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// One HTTP request for the runtime to make.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Full URL, query included.
    pub url: String,
    /// The `Authorization` header's value (a secret: never logged).
    pub authorization: Zeroizing<String>,
    /// How long the whole exchange may take.
    pub timeout: Duration,
    /// Largest body to read; more is an error.
    pub max_body: usize,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("authorization", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An HTTP reply.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body (at most the request's `max_body`).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    // The key lookup's body is `<user_id>:<user_api_key>`: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// Why no reply came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The time limit passed.
    Timeout,
    /// The body was larger than allowed.
    TooLarge,
    /// Connection refused, DNS, TLS or another transport failure.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge => f.write_str("reply body too large"),
            Self::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// `Basic base64(":" + key)`: an empty user name and the key as password.
pub fn basic_auth(key: &str) -> Zeroizing<String> {
    let plain = Zeroizing::new(format!(":{key}"));
    Zeroizing::new(format!("Basic {}", Base64::encode_string(plain.as_bytes())))
}

/// §1: the key lookup by MD5 fingerprint (32 lower-case hex digits).
pub fn lookup_request(api: &ApiServer, fingerprint_md5: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url: format!(
            "{}/internal/lookupUserByPublicKey?fingerprint={fingerprint_md5}",
            api.base_url()
        ),
        authorization: basic_auth(&api.key),
        timeout: api.timeout,
        max_body: MAX_BODY,
    }
}

/// §2: the user's access to the app, with the user's own key.
pub fn access_request(api: &ApiServer, app: &RepoName, user_key: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url: format!("{}/apps/{}", api.base_url(), app.as_str()),
        authorization: basic_auth(user_key),
        timeout: api.timeout,
        max_body: MAX_BODY,
    }
}

/// §3: provisioning a build dyno for the command.
pub fn provision_request(api: &ApiServer, app: &RepoName, verb: GitVerb) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url: format!(
            "{}/internal/{}/gitaction?command={}",
            api.base_url(),
            app.as_str(),
            verb.dashed()
        ),
        authorization: basic_auth(&api.key),
        timeout: api.provision_timeout,
        max_body: MAX_BODY,
    }
}

/// A user found by the key lookup.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiUser {
    /// The platform's user id.
    pub id: String,
    /// The user's API key (a secret).
    pub api_key: Zeroizing<String>,
}

impl std::fmt::Debug for ApiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiUser")
            .field("id", &self.id)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// What the key lookup says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// The key belongs to this user.
    Found(ApiUser),
    /// No such key.
    Unknown,
    /// The platform could not answer; the text is for the operator.
    Unavailable(String),
}

/// Parses the key lookup's reply: `200` with `<user_id>:<user_api_key>`;
/// `404` is an unknown key; anything else means the platform is failing
/// (a `401`/`403` means it refuses *our* key: the operator must hear of it).
pub fn parse_lookup(reply: &Result<HttpResponse, HttpError>) -> LookupResult {
    let response = match reply {
        Ok(r) => r,
        Err(e) => return LookupResult::Unavailable(format!("key lookup failed: {e}")),
    };
    match response.status {
        200 => {
            let Ok(text) = std::str::from_utf8(&response.body) else {
                return LookupResult::Unavailable("key lookup: body is not text".into());
            };
            let text = text.trim_end_matches(['\r', '\n']);
            match text.split_once(':') {
                Some((id, key))
                    if !id.is_empty()
                        && !key.is_empty()
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        && key.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    LookupResult::Found(ApiUser {
                        id: id.to_owned(),
                        api_key: Zeroizing::new(key.to_owned()),
                    })
                }
                _ => LookupResult::Unavailable("key lookup: malformed body".into()),
            }
        }
        404 => LookupResult::Unknown,
        401 | 403 => LookupResult::Unavailable(format!(
            "key lookup: the API server refused APISERVER_KEY ({})",
            response.status
        )),
        status => LookupResult::Unavailable(format!("key lookup: status {status}")),
    }
}

/// What the access check says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessResult {
    /// The user may use the app.
    Granted,
    /// No such app, or not the user's: one answer for both.
    Denied,
    /// The platform could not answer; the text is for the operator.
    Unavailable(String),
}

/// Parses the access check: `200` with a JSON object is access; `401`,
/// `403`, `404` or an error body is none; anything else is the platform
/// failing.
pub fn parse_access(reply: &Result<HttpResponse, HttpError>) -> AccessResult {
    let response = match reply {
        Ok(r) => r,
        Err(e) => return AccessResult::Unavailable(format!("access check failed: {e}")),
    };
    match response.status {
        200 => match serde_json::from_slice::<serde_json::Value>(&response.body) {
            Ok(serde_json::Value::Object(map)) if !map.contains_key("error") => {
                AccessResult::Granted
            }
            Ok(serde_json::Value::Object(_)) => AccessResult::Denied,
            _ => AccessResult::Unavailable("access check: body is not a JSON object".into()),
        },
        401 | 403 | 404 => AccessResult::Denied,
        status => AccessResult::Unavailable(format!("access check: status {status}")),
    }
}

/// Where the provisioned dyno waits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Dyno {
    /// The dyno host's name.
    pub host: String,
    /// The dyno's id, sent in the rendezvous header.
    pub dyno_id: String,
    /// The rendezvous id (logged only).
    pub rez_id: String,
}

/// Parses provisioning's reply; any failure is "no build server", with the
/// reason for the operator.
pub fn parse_provision(reply: &Result<HttpResponse, HttpError>) -> Result<Dyno, String> {
    let response = reply
        .as_ref()
        .map_err(|e| format!("provisioning failed: {e}"))?;
    if response.status != 200 {
        let body = crate::log_safe(&response.body);
        return Err(format!("provisioning: status {}: {body}", response.status));
    }
    let dyno: Dyno = serde_json::from_slice(&response.body)
        .map_err(|e| format!("provisioning: malformed body: {e}"))?;
    let host_ok = !dyno.host.is_empty()
        && dyno.host.len() <= 253
        && dyno
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    let id_ok = !dyno.dyno_id.is_empty() && dyno.dyno_id.bytes().all(|b| b.is_ascii_graphic());
    if !host_ok || !id_ok {
        return Err("provisioning: malformed host or dyno id".into());
    }
    Ok(dyno)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn api() -> ApiServer {
        ApiServer {
            scheme: Scheme::Https,
            host: "api.example".into(),
            port: 5000,
            key: Zeroizing::new("s3cret".into()),
            timeout: Duration::from_secs(5),
            provision_timeout: Duration::from_secs(30),
        }
    }

    fn ok(status: u16, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn the_three_requests_are_exactly_the_contracts() {
        let app = RepoName::parse("myapp").unwrap();
        let r = lookup_request(&api(), "0123456789abcdef0123456789abcdef");
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "https://api.example:5000/internal/lookupUserByPublicKey?fingerprint=0123456789abcdef0123456789abcdef"
        );
        // base64(":s3cret")
        assert_eq!(r.authorization.as_str(), "Basic OnMzY3JldA==");
        let r = access_request(&api(), &app, "user-key");
        assert_eq!(
            (r.method, r.url.as_str()),
            (Method::Get, "https://api.example:5000/apps/myapp")
        );
        assert_eq!(r.authorization.as_str(), "Basic OnVzZXIta2V5");
        let r = provision_request(&api(), &app, GitVerb::ReceivePack);
        assert_eq!(
            (r.method, r.url.as_str()),
            (
                Method::Post,
                "https://api.example:5000/internal/myapp/gitaction?command=git-receive-pack"
            )
        );
        assert_eq!(r.timeout, Duration::from_secs(30));
        let r = provision_request(&api(), &app, GitVerb::UploadArchive);
        assert!(r.url.ends_with("command=git-upload-archive"));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let r = lookup_request(&api(), "x");
        let text = format!("{r:?} {:?}", api());
        assert!(
            !text.contains("s3cret") && !text.contains("OnMzY3JldA"),
            "{text}"
        );
        let user = ApiUser {
            id: "1".into(),
            api_key: Zeroizing::new("k3y".into()),
        };
        assert!(!format!("{user:?}").contains("k3y"));
    }

    #[test]
    fn lookup_replies() {
        let found = parse_lookup(&ok(200, "42:0f1e2d3c-aaaa\n"));
        assert_eq!(
            found,
            LookupResult::Found(ApiUser {
                id: "42".into(),
                api_key: Zeroizing::new("0f1e2d3c-aaaa".into())
            })
        );
        assert_eq!(parse_lookup(&ok(404, "not found")), LookupResult::Unknown);
        for bad in [
            ok(200, ""),
            ok(200, "nocolon"),
            ok(200, ":key"),
            ok(200, "42:"),
            ok(200, "4 2:k"),
        ] {
            assert!(
                matches!(parse_lookup(&bad), LookupResult::Unavailable(_)),
                "{bad:?}"
            );
        }
        for status in [500, 502, 429, 301, 401, 403, 400] {
            assert!(
                matches!(parse_lookup(&ok(status, "")), LookupResult::Unavailable(_)),
                "{status}"
            );
        }
        assert!(matches!(
            parse_lookup(&Err(HttpError::Timeout)),
            LookupResult::Unavailable(_)
        ));
        let LookupResult::Unavailable(why) = parse_lookup(&ok(401, "")) else {
            panic!()
        };
        assert!(why.contains("APISERVER_KEY"));
    }

    #[test]
    fn access_replies() {
        assert_eq!(
            parse_access(&ok(200, r#"{"name":"myapp"}"#)),
            AccessResult::Granted
        );
        assert_eq!(
            parse_access(&ok(200, r#"{"error":"nope"}"#)),
            AccessResult::Denied
        );
        for status in [401, 403, 404] {
            assert_eq!(parse_access(&ok(status, "")), AccessResult::Denied);
        }
        assert!(matches!(
            parse_access(&ok(200, "garbage")),
            AccessResult::Unavailable(_)
        ));
        assert!(matches!(
            parse_access(&ok(500, "")),
            AccessResult::Unavailable(_)
        ));
        assert!(matches!(
            parse_access(&Err(HttpError::Failed("refused".into()))),
            AccessResult::Unavailable(_)
        ));
    }

    #[test]
    fn provision_replies() {
        let body = r#"{"host": "dyno1.example", "dyno_id": "a-b-c", "rez_id": "r-1"}"#;
        assert_eq!(
            parse_provision(&ok(200, body)),
            Ok(Dyno {
                host: "dyno1.example".into(),
                dyno_id: "a-b-c".into(),
                rez_id: "r-1".into()
            })
        );
        for bad in [
            ok(500, r#"{"error": "Server Error. Check status page."}"#),
            ok(200, "garbage"),
            ok(200, r#"{"host": "", "dyno_id": "x", "rez_id": "y"}"#),
            ok(200, r#"{"host": "a b", "dyno_id": "x", "rez_id": "y"}"#),
            ok(200, r#"{"host": "h", "dyno_id": "x\ny", "rez_id": "y"}"#),
            Err(HttpError::TooLarge),
        ] {
            assert!(parse_provision(&bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn replies_never_panic(status in 0u16..1000, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let reply = Ok(HttpResponse { status, body });
            let _ = parse_lookup(&reply);
            let _ = parse_access(&reply);
            let _ = parse_provision(&reply);
        }
    }
}
