//! Replays a `server_session` corpus and counts how far its inputs get:
//! authenticated, channel open, exec, backend (git spawned or dyno
//! connected), relay (backend bytes sent to the client), exit reported.
//! This is how a fuzzing run's depth is measured.
//!
//! Run from the repository root:
//! `cargo run --release --manifest-path fuzz/bodies/Cargo.toml --example corpus_stats -- [DIR…]`
//! (default `fuzz/corpus/server_session`). Inputs that panic are counted
//! and named; `-v` also prints the stages of every input.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use gitmouth_fuzz_bodies::control::Layout;
use gitmouth_fuzz_bodies::session_stages;

/// The stages, in order, with their column names.
const STAGES: [&str; 6] = [
    "authenticated",
    "channel open",
    "exec",
    "backend",
    "relay",
    "exit",
];

fn main() -> std::io::Result<()> {
    let mut verbose = false;
    let mut dirs = Vec::new();
    for arg in std::env::args_os().skip(1) {
        if arg == "-v" {
            verbose = true;
        } else {
            dirs.push(PathBuf::from(arg));
        }
    }
    if dirs.is_empty() {
        dirs.push("fuzz/corpus/server_session".into());
    }
    let mut files = Vec::new();
    for dir in &dirs {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    // The panics are counted below; the default hook would print each.
    std::panic::set_hook(Box::new(|_| {}));
    let mut counts = [0usize; STAGES.len()];
    let (mut api, mut panicked) = (0, Vec::new());
    for path in &files {
        let data = std::fs::read(path)?;
        api += usize::from(Layout::parse(&data).api);
        let Ok((stages, channel)) = catch_unwind(AssertUnwindSafe(|| session_stages(&data))) else {
            panicked.push(path.display().to_string());
            continue;
        };
        let reached = [
            stages.authenticated,
            channel,
            stages.exec,
            stages.backend,
            stages.relay,
            stages.exit,
        ];
        for (count, hit) in counts.iter_mut().zip(reached) {
            *count += usize::from(hit);
        }
        if verbose {
            let names: Vec<&str> = STAGES
                .iter()
                .zip(reached)
                .filter(|(_, hit)| *hit)
                .map(|(name, _)| *name)
                .collect();
            println!("{}: {}", path.display(), names.join(", "));
        }
    }
    println!("{} inputs ({api} in API mode)", files.len());
    for (name, count) in STAGES.iter().zip(counts) {
        println!("{name:>14}: {count}");
    }
    println!("{:>14}: {}", "panicked", panicked.len());
    for path in panicked {
        println!("  {path}");
    }
    Ok(())
}
