//! The `gitmouth-async-std` binary (built out in its own issue).

fn main() {}
