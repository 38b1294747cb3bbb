//! Reading a connection's PROXY protocol header: bounded by
//! [`MAX_HEADER`] bytes and by the header timeout. What the bytes mean is
//! the core's [`ProxyPolicy::examine`]; this only reads until it has
//! decided.

use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncReadExt};
use gitmouth_core::proxy::{Arrived, Examined, MAX_HEADER, ProxyPolicy, Refusal};

/// A connection past its header step.
pub struct Passed {
    /// Who the connection is from, and what the header said.
    pub arrived: Arrived,
    /// The bytes read after the header: the start of the client's SSH,
    /// for the session as its first input.
    pub first: Vec<u8>,
}

/// Why the header step ended the connection.
pub enum Failed {
    /// Refused: to be logged with the peer's address.
    Refused(Refusal),
    /// The peer closed (or the socket failed) before the header was
    /// decided.
    Closed,
}

/// Reads from `socket` until the policy decides what the connection from
/// `peer` is, or `deadline` passes (then the policy decides on what came).
pub async fn read_header<S>(
    socket: &mut S,
    peer: SocketAddr,
    policy: &ProxyPolicy,
    deadline: Instant,
) -> Result<Passed, Failed>
where
    S: AsyncRead + Unpin,
{
    let mut buf = [0u8; MAX_HEADER];
    let mut len = 0;
    loop {
        let decided = match policy.examine(peer, &buf[..len]) {
            Examined::More if len < MAX_HEADER => {
                let read = futures_lite::future::or(
                    async { Some(socket.read(&mut buf[len..]).await) },
                    async {
                        async_io::Timer::at(deadline).await;
                        None
                    },
                )
                .await;
                match read {
                    Some(Ok(0)) | Some(Err(_)) => return Err(Failed::Closed),
                    Some(Ok(n)) => {
                        len += n;
                        continue;
                    }
                    None => policy.timed_out(peer, &buf[..len]),
                }
            }
            // The core never asks past the bound; if it did, the header is
            // too long all the same.
            Examined::More => Examined::Refuse(Refusal::TooLong),
            decided => decided,
        };
        return match decided {
            Examined::Serve(arrived) => Ok(Passed {
                first: buf[arrived.consumed.min(len)..len].to_vec(),
                arrived,
            }),
            Examined::Refuse(why) => Err(Failed::Refused(why)),
            Examined::More => Err(Failed::Refused(Refusal::Incomplete)),
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gitmouth_core::admission::Network;
    use gitmouth_core::proxy::{HeaderKind, ProxyMode};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// A socket that hands out its bytes in the given chunk sizes, then
    /// stays silent (never an end of stream), counting what was read.
    struct Chunked {
        bytes: Vec<u8>,
        chunks: Vec<usize>,
        read: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let left = self.bytes.len() - self.read;
            if left == 0 {
                return Poll::Pending;
            }
            let chunk = if self.chunks.is_empty() {
                left
            } else {
                self.chunks.remove(0)
            };
            let n = chunk.min(left).min(buf.len());
            let at = self.read;
            buf[..n].copy_from_slice(&self.bytes[at..at + n]);
            self.read += n;
            Poll::Ready(Ok(n))
        }
    }

    fn policy() -> ProxyPolicy {
        ProxyPolicy {
            mode: ProxyMode::Required,
            trusted: vec![Network::parse("127.0.0.1").unwrap()],
            timeout: Duration::from_secs(5),
        }
    }

    fn read(bytes: Vec<u8>, chunks: Vec<usize>, wait: Duration) -> (Result<Passed, Failed>, usize) {
        let mut socket = Chunked {
            bytes,
            chunks,
            read: 0,
        };
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let result = futures_lite::future::block_on(read_header(
            &mut socket,
            peer,
            &policy(),
            Instant::now() + wait,
        ));
        (result, socket.read)
    }

    #[test]
    fn the_header_in_pieces_then_ssh_goes_to_the_session() {
        let client: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        for header in [
            gitmouth_core::proxy::v1_header(client, server),
            gitmouth_core::proxy::v2_header(client, server),
        ] {
            let mut bytes = header.clone();
            bytes.extend_from_slice(b"SSH-2.0-x\r\n");
            let (result, _) = read(bytes, vec![1, 2, 3, 5, 8], Duration::from_secs(5));
            let Ok(passed) = result else {
                panic!("refused")
            };
            assert_eq!(passed.arrived.client, client);
            assert_ne!(passed.arrived.header, HeaderKind::None);
            assert_eq!(passed.arrived.consumed, header.len());
            assert_eq!(passed.first, b"SSH-2.0-x\r\n");
        }
    }

    #[test]
    fn reads_are_bounded_and_silence_ends_at_the_deadline() {
        // Endless bytes after a v1 signature: refused within the bound.
        let mut endless = b"PROXY TCP4 ".to_vec();
        endless.resize(100_000, b'1');
        let (result, read_bytes) = read(endless, vec![], Duration::from_secs(5));
        assert!(matches!(result, Err(Failed::Refused(Refusal::TooLong))));
        assert!(read_bytes <= MAX_HEADER, "{read_bytes}");
        // Half a header, then nothing: the deadline decides.
        let (result, _) = read(
            b"PROXY TCP4 1.2".to_vec(),
            vec![],
            Duration::from_millis(50),
        );
        assert!(matches!(result, Err(Failed::Refused(Refusal::Incomplete))));
        // Nothing at all where a header is required.
        let (result, _) = read(Vec::new(), vec![], Duration::from_millis(50));
        assert!(matches!(result, Err(Failed::Refused(Refusal::Missing))));
    }
}
