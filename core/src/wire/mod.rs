//! Wire encoding (RFC 4251 §5) and the one table of message numbers (RFC 4250 §4.1).
//!
//! Parsing borrows from the packet buffer, so nothing is copied or allocated
//! to read a message; integers go through `ssh-encoding`. Every length read
//! from the wire is checked against what is actually there before it is used.

mod msg;

pub use msg::{MsgInfo, Sender, msg_info, numbers};

use ssh_encoding::Decode;

/// A message could not be parsed: truncated, over-long, or not of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed message")
    }
}

impl std::error::Error for Malformed {}

/// Result of parsing one field.
pub type Parsed<T> = Result<T, Malformed>;

/// A zero-copy reader over one message's bytes.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    rest: &'a [u8],
}

impl<'a> Parser<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Fails unless every byte has been read: trailing bytes mean the peer
    /// and we disagree about the message's shape.
    pub fn finish(&self) -> Parsed<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// `byte`.
    pub fn u8(&mut self) -> Parsed<u8> {
        u8::decode(&mut self.rest).map_err(|_| Malformed)
    }

    /// `boolean`: any non-zero value is true (RFC 4251 §5).
    pub fn bool(&mut self) -> Parsed<bool> {
        Ok(self.u8()? != 0)
    }

    /// `uint32`.
    pub fn u32(&mut self) -> Parsed<u32> {
        u32::decode(&mut self.rest).map_err(|_| Malformed)
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Parsed<&'a [u8]> {
        if n > self.rest.len() {
            return Err(Malformed);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// `string`, as raw bytes.
    pub fn string(&mut self) -> Parsed<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// `string` that must be UTF-8 (RFC 4251 §5 for user names, descriptions).
    pub fn utf8(&mut self) -> Parsed<&'a str> {
        std::str::from_utf8(self.string()?).map_err(|_| Malformed)
    }

    /// `name-list` (RFC 4251 §5): comma-separated US-ASCII names, none empty,
    /// none containing a comma. Borrowed; iterate with [`NameList::iter`].
    pub fn name_list(&mut self) -> Parsed<NameList<'a>> {
        let raw = self.string()?;
        NameList::parse(raw)
    }
}

/// Longest name-list we accept: real clients send a few hundred bytes; OpenSSH
/// caps the whole KEXINIT well below this.
pub const MAX_NAME_LIST: usize = 8 * 1024;
/// Longest single algorithm name (RFC 4251 §6 says 64).
pub const MAX_NAME: usize = 64;

/// A validated, borrowed `name-list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameList<'a>(&'a str);

impl<'a> NameList<'a> {
    /// Validates a name-list's bytes.
    pub fn parse(raw: &'a [u8]) -> Parsed<Self> {
        if raw.len() > MAX_NAME_LIST {
            return Err(Malformed);
        }
        let text = std::str::from_utf8(raw).map_err(|_| Malformed)?;
        if !text.is_empty() {
            for name in text.split(',') {
                let printable = name.bytes().all(|b| b.is_ascii_graphic());
                if name.is_empty() || name.len() > MAX_NAME || !printable {
                    return Err(Malformed);
                }
            }
        }
        Ok(Self(text))
    }

    /// The names, in the peer's order of preference.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let text = self.0;
        text.split(',').filter(|s| !s.is_empty())
    }

    /// Whether `name` is in the list.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// The first name, if any.
    pub fn first(&self) -> Option<&'a str> {
        self.iter().next()
    }

    /// The list as sent.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Appends a `byte`.
pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// Appends a `boolean`.
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

/// Appends a `uint32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a `string`. Lengths above `u32::MAX` cannot occur: every buffer
/// we encode is bounded far below it.
pub fn put_string(out: &mut Vec<u8>, v: &[u8]) {
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    put_u32(out, len);
    out.extend_from_slice(v);
}

/// Appends a `name-list` from its names.
pub fn put_name_list<'n>(out: &mut Vec<u8>, names: impl IntoIterator<Item = &'n str>) {
    let at = out.len();
    put_u32(out, 0);
    let mut first = true;
    for name in names {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(name.as_bytes());
    }
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends an `mpint` holding the unsigned big-endian integer `magnitude`
/// (RFC 4251 §5: no needless leading zeros, a zero byte when the top bit is set).
pub fn put_mpint_unsigned(out: &mut Vec<u8>, magnitude: &[u8]) {
    let m = ssh_encoding::Mpint::from_positive_bytes(magnitude);
    put_string(out, m.as_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_round_trip_and_truncation_is_refused() {
        let mut out = Vec::new();
        put_string(&mut out, b"hello");
        put_u32(&mut out, 7);
        put_bool(&mut out, true);
        let mut p = Parser::new(&out);
        assert_eq!(p.string().unwrap(), b"hello");
        assert_eq!(p.u32().unwrap(), 7);
        assert!(p.bool().unwrap());
        p.finish().unwrap();
        for cut in 0..out.len() {
            let mut p = Parser::new(&out[..cut]);
            let whole = p.string().and_then(|_| p.u32()).and_then(|_| p.bool());
            assert!(whole.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_reading() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        assert_eq!(Parser::new(&bytes).string(), Err(Malformed));
    }

    #[test]
    fn name_lists() {
        let mut out = Vec::new();
        put_name_list(&mut out, ["a", "b-c@d.e"]);
        let list = Parser::new(&out).name_list().unwrap();
        assert_eq!(list.iter().collect::<Vec<_>>(), ["a", "b-c@d.e"]);
        assert!(list.contains("a") && !list.contains("b"));
        for bad in [&b"a,,b"[..], b",a", b"a,", b"a b", b"\xff"] {
            assert_eq!(NameList::parse(bad), Err(Malformed), "{bad:?}");
        }
        assert_eq!(NameList::parse(b"").unwrap().iter().count(), 0);
        assert!(NameList::parse(&[b'a'; MAX_NAME + 1]).is_err());
    }

    #[test]
    fn mpint_encoding_follows_rfc4251_examples() {
        let cases: [(&[u8], &[u8]); 4] = [
            (&[], &[0, 0, 0, 0]),
            (
                &[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
                &[0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
            ),
            (&[0x80], &[0, 0, 0, 2, 0x00, 0x80]),
            (&[0x00, 0x00, 0x7f], &[0, 0, 0, 1, 0x7f]),
        ];
        for (magnitude, wire) in cases {
            let mut out = Vec::new();
            put_mpint_unsigned(&mut out, magnitude);
            assert_eq!(out, wire);
        }
    }

    proptest! {
        #[test]
        fn parsing_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut p = Parser::new(&bytes);
            let _ = p.string();
            let _ = p.name_list();
            let _ = p.u32();
            let _ = p.utf8();
        }

        #[test]
        fn string_round_trip(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_string(&mut out, &v);
            let mut p = Parser::new(&out);
            prop_assert_eq!(p.string().unwrap(), &v[..]);
            prop_assert!(p.finish().is_ok());
        }
    }
}
