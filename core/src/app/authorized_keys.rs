//! OpenSSH `authorized_keys` files (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"),
//! parsed from their text: the standalone mode's list of who may connect.
//!
//! Each line is `[options] keytype base64-key [comment]`; blank lines and
//! lines starting with `#` are skipped. A single `.pub` file is a valid file.
//! Bad lines are reported as [`LineError`]s and skipped, never fatal, so one
//! typo does not lock everybody out.
//!
//! Options are honoured as sshd honours them, where they matter here:
//! `from=` and `expiry-time=` restrict when and from where the key is
//! used (judged at each login by [`AuthorizedKeys::admit`], see
//! [`super::key_options`]). Options that govern only what gitmouth never
//! offers (`restrict` and the `no-*` flags, ptys, forwarding,
//! `permitopen=`, `permitlisten=`, `environment=`) are accepted: since only
//! git runs, they are satisfied already. A line whose options name what
//! gitmouth cannot do (`command=`, `principals=`, `cert-authority`,
//! `verify-required`) is refused rather than accepted with the option
//! silently dropped.
//!
//! When a key appears on several lines, a login takes the first line
//! whose restrictions let it in, as sshd tries the lines in turn. A refused
//! line does not hide a later usable line for the same key.

use std::collections::HashMap;

use base64ct::{Base64, Encoding};
use ssh_encoding::Encode;
use ssh_key::{PublicKey, public::KeyData};

use super::fingerprint;
use super::key_options::{KeyRefusal, Restrictions};

/// RSA keys shorter than this are refused (NIST SP 800-131A; OpenSSH's own
/// floor is 1024).
pub const MIN_RSA_BITS: u32 = 2048;

/// RSA keys longer than this are refused, as OpenSSH does
/// (`SSHBUF_MAX_BIGNUM`): verifying with a huge modulus is slow.
pub const MAX_RSA_BITS: u32 = 16384;

/// Longest user name kept from a comment, in characters.
const MAX_USER_CHARS: usize = 256;

/// One option of an `authorized_keys` line, e.g. `no-pty` or
/// `command="git-shell"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOption {
    /// The option's name in lower case (sshd compares names without regard
    /// to case).
    pub name: String,
    /// The value of a `name="value"` option, unquoted (`\"` becomes `"`).
    pub value: Option<String>,
}

/// One usable line of the file.
#[derive(Clone, Debug)]
pub struct AuthorizedKey {
    /// The public key, with the line's comment.
    pub key: PublicKey,
    /// Who the key belongs to, for logs and the shell greeting: the comment
    /// (trimmed, control characters replaced by `?`), or the key's SHA256
    /// fingerprint when the line has no comment.
    pub user: String,
    /// The line's options, in order.
    pub options: Vec<KeyOption>,
    /// What `from=` and `expiry-time=` restrict.
    pub restrictions: Restrictions,
    /// The 1-based line number.
    pub line: usize,
}

impl AuthorizedKey {
    /// The first option called `name` (compared without regard to case).
    pub fn option(&self, name: &str) -> Option<&KeyOption> {
        self.options
            .iter()
            .find(|option| option.name.eq_ignore_ascii_case(name))
    }

    /// Whether the line has an option called `name`.
    pub fn has_option(&self, name: &str) -> bool {
        self.option(name).is_some()
    }

    /// Whether a security-key (`sk-*`) signature must carry the
    /// user-presence flag: always, unless the line says `no-touch-required`
    /// (sshd's default).
    pub fn touch_required(&self) -> bool {
        !self.has_option("no-touch-required")
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The 1-based line number.
    pub line: usize,
    /// Why the line was skipped, for the operator's log.
    pub reason: String,
}

/// A line's restrictions kept its key out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRefusal {
    /// The 1-based line number.
    pub line: usize,
    /// Why.
    pub refusal: KeyRefusal,
}

impl std::fmt::Display for LineRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.refusal)
    }
}

/// What the file says of a key at a login.
#[derive(Debug, Clone)]
pub enum Admission<'a> {
    /// This line lets it in.
    Admitted(&'a AuthorizedKey),
    /// No line holds it.
    Unknown,
    /// Every line holding it refuses it now, for these reasons (in file
    /// order; never empty).
    Refused(Vec<LineRefusal>),
}

/// The parsed file: the usable lines in file order, indexed by key blob.
#[derive(Clone, Debug, Default)]
pub struct AuthorizedKeys {
    keys: Vec<AuthorizedKey>,
    /// Canonical key blob (RFC 4253 §6.6 encoding) to the indexes in `keys`
    /// of its lines, in file order. Only looked up, never iterated, so the
    /// map's order cannot leak into behaviour.
    by_blob: HashMap<Vec<u8>, Vec<usize>>,
}

impl AuthorizedKeys {
    /// Parses a file's text. Bad lines are reported and skipped.
    pub fn parse(text: &str) -> (AuthorizedKeys, Vec<LineError>) {
        let mut keys = AuthorizedKeys::empty();
        let mut errors = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            match parse_line(raw, line) {
                Ok(None) => {}
                Ok(Some((entry, blob))) => {
                    keys.by_blob.entry(blob).or_default().push(keys.keys.len());
                    keys.keys.push(entry);
                }
                Err(reason) => errors.push(LineError { line, reason }),
            }
        }
        (keys, errors)
    }

    /// A file with no keys: nobody gets in.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The number of usable keys (a key on several lines counted once).
    pub fn len(&self) -> usize {
        self.by_blob.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable lines in file order (a key on several lines is there
    /// each time).
    pub fn iter(&self) -> impl Iterator<Item = &AuthorizedKey> {
        self.keys.iter()
    }

    /// Finds the first line of a public key blob (the raw key blob as sent
    /// in SSH_MSG_USERAUTH_REQUEST), whatever its restrictions. Compares
    /// bytes exactly: a blob that encodes the same key differently matches
    /// nothing.
    pub fn find_blob(&self, blob: &[u8]) -> Option<&AuthorizedKey> {
        self.lines_of(blob).next()
    }

    /// The lines of a key blob, in file order.
    fn lines_of(&self, blob: &[u8]) -> impl Iterator<Item = &AuthorizedKey> {
        self.by_blob
            .get(blob)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.keys.get(i))
    }

    /// Whether the key `blob` may log in from `client` at `now` (seconds
    /// since the Unix epoch, the wall-clock time): the first of its lines
    /// whose restrictions (`from=`, `expiry-time=`) allow it, as sshd
    /// tries the lines in turn.
    pub fn admit(&self, blob: &[u8], client: core::net::IpAddr, now: u64) -> Admission<'_> {
        let mut refusals = Vec::new();
        for entry in self.lines_of(blob) {
            match entry.restrictions.check(client, now) {
                Ok(()) => return Admission::Admitted(entry),
                Err(refusal) => refusals.push(LineRefusal {
                    line: entry.line,
                    refusal,
                }),
            }
        }
        if refusals.is_empty() {
            Admission::Unknown
        } else {
            Admission::Refused(refusals)
        }
    }

    /// Finds the entry for a parsed key.
    pub fn find(&self, key: &KeyData) -> Option<&AuthorizedKey> {
        let blob = key.encode_vec().ok()?;
        self.find_blob(&blob)
    }
}

/// Parses one line: `Ok(None)` for a blank or comment line, the entry and its
/// canonical blob for a usable one, or why it is not usable.
fn parse_line(raw: &str, line: usize) -> Result<Option<(AuthorizedKey, Vec<u8>)>, String> {
    // CRLF files: the '\r' is whitespace at the end of the line.
    let text = raw.trim_matches(is_blank_or_cr);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }

    let (options, rest) = if looks_like_key_type(first_field(text)) {
        (Vec::new(), text)
    } else {
        let (field, rest) = split_options_field(text)?;
        (parse_options(field)?, rest.trim_start_matches(is_blank))
    };

    let (type_name, rest) = split_field(rest);
    let (base64, comment) = split_field(rest);
    if type_name.is_empty() || base64.is_empty() {
        return Err("no key on the line".to_owned());
    }
    let restrictions = check_options(&options)?;
    let key_data = parse_key(type_name, base64)?;
    let blob = key_data
        .encode_vec()
        .map_err(|e| format!("key cannot be encoded: {e}"))?;

    let comment = comment.trim_matches(is_blank_or_cr);
    let mut key = PublicKey::from(key_data);
    key.set_comment(comment);
    let user = if comment.is_empty() {
        fingerprint::sha256(&key)
    } else {
        comment
            .chars()
            .take(MAX_USER_CHARS)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    Ok(Some((
        AuthorizedKey {
            key,
            user,
            options,
            restrictions,
            line,
        },
        blob,
    )))
}

/// sshd separates fields with spaces and tabs.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_blank_or_cr(c: char) -> bool {
    is_blank(c) || c == '\r'
}

/// The text up to the first space or tab, ignoring quotes.
fn first_field(text: &str) -> &str {
    text.split(is_blank).next().unwrap_or_default()
}

/// Splits off the first field and the blanks after it.
fn split_field(text: &str) -> (&str, &str) {
    match text.split_once(is_blank) {
        Some((field, rest)) => (field, rest.trim_start_matches(is_blank)),
        None => (text, ""),
    }
}

/// Whether a line's first field names a key type rather than options. No
/// option name starts like these, so the choice is never ambiguous (sshd
/// instead tries to read a key first and falls back to options).
fn looks_like_key_type(field: &str) -> bool {
    field.starts_with("ssh-")
        || field.starts_with("ecdsa-sha2-")
        || field.starts_with("sk-")
        || field.contains("-cert-v0")
}

/// Splits the options field, which ends at the first space or tab outside
/// double quotes (`\"` is a quote that neither opens nor closes, as in
/// sshd's `sshkey_advance_past_options`; no other escape exists).
fn split_options_field(text: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = text[i + 1..].starts_with('"');
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && is_blank(c) {
            return Ok((&text[..i], &text[i..]));
        }
    }
    if quoted {
        Err("unterminated quote in options".to_owned())
    } else {
        Err("no key after the options".to_owned())
    }
}

/// Splits `opt1,opt2="a, b",...` into options. A value must be quoted, as
/// sshd requires.
fn parse_options(field: &str) -> Result<Vec<KeyOption>, String> {
    let mut options = Vec::new();
    let mut rest = field;
    loop {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("bad option name {:?}", escape(name)));
        }
        rest = &rest[name_end..];
        let value = match rest.strip_prefix('=') {
            Some(quoted) => {
                let (value, after) = dequote(quoted)
                    .ok_or_else(|| format!("option {name}= needs a double-quoted value"))?;
                rest = after;
                Some(value)
            }
            None => None,
        };
        options.push(KeyOption {
            name: name.to_ascii_lowercase(),
            value,
        });
        if rest.is_empty() {
            return Ok(options);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("text after option {name}"))?;
    }
}

/// Reads `"..."` (with `\"` for a quote) from the start of `text`, returning
/// the value and what follows the closing quote.
fn dequote(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &inner[i + 1..])),
            '\\' if inner[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            _ => value.push(c),
        }
    }
    None
}

/// Options that take a value: `from` and `expiry-time` restrict the key
/// (see [`Restrictions`]); the others are harmless here.
const VALUE_OPTIONS: &[&str] = &[
    "environment",
    "expiry-time",
    "from",
    "permitlisten",
    "permitopen",
    "tunnel",
];

/// Flags that are harmless here: they allow or forbid only things gitmouth
/// never offers (`restrict` forbids them all; only git runs anyway), or
/// (`no-touch-required`) are exposed for the caller.
const FLAG_OPTIONS: &[&str] = &[
    "agent-forwarding",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "port-forwarding",
    "pty",
    "restrict",
    "user-rc",
    "x11-forwarding",
];

/// Options naming a restriction or a mode gitmouth cannot honour: the line
/// is refused rather than used without it.
const REFUSED_OPTIONS: &[&str] = &["cert-authority", "command", "principals", "verify-required"];

/// Refuses lines whose options cannot be honoured, or which sshd itself
/// would refuse (unknown options, a flag with a value or a missing value,
/// a `from=` or `expiry-time=` that cannot be read); returns what the
/// options restrict.
fn check_options(options: &[KeyOption]) -> Result<Restrictions, String> {
    let mut restrictions = Restrictions::default();
    for option in options {
        let name = option.name.as_str();
        if REFUSED_OPTIONS.contains(&name) {
            let spelled = if option.value.is_some() {
                format!("{name}=")
            } else {
                name.to_owned()
            };
            return Err(format!("{spelled} is not supported by gitmouth"));
        }
        let takes_value = VALUE_OPTIONS.contains(&name);
        if !takes_value && !FLAG_OPTIONS.contains(&name) {
            return Err(format!("unknown option {name:?}"));
        }
        if takes_value != option.value.is_some() {
            return Err(if takes_value {
                format!("option {name} needs a value")
            } else {
                format!("option {name} takes no value")
            });
        }
        match (name, option.value.as_deref()) {
            ("from", Some(value)) => restrictions.add_from(value)?,
            ("expiry-time", Some(value)) => restrictions.add_expiry(value)?,
            _ => {}
        }
    }
    Ok(restrictions)
}

/// Decodes `type base64` into a key gitmouth will accept.
fn parse_key(type_name: &str, base64: &str) -> Result<KeyData, String> {
    if type_name == "ssh-dss" {
        return Err("ssh-dss (DSA) keys are refused".to_owned());
    }
    let blob = Base64::decode_vec(base64).map_err(|_| "key is not valid base64".to_owned())?;
    let key = PublicKey::from_bytes(&blob)
        .map_err(|e| format!("key cannot be read: {e}"))?
        .key_data()
        .clone();
    let algorithm = key.algorithm();
    if algorithm.as_str() != type_name {
        return Err(format!(
            "key type {:?} does not match the key, which is {}",
            escape(type_name),
            algorithm.as_str()
        ));
    }
    match &key {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(key),
        KeyData::Rsa(rsa) => {
            let bits = rsa_bits(rsa.n().as_positive_bytes().unwrap_or_default());
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is too small (at least {MIN_RSA_BITS})"
                ))
            } else if bits > MAX_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is too large (at most {MAX_RSA_BITS})"
                ))
            } else {
                Ok(key)
            }
        }
        KeyData::Dsa(_) => Err("ssh-dss (DSA) keys are refused".to_owned()),
        KeyData::Certificate(_) => Err("certificates are not supported by gitmouth".to_owned()),
        _ => Err(format!("unsupported key type {}", algorithm.as_str())),
    }
}

/// The exact bit length of a big-endian modulus without leading zeros.
/// ssh-key's own `key_size` rounds up to whole bytes, which would let a
/// 2041-bit key pass as 2048.
fn rsa_bits(n: &[u8]) -> u32 {
    let Some((&first, rest)) = n.split_first() else {
        return 0;
    };
    let rest_bits = u32::try_from(rest.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(8);
    rest_bits.saturating_add(8 - first.leading_zeros())
}

/// A short, printable rendering of file text for an error reason.
fn escape(text: &str) -> String {
    text.chars().take(64).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const ED25519: &str = include_str!("testdata/ed25519.pub");
    const ALICE: &str = include_str!("testdata/ed25519_alice.pub");
    const NO_COMMENT: &str = include_str!("testdata/ed25519_nocomment.pub");
    const P256: &str = include_str!("testdata/ecdsa_p256.pub");
    const P384: &str = include_str!("testdata/ecdsa_p384.pub");
    const P521: &str = include_str!("testdata/ecdsa_p521.pub");
    const RSA_1024: &str = include_str!("testdata/rsa_1024.pub");
    const RSA_2048: &str = include_str!("testdata/rsa_2048.pub");
    const RSA_3072: &str = include_str!("testdata/rsa_3072.pub");
    const DSA: &str = include_str!("testdata/dsa.pub");
    const SK_ED25519: &str = include_str!("testdata/sk_ed25519.pub");
    const SK_P256: &str = include_str!("testdata/sk_ecdsa_p256.pub");

    /// `type base64` of a fixture, without comment or newline.
    fn key_part(pub_line: &str) -> String {
        let mut fields = pub_line.split_whitespace();
        format!("{} {}", fields.next().unwrap(), fields.next().unwrap())
    }

    fn blob(pub_line: &str) -> Vec<u8> {
        Base64::decode_vec(pub_line.split_whitespace().nth(1).unwrap()).unwrap()
    }

    fn parse_ok(text: &str) -> AuthorizedKeys {
        let (keys, errors) = AuthorizedKeys::parse(text);
        assert_eq!(errors, [], "{text:?}");
        keys
    }

    fn only_error(text: &str) -> LineError {
        let (keys, errors) = AuthorizedKeys::parse(text);
        assert!(keys.is_empty(), "{text:?}");
        assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn a_pub_file_is_an_authorized_keys_file() {
        let keys = parse_ok(ED25519);
        assert_eq!(keys.len(), 1);
        let entry = keys.find_blob(&blob(ED25519)).unwrap();
        assert_eq!(entry.user, "ed25519@gitmouth-test");
        assert_eq!(entry.line, 1);
        assert!(entry.options.is_empty());
        assert_eq!(entry.key.to_openssh().unwrap(), ED25519.trim_end());
    }

    #[test]
    fn every_accepted_key_type() {
        let accepted = [
            (ED25519, "ed25519@gitmouth-test"),
            (P256, "ecdsab256@gitmouth-test"),
            (P384, "ecdsab384@gitmouth-test"),
            (P521, "ecdsab521@gitmouth-test"),
            (RSA_2048, "rsab2048@gitmouth-test"),
            (RSA_3072, "rsab3072@gitmouth-test"),
            (SK_ED25519, "sk-ed25519@gitmouth-test"),
            (SK_P256, "sk-ecdsa@gitmouth-test"),
        ];
        let file: String = accepted.iter().map(|(line, _)| *line).collect();
        let keys = parse_ok(&file);
        assert_eq!(keys.len(), accepted.len());
        for (i, (line, user)) in accepted.iter().enumerate() {
            let entry = keys.find_blob(&blob(line)).unwrap();
            assert_eq!(entry.user, *user);
            assert_eq!(entry.line, i + 1);
            let parsed = PublicKey::from_openssh(line).unwrap();
            assert_eq!(keys.find(parsed.key_data()).unwrap().line, i + 1);
        }
        let order: Vec<usize> = keys.iter().map(|k| k.line).collect();
        assert_eq!(order, (1..=accepted.len()).collect::<Vec<_>>());
    }

    #[test]
    fn weak_and_unsupported_keys_are_refused() {
        let cases = [
            (
                RSA_1024,
                "RSA key of 1024 bits is too small (at least 2048)",
            ),
            (DSA, "ssh-dss (DSA) keys are refused"),
        ];
        for (line, reason) in cases {
            let error = only_error(line);
            assert_eq!(error.reason, reason);
            assert_eq!(error.line, 1);
        }
        // A DSA blob under another name is still found out.
        let disguised = format!("ssh-rsa {} x", DSA.split_whitespace().nth(1).unwrap());
        assert!(only_error(&disguised).reason.contains("does not match"));
    }

    #[test]
    fn rsa_bit_length_is_exact() {
        assert_eq!(rsa_bits(&[]), 0);
        assert_eq!(rsa_bits(&[1]), 1);
        assert_eq!(rsa_bits(&[0x80]), 8);
        assert_eq!(rsa_bits(&[0x01, 0]), 9);
        let mut n = vec![0xffu8; 256];
        assert_eq!(rsa_bits(&n), 2048);
        n[0] = 0x7f;
        assert_eq!(rsa_bits(&n), 2047);
        n[0] = 0x01;
        assert_eq!(rsa_bits(&n), 2041);
    }

    #[test]
    fn options_with_quoted_commas_and_spaces() {
        let file = format!(
            "no-pty,environment=\"A=b, c d\",permitopen=\"h:1\",No-Port-Forwarding {} a b  c \n",
            key_part(ALICE)
        );
        let keys = parse_ok(&file);
        let entry = keys.find_blob(&blob(ALICE)).unwrap();
        assert_eq!(
            entry.options,
            [
                KeyOption {
                    name: "no-pty".into(),
                    value: None
                },
                KeyOption {
                    name: "environment".into(),
                    value: Some("A=b, c d".into())
                },
                KeyOption {
                    name: "permitopen".into(),
                    value: Some("h:1".into())
                },
                KeyOption {
                    name: "no-port-forwarding".into(),
                    value: None
                },
            ]
        );
        assert_eq!(entry.user, "a b  c");
        assert!(entry.has_option("NO-PTY"));
        assert_eq!(
            entry.option("environment").unwrap().value.as_deref(),
            Some("A=b, c d")
        );
        assert!(!entry.has_option("restrict"));
        assert!(entry.touch_required());
    }

    #[test]
    fn escaped_quotes_in_values() {
        let file = format!(
            "environment=\"X=say \\\"hi, there\\\" \\\\n\",restrict {}\n",
            key_part(ED25519)
        );
        let keys = parse_ok(&file);
        let entry = keys.iter().next().unwrap();
        assert_eq!(
            entry.option("environment").unwrap().value.as_deref(),
            Some("X=say \"hi, there\" \\\\n")
        );
        assert!(entry.has_option("restrict"));
        // No comment: the user is the fingerprint.
        assert_eq!(
            entry.user,
            "SHA256:q7QMeK31xOKSauuFOL69pdaomaUTp9aFkLXG1LBjFPU"
        );
    }

    #[test]
    fn restrictions_we_cannot_enforce_are_refused() {
        let key = key_part(ED25519);
        let cases = [
            (
                format!("command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {key}"),
                "command= is not supported by gitmouth",
            ),
            (
                format!("no-pty,command=\"x y\",no-pty {key}"),
                "command= is not supported by gitmouth",
            ),
            (
                format!("principals=\"git\" {key}"),
                "principals= is not supported by gitmouth",
            ),
            (
                format!("from=\"10.0.0.1/8\" {key}"),
                "from= entry \"10.0.0.1/8\" has address bits set past its mask (the network is 10.0.0.0/8)",
            ),
            (
                format!("from=\"10.0.0.1\",FROM=\"10.0.0.2\" {key}"),
                "from= given twice",
            ),
            (format!("from {key}"), "option from needs a value"),
            (
                format!("expiry-time=\"2030\" {key}"),
                "expiry-time \"2030\": not a time (YYYYMMDD[HHMM[SS]], UTC)",
            ),
            (
                format!("cert-authority {key}"),
                "cert-authority is not supported by gitmouth",
            ),
            (
                format!("cert-authority,principals=\"git\" {key}"),
                "cert-authority is not supported by gitmouth",
            ),
            (
                format!("verify-required {key}"),
                "verify-required is not supported by gitmouth",
            ),
            (format!("frobnicate {key}"), "unknown option \"frobnicate\""),
            (
                format!("no-pty=\"1\" {key}"),
                "option no-pty takes no value",
            ),
            (
                format!("permitopen {key}"),
                "option permitopen needs a value",
            ),
            (
                format!("from=10.0.0.1 {key}"),
                "option from= needs a double-quoted value",
            ),
            (format!("command=\"x\"y {key}"), "text after option command"),
            (format!("no-pty,,no-pty {key}"), "bad option name \"\""),
            (
                format!("command=\"x {key}"),
                "unterminated quote in options",
            ),
            ("no-pty".to_owned(), "no key after the options"),
            ("no-pty x".to_owned(), "no key on the line"),
        ];
        for (line, reason) in cases {
            let error = only_error(&line);
            assert_eq!(error.reason, reason, "{line}");
        }
    }

    #[test]
    fn refused_line_does_not_hide_a_later_one() {
        let key = key_part(ED25519);
        let file = format!("command=\"x\" {key} first\n{key} second\n{key} third\n");
        let (keys, errors) = AuthorizedKeys::parse(&file);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
        assert_eq!(keys.len(), 1);
        let entry = keys.find_blob(&blob(ED25519)).unwrap();
        assert_eq!((entry.line, entry.user.as_str()), (2, "second"));
    }

    #[test]
    fn from_and_expiry_time_are_judged_at_login() {
        let key = key_part(ED25519);
        let ip = |s: &str| s.parse::<core::net::IpAddr>().unwrap();
        // 2030-01-01 and a minute before.
        let (expiry, before) = (1_893_456_000, 1_893_455_940);
        let file = format!(
            "restrict,from=\"!127.0.0.9,127.0.0.0/8\",no-pty {key} local\n\
             expiry-time=\"20300101\",from=\"192.0.2.*\" {key} office\n\
             {} alice\n",
            key_part(ALICE)
        );
        let keys = parse_ok(&file);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.iter().count(), 3);
        let who = |client: &str, now| match keys.admit(&blob(ED25519), ip(client), now) {
            Admission::Admitted(entry) => Ok(entry.user.clone()),
            Admission::Unknown => Err(Vec::new()),
            Admission::Refused(refusals) => Err(refusals),
        };
        assert_eq!(who("127.0.0.1", before), Ok("local".to_owned()));
        assert_eq!(who("::ffff:127.0.0.1", before), Ok("local".to_owned()));
        assert_eq!(who("192.0.2.7", before), Ok("office".to_owned()));
        assert_eq!(who("192.0.2.7", expiry), Ok("office".to_owned()));
        let late = who("192.0.2.7", expiry + 1).unwrap_err();
        assert_eq!(
            late.iter().map(|r| r.line).collect::<Vec<_>>(),
            [1, 2],
            "{late:?}"
        );
        assert_eq!(late[1].refusal, KeyRefusal::Expired(expiry));
        assert_eq!(
            late[0].to_string(),
            "line 1: from=\"!127.0.0.9,127.0.0.0/8\": client 192.0.2.7 matches no entry"
        );
        let excluded = who("127.0.0.9", before).unwrap_err();
        assert_eq!(excluded.len(), 2);
        assert!(excluded[0].to_string().contains("excluded by !127.0.0.9"));
        // A key on no line, and a key on a line without restrictions.
        assert!(matches!(
            keys.admit(&blob(P256), ip("127.0.0.1"), before),
            Admission::Unknown
        ));
        assert!(matches!(
            keys.admit(&blob(ALICE), ip("203.0.113.1"), u64::MAX),
            Admission::Admitted(entry) if entry.user == "alice"
        ));
        // find_blob still gives the first line, whatever it restricts.
        assert_eq!(keys.find_blob(&blob(ED25519)).unwrap().user, "local");
    }

    #[test]
    fn first_duplicate_wins() {
        let key = key_part(ALICE);
        let file = format!("{key} first\nno-pty {key} second\n{}", RSA_2048);
        let keys = parse_ok(&file);
        assert_eq!(keys.len(), 2);
        let entry = keys.find_blob(&blob(ALICE)).unwrap();
        assert_eq!((entry.line, entry.user.as_str()), (1, "first"));
        assert!(entry.options.is_empty());
        assert_eq!(keys.find_blob(&blob(RSA_2048)).unwrap().line, 3);
    }

    #[test]
    fn comments_blank_lines_crlf_and_tabs() {
        let file = format!(
            "# keys for the team\r\n\r\n   \r\n\t# indented comment\r\n{}\r\n\t no-pty\t{}\t\tAlice  Example\t\r\n",
            ALICE.trim_end(),
            key_part(RSA_2048).replace(' ', "\t")
        );
        let keys = parse_ok(&file);
        assert_eq!(keys.len(), 2);
        let alice = keys.find_blob(&blob(ALICE)).unwrap();
        assert_eq!(alice.line, 5);
        assert_eq!(alice.user, "Alice Example <alice@example.com>");
        assert_eq!(alice.key.comment().as_str_lossy(), alice.user);
        let rsa = keys.find_blob(&blob(RSA_2048)).unwrap();
        assert_eq!(rsa.line, 6);
        assert_eq!(rsa.user, "Alice  Example");
        assert!(rsa.has_option("no-pty"));
    }

    #[test]
    fn empty_comment_gives_the_fingerprint() {
        // ssh-keygen -C '' writes a trailing space.
        assert!(NO_COMMENT.ends_with(" \n"));
        let keys = parse_ok(NO_COMMENT);
        assert_eq!(
            keys.iter().next().unwrap().user,
            "SHA256:3bslbvvVyw8o3UUPu1PRJgv+ciGnqR2kAnItXGX6eXc"
        );
    }

    #[test]
    fn control_characters_in_comments_are_replaced() {
        let file = format!("{} eve\x1b[2K\x07 \u{85}x\r\n", key_part(ED25519));
        let keys = parse_ok(&file);
        assert_eq!(keys.iter().next().unwrap().user, "eve?[2K? ?x");
    }

    #[test]
    fn garbage_lines_are_reported_and_skipped() {
        let good = key_part(ED25519);
        let mut ed_blob = blob(ED25519);
        let truncated = Base64::encode_string(&ed_blob[..ed_blob.len() - 1]);
        ed_blob.push(0);
        let trailing = Base64::encode_string(&ed_blob);
        let file = [
            "garbage",
            "ssh-ed25519",
            "ssh-ed25519 !!!notbase64!!!",
            "ssh-ed25519 AAAA",
            &format!("ssh-ed25519 {truncated}"),
            &format!("ssh-ed25519 {trailing}"),
            &format!("ecdsa-sha2-nistp256 {}", good.split(' ').nth(1).unwrap()),
            "ssh-foo AAAAB3NzaC1mb28AAAAA",
            "\u{feff}ssh-ed25519 AAAA",
            &format!("{good} the one good line"),
            "-----BEGIN OPENSSH PRIVATE KEY-----",
        ]
        .join("\n");
        let (keys, errors) = AuthorizedKeys::parse(&file);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.iter().next().unwrap().line, 10);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
    }

    #[test]
    fn lookups_miss_for_unknown_and_noncanonical_blobs() {
        let keys = parse_ok(ED25519);
        assert!(keys.find_blob(&blob(ALICE)).is_none());
        assert!(keys.find_blob(&[]).is_none());
        let mut longer = blob(ED25519);
        longer.push(0);
        assert!(keys.find_blob(&longer).is_none());
        let alice = PublicKey::from_openssh(ALICE).unwrap();
        assert!(keys.find(alice.key_data()).is_none());
        let empty = AuthorizedKeys::empty();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(empty.find_blob(&blob(ED25519)).is_none());
    }

    #[test]
    fn security_key_options() {
        let file = format!("no-touch-required {}", SK_ED25519);
        let keys = parse_ok(&file);
        assert!(!keys.iter().next().unwrap().touch_required());
        let keys = parse_ok(SK_ED25519);
        assert!(keys.iter().next().unwrap().touch_required());
    }

    #[test]
    fn options_field_splitting() {
        assert_eq!(
            split_options_field("a=\"x y\",b c d").unwrap(),
            ("a=\"x y\",b", " c d")
        );
        assert_eq!(
            split_options_field("a=\"x\\\" y\" k").unwrap(),
            ("a=\"x\\\" y\"", " k")
        );
        // sshd: a backslash escapes only a quote, so `\\"` is a backslash
        // and an escaped quote, and the value goes on.
        assert_eq!(
            split_options_field("a=\"x\\\\\" y\" k").unwrap(),
            ("a=\"x\\\\\" y\"", " k")
        );
        assert_eq!(dequote("\"a\\\"b\",c"), Some(("a\"b".to_owned(), ",c")));
        assert_eq!(dequote("\"a\\b\""), Some(("a\\b".to_owned(), "")));
        assert_eq!(dequote("\"abc"), None);
        assert_eq!(dequote("abc"), None);
    }

    proptest! {
        #[test]
        fn random_text_never_panics(text in any::<String>()) {
            let _ = AuthorizedKeys::parse(&text);
        }

        #[test]
        fn text_near_the_format_never_panics(
            text in "[a-z=\",\\\\ \t\r\n#-]{0,40}",
            key in prop::sample::select(vec![ED25519, P256, RSA_2048, SK_P256]),
        ) {
            let (keys, errors) = AuthorizedKeys::parse(&format!("{text}{key}"));
            // Every line is either a key, an error, or blank/comment.
            prop_assert!(keys.len() + errors.len() <= text.matches('\n').count() + 2);
        }

        #[test]
        fn any_comment_is_kept_safely(comment in any::<String>()) {
            let line = format!("{} {comment}", key_part(ED25519));
            let (keys, _) = AuthorizedKeys::parse(&line);
            // A comment may hold a newline, which ends the line: the key
            // line itself is still read.
            let entry = keys.find_blob(&blob(ED25519)).unwrap();
            prop_assert!(!entry.user.chars().any(char::is_control));
            prop_assert!(!entry.user.is_empty());
        }
    }
}
