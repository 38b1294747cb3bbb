//! Target `authorized_keys`: OpenSSH `authorized_keys` text (sshd(8),
//! "AUTHORIZED_KEYS FILE FORMAT"), from arbitrary bytes read as lossy UTF-8.
//!
//! Besides "no panic", the body checks: usable lines come in file order,
//! each key found again (at its first line); line numbers are real and a
//! line is either usable, an error or skipped; no refused option survives;
//! option names are lower case; the user shown in logs has no control
//! characters; a login is admitted by a line whose restrictions allow it,
//! or refused by every line of the key.

use std::collections::HashSet;

use gitmouth_core::app::authorized_keys::{Admission, AuthorizedKeys};

/// Options the core must never accept (it cannot honour them).
const REFUSED: &[&str] = &["cert-authority", "command", "principals", "verify-required"];

/// The body of the `authorized_keys` target.
pub fn authorized_keys(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (keys, errors) = AuthorizedKeys::parse(&text);
    let lines = text.split('\n').count();
    let distinct: HashSet<Vec<u8>> = keys.iter().filter_map(|k| k.key.to_bytes().ok()).collect();
    assert_eq!(keys.len(), distinct.len());
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
        assert!(found.line <= key.line, "not the key's first line");
        if let Ok(blob) = key.key.to_bytes() {
            // From an address of the documentation range, at a fixed time.
            let client = core::net::IpAddr::from([192, 0, 2, 7]);
            let now = 1_800_000_000;
            match keys.admit(&blob, client, now) {
                Admission::Admitted(line) => {
                    assert!(line.restrictions.check(client, now).is_ok());
                    if key.restrictions.check(client, now).is_ok() {
                        assert!(line.line <= key.line, "not the first line that admits");
                    }
                }
                Admission::Refused(refusals) => {
                    assert!(refusals.iter().any(|r| r.line == key.line));
                }
                Admission::Unknown => panic!("line {}'s key is unknown", key.line),
            }
        }
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
