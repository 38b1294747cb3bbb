//! Admission control (the core's `admission` module), unit by unit.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use gitmouth_core::admission::{Admission, AdmissionConfig, Network, Outcome, Ticket, Verdict};
use proptest::prelude::*;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

fn accept(a: &mut Admission, from: IpAddr, now: Instant) -> Ticket {
    match a.connect(from, now) {
        Verdict::Accept(t) => t,
        Verdict::Refuse(why) => panic!("refused: {why}"),
    }
}

#[test]
fn per_source_cap_and_release() {
    let now = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            start: 1000,
            full: 1000,
            ..Default::default()
        },
        [1; 32],
    );
    let mut tickets: Vec<_> = (0..10).map(|_| accept(&mut a, ip(1), now)).collect();
    assert!(matches!(a.connect(ip(1), now), Verdict::Refuse(_)));
    // Another source is fine; an authenticated one frees its place.
    let _other = accept(&mut a, ip(2), now);
    a.authenticated(&mut tickets[0]);
    let _again = accept(&mut a, ip(1), now);
    assert_eq!(a.unauthenticated(), 11);
    // IPv6 addresses of one /64 are one source.
    let six = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
    for i in 0..10 {
        accept(&mut a, six(i), now);
    }
    assert!(matches!(a.connect(six(99), now), Verdict::Refuse(_)));
}

#[test]
fn max_startups_drops_at_random_then_all() {
    let now = Instant::now();
    let mut a = Admission::new(
        AdmissionConfig {
            per_source: 1000,
            ..Default::default()
        },
        [2; 32],
    );
    let mut kept = Vec::new();
    for _ in 0..10 {
        kept.push(accept(&mut a, ip(1), now));
    }
    // Between start and full, some are dropped and some admitted.
    let mut admitted = 0;
    let mut dropped = 0;
    for _ in 0..200 {
        match a.connect(ip(1), now) {
            Verdict::Accept(t) => {
                admitted += 1;
                kept.push(t);
            }
            Verdict::Refuse(_) => dropped += 1,
        }
        if a.unauthenticated() >= 100 {
            break;
        }
    }
    assert!(admitted > 0 && dropped > 0, "{admitted} {dropped}");
    while a.unauthenticated() < 100 {
        if let Verdict::Accept(t) = a.connect(ip(1), now) {
            kept.push(t);
        }
    }
    for _ in 0..50 {
        assert!(matches!(a.connect(ip(1), now), Verdict::Refuse(_)));
    }
}

#[test]
fn penalties_accumulate_up_to_the_maximum_and_expire() {
    let now = Instant::now();
    let mut a = Admission::new(AdmissionConfig::default(), [3; 32]);
    // Two failures (10 s) stay under the 15 s threshold.
    for _ in 0..2 {
        let t = accept(&mut a, ip(1), now);
        a.close(t, Outcome::AuthFailed, now);
    }
    let t = accept(&mut a, ip(1), now);
    a.close(t, Outcome::GraceExceeded, now);
    // 20 s accumulated: refused now, fine after it runs out.
    assert!(matches!(a.connect(ip(1), now), Verdict::Refuse(_)));
    assert!(matches!(a.connect(ip(2), now), Verdict::Accept(_)));
    let later = now + Duration::from_secs(6);
    let t = accept(&mut a, ip(1), later);
    a.close(t, Outcome::Authenticated, later);
    // Accumulation is capped at ten minutes (a threshold out of reach
    // keeps the source admitted meanwhile).
    let config = AdmissionConfig {
        min_penalty: Duration::from_secs(100_000),
        ..Default::default()
    };
    let mut a = Admission::new(config, [3; 32]);
    for _ in 0..500 {
        let t = accept(&mut a, ip(3), now);
        a.close(t, Outcome::GraceExceeded, now);
    }
    assert_eq!(a.penalty_until(ip(3)), Some(now + Duration::from_secs(600)));
}

#[test]
fn exempt_networks_are_neither_capped_nor_penalised() {
    let now = Instant::now();
    let config = AdmissionConfig {
        exempt: vec![Network::parse("10.0.0.0/24").unwrap()],
        ..Default::default()
    };
    let mut a = Admission::new(config, [6; 32]);
    for _ in 0..20 {
        let t = accept(&mut a, ip(1), now);
        a.close(t, Outcome::AuthFailed, now);
    }
    let held: Vec<_> = (0..50).map(|_| accept(&mut a, ip(1), now)).collect();
    assert_eq!(
        a.unauthenticated(),
        0,
        "trusted connections leave the startups to others"
    );
    drop(held);
    assert!(a.penalised() == 0);
    let n = Network::parse("2001:db8::/32").unwrap();
    assert!(
        n.contains("2001:db8:1::5".parse().unwrap()) && !n.contains("2001:db9::1".parse().unwrap())
    );
    assert!(
        Network::parse("127.0.0.1")
            .unwrap()
            .contains("::ffff:127.0.0.1".parse().unwrap())
    );
    assert!(Network::parse("10.0.0.0/33").is_err() && Network::parse("x/8").is_err());
}

#[test]
fn the_penalty_table_is_bounded() {
    let now = Instant::now();
    let config = AdmissionConfig {
        max_sources: 16,
        ..Default::default()
    };
    let mut a = Admission::new(config, [4; 32]);
    for n in 0..=255u8 {
        let t = accept(&mut a, ip(n), now);
        a.close(t, Outcome::NoAuth, now);
    }
    assert!(a.penalised() <= 16);
    assert!(a.sources() == 0);
}

proptest! {
    #[test]
    fn counts_always_return_to_zero(events in proptest::collection::vec((0u8..8, 0u8..4, any::<bool>()), 0..300)) {
        let now = Instant::now();
        let mut a = Admission::new(AdmissionConfig::default(), [5; 32]);
        let mut open: Vec<Ticket> = Vec::new();
        for (source, outcome, authenticate) in events {
            if let Verdict::Accept(mut t) = a.connect(ip(source), now) {
                if authenticate {
                    a.authenticated(&mut t);
                }
                open.push(t);
            }
            if (open.len() > 20 || outcome == 0)
                && let Some(t) = open.pop()
            {
                let o = [Outcome::Authenticated, Outcome::AuthFailed, Outcome::NoAuth, Outcome::GraceExceeded];
                a.close(t, o[usize::from(outcome)], now);
            }
            prop_assert!(a.unauthenticated() <= 100);
        }
        for t in open.drain(..) {
            a.close(t, Outcome::Authenticated, now);
        }
        prop_assert_eq!(a.unauthenticated(), 0);
        prop_assert_eq!(a.connections(), 0);
        prop_assert!(a.sources() == 0);
    }
}

#[test]
fn push_locks_hold_one_push_per_repository_and_release_on_drop() {
    use gitmouth_core::server::ago;
    use gitmouth_io::locks::PushLocks;
    use std::sync::Arc;
    let now = Instant::now();
    let locks = Arc::new(PushLocks::default());
    let first = locks.try_acquire("app", now).unwrap();
    assert_eq!(
        locks
            .try_acquire("app", now + Duration::from_secs(3))
            .unwrap_err()
            .since,
        now
    );
    let other = locks.try_acquire("other", now).unwrap();
    drop(first);
    assert!(!locks.is_held("app"));
    assert!(locks.try_acquire("app", now).is_ok());
    drop(other);
    assert_eq!(ago(now, now + Duration::from_secs(12)), "12 seconds ago");
    assert_eq!(ago(now, now + Duration::from_secs(600)), "10 minutes ago");
    assert_eq!(ago(now, now), "just now");
}
