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
