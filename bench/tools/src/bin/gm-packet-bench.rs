//! The core's packet layer in a loop, per cipher, next to `openssl speed`.
//!
//! For each cipher it measures, on whatever core it runs on (run it under
//! `taskset -c N`; the `openssl` it starts inherits the pinning):
//!
//! - `seal`: [`PacketCipher::seal`] of one packet carrying `--size` bytes of
//!   payload (encrypt + MAC, in place), and `open`: [`PacketCipher::open`]
//!   of it (verify + decrypt): the cipher alone;
//! - `write` and `read`: the same through the framing the server uses,
//!   [`PacketWriter::packet`] (header, random padding, seal, into the
//!   outgoing buffer) and [`PacketReader::feed`] + [`PacketReader::next_packet`]
//!   (copy in, length, verify, decrypt, padding check);
//! - with `--openssl`, `openssl speed -evp CIPHER -bytes SIZE` and the same
//!   with `-decrypt`, for the AEAD ciphers (AES-CTR with an HMAC is compared
//!   with `aes-*-ctr` and `-hmac sha256` combined: 1 / (1/ctr + 1/hmac)).
//!
//! MB/s are 10^6 bytes of payload per second. OpenSSH's
//! chacha20-poly1305@openssh.com costs one more ChaCha20 block per packet
//! than openssl's AEAD (the length is encrypted under a second key); that is
//! the protocol's cost and is counted.
//!
//! Output: a table on stdout, or with `--tsv` one line per figure:
//! `cipher <TAB> what <TAB> MB/s`.

use std::process::Command;
use std::time::{Duration, Instant};

use gitmouth_core::transport::cipher::{CipherAlg, DirectionKeys, MacAlg, PacketCipher};
use gitmouth_core::transport::packet::{PacketReader, PacketWriter};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

/// What to measure, from the command line.
struct Options {
    ciphers: Vec<(CipherAlg, Option<MacAlg>)>,
    size: usize,
    seconds: f64,
    openssl: bool,
    tsv: bool,
}

const USAGE: &str = "usage: gm-packet-bench [--cipher NAME[:MAC]]... [--size BYTES] [--seconds S] [--openssl] [--tsv]
  --cipher   chacha20-poly1305@openssh.com, aes128-gcm@openssh.com, aes256-gcm@openssh.com,
             aes128-ctr:hmac-sha2-256-etm@openssh.com, ... (repeatable; default: those four)
  --size     payload bytes per packet (default 32768)
  --seconds  time per figure (default 1)
  --openssl  also run `openssl speed -evp` for each cipher (same core: run under taskset)
  --tsv      print `cipher<TAB>what<TAB>MB/s` lines instead of a table";

fn parse_cipher(spec: &str) -> Result<(CipherAlg, Option<MacAlg>), String> {
    let (c, m) = match spec.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (spec, None),
    };
    let cipher = CipherAlg::from_name(c).ok_or_else(|| format!("unknown cipher {c}"))?;
    let mac = match m {
        Some(m) => Some(MacAlg::from_name(m).ok_or_else(|| format!("unknown MAC {m}"))?),
        None if cipher.is_aead() => None,
        None => Some(MacAlg::HmacSha256Etm),
    };
    Ok((cipher, mac))
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        ciphers: Vec::new(),
        size: 32 * 1024,
        seconds: 1.0,
        openssl: false,
        tsv: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--cipher" => o.ciphers.push(parse_cipher(&value()?)?),
            "--size" => o.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--openssl" => o.openssl = true,
            "--tsv" => o.tsv = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.ciphers.is_empty() {
        for spec in [
            "chacha20-poly1305@openssh.com",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-ctr:hmac-sha2-256-etm@openssh.com",
        ] {
            o.ciphers.push(parse_cipher(spec)?);
        }
    }
    if o.size == 0 || o.size > gitmouth_core::transport::packet::MAX_PAYLOAD {
        return Err("--size must be 1..=65536".to_owned());
    }
    Ok(o)
}

/// Fixed keys for one direction (the bytes do not matter to the speed).
fn keys(cipher: CipherAlg, mac: Option<MacAlg>) -> DirectionKeys {
    DirectionKeys {
        cipher,
        mac,
        iv: Zeroizing::new(vec![0x11; cipher.iv_len()]),
        enc_key: Zeroizing::new(vec![0x22; cipher.key_len()]),
        mac_key: Zeroizing::new(vec![0x33; mac.map_or(0, MacAlg::key_len)]),
    }
}

/// One plaintext packet as the framing lays it out: length, padding length,
/// payload, padding (RFC 4253 §6).
fn frame(cipher: &PacketCipher, payload: &[u8]) -> Vec<u8> {
    let block = cipher.block_size();
    let framed = if cipher.length_excluded_from_padding() {
        1 + payload.len()
    } else {
        5 + payload.len()
    };
    let mut padding = block - framed % block;
    if padding < 4 {
        padding += block;
    }
    let len = 1 + payload.len() + padding;
    let mut p = Vec::with_capacity(4 + len);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.push(padding as u8);
    p.extend_from_slice(payload);
    p.resize(4 + len, 0);
    p
}

/// Seconds spent in each of two alternating steps on `state`, until both
/// together took `budget`; returns (first, second, iterations). The steps get
/// the packet's sequence number.
fn alternate<S>(
    budget: Duration,
    state: &mut S,
    first: impl Fn(&mut S, u32),
    second: impl Fn(&mut S, u32),
) -> (f64, f64, u64) {
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0u64;
    // A warm-up round, not counted.
    first(state, 0);
    second(state, 0);
    let mut seq = 1u32;
    while a + b < budget {
        let t0 = Instant::now();
        first(state, seq);
        let t1 = Instant::now();
        second(state, seq);
        let t2 = Instant::now();
        a += t1 - t0;
        b += t2 - t1;
        seq = seq.wrapping_add(1);
        n += 1;
    }
    (a.as_secs_f64(), b.as_secs_f64(), n)
}

/// (seal, open) MB/s of the cipher alone.
fn bench_cipher(
    cipher: CipherAlg,
    mac: Option<MacAlg>,
    size: usize,
    budget: Duration,
) -> (f64, f64) {
    struct State {
        tx: PacketCipher,
        rx: PacketCipher,
        packet: Vec<u8>,
        tag: Vec<u8>,
    }
    let k = keys(cipher, mac);
    let tx = PacketCipher::new(&k);
    let packet = frame(&tx, &vec![0x5au8; size]);
    let tag = vec![0u8; tx.tag_len()];
    let mut state = State {
        tx,
        rx: PacketCipher::new(&k),
        packet,
        tag,
    };
    // `open` leaves the packet in plaintext again, so one buffer goes round.
    let (s, o, n) = alternate(
        budget,
        &mut state,
        |st, seq| st.tx.seal(seq, &mut st.packet, &mut st.tag),
        |st, seq| {
            let ok = st.rx.open(seq, &mut st.packet, &st.tag);
            assert!(
                ok.is_ok(),
                "{}: a packet we sealed does not open",
                cipher.name()
            );
        },
    );
    let bytes = (n * size as u64) as f64;
    (bytes / s / 1e6, bytes / o / 1e6)
}

/// (write, read) MB/s through the server's framing.
fn bench_framing(
    cipher: CipherAlg,
    mac: Option<MacAlg>,
    size: usize,
    budget: Duration,
) -> (f64, f64) {
    struct State {
        writer: PacketWriter,
        reader: PacketReader,
        rng: ChaCha20Rng,
        payload: Vec<u8>,
    }
    let k = keys(cipher, mac);
    let mut state = State {
        writer: PacketWriter::new(),
        reader: PacketReader::new(),
        rng: ChaCha20Rng::from_seed([7; 32]),
        payload: vec![0x5au8; size],
    };
    state.writer.set_cipher(PacketCipher::new(&k));
    state.reader.set_cipher(PacketCipher::new(&k));
    let (w, r, n) = alternate(
        budget,
        &mut state,
        |st, _| {
            let payload = &st.payload;
            st.writer
                .packet(&mut st.rng, |out| out.extend_from_slice(payload));
        },
        |st, _| {
            let len = st.writer.pending().len();
            st.reader.feed(st.writer.pending());
            st.writer.consume(len);
            match st.reader.next_packet() {
                Ok(Some(p)) => assert_eq!(p.payload.len(), size),
                other => panic!("{}: framing round trip failed: {other:?}", cipher.name()),
            }
        },
    );
    let bytes = (n * size as u64) as f64;
    (bytes / w / 1e6, bytes / r / 1e6)
}

/// `openssl speed` for one EVP name: MB/s (10^6 bytes/s) of `size`-byte blocks.
fn openssl_speed(args: &[&str], size: usize, seconds: f64) -> Result<f64, String> {
    let secs = (seconds.round() as u64).max(1).to_string();
    let size_s = size.to_string();
    let mut cmd = Command::new("openssl");
    cmd.arg("speed")
        .args(args)
        .args(["-bytes", &size_s, "-seconds", &secs]);
    let out = cmd.output().map_err(|e| format!("openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: `NAME   1234567.89k` (thousands of bytes per second).
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with('k'))
        .ok_or_else(|| format!("openssl speed {args:?}: no result in {text:?}"))?;
    let value = last
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
        .ok_or_else(|| format!("openssl speed {args:?}: cannot read {last:?}"))?;
    Ok(value * 1000.0 / 1e6)
}

/// openssl's (encrypt, decrypt) MB/s for the same cipher, where it has one.
fn openssl_for(
    cipher: CipherAlg,
    mac: Option<MacAlg>,
    size: usize,
    seconds: f64,
) -> Result<(f64, f64), String> {
    let evp = match cipher {
        CipherAlg::ChaCha20Poly1305 => "chacha20-poly1305",
        CipherAlg::Aes128Gcm => "aes-128-gcm",
        CipherAlg::Aes256Gcm => "aes-256-gcm",
        CipherAlg::Aes128Ctr => "aes-128-ctr",
        CipherAlg::Aes256Ctr => "aes-256-ctr",
    };
    let enc = openssl_speed(&["-evp", evp], size, seconds)?;
    let dec = openssl_speed(&["-decrypt", "-evp", evp], size, seconds)?;
    if cipher.is_aead() {
        return Ok((enc, dec));
    }
    let hmac = match mac {
        Some(MacAlg::HmacSha512Etm | MacAlg::HmacSha512) => "sha512",
        _ => "sha256",
    };
    let h = openssl_speed(&["-hmac", hmac], size, seconds)?;
    let both = |c: f64| 1.0 / (1.0 / c + 1.0 / h);
    Ok((both(enc), both(dec)))
}

fn name(cipher: CipherAlg, mac: Option<MacAlg>) -> String {
    match mac {
        Some(m) if !cipher.is_aead() => format!("{}:{}", cipher.name(), m.name()),
        _ => cipher.name().to_owned(),
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
    let budget = Duration::from_secs_f64(o.seconds);
    if !o.tsv {
        println!(
            "packet layer, {} B payload per packet, MB/s (10^6 B/s); % = of openssl's on the same core",
            o.size
        );
        println!(
            "{:<46}{:>8}{:>8}{:>8}{:>8}{:>10}{:>10}{:>7}{:>7}",
            "cipher", "seal", "open", "write", "read", "ossl enc", "ossl dec", "seal%", "open%"
        );
    }
    for &(cipher, mac) in &o.ciphers {
        let n = name(cipher, mac);
        let (seal, open) = bench_cipher(cipher, mac, o.size, budget);
        let (write, read) = bench_framing(cipher, mac, o.size, budget);
        let ossl = if o.openssl {
            match openssl_for(cipher, mac, o.size, o.seconds) {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!("warning: {e}");
                    None
                }
            }
        } else {
            None
        };
        if o.tsv {
            for (what, v) in [
                ("seal", seal),
                ("open", open),
                ("write", write),
                ("read", read),
            ] {
                println!("{n}\t{what}\t{v:.1}");
            }
            if let Some((e, d)) = ossl {
                println!("{n}\topenssl-enc\t{e:.1}\n{n}\topenssl-dec\t{d:.1}");
            }
        } else {
            let (oe, od, ps, po) = match ossl {
                Some((e, d)) => (
                    format!("{e:.0}"),
                    format!("{d:.0}"),
                    format!("{:.0}%", 100.0 * seal / e),
                    format!("{:.0}%", 100.0 * open / d),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            println!(
                "{n:<46}{seal:>8.0}{open:>8.0}{write:>8.0}{read:>8.0}{oe:>10}{od:>10}{ps:>7}{po:>7}"
            );
        }
    }
}
