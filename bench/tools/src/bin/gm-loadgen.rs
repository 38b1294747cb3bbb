//! Opens many idle authenticated SSH sessions from one process and holds them.
//!
//! Each session is a real TCP connection driven by the core's client role
//! ([`gitmouth_core::client::Client`]): version exchange, key exchange,
//! `ssh-userauth`, a signed publickey authentication, and then nothing: no
//! channel (what `ssh -N` holds), unless `--channel` asks for an open
//! session channel with no request on it. The client answers the server's
//! keepalives and otherwise stays silent. It does not check the server's
//! host key (a benchmark on loopback).
//!
//! It opens `--count` sessions, at most `--concurrency` in set-up at once,
//! and stops opening early when `/proc/meminfo`'s `MemAvailable` falls under
//! `--floor-mb` or more than `--max-failures` connections failed. Then it
//! prints one line on stdout,
//!
//!     held=N failed=F lost=L seconds=S reason=REASON
//!
//! and holds what it opened until it is killed (SIGTERM: the kernel closes
//! every socket) or `--hold` seconds have passed. While holding it rewrites
//! `--status FILE` every second with `held=N failed=F lost=L` (`lost`:
//! sessions the server ended after they were held). Progress goes to stderr.
//! It runs on one thread, so that it takes at most one core from the server.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitmouth_core::client::{Client, ClientConfig, Event, Input};
use gitmouth_core::transport::TransportConfig;
use gitmouth_core::transport::kex::KexAlg;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{LocalExecutor, Timer};
use ssh_key::PrivateKey;

const USAGE: &str =
    "usage: gm-loadgen --addr HOST:PORT --key FILE [--user NAME] [--count N] [--concurrency C]
                  [--kex NAME] [--channel] [--floor-mb MB] [--max-failures N] [--setup-timeout SECS]
                  [--hold SECS] [--status FILE]
  --addr           the server
  --key            the user's private key (OpenSSH format, unencrypted)
  --user           user name (default git)
  --count          sessions to open (default 100)
  --concurrency    sessions in set-up at once (default 32)
  --kex            key exchange to offer, alone (default: the core's client default list)
  --channel        also open a session channel (no request on it) on each
  --floor-mb       stop opening when MemAvailable falls under this (default 0: never)
  --max-failures   stop opening after this many failed connections (default 100)
  --setup-timeout  seconds one session may take to be authenticated (default 60)
  --hold           seconds to hold the sessions before exiting (default 3600)
  --status FILE    rewritten every second while holding: held=N failed=F lost=L";

/// The command line.
struct Options {
    addr: SocketAddr,
    key: PrivateKey,
    user: String,
    count: u64,
    concurrency: u64,
    kex: Option<KexAlg>,
    channel: bool,
    floor_mb: u64,
    max_failures: u64,
    setup_timeout: Duration,
    hold: Duration,
    status: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut addr = None;
    let mut key = None;
    let mut user = "git".to_owned();
    let (mut count, mut concurrency, mut max_failures) = (100, 32, 100);
    let (mut kex, mut channel, mut floor_mb, mut status) = (None, false, 0, None);
    let (mut setup_timeout, mut hold) = (60, 3600);
    fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
        v.parse().map_err(|_| format!("{name}: not a number: {v}"))
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--key" => {
                let path = value()?;
                key = Some(
                    PrivateKey::read_openssh_file(&path)
                        .map_err(|e| format!("--key {path}: {e}"))?,
                );
            }
            "--user" => user = value()?,
            "--count" => count = num(&a, value()?)?,
            "--concurrency" => concurrency = num::<u64>(&a, value()?)?.max(1),
            "--kex" => {
                let name = value()?;
                kex = Some(KexAlg::from_name(&name).ok_or_else(|| format!("unknown kex {name}"))?);
            }
            "--channel" => channel = true,
            "--floor-mb" => floor_mb = num(&a, value()?)?,
            "--max-failures" => max_failures = num(&a, value()?)?,
            "--setup-timeout" => setup_timeout = num(&a, value()?)?,
            "--hold" => hold = num(&a, value()?)?,
            "--status" => status = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Options {
        addr: addr.ok_or_else(|| format!("--addr is required\n{USAGE}"))?,
        key: key.ok_or_else(|| format!("--key is required\n{USAGE}"))?,
        user,
        count,
        concurrency,
        kex,
        channel,
        floor_mb,
        max_failures,
        setup_timeout: Duration::from_secs(setup_timeout),
        hold: Duration::from_secs(hold),
        status,
    })
}

/// What a session task reports to the main task.
enum Report {
    /// Authenticated (and its channel open, with `--channel`).
    Held,
    /// It never got there.
    Failed(String),
    /// It was held, then the connection ended.
    Lost(String),
}

/// What every session shares.
struct Shared {
    addr: SocketAddr,
    config: ClientConfig,
    key: PrivateKey,
    user: String,
    channel: bool,
    setup_timeout: Duration,
    reports: smol::channel::Sender<Report>,
}

/// One session, from connect to its end; reports when it is held and how it ended.
async fn session(shared: Rc<Shared>, seed: [u8; 32]) {
    let held = Cell::new(false);
    let result = drive(&shared, seed, &held).await;
    let report = match (result, held.get()) {
        (Err(e), false) => Report::Failed(e),
        (Err(e), true) => Report::Lost(e),
        (Ok(()), _) => Report::Lost("ended".to_owned()),
    };
    let _ = shared.reports.send(report).await;
}

async fn drive(shared: &Shared, seed: [u8; 32], held: &Cell<bool>) -> Result<(), String> {
    let mut stream = smol::net::TcpStream::connect(shared.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut client = Client::new(&shared.config, seed, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    let setup_deadline = Instant::now() + shared.setup_timeout;
    loop {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Established => client.request_service("ssh-userauth"),
                Event::ServiceAccepted => client.auth_publickey(&shared.user, &shared.key),
                Event::AuthSuccess if shared.channel => client.open_session(64 * 1024, 32 * 1024),
                Event::AuthSuccess | Event::ChannelOpened => {
                    held.set(true);
                    // Idle from now on: a small read buffer is enough.
                    buf = vec![0u8; 1024];
                    let _ = shared.reports.send(Report::Held).await;
                }
                Event::AuthFailure { methods, .. } => {
                    return Err(format!("authentication refused (can continue: {methods})"));
                }
                Event::ChannelOpenFailed { description, .. } => {
                    return Err(format!("channel refused: {description}"));
                }
                _ => {}
            }
        }
        while !client.transmit().is_empty() {
            let n = stream
                .write(client.transmit())
                .await
                .map_err(|e| format!("write: {e}"))?;
            client.consume_transmit(n);
        }
        if client.is_closed() {
            return Err(format!("closed: {:?}", client.transport().close_reason()));
        }
        let mut wake = client.poll_timeout();
        if !held.get() {
            wake = Some(wake.map_or(setup_deadline, |w| w.min(setup_deadline)));
        }
        let read = async { Some(stream.read(&mut buf).await) };
        let got = match wake {
            Some(at) => {
                smol::future::or(read, async {
                    Timer::at(at).await;
                    None
                })
                .await
            }
            None => read.await,
        };
        let now = Instant::now();
        match got {
            Some(Ok(0)) => {
                client.handle_input(now, Input::PeerClosed);
                return Err("the server closed the connection".to_owned());
            }
            Some(Ok(n)) => client.handle_input(now, Input::Received(&buf[..n])),
            Some(Err(e)) => return Err(format!("read: {e}")),
            None if !held.get() && now >= setup_deadline => {
                return Err("set-up timed out".to_owned());
            }
            None => client.handle_input(now, Input::Timeout),
        }
    }
}

/// `MemAvailable` in MiB.
fn mem_available_mb() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb / 1024)
}

fn write_status(path: &Option<String>, held: u64, failed: u64, lost: u64) {
    if let Some(path) = path {
        let tmp = format!("{path}.tmp");
        let text = format!("held={held} failed={failed} lost={lost}\n");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

async fn run(ex: &'static LocalExecutor<'static>, o: Options) {
    let (tx, rx) = smol::channel::unbounded();
    let mut config = ClientConfig::default();
    if let Some(kex) = o.kex {
        config.transport = Arc::new(TransportConfig {
            kex: vec![kex],
            ..TransportConfig::default()
        });
    }
    let shared = Rc::new(Shared {
        addr: o.addr,
        config,
        key: o.key,
        user: o.user,
        channel: o.channel,
        setup_timeout: o.setup_timeout,
        reports: tx,
    });
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        eprintln!("gm-loadgen: no randomness ({e}); using a fixed seed");
    }
    let mut seeds = ChaCha20Rng::from_seed(seed);

    let start = Instant::now();
    let (mut started, mut in_flight, mut held, mut failed, mut lost) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut reason = "count";
    let mut last_error = String::new();
    let mut stop_opening = false;
    loop {
        while !stop_opening && started < o.count && in_flight < o.concurrency {
            let mut s = [0u8; 32];
            seeds.fill_bytes(&mut s);
            ex.spawn(session(shared.clone(), s)).detach();
            started += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        let Ok(report) = rx.recv().await else { break };
        match report {
            Report::Held => {
                held += 1;
                in_flight -= 1;
                if held % 1000 == 0 {
                    eprintln!(
                        "gm-loadgen: {held} held, {failed} failed, {:.1} s, {} MiB available",
                        start.elapsed().as_secs_f64(),
                        mem_available_mb()
                    );
                }
                if o.floor_mb > 0 && held % 50 == 0 && mem_available_mb() < o.floor_mb {
                    if !stop_opening {
                        eprintln!(
                            "gm-loadgen: MemAvailable under {} MiB: stop opening",
                            o.floor_mb
                        );
                    }
                    stop_opening = true;
                    reason = "memory-floor";
                }
            }
            Report::Failed(e) => {
                failed += 1;
                in_flight -= 1;
                if failed <= 5 {
                    eprintln!("gm-loadgen: a session failed: {e}");
                }
                last_error = e;
                if failed > o.max_failures && !stop_opening {
                    eprintln!(
                        "gm-loadgen: more than {} failures: stop opening",
                        o.max_failures
                    );
                    stop_opening = true;
                    reason = "failures";
                }
            }
            Report::Lost(e) => {
                held -= 1;
                lost += 1;
                if lost <= 5 {
                    eprintln!("gm-loadgen: a held session ended: {e}");
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("held={held} failed={failed} lost={lost} seconds={seconds:.1} reason={reason}");
    if failed > 0 {
        eprintln!("gm-loadgen: last failure: {last_error}");
    }
    write_status(&o.status, held, failed, lost);
    // Hold until killed or the time is up, keeping the count current.
    let end = Instant::now() + o.hold;
    while Instant::now() < end {
        let next = smol::future::or(async { rx.recv().await.ok() }, async {
            Timer::after(Duration::from_secs(1)).await;
            None
        })
        .await;
        if let Some(Report::Lost(e)) = next {
            held -= 1;
            lost += 1;
            if lost <= 5 {
                eprintln!("gm-loadgen: a held session ended: {e}");
            }
        }
        write_status(&o.status, held, failed, lost);
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    smol::block_on(ex.run(run(ex, o)));
    // Exiting closes every socket at once.
    std::process::exit(0);
}
