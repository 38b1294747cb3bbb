//! The `gitmouth` binary: gitmouth on smol.

fn main() {
    let settings = gitmouth_io::startup::settings("gitmouth");
    if let Err(e) = gitmouth_smol::run(settings) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}
