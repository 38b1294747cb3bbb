//! Standalone mode's access file (`--access FILE`): who may read, write
//! and create which repository, and deploy keys. Parsed here from its text;
//! the runtime reads the file and hands the rules to sessions as data.
//!
//! ```toml
//! [groups]
//! devs = ["alice", "bob"]
//!
//! [[repo]]
//! name = "team/*"        # a name or a glob
//! read = ["@devs", "ci"]
//! write = ["@devs"]
//! create = ["alice"]
//! object-format = "sha256" # of a repository a push creates (optional)
//!
//! [default]               # repositories no rule names
//! read = []
//! write = []
//! create = []
//!
//! [[deploy]]              # a key that reaches one repository
//! key = "SHA256:..."      # its fingerprint, or its name in authorized_keys
//! repo = "team/site"
//! write = false
//! ```
//!
//! The decision ([`AccessRules::allows`]):
//! - A key that a `[[deploy]]` entry names (by fingerprint or by its
//!   `authorized_keys` name) is a deploy key: it reaches only the
//!   repositories its entries name, reads them, writes them only where
//!   `write = true`, and never creates. No `[[repo]]` rule applies to it.
//! - Otherwise the repository's rule is the first `[[repo]]` whose name is
//!   exactly the repository's; failing that, the first (in file order)
//!   whose glob matches; failing that, `[default]`; without `[default]`,
//!   nobody may touch it. Only that one rule decides.
//! - In a glob, `*` matches any characters but `/`, `?` one character but
//!   `/`. A name without `*` or `?` is an exact name.
//! - `write` implies `read`; `create` (the push that creates a missing
//!   repository) is its own right.
//! - A list holds user names and `@group`s.
//! - A repository a push creates gets the `object-format` (`sha1` or
//!   `sha256`) of the rule that decides for it, if that rule has one;
//!   otherwise the server's `--default-object-format`
//!   ([`AccessRules::object_format_for`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::app::command::RepoName;
use crate::app::repo_format::ObjectFormat;

/// What a command does to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `git-upload-pack`, `git-upload-archive`: clone, fetch, archive.
    Read,
    /// `git-receive-pack` to an existing repository.
    Write,
    /// `git-receive-pack` that creates the repository.
    Create,
}

/// The users a rule gives one right to, groups expanded.
pub type Users = BTreeSet<String>;

/// Who may read, write and create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// May clone, fetch and archive.
    pub read: Users,
    /// May push (and so read).
    pub write: Users,
    /// May create the repository by pushing to it.
    pub create: Users,
}

impl Rights {
    fn allows(&self, user: &str, op: Operation) -> bool {
        match op {
            Operation::Read => self.read.contains(user) || self.write.contains(user),
            Operation::Write => self.write.contains(user),
            Operation::Create => self.create.contains(user),
        }
    }

    /// The rights `user` has here, as words: `read, write, create`.
    fn describe(&self, user: &str) -> Option<String> {
        let words: Vec<&str> = [
            (Operation::Read, "read"),
            (Operation::Write, "write"),
            (Operation::Create, "create"),
        ]
        .into_iter()
        .filter(|(op, _)| self.allows(user, *op))
        .map(|(_, w)| w)
        .collect();
        (!words.is_empty()).then(|| words.join(", "))
    }
}

/// One `[[repo]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRule {
    /// The name or glob.
    pub name: String,
    /// Whether `name` holds `*` or `?`.
    pub glob: bool,
    /// Who may do what.
    pub rights: Rights,
    /// The object format of a repository it decides for that a push
    /// creates (`None`: the server's default).
    pub object_format: Option<ObjectFormat>,
}

/// One `[[deploy]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployKey {
    /// The key's SHA256 fingerprint (`SHA256:…`) or its name in
    /// `authorized_keys`.
    pub key: String,
    /// The one repository it reaches.
    pub repo: String,
    /// Whether it may push.
    pub write: bool,
}

impl DeployKey {
    fn is(&self, user: &str, fingerprint: &str) -> bool {
        if self.key.starts_with("SHA256:") {
            self.key.trim_end_matches('=') == fingerprint.trim_end_matches('=')
        } else {
            self.key == user
        }
    }
}

/// The parsed access file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRules {
    /// The `[[repo]]` rules, in file order.
    pub repos: Vec<RepoRule>,
    /// `[default]`, if the file has one.
    pub default: Option<Rights>,
    /// The `[[deploy]]` entries.
    pub deploys: Vec<DeployKey>,
    /// The members of each `[groups]` group.
    pub groups: BTreeMap<String, Users>,
}

/// The access file cannot be used: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessError {
    /// The line (from 1) at fault.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AccessError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    repo: Vec<RawRepo>,
    default: Option<RawRights>,
    #[serde(default)]
    deploy: Vec<RawDeploy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    name: Spanned<String>,
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    create: Vec<Spanned<String>>,
    #[serde(rename = "object-format")]
    object_format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRights {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    create: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    key: Spanned<String>,
    repo: Spanned<String>,
    #[serde(default)]
    write: bool,
}

/// The line (from 1) holding byte `at` of `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Whether `s` is a repository name, or a glob that would be one with its
/// `*` and `?` replaced by a letter.
fn is_name_or_glob(s: &str) -> bool {
    RepoName::parse(&s.replace(['*', '?'], "x")).is_some()
}

/// `*` matches any characters but `/`, `?` one character but `/`.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match g.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => {
                // Any run of non-'/' bytes, shortest first.
                let mut i = 0;
                loop {
                    if go(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((b'?', rest)) => n
                .split_first()
                .is_some_and(|(c, tail)| *c != b'/' && go(rest, tail)),
            Some((c, rest)) => n
                .split_first()
                .is_some_and(|(d, tail)| c == d && go(rest, tail)),
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

impl AccessRules {
    /// Parses the access file's text.
    pub fn parse(text: &str) -> Result<AccessRules, AccessError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| AccessError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().to_owned(),
        })?;
        let err = |span: std::ops::Range<usize>, message: String| AccessError {
            line: line_of(text, span.start),
            message,
        };
        for members in raw.groups.values() {
            for m in members {
                if m.get_ref().starts_with('@') || m.get_ref().is_empty() {
                    return Err(err(
                        m.span(),
                        format!("a group holds user names, not {:?}", m.get_ref()),
                    ));
                }
            }
        }
        let expand = |list: &[Spanned<String>]| -> Result<Users, AccessError> {
            let mut users = Users::new();
            for entry in list {
                let name = entry.get_ref();
                if let Some(group) = name.strip_prefix('@') {
                    let members = raw
                        .groups
                        .get(group)
                        .ok_or_else(|| err(entry.span(), format!("unknown group {:?}", name)))?;
                    users.extend(members.iter().map(|m| m.get_ref().clone()));
                } else if name.is_empty() {
                    return Err(err(entry.span(), "an empty user name".to_owned()));
                } else {
                    users.insert(name.clone());
                }
            }
            Ok(users)
        };
        let rights = |r: &RawRights| -> Result<Rights, AccessError> {
            Ok(Rights {
                read: expand(&r.read)?,
                write: expand(&r.write)?,
                create: expand(&r.create)?,
            })
        };
        let mut repos = Vec::new();
        for r in &raw.repo {
            let name = r.name.get_ref();
            if !is_name_or_glob(name) {
                return Err(err(
                    r.name.span(),
                    format!("{name:?} is not a repository name or glob"),
                ));
            }
            let object_format = r
                .object_format
                .as_ref()
                .map(|f| {
                    ObjectFormat::parse(f.get_ref())
                        .map_err(|why| err(f.span(), format!("object-format: {why}")))
                })
                .transpose()?;
            repos.push(RepoRule {
                name: name.clone(),
                glob: name.contains(['*', '?']),
                rights: Rights {
                    read: expand(&r.read)?,
                    write: expand(&r.write)?,
                    create: expand(&r.create)?,
                },
                object_format,
            });
        }
        let default = raw.default.as_ref().map(rights).transpose()?;
        let mut deploys = Vec::new();
        for d in &raw.deploy {
            if d.key.get_ref().trim().is_empty() {
                return Err(err(d.key.span(), "an empty key".to_owned()));
            }
            if RepoName::parse(d.repo.get_ref()).is_none() {
                return Err(err(
                    d.repo.span(),
                    format!("{:?} is not a repository name", d.repo.get_ref()),
                ));
            }
            deploys.push(DeployKey {
                key: d.key.get_ref().clone(),
                repo: d.repo.get_ref().clone(),
                write: d.write,
            });
        }
        let groups = raw
            .groups
            .iter()
            .map(|(name, members)| {
                let members = members.iter().map(|m| m.get_ref().clone()).collect();
                (name.clone(), members)
            })
            .collect();
        Ok(AccessRules {
            repos,
            default,
            deploys,
            groups,
        })
    }

    /// Whether the file names `user` anywhere: in a group, in a
    /// `[[repo]]` rule or `[default]`, or as a deploy key's
    /// `authorized_keys` name. A certificate with several principals logs
    /// in as the first one the file knows.
    pub fn knows(&self, user: &str) -> bool {
        let in_rights =
            |r: &Rights| r.read.contains(user) || r.write.contains(user) || r.create.contains(user);
        self.groups.values().any(|members| members.contains(user))
            || self.repos.iter().any(|r| in_rights(&r.rights))
            || self.default.as_ref().is_some_and(in_rights)
            || self
                .deploys
                .iter()
                .any(|d| !d.key.starts_with("SHA256:") && d.key == user)
    }

    /// The deploy entries naming this key, if it is a deploy key.
    pub fn deploys_of<'a>(
        &'a self,
        user: &'a str,
        fingerprint: &'a str,
    ) -> impl Iterator<Item = &'a DeployKey> + 'a {
        self.deploys.iter().filter(move |d| d.is(user, fingerprint))
    }

    /// The `[[repo]]` rule that decides for `repo`: its exact rule, else
    /// the first glob matching it.
    pub fn rule_for(&self, repo: &str) -> Option<&RepoRule> {
        self.repos
            .iter()
            .find(|r| !r.glob && r.name == repo)
            .or_else(|| {
                self.repos
                    .iter()
                    .find(|r| r.glob && glob_matches(&r.name, repo))
            })
    }

    /// The rights that decide for `repo`: its exact rule, else the first
    /// glob matching it, else `[default]`.
    pub fn rights_for(&self, repo: &str) -> Option<&Rights> {
        self.rule_for(repo)
            .map(|r| &r.rights)
            .or(self.default.as_ref())
    }

    /// The object format the rule deciding for `repo` gives a repository
    /// a push creates (`None`: the server's default).
    pub fn object_format_for(&self, repo: &str) -> Option<ObjectFormat> {
        self.rule_for(repo).and_then(|r| r.object_format)
    }

    /// Whether the key (`user` from `authorized_keys`, its `fingerprint`)
    /// may do `op` to `repo`.
    pub fn allows(&self, user: &str, fingerprint: &str, repo: &str, op: Operation) -> bool {
        let mut deploys = self.deploys_of(user, fingerprint).peekable();
        if deploys.peek().is_some() {
            return deploys.any(|d| {
                d.repo == repo
                    && match op {
                        Operation::Read => true,
                        Operation::Write => d.write,
                        Operation::Create => false,
                    }
            });
        }
        self.rights_for(repo).is_some_and(|r| r.allows(user, op))
    }

    /// What `ssh -T` lists after the greeting: for a deploy key, its
    /// repositories; otherwise every rule the user has a right in, with
    /// those rights.
    pub fn summary(&self, user: &str, fingerprint: &str) -> String {
        let mut out = String::new();
        let deploys: Vec<&DeployKey> = self.deploys_of(user, fingerprint).collect();
        if !deploys.is_empty() {
            for d in deploys {
                let rights = if d.write { "read, write" } else { "read" };
                out.push_str(&format!("  {} (deploy key): {rights}\n", d.repo));
            }
            return out;
        }
        for r in &self.repos {
            if let Some(words) = r.rights.describe(user) {
                out.push_str(&format!("  {}: {words}\n", r.name));
            }
        }
        if let Some(words) = self.default.as_ref().and_then(|d| d.describe(user)) {
            out.push_str(&format!("  (other repositories): {words}\n"));
        }
        if out.is_empty() {
            out.push_str("  (no repositories)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = r#"
[groups]
devs = ["alice", "bob"]

[[repo]]
name = "team/*"        # a name or a glob
read = ["@devs", "ci"]
write = ["@devs"]
create = ["alice"]

[[repo]]
name = "team/secret"
read = ["alice"]
object-format = "sha256"

[default]
read = ["carol"]

[[deploy]]
key = "SHA256:abc"
repo = "team/site"
write = false

[[deploy]]
key = "builder"
repo = "team/site"
write = true
"#;

    #[test]
    fn the_example_decides_as_documented() {
        use Operation::*;
        let rules = AccessRules::parse(EXAMPLE).unwrap();
        let fp = "SHA256:zzz";
        assert!(rules.allows("alice", fp, "team/site", Create));
        assert!(rules.allows("bob", fp, "team/site", Write));
        assert!(!rules.allows("bob", fp, "team/site", Create));
        assert!(rules.allows("ci", fp, "team/site", Read));
        assert!(!rules.allows("ci", fp, "team/site", Write));
        assert!(!rules.allows("dave", fp, "team/site", Read));
        // The exact name beats the glob.
        assert!(rules.allows("alice", fp, "team/secret", Read));
        assert!(!rules.allows("bob", fp, "team/secret", Read));
        assert!(!rules.allows("alice", fp, "team/secret", Write));
        // `*` stays inside one part; others fall to [default].
        assert!(!rules.allows("alice", fp, "team", Read));
        assert!(rules.allows("carol", fp, "other", Read));
        assert!(!rules.allows("carol", fp, "other", Write));
        // Deploy keys, by fingerprint and by name.
        assert!(rules.allows("x", "SHA256:abc", "team/site", Read));
        assert!(!rules.allows("x", "SHA256:abc", "team/site", Write));
        assert!(!rules.allows("alice", "SHA256:abc", "team/other", Read));
        assert!(rules.allows("builder", fp, "team/site", Write));
        assert!(!rules.allows("builder", fp, "team/site", Create));
        assert!(!rules.allows("builder", fp, "team/web", Read));
        assert_eq!(
            rules.summary("alice", fp),
            "  team/*: read, write, create\n  team/secret: read\n"
        );
        assert_eq!(
            rules.summary("builder", fp),
            "  team/site (deploy key): read, write\n"
        );
        assert_eq!(rules.summary("carol", fp), "  (other repositories): read\n");
        assert_eq!(rules.summary("dave", fp), "  (no repositories)\n");
        // The deciding rule's object format, or none (the default).
        assert_eq!(
            rules.object_format_for("team/secret"),
            Some(ObjectFormat::Sha256)
        );
        assert_eq!(rules.object_format_for("team/site"), None);
        assert_eq!(rules.object_format_for("other"), None);
    }

    #[test]
    fn object_formats_of_the_deciding_rule() {
        let text = "[[repo]]\nname = \"t/*\"\nobject-format = \"sha256\"\n\
                    [[repo]]\nname = \"t/old\"\nobject-format = \"sha1\"\n\
                    [[repo]]\nname = \"t/plain\"\n\
                    [[repo]]\nname = \"*/x\"\nobject-format = \"sha1\"\n";
        let rules = AccessRules::parse(text).unwrap();
        assert_eq!(rules.object_format_for("t/a"), Some(ObjectFormat::Sha256));
        // The exact name beats the glob, even naming sha1.
        assert_eq!(rules.object_format_for("t/old"), Some(ObjectFormat::Sha1));
        // The exact rule decides, without an object format: the default.
        assert_eq!(rules.object_format_for("t/plain"), None);
        // The first glob in file order.
        assert_eq!(rules.object_format_for("t/x"), Some(ObjectFormat::Sha256));
        assert_eq!(rules.object_format_for("u/x"), Some(ObjectFormat::Sha1));
        assert_eq!(rules.object_format_for("u"), None);
    }

    #[test]
    fn the_names_the_file_knows() {
        let rules = AccessRules::parse(EXAMPLE).unwrap();
        for known in ["alice", "bob", "ci", "carol", "builder"] {
            assert!(rules.knows(known), "{known}");
        }
        for unknown in ["dave", "SHA256:abc", "@devs", "devs", ""] {
            assert!(!rules.knows(unknown), "{unknown}");
        }
        // A member of a group no rule uses is known too.
        let rules = AccessRules::parse("[groups]\nlurkers = [\"erin\"]\n").unwrap();
        assert!(rules.knows("erin"));
        assert!(!AccessRules::parse("").unwrap().knows("erin"));
    }

    #[test]
    fn without_default_nobody_touches_unnamed_repositories() {
        let rules = AccessRules::parse("[[repo]]\nname = \"a\"\nread = [\"u\"]\n").unwrap();
        assert!(rules.allows("u", "", "a", Operation::Read));
        assert!(!rules.allows("u", "", "b", Operation::Read));
        assert!(AccessRules::parse("").unwrap().default.is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "[groups]\ndevs = [\"a\"]\n[[repo]]\nname = \"x\"\nread = [\"@ops\"]\n",
                5,
                "unknown group",
            ),
            (
                "[[repo]]\nname = \"x\"\n\nwrite = [\"@nobody\"]\n",
                4,
                "unknown group",
            ),
            ("[default]\ncreate = [\"@g\"]\n", 2, "unknown group"),
            ("\n\n[[repo]\nname = \"x\"\n", 3, ""),
            ("[[repo]]\nname = \"../x\"\n", 2, "not a repository name"),
            ("[[repo]]\nname = \"x\"\nadmin = [\"a\"]\n", 3, "admin"),
            (
                "[[deploy]]\nkey = \"k\"\nrepo = \"team/*\"\n",
                3,
                "not a repository name",
            ),
            ("[groups]\na = [\"@b\"]\n", 2, "user names"),
            (
                "[[repo]]\nname = \"x\"\n\nobject-format = \"sha-256\"\n",
                4,
                "object-format: unknown object format \"sha-256\": expected sha1 or sha256",
            ),
            (
                "[default]\nobject-format = \"sha256\"\n",
                2,
                "object-format",
            ),
        ];
        for (text, line, words) in cases {
            let e = AccessRules::parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(words), "{text:?}: {e}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_matches("team/*", "team/site"));
        assert!(!glob_matches("team/*", "team"));
        assert!(!glob_matches("*", "team/site"));
        assert!(glob_matches("*/*", "team/site"));
        assert!(glob_matches("*.app", "my.app"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "a/c"));
        assert!(glob_matches("*", "x"));
    }

    // The reference: the same decision written as plainly as possible,
    // from the documented rules, over the raw request.
    const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
    const REPOS: [&str; 6] = ["a", "b", "t/a", "t/b", "s/a", "a.b"];
    const NAMES: [&str; 9] = ["a", "b", "t/a", "t/b", "t/*", "*", "*/a", "a.?", "s/*"];

    /// A list: (is a group, index into `USERS` or the groups).
    type List = Vec<(bool, usize)>;
    /// read, write, create.
    type RawLists = [List; 3];

    #[derive(Clone, Debug)]
    struct Case {
        groups: Vec<Vec<usize>>,
        /// Name, rights, and the object format (an index into
        /// `ObjectFormat::ALL`), if any.
        rules: Vec<(usize, RawLists, Option<usize>)>,
        default: Option<RawLists>,
        deploys: Vec<(usize, usize, bool)>,
    }

    fn list(l: &[(bool, usize)]) -> String {
        let items: Vec<String> = l
            .iter()
            .map(|&(group, i)| {
                if group {
                    format!("\"@g{i}\"")
                } else {
                    format!("\"{}\"", USERS[i])
                }
            })
            .collect();
        format!("[{}]", items.join(", "))
    }

    impl Case {
        fn text(&self) -> String {
            let mut t = String::from("[groups]\n");
            for (i, members) in self.groups.iter().enumerate() {
                let m: Vec<(bool, usize)> = members.iter().map(|&u| (false, u)).collect();
                t.push_str(&format!("g{i} = {}\n", list(&m)));
            }
            let rights = |t: &mut String, r: &RawLists| {
                for (key, l) in ["read", "write", "create"].iter().zip(r) {
                    t.push_str(&format!("{key} = {}\n", list(l)));
                }
            };
            for (name, r, format) in &self.rules {
                t.push_str(&format!("[[repo]]\nname = \"{}\"\n", NAMES[*name]));
                rights(&mut t, r);
                if let Some(f) = format {
                    t.push_str(&format!(
                        "object-format = \"{}\"\n",
                        ObjectFormat::ALL[*f].name()
                    ));
                }
            }
            if let Some(r) = &self.default {
                t.push_str("[default]\n");
                rights(&mut t, r);
            }
            for (user, repo, write) in &self.deploys {
                t.push_str(&format!(
                    "[[deploy]]\nkey = \"{}\"\nrepo = \"{}\"\nwrite = {write}\n",
                    USERS[*user], REPOS[*repo]
                ));
            }
            t
        }

        fn in_list(&self, l: &[(bool, usize)], user: usize) -> bool {
            l.iter().any(|&(group, i)| {
                if group {
                    self.groups[i].contains(&user)
                } else {
                    i == user
                }
            })
        }

        /// The rule deciding for a repository: its rights and object
        /// format.
        fn rule(&self, repo: usize) -> Option<(&RawLists, Option<usize>)> {
            let name = REPOS[repo];
            for (n, r, f) in &self.rules {
                if NAMES[*n] == name {
                    return Some((r, *f));
                }
            }
            for (n, r, f) in &self.rules {
                if simple_glob(NAMES[*n], name) {
                    return Some((r, *f));
                }
            }
            None
        }

        /// The object format a new repository gets under these rules,
        /// by the documented rule: the deciding rule's, else the default.
        fn reference_format(&self, repo: usize, default: ObjectFormat) -> ObjectFormat {
            match self.rule(repo) {
                Some((_, Some(f))) => ObjectFormat::ALL[f],
                _ => default,
            }
        }

        fn reference(&self, user: usize, repo: usize, op: Operation) -> bool {
            let name = REPOS[repo];
            let mine: Vec<&(usize, usize, bool)> =
                self.deploys.iter().filter(|d| d.0 == user).collect();
            if !mine.is_empty() {
                for d in mine {
                    if REPOS[d.1] == name {
                        if op == Operation::Read {
                            return true;
                        }
                        if op == Operation::Write && d.2 {
                            return true;
                        }
                    }
                }
                return false;
            }
            let chosen = self.rule(repo).map(|(r, _)| r);
            let chosen = chosen.or(self.default.as_ref());
            let Some(r) = chosen else { return false };
            match op {
                Operation::Read => self.in_list(&r[0], user) || self.in_list(&r[1], user),
                Operation::Write => self.in_list(&r[1], user),
                Operation::Create => self.in_list(&r[2], user),
            }
        }
    }

    /// The globs of `NAMES` by their meaning: split on `/` into the same
    /// number of parts; in a part, `*` alone is any part, `x.?` is `x.`
    /// and one character.
    fn simple_glob(glob: &str, name: &str) -> bool {
        let g: Vec<&str> = glob.split('/').collect();
        let n: Vec<&str> = name.split('/').collect();
        g.len() == n.len()
            && g.iter().zip(&n).all(|(g, n)| {
                if *g == "*" {
                    true
                } else if let Some(prefix) = g.strip_suffix('?') {
                    n.len() == g.len() && n.starts_with(prefix)
                } else {
                    g == n
                }
            })
    }

    fn rights_strategy() -> impl Strategy<Value = RawLists> {
        let l = || prop::collection::vec((any::<bool>(), 0..4usize), 0..3);
        (l(), l(), l()).prop_map(|(a, b, c)| [a, b, c])
    }

    fn case_strategy() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(prop::collection::vec(0..4usize, 0..3), 4),
            prop::collection::vec(
                (
                    0..NAMES.len(),
                    rights_strategy(),
                    prop::option::of(0..ObjectFormat::ALL.len()),
                ),
                0..5,
            ),
            prop::option::of(rights_strategy()),
            prop::collection::vec((0..4usize, 0..REPOS.len(), any::<bool>()), 0..2),
        )
            .prop_map(|(groups, rules, default, deploys)| Case {
                groups,
                rules,
                default,
                deploys,
            })
    }

    proptest! {
        #[test]
        fn decisions_match_the_reference(
            case in case_strategy(),
            user in 0..4usize,
            repo in 0..REPOS.len(),
            op in prop::sample::select(vec![Operation::Read, Operation::Write, Operation::Create]),
        ) {
            let text = case.text();
            let rules = AccessRules::parse(&text).unwrap();
            prop_assert_eq!(
                rules.allows(USERS[user], "SHA256:none", REPOS[repo], op),
                case.reference(user, repo, op),
                "{}", text
            );
        }

        #[test]
        fn object_formats_match_the_reference(
            case in case_strategy(),
            repo in 0..REPOS.len(),
            default in prop::sample::select(ObjectFormat::ALL.to_vec()),
        ) {
            let text = case.text();
            let rules = AccessRules::parse(&text).unwrap();
            let defaults = crate::app::repo_format::RepoFormat {
                objects: default,
                ..Default::default()
            };
            prop_assert_eq!(
                defaults.for_new_repo(rules.object_format_for(REPOS[repo])).objects,
                case.reference_format(repo, default),
                "{}", text
            );
        }

        #[test]
        fn any_text_parses_or_names_a_line(text in "[ -~\n]{0,200}") {
            if let Err(e) = AccessRules::parse(&text) {
                prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1);
            }
        }
    }
}
