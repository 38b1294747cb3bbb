//! Writes the generated seeds into `fuzz/corpus/<target>/seed-<name>`.
//!
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/bodies/Cargo.toml --example write_seeds`
//! (an optional argument names another corpus directory).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);
    for seed in gitmouth_fuzz_bodies::seeds::all() {
        let dir = root.join(seed.target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("seed-{}", seed.name));
        std::fs::write(&path, &seed.bytes)?;
        println!("{} ({} bytes)", path.display(), seed.bytes.len());
    }
    Ok(())
}
