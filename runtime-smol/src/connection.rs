//! One connection: feed the socket and the command to the session, perform
//! its outputs. The session decides everything; this loop only waits for
//! whichever of its sources is ready.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use gitmouth_core::server::{Input, Output, ServerConfig, Session, Stream};

use crate::backend::{self, Backend, Completion};

/// Size of one read from the socket or from a command's output.
const CHUNK: usize = 32 * 1024;

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

/// Everything that became ready in one wake-up.
#[derive(Default)]
struct Ready {
    wrote: Option<std::io::Result<usize>>,
    read: Option<std::io::Result<usize>>,
    stdin: Option<std::io::Result<usize>>,
    stdout: Option<std::io::Result<usize>>,
    stderr: Option<std::io::Result<usize>>,
    exited: Option<std::io::Result<std::process::ExitStatus>>,
    completion: Option<Completion>,
    timeout: bool,
}

impl Ready {
    fn any(&self) -> bool {
        self.wrote.is_some()
            || self.read.is_some()
            || self.stdin.is_some()
            || self.stdout.is_some()
            || self.stderr.is_some()
            || self.exited.is_some()
            || self.completion.is_some()
            || self.timeout
    }
}

/// Serves one client connection to its end.
pub async fn drive(mut stream: TcpStream, peer: SocketAddr, config: Arc<ServerConfig>) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(config, seed(), Instant::now());
    let span = tracing::info_span!("conn", %peer, session = %session.id());
    let _enter = span.enter();
    tracing::debug!("connected");
    let (done_tx, done_rx) = async_channel::unbounded::<Completion>();
    let mut done_rx = std::pin::pin!(done_rx);
    let mut backend: Option<Backend> = None;
    let mut sock_buf = vec![0u8; CHUNK];
    let mut out_buf = vec![0u8; CHUNK];
    let mut err_buf = vec![0u8; CHUNK];
    let mut timer = Timer::never();
    let mut timer_at = None;
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Close(reason) => tracing::info!(%reason, "connection closing"),
                other => backend::perform(other, &mut backend, &done_tx),
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
        let limit = session.backend_read_limit().min(CHUNK);
        let ready = std::future::poll_fn(|cx| {
            let mut r = Ready::default();
            poll_socket(cx, &mut stream, &session, &mut sock_buf, &mut r);
            if let Some(b) = backend.as_mut() {
                poll_backend(cx, b, &session, limit, &mut out_buf, &mut err_buf, &mut r);
            }
            if let Poll::Ready(Some(c)) = futures_lite::Stream::poll_next(done_rx.as_mut(), cx) {
                r.completion = Some(c);
            }
            if Pin::new(&mut timer).poll(cx).is_ready() {
                r.timeout = true;
            }
            if r.any() {
                Poll::Ready(r)
            } else {
                Poll::Pending
            }
        })
        .await;
        feed(
            &mut session,
            &mut backend,
            ready,
            &sock_buf,
            &out_buf,
            &err_buf,
            &mut timer_at,
        );
    }
    // Whatever is left (a command the session gave up waiting for) dies
    // with the connection.
    drop(backend);
    let _ = futures_lite::AsyncWriteExt::close(&mut stream).await;
}

fn poll_socket(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    session: &Session,
    buf: &mut [u8],
    r: &mut Ready,
) {
    let pending = session.transmit();
    if !pending.is_empty()
        && let Poll::Ready(res) = Pin::new(&mut *stream).poll_write(cx, pending)
    {
        r.wrote = Some(res);
    }
    if session.wants_read()
        && let Poll::Ready(res) = Pin::new(&mut *stream).poll_read(cx, buf)
    {
        r.read = Some(res);
    }
}

fn poll_backend(
    cx: &mut Context<'_>,
    b: &mut Backend,
    session: &Session,
    limit: usize,
    out_buf: &mut [u8],
    err_buf: &mut [u8],
    r: &mut Ready,
) {
    let stdin = session.backend_stdin();
    if !stdin.is_empty()
        && let Some(pipe) = b.stdin.as_mut()
        && let Poll::Ready(res) = Pin::new(pipe).poll_write(cx, stdin)
    {
        r.stdin = Some(res);
    }
    if limit > 0 {
        if let Some(pipe) = b.stdout.as_mut()
            && let Poll::Ready(res) = Pin::new(pipe).poll_read(cx, &mut out_buf[..limit])
        {
            r.stdout = Some(res);
        }
        // Both streams share the client's window: read stderr only with
        // what stdout left of it.
        let left = limit
            - r.stdout
                .as_ref()
                .and_then(|x| x.as_ref().ok())
                .copied()
                .unwrap_or(0);
        if left > 0
            && let Some(pipe) = b.stderr.as_mut()
            && let Poll::Ready(res) = Pin::new(pipe).poll_read(cx, &mut err_buf[..left])
        {
            r.stderr = Some(res);
        }
    }
    if let Some(exit) = b.exit.as_mut()
        && let Poll::Ready(res) = exit.as_mut().poll(cx)
    {
        b.exit = None;
        r.exited = Some(res);
    }
}

fn feed(
    session: &mut Session,
    backend: &mut Option<Backend>,
    ready: Ready,
    sock_buf: &[u8],
    out_buf: &[u8],
    err_buf: &[u8],
    timer_at: &mut Option<Instant>,
) {
    let now = Instant::now();
    match ready.wrote {
        Some(Ok(0)) | Some(Err(_)) => session.handle_input(now, Input::PeerClosed),
        Some(Ok(n)) => session.consume_transmit(n),
        None => {}
    }
    match ready.read {
        Some(Ok(0)) | Some(Err(_)) => session.handle_input(now, Input::PeerClosed),
        Some(Ok(n)) => session.handle_input(now, Input::Received(&sock_buf[..n])),
        None => {}
    }
    if let Some(b) = backend.as_mut() {
        let id = b.id;
        match ready.stdin {
            Some(Ok(n)) => session.consume_backend_stdin(now, n),
            // git stopped reading (it exited or closed stdin): drop what
            // is left, the exit status tells the rest.
            Some(Err(_)) => {
                b.stdin = None;
                let left = session.backend_stdin().len();
                session.consume_backend_stdin(now, left);
            }
            None => {}
        }
        for (stream, result, buf) in [
            (Stream::Stdout, ready.stdout, out_buf),
            (Stream::Stderr, ready.stderr, err_buf),
        ] {
            match result {
                Some(Ok(0)) | Some(Err(_)) => {
                    match stream {
                        Stream::Stdout => b.stdout = None,
                        Stream::Stderr => b.stderr = None,
                    }
                    session.handle_input(now, Input::BackendEof { id, stream });
                }
                Some(Ok(n)) => session.handle_input(
                    now,
                    Input::BackendData {
                        id,
                        stream,
                        data: &buf[..n],
                    },
                ),
                None => {}
            }
        }
        if let Some(result) = ready.exited {
            let status = backend::exit_status(result);
            session.handle_input(now, Input::BackendExited { id, status });
        }
    }
    if let Some(completion) = ready.completion {
        backend::complete(session, backend, completion, now);
    }
    if ready.timeout {
        *timer_at = None;
        session.handle_input(now, Input::Timeout);
    }
}
