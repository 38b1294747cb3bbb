//! An independent SSH client for interoperability tests: the `sunset` crate
//! (an IO-less SSH implementation by Dropbear's author), which speaks
//! `mlkem768x25519-sha256` where the machine's OpenSSH does not.
//!
//! [`SunsetClient`] runs one session: it accepts any host key (recording
//! it), authenticates with one ed25519 key, opens a session channel, execs
//! a command, collects stdout, stderr and the exit status, and sends what
//! the test queues with [`SunsetClient::send`]. Bytes move through
//! [`SunsetClient::input`] and [`SunsetClient::take_output`], so the same
//! client runs in memory against a `Session` or over TCP ([`run_tcp`]).
//!
//! sunset names the algorithms it negotiated only in a debug log line; a
//! `log` logger installed here keeps sunset's records per thread, so
//! [`SunsetClient::negotiated`] reports the client's own view.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Once;
use std::time::{Duration, Instant};

use ssh_key::PrivateKey;
use sunset::event::{CliEvent, Event};
use sunset::packets::PubKey;
use sunset::{ChanData, ChanHandle, CliSessionExit, Runner, SignKey};

thread_local! {
    /// sunset's log records on this thread, not yet taken by a client.
    static RECORDS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps sunset's debug records, per thread (tests run in parallel).
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug && metadata.target().starts_with("sunset")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{}: {}", record.level(), record.args());
            RECORDS.with(|r| r.borrow_mut().push(line));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&CAPTURE).is_ok() {
            // Trace would format every packet; debug names the algorithms.
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
}

/// The algorithms sunset chose in one key exchange, as it logs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Algorithms {
    /// Key exchange.
    pub kex: String,
    /// Host-key signature algorithm.
    pub host_key: String,
    /// Cipher client to server.
    pub cipher_c2s: String,
    /// Cipher server to client.
    pub cipher_s2c: String,
    /// MAC client to server (the cipher's name for an AEAD).
    pub mac_c2s: String,
    /// MAC server to client.
    pub mac_s2c: String,
}

impl Algorithms {
    /// Parses sunset's `Negotiated algorithms {…}` debug record.
    fn parse(record: &str) -> Option<Self> {
        let body = record.split("Negotiated algorithms {").nth(1)?;
        let mut a = Algorithms::default();
        for line in body.lines() {
            let line = line.trim();
            let field = [
                ("kex ", &mut a.kex),
                ("hostkey ", &mut a.host_key),
                ("cipher c->s ", &mut a.cipher_c2s),
                ("cipher s->c ", &mut a.cipher_s2c),
                ("mac c->s ", &mut a.mac_c2s),
                ("mac s->c ", &mut a.mac_s2c),
            ]
            .into_iter()
            .find(|(prefix, _)| line.starts_with(prefix));
            if let Some((prefix, slot)) = field {
                *slot = line[prefix.len()..].to_owned();
            }
        }
        (!a.kex.is_empty()).then_some(a)
    }
}

/// How the remote command ended, as sunset reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `exit-status`.
    Status(u32),
    /// `exit-signal`, with the signal's name.
    Signal(String),
}

/// One sunset client session.
pub struct SunsetClient {
    runner: Runner<'static, sunset::Client>,
    user: String,
    /// Offered once; sunset asks again after a refusal and is then told no.
    key: Option<SignKey>,
    command: String,
    chan: Option<ChanHandle>,
    /// Received bytes sunset has not accepted yet.
    inbox: Vec<u8>,
    /// Channel data queued by the test, not yet accepted by sunset.
    outbox: Vec<u8>,
    input_closed: bool,
    /// The server's ed25519 host key, as sunset received it.
    pub host_key: Option<[u8; 32]>,
    /// Whether authentication succeeded.
    pub authenticated: bool,
    /// Whether the session channel opened and the command was requested.
    pub exec_sent: bool,
    /// Channel stdout received.
    pub stdout: Vec<u8>,
    /// Channel stderr (extended data) received.
    pub stderr: Vec<u8>,
    /// The command's end, once reported.
    pub exit: Option<Exit>,
    /// Banners the server sent.
    pub banners: Vec<String>,
    /// Whether sunset declared the connection over.
    pub defunct: bool,
    /// The error that stopped sunset, if one did.
    pub error: Option<String>,
    /// Every event sunset produced, by name, in order.
    pub events: Vec<String>,
    /// sunset's debug log for this session.
    pub log: Vec<String>,
}

impl SunsetClient {
    /// A client that will log in as `user` with `key` (ed25519) and exec
    /// `command`.
    pub fn new(user: &str, key: &PrivateKey, command: &str) -> Self {
        install_logger();
        // Records left by an earlier client on this thread are not ours.
        RECORDS.with(|r| r.borrow_mut().clear());
        let seed = key
            .key_data()
            .ed25519()
            .expect("sunset client keys are ed25519")
            .private
            .to_bytes();
        let signing = sunset::ed25519_dalek::SigningKey::from_bytes(&seed);
        Self {
            runner: Runner::new_client_owned(),
            user: user.to_owned(),
            key: Some(SignKey::Ed25519(signing)),
            command: command.to_owned(),
            chan: None,
            inbox: Vec::new(),
            outbox: Vec::new(),
            input_closed: false,
            host_key: None,
            authenticated: false,
            exec_sent: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit: None,
            banners: Vec::new(),
            defunct: false,
            error: None,
            events: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Bytes received from the server.
    pub fn input(&mut self, data: &[u8]) {
        self.inbox.extend_from_slice(data);
    }

    /// The server closed the connection.
    pub fn close_input(&mut self) {
        self.input_closed = true;
    }

    /// Queues bytes for the command's stdin.
    pub fn send(&mut self, data: &[u8]) {
        self.outbox.extend_from_slice(data);
    }

    /// Bytes to send to the server.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let buf = self.runner.output_buf();
            if buf.is_empty() {
                return out;
            }
            let n = buf.len();
            out.extend_from_slice(buf);
            self.runner.consume_output(n);
        }
    }

    /// Whether the session is over: sunset stopped, or the command's end
    /// was reported and its channel closed.
    pub fn is_done(&self) -> bool {
        self.defunct
            || self.error.is_some()
            || (self.exit.is_some()
                && self
                    .chan
                    .as_ref()
                    .is_some_and(|c| self.runner.is_channel_closed(c)))
    }

    /// The algorithms of every key exchange sunset completed negotiation
    /// for, first one first.
    pub fn negotiated(&self) -> Vec<Algorithms> {
        self.log
            .iter()
            .filter_map(|l| Algorithms::parse(l))
            .collect()
    }

    /// Runs sunset until it can do nothing more with what it has; returns
    /// whether anything happened. An error stops the client
    /// ([`SunsetClient::error`]).
    pub fn pump(&mut self) -> bool {
        if self.error.is_some() || self.defunct {
            return false;
        }
        let mut moved = false;
        for _ in 0..100_000 {
            match self.step() {
                Ok(true) => moved = true,
                Ok(false) => break,
                Err(e) => {
                    self.error = Some(format!("{e} ({e:?})"));
                    break;
                }
            }
        }
        RECORDS.with(|r| self.log.append(&mut r.borrow_mut()));
        moved
    }

    /// One round: handle one event, feed input, move channel data.
    fn step(&mut self) -> Result<bool, sunset::Error> {
        // Progress first: sunset sends its KEXINIT only once its version
        // line has left, and must not see the server's KEXINIT before
        // sending its own (a real client's would be on the wire by then).
        let mut moved = self.event()?;
        if self.defunct {
            return Ok(false);
        }
        if !self.inbox.is_empty() {
            let n = self.runner.input(&self.inbox)?;
            if n > 0 {
                self.inbox.drain(..n);
                moved = true;
            }
        } else if self.input_closed {
            self.runner.close_input();
        }
        moved |= self.read_channel()?;
        moved |= self.write_channel()?;
        Ok(moved)
    }

    fn event(&mut self) -> Result<bool, sunset::Error> {
        let mut open_session = false;
        let name = match self.runner.progress()? {
            Event::None => return Ok(false),
            Event::Progressed => return Ok(true),
            Event::Serv(e) => format!("unexpected server event {e:?}"),
            Event::Cli(event) => {
                let name = format!("{event:?}");
                match event {
                    CliEvent::Hostkey(h) => {
                        if let PubKey::Ed25519(k) = h.hostkey()? {
                            self.host_key = Some(k.key.0);
                        }
                        h.accept()?;
                    }
                    CliEvent::Banner(b) => {
                        self.banners.push(b.banner().unwrap_or("?").to_owned());
                    }
                    CliEvent::Username(r) => r.username(&self.user)?,
                    CliEvent::Password(r) => r.skip()?,
                    CliEvent::Pubkey(r) => match self.key.take() {
                        Some(k) => r.pubkey(k)?,
                        None => r.skip()?,
                    },
                    CliEvent::AgentSign(r) => r.skip()?,
                    CliEvent::Authenticated => {
                        self.authenticated = true;
                        open_session = true;
                    }
                    CliEvent::SessionOpened(mut s) => {
                        s.exec(&self.command)?;
                        self.exec_sent = true;
                    }
                    CliEvent::SessionExit(e) => {
                        self.exit = Some(match e {
                            CliSessionExit::Status(s) => Exit::Status(s),
                            CliSessionExit::Signal(s) => Exit::Signal(s.signal.to_owned()),
                        });
                    }
                    CliEvent::Defunct => self.defunct = true,
                    CliEvent::PollAgain => {}
                }
                name
            }
        };
        self.events.push(name);
        if open_session {
            self.chan = Some(self.runner.open_client_session()?);
        }
        Ok(true)
    }

    fn read_channel(&mut self) -> Result<bool, sunset::Error> {
        let mut moved = false;
        let mut buf = [0u8; 4096];
        while let Some((num, _, _)) = self.runner.read_channel_ready() {
            let Some(chan) = self.chan.as_ref().filter(|c| c.num() == num) else {
                return Err(sunset::Error::msg("data on an unknown channel"));
            };
            let (n, dt) = self.runner.read_channel_either(chan, &mut buf)?;
            match dt {
                ChanData::Normal => self.stdout.extend_from_slice(&buf[..n]),
                ChanData::Stderr => self.stderr.extend_from_slice(&buf[..n]),
            }
            if n == 0 {
                break;
            }
            moved = true;
        }
        Ok(moved)
    }

    fn write_channel(&mut self) -> Result<bool, sunset::Error> {
        let Some(chan) = self.chan.as_ref() else {
            return Ok(false);
        };
        if self.outbox.is_empty() || !self.exec_sent {
            return Ok(false);
        }
        let n = self
            .runner
            .write_channel(chan, ChanData::Normal, &self.outbox)?;
        self.outbox.drain(..n);
        Ok(n > 0)
    }
}

/// Runs `client` over TCP to `addr` until `done(client)` or the client
/// stops, within `limit`; calls `on_round` after each round (to queue
/// input). Returns whether it finished in time.
pub fn run_tcp(
    addr: std::net::SocketAddr,
    client: &mut SunsetClient,
    limit: Duration,
    mut on_round: impl FnMut(&mut SunsetClient),
) -> bool {
    let deadline = Instant::now() + limit;
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("set a read timeout");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    while Instant::now() < deadline {
        client.pump();
        on_round(client);
        client.pump();
        let out = client.take_output();
        if !out.is_empty() && stream.write_all(&out).is_err() {
            client.close_input();
            eof = true;
        }
        if client.is_done() {
            return true;
        }
        if eof {
            client.pump();
            return client.is_done();
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                client.close_input();
                eof = true;
            }
            Ok(n) => client.input(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                client.close_input();
                eof = true;
            }
        }
    }
    false
}
