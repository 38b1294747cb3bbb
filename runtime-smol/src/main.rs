//! The `gitmouth` binary: gitmouth on smol.

fn main() {
    gitmouth_io::startup::main("gitmouth", gitmouth_smol::run);
}
