//! One connection: feed the socket to the session, perform its outputs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use gitmouth_core::server::{Input, Output, ServerConfig, Session};

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

/// A fresh random seed from the operating system.
pub(crate) fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // Without OS randomness nothing here can be secure: stop rather than
    // run with a predictable seed.
    if let Err(e) = getrandom::fill(&mut seed) {
        panic!("the operating system gave no randomness: {e}");
    }
    seed
}

enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Timeout,
}

/// Serves one client connection to its end.
pub async fn drive(mut stream: TcpStream, peer: SocketAddr, config: Arc<ServerConfig>) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(config, seed(), Instant::now());
    let span = tracing::info_span!("conn", %peer);
    let _enter = span.enter();
    tracing::debug!("connected");
    let mut buf = vec![0u8; READ_CHUNK];
    let mut timer = Timer::never();
    let mut timer_at = None;
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Close(reason) => tracing::info!(%reason, "closing"),
            }
        }
        if session.is_finished() {
            break;
        }
        let deadline = session.poll_timeout();
        if deadline != timer_at {
            timer_at = deadline;
            timer = deadline.map_or_else(Timer::never, Timer::at);
        }
        let event = std::future::poll_fn(|cx| {
            let pending = session.transmit();
            if !pending.is_empty()
                && let Poll::Ready(r) = Pin::new(&mut stream).poll_write(cx, pending)
            {
                return Poll::Ready(Event::Wrote(r));
            }
            if session.wants_read()
                && let Poll::Ready(r) = Pin::new(&mut stream).poll_read(cx, &mut buf)
            {
                return Poll::Ready(Event::Read(r));
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Event::Timeout);
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match event {
            Event::Read(Ok(0))
            | Event::Read(Err(_))
            | Event::Wrote(Err(_))
            | Event::Wrote(Ok(0)) => {
                session.handle_input(now, Input::PeerClosed);
            }
            Event::Read(Ok(n)) => session.handle_input(now, Input::Received(&buf[..n])),
            Event::Wrote(Ok(n)) => session.consume_transmit(n),
            Event::Timeout => {
                timer_at = None;
                session.handle_input(now, Input::Timeout);
            }
        }
    }
    let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
}
