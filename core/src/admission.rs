//! Admission control before any cryptography:
//! OpenSSH's `MaxStartups` (random early drop of unauthenticated
//! connections), a per-source cap on unauthenticated connections, and
//! `PerSourcePenalties` (sources that keep failing are refused for a while).
//!
//! A source is an IPv4 address, or an IPv6 /64 (one machine usually holds a
//! whole /64). The runtime asks [`Admission::connect`] before it reads a
//! byte, and reports the connection's fate; every table here is bounded.
//!
//! Fair admission: a real user is never turned away for a crowd's sake.
//! A *startup* is a connection that has not authenticated yet.
//!
//! - Over its source's cap, a connection waits, unread (no cryptography is
//!   spent on it), in its source's queue (`per_source_queue`), and starts
//!   when one of its source's startups ends.
//! - Where random early drop would refuse it, it waits in the global queue
//!   (`queue`), let in round robin by source whenever fewer than `start`
//!   startups are in progress. Random early drop falls only on the sources
//!   holding the most startups: below `full`, one holding fewer is let in
//!   (so one address holding its cap of idle startups costs another
//!   address nothing).
//! - At `full`, a connection from a source holding fewer startups than the
//!   source holding the most ends that source's oldest startup
//!   ([`Event::Evict`]) and takes its place: one source, or a crowd of idle
//!   ones, never starves a newcomer.
//!
//! Only past a full queue is a connection refused. The runtime bounds the
//! wait by the login grace time (from accept) and hands back what gave up
//! ([`Admission::abandon`]); what this module lets in later, or ends, it
//! says as [`Event`]s ([`Admission::poll_event`]).

use core::net::IpAddr;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
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
    /// Connections one source may have waiting for a place under its cap
    /// (`--per-source-startup-queue`).
    pub per_source_queue: u32,
    /// Connections that may wait for a place among the startups where
    /// random early drop would refuse them (`--startup-queue`).
    pub queue: u32,
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
    /// Sources tracked at most (penalties, and sources with startups in
    /// progress).
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

impl core::fmt::Display for Network {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            start: 10,
            rate: 30,
            full: 100,
            per_source: 10,
            per_source_queue: 100,
            queue: 1000,
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

/// How a source is written where instances share penalties: an IPv4
/// address, or an IPv6 /64 prefix (`2001:db8:1:2::/64`).
impl core::fmt::Display for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 >> 127 == 1 {
            let prefix = (self.0 & !(1 << 127)) << 64;
            write!(f, "{}/64", core::net::Ipv6Addr::from(prefix))
        } else {
            // Only the low 32 bits are ever set for IPv4.
            let v4 = u32::try_from(self.0).unwrap_or(u32::MAX);
            write!(f, "{}", core::net::Ipv4Addr::from(v4))
        }
    }
}

impl core::str::FromStr for Source {
    type Err = String;

    /// Reads what [`Source`]'s `Display` writes.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("not a source (an IPv4 address or an IPv6 /64): {text:?}");
        match text.strip_suffix("/64") {
            Some(v6) => {
                let v6: core::net::Ipv6Addr = v6.parse().map_err(|_| bad())?;
                if u128::from(v6) << 64 != 0 || v6.to_ipv4_mapped().is_some() {
                    return Err(bad());
                }
                Ok(Source::of(IpAddr::V6(v6)))
            }
            None => {
                let v4: core::net::Ipv4Addr = text.parse().map_err(|_| bad())?;
                Ok(Source::of(IpAddr::V4(v4)))
            }
        }
    }
}

/// A connection's name in admission, chosen by the runtime (unique among
/// the connections it has open or waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// An admitted connection's claim on the limits; hand it back on close.
#[derive(Debug)]
pub struct Ticket {
    id: ConnId,
    source: Source,
    unauthenticated: bool,
    exempt: bool,
    /// Who authenticated, once someone has (counted per user).
    user: Option<String>,
}

impl Ticket {
    /// The connection's name.
    pub fn id(&self) -> ConnId {
        self.id
    }
}

/// The answer to a new connection.
#[derive(Debug)]
pub enum Verdict {
    /// Serve it.
    Accept(Ticket),
    /// Keep it unread: it is let in later ([`Event::Admit`]) or, if the
    /// runtime's wait for it runs out first, handed back
    /// ([`Admission::abandon`]).
    Wait,
    /// Close it at once; the reason is for the log.
    Refuse(&'static str),
}

/// What admission decided about connections other than the one at hand.
#[derive(Debug)]
pub enum Event {
    /// A waiting connection is let in: serve it with this ticket.
    Admit(Ticket),
    /// This startup makes way for a newcomer from a source holding fewer:
    /// end it with "too many connections". Its place is already given
    /// away; its ticket is still handed back on close.
    Evict(ConnId),
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

/// Which limit a waiting connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// Its source's cap: it may start as soon as its source has room.
    Source,
    /// The global rule: it starts when fewer than `start` are in progress
    /// (or by eviction at `full`).
    Global,
}

#[derive(Debug)]
struct Waiter {
    id: ConnId,
    queue: Queue,
}

/// The server-wide admission state.
pub struct Admission {
    config: AdmissionConfig,
    rng: ChaCha8Rng,
    unauthenticated: u32,
    connections: u32,
    /// Each source's startups in progress, oldest first.
    startups: BTreeMap<Source, VecDeque<ConnId>>,
    /// Each source's waiting connections, oldest first.
    waiting: BTreeMap<Source, VecDeque<Waiter>>,
    /// Waiting connections in the global queue, and in the per-source
    /// queues (all sources together).
    global_waiting: u32,
    source_waiting: BTreeMap<Source, u32>,
    /// The source last let in from the queues (round robin).
    last_served: Option<Source>,
    penalties: BTreeMap<Source, Instant>,
    /// Penalties set here since [`Admission::take_new_penalties`] last
    /// took them, when they are shared with other instances (bounded like
    /// `penalties`).
    new_penalties: Option<BTreeMap<Source, Instant>>,
    /// Authenticated connections per user.
    users: BTreeMap<String, u32>,
    events: VecDeque<Event>,
}

impl Admission {
    /// Admission with `config`; `seed` drives the random early drop.
    pub fn new(config: AdmissionConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::from_seed(seed),
            unauthenticated: 0,
            connections: 0,
            startups: BTreeMap::new(),
            waiting: BTreeMap::new(),
            global_waiting: 0,
            source_waiting: BTreeMap::new(),
            last_served: None,
            penalties: BTreeMap::new(),
            new_penalties: None,
            users: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Keeps the penalties set from now on for
    /// [`Admission::take_new_penalties`] (several instances share them).
    pub fn share_penalties(&mut self) {
        self.new_penalties.get_or_insert_with(BTreeMap::new);
    }

    /// The penalties set here since the last call (each source once, with
    /// its latest end), for the other instances.
    pub fn take_new_penalties(&mut self) -> Vec<(Source, Instant)> {
        self.new_penalties
            .as_mut()
            .map(|news| std::mem::take(news).into_iter().collect())
            .unwrap_or_default()
    }

    /// Puts back a penalty taken by [`Admission::take_new_penalties`]
    /// that could not be shared, for the next time.
    pub fn reshare(&mut self, source: Source, until: Instant) {
        let max = self.config.max_sources;
        if let Some(news) = self.new_penalties.as_mut() {
            let until = news.get(&source).copied().unwrap_or(until).max(until);
            Self::set_bounded(news, max, source, until, until);
        }
    }

    /// Every user with authenticated connections now, and how many.
    pub fn users(&self) -> Vec<(String, u32)> {
        self.users.iter().map(|(u, n)| (u.clone(), *n)).collect()
    }

    /// A penalty another instance set: `source` is refused until `until`
    /// (or longer, if it already is here), within the longest penalty.
    /// Not taken again by [`Admission::take_new_penalties`].
    pub fn impose(&mut self, source: Source, until: Instant, now: Instant) {
        if !self.config.penalties || until <= now {
            return;
        }
        let current = self.penalties.get(&source).copied().unwrap_or(now);
        let until = until.max(current).min(now + self.config.max_penalty);
        Self::set_bounded(
            &mut self.penalties,
            self.config.max_sources,
            source,
            until,
            now,
        );
    }

    /// Sets `source`'s penalty in `map`, which holds at most `max`
    /// sources: when full, what has expired is forgotten first, else the
    /// penalty that ends soonest.
    fn set_bounded(
        map: &mut BTreeMap<Source, Instant>,
        max: usize,
        source: Source,
        until: Instant,
        now: Instant,
    ) {
        if !map.contains_key(&source) && map.len() >= max {
            map.retain(|_, u| *u > now);
            if map.len() >= max {
                let soonest = map.iter().min_by_key(|(_, u)| **u).map(|(s, _)| *s);
                if let Some(s) = soonest {
                    map.remove(&s);
                }
            }
        }
        map.insert(source, until);
    }

    /// Replaces the limits (a configuration reloaded on SIGHUP). Counts,
    /// queues and penalties stay; a limit lowered below what is in use now
    /// only refuses or queues newcomers until use falls under it, and one
    /// raised lets waiting connections in at once.
    pub fn set_config(&mut self, config: AdmissionConfig) {
        self.config = config;
        self.fill();
    }

    /// Decides on a new connection `id` from `ip`.
    pub fn connect(&mut self, id: ConnId, ip: IpAddr, now: Instant) -> Verdict {
        let source = Source::of(ip);
        if self.connections >= self.config.max_connections {
            return Verdict::Refuse("too many connections");
        }
        let exempt = self.config.exempt.iter().any(|n| n.contains(ip));
        if exempt {
            // Trusted: not counted among the startups others compete for.
            self.connections += 1;
            return Verdict::Accept(Ticket {
                id,
                source,
                unauthenticated: false,
                exempt,
                user: None,
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
        let count = self.in_progress(source);
        if count >= c.per_source {
            return self.wait(source, id, Queue::Source);
        }
        if self.waiting.contains_key(&source) {
            // Its source's earlier connections wait: it waits behind them.
            return self.wait(source, id, Queue::Global);
        }
        if count == 0 && self.startups.len() >= c.max_sources {
            return Verdict::Refuse("too many sources");
        }
        if self.unauthenticated >= c.full {
            if !self.evict_for(source) {
                return self.wait(source, id, Queue::Global);
            }
        } else if self.unauthenticated >= c.start && count >= self.most() {
            // Random early drop falls on the sources holding the most: one
            // holding fewer is let in while there is room below full.
            let span = c.full.saturating_sub(c.start).max(1);
            let over = self.unauthenticated - c.start;
            let percent = c.rate + (100 - c.rate.min(100)) * over / span;
            if self.rng.next_u32() % 100 < percent {
                return self.wait(source, id, Queue::Global);
            }
        }
        Verdict::Accept(self.start(source, id))
    }

    /// The runtime stopped waiting for `id` (its login grace time ran out
    /// in a queue): it is forgotten. False if it was not waiting (it was
    /// let in meanwhile: its ticket is in an [`Event::Admit`]).
    pub fn abandon(&mut self, id: ConnId) -> bool {
        let found = self.waiting.iter_mut().find_map(|(source, queue)| {
            let at = queue.iter().position(|w| w.id == id)?;
            Some((*source, queue.remove(at)?))
        });
        let Some((source, waiter)) = found else {
            return false;
        };
        self.forget_waiter(source, waiter.queue);
        // Another waiter behind it may now be at its queue's front.
        self.fill();
        true
    }

    /// The connection authenticated as `user`: it no longer counts as a
    /// startup, and counts as one of `user`'s. Returns how many
    /// authenticated connections `user` now has, this one included (the
    /// session applies the per-user cap).
    pub fn authenticated(&mut self, ticket: &mut Ticket, user: &str) -> u32 {
        if ticket.unauthenticated {
            ticket.unauthenticated = false;
            self.release(ticket);
        }
        if ticket.user.is_some() {
            return self.users.get(user).copied().unwrap_or(0);
        }
        ticket.user = Some(user.to_owned());
        let n = self.users.entry(user.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    /// The connection ended.
    pub fn close(&mut self, mut ticket: Ticket, outcome: Outcome, now: Instant) {
        self.connections = self.connections.saturating_sub(1);
        if ticket.unauthenticated {
            ticket.unauthenticated = false;
            self.release(&ticket);
        }
        if let Some(user) = ticket.user.take()
            && let Some(n) = self.users.get_mut(&user)
        {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&user);
            }
        }
        // A place may have freed (its own, or one under max_connections).
        self.fill();
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
        let max = self.config.max_sources;
        Self::set_bounded(&mut self.penalties, max, ticket.source, until, now);
        if let Some(news) = self.new_penalties.as_mut() {
            Self::set_bounded(news, max, ticket.source, until, now);
        }
    }

    /// What admission decided about other connections since last asked:
    /// waiting ones let in, startups to end.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Unauthenticated connections now.
    pub fn unauthenticated(&self) -> u32 {
        self.unauthenticated
    }

    /// Connections of any kind now (waiting ones not included).
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// Connections waiting for a place now.
    pub fn waiting(&self) -> u32 {
        self.global_waiting + self.source_waiting.values().sum::<u32>()
    }

    /// Sources with unauthenticated connections now.
    pub fn sources(&self) -> usize {
        self.startups.len()
    }

    /// Sources under a penalty (expired ones may linger until replaced).
    pub fn penalised(&self) -> usize {
        self.penalties.len()
    }

    /// Sources whose penalty has not run out at `now`.
    pub fn penalised_at(&self, now: Instant) -> usize {
        self.penalties
            .values()
            .filter(|until| **until > now)
            .count()
    }

    /// Until when `ip`'s source is penalised, if it is.
    pub fn penalty_until(&self, ip: IpAddr) -> Option<Instant> {
        self.penalties.get(&Source::of(ip)).copied()
    }

    /// Authenticated connections of `user` now.
    pub fn user_connections(&self, user: &str) -> u32 {
        self.users.get(user).copied().unwrap_or(0)
    }

    fn in_progress(&self, source: Source) -> u32 {
        self.startups
            .get(&source)
            .map_or(0, |s| u32::try_from(s.len()).unwrap_or(u32::MAX))
    }

    /// Counts a startup from `source`.
    fn start(&mut self, source: Source, id: ConnId) -> Ticket {
        self.startups.entry(source).or_default().push_back(id);
        self.unauthenticated += 1;
        self.connections += 1;
        Ticket {
            id,
            source,
            unauthenticated: true,
            exempt: false,
            user: None,
        }
    }

    /// Puts `id` in `queue`, or refuses it past the queue's bound.
    fn wait(&mut self, source: Source, id: ConnId, queue: Queue) -> Verdict {
        match queue {
            Queue::Source => {
                let n = self.source_waiting.get(&source).copied().unwrap_or(0);
                // Each source's queue is bounded, and so are they all
                // together (by the global queue's bound): what waits holds
                // a descriptor.
                let all: u32 = self.source_waiting.values().sum();
                if n >= self.config.per_source_queue || all >= self.config.queue {
                    return Verdict::Refuse(
                        "too many unauthenticated connections from this source",
                    );
                }
                self.source_waiting.insert(source, n + 1);
            }
            Queue::Global => {
                if self.global_waiting >= self.config.queue {
                    return Verdict::Refuse("too many unauthenticated connections");
                }
                self.global_waiting += 1;
            }
        }
        self.waiting
            .entry(source)
            .or_default()
            .push_back(Waiter { id, queue });
        Verdict::Wait
    }

    fn forget_waiter(&mut self, source: Source, queue: Queue) {
        if self.waiting.get(&source).is_some_and(VecDeque::is_empty) {
            self.waiting.remove(&source);
        }
        match queue {
            Queue::Global => self.global_waiting = self.global_waiting.saturating_sub(1),
            Queue::Source => {
                if let Some(n) = self.source_waiting.get_mut(&source) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.source_waiting.remove(&source);
                    }
                }
            }
        }
    }

    /// At `full`: if `source` holds fewer startups than the source holding
    /// the most, that source's oldest startup is ended and its place given
    /// to `source`'s connection. True if a place was made.
    fn evict_for(&mut self, source: Source) -> bool {
        let mine = self.in_progress(source);
        // The source holding the most; among equals, the one whose oldest
        // startup is oldest (the runtime names connections in order).
        let Some((victim, most)) = self
            .startups
            .iter()
            .max_by_key(|(_, q)| (q.len(), std::cmp::Reverse(q.front().copied())))
            .map(|(s, q)| (*s, q.len()))
        else {
            return false;
        };
        if victim == source || usize::try_from(mine).unwrap_or(usize::MAX) >= most {
            return false;
        }
        let Some(queue) = self.startups.get_mut(&victim) else {
            return false;
        };
        let Some(oldest) = queue.pop_front() else {
            return false;
        };
        if queue.is_empty() {
            self.startups.remove(&victim);
        }
        // The evicted startup no longer counts as a startup: its place is
        // the newcomer's, which `start` counts. (It still counts among the
        // connections until it closes.)
        self.unauthenticated -= 1;
        self.events.push_back(Event::Evict(oldest));
        true
    }

    /// Lets waiting connections in while there is room, round robin by
    /// source.
    fn fill(&mut self) {
        loop {
            if self.connections >= self.config.max_connections || self.waiting.is_empty() {
                return;
            }
            let after = self.last_served.map_or(Bound::Unbounded, Bound::Excluded);
            let order: Vec<Source> = self
                .waiting
                .range((after, Bound::Unbounded))
                .chain(self.waiting.range(..))
                .map(|(s, _)| *s)
                .take(self.waiting.len())
                .collect();
            let Some(source) = order.into_iter().find(|&s| self.may_start(s)) else {
                return;
            };
            let Some(waiter) = self.waiting.get_mut(&source).and_then(VecDeque::pop_front) else {
                return;
            };
            self.forget_waiter(source, waiter.queue);
            if self.unauthenticated >= self.config.full {
                // `may_start` found a place to take by eviction.
                self.evict_for(source);
            }
            self.last_served = Some(source);
            let ticket = self.start(source, waiter.id);
            self.events.push_back(Event::Admit(ticket));
        }
    }

    /// Whether the oldest connection waiting from `source` may start now.
    fn may_start(&self, source: Source) -> bool {
        let Some(front) = self.waiting.get(&source).and_then(VecDeque::front) else {
            return false;
        };
        let c = &self.config;
        let count = self.in_progress(source);
        if count >= c.per_source {
            return false;
        }
        if self.unauthenticated < c.start
            || (front.queue == Queue::Source && self.unauthenticated < c.full)
        {
            return true;
        }
        if self.unauthenticated < c.full {
            // As at connect: random early drop spares a source holding
            // fewer than the most.
            return count < self.most();
        }
        // At full, a waiting connection takes a place by eviction only if
        // its source would still hold fewer than the victim's afterwards:
        // two sources never take places from each other in turn.
        count + 1 < self.most()
    }

    /// The most startups any one source holds now.
    fn most(&self) -> u32 {
        self.startups
            .values()
            .map(|q| u32::try_from(q.len()).unwrap_or(u32::MAX))
            .max()
            .unwrap_or(0)
    }

    fn release(&mut self, ticket: &Ticket) {
        if ticket.exempt {
            return;
        }
        // An evicted startup's place was already given away.
        let Some(queue) = self.startups.get_mut(&ticket.source) else {
            return;
        };
        let Some(at) = queue.iter().position(|&id| id == ticket.id) else {
            return;
        };
        queue.remove(at);
        if queue.is_empty() {
            self.startups.remove(&ticket.source);
        }
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        self.fill();
    }
}
