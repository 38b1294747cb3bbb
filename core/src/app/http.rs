//! HTTP/1.1 for the API server's three calls (RFC 9112), sans-IO: the
//! request's bytes, and an incremental reader of the reply that any
//! chunking of the stream gives the same result. The runtime only opens the
//! connection (TCP, TLS for `https`), writes, reads and closes; dropping
//! the connection abandons the request at once.
//!
//! Replies are read to their end as `Content-Length`, `chunked` or
//! end-of-stream framing says, bounded by the request's `max_body`; header
//! lines are parsed by `httparse`.

use super::api::{HttpError, HttpRequest, HttpResponse, Method};

/// Most bytes of status line and headers we accept.
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines we parse.
const MAX_HEADERS: usize = 64;

/// Where a request goes, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether to speak TLS.
    pub tls: bool,
    /// Host name (for the connection, SNI and `Host`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Splits an `http://` or `https://` URL (the ones the core builds).
pub fn target(url: &str) -> Result<Target, HttpError> {
    let bad = || HttpError::Failed(format!("unusable URL {url:?}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !printable(host) || !printable(path) {
        return Err(bad());
    }
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// The request's bytes: one exchange per connection (`Connection: close`).
pub fn encode_request(request: &HttpRequest, target: &Target) -> zeroize::Zeroizing<Vec<u8>> {
    let method = match request.method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let default_port = if target.tls { 443 } else { 80 };
    let host = if target.port == default_port {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let body_header = match request.method {
        Method::Post => "Content-Length: 0\r\n",
        Method::Get => "",
    };
    let text = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nAccept: application/json, text/plain\r\nUser-Agent: gitmouth/{}\r\n{body_header}Connection: close\r\n\r\n",
        target.path,
        request.authorization.as_str(),
        env!("CARGO_PKG_VERSION"),
    );
    zeroize::Zeroizing::new(text.into_bytes())
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes left.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Expecting trailer lines, then an empty line.
    Trailer,
}

/// Reads one reply, incrementally.
#[derive(Debug)]
pub struct ResponseReader {
    max_body: usize,
    buf: Vec<u8>,
    status: Option<u16>,
    framing: Option<Framing>,
    chunk: Chunk,
    body: Vec<u8>,
    done: bool,
}

impl ResponseReader {
    /// A reader allowing at most `max_body` bytes of body.
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body,
            buf: Vec::new(),
            status: None,
            framing: None,
            chunk: Chunk::Size,
            body: Vec::new(),
            done: false,
        }
    }

    /// Takes bytes from the connection; `Ok(Some(reply))` once complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<HttpResponse>, HttpError> {
        if self.done {
            return Ok(None);
        }
        self.buf.extend_from_slice(data);
        if self.status.is_none() && !self.parse_head()? {
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Failed("reply headers too long".into()));
            }
            return Ok(None);
        }
        self.parse_body()
    }

    /// The connection ended: complete if the framing allows it.
    pub fn finish(&mut self) -> Result<HttpResponse, HttpError> {
        match (self.status, self.framing) {
            (Some(status), Some(Framing::UntilClose)) if !self.done => {
                self.done = true;
                Ok(HttpResponse {
                    status,
                    body: std::mem::take(&mut self.body),
                })
            }
            _ => Err(HttpError::Failed(
                "connection closed before the reply was complete".into(),
            )),
        }
    }

    fn parse_head(&mut self) -> Result<bool, HttpError> {
        // Informational replies carry no body and precede the real one: a
        // loop, not recursion, however many a server sends.
        loop {
            match self.parse_one_head()? {
                Some(true) => continue,
                Some(false) => return Ok(true),
                None => return Ok(false),
            }
        }
    }

    /// Parses one head: `Some(true)` for an informational one (skipped),
    /// `Some(false)` for the reply's own, `None` while incomplete.
    fn parse_one_head(&mut self) -> Result<Option<bool>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let consumed = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HttpError::Failed(format!("malformed reply: {e}"))),
        };
        let status = response
            .code
            .ok_or_else(|| HttpError::Failed("no status".into()))?;
        let mut framing = Framing::UntilClose;
        let mut chunked = false;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let value = std::str::from_utf8(h.value)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                chunked = value.split(',').map(str::trim).any(|v| v == "chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| HttpError::Failed("malformed Content-Length".into()))?;
                if matches!(framing, Framing::Length(m) if m != n) {
                    return Err(HttpError::Failed("conflicting Content-Length".into()));
                }
                framing = Framing::Length(n);
            }
        }
        if chunked {
            framing = Framing::Chunked;
        }
        if (100..200).contains(&status) {
            self.buf.drain(..consumed);
            return Ok(Some(true));
        }
        if let Framing::Length(n) = framing
            && n > self.max_body
        {
            return Err(HttpError::TooLarge);
        }
        self.buf.drain(..consumed);
        self.status = Some(status);
        self.framing = Some(framing);
        Ok(Some(false))
    }

    fn parse_body(&mut self) -> Result<Option<HttpResponse>, HttpError> {
        let Some(status) = self.status else {
            return Ok(None);
        };
        match self.framing {
            Some(Framing::Length(n)) => {
                let take = (n - self.body.len()).min(self.buf.len());
                self.body.extend(self.buf.drain(..take));
                if self.body.len() == n {
                    return Ok(Some(self.complete(status)));
                }
            }
            Some(Framing::UntilClose) => {
                self.body.append(&mut self.buf);
                if self.body.len() > self.max_body {
                    return Err(HttpError::TooLarge);
                }
            }
            Some(Framing::Chunked) => return self.parse_chunks(status),
            None => {}
        }
        Ok(None)
    }

    fn parse_chunks(&mut self, status: u16) -> Result<Option<HttpResponse>, HttpError> {
        loop {
            match self.chunk {
                Chunk::Size => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.drain(..used);
                        let size = usize::try_from(size).map_err(|_| HttpError::TooLarge)?;
                        if self.body.len().saturating_add(size) > self.max_body {
                            return Err(HttpError::TooLarge);
                        }
                        self.chunk = if size == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > 1024 {
                            return Err(HttpError::Failed("malformed chunk size".into()));
                        }
                        return Ok(None);
                    }
                    Err(_) => return Err(HttpError::Failed("malformed chunk size".into())),
                },
                Chunk::Data(left) => {
                    let take = left.min(self.buf.len());
                    self.body.extend(self.buf.drain(..take));
                    if take < left {
                        self.chunk = Chunk::Data(left - take);
                        return Ok(None);
                    }
                    self.chunk = Chunk::DataEnd;
                }
                Chunk::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(HttpError::Failed("malformed chunk".into()));
                    }
                    self.buf.drain(..2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailer => {
                    let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() > MAX_HEAD {
                            return Err(HttpError::Failed("trailers too long".into()));
                        }
                        return Ok(None);
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(Some(self.complete(status)));
                    }
                }
            }
        }
    }

    fn complete(&mut self, status: u16) -> HttpResponse {
        self.done = true;
        HttpResponse {
            status,
            body: std::mem::take(&mut self.body),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;
    use zeroize::Zeroizing;

    fn read_all(chunks: &[&[u8]], max: usize) -> Result<HttpResponse, HttpError> {
        let mut r = ResponseReader::new(max);
        for c in chunks {
            if let Some(reply) = r.feed(c)? {
                return Ok(reply);
            }
        }
        r.finish()
    }

    #[test]
    fn urls() {
        let t = target("https://api.example:5000/internal/x?fingerprint=ab").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "api.example".into(),
                port: 5000,
                path: "/internal/x?fingerprint=ab".into()
            }
        );
        assert_eq!(target("http://localhost/apps/a").unwrap().port, 80);
        assert_eq!(target("http://[::1]:8080/").unwrap().host, "::1");
        for bad in [
            "ftp://x/",
            "http://",
            "https://h:99999/",
            "http://h x/",
            "http://h/a b",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_request_bytes() {
        let request = HttpRequest {
            method: Method::Post,
            url: "https://api:5000/internal/app/gitaction?command=git-receive-pack".into(),
            authorization: Zeroizing::new("Basic OnM=".into()),
            timeout: Duration::from_secs(1),
            max_body: 100,
        };
        let t = target(&request.url).unwrap();
        let bytes = encode_request(&request, &t);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(
            "POST /internal/app/gitaction?command=git-receive-pack HTTP/1.1\r\nHost: api:5000\r\n"
        ));
        assert!(text.contains("\r\nAuthorization: Basic OnM=\r\n"));
        assert!(text.contains("\r\nContent-Length: 0\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn framings() {
        let r = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"], 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(read_all(&[chunked], 100).unwrap().body, b"hello world");
        let close = read_all(&[b"HTTP/1.0 404 Not Found\r\n\r\nnope"], 100).unwrap();
        assert_eq!((close.status, close.body.as_slice()), (404, &b"nope"[..]));
        let cont = read_all(
            &[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"],
            10,
        )
        .unwrap();
        assert_eq!(cont.status, 201);
    }

    #[test]
    fn bounds_and_errors() {
        assert_eq!(
            read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n"], 100),
            Err(HttpError::TooLarge)
        );
        let big = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 200]].concat();
        assert_eq!(read_all(&[&big], 100), Err(HttpError::TooLarge));
        let chunky = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
        assert_eq!(read_all(&[chunky], 100), Err(HttpError::TooLarge));
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ] {
            assert!(
                matches!(read_all(&[bad], 100), Err(HttpError::Failed(_))),
                "{bad:?}"
            );
        }
        // Many informational heads: no deep recursion, the reply still read.
        let mut many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(5000);
        many.extend_from_slice(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(read_all(&[&many], 10).unwrap().status, 204);
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nX: ", &endless], 100).is_err());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_reply(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            framing in 0u8..3,
            cuts in proptest::collection::vec(1usize..20, 1..40),
        ) {
            let wire = match framing {
                0 => [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(), &body].concat(),
                1 => {
                    let mut w = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    for piece in body.chunks(37) {
                        w.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        w.extend_from_slice(piece);
                        w.extend_from_slice(b"\r\n");
                    }
                    w.extend_from_slice(b"0\r\n\r\n");
                    w
                }
                _ => [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &body].concat(),
            };
            let whole = read_all(&[&wire], 1000).unwrap();
            prop_assert_eq!(&whole.body, &body);
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= wire.len() { break; }
                let n = (*c).min(wire.len() - at);
                chunks.push(&wire[at..at + n]);
                at += n;
            }
            prop_assert_eq!(read_all(&chunks, 1000).unwrap(), whole);
        }

        #[test]
        fn random_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = read_all(&[&bytes], 100);
        }
    }
}
