//! The short load test: 40 clones and 8 pushes from 8 addresses at once,
//! with the real `git` and `ssh`, under 100 unauthenticated connections
//! held from 10 other addresses and an address failing authentication in
//! a loop, against the server at its defaults (admission applies to
//! loopback). Every real user's operation must succeed; nothing about
//! speed is asserted. The full run is `gitmouth-load` (README, "Test it").

use std::sync::atomic::Ordering;

use gitmouth_tests::load::{LoadConfig, run};
use gitmouth_tests::{Runtime, per_runtime};

per_runtime!(forty_clones_under_a_hundred_held_connections_all_succeed);
fn forty_clones_under_a_hundred_held_connections_all_succeed(runtime: Runtime) {
    let config = LoadConfig::short(runtime);
    let report = run(&config).expect("the load test could not be set up");
    // The report names every error by kind, with the first one's stderr.
    assert!(report.passed(), "{report}");
    // The pressure was there: every held connection was open when the
    // users started, and the attacker tried.
    assert!(report.held_all_open, "{report}");
    assert!(
        report.attacker.attempts.load(Ordering::SeqCst) >= 2,
        "{report}"
    );
    // The attacker's failures got its address refused before any
    // cryptography, and the server said why.
    assert!(
        report.attacker.refused.load(Ordering::SeqCst) >= 1,
        "{report}"
    );
    assert!(
        report
            .log
            .refused
            .keys()
            .any(|(who, why)| who == "attacker" && why.contains("penalised")),
        "{report}"
    );
}
