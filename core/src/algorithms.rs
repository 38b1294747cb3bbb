//! Algorithm lists as sshd takes them (`KexAlgorithms`, `Ciphers`, `MACs`,
//! `HostKeyAlgorithms`, `PubkeyAcceptedAlgorithms`): a comma-separated list
//! that replaces the default, or, with a leading `+`, is appended to it;
//! with `-`, removed from it (`*` and `?` match any run or any one
//! character); with `^`, put at its head.
//!
//! A pure function over names: the runtime's configuration maps the result
//! to the algorithms themselves. Every name must be one we implement, and
//! the list may not end up empty.

/// Why a list setting is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// No name at all (an empty value, or only a prefix).
    Empty,
    /// A name we do not implement.
    Unknown(String),
    /// Removing these leaves nothing to offer.
    NothingLeft,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("the list is empty"),
            Self::Unknown(name) => write!(f, "unknown algorithm {name:?}"),
            Self::NothingLeft => f.write_str("the list leaves no algorithm"),
        }
    }
}

/// Applies `spec` to `default`; `known` is every name we implement (in no
/// particular order). The result has each name once, in preference order.
pub fn apply(
    spec: &str,
    default: &[&'static str],
    known: &[&'static str],
) -> Result<Vec<&'static str>, ListError> {
    let spec = spec.trim();
    let (op, rest) = match spec.chars().next() {
        Some(c @ ('+' | '-' | '^')) => (Some(c), &spec[1..]),
        _ => (None, spec),
    };
    let names: Vec<&str> = rest
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(ListError::Empty);
    }
    let result: Vec<&'static str> = if op == Some('-') {
        default
            .iter()
            .copied()
            .filter(|d| !names.iter().any(|pattern| matches(pattern, d)))
            .collect()
    } else {
        let mut listed: Vec<&'static str> = Vec::new();
        for name in &names {
            let found = known
                .iter()
                .copied()
                .find(|k| k == name)
                .ok_or_else(|| ListError::Unknown((*name).to_owned()))?;
            if !listed.contains(&found) {
                listed.push(found);
            }
        }
        match op {
            Some('+') => {
                let mut all = default.to_vec();
                all.extend(listed.into_iter().filter(|n| !default.contains(n)));
                all
            }
            Some('^') => {
                let rest: Vec<&'static str> = default
                    .iter()
                    .copied()
                    .filter(|d| !listed.contains(d))
                    .collect();
                listed.into_iter().chain(rest).collect()
            }
            _ => listed,
        }
    };
    if result.is_empty() {
        return Err(ListError::NothingLeft);
    }
    Ok(result)
}

/// sshd's pattern match: `*` any run of characters, `?` any one.
fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KNOWN: [&str; 4] = ["a-1", "b-2", "c-3", "d-4"];
    const DEFAULT: [&str; 3] = ["a-1", "b-2", "c-3"];

    fn apply_(spec: &str) -> Result<Vec<&'static str>, ListError> {
        apply(spec, &DEFAULT, &KNOWN)
    }

    #[test]
    fn the_four_forms() {
        assert_eq!(apply_("c-3,a-1"), Ok(vec!["c-3", "a-1"]));
        assert_eq!(apply_("+d-4"), Ok(vec!["a-1", "b-2", "c-3", "d-4"]));
        assert_eq!(apply_("+b-2"), Ok(vec!["a-1", "b-2", "c-3"]));
        assert_eq!(apply_("-b-2"), Ok(vec!["a-1", "c-3"]));
        assert_eq!(apply_("-*-2,c?3"), Ok(vec!["a-1"]));
        assert_eq!(apply_("^c-3"), Ok(vec!["c-3", "a-1", "b-2"]));
        assert_eq!(apply_("^d-4,b-2"), Ok(vec!["d-4", "b-2", "a-1", "c-3"]));
        assert_eq!(apply_(" a-1 , a-1 "), Ok(vec!["a-1"]));
    }

    #[test]
    fn bad_lists_are_refused_with_what_is_wrong() {
        assert_eq!(apply_(""), Err(ListError::Empty));
        assert_eq!(apply_("+"), Err(ListError::Empty));
        assert_eq!(apply_(",,"), Err(ListError::Empty));
        assert_eq!(apply_("a-1,z-9"), Err(ListError::Unknown("z-9".into())));
        assert_eq!(
            apply_("+ssh-rsa"),
            Err(ListError::Unknown("ssh-rsa".into()))
        );
        assert_eq!(apply_("-*"), Err(ListError::NothingLeft));
        assert_eq!(
            ListError::Unknown("z\n".into()).to_string(),
            "unknown algorithm \"z\\n\""
        );
    }

    proptest! {
        /// Whatever the spec, the result is a non-empty list of known
        /// names without repeats, or a refusal.
        #[test]
        fn results_are_known_and_unique(spec in "[-+^]?[a-d?*,0-9 -]{0,20}") {
            if let Ok(list) = apply_(&spec) {
                prop_assert!(!list.is_empty());
                for (i, n) in list.iter().enumerate() {
                    prop_assert!(KNOWN.contains(n));
                    prop_assert!(!list[..i].contains(n));
                }
            }
        }
    }
}
