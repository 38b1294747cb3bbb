//! The core's layering, checked on its source: no two sibling modules
//! import each other, the connection layer imports nothing of `app`, and no
//! lock guards shared state inside the core (shared state reaches a session
//! as inputs).
//!
//! A module "imports" another when its code names it by path (`crate::…`,
//! `super::…`, `self::…`, in `use` or inline); comments and doc comments do
//! not count.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src")
}

/// Every `.rs` file under `dir` with its module path (`job/local.rs` is
/// `["job", "local"]`, `job/mod.rs` is `["job"]`).
fn modules(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            modules(&path, &inner, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            out.push((module, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The code without comments (line comments, doc comments, block comments).
fn code_only(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The module paths a file's code names, resolved to absolute paths.
fn references(module: &[String], is_dir_module: bool, code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            // Part of a longer identifier (`my_crate::`)?
            if begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_') {
                continue;
            }
            let mut segments: Vec<String> = Vec::new();
            let mut rest = &code[begin..];
            loop {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                segments.push(rest[..end].to_owned());
                rest = &rest[end..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            // `use crate::{a, b::c}`: each name in the group counts.
            let mut groups = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let close = group.find('}').unwrap_or(group.len());
                for item in group[..close].split(',') {
                    let first = item
                        .trim()
                        .split("::")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    if !first.is_empty() {
                        groups.push(first);
                    }
                }
            }
            let mut base: Vec<String> = match segments.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                Some("self") => {
                    let mut here = module.to_vec();
                    if !is_dir_module && module.is_empty() {
                        here.clear();
                    }
                    here
                }
                Some("super") => {
                    let mut here = module.to_vec();
                    here.pop();
                    here
                }
                _ => continue,
            };
            let mut tail = segments[1..].to_vec();
            while tail.first().is_some_and(|s| s == "super") {
                base.pop();
                tail.remove(0);
            }
            if groups.is_empty() {
                let mut path = base.clone();
                path.extend(tail);
                found.push(path);
            } else {
                for g in groups {
                    let mut path = base.clone();
                    path.extend(tail.iter().cloned());
                    path.push(g);
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Edges between sibling modules: `(parent, from child, to child)`.
fn sibling_edges() -> BTreeSet<(Vec<String>, String, String)> {
    let mut files = Vec::new();
    modules(&core_src(), &[], &mut files);
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeSet::new();
    let mut dir_modules = BTreeMap::new();
    for (module, _) in &files {
        let has_children = known
            .iter()
            .any(|k| k.len() == module.len() + 1 && k.starts_with(module));
        dir_modules.insert(module.clone(), has_children);
    }
    for (module, source) in &files {
        let code = code_only(source);
        for target in references(module, dir_modules[module], &code) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (module.get(common), target.get(common)) else {
                continue;
            };
            let mut sibling = module[..common].to_vec();
            sibling.push(to.clone());
            if from != to && known.contains(&sibling) {
                edges.insert((module[..common].to_vec(), from.clone(), to.clone()));
            }
        }
    }
    edges
}

#[test]
fn no_two_sibling_modules_of_the_core_import_each_other() {
    let edges = sibling_edges();
    assert!(
        edges
            .iter()
            .any(|(p, f, t)| p.is_empty() && f == "server" && t == "job"),
        "the check sees nothing: {edges:?}"
    );
    let mutual: Vec<_> = edges
        .iter()
        .filter(|(parent, from, to)| edges.contains(&(parent.clone(), to.clone(), from.clone())))
        .filter(|(_, from, to)| from < to)
        .collect();
    assert!(
        mutual.is_empty(),
        "sibling modules importing each other: {mutual:?}"
    );
}

#[test]
fn the_connection_layer_imports_nothing_of_app() {
    let mut files = Vec::new();
    modules(
        &core_src().join("connection"),
        &["connection".into()],
        &mut files,
    );
    assert!(!files.is_empty());
    for (module, source) in files {
        let code = code_only(&source);
        for target in references(&module, true, &code) {
            for banned in ["app", "job", "server", "actions", "config"] {
                assert_ne!(
                    target.first().map(String::as_str),
                    Some(banned),
                    "{module:?} imports {target:?}"
                );
            }
        }
    }
}

#[test]
fn no_lock_guards_shared_state_in_the_core() {
    let mut files = Vec::new();
    modules(&core_src(), &[], &mut files);
    for (module, source) in files {
        let code = code_only(&source);
        for word in ["Mutex", "RwLock"] {
            let named = code.match_indices(word).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                let after = code[at + word.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            assert!(!named, "{module:?} uses a {word}");
        }
    }
}
