//! The connection layer (`crate::connection`) through a whole session in
//! memory.
use crate::client::Event;
use crate::connection::CLOSE_WAIT;
use crate::connection::msg::open_failure;
use crate::test_util::{Pair, ed25519, server_config};

#[test]
fn the_session_limit_counts_open_channels_only() {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.max_sessions = 1;
    let mut pair = Pair::new(config);
    pair.open(&alice, 1 << 16, 32768);
    let refused = pair.open_channel(1);
    assert!(
        matches!(
            refused,
            Event::ChannelOpenFailed { reason, .. }
                if reason == open_failure::ADMINISTRATIVELY_PROHIBITED
        ),
        "{refused:?}"
    );
    // A shell is refused with the greeting and the channel closes: the
    // slot is free again.
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    pair.client.send_close();
    pair.drive();
    assert_eq!(pair.open_channel(2), Event::ChannelOpened);
    assert!(!pair.server.is_finished());
}

#[test]
fn a_channel_the_client_never_closes_is_given_up_after_the_close_wait() {
    let alice = ed25519(1, "alice");
    let mut pair = Pair::new(server_config(&[&alice]));
    pair.open(&alice, 1 << 16, 32768);
    pair.client.channel_request("shell", true, &[]);
    pair.drive();
    assert!(pair.events.contains(&Event::Closed));
    // The client ignores our CLOSE and has nothing else open: the
    // connection ends once the wait is over, stepping deadline to
    // deadline in virtual time.
    let closed_at = pair.now;
    assert!(pair.run_to_end(10));
    assert!(pair.now - closed_at >= CLOSE_WAIT);
}
