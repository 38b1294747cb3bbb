//! Target `proxy_header`: the PROXY protocol header a load balancer puts
//! before SSH (`core::proxy`), examined as the runtime does, a few bytes
//! at a time.
//!
//! The first byte picks the policy (optional or required) and whether the
//! peer is trusted; the rest is what the connection sent. Besides "no
//! panic", the body checks what the runtime relies on:
//!
//! - a decision taken on a prefix is the decision on the whole input
//!   (reading in any chunks decides the same way: the runtime stops
//!   reading once decided);
//! - nothing is undecided past [`MAX_HEADER`] bytes, and a header never
//!   claims more bytes than were read;
//! - an untrusted peer never gets an address from a header, and a header
//!   without a client address leaves the peer's own;
//! - after the header, every remaining byte is SSH's (consumed stops at
//!   the header's end, and what follows does not change the decision);
//! - the headers the tests send (`v1_header`, `v2_header`) for addresses
//!   taken from the input are read back as those addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use gitmouth_core::admission::Network;
use gitmouth_core::proxy::{
    Examined, HeaderKind, MAX_HEADER, ProxyMode, ProxyPolicy, v1_header, v2_header,
};

/// The body of the `proxy_header` target.
pub fn proxy_header(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let mode = if selector & 1 == 0 {
        ProxyMode::Optional
    } else {
        ProxyMode::Required
    };
    let trusted = selector & 2 == 0;
    let balancer: IpAddr = Ipv4Addr::new(10, 0, 0, 5).into();
    let policy = ProxyPolicy {
        mode,
        trusted: vec![Network::parse("10.0.0.5").expect("a network")],
        timeout: Duration::from_secs(5),
    };
    let peer = if trusted {
        SocketAddr::new(balancer, 40_000)
    } else {
        SocketAddr::new(Ipv4Addr::new(192, 0, 2, 9).into(), 40_000)
    };
    let bytes = &bytes[..bytes.len().min(MAX_HEADER + 64)];
    check(&policy, peer, bytes, trusted);
    round_trip(&policy, bytes);
}

fn check(policy: &ProxyPolicy, peer: SocketAddr, bytes: &[u8], trusted: bool) {
    let whole = policy.examine(peer, bytes);
    if bytes.len() >= MAX_HEADER {
        assert_ne!(
            whole,
            Examined::More,
            "undecided after {} bytes",
            bytes.len()
        );
    }
    if let Examined::Serve(arrived) = &whole {
        assert!(arrived.consumed <= bytes.len());
        match arrived.header {
            HeaderKind::V1 | HeaderKind::V2 => {
                assert!(trusted, "an untrusted peer's header was taken: {arrived:?}");
            }
            HeaderKind::None | HeaderKind::Local | HeaderKind::NoAddress => {
                assert_eq!(arrived.client, peer, "{arrived:?}");
            }
        }
        if arrived.header == HeaderKind::None {
            assert_eq!(arrived.consumed, 0);
        }
    }
    // The runtime examines what it has read so far and stops once
    // decided: the first decision on a prefix must be the whole input's.
    for k in 0..bytes.len() {
        let early = policy.examine(peer, &bytes[..k]);
        if early == Examined::More {
            continue;
        }
        assert_eq!(
            early,
            whole,
            "decided on {k} of {} bytes, differently from the whole",
            bytes.len()
        );
        break;
    }
    // So is the decision of a connection that stopped sending.
    if let decided @ (Examined::Serve(_) | Examined::Refuse(_)) = policy.timed_out(peer, bytes) {
        if whole != Examined::More {
            assert_eq!(decided, whole);
        }
    }
}

/// The headers our tests and the load balancer send, for addresses from
/// the input, read back as those addresses.
fn round_trip(policy: &ProxyPolicy, bytes: &[u8]) {
    let mut b = [0u8; 36];
    for (i, x) in bytes.iter().take(36).enumerate() {
        b[i] = *x;
    }
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let v4 = |i: usize| IpAddr::from(Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]));
    let v6 = |i: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[i..i + 16]);
        IpAddr::from(Ipv6Addr::from(o))
    };
    let balancer = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 5).into(), 40_000);
    let pairs = [
        (
            SocketAddr::new(v4(0), port(8)),
            SocketAddr::new(v4(4), port(10)),
        ),
        (
            SocketAddr::new(v6(0), port(32)),
            SocketAddr::new(v6(16), port(34)),
        ),
    ];
    for (source, destination) in pairs {
        for header in [
            v1_header(source, destination),
            v2_header(source, destination),
        ] {
            let mut sent = header.clone();
            sent.extend_from_slice(b"SSH-2.0-x\r\n");
            match policy.examine(balancer, &sent) {
                Examined::Serve(arrived) => {
                    assert_eq!(arrived.consumed, header.len());
                    let source = match source.ip() {
                        // A v4-mapped v6 address is the v4 client.
                        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => arrived.client,
                        _ => source,
                    };
                    assert_eq!(arrived.client, source, "{header:?}");
                }
                other => panic!("our own header {header:?} was not taken: {other:?}"),
            }
        }
    }
}
