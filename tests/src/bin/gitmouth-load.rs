//! `gitmouth-load`: the load test of admission control (see
//! `gitmouth_tests::load`). Builds the server binary if needed, starts it
//! on 127.0.0.1 at its defaults, runs 200 clones and 20 pushes from 20
//! addresses under 500 held unauthenticated connections from 50 others and
//! an attacker, prints the report, and exits 0 only if every real user's
//! operation succeeded.
//!
//!     cargo run --release -p gitmouth-tests --bin gitmouth-load [-- OPTIONS]

use std::process::ExitCode;
use std::time::Duration;

use gitmouth_tests::Runtime;
use gitmouth_tests::load::{LoadConfig, run};

const USAGE: &str = "\
usage: gitmouth-load [OPTIONS]

  --short               the test suite's size: 8 users x 5 clones, 100 held connections
  --runtime RUNTIME     smol (the gitmouth binary, default) or async-std
  --users N             real users, one address each (default 20, at most 250)
  --clones N            clones per user (default 10); each user also pushes once
  --holder-addresses N  addresses holding unauthenticated connections (default 50, at most 250)
  --held N              connections held per address (default 10; 0: none, a baseline)
  --no-attacker         no address failing authentication in a loop
  --time-limit SECS     the whole run's limit (default 600)
";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(config) => match run(&config) {
            Ok(report) => {
                println!("{report}");
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("gitmouth-load: the run could not be set up: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("gitmouth-load: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<LoadConfig, String> {
    let mut config = LoadConfig::full(Runtime::Smol);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        let small = |n: u64, name: &str| -> Result<u8, String> {
            u8::try_from(n)
                .ok()
                .filter(|n| (1..=250).contains(n))
                .ok_or(format!("{name}: from 1 to 250"))
        };
        match arg.as_str() {
            "--short" => {
                let progress = config.progress;
                config = LoadConfig {
                    runtime: config.runtime,
                    progress,
                    ..LoadConfig::short(config.runtime)
                };
            }
            "--runtime" => {
                let name = args.next().ok_or("--runtime needs a value")?;
                config.runtime = match name.as_str() {
                    "smol" => Runtime::Smol,
                    "async-std" => Runtime::AsyncStd,
                    _ => return Err(format!("--runtime: smol or async-std, not {name}")),
                };
            }
            "--users" => config.users = small(value("--users")?, "--users")?,
            "--clones" => config.clones_per_user = value("--clones")? as usize,
            "--holder-addresses" => {
                config.holder_addresses = small(value("--holder-addresses")?, "--holder-addresses")?
            }
            "--held" => config.held_per_address = value("--held")? as usize,
            "--no-attacker" => config.attacker = false,
            "--time-limit" => config.time_limit = Duration::from_secs(value("--time-limit")?),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(config)
}
