//! The format of a repository a push creates (standalone mode): its object
//! format (`--default-object-format`, or the access file's `object-format`
//! for the repository) and its ref storage (`--default-ref-format`), the
//! `git init` flags that make it, the line that tells the pusher, and the
//! git version these need.
//!
//! Why the pusher is told: git's client compares the hash algorithm of the
//! server's advertisement with its own and gives up at once on a mismatch,
//! before the server can say anything; the line comes before the
//! advertisement, so a SHA-256 user pushing to a server that creates SHA-1
//! repositories learns why.

use std::fmt;

/// A repository's hash algorithm (`git init --object-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ObjectFormat {
    /// SHA-1, git's default up to Git 3.0.
    #[default]
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ObjectFormat {
    /// Every format, by its name.
    pub const ALL: [ObjectFormat; 2] = [ObjectFormat::Sha1, ObjectFormat::Sha256];

    /// git's name of it: `sha1`, `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        }
    }

    /// Parses git's name (exactly: `sha1` or `sha256`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == text)
            .ok_or_else(|| format!("unknown object format {text:?}: expected sha1 or sha256"))
    }
}

impl fmt::Display for ObjectFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a repository stores its refs (`git init --ref-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RefFormat {
    /// Loose files and `packed-refs`: every git reads it.
    #[default]
    Files,
    /// reftable (git 2.45 and later).
    Reftable,
}

impl RefFormat {
    /// Every format, by its name.
    pub const ALL: [RefFormat; 2] = [RefFormat::Files, RefFormat::Reftable];

    /// git's name of it: `files`, `reftable`.
    pub fn name(self) -> &'static str {
        match self {
            RefFormat::Files => "files",
            RefFormat::Reftable => "reftable",
        }
    }

    /// Parses git's name (exactly: `files` or `reftable`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == text)
            .ok_or_else(|| format!("unknown ref format {text:?}: expected files or reftable"))
    }
}

impl fmt::Display for RefFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The format of a new repository: the server's defaults, or one
/// repository's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RepoFormat {
    /// Its hash algorithm.
    pub objects: ObjectFormat,
    /// Its ref storage.
    pub refs: RefFormat,
}

impl RepoFormat {
    /// The format of a repository created now, with these defaults: the
    /// object format of the access rule that decides for the repository
    /// (`rule`, from [`crate::app::access::AccessRules::object_format_for`])
    /// wins over the default; the ref format is always the default.
    pub fn for_new_repo(self, rule: Option<ObjectFormat>) -> RepoFormat {
        RepoFormat {
            objects: rule.unwrap_or(self.objects),
            refs: self.refs,
        }
    }

    /// `git init`'s flags for this format. The object format is always
    /// given (so that neither `GIT_DEFAULT_HASH` nor the server user's
    /// `init.defaultObjectFormat` can change it); the ref format only when
    /// it is not `files`, so that a git older than 2.45 (which has no
    /// `--ref-format`) still creates repositories.
    pub fn init_flags(self) -> Vec<String> {
        let mut flags = vec![format!("--object-format={}", self.objects.name())];
        if self.refs != RefFormat::Files {
            flags.push(format!("--ref-format={}", self.refs.name()));
        }
        flags
    }
}

/// A git version: major and minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GitVersion {
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

impl GitVersion {
    /// The first git with `git init --object-format` (2.29).
    pub const OBJECT_FORMAT: GitVersion = GitVersion {
        major: 2,
        minor: 29,
    };
    /// The first git with `git init --ref-format` and reftable (2.45).
    pub const REFTABLE: GitVersion = GitVersion {
        major: 2,
        minor: 45,
    };

    /// Reads `git --version`'s output: `git version 2.47.3` (and vendors'
    /// suffixes, `2.39.3 (Apple Git-146)`, `2.45.0.windows.1`).
    pub fn parse(output: &str) -> Option<GitVersion> {
        let rest = output.trim().strip_prefix("git version ")?;
        let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        Some(GitVersion { major, minor })
    }
}

impl fmt::Display for GitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Whether the git found (`git --version`'s output, or why it could not
/// run) can create repositories in `defaults`: the refusal names the
/// setting at fault and the version found, for the operator at start.
pub fn check_git(defaults: RepoFormat, git_version: Result<&str, &str>) -> Result<(), String> {
    let found = match git_version {
        Ok(output) => GitVersion::parse(output)
            .ok_or_else(|| format!("{:?}, which is no git version", output.trim())),
        Err(why) => Err(format!("no git that runs (git --version: {why})")),
    };
    let refuse = |setting: String, version: GitVersion, found: String, or: &str| {
        Err(format!(
            "{setting} needs git {version} or later to create repositories; found {found}: install a newer git (first in the server's PATH){or}"
        ))
    };
    let reftable = defaults.refs == RefFormat::Reftable;
    match found {
        Ok(v) if reftable && v < GitVersion::REFTABLE => refuse(
            "--default-ref-format reftable".into(),
            GitVersion::REFTABLE,
            format!("git {v}"),
            ", or use --default-ref-format files",
        ),
        Ok(v) if v < GitVersion::OBJECT_FORMAT => refuse(
            format!("--default-object-format {}", defaults.objects),
            GitVersion::OBJECT_FORMAT,
            format!("git {v}"),
            "",
        ),
        Ok(_) => Ok(()),
        // Not known: only reftable's requirement is refused on it (a git
        // that does not run at all fails every command, and each says so).
        Err(found) if reftable => refuse(
            "--default-ref-format reftable".into(),
            GitVersion::REFTABLE,
            found,
            ", or use --default-ref-format files",
        ),
        Err(_) => Ok(()),
    }
}

/// Whether two repository names are the same but for case (ASCII, as
/// names are), and differ: both cannot exist.
pub fn differ_only_in_case(a: &str, b: &str) -> bool {
    a != b && a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn format(objects: ObjectFormat, refs: RefFormat) -> RepoFormat {
        RepoFormat { objects, refs }
    }

    #[test]
    fn names_parse_back_and_nothing_else_does() {
        for f in ObjectFormat::ALL {
            assert_eq!(ObjectFormat::parse(f.name()), Ok(f));
        }
        for f in RefFormat::ALL {
            assert_eq!(RefFormat::parse(f.name()), Ok(f));
        }
        for bad in ["SHA256", "sha-256", "", "sha1 ", "md5"] {
            let e = ObjectFormat::parse(bad).unwrap_err();
            assert!(e.contains("sha1 or sha256"), "{e}");
        }
        assert!(RefFormat::parse("reftables").is_err());
    }

    #[test]
    fn the_rule_wins_over_the_default_object_format_only() {
        let defaults = format(ObjectFormat::Sha1, RefFormat::Reftable);
        assert_eq!(defaults.for_new_repo(None), defaults);
        assert_eq!(
            defaults.for_new_repo(Some(ObjectFormat::Sha256)),
            format(ObjectFormat::Sha256, RefFormat::Reftable)
        );
        let sha256 = format(ObjectFormat::Sha256, RefFormat::Files);
        assert_eq!(
            sha256.for_new_repo(Some(ObjectFormat::Sha1)).objects,
            ObjectFormat::Sha1
        );
    }

    #[test]
    fn init_flags_name_the_ref_format_only_when_not_files() {
        assert_eq!(RepoFormat::default().init_flags(), ["--object-format=sha1"]);
        assert_eq!(
            format(ObjectFormat::Sha256, RefFormat::Reftable).init_flags(),
            ["--object-format=sha256", "--ref-format=reftable"]
        );
    }

    #[test]
    fn git_versions() {
        let v = |s| GitVersion::parse(s);
        assert_eq!(
            v("git version 2.47.3\n"),
            Some(GitVersion {
                major: 2,
                minor: 47
            })
        );
        assert_eq!(
            v("git version 2.39.3 (Apple Git-146)"),
            Some(GitVersion {
                major: 2,
                minor: 39
            })
        );
        assert_eq!(
            v("git version 2.45.0.windows.1"),
            Some(GitVersion::REFTABLE)
        );
        assert_eq!(v("hub version 2.14"), None);
        assert_eq!(v("git version x"), None);
        assert!(GitVersion::parse("git version 3.0").unwrap() > GitVersion::REFTABLE);
    }

    #[test]
    fn old_gits_are_refused_naming_the_setting_and_the_version() {
        let reftable = format(ObjectFormat::Sha1, RefFormat::Reftable);
        assert!(check_git(reftable, Ok("git version 2.45.0")).is_ok());
        let e = check_git(reftable, Ok("git version 2.44.1")).unwrap_err();
        assert!(e.contains("--default-ref-format reftable"), "{e}");
        assert!(e.contains("git 2.44"), "{e}");
        assert!(e.contains("2.45"), "{e}");
        let e = check_git(reftable, Err("No such file or directory")).unwrap_err();
        assert!(e.contains("--default-ref-format reftable"), "{e}");
        // files: any git with --object-format.
        let files = RepoFormat::default();
        assert!(check_git(files, Ok("git version 2.29.0")).is_ok());
        let e = check_git(files, Ok("git version 2.28.9")).unwrap_err();
        assert!(e.contains("--default-object-format sha1"), "{e}");
        assert!(check_git(files, Err("not found")).is_ok());
        assert!(check_git(files, Ok("what")).is_ok());
    }

    #[test]
    fn case_twins() {
        assert!(differ_only_in_case("MyApp", "myapp"));
        assert!(differ_only_in_case("Team/site", "team/site"));
        assert!(!differ_only_in_case("myapp", "myapp"));
        assert!(!differ_only_in_case("team/site", "team/sites"));
    }

    proptest! {
        #[test]
        fn any_version_text_parses_or_not_without_panic(text in ".{0,40}") {
            let _ = GitVersion::parse(&text);
            let _ = check_git(RepoFormat::default(), Ok(&text));
        }

        #[test]
        fn versions_order_as_numbers(a in 0u32..100, b in 0u32..100, c in 0u32..100, d in 0u32..100) {
            let x = GitVersion::parse(&format!("git version {a}.{b}.1")).unwrap();
            let y = GitVersion::parse(&format!("git version {c}.{d}")).unwrap();
            prop_assert_eq!(x < y, (a, b) < (c, d));
        }
    }
}
