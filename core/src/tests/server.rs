//! The session's own deadlines, end to end in virtual time.

use std::time::Duration;

use crate::server::{Input, Output};
use crate::test_util::{Pair, Script, ed25519, server_config};

/// A stopping server waits [`crate::server::ServerConfig::stop_wait`] for its
/// sessions: even one whose git ignores SIGTERM and whose client reads
/// nothing more has ended by then, by its own deadlines alone.
#[test]
fn a_session_ends_within_the_stop_wait_after_shutdown() {
    let alice = ed25519(1, "alice");
    let config = server_config(&[&alice]);
    let stop_wait = config.stop_wait();
    assert_eq!(stop_wait, Duration::from_secs(10));
    let mut pair = Pair::new(config);
    pair.rt.repos.insert("/srv/repos/app.git".into());
    pair.rt.script = Script {
        ignore_term: true,
        exit_on_eof: None,
        stdout: vec![1; 1 << 20],
        ..Script::default()
    };
    pair.client.set_auto_window(false);
    pair.open(&alice, 1 << 10, 1 << 10);
    pair.client.exec(b"git-upload-pack 'app.git'", true);
    pair.drive();
    assert!(pair.rt.process.is_some());
    // The client stops reading; the server is told to stop.
    pair.client_stalled = true;
    pair.server_stalled = true;
    let stopped_at = pair.now;
    let now = pair.now;
    pair.server.handle_input(now, Input::Shutdown);
    assert!(pair.run_to_end(50), "the session never ended");
    assert!(
        pair.now - stopped_at <= stop_wait,
        "ended only after {:?}",
        pair.now - stopped_at
    );
    assert!(
        pair.rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::Signal { .. })),
        "git was never stopped"
    );
}
