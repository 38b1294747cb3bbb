//! Admission control before any cryptography:
//! OpenSSH's `MaxStartups` (random early drop of unauthenticated
//! connections), a per-source cap on unauthenticated connections, and
//! `PerSourcePenalties` (sources that keep failing are refused for a while).
//!
//! A source is an IPv4 address, or an IPv6 /64 (one machine usually holds a
//! whole /64). The runtime asks [`Admission::connect`] before it reads a
//! byte, and reports the connection's fate; every table here is bounded.

use core::net::IpAddr;
use std::collections::BTreeMap;
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

    /// Connections of any kind now.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// Sources with unauthenticated connections now.
    pub fn sources(&self) -> usize {
        self.per_source.len()
    }

    /// Sources under a penalty (expired ones may linger until replaced).
    pub fn penalised(&self) -> usize {
        self.penalties.len()
    }

    /// Until when `ip`'s source is penalised, if it is.
    pub fn penalty_until(&self, ip: IpAddr) -> Option<Instant> {
        self.penalties.get(&Source::of(ip)).copied()
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
