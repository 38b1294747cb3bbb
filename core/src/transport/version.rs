//! Protocol version exchange (RFC 4253 §4.2).
//!
//! The line is at most 255 bytes including CR LF, starts with `SSH-2.0-`
//! (or `SSH-1.99-`, which announces 2.0 compatibility), and is printable
//! US-ASCII.
//! A server may send other lines first; a client may not, so our server
//! takes the client's first line as its version or refuses the connection.
//! We accept a bare LF ending, as OpenSSH does.

/// The longest version line, CR LF included (RFC 4253 §4.2).
pub const MAX_VERSION_LINE: usize = 255;
/// How many bytes of lines a server may send before its version line before
/// our client gives up (OpenSSH allows 1024 lines; we bound bytes instead).
pub const MAX_PREAMBLE: usize = 8 * 1024;

/// Our identification string, without CR LF.
pub fn our_version() -> String {
    format!("SSH-2.0-gitmouth_{}", env!("CARGO_PKG_VERSION"))
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// No complete line yet.
    NeedMore,
    /// A line before the version line (only a server may send these);
    /// `consumed` bytes are to be dropped.
    Preamble {
        /// Bytes of the line, ending included.
        consumed: usize,
    },
    /// The version line: `line` without its line ending.
    Version {
        /// Bytes of the line, ending included.
        consumed: usize,
        /// The identification string, as it enters the exchange hash.
        line: &'a [u8],
    },
    /// Not an SSH 2.0 peer, or a line breaking the rules.
    Invalid(&'static str),
}

/// Scans the start of `buf`. `peer_is_server` allows preamble lines.
pub fn scan(buf: &[u8], peer_is_server: bool) -> Scan<'_> {
    let window = &buf[..buf.len().min(MAX_VERSION_LINE)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_VERSION_LINE {
            return Scan::Invalid("identification line longer than 255 bytes");
        }
        // A line that cannot become a version line is refused as soon as it
        // shows, rather than after the deadline.
        if !peer_is_server && !could_be_version(buf) {
            return Scan::Invalid("the first line is not an SSH identification string");
        }
        return Scan::NeedMore;
    };
    let consumed = lf + 1;
    let mut line = &buf[..lf];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    if !line.starts_with(b"SSH-") {
        return if peer_is_server {
            Scan::Preamble { consumed }
        } else {
            Scan::Invalid("the first line is not an SSH identification string")
        };
    }
    if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
        return Scan::Invalid("protocol version not supported (only SSH 2.0)");
    }
    // RFC 4253 §4.2: printable US-ASCII (the comments after a space
    // included); no NUL, CR, ESC or other control byte, nothing above 0x7e.
    if line.iter().any(|&b| !(0x20..=0x7e).contains(&b)) {
        return Scan::Invalid("non-printable character in the identification string");
    }
    Scan::Version { consumed, line }
}

/// Whether `partial` (no line ending yet) can still grow into `SSH-2.0-…`.
fn could_be_version(partial: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 2] = [b"SSH-2.0-", b"SSH-1.99-"];
    PREFIXES.iter().any(|p| {
        let n = partial.len().min(p.len());
        partial[..n] == p[..n]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_client_version_line() {
        let buf = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\nrest";
        assert_eq!(
            scan(buf, false),
            Scan::Version {
                consumed: buf.len() - 4,
                line: b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"
            }
        );
        assert!(matches!(
            scan(b"SSH-1.99-x\n", false),
            Scan::Version { consumed: 11, .. }
        ));
        assert_eq!(scan(b"SSH-2.0-Open", false), Scan::NeedMore);
        assert_eq!(scan(b"", false), Scan::NeedMore);
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            scan(b"GET / HTTP/1.1\r\n", false),
            Scan::Invalid(_)
        ));
        // Refused before any line ending arrives.
        assert!(matches!(scan(b"GET", false), Scan::Invalid(_)));
        assert!(matches!(scan(b"SSH-1.5-old\r\n", false), Scan::Invalid(_)));
        assert!(matches!(scan(b"SSH-2.0-a\0b\r\n", false), Scan::Invalid(_)));
        let long = [b"SSH-2.0-".as_slice(), &[b'x'; 300]].concat();
        assert!(matches!(scan(&long, false), Scan::Invalid(_)));
        let mut exact = [b"SSH-2.0-".as_slice(), &[b'x'; 245]].concat();
        exact.extend_from_slice(b"\r\n");
        assert_eq!(exact.len(), 255);
        assert!(matches!(
            scan(&exact, false),
            Scan::Version { consumed: 255, .. }
        ));
    }

    #[test]
    fn a_server_may_send_lines_first() {
        assert_eq!(
            scan(b"hello\r\nSSH-2.0-x\r\n", true),
            Scan::Preamble { consumed: 7 }
        );
        assert!(matches!(scan(b"hello\r\n", false), Scan::Invalid(_)));
    }

    #[test]
    fn ours_is_well_formed() {
        let mut line = our_version().into_bytes();
        line.extend_from_slice(b"\r\n");
        assert!(matches!(scan(&line, false), Scan::Version { .. }));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), server in any::<bool>()) {
            let _ = scan(&bytes, server);
        }
    }
}
