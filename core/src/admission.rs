//! Admission control before any cryptography (SECURITY.md rule 5):
//! OpenSSH's `MaxStartups` (random early drop of unauthenticated
//! connections), a per-source cap on unauthenticated connections, and
//! `PerSourcePenalties` (sources that keep failing are refused for a while).
//!
//! A source is an IPv4 address, or an IPv6 /64 (one machine usually holds a
//! whole /64). The runtime asks [`Admission::connect`] before it reads a
//! byte, and reports the connection's fate; every table here is bounded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Limits and penalties.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Unauthenticated connections above which new ones are dropped at
    /// random (`MaxStartups` start).
    pub start: u32,
    /// Drop probability, in percent, at `start` (`MaxStartups` rate).
    pub rate: u32,
    /// Unauthenticated connections at which every new one is refused.
    pub full: u32,
    /// Unauthenticated connections one source may hold.
    pub per_source: u32,
    /// Connections of any kind at once (authenticated ones hold git
    /// processes and descriptors).
    pub max_connections: u32,
    /// Penalty for a connection that failed authentication.
    pub authfail: Duration,
    /// Penalty for a connection that never tried to authenticate.
    pub noauth: Duration,
    /// Penalty for a connection that ran out its login grace time.
    pub grace_exceeded: Duration,
    /// Longest accumulated penalty.
    pub max_penalty: Duration,
    /// Accumulated penalty from which a source is refused (OpenSSH `min`),
    /// so one mistyped key does not lock anyone out.
    pub min_penalty: Duration,
    /// Whether penalties apply at all.
    pub penalties: bool,
    /// Sources tracked at most (penalties and counts).
    pub max_sources: usize,
    /// Trusted networks that bypass admission control entirely: a health
    /// checker, the operator's own tests.
    pub exempt: Vec<Network>,
}

/// An address block, `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a whole-address block).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("not an address: {text:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix: {text:?}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (
                u128::from(u32::from(a)) << 96,
                u128::from(u32::from(b)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), self.prefix),
            (IpAddr::V4(_), IpAddr::V6(b)) => match b.to_ipv4_mapped() {
                Some(b4) => return self.contains(IpAddr::V4(b4)),
                None => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => return false,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        a & mask == b & mask
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            start: 10,
            rate: 30,
            full: 100,
            per_source: 10,
            max_connections: 1000,
            authfail: Duration::from_secs(5),
            noauth: Duration::from_secs(1),
            grace_exceeded: Duration::from_secs(10),
            max_penalty: Duration::from_secs(600),
            min_penalty: Duration::from_secs(15),
            max_sources: 65_536,
            penalties: true,
            exempt: Vec::new(),
        }
    }
}

/// Where a connection comes from, as far as limits are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source(u128);

impl Source {
    /// The source of an address: IPv4 whole, IPv6 by its /64.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                None => Source((u128::from(v6) >> 64) | (1 << 127)),
            },
        }
    }
}

/// An admitted connection's claim on the limits; hand it back on close.
#[derive(Debug)]
pub struct Ticket {
    source: Source,
    unauthenticated: bool,
    exempt: bool,
}

/// The answer to a new connection.
#[derive(Debug)]
pub enum Verdict {
    /// Serve it.
    Accept(Ticket),
    /// Close it at once; the reason is for the log.
    Refuse(&'static str),
}

/// How an admitted connection ended, for penalties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It authenticated: no penalty.
    Authenticated,
    /// Authentication was tried and failed.
    AuthFailed,
    /// It never tried (scanners, a dropped handshake).
    NoAuth,
    /// It ran out its login grace time.
    GraceExceeded,
}

/// The server-wide admission state.
pub struct Admission {
    config: AdmissionConfig,
    rng: ChaCha8Rng,
    unauthenticated: u32,
    connections: u32,
    per_source: BTreeMap<Source, u32>,
    penalties: BTreeMap<Source, Instant>,
}

impl Admission {
    /// Admission with `config`; `seed` drives the random early drop.
    pub fn new(config: AdmissionConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::from_seed(seed),
            unauthenticated: 0,
            connections: 0,
            per_source: BTreeMap::new(),
            penalties: BTreeMap::new(),
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn connect(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let source = Source::of(ip);
        if self.connections >= self.config.max_connections {
            return Verdict::Refuse("too many connections");
        }
        let exempt = self.config.exempt.iter().any(|n| n.contains(ip));
        if exempt {
            // Trusted: not counted among the startups others compete for.
            self.connections += 1;
            return Verdict::Accept(Ticket {
                source,
                unauthenticated: false,
                exempt,
            });
        }
        if let Some(&until) = self.penalties.get(&source) {
            if until > now + self.config.min_penalty {
                return Verdict::Refuse("source penalised for earlier failures");
            }
            if until <= now {
                self.penalties.remove(&source);
            }
        }
        let c = &self.config;
        if self.unauthenticated >= c.full {
            return Verdict::Refuse("too many unauthenticated connections");
        }
        if self.unauthenticated >= c.start {
            let span = c.full.saturating_sub(c.start).max(1);
            let over = self.unauthenticated - c.start;
            let percent = c.rate + (100 - c.rate.min(100)) * over / span;
            if self.rng.next_u32() % 100 < percent {
                return Verdict::Refuse("random early drop (too many unauthenticated connections)");
            }
        }
        let count = self.per_source.get(&source).copied().unwrap_or(0);
        if count >= c.per_source {
            return Verdict::Refuse("too many unauthenticated connections from this source");
        }
        if count == 0 && self.per_source.len() >= c.max_sources {
            return Verdict::Refuse("too many sources");
        }
        self.per_source.insert(source, count + 1);
        self.unauthenticated += 1;
        self.connections += 1;
        Verdict::Accept(Ticket {
            source,
            unauthenticated: true,
            exempt,
        })
    }

    /// The connection authenticated: it no longer counts as a startup.
    pub fn authenticated(&mut self, ticket: &mut Ticket) {
        if ticket.unauthenticated {
            ticket.unauthenticated = false;
            self.release(ticket);
        }
    }

    /// The connection ended.
    pub fn close(&mut self, mut ticket: Ticket, outcome: Outcome, now: Instant) {
        self.connections = self.connections.saturating_sub(1);
        if ticket.unauthenticated {
            ticket.unauthenticated = false;
            self.release(&ticket);
        }
        if ticket.exempt || !self.config.penalties {
            return;
        }
        let penalty = match outcome {
            Outcome::Authenticated => return,
            Outcome::AuthFailed => self.config.authfail,
            Outcome::NoAuth => self.config.noauth,
            Outcome::GraceExceeded => self.config.grace_exceeded,
        };
        let current = self
            .penalties
            .get(&ticket.source)
            .copied()
            .filter(|&u| u > now)
            .unwrap_or(now);
        let until = (current + penalty).min(now + self.config.max_penalty);
        if !self.penalties.contains_key(&ticket.source)
            && self.penalties.len() >= self.config.max_sources
        {
            // Full: forget what has expired, else the penalty ending soonest.
            self.penalties.retain(|_, u| *u > now);
            if self.penalties.len() >= self.config.max_sources {
                let soonest = self
                    .penalties
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(s, _)| *s);
                if let Some(s) = soonest {
                    self.penalties.remove(&s);
                }
            }
        }
        self.penalties.insert(ticket.source, until);
    }

    /// Unauthenticated connections now.
    pub fn unauthenticated(&self) -> u32 {
        self.unauthenticated
    }

    fn release(&mut self, ticket: &Ticket) {
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        if ticket.exempt {
            return;
        }
        if let Some(n) = self.per_source.get_mut(&ticket.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ticket.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests need some instant to start from; only differences matter.
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;
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
        // Accumulation is capped at ten minutes.
        for _ in 0..500 {
            a.penalties
                .insert(Source::of(ip(3)), now + Duration::from_secs(590));
            let t = Ticket {
                source: Source::of(ip(3)),
                unauthenticated: false,
                exempt: false,
            };
            a.close(t, Outcome::GraceExceeded, now);
        }
        assert!(a.penalties[&Source::of(ip(3))] <= now + Duration::from_secs(600));
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
        assert!(a.penalties.is_empty());
        let n = Network::parse("2001:db8::/32").unwrap();
        assert!(
            n.contains("2001:db8:1::5".parse().unwrap())
                && !n.contains("2001:db9::1".parse().unwrap())
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
        assert!(a.penalties.len() <= 16);
        assert!(a.per_source.is_empty());
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
            prop_assert_eq!(a.connections, 0);
            prop_assert!(a.per_source.is_empty());
        }
    }
}
