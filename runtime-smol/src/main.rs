//! The `gitmouth` binary: gitmouth on smol.

fn main() {
    let dotenv = std::fs::read_to_string(".env").ok();
    let (env, warnings) = gitmouth_core::config::Env::new(std::env::vars(), dotenv.as_deref());
    let host = gitmouth_smol::host_name();
    let settings = match gitmouth_core::config::parse("gitmouth", std::env::args_os(), &env, &host)
    {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Err(e) = gitmouth_smol::run(settings) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}
