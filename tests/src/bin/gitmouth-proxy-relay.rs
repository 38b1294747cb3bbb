//! A stand-in for a load balancer, for `ssh -o ProxyCommand=...`: connects
//! to the server (from `--bind`, if given), sends a PROXY header saying the
//! connection comes from `--client`, then relays stdin to the server and
//! the server to stdout until either side ends.
//!
//!     gitmouth-proxy-relay --connect 127.0.0.1:2222 --client 127.0.0.9:5555 --version 2

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};

fn main() {
    if let Err(e) = run() {
        eprintln!("gitmouth-proxy-relay: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut connect: Option<SocketAddr> = None;
    let mut client: Option<SocketAddr> = None;
    let mut bind: Option<IpAddr> = None;
    let mut version = String::from("2");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: std::net::AddrParseError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--connect" => connect = Some(value.parse().map_err(bad)?),
            "--client" => client = Some(value.parse().map_err(bad)?),
            "--bind" => bind = Some(value.parse().map_err(bad)?),
            "--version" => version = value,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let connect = connect.ok_or("--connect is required")?;
    let client = client.ok_or("--client is required")?;
    let socket = match bind {
        Some(from) => gitmouth_tests::tcp_from(from, connect),
        None => TcpStream::connect(connect),
    }
    .map_err(|e| format!("connect {connect}: {e}"))?;
    let header = match version.as_str() {
        "1" => gitmouth_core::proxy::v1_header(client, connect),
        "2" => gitmouth_core::proxy::v2_header(client, connect),
        // Anything else is sent as it is: a malformed header on purpose.
        other => other.as_bytes().to_vec(),
    };
    let mut to_server = socket.try_clone().map_err(|e| e.to_string())?;
    to_server.write_all(&header).map_err(|e| e.to_string())?;
    let upstream = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut from_server = socket;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 32 * 1024];
    loop {
        match from_server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    // The server ended the connection: so does the relay (ssh sees its
    // ProxyCommand's output end), without waiting for stdin.
    drop(upstream);
    Ok(())
}
