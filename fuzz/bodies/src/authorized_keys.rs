//! Target `authorized_keys`: OpenSSH `authorized_keys` text (sshd(8),
//! "AUTHORIZED_KEYS FILE FORMAT"), from arbitrary bytes read as lossy UTF-8.
//!
//! Besides "no panic", the body checks: usable keys come in file order, one
//! per key (the first line wins), each found again by its own key; line
//! numbers are real and a line is either usable, an error or skipped; no
//! refused option survives; option names are lower case; the user shown in
//! logs has no control characters.

use gitmouth_core::app::authorized_keys::AuthorizedKeys;

/// Options the core must never accept (it cannot honour them).
const REFUSED: &[&str] = &[
    "cert-authority",
    "command",
    "expiry-time",
    "from",
    "principals",
    "verify-required",
];

/// The body of the `authorized_keys` target.
pub fn authorized_keys(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (keys, errors) = AuthorizedKeys::parse(&text);
    let lines = text.split('\n').count();
    assert_eq!(keys.len(), keys.iter().count());
    assert_eq!(keys.is_empty(), keys.iter().next().is_none());

    let mut previous = 0;
    for key in keys.iter() {
        assert!(
            previous < key.line && key.line <= lines,
            "line {} after {previous}",
            key.line
        );
        previous = key.line;
        let Some(found) = keys.find(key.key.key_data()) else {
            panic!("the key of line {} is not found again", key.line);
        };
        assert_eq!(found.line, key.line, "a key listed twice");
        assert!(
            !key.user.chars().any(char::is_control),
            "control character in {:?}",
            key.user
        );
        for option in &key.options {
            assert_eq!(option.name, option.name.to_ascii_lowercase());
            assert!(
                !REFUSED.contains(&option.name.as_str()),
                "{} accepted",
                option.name
            );
        }
    }

    let mut previous = 0;
    for error in &errors {
        assert!(
            previous < error.line && error.line <= lines,
            "error line {} after {previous}",
            error.line
        );
        previous = error.line;
        assert!(!error.reason.is_empty());
        assert!(
            keys.iter().all(|k| k.line != error.line),
            "line {} both used and refused",
            error.line
        );
    }
}
