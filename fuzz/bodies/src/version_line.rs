//! Target `version_line`: the protocol version exchange (RFC 4253 §4.2),
//! scanned as a server scans a client's bytes and as a client scans a
//! server's.
//!
//! Besides "no panic", the body checks what each answer promises: a line
//! is consumed only up to and including its LF; a version line is
//! `SSH-2.0-`/`SSH-1.99-` without NUL or CR, at most 255 bytes; preamble
//! lines come only from a server; and a line that is accepted in one piece
//! is never refused while it arrives byte by byte.

use gitmouth_core::transport::version::{MAX_VERSION_LINE, Scan, scan};

/// The body of the `version_line` target.
pub fn version_line(data: &[u8]) {
    for peer_is_server in [false, true] {
        check(data, peer_is_server);
    }
}

fn check(data: &[u8], peer_is_server: bool) {
    let consumed = match scan(data, peer_is_server) {
        Scan::NeedMore => {
            assert!(
                data.len() < MAX_VERSION_LINE,
                "NeedMore with {} bytes",
                data.len()
            );
            assert!(!data.contains(&b'\n'), "NeedMore with a whole line");
            return;
        }
        Scan::Invalid(why) => {
            assert!(!why.is_empty());
            return;
        }
        Scan::Preamble { consumed } => {
            assert!(
                peer_is_server,
                "a client may not send lines before its version"
            );
            assert!(
                !data[..consumed].starts_with(b"SSH-"),
                "a version line taken as preamble"
            );
            consumed
        }
        Scan::Version { consumed, line } => {
            assert!(
                consumed <= MAX_VERSION_LINE,
                "version line of {consumed} bytes"
            );
            assert!(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-"));
            assert!(!line.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')));
            assert_eq!(
                line,
                &data[..line.len()],
                "the line is not where it was read"
            );
            // The line, then CR LF or LF.
            assert!(consumed == line.len() + 1 || consumed == line.len() + 2);
            consumed
        }
    };
    assert!((1..=data.len()).contains(&consumed));
    assert_eq!(data[consumed - 1], b'\n', "a line must end at its LF");
    // The answer depends only on the line: bytes after it change nothing ...
    assert_eq!(
        scan(&data[..consumed], peer_is_server),
        scan(data, peer_is_server)
    );
    // ... and a line accepted whole is not refused while it trickles in.
    for end in 0..consumed {
        assert_eq!(
            scan(&data[..end], peer_is_server),
            Scan::NeedMore,
            "an accepted line refused after {end} of its bytes"
        );
    }
}
