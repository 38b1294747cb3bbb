//! The format of a repository a push creates, in memory: the `git init`
//! flags the core asks for (the default, or the access file's
//! object-format), the line naming the new repository's format before git
//! runs, and the refusal of a name differing only in case from an
//! existing repository's.

#![allow(clippy::unwrap_used)]

use gitmouth_core::actions::INIT_PREFIX;
use gitmouth_core::app::access::AccessRules;
use gitmouth_core::app::repo_format::{ObjectFormat, RefFormat, RepoFormat};
use gitmouth_core::client::Event;
use gitmouth_core::server::Output;
use gitmouth_core::test_util::{Pair, Script, ed25519, server_config};
use gitmouth_tests::epoch;

/// A push to `name` by alice on a server creating `format`, with the
/// access file `access` if any, where `existing` repositories exist.
fn push(format: RepoFormat, access: Option<&str>, existing: &[&str], name: &str) -> Pair {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.repo_format = format;
    let mut pair = Pair::new(config, epoch());
    // git's advertisement, as soon as it starts.
    pair.rt.script = Script {
        stdout: b"0000".to_vec(),
        ..Script::default()
    };
    pair.rt.access = access.map(|text| std::sync::Arc::new(AccessRules::parse(text).unwrap()));
    for repo in existing {
        pair.rt
            .repos
            .insert(format!("/srv/repos/{repo}.git").into());
    }
    pair.open(&alice, 1 << 20, 32768);
    pair.client
        .exec(format!("git-receive-pack '{name}.git'").as_bytes(), true);
    pair.drive();
    pair
}

/// The arguments of the push's `git init`.
fn init_args(pair: &Pair) -> Vec<String> {
    pair.rt
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::OpenRepo {
                create: Some(init), ..
            } => Some(
                init.init
                    .args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .expect("the repository is opened for creation")
}

fn stderr(pair: &Pair) -> String {
    String::from_utf8_lossy(&pair.received().1).into_owned()
}

#[test]
fn a_created_repository_is_announced_with_its_format_before_git_runs() {
    let pair = push(RepoFormat::default(), None, &[], "team/site");
    let args = init_args(&pair);
    assert_eq!(
        args[..4],
        ["init", "--bare", "--quiet", "--object-format=sha1"]
    );
    assert!(args[4].contains(INIT_PREFIX), "{args:?}");
    assert_eq!(args.len(), 5, "no --ref-format for files: {args:?}");
    assert!(
        stderr(&pair).starts_with("-----> Creating repository team/site (object format sha1)\n")
    );
    // Before git's advertisement: the line came first, then git ran.
    let spawned = pair.rt.process.as_ref().expect("git runs");
    assert!(
        spawned.spec.args.iter().any(|a| a == "receive-pack"),
        "{:?}",
        spawned.spec.args
    );
    let line = pair
        .events
        .iter()
        .position(|e| matches!(e, Event::ExtendedData(d) if d.starts_with(b"-----> Creating")));
    let advertisement = pair
        .events
        .iter()
        .position(|e| matches!(e, Event::Data(d) if d.starts_with(b"0000")));
    assert!(line.is_some() && line < advertisement, "{:?}", pair.events);
}

#[test]
fn the_default_formats_reach_git_init() {
    let format = RepoFormat {
        objects: ObjectFormat::Sha256,
        refs: RefFormat::Reftable,
    };
    let pair = push(format, None, &[], "app");
    let args = init_args(&pair);
    assert_eq!(
        args[3..5],
        ["--object-format=sha256", "--ref-format=reftable"]
    );
    assert!(stderr(&pair).starts_with(
        "-----> Creating repository app (object format sha256, ref format reftable)\n"
    ));
}

#[test]
fn the_access_rule_object_format_wins_over_the_default() {
    let access = "[[repo]]\nname = \"new/*\"\nwrite = [\"alice\"]\ncreate = [\"alice\"]\nobject-format = \"sha256\"\n\
                  [[repo]]\nname = \"old/*\"\nwrite = [\"alice\"]\ncreate = [\"alice\"]\n";
    let pair = push(RepoFormat::default(), Some(access), &[], "new/site");
    assert_eq!(init_args(&pair)[3], "--object-format=sha256");
    assert!(stderr(&pair).contains("(object format sha256)"));
    let pair = push(RepoFormat::default(), Some(access), &[], "old/site");
    assert_eq!(init_args(&pair)[3], "--object-format=sha1");
}

#[test]
fn an_existing_repository_is_not_announced() {
    let pair = push(RepoFormat::default(), None, &["app"], "app");
    assert!(!stderr(&pair).contains("Creating"), "{}", stderr(&pair));
    assert!(pair.rt.process.is_some());
}

#[test]
fn a_name_differing_only_in_case_is_refused_naming_the_existing_one() {
    for (existing, pushed) in [("myapp", "MyApp"), ("team/site", "Team/site")] {
        let pair = push(RepoFormat::default(), None, &[existing], pushed);
        let err = stderr(&pair);
        assert!(
            err.contains(&format!(
                " ! Repository {pushed} cannot be created: its name differs only in case from the existing repository {existing}."
            )),
            "{err}"
        );
        assert!(!err.contains("Creating"), "{err}");
        assert_eq!(pair.exit_status(), Some(1));
        assert!(pair.rt.process.is_none(), "git never ran");
        assert!(
            !pair
                .rt
                .repos
                .iter()
                .any(|r| r.to_string_lossy().contains(pushed))
        );
        assert!(pair.events.contains(&Event::Closed));
    }
}

#[test]
fn a_case_twin_the_user_may_not_read_stays_unnamed() {
    let access = "[[repo]]\nname = \"MyApp\"\ncreate = [\"alice\"]\n\
                  [[repo]]\nname = \"myapp\"\nread = [\"bob\"]\n";
    let pair = push(RepoFormat::default(), Some(access), &["myapp"], "MyApp");
    let err = stderr(&pair);
    assert!(!err.contains("myapp"), "{err}");
    assert!(err.contains("No such repository as MyApp"), "{err}");
    assert_eq!(pair.exit_status(), Some(1));
}

#[test]
fn pushes_to_names_differing_only_in_case_share_the_push_lock() {
    use gitmouth_core::test_util::PushLocks;
    let alice = ed25519(1, "alice");
    let locks = PushLocks::default();
    let start = |name: &str| {
        let mut pair = Pair::new(server_config(&[&alice]), epoch());
        pair.rt.locks = locks.clone();
        // git init of the repository being created takes its time.
        pair.rt.hold_init = true;
        pair.open(&alice, 1 << 20, 32768);
        pair.client
            .exec(format!("git-receive-pack '{name}.git'").as_bytes(), true);
        pair.drive();
        pair
    };
    let first = start("MyApp");
    assert!(first.rt.held_repo.is_some(), "git init runs");
    assert!(locks.is_held("myapp"));
    // Its twin cannot be created meanwhile: its push finds the lock held.
    let second = start("myapp");
    assert!(second.rt.held_repo.is_none());
    let err = stderr(&second);
    assert!(
        err.contains(" ! Another push to myapp is in progress"),
        "{err}"
    );
    assert_eq!(second.exit_status(), Some(1));
}
