//! The `gitmouth-async-std` binary: gitmouth on async-std.

fn main() {
    gitmouth_io::startup::main("gitmouth-async-std", gitmouth_async_std::run);
}
