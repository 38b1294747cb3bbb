//! Admission control (the core's `admission` module), unit by unit: the
//! caps, the queues that replace refusals, eviction at `full`, penalties
//! and the per-user counts.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use gitmouth_core::admission::{
    Admission, AdmissionConfig, ConnId, Event, Network, Outcome, Source, Ticket, Verdict,
};
use proptest::prelude::*;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

/// Admission with the runtime's part: names for connections, and the
/// events collected.
struct Gate {
    a: Admission,
    next: u64,
}

impl Gate {
    fn new(config: AdmissionConfig, seed: u8) -> Self {
        Self {
            a: Admission::new(config, [seed; 32]),
            next: 0,
        }
    }

    fn connect(&mut self, from: IpAddr, now: Instant) -> (ConnId, Verdict) {
        self.next += 1;
        let id = ConnId(self.next);
        (id, self.a.connect(id, from, now))
    }

    fn accept(&mut self, from: IpAddr, now: Instant) -> Ticket {
        match self.connect(from, now).1 {
            Verdict::Accept(t) => t,
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn wait(&mut self, from: IpAddr, now: Instant) -> ConnId {
        match self.connect(from, now) {
            (id, Verdict::Wait) => id,
            (_, other) => panic!("not waiting: {other:?}"),
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.a.poll_event()).collect()
    }

    fn admitted(&mut self) -> Vec<Ticket> {
        self.events()
            .into_iter()
            .map(|e| match e {
                Event::Admit(t) => t,
                Event::Evict(id) => panic!("unexpected eviction of {id:?}"),
            })
            .collect()
    }
}

fn wide() -> AdmissionConfig {
    AdmissionConfig {
        start: 1000,
        full: 1000,
        ..Default::default()
    }
}

#[test]
fn over_its_cap_a_source_waits_in_its_queue_then_starts_in_turn() {
    let now = Instant::now();
    let mut g = Gate::new(wide(), 1);
    let mut tickets: Vec<_> = (0..10).map(|_| g.accept(ip(1), now)).collect();
    // Past the cap of 10 in progress, 100 wait; past those, refused.
    let waiting: Vec<ConnId> = (0..100).map(|_| g.wait(ip(1), now)).collect();
    assert!(matches!(g.connect(ip(1), now).1, Verdict::Refuse(_)));
    assert_eq!(g.a.waiting(), 100);
    // Another source is not held up.
    let _other = g.accept(ip(2), now);
    // A startup that authenticates makes room: the oldest waiting starts.
    assert_eq!(g.a.authenticated(&mut tickets[0], "alice"), 1);
    let admitted = g.admitted();
    assert_eq!(admitted.len(), 1);
    assert_eq!(admitted[0].id(), waiting[0]);
    tickets.extend(admitted);
    // So does one that ends.
    let t = tickets.pop().unwrap();
    g.a.close(t, Outcome::NoAuth, now);
    assert_eq!(g.admitted()[0].id(), waiting[1]);
    assert_eq!(g.a.unauthenticated(), 11);
    // IPv6 addresses of one /64 are one source.
    let six = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
    for i in 0..10 {
        g.accept(six(i), now);
    }
    g.wait(six(99), now);
}

#[test]
fn a_connection_behind_waiting_ones_of_its_source_waits_too() {
    // First come, first served within a source: a newcomer does not pass
    // its source's queue.
    let now = Instant::now();
    let mut g = Gate::new(wide(), 2);
    let mut held: Vec<_> = (0..10).map(|_| g.accept(ip(1), now)).collect();
    let first = g.wait(ip(1), now);
    let second = g.wait(ip(1), now);
    g.a.close(held.pop().unwrap(), Outcome::Authenticated, now);
    assert_eq!(g.admitted()[0].id(), first);
    g.a.close(held.pop().unwrap(), Outcome::Authenticated, now);
    assert_eq!(g.admitted()[0].id(), second);
}

#[test]
fn random_early_drop_waits_instead_and_lets_in_round_robin_below_start() {
    let now = Instant::now();
    let mut g = Gate::new(
        AdmissionConfig {
            per_source: 1000,
            ..Default::default()
        },
        3,
    );
    let mut kept = Vec::new();
    let mut waited: BTreeMap<u64, IpAddr> = BTreeMap::new();
    // Four sources, in turn: between start (10) and full (100) some are
    // let in and some wait; none is refused. (Stopped short of full,
    // where eviction would come in.)
    for i in 0..400u32 {
        if g.a.unauthenticated() >= 60 {
            break;
        }
        let from = ip(1 + (i % 4) as u8);
        match g.connect(from, now) {
            (_, Verdict::Accept(t)) => kept.push(t),
            (id, Verdict::Wait) => {
                waited.insert(id.0, from);
            }
            (_, Verdict::Refuse(why)) => panic!("refused: {why}"),
        }
    }
    assert!(g.a.unauthenticated() > 10 && g.a.unauthenticated() <= 100);
    assert!(!waited.is_empty());
    assert_eq!(g.a.waiting() as usize, waited.len());
    // As startups end, every waiting one is let in.
    let mut order = Vec::new();
    while let Some(mut t) = kept.pop() {
        g.a.authenticated(&mut t, "u");
        for t in g.admitted() {
            order.push(waited[&t.id().0]);
            kept.insert(0, t);
        }
    }
    assert_eq!(order.len(), waited.len(), "every waiting one got in");
    assert_eq!(g.a.waiting(), 0);
    // Every source that waited was served, the first of them in turn.
    let sources: BTreeSet<IpAddr> = waited.values().copied().collect();
    assert!(sources.len() >= 2, "{waited:?}");
    assert_ne!(order[0], order[1], "round robin: {order:?}");
    assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), sources);
}

#[test]
fn random_early_drop_spares_a_source_holding_fewer() {
    // One address holds START idle startups: another is let in at once.
    let now = Instant::now();
    let mut g = Gate::new(
        AdmissionConfig {
            rate: 100,
            per_source: 10,
            ..Default::default()
        },
        10,
    );
    for _ in 0..10 {
        g.accept(ip(1), now);
    }
    for n in 2..12 {
        g.accept(ip(n), now);
    }
    // Every source holds one or more; the holders of the most are the
    // ones random early drop (here certain) falls on.
    g.wait(ip(1), now);
}

#[test]
fn the_queues_are_bounded() {
    let now = Instant::now();
    let mut g = Gate::new(
        AdmissionConfig {
            start: 1,
            rate: 100,
            full: 2,
            queue: 3,
            ..Default::default()
        },
        4,
    );
    g.accept(ip(1), now);
    for _ in 0..3 {
        g.wait(ip(1), now);
    }
    assert!(matches!(g.connect(ip(1), now).1, Verdict::Refuse(_)));
}

#[test]
fn at_full_a_newcomer_ends_the_oldest_startup_of_the_source_holding_most() {
    let now = Instant::now();
    let mut g = Gate::new(
        AdmissionConfig {
            start: 20,
            full: 20,
            ..Default::default()
        },
        5,
    );
    let a: Vec<_> = (0..10).map(|_| g.accept(ip(1), now)).collect();
    let b: Vec<_> = (0..10).map(|_| g.accept(ip(2), now)).collect();
    assert_eq!(g.a.unauthenticated(), 20);
    // A newcomer takes the place of a holder's oldest startup.
    let c1 = g.accept(ip(3), now);
    let evicted: Vec<_> = g.events();
    assert!(matches!(evicted[..], [Event::Evict(id)] if id == a[0].id()));
    assert_eq!(g.a.unauthenticated(), 20);
    // Again: now the other holder holds the most.
    let _c2 = g.accept(ip(3), now);
    assert!(matches!(g.events()[..], [Event::Evict(id)] if id == b[0].id()));
    // The evicted ones closing frees nothing twice.
    let mut a = a.into_iter();
    g.a.close(a.next().unwrap(), Outcome::NoAuth, now);
    assert_eq!(g.a.unauthenticated(), 20);
    assert!(g.events().is_empty());
    // A source holding as many as the most waits.
    let mut g2 = Gate::new(
        AdmissionConfig {
            start: 2,
            full: 2,
            ..Default::default()
        },
        6,
    );
    let _x = g2.accept(ip(1), now);
    let _y = g2.accept(ip(2), now);
    // Each holds one: a newcomer (none) still takes a place...
    let _z = g2.accept(ip(3), now);
    assert_eq!(g2.events().len(), 1);
    // ...but one holding one already waits: no source takes places from
    // another in turn.
    g2.wait(ip(3), now);
    g2.wait(ip(2), now);
    assert!(g2.events().is_empty());
    drop(c1);
}

#[test]
fn an_abandoned_wait_is_forgotten() {
    let now = Instant::now();
    let mut g = Gate::new(wide(), 7);
    let mut held: Vec<_> = (0..10).map(|_| g.accept(ip(1), now)).collect();
    let gone = g.wait(ip(1), now);
    let next = g.wait(ip(1), now);
    assert!(g.a.abandon(gone));
    assert!(!g.a.abandon(gone));
    g.a.close(held.pop().unwrap(), Outcome::Authenticated, now);
    assert_eq!(g.admitted()[0].id(), next);
    assert_eq!(g.a.waiting(), 0);
}

#[test]
fn users_are_counted_while_connected() {
    let now = Instant::now();
    let mut g = Gate::new(AdmissionConfig::default(), 8);
    let mut t1 = g.accept(ip(1), now);
    let mut t2 = g.accept(ip(2), now);
    assert_eq!(g.a.authenticated(&mut t1, "alice"), 1);
    assert_eq!(g.a.authenticated(&mut t2, "alice"), 2);
    assert_eq!(g.a.authenticated(&mut t2, "alice"), 2, "counted once");
    g.a.close(t1, Outcome::Authenticated, now);
    assert_eq!(g.a.user_connections("alice"), 1);
    g.a.close(t2, Outcome::Authenticated, now);
    assert_eq!(g.a.user_connections("alice"), 0);
}

#[test]
fn penalties_accumulate_up_to_the_maximum_and_expire() {
    let now = Instant::now();
    let mut g = Gate::new(AdmissionConfig::default(), 3);
    // Two failures (10 s) stay under the 15 s threshold.
    for _ in 0..2 {
        let t = g.accept(ip(1), now);
        g.a.close(t, Outcome::AuthFailed, now);
    }
    let t = g.accept(ip(1), now);
    g.a.close(t, Outcome::GraceExceeded, now);
    // 20 s accumulated: refused now, fine after it runs out.
    assert!(matches!(g.connect(ip(1), now).1, Verdict::Refuse(_)));
    assert!(matches!(g.connect(ip(2), now).1, Verdict::Accept(_)));
    let later = now + Duration::from_secs(6);
    let t = g.accept(ip(1), later);
    g.a.close(t, Outcome::Authenticated, later);
    // Accumulation is capped at ten minutes (a threshold out of reach
    // keeps the source admitted meanwhile).
    let config = AdmissionConfig {
        min_penalty: Duration::from_secs(100_000),
        ..Default::default()
    };
    let mut g = Gate::new(config, 3);
    for _ in 0..500 {
        let t = g.accept(ip(3), now);
        g.a.close(t, Outcome::GraceExceeded, now);
    }
    assert_eq!(
        g.a.penalty_until(ip(3)),
        Some(now + Duration::from_secs(600))
    );
}

#[test]
fn penalties_set_here_are_taken_once_for_other_instances_and_theirs_imposed() {
    let now = Instant::now();
    let mut g = Gate::new(AdmissionConfig::default(), 4);
    // Not shared: nothing is kept for others.
    let t = g.accept(ip(1), now);
    g.a.close(t, Outcome::AuthFailed, now);
    assert!(g.a.take_new_penalties().is_empty());
    g.a.share_penalties();
    // Two failures (under the threshold: the source is still admitted).
    for _ in 0..2 {
        let t = g.accept(ip(2), now);
        g.a.close(t, Outcome::AuthFailed, now);
    }
    let news = g.a.take_new_penalties();
    assert_eq!(news.len(), 1, "one entry per source: {news:?}");
    assert_eq!(news[0].0, Source::of(ip(2)));
    assert_eq!(Some(news[0].1), g.a.penalty_until(ip(2)));
    assert!(g.a.take_new_penalties().is_empty(), "taken once");
    // Another instance's penalty refuses here, is not sent back, never
    // shortens a longer one, and is capped at the maximum.
    let mut other = Gate::new(AdmissionConfig::default(), 5);
    other.a.share_penalties();
    let until = now + Duration::from_secs(60);
    other.a.impose(Source::of(ip(2)), until, now);
    assert!(matches!(other.connect(ip(2), now).1, Verdict::Refuse(_)));
    assert!(other.a.take_new_penalties().is_empty());
    other
        .a
        .impose(Source::of(ip(2)), now + Duration::from_secs(1), now);
    assert_eq!(other.a.penalty_until(ip(2)), Some(until));
    other
        .a
        .impose(Source::of(ip(3)), now + Duration::from_secs(100_000), now);
    assert_eq!(
        other.a.penalty_until(ip(3)),
        Some(now + Duration::from_secs(600))
    );
    // One that has run out, or with penalties off, does nothing.
    other.a.impose(Source::of(ip(4)), now, now);
    assert_eq!(other.a.penalty_until(ip(4)), None);
    let mut off = Gate::new(
        AdmissionConfig {
            penalties: false,
            ..Default::default()
        },
        6,
    );
    off.a.impose(Source::of(ip(5)), until, now);
    assert!(matches!(off.connect(ip(5), now).1, Verdict::Accept(_)));
}

proptest! {
    /// A source written for the database reads back as itself: IPv4 whole,
    /// IPv6 by its /64 (an IPv4-mapped IPv6 address is its IPv4 source).
    #[test]
    fn a_source_reads_back_as_written(v4 in any::<u32>(), v6 in any::<u128>()) {
        for addr in [IpAddr::from(v4.to_be_bytes()), IpAddr::from(v6.to_be_bytes())] {
            let source = Source::of(addr);
            let text = source.to_string();
            prop_assert_eq!(text.parse::<Source>(), Ok(source), "{}", text);
        }
    }
}

#[test]
fn a_source_is_written_plainly_and_bad_text_is_refused() {
    assert_eq!(Source::of(ip(7)).to_string(), "10.0.0.7");
    let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    assert_eq!(Source::of(v6).to_string(), "2001:db8:1:2::/64");
    let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
    assert_eq!(Source::of(mapped).to_string(), "10.0.0.7");
    for bad in [
        "",
        "10.0.0",
        "2001:db8::1/64",
        "::ffff:10.0.0.7/64",
        "x/64",
        "10.0.0.1/64",
    ] {
        assert!(bad.parse::<Source>().is_err(), "{bad}");
    }
}

#[test]
fn exempt_networks_are_neither_capped_nor_penalised() {
    let now = Instant::now();
    let config = AdmissionConfig {
        exempt: vec![Network::parse("10.0.0.0/24").unwrap()],
        ..Default::default()
    };
    let mut g = Gate::new(config, 6);
    for _ in 0..20 {
        let t = g.accept(ip(1), now);
        g.a.close(t, Outcome::AuthFailed, now);
    }
    let held: Vec<_> = (0..50).map(|_| g.accept(ip(1), now)).collect();
    assert_eq!(
        g.a.unauthenticated(),
        0,
        "trusted connections leave the startups to others"
    );
    drop(held);
    assert!(g.a.penalised() == 0);
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
    let mut g = Gate::new(config, 4);
    for n in 0..=255u8 {
        let t = g.accept(ip(n), now);
        g.a.close(t, Outcome::NoAuth, now);
    }
    assert!(g.a.penalised() <= 16);
    assert!(g.a.sources() == 0);
}

/// One step of the property below.
#[derive(Debug, Clone)]
enum Step {
    Connect(u8),
    Authenticate(usize),
    Close(usize, u8),
    Abandon(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6).prop_map(Step::Connect),
        2 => any::<usize>().prop_map(Step::Authenticate),
        2 => (any::<usize>(), 0u8..4).prop_map(|(i, o)| Step::Close(i, o)),
        1 => any::<usize>().prop_map(Step::Abandon),
    ]
}

proptest! {
    /// Whatever happens, in any order: the startups never exceed `full`
    /// nor a source its cap, the queues their bounds; every connection let
    /// in was waiting (once), every one ended was in progress; and once
    /// everything is closed or abandoned, every count is back to zero.
    #[test]
    fn the_lifecycle_keeps_every_bound(steps in proptest::collection::vec(step(), 0..400)) {
        let now = Instant::now();
        let config = AdmissionConfig {
            start: 4,
            rate: 50,
            full: 8,
            per_source: 3,
            per_source_queue: 4,
            queue: 6,
            penalties: false,
            ..Default::default()
        };
        let mut g = Gate::new(config, 9);
        let mut open: Vec<Ticket> = Vec::new();
        let mut waiting: BTreeSet<u64> = BTreeSet::new();
        let mut startups: BTreeSet<u64> = BTreeSet::new();
        for s in steps {
            match s {
                Step::Connect(n) => match g.connect(ip(n), now) {
                    (_, Verdict::Accept(t)) => {
                        startups.insert(t.id().0);
                        open.push(t);
                    }
                    (id, Verdict::Wait) => {
                        waiting.insert(id.0);
                    }
                    (_, Verdict::Refuse(_)) => {}
                },
                Step::Authenticate(i) if !open.is_empty() => {
                    let i = i % open.len();
                    startups.remove(&open[i].id().0);
                    g.a.authenticated(&mut open[i], "u");
                }
                Step::Close(i, o_i) if !open.is_empty() => {
                    let t = open.swap_remove(i % open.len());
                    startups.remove(&t.id().0);
                    let o = [Outcome::Authenticated, Outcome::AuthFailed, Outcome::NoAuth, Outcome::GraceExceeded];
                    g.a.close(t, o[usize::from(o_i)], now);
                }
                Step::Abandon(i) if !waiting.is_empty() => {
                    let id = *waiting.iter().nth(i % waiting.len()).unwrap();
                    prop_assert!(g.a.abandon(ConnId(id)));
                    waiting.remove(&id);
                }
                _ => {}
            }
            for e in g.events() {
                match e {
                    Event::Admit(t) => {
                        prop_assert!(waiting.remove(&t.id().0), "let in without waiting");
                        startups.insert(t.id().0);
                        open.push(t);
                    }
                    Event::Evict(id) => {
                        prop_assert!(startups.remove(&id.0), "evicted but not in progress");
                    }
                }
            }
            prop_assert!(g.a.unauthenticated() <= 8);
            prop_assert_eq!(g.a.unauthenticated() as usize, startups.len());
            prop_assert_eq!(g.a.waiting() as usize, waiting.len());
            prop_assert!(waiting.len() <= 6 + 6);
            prop_assert_eq!(g.a.connections() as usize, open.len());
        }
        // Abandoning one may let the next in: what is let in is closed.
        while let Some(&id) = waiting.iter().next() {
            prop_assert!(g.a.abandon(ConnId(id)));
            waiting.remove(&id);
            for e in g.events() {
                if let Event::Admit(t) = e {
                    prop_assert!(waiting.remove(&t.id().0));
                    open.push(t);
                }
            }
        }
        while let Some(t) = open.pop() {
            g.a.close(t, Outcome::Authenticated, now);
            // Nothing waits any more: nothing is let in.
            prop_assert!(g.events().is_empty());
        }
        prop_assert_eq!(g.a.unauthenticated(), 0);
        prop_assert_eq!(g.a.connections(), 0);
        prop_assert_eq!(g.a.waiting(), 0);
        prop_assert!(g.a.sources() == 0);
        prop_assert_eq!(g.a.user_connections("u"), 0);
    }
}

#[test]
fn push_locks_hold_one_push_per_repository_and_release_on_drop() {
    use gitmouth_core::server::ago;
    use gitmouth_io::locks::PushLocks;
    use std::sync::Arc;
    let now = Instant::now();
    let locks = Arc::new(PushLocks::default());
    let first = locks.try_acquire("app", "alice", now).unwrap();
    let held = locks
        .try_acquire("app", "bob", now + Duration::from_secs(3))
        .unwrap_err();
    assert_eq!((held.since, held.user.as_str()), (now, "alice"));
    let other = locks.try_acquire("other", "bob", now).unwrap();
    drop(first);
    assert!(!locks.is_held("app"));
    assert!(locks.try_acquire("app", "bob", now).is_ok());
    drop(other);
    assert_eq!(ago(now, now + Duration::from_secs(12)), "12 seconds ago");
    assert_eq!(ago(now, now + Duration::from_secs(600)), "10 minutes ago");
    assert_eq!(ago(now, now), "just now");
}
