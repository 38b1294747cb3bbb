//! The restrictions an `authorized_keys` line's options put on its key
//! (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"): `from="pattern-list"` and
//! `expiry-time="timespec"`. Parsed when the file is read (a line whose
//! restriction cannot be read is skipped, with the reason), judged at each
//! login against the client's address and the wall-clock time, which come
//! in as inputs: the core reads no clock and no socket.
//!
//! `from=` is matched as sshd matches it with `UseDNS no` (its default):
//! the client's address stands for its host name, so
//! - an entry is an address (`192.0.2.7`), a network (`192.0.2.0/24`,
//!   `2001:db8::/32`), or a pattern with `*` and `?` matched against the
//!   address's text (`192.0.2.*`, `*` for anyone);
//! - `!` before an entry excludes what it matches, wherever it stands in
//!   the list; otherwise the client must match some entry;
//! - a host-name pattern (`*.example.com`) never matches, since no DNS
//!   lookup is made.
//!
//! Where sshd reads quietly an entry that can never do what its author
//! meant, the line is refused instead, so that a typo cannot weaken an
//! exclusion: an entry with a blank (`"10.0.0.1, !10.0.0.2"`), an entry
//! with a `/` that is not an `address/masklen` network, and a network with
//! bits set past its mask (`10.0.0.1/8`, which sshd also refuses).
//!
//! `expiry-time` takes sshd's `YYYYMMDD[HHMM[SS]]`, optionally followed by
//! `Z` or `UTC`. sshd reads a time without that suffix as the server's
//! local time; gitmouth reads it as UTC, always. With several
//! `expiry-time` options the earliest counts, as in sshd. A key is refused
//! once the time has passed (still accepted during its last second, as in
//! sshd).

use core::net::IpAddr;
use std::fmt;

/// A `from=` pattern list, checked when it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromList {
    /// The list as written in the file, for logs (escaped).
    text: String,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Written with a leading `!`.
    negated: bool,
    /// The entry without its `!`, in lower case (sshd compares host names
    /// without regard to case, and an IPv6 address's text is lower case).
    pattern: String,
    /// The network (address and mask length), when the entry is an
    /// address or `address/masklen`.
    net: Option<(IpAddr, u32)>,
}

/// How a client's address fares against a [`FromList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromMatch {
    /// An entry matches it, and no `!` entry does.
    Allowed,
    /// No entry matches it.
    NotListed,
    /// This `!` entry (written without its `!`) matches it.
    Excluded(String),
}

impl FromList {
    /// Reads a `from=` value, refusing what could never do what it says.
    pub fn parse(text: &str) -> Result<FromList, String> {
        let mut entries = Vec::new();
        for raw in text.split(',') {
            let (negated, body) = match raw.strip_prefix('!') {
                Some(body) => (true, body),
                None => (false, raw),
            };
            if body.is_empty() {
                return Err(format!(
                    "from= has an empty entry in {:?}",
                    crate::log_safe(text.as_bytes())
                ));
            }
            if body.chars().any(char::is_whitespace) {
                return Err(format!(
                    "from= entry {:?} holds a blank (separate entries with a comma alone)",
                    crate::log_safe(raw.as_bytes())
                ));
            }
            let net = network(body)?;
            entries.push(Entry {
                negated,
                pattern: body.to_ascii_lowercase(),
                net,
            });
        }
        Ok(FromList {
            text: crate::log_safe(text.as_bytes()),
            entries,
        })
    }

    /// The list as written (escaped), for logs.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Judges the client's address. An IPv4 client seen as an IPv4-mapped
    /// IPv6 address is judged as IPv4, as sshd does.
    pub fn judge(&self, client: IpAddr) -> FromMatch {
        let client = unmapped(client);
        let text = client.to_string();
        let mut listed = false;
        for entry in &self.entries {
            let hit = entry
                .net
                .is_some_and(|(net, bits)| in_network(client, net, bits))
                || wildcard_matches(&entry.pattern, &text);
            if hit {
                if entry.negated {
                    return FromMatch::Excluded(crate::log_safe(entry.pattern.as_bytes()));
                }
                listed = true;
            }
        }
        if listed {
            FromMatch::Allowed
        } else {
            FromMatch::NotListed
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) as the IPv4 address it
/// stands for.
fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The network an entry names (`address` or `address/masklen`), `None`
/// for a pattern, or why the entry is refused.
fn network(entry: &str) -> Result<Option<(IpAddr, u32)>, String> {
    let (addr, mask) = match entry.split_once('/') {
        Some((addr, mask)) => (addr, Some(mask)),
        None => (entry, None),
    };
    let not_a_network = || {
        format!(
            "from= entry {:?} is not an address/masklen network",
            crate::log_safe(entry.as_bytes())
        )
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return match mask {
            Some(_) => Err(not_a_network()),
            None => Ok(None),
        };
    };
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match mask {
        None => width,
        Some(mask) if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) => {
            match mask.parse::<u32>() {
                Ok(bits) if bits <= width => bits,
                _ => {
                    return Err(format!(
                        "from= entry {:?}: a mask length of at most {width}",
                        crate::log_safe(entry.as_bytes())
                    ));
                }
            }
        }
        Some(_) => return Err(not_a_network()),
    };
    if masked(ip, bits) != ip {
        return Err(format!(
            "from= entry {:?} has address bits set past its mask (the network is {}/{bits})",
            crate::log_safe(entry.as_bytes()),
            masked(ip, bits)
        ));
    }
    Ok(Some((ip, bits)))
}

/// `addr` with all but its first `bits` bits cleared.
fn masked(addr: IpAddr, bits: u32) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Whether `client` is in the network `net/bits` (of its own family).
fn in_network(client: IpAddr, net: IpAddr, bits: u32) -> bool {
    client.is_ipv4() == net.is_ipv4() && masked(client, bits) == net
}

/// sshd's `match_pattern`: `*` matches any run of characters (none
/// included), `?` any one character, anything else itself.
pub fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Reads an `expiry-time` value: seconds since the Unix epoch (UTC).
pub fn parse_expiry_time(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!(
            "expiry-time {:?}: {why} (YYYYMMDD[HHMM[SS]], UTC)",
            crate::log_safe(text.as_bytes())
        )
    };
    let upper = text.to_ascii_uppercase();
    let digits = upper
        .strip_suffix("UTC")
        .or_else(|| upper.strip_suffix('Z'))
        .unwrap_or(&upper);
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a time"));
    }
    let field = |at: usize, len: usize| -> u64 {
        digits[at..(at + len).min(digits.len())]
            .parse()
            .unwrap_or(0)
    };
    let (year, month, day) = (field(0, 4), field(4, 2), field(6, 2));
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (field(8, 2), field(10, 2), 0),
        _ => (field(8, 2), field(10, 2), field(12, 2)),
    };
    if year < 1970 {
        return Err(bad("a year before 1970"));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("no such time of day"));
    }
    let at = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    if at == 0 {
        // sshd reads 0 as "no expiry time".
        return Err(bad("the epoch itself"));
    }
    Ok(at)
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of 1970 or later.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

/// `at` (seconds since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`, for logs.
pub fn format_utc(at: u64) -> String {
    let (mut days, secs) = (at / 86_400, at % 86_400);
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02} {:02}:{:02}:{:02} UTC",
        days + 1,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// What a line's options restrict, as read from the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// `from=`: where the client must be.
    pub from: Option<FromList>,
    /// `expiry-time=` (the earliest, if several): the key is refused after
    /// this time (seconds since the epoch).
    pub expiry: Option<u64>,
}

/// Why a line's options kept its key out (a failed authentication).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// The client's address does not satisfy `from=`.
    From {
        /// The client's address.
        client: IpAddr,
        /// The `from=` list (escaped).
        list: String,
        /// The `!` entry that excludes the client, if one does.
        excluded_by: Option<String>,
    },
    /// `expiry-time` has passed: it was this time.
    Expired(u64),
}

impl KeyRefusal {
    /// A short name of the reason, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::From { .. } => "from",
            Self::Expired(_) => "expiry-time",
        }
    }
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::From {
                client,
                list,
                excluded_by: Some(entry),
            } => write!(
                f,
                "from=\"{list}\": client {client} is excluded by !{entry}"
            ),
            Self::From { client, list, .. } => {
                write!(f, "from=\"{list}\": client {client} matches no entry")
            }
            Self::Expired(at) => write!(f, "expiry-time passed at {}", format_utc(*at)),
        }
    }
}

impl Restrictions {
    /// Adds a `from=` option; a second one refuses the line, as in sshd.
    pub fn add_from(&mut self, value: &str) -> Result<(), String> {
        if self.from.is_some() {
            return Err("from= given twice".to_owned());
        }
        self.from = Some(FromList::parse(value)?);
        Ok(())
    }

    /// Adds an `expiry-time=` option; the earliest counts.
    pub fn add_expiry(&mut self, value: &str) -> Result<(), String> {
        let at = parse_expiry_time(value)?;
        self.expiry = Some(self.expiry.map_or(at, |before| before.min(at)));
        Ok(())
    }

    /// Whether the key may be used by `client` at `now` (seconds since the
    /// epoch).
    pub fn check(&self, client: IpAddr, now: u64) -> Result<(), KeyRefusal> {
        if let Some(at) = self.expiry
            && at < now
        {
            return Err(KeyRefusal::Expired(at));
        }
        if let Some(from) = &self.from {
            let excluded_by = match from.judge(client) {
                FromMatch::Allowed => return Ok(()),
                FromMatch::NotListed => None,
                FromMatch::Excluded(entry) => Some(entry),
            };
            return Err(KeyRefusal::From {
                client: unmapped(client),
                list: from.text().to_owned(),
                excluded_by,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn judge(list: &str, client: &str) -> FromMatch {
        FromList::parse(list).unwrap().judge(ip(client))
    }

    #[test]
    fn addresses_networks_and_wildcards() {
        use FromMatch::*;
        assert_eq!(judge("127.0.0.2", "127.0.0.2"), Allowed);
        assert_eq!(judge("127.0.0.2", "127.0.0.1"), NotListed);
        assert_eq!(judge("10.0.0.0/8,127.0.0.1", "127.0.0.1"), Allowed);
        assert_eq!(judge("10.0.0.0/8", "10.255.1.2"), Allowed);
        assert_eq!(judge("10.0.0.0/8", "11.0.0.0"), NotListed);
        assert_eq!(judge("0.0.0.0/0", "203.0.113.9"), Allowed);
        assert_eq!(judge("192.0.2.*", "192.0.2.200"), Allowed);
        assert_eq!(judge("192.0.2.?", "192.0.2.20"), NotListed);
        assert_eq!(judge("192.0.2.??", "192.0.2.20"), Allowed);
        assert_eq!(judge("*", "2001:db8::1"), Allowed);
        assert_eq!(judge("2001:db8::/32", "2001:db8:ffff::1"), Allowed);
        assert_eq!(judge("2001:DB8::*", "2001:db8::1"), Allowed);
        assert_eq!(judge("2001:db8::/32", "2001:db9::1"), NotListed);
        // An IPv4 client seen as IPv4-mapped IPv6 is IPv4.
        assert_eq!(judge("127.0.0.0/8", "::ffff:127.0.0.5"), Allowed);
        // Families never mix.
        assert_eq!(judge("::/0", "127.0.0.1"), NotListed);
        assert_eq!(judge("0.0.0.0/0", "::1"), NotListed);
        // Host names never match: there is no DNS lookup.
        assert_eq!(judge("localhost,*.example.com", "127.0.0.1"), NotListed);
    }

    #[test]
    fn negation_wins_wherever_it_stands() {
        use FromMatch::*;
        assert_eq!(
            judge("!127.0.0.1,127.0.0.0/8", "127.0.0.1"),
            Excluded("127.0.0.1".into())
        );
        assert_eq!(
            judge("127.0.0.0/8,!127.0.0.1", "127.0.0.1"),
            Excluded("127.0.0.1".into())
        );
        assert_eq!(judge("127.0.0.0/8,!127.0.0.1", "127.0.0.2"), Allowed);
        assert_eq!(
            judge("*,!10.1.0.0/16", "10.1.2.3"),
            Excluded("10.1.0.0/16".into())
        );
        assert_eq!(judge("*,!10.1.0.0/16", "10.2.2.3"), Allowed);
        // A negation alone lets nobody in: nobody is listed.
        assert_eq!(judge("!127.0.0.1", "127.0.0.2"), NotListed);
        assert_eq!(
            judge("!192.0.2.*", "192.0.2.9"),
            Excluded("192.0.2.*".into())
        );
    }

    #[test]
    fn lists_that_cannot_mean_what_they_say_are_refused() {
        for (list, words) in [
            ("", "empty entry"),
            ("10.0.0.1,", "empty entry"),
            ("!", "empty entry"),
            ("10.0.0.1, 10.0.0.2", "blank"),
            ("10.0.0.1,! 10.0.0.2", "blank"),
            (
                "10.0.0.1/8",
                "bits set past its mask (the network is 10.0.0.0/8)",
            ),
            ("10.0.0.0/33", "at most 32"),
            ("2001:db8::/129", "at most 128"),
            ("10.0.0.0/", "not an address/masklen"),
            ("10.0.0.0/8x", "not an address/masklen"),
            ("host/8", "not an address/masklen"),
            ("10.0.0.0/99999999999999", "at most 32"),
        ] {
            let err = FromList::parse(list).unwrap_err();
            assert!(err.contains(words), "{list:?}: {err}");
        }
    }

    #[test]
    fn wildcards() {
        for (pattern, text, matches) in [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("*b*", "abba", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("**a", "a", true),
            ("*a*a*a", "aaa", true),
            ("*a*a*a", "aa", false),
        ] {
            assert_eq!(wildcard_matches(pattern, text), matches, "{pattern} {text}");
        }
    }

    #[test]
    fn expiry_times() {
        assert_eq!(parse_expiry_time("19700102"), Ok(86_400));
        assert_eq!(parse_expiry_time("20300101"), Ok(1_893_456_000));
        assert_eq!(parse_expiry_time("203001010000"), Ok(1_893_456_000));
        assert_eq!(parse_expiry_time("20300101000001"), Ok(1_893_456_001));
        assert_eq!(parse_expiry_time("20300101Z"), Ok(1_893_456_000));
        assert_eq!(parse_expiry_time("20300101utc"), Ok(1_893_456_000));
        assert_eq!(parse_expiry_time("20240229"), Ok(1_709_164_800));
        assert_eq!(parse_expiry_time("20991231235959"), Ok(4_102_444_799));
        for bad in [
            "",
            "2030",
            "2030010",
            "203001011",
            "2030-01-01",
            "20300101000000Z0",
            "+0300101",
            "19700101",
            "19691231",
            "20230229",
            "20300132",
            "20301301",
            "20300100",
            "203001012400",
            "203001012360",
            "20300101235960",
            "tomorrow",
            "٢٠٣٠٠١٠١",
        ] {
            assert!(parse_expiry_time(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_utc(1_893_456_001), "2030-01-01 00:00:01 UTC");
        assert_eq!(format_utc(1_709_164_800), "2024-02-29 00:00:00 UTC");
    }

    #[test]
    fn restrictions() {
        let mut r = Restrictions::default();
        assert_eq!(r.check(ip("192.0.2.1"), u64::MAX), Ok(()));
        r.add_expiry("20300101").unwrap();
        r.add_expiry("20400101").unwrap();
        r.add_expiry("20200101").unwrap();
        assert_eq!(r.expiry, Some(1_577_836_800));
        // Still good during the last second, as in sshd.
        assert_eq!(r.check(ip("192.0.2.1"), 1_577_836_800), Ok(()));
        let late = r.check(ip("192.0.2.1"), 1_577_836_801).unwrap_err();
        assert_eq!(late, KeyRefusal::Expired(1_577_836_800));
        assert_eq!(late.reason(), "expiry-time");
        assert_eq!(
            late.to_string(),
            "expiry-time passed at 2020-01-01 00:00:00 UTC"
        );
        let mut r = Restrictions::default();
        r.add_from("127.0.0.0/8,!127.0.0.1").unwrap();
        assert_eq!(r.add_from("*"), Err("from= given twice".to_owned()));
        assert_eq!(r.check(ip("127.0.0.2"), 0), Ok(()));
        let refused = r.check(ip("::ffff:127.0.0.1"), 0).unwrap_err();
        assert_eq!(refused.reason(), "from");
        assert_eq!(
            refused.to_string(),
            "from=\"127.0.0.0/8,!127.0.0.1\": client 127.0.0.1 is excluded by !127.0.0.1"
        );
        assert_eq!(
            r.check(ip("10.0.0.1"), 0).unwrap_err().to_string(),
            "from=\"127.0.0.0/8,!127.0.0.1\": client 10.0.0.1 matches no entry"
        );
    }

    /// The reference: a network contains an address when their first
    /// `bits` bits agree, computed bit by bit.
    fn reference_contains(net: [u8; 4], bits: u32, addr: [u8; 4]) -> bool {
        (0..bits as usize).all(|i| {
            let bit = |a: [u8; 4]| (a[i / 8] >> (7 - i % 8)) & 1;
            bit(net) == bit(addr)
        })
    }

    proptest! {
        #[test]
        fn cidr_match_agrees_with_masking_bit_by_bit(
            net in any::<[u8; 4]>(),
            bits in 0u32..=32,
            addr in any::<[u8; 4]>(),
            negated in any::<bool>(),
        ) {
            // Clear the host bits, so the entry is a valid network.
            let net = match masked(IpAddr::from(net), bits) {
                IpAddr::V4(v4) => v4.octets(),
                IpAddr::V6(_) => unreachable!(),
            };
            let entry = format!("{}{}/{bits}", if negated { "!" } else { "" }, IpAddr::from(net));
            let list = FromList::parse(&entry).unwrap();
            let expected = match (reference_contains(net, bits, addr), negated) {
                (false, _) => FromMatch::NotListed,
                (true, false) => FromMatch::Allowed,
                (true, true) => FromMatch::Excluded(entry[1..].to_owned()),
            };
            prop_assert_eq!(list.judge(IpAddr::from(addr)), expected.clone());
            // The same address seen as IPv4-mapped IPv6.
            let mapped = IpAddr::V6(core::net::Ipv4Addr::from(addr).to_ipv6_mapped());
            prop_assert_eq!(list.judge(mapped), expected);
        }

        #[test]
        fn ipv6_cidr_match_agrees_with_a_prefix_compare(
            net in any::<u128>(),
            bits in 0u32..=128,
            addr in any::<u128>(),
        ) {
            let net = if bits == 0 { 0 } else { net >> (128 - bits) << (128 - bits) };
            let entry = format!("{}/{bits}", core::net::Ipv6Addr::from(net));
            let list = FromList::parse(&entry).unwrap();
            let client = core::net::Ipv6Addr::from(addr);
            // Mapped IPv4 clients are judged as IPv4: leave them out.
            prop_assume!(client.to_ipv4_mapped().is_none());
            let same = bits == 0 || net >> (128 - bits) == addr >> (128 - bits);
            prop_assert_eq!(
                list.judge(IpAddr::V6(client)) == FromMatch::Allowed,
                same
            );
        }

        #[test]
        fn a_network_with_host_bits_is_refused(addr in any::<[u8; 4]>(), bits in 0u32..32) {
            let ip = IpAddr::from(addr);
            prop_assert_eq!(FromList::parse(&format!("{ip}/{bits}")).is_ok(), masked(ip, bits) == ip);
        }

        #[test]
        fn any_list_text_never_panics(text in "[0-9a-f.:/!*?, x]{0,40}", addr in any::<[u8; 16]>()) {
            if let Ok(list) = FromList::parse(&text) {
                let _ = list.judge(IpAddr::from(addr));
            }
        }

        #[test]
        fn a_star_pattern_agrees_with_prefix_and_suffix(
            prefix in "[0-9.]{0,6}",
            suffix in "[0-9.]{0,6}",
            text in "[0-9.]{0,12}",
        ) {
            let expected = text.len() >= prefix.len() + suffix.len()
                && text.starts_with(&prefix)
                && text.ends_with(&suffix);
            prop_assert_eq!(wildcard_matches(&format!("{prefix}*{suffix}"), &text), expected);
        }

        #[test]
        fn expiry_times_round_trip(at in 1u64..253_402_300_800) {
            // Every second from the epoch to the end of 9999 reads back.
            let text = format_utc(at);
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(parse_expiry_time(&digits), Ok(at));
            prop_assert_eq!(parse_expiry_time(&format!("{digits}Z")), Ok(at));
        }

        #[test]
        fn any_expiry_text_never_panics(text in any::<String>()) {
            let _ = parse_expiry_time(&text);
        }
    }
}
