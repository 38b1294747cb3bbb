//! Emulators of an Openruko platform (`docs/openruko.md` §1-4): the API
//! server (key lookup, access check, provisioning) and a dyno host (the TLS
//! rendezvous, running the real `git receive-pack` / `upload-pack` /
//! `upload-archive` on real bare repositories), for gitmouth's API-mode
//! end-to-end tests.
//!
//! Both follow the contract byte for byte where it speaks (paths, queries,
//! `Authorization` headers, the rendezvous header read from the first TLS
//! read only, `Dyno does not exist.`, the `E:` error stream, close_notify on
//! a clean end), record everything they see for assertions, and can be told
//! to misbehave in each way a failing platform can. They use
//! blocking `std::net` sockets and a thread per connection: simple, and
//! entirely separate from the server under test.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// `Basic base64(":" + key)`, the platform's service authentication.
pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        Base64::encode_string(format!(":{key}").as_bytes())
    )
}

/// The MD5 fingerprint the platform stores for a key: MD5 of the raw key
/// blob (the base64-decoded second field of a `.pub` / authorized_keys line).
pub fn md5_of_pub_line(line: &str) -> String {
    let blob = line
        .split_whitespace()
        .nth(1)
        .expect("a .pub line has a blob");
    let raw = Base64::decode_vec(blob).expect("the blob is base64");
    gitmouth_core::app::fingerprint::md5_hex(&raw)
}

/// The MD5 fingerprint of the public key next to private key `key`
/// (`key.pub`, as `ssh-keygen` writes it).
pub fn md5_of_key(key: &Path) -> String {
    let line = std::fs::read_to_string(key.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{}.pub", key.display())))
        .expect("read the .pub file");
    md5_of_pub_line(&line)
}

// ---------------------------------------------------------------------------
// Certificates

/// A test CA and a leaf certificate for `localhost` / `127.0.0.1` signed by
/// it (rustls refuses a self-signed CA certificate used as a server's own).
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate written to a file (for `*_CA_FILE`).
    pub ca_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Pki {
    /// Makes a CA named `name` and its leaf; writes the CA to
    /// `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let ca_pem = ca_cert.pem();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, &ca_pem).unwrap();
        Pki {
            ca_pem,
            ca_file,
            chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            key_der: leaf_key.serialize_der(),
        }
    }

    /// A rustls server configuration presenting the leaf (and the CA).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .unwrap();
        Arc::new(config)
    }

    /// A rustls client configuration trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.chain[1].clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

// ---------------------------------------------------------------------------
// Shared plumbing

/// A TCP or TLS connection of an emulator.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn new(tcp: TcpStream, tls: Option<&Arc<ServerConfig>>) -> std::io::Result<Conn> {
        Ok(match tls {
            None => Conn::Plain(tcp),
            Some(config) => {
                let conn = ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
                Conn::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        })
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Ends the connection: close_notify first when `clean` (TLS), then
    /// FIN; without `clean`, a bare TCP close.
    fn close(&mut self, clean: bool) {
        if clean && let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(if clean {
            Shutdown::Write
        } else {
            Shutdown::Both
        });
        if clean {
            // Let the peer read everything before the socket goes away (a
            // close with unread input would reset the connection).
            let _ = self.tcp().set_read_timeout(Some(Duration::from_millis(20)));
            let deadline = Instant::now() + Duration::from_millis(500);
            let mut buf = [0u8; 4096];
            let mut tcp: &TcpStream = self.tcp();
            while Instant::now() < deadline {
                match tcp.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Waits up to `limit` for the peer to close (or send anything, which
    /// is ignored); true if it closed. Returns early when `stop` is set.
    fn wait_peer_close(&mut self, limit: Duration, stop: &AtomicBool) -> bool {
        let _ = self.tcp().set_read_timeout(Some(Duration::from_millis(20)));
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            match self.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A listening socket on 127.0.0.1 served by a thread, which can stop
/// listening (connections are then refused) and listen again on the same
/// port.
struct Acceptor {
    addr: SocketAddr,
    listen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(stop: Arc<AtomicBool>, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let listen = Arc::new(AtomicBool::new(true));
        let (flag, halt) = (listen.clone(), stop.clone());
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !halt.load(Ordering::SeqCst) {
                let wanted = flag.load(Ordering::SeqCst);
                if !wanted {
                    listener = None;
                } else if listener.is_none() {
                    listener = TcpListener::bind(addr).ok();
                    if let Some(l) = &listener {
                        l.set_nonblocking(true).unwrap();
                    }
                }
                let accepted = listener.as_ref().map(|l| l.accept());
                match accepted {
                    Some(Ok((stream, _))) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        let handle = handle.clone();
                        std::thread::spawn(move || handle(stream));
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Acceptor {
            addr,
            listen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A log of events that tests can wait on.
struct Log<T> {
    events: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T: Clone> Log<T> {
    fn new() -> Self {
        Log {
            events: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }
    }

    fn push(&self, event: T) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_all();
    }

    fn all(&self) -> Vec<T> {
        self.events.lock().unwrap().clone()
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&[T]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut events = self.events.lock().unwrap();
        loop {
            if done(&events) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            events = self.changed.wait_timeout(events, deadline - now).unwrap().0;
        }
    }
}

/// A process-unique, UUID-shaped id.
fn fresh_id(kind: u16) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let pid = u64::from(std::process::id());
    format!("{n:08x}-{kind:04x}-4000-8000-{pid:012x}")
}

// ---------------------------------------------------------------------------
// The API server

/// Which of the platform's calls a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiRoute {
    /// `GET /internal/lookupUserByPublicKey?fingerprint=`.
    Lookup,
    /// `GET /apps/<app>`.
    Access,
    /// `POST /internal/<app>/gitaction?command=`.
    Provision,
}

/// A way for the API server to misbehave on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Read the request and never answer (until the client closes).
    Hang,
    /// Do the work (provisioning registers its dyno at once, as the real
    /// platform creates the job), then answer this much later, unless the
    /// client closed meanwhile.
    Delay(Duration),
    /// Answer this status and body instead.
    Status(u16, String),
    /// `302 Found` to another path.
    Redirect,
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// A correct status line and headers, then only part of the body.
    Truncated,
    /// `200` with a 1 MiB body.
    Oversize,
    /// Close the connection without answering.
    Close,
}

/// One request as the API server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Something the API server did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEvent {
    /// A request arrived.
    Request(ApiRequest),
    /// It was answered with this status.
    Answered {
        /// The request's target.
        target: String,
        /// The status sent.
        status: u16,
    },
    /// The client closed before its answer was sent.
    Abandoned {
        /// The request's target.
        target: String,
    },
    /// A dyno was registered with the dyno host for a provisioning request.
    Provisioned(Provisioned),
}

/// A dyno the API server provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The app.
    pub app: String,
    /// `git-receive-pack`, `git-upload-pack` or `git-upload-archive`.
    pub command: String,
    /// The dyno id given out.
    pub dyno_id: String,
    /// The rendezvous id given out.
    pub rez_id: String,
}

struct User {
    fingerprint: String,
    id: String,
    api_key: String,
}

struct App {
    owner: String,
    collaborators: Vec<String>,
}

struct ApiState {
    key: String,
    users: Vec<User>,
    apps: HashMap<String, App>,
    faults: HashMap<ApiRoute, Fault>,
    register_dynos: bool,
}

struct ApiShared {
    state: Mutex<ApiState>,
    log: Log<ApiEvent>,
    tls: Option<Arc<ServerConfig>>,
    dynos: Option<Arc<DynoShared>>,
    dyno_host_name: String,
    addr: Mutex<Option<SocketAddr>>,
    stop: Arc<AtomicBool>,
}

/// How to start an [`ApiServer`].
#[derive(Clone)]
pub struct ApiOptions {
    /// The platform's super-user key (`APISERVER_KEY`).
    pub key: String,
    /// Serve https with this configuration; plain http when `None`.
    pub tls: Option<Arc<ServerConfig>>,
    /// The host name provisioning gives out for the dyno host; it must be a
    /// name the dyno host's certificate is valid for.
    pub dyno_host_name: String,
}

impl ApiOptions {
    /// Options with `key`, plain http and `localhost` as the dyno host.
    pub fn new(key: &str) -> Self {
        ApiOptions {
            key: key.to_owned(),
            tls: None,
            dyno_host_name: "localhost".to_owned(),
        }
    }
}

/// The Openruko API server emulator.
pub struct ApiServer {
    shared: Arc<ApiShared>,
    acceptor: Acceptor,
}

impl ApiServer {
    /// Starts it on 127.0.0.1 (a free port); provisioning registers dynos
    /// with `dynos` when given.
    pub fn start(options: ApiOptions, dynos: Option<&DynoHost>) -> ApiServer {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(ApiShared {
            state: Mutex::new(ApiState {
                key: options.key,
                users: Vec::new(),
                apps: HashMap::new(),
                faults: HashMap::new(),
                register_dynos: true,
            }),
            log: Log::new(),
            tls: options.tls,
            dynos: dynos.map(|d| d.shared.clone()),
            dyno_host_name: options.dyno_host_name,
            addr: Mutex::new(None),
            stop: stop.clone(),
        });
        let for_conns = shared.clone();
        let acceptor = Acceptor::start(stop, move |tcp| serve_http(&for_conns, tcp));
        *shared.addr.lock().unwrap() = Some(acceptor.addr);
        ApiServer { shared, acceptor }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// Registers a user's key (the private key's path; its `.pub` is read).
    pub fn add_user(&self, key: &Path, user_id: &str, api_key: &str) {
        self.shared.state.lock().unwrap().users.push(User {
            fingerprint: md5_of_key(key),
            id: user_id.to_owned(),
            api_key: api_key.to_owned(),
        });
    }

    /// Creates an app owned by `owner` (a user id).
    pub fn add_app(&self, app: &str, owner: &str) {
        self.shared.state.lock().unwrap().apps.insert(
            app.to_owned(),
            App {
                owner: owner.to_owned(),
                collaborators: Vec::new(),
            },
        );
    }

    /// Makes `user_id` a collaborator on `app`.
    pub fn add_collaborator(&self, app: &str, user_id: &str) {
        if let Some(a) = self.shared.state.lock().unwrap().apps.get_mut(app) {
            a.collaborators.push(user_id.to_owned());
        }
    }

    /// Sets (or with `None` clears) the misbehaviour of one route.
    pub fn set_fault(&self, route: ApiRoute, fault: Option<Fault>) {
        let mut state = self.shared.state.lock().unwrap();
        match fault {
            Some(f) => state.faults.insert(route, f),
            None => state.faults.remove(&route),
        };
    }

    /// Changes the super-user key the API server accepts (so that it
    /// rejects gitmouth's).
    pub fn set_key(&self, key: &str) {
        self.shared.state.lock().unwrap().key = key.to_owned();
    }

    /// Whether provisioning registers its dynos with the dyno host (when
    /// not, the dyno host answers `Dyno does not exist.`).
    pub fn set_register_dynos(&self, register: bool) {
        self.shared.state.lock().unwrap().register_dynos = register;
    }

    /// Stops listening: connections are refused.
    pub fn stop_listening(&self) {
        self.acceptor.listen.store(false, Ordering::SeqCst);
        // The acceptor drops its socket within a few milliseconds.
        wait_refused(self.addr());
    }

    /// Listens again on the same port.
    pub fn resume_listening(&self) {
        self.acceptor.listen.store(true, Ordering::SeqCst);
        wait_accepting(self.addr());
    }

    /// Everything it saw and did, in order.
    pub fn events(&self) -> Vec<ApiEvent> {
        self.shared.log.all()
    }

    /// The requests, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                ApiEvent::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The dynos provisioned, in order.
    pub fn provisioned(&self) -> Vec<Provisioned> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                ApiEvent::Provisioned(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Waits until `done` holds of the events; false on timeout.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&[ApiEvent]) -> bool) -> bool {
        self.shared.log.wait(timeout, done)
    }
}

fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{addr} still accepts connections");
}

fn wait_accepting(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // A probe connection: the emulator sees it close without a request.
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{addr} does not accept connections again");
}

/// A parsed HTTP/1.1 request head (the body is read and dropped).
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// Reads one request; `None` if the client closed or sent nonsense.
fn read_request(conn: &mut Conn) -> Option<Head> {
    let _ = conn.tcp().set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut authorization = None;
    let mut length = 0usize;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value.to_owned()),
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    // Drain the body (gitmouth sends none, but a client may send "0\r\n\r\n").
    let mut body = buf[end + 4..].to_vec();
    let complete = |body: &[u8]| {
        if chunked {
            body.windows(5).any(|w| w == b"0\r\n\r\n")
        } else {
            body.len() >= length
        }
    };
    while !complete(&body) {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        authorization,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn response(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The key in a `Basic base64(":" + key)` header: the text after the last
/// `:`, as the platform takes it.
fn basic_key(header: Option<&str>) -> Option<String> {
    let encoded = header?.strip_prefix("Basic ")?;
    let plain = Base64::decode_vec(encoded.trim()).ok()?;
    let plain = String::from_utf8(plain).ok()?;
    Some(plain.rsplit_once(':')?.1.to_owned())
}

fn route_of(method: &str, target: &str) -> Option<(ApiRoute, String)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method == "GET" && path == "/internal/lookupUserByPublicKey" {
        return Some((ApiRoute::Lookup, query.to_owned()));
    }
    if method == "GET"
        && let Some(app) = path.strip_prefix("/apps/")
        && !app.is_empty()
        && !app.contains('/')
    {
        return Some((ApiRoute::Access, app.to_owned()));
    }
    if method == "POST"
        && let Some(rest) = path.strip_prefix("/internal/")
        && let Some(app) = rest.strip_suffix("/gitaction")
        && !app.is_empty()
        && !app.contains('/')
    {
        return Some((ApiRoute::Provision, app.to_owned()));
    }
    None
}

const JSON: &str = "application/json; charset=utf-8";

/// The platform's answer when it behaves (docs/openruko.md §1-3).
fn answer(shared: &ApiShared, route: Option<(ApiRoute, String)>, head: &Head) -> Vec<u8> {
    let state = shared.state.lock().unwrap();
    let auth = head.authorization.as_deref();
    let unauthorized = || response(401, JSON, "", br#"{"error":"Unauthorized"}"#);
    let Some((route, arg)) = route else {
        return response(404, JSON, "", br#"{"error":"Not found"}"#);
    };
    match route {
        ApiRoute::Lookup => {
            if auth != Some(basic(&state.key).as_str()) {
                return unauthorized();
            }
            let fp = query_param(&arg, "fingerprint").unwrap_or("");
            match state.users.iter().find(|u| u.fingerprint == fp) {
                Some(u) => response(
                    200,
                    "text/plain; charset=utf-8",
                    "",
                    format!("{}:{}", u.id, u.api_key).as_bytes(),
                ),
                None => response(404, JSON, "", br#"{"error":"Key not found"}"#),
            }
        }
        ApiRoute::Access => {
            let key = basic_key(auth);
            let Some(user) = state
                .users
                .iter()
                .find(|u| Some(&u.api_key) == key.as_ref())
            else {
                return unauthorized();
            };
            match state.apps.get(&arg) {
                None => response(404, JSON, "", br#"{"error":"App not found"}"#),
                Some(app) if app.owner == user.id || app.collaborators.contains(&user.id) => {
                    let body = format!(
                        r#"{{"name":"{arg}","id":"app-{arg}","create_status":"complete","stack":"cedar","git_url":"git@localhost:{arg}.git"}}"#
                    );
                    response(200, JSON, "", body.as_bytes())
                }
                Some(_) => response(403, JSON, "", br#"{"error":"Not authorized on this app"}"#),
            }
        }
        ApiRoute::Provision => {
            if auth != Some(basic(&state.key).as_str()) {
                return unauthorized();
            }
            let (_, query) = head.target.split_once('?').unwrap_or(("", ""));
            let command = query_param(query, "command").unwrap_or("");
            if !["git-receive-pack", "git-upload-pack", "git-upload-archive"].contains(&command) {
                return response(400, JSON, "", br#"{"error":"Bad command"}"#);
            }
            if !state.apps.contains_key(&arg) {
                return response(404, JSON, "", br#"{"error":"App not found"}"#);
            }
            let provisioned = Provisioned {
                app: arg.clone(),
                command: command.to_owned(),
                dyno_id: fresh_id(0xd1),
                rez_id: fresh_id(0x2e),
            };
            if state.register_dynos
                && let Some(dynos) = &shared.dynos
            {
                dynos.register(&provisioned);
            }
            shared.log.push(ApiEvent::Provisioned(provisioned.clone()));
            let body = format!(
                r#"{{"host": "{}", "dyno_id": "{}", "rez_id": "{}"}}"#,
                shared.dyno_host_name, provisioned.dyno_id, provisioned.rez_id
            );
            response(200, JSON, "", body.as_bytes())
        }
    }
}

fn status_of(reply: &[u8]) -> u16 {
    std::str::from_utf8(reply.get(9..12).unwrap_or(b"000"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn serve_http(shared: &ApiShared, tcp: TcpStream) {
    let Ok(mut conn) = Conn::new(tcp, shared.tls.as_ref()) else {
        return;
    };
    let Some(head) = read_request(&mut conn) else {
        return;
    };
    let request = ApiRequest {
        method: head.method.clone(),
        target: head.target.clone(),
        authorization: head.authorization.clone(),
    };
    shared.log.push(ApiEvent::Request(request));
    let route = route_of(&head.method, &head.target);
    let fault = route
        .as_ref()
        .and_then(|(r, _)| shared.state.lock().unwrap().faults.get(r).cloned());
    let target = head.target.clone();
    let abandoned = || {
        shared.log.push(ApiEvent::Abandoned {
            target: target.clone(),
        })
    };
    let send = |conn: &mut Conn, reply: &[u8]| {
        let _ = conn.write_all(reply);
        let _ = conn.flush();
        shared.log.push(ApiEvent::Answered {
            target: target.clone(),
            status: status_of(reply),
        });
        conn.close(true);
    };
    match fault {
        None => {
            let reply = answer(shared, route, &head);
            send(&mut conn, &reply);
        }
        Some(Fault::Hang) => {
            if conn.wait_peer_close(Duration::from_secs(600), &shared.stop) {
                abandoned();
            }
        }
        Some(Fault::Delay(delay)) => {
            let reply = answer(shared, route, &head);
            if conn.wait_peer_close(delay, &shared.stop) {
                abandoned();
            } else {
                send(&mut conn, &reply);
            }
        }
        Some(Fault::Status(status, body)) => {
            let reply = response(status, JSON, "", body.as_bytes());
            send(&mut conn, &reply);
        }
        Some(Fault::Redirect) => {
            let addr = shared.addr.lock().unwrap().unwrap();
            let location = format!("Location: http://{addr}/elsewhere\r\n");
            let reply = response(302, "text/plain", &location, b"moved");
            send(&mut conn, &reply);
        }
        Some(Fault::Garbage) => {
            let _ = conn.write_all(b"SSH-2.0-not-http\r\n\x00\x01\x02 garbage \xff\xfe\r\n\r\n");
            let _ = conn.flush();
            conn.close(true);
        }
        Some(Fault::Truncated) => {
            let reply = answer(shared, route, &head);
            // Headers promise the whole body; half of it comes.
            let cut = reply.len() - (reply.len() - header_len(&reply)) / 2;
            let _ = conn.write_all(&reply[..cut.max(header_len(&reply))]);
            let _ = conn.flush();
            conn.close(true);
        }
        Some(Fault::Oversize) => {
            let body = vec![b'7'; 1 << 20];
            let reply = response(200, "text/plain", "", &body);
            send(&mut conn, &reply);
        }
        Some(Fault::Close) => conn.close(false),
    }
}

fn header_len(reply: &[u8]) -> usize {
    reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(reply.len(), |i| i + 4)
}

// ---------------------------------------------------------------------------
// The dyno host

/// What the dyno host does with a running command when the client closes
/// the rendezvous connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClose {
    /// Kill it (and its children): true cancellation.
    Stops,
    /// Like the original: let it run to its end, its output discarded.
    Finishes,
}

/// A way for the dyno host to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynoFault {
    /// Answer the header with `E: \n ! Problem provisioning build server\n\n`
    /// and close cleanly.
    ErrorStream,
    /// Once at least `output` bytes of the command's output were sent and
    /// `input` bytes of the client's received, kill the command and drop
    /// the TCP connection without close_notify.
    DropAfter {
        /// Output bytes sent first.
        output: usize,
        /// Input bytes received first.
        input: usize,
    },
}

/// The error stream the real dyno host sends when it cannot provision.
pub const PROBLEM_PROVISIONING: &[u8] = b"E: \n ! Problem provisioning build server\n\n";

/// Something the dyno host did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynoEvent {
    /// A TCP connection arrived.
    Accepted,
    /// The TLS handshake (or the first read) failed.
    TlsFailed(String),
    /// The first read's bytes, exactly.
    Header(Vec<u8>),
    /// The header's first line was not the platform's key.
    BadKey,
    /// The header named a dyno it does not know (or one already used).
    UnknownDyno(String),
    /// It sent the `E:` error stream.
    ErrorSent,
    /// The dyno's command started.
    Started {
        /// Dyno id.
        dyno_id: String,
        /// App.
        app: String,
        /// Command (`git-receive-pack`...).
        command: String,
    },
    /// The client closed while the command ran.
    ClientClosed {
        /// Dyno id.
        dyno_id: String,
    },
    /// The command was killed because the client closed.
    Killed {
        /// Dyno id.
        dyno_id: String,
    },
    /// The connection was dropped on purpose ([`DynoFault::DropAfter`]).
    Dropped {
        /// Dyno id.
        dyno_id: String,
    },
    /// The command exited.
    Exited {
        /// Dyno id.
        dyno_id: String,
        /// Its exit status was 0.
        success: bool,
        /// The client had gone, so its output was discarded.
        discarded: bool,
    },
    /// The connection ended.
    Closed {
        /// Dyno id, once known.
        dyno_id: Option<String>,
        /// It sent close_notify (a clean end).
        close_notify: bool,
    },
}

struct DynoShared {
    key: String,
    on_close: OnClose,
    fault: Mutex<Option<DynoFault>>,
    tls: Arc<ServerConfig>,
    dynos: Mutex<HashMap<String, (Provisioned, bool)>>,
    log: Log<DynoEvent>,
    repos: PathBuf,
    home: PathBuf,
    stop: Arc<AtomicBool>,
}

impl DynoShared {
    fn register(&self, dyno: &Provisioned) {
        self.dynos
            .lock()
            .unwrap()
            .insert(dyno.dyno_id.clone(), (dyno.clone(), false));
    }

    fn repo(&self, app: &str) -> PathBuf {
        let path = self.repos.join(format!("{app}.git"));
        if !path.exists() {
            let out = self
                .git()
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "git init: {out:?}");
        }
        path
    }

    /// git with no user or system configuration.
    fn git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR");
        cmd
    }
}

/// How to start a [`DynoHost`].
#[derive(Clone)]
pub struct DynoOptions {
    /// The platform's key, expected as the header's first line.
    pub key: String,
    /// The TLS identity presented.
    pub tls: Arc<ServerConfig>,
    /// What a client's close does to a running command.
    pub on_close: OnClose,
}

/// The dyno host emulator: one TLS port for every dyno.
pub struct DynoHost {
    shared: Arc<DynoShared>,
    acceptor: Acceptor,
    _dir: tempfile::TempDir,
}

impl DynoHost {
    /// Starts it on 127.0.0.1 (a free port).
    pub fn start(options: DynoOptions) -> DynoHost {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(DynoShared {
            key: options.key,
            on_close: options.on_close,
            fault: Mutex::new(None),
            tls: options.tls,
            dynos: Mutex::new(HashMap::new()),
            log: Log::new(),
            repos,
            home: dir.path().to_owned(),
            stop: stop.clone(),
        });
        let for_conns = shared.clone();
        let acceptor = Acceptor::start(stop, move |tcp| serve_dyno(&for_conns, tcp));
        DynoHost {
            shared,
            acceptor,
            _dir: dir,
        }
    }

    /// The address (its port is `DYNOHOST_RENDEZVOUS_PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// Sets (or clears) a misbehaviour.
    pub fn set_fault(&self, fault: Option<DynoFault>) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// Registers a dyno directly (the API server does this when it
    /// provisions); returns its id.
    pub fn register(&self, app: &str, command: &str) -> String {
        let dyno = Provisioned {
            app: app.to_owned(),
            command: command.to_owned(),
            dyno_id: fresh_id(0xd1),
            rez_id: fresh_id(0x2e),
        };
        self.shared.register(&dyno);
        dyno.dyno_id
    }

    /// The bare repository of `app`, created (empty, `HEAD` at `main`) if
    /// needed.
    pub fn repo(&self, app: &str) -> PathBuf {
        self.shared.repo(app)
    }

    /// A `git` command with no user or system configuration.
    pub fn git(&self) -> Command {
        self.shared.git()
    }

    /// Stops listening: connections are refused.
    pub fn stop_listening(&self) {
        self.acceptor.listen.store(false, Ordering::SeqCst);
        wait_refused(self.addr());
    }

    /// Everything it saw and did, in order.
    pub fn events(&self) -> Vec<DynoEvent> {
        self.shared.log.all()
    }

    /// Waits until `done` holds of the events; false on timeout.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&[DynoEvent]) -> bool) -> bool {
        self.shared.log.wait(timeout, done)
    }
}

fn serve_dyno(shared: &DynoShared, tcp: TcpStream) {
    shared.log.push(DynoEvent::Accepted);
    let mut conn = match Conn::new(tcp, Some(&shared.tls)) {
        Ok(c) => c,
        Err(e) => {
            shared.log.push(DynoEvent::TlsFailed(e.to_string()));
            return;
        }
    };
    let _ = conn.tcp().set_read_timeout(Some(Duration::from_secs(15)));
    // The original read only its first data chunk: one read.
    let mut first = vec![0u8; 16 * 1024];
    let n = match conn.read(&mut first) {
        Ok(0) => {
            shared.log.push(DynoEvent::Closed {
                dyno_id: None,
                close_notify: false,
            });
            return;
        }
        Ok(n) => n,
        Err(e) => {
            shared.log.push(DynoEvent::TlsFailed(e.to_string()));
            shared.log.push(DynoEvent::Closed {
                dyno_id: None,
                close_notify: false,
            });
            return;
        }
    };
    let header = first[..n].to_vec();
    shared.log.push(DynoEvent::Header(header.clone()));
    let fault = shared.fault.lock().unwrap().clone();
    if fault == Some(DynoFault::ErrorStream) {
        let _ = conn.write_all(PROBLEM_PROVISIONING);
        let _ = conn.flush();
        shared.log.push(DynoEvent::ErrorSent);
        conn.close(true);
        shared.log.push(DynoEvent::Closed {
            dyno_id: None,
            close_notify: true,
        });
        return;
    }
    let text = String::from_utf8_lossy(&header).into_owned();
    let mut lines = text.split('\n');
    let key = lines.next().unwrap_or("");
    let dyno_id = lines.next().unwrap_or("").to_owned();
    // Anything after the second line is dropped, as the original did.
    if key != shared.key {
        shared.log.push(DynoEvent::BadKey);
        conn.close(false);
        shared.log.push(DynoEvent::Closed {
            dyno_id: None,
            close_notify: false,
        });
        return;
    }
    let dyno = {
        let mut dynos = shared.dynos.lock().unwrap();
        match dynos.get_mut(&dyno_id) {
            Some((dyno, used)) if !*used => {
                *used = true;
                Some(dyno.clone())
            }
            _ => None,
        }
    };
    let Some(dyno) = dyno else {
        shared.log.push(DynoEvent::UnknownDyno(dyno_id));
        let _ = conn.write_all(b"Dyno does not exist.");
        let _ = conn.flush();
        conn.close(true);
        shared.log.push(DynoEvent::Closed {
            dyno_id: None,
            close_notify: true,
        });
        return;
    };
    let drop_after = match fault {
        Some(DynoFault::DropAfter { output, input }) => Some((output, input)),
        _ => None,
    };
    run_dyno(shared, conn, dyno, drop_after);
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Runs the dyno's command and relays: TLS data to its stdin, its stdout
/// and stderr merged to TLS; close_notify when it exits.
fn run_dyno(
    shared: &DynoShared,
    mut conn: Conn,
    dyno: Provisioned,
    drop_after: Option<(usize, usize)>,
) {
    let id = dyno.dyno_id.clone();
    let repo = shared.repo(&dyno.app);
    let sub = dyno.command.strip_prefix("git-").unwrap_or(&dyno.command);
    let mut cmd = shared.git();
    cmd.arg(sub).arg(&repo);
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id();
    shared.log.push(DynoEvent::Started {
        dyno_id: id.clone(),
        app: dyno.app.clone(),
        command: dyno.command.clone(),
    });
    let (out_tx, out_rx) = mpsc::channel::<Option<Vec<u8>>>();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for mut pipe in pipes {
        let tx = out_tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(None);
        });
    }
    drop(out_tx);
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for chunk in in_rx {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut in_tx = Some(in_tx);
    let _ = conn.tcp().set_read_timeout(Some(Duration::from_millis(10)));
    let mut open_pipes = 2;
    let mut client_open = true;
    let (mut sent, mut received) = (0usize, 0usize);
    let mut buf = vec![0u8; 32 * 1024];
    let should_drop = |sent: usize, received: usize| {
        drop_after.is_some_and(|(output, input)| sent >= output && received >= input)
    };
    let mut stopped = false;
    let dropped = loop {
        if !stopped && shared.stop.load(Ordering::SeqCst) {
            // The emulator is going away: so does the command.
            stopped = true;
            kill_group(pgid);
        }
        // The command's output first.
        let mut gone = false;
        loop {
            let msg = if client_open {
                out_rx.try_recv().map_err(|_| ())
            } else {
                out_rx
                    .recv_timeout(Duration::from_millis(50))
                    .map_err(|_| ())
            };
            match msg {
                Ok(Some(data)) => {
                    if client_open {
                        if conn.write_all(&data).and_then(|_| conn.flush()).is_err() {
                            gone = true;
                            break;
                        }
                        sent += data.len();
                        if should_drop(sent, received) {
                            break;
                        }
                    }
                }
                Ok(None) => open_pipes -= 1,
                Err(()) => break,
            }
        }
        if client_open && should_drop(sent, received) {
            break true;
        }
        if open_pipes == 0 {
            break false;
        }
        if client_open && !gone {
            match conn.read(&mut buf) {
                // close_notify, or a bare close / reset: the client went.
                Ok(0) => gone = true,
                Ok(n) => {
                    received += n;
                    if should_drop(sent, received) {
                        break true;
                    }
                    if let Some(tx) = &in_tx {
                        let _ = tx.send(buf[..n].to_vec());
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => gone = true,
            }
        }
        if gone && client_open {
            client_open = false;
            shared.log.push(DynoEvent::ClientClosed {
                dyno_id: id.clone(),
            });
            match shared.on_close {
                OnClose::Stops => {
                    kill_group(pgid);
                    shared.log.push(DynoEvent::Killed {
                        dyno_id: id.clone(),
                    });
                }
                // Its stdin ends; it runs on, its output read and dropped.
                OnClose::Finishes => in_tx = None,
            }
        }
    };
    drop(in_tx);
    if dropped {
        kill_group(pgid);
        conn.close(false);
        shared.log.push(DynoEvent::Dropped {
            dyno_id: id.clone(),
        });
    }
    let status = child.wait();
    shared.log.push(DynoEvent::Exited {
        dyno_id: id.clone(),
        success: status.is_ok_and(|s| s.success()),
        discarded: !client_open || dropped,
    });
    let clean = client_open && !dropped;
    if clean {
        conn.close(true);
    } else if !dropped {
        conn.close(false);
    }
    shared.log.push(DynoEvent::Closed {
        dyno_id: Some(id),
        close_notify: clean,
    });
}

#[cfg(test)]
mod tests {
    //! The emulators against the contract, with a plain client: so that an
    //! end-to-end test passing means gitmouth met the platform's terms.

    use super::*;

    const KEY: &str = "super";

    fn http(addr: SocketAddr, request: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let status = reply[9..12].parse().unwrap();
        let body = reply.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn get(addr: SocketAddr, target: &str, key: &str) -> (u16, String) {
        let auth = basic(key);
        http(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"),
        )
    }

    fn post(addr: SocketAddr, target: &str, key: &str) -> (u16, String) {
        let auth = basic(key);
        http(
            addr,
            &format!(
                "POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
            ),
        )
    }

    fn platform() -> (tempfile::TempDir, Pki, DynoHost, ApiServer, String) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "t");
        let dynos = DynoHost::start(DynoOptions {
            key: KEY.into(),
            tls: pki.server_config(),
            on_close: OnClose::Stops,
        });
        let api = ApiServer::start(ApiOptions::new(KEY), Some(&dynos));
        let user = crate::keygen(dir.path(), "ed25519", "u", "u");
        api.add_user(&user, "42", "userkey");
        api.add_app("myapp", "42");
        api.add_app("theirs", "7");
        let fp = md5_of_key(&user);
        (dir, pki, dynos, api, fp)
    }

    fn dyno(pki: &Pki, addr: SocketAddr) -> StreamOwned<rustls::ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
        StreamOwned::new(conn, tcp)
    }

    #[test]
    fn the_api_server_checks_each_key_and_answers_per_contract() {
        let (_dir, _pki, dynos, api, fp) = platform();
        let a = api.addr();
        let lookup = format!("/internal/lookupUserByPublicKey?fingerprint={fp}");
        assert_eq!(get(a, &lookup, KEY), (200, "42:userkey".into()));
        assert_eq!(get(a, &lookup, "userkey").0, 401);
        let other = "/internal/lookupUserByPublicKey?fingerprint=00000000000000000000000000000000";
        assert_eq!(get(a, other, KEY).0, 404);
        assert_eq!(get(a, "/apps/myapp", "userkey").0, 200);
        assert_eq!(get(a, "/apps/myapp", KEY).0, 401);
        assert_eq!(get(a, "/apps/theirs", "userkey").0, 403);
        assert_eq!(get(a, "/apps/none", "userkey").0, 404);
        let provision = "/internal/myapp/gitaction?command=git-upload-pack";
        assert_eq!(post(a, provision, "userkey").0, 401);
        assert_eq!(get(a, provision, KEY).0, 404);
        let (status, body) = post(a, provision, KEY);
        assert_eq!(status, 200);
        let d = &api.provisioned()[0];
        assert_eq!(
            body,
            format!(
                r#"{{"host": "localhost", "dyno_id": "{}", "rez_id": "{}"}}"#,
                d.dyno_id, d.rez_id
            )
        );
        assert_eq!(d.command, "git-upload-pack");
        assert_eq!(api.requests().len(), 10);
        assert_eq!(api.requests()[0].authorization, Some(basic(KEY)));
        assert_eq!(basic("k"), "Basic Oms=");
        drop(dynos);
    }

    #[test]
    fn the_dyno_host_reads_only_its_first_chunk() {
        let (_dir, pki, dynos, _api, _fp) = platform();
        // The header in one record, with client bytes after it: git's
        // advertisement comes, and the "0000" in the same record is lost
        // (it would have ended upload-pack at once).
        let id = dynos.register("myapp", "git-upload-pack");
        let mut s = dyno(&pki, dynos.addr());
        s.write_all(format!("{KEY}\n{id}\n0000").as_bytes())
            .unwrap();
        s.flush().unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(
            buf[..4].iter().all(u8::is_ascii_hexdigit),
            "{:?}",
            &buf[..n]
        );
        let mut advert = buf[..n].to_vec();
        while !advert.ends_with(b"0000") {
            let n = s.read(&mut buf).unwrap();
            advert.extend_from_slice(&buf[..n]);
        }
        s.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let err = s.read(&mut buf).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        // Now the flush, alone: upload-pack ends and the host closes cleanly.
        s.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"0000").unwrap();
        s.flush().unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "close_notify, then the end");
        assert!(
            dynos.wait(Duration::from_secs(5), |e| e.contains(&DynoEvent::Closed {
                dyno_id: Some(id.clone()),
                close_notify: true,
            }))
        );

        // A header split over two records loses its second line.
        let id = dynos.register("myapp", "git-upload-pack");
        let mut s = dyno(&pki, dynos.addr());
        s.write_all(format!("{KEY}\n").as_bytes()).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(format!("{id}\n").as_bytes()).unwrap();
        s.flush().unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"Dyno does not exist.");
        assert!(
            dynos
                .events()
                .contains(&DynoEvent::UnknownDyno(String::new()))
        );

        // A used dyno is gone.
        let id = dynos.register("myapp", "git-upload-pack");
        for expect_known in [true, false] {
            let mut s = dyno(&pki, dynos.addr());
            s.write_all(format!("{KEY}\n{id}\n").as_bytes()).unwrap();
            s.flush().unwrap();
            let n = s.read(&mut buf).unwrap();
            assert_eq!(&buf[..n] == b"Dyno does not exist.", !expect_known);
        }
    }
}
