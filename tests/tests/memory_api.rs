//! API mode in memory: the session's exchanges with the platform, in order,
//! and every failure the user can meet. (The end-to-end tests do the same
//! through emulators of the API server and a dyno host.)

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use gitmouth_core::app::api::{ApiServer, HttpError, HttpRequest, HttpResponse, Method, Scheme};
use gitmouth_core::app::dyno::DynoEnd;
use gitmouth_core::app::fingerprint;
use gitmouth_core::client::Event;
use gitmouth_core::server::{Input, Mode, Output, ServerConfig};
use gitmouth_core::test_util::{DynoScript, Pair, ed25519, host_key};
use gitmouth_tests::epoch;
use ssh_key::PrivateKey;
use zeroize::Zeroizing;

/// Overrides the platform's answer to one request: `Some(None)` leaves it
/// unanswered, `Some(Some(reply))` answers it, `None` keeps the default.
type Tweak = fn(&HttpRequest) -> Option<Option<Result<HttpResponse, HttpError>>>;

fn config() -> ServerConfig {
    let mut c = ServerConfig::standalone(vec![host_key()], PathBuf::new());
    c.mode = Mode::Api {
        api: ApiServer {
            scheme: Scheme::Https,
            host: "api.test".into(),
            port: 5000,
            key: Zeroizing::new("SUPERKEY".into()),
            timeout: Duration::from_secs(5),
            provision_timeout: Duration::from_secs(30),
        },
        rendezvous_port: 4000,
    };
    c
}

/// A platform that knows `user`'s key, gives it access to `myapp`, and
/// provisions dynos; `tweak` changes one answer.
fn platform(user: &PrivateKey, tweak: Tweak) -> Pair {
    platform_with(config(), user, tweak)
}

/// [`platform`] with a configuration of the test's own.
fn platform_with(config: ServerConfig, user: &PrivateKey, tweak: Tweak) -> Pair {
    let md5 = fingerprint::md5_hex(
        &ssh_encoding::Encode::encode_vec(user.public_key().key_data()).unwrap(),
    );
    let mut pair = Pair::new(config, epoch());
    pair.rt.http = Some(Box::new(move |req: &HttpRequest| {
        if let Some(answer) = tweak(req) {
            return answer;
        }
        let ok = |status: u16, body: &str| {
            Some(Ok(HttpResponse {
                status,
                body: body.as_bytes().to_vec(),
            }))
        };
        if req
            .url
            .contains("/internal/lookupUserByPublicKey?fingerprint=")
        {
            if req.url.ends_with(&md5) {
                ok(200, "42:USERKEY")
            } else {
                ok(404, "")
            }
        } else if req.url.ends_with("/apps/myapp") {
            ok(200, r#"{"name": "myapp"}"#)
        } else if req.url.contains("/apps/") {
            ok(404, r#"{"error": "not found"}"#)
        } else if req.url.contains("/gitaction?command=") {
            ok(
                200,
                r#"{"host": "dynohost1", "dyno_id": "d-123", "rez_id": "r-9"}"#,
            )
        } else {
            ok(500, "")
        }
    }));
    pair
}

fn none(_: &HttpRequest) -> Option<Option<Result<HttpResponse, HttpError>>> {
    None
}

fn run(pair: &mut Pair, user: &PrivateKey, command: &[u8]) {
    pair.open(user, 1 << 20, 32768);
    pair.client.exec(command, true);
    pair.drive();
}

/// The handshake and a signed publickey request, whose lookup is then in
/// flight (or answered, if the platform answers at once).
fn begin_login(pair: &mut Pair, user: &PrivateKey) {
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    pair.client.auth_publickey("git", user);
    pair.drive();
}

fn stderr_text(pair: &Pair) -> String {
    String::from_utf8(pair.received().1).unwrap()
}

#[test]
fn a_push_looks_up_checks_provisions_and_relays_in_that_order() {
    let user = ed25519(1, "u");
    let mut pair = platform(&user, none);
    pair.rt.dyno_script = DynoScript {
        first: b"0000".to_vec(),
        echo: true,
        end: None,
        ..DynoScript::default()
    };
    pair.open(&user, 1 << 20, 32768);
    // The query and the signed login cost one lookup between them.
    let urls: Vec<_> = pair.rt.requests.iter().map(|r| r.url.clone()).collect();
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert_eq!(pair.server.identity().unwrap().user, "42");
    pair.client.exec(b"git-receive-pack 'myapp.git'", true);
    pair.drive();
    let r = &pair.rt.requests;
    assert_eq!(r.len(), 3);
    assert!(
        r[0].url
            .starts_with("https://api.test:5000/internal/lookupUserByPublicKey?fingerprint=")
    );
    assert_eq!(r[0].authorization.as_str(), "Basic OlNVUEVSS0VZ");
    assert_eq!(
        (r[1].method, r[1].url.as_str()),
        (Method::Get, "https://api.test:5000/apps/myapp")
    );
    assert_eq!(
        r[1].authorization.as_str(),
        "Basic OlVTRVJLRVk=",
        "the access check uses the user's key"
    );
    assert_eq!(
        (r[2].method, r[2].url.as_str()),
        (
            Method::Post,
            "https://api.test:5000/internal/myapp/gitaction?command=git-receive-pack"
        )
    );
    let dyno = pair.rt.dyno.as_ref().unwrap();
    assert_eq!(dyno.target, ("dynohost1".into(), 4000));
    assert_eq!(dyno.header, b"SUPERKEY\nd-123\n");
    // git's output (the dyno speaks first), then the client's stdin.
    assert_eq!(pair.received().0, b"0000");
    pair.client.send_data(b"0009push\n");
    pair.client.send_eof();
    pair.drive();
    assert_eq!(pair.rt.dyno.as_ref().unwrap().received, b"0009push\n");
    let now = pair.now;
    pair.rt.end_dyno(&mut pair.server, now, DynoEnd::Clean);
    pair.drive();
    assert_eq!(pair.exit_status(), Some(0));
    assert!(stderr_text(&pair).is_empty());
}

#[test]
fn the_clients_stdin_waits_for_the_dynos_first_bytes() {
    let user = ed25519(1, "u");
    let mut pair = platform(&user, none);
    pair.rt.dyno_script = DynoScript {
        first: Vec::new(),
        echo: false,
        end: None,
        ..DynoScript::default()
    };
    run(&mut pair, &user, b"git-upload-pack 'myapp.git'");
    pair.client.send_data(b"early");
    pair.drive();
    assert!(
        pair.rt.dyno.as_ref().unwrap().received.is_empty(),
        "nothing may follow the header before the dyno speaks"
    );
    assert_eq!(
        pair.server.backend_stdin(pair.rt.dyno.as_ref().unwrap().id),
        b""
    );
}

#[test]
fn no_access_is_refused_before_provisioning_with_one_message() {
    let user = ed25519(1, "u");
    for app in ["otherapp", "missing"] {
        let mut pair = platform(&user, none);
        run(
            &mut pair,
            &user,
            format!("git-receive-pack '{app}.git'").as_bytes(),
        );
        assert_eq!(pair.rt.requests.len(), 2, "no provisioning");
        let err = stderr_text(&pair);
        assert!(
            err.starts_with(&format!(
                " ! No such app as {app}, or you do not have access to it."
            )),
            "{err}"
        );
        assert_eq!(pair.exit_status(), Some(1));
        assert!(pair.rt.dyno.is_none());
    }
}

#[test]
fn an_outage_during_the_key_lookup_is_not_a_wrong_key() {
    let user = ed25519(1, "u");
    let failures: [Tweak; 4] = [
        |_| Some(Some(Err(HttpError::Failed("connection refused".into())))),
        |_| Some(Some(Err(HttpError::Timeout))),
        |_| {
            Some(Some(Ok(HttpResponse {
                status: 500,
                body: Vec::new(),
            })))
        },
        |_| {
            Some(Some(Ok(HttpResponse {
                status: 200,
                body: b"garbage".to_vec(),
            })))
        },
    ];
    for failure in failures {
        let mut pair = platform(&user, failure);
        pair.handshake();
        pair.client.request_service("ssh-userauth");
        pair.drive();
        pair.client.auth_publickey("git", &user);
        pair.drive();
        let banner = pair.events.iter().find_map(|e| match e {
            Event::Banner(b) => Some(b.clone()),
            _ => None,
        });
        let banner = banner.expect("a banner explains the outage");
        assert!(
            banner.contains("platform is unavailable") && banner.contains("not checked"),
            "{banner}"
        );
        assert!(matches!(
            pair.events.last(),
            Some(Event::AuthFailure { .. })
        ));
        assert!(pair.server.identity().is_none());
    }
}

#[test]
fn an_unknown_key_is_permission_denied() {
    let user = ed25519(1, "u");
    let stranger = ed25519(2, "s");
    let mut pair = platform(&user, none);
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    pair.client
        .auth_query("git", stranger.public_key(), "ssh-ed25519");
    pair.drive();
    pair.client.auth_publickey("git", &stranger);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert!(!pair.events.iter().any(|e| matches!(e, Event::Banner(_))));
    assert_eq!(
        pair.rt.requests.len(),
        1,
        "the refused answer is cached for the connection"
    );
}

#[test]
fn platform_failures_after_login_each_have_their_message() {
    let user = ed25519(1, "u");
    let cases: [(Tweak, &str, u32); 4] = [
        (
            |r| {
                r.url.contains("/apps/").then_some(Some(Ok(HttpResponse {
                    status: 503,
                    body: Vec::new(),
                })))
            },
            " ! The platform is unavailable right now",
            1,
        ),
        (
            |r| {
                r.url.contains("gitaction").then_some(Some(Ok(HttpResponse {
                    status: 500,
                    body: br#"{"error": "Server Error. Check status page."}"#.to_vec(),
                })))
            },
            "\n ! Unable to contact build server.\n",
            127,
        ),
        (
            |r| {
                r.url
                    .contains("gitaction")
                    .then_some(Some(Err(HttpError::Timeout)))
            },
            "\n ! Unable to contact build server.\n",
            127,
        ),
        (
            |r| {
                r.url.contains("gitaction").then_some(Some(Ok(HttpResponse {
                    status: 200,
                    body: b"{}".to_vec(),
                })))
            },
            "\n ! Unable to contact build server.\n",
            127,
        ),
    ];
    for (tweak, message, status) in cases {
        let mut pair = platform(&user, tweak);
        run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
        let err = stderr_text(&pair);
        assert!(err.starts_with(message), "{err:?}");
        assert!(err.contains(&format!("(session {})", pair.server.id())));
        assert_eq!(pair.exit_status(), Some(status));
        assert!(pair.rt.dyno.is_none());
    }
}

#[test]
fn dyno_failures() {
    let user = ed25519(1, "u");
    // The dyno host refuses the connection.
    let mut pair = platform(&user, none);
    pair.rt.dyno_script.connects = false;
    run(&mut pair, &user, b"git-upload-pack 'myapp.git'");
    assert!(stderr_text(&pair).starts_with("\n ! Unable to contact build server.\n"));
    assert_eq!(pair.exit_status(), Some(127));

    // An unknown dyno, and an in-band error: stderr, exit 1.
    for (first, shown) in [
        (&b"Dyno does not exist."[..], "Dyno does not exist."),
        (
            b"E: \n ! Problem provisioning build server\n\n",
            " \n ! Problem provisioning build server\n\n",
        ),
    ] {
        let mut pair = platform(&user, none);
        pair.rt.dyno_script = DynoScript {
            first: first.to_vec(),
            ..DynoScript::default()
        };
        run(&mut pair, &user, b"git-upload-pack 'myapp.git'");
        assert_eq!(stderr_text(&pair), shown);
        assert!(pair.received().0.is_empty());
        assert_eq!(pair.exit_status(), Some(1));
    }

    // The dyno drops mid-push: never exit 0.
    let mut pair = platform(&user, none);
    pair.rt.dyno_script = DynoScript {
        first: b"0000".to_vec(),
        end: Some(DynoEnd::Lost),
        ..DynoScript::default()
    };
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    let err = stderr_text(&pair);
    assert!(
        err.starts_with(" ! Lost connection to the build server.\n"),
        "{err}"
    );
    assert_eq!(pair.exit_status(), Some(1));
}

#[test]
fn a_client_that_hangs_up_cancels_what_is_in_flight() {
    let user = ed25519(1, "u");
    // During provisioning (the platform never answers).
    let mut pair = platform(&user, |r| r.url.contains("gitaction").then_some(None));
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    assert_eq!(pair.rt.requests.len(), 3);
    let now = pair.now;
    pair.server.handle_input(now, Input::PeerClosed);
    pair.drive();
    assert_eq!(pair.rt.cancelled.len(), 1);
    assert!(pair.server.is_finished());
    assert!(pair.rt.dyno.is_none());

    // During the relay.
    let mut pair = platform(&user, none);
    pair.rt.dyno_script = DynoScript {
        end: None,
        ..DynoScript::default()
    };
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    let now = pair.now;
    pair.server.handle_input(now, Input::PeerClosed);
    pair.drive();
    assert!(pair.rt.dyno.as_ref().unwrap().closed_by_session);
    assert!(
        pair.rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::CloseDyno { .. }))
    );
    assert!(pair.server.is_finished());

    // A late answer for the abandoned request changes nothing.
    let mut pair = platform(&user, |r| r.url.contains("gitaction").then_some(None));
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    pair.client.send_close();
    pair.drive();
    let Some(Output::Http { id, .. }) = pair
        .rt
        .outputs
        .iter()
        .rev()
        .find(|o| matches!(o, Output::Http { .. }))
    else {
        panic!()
    };
    let id = *id;
    let now = pair.now;
    let body = br#"{"host": "h", "dyno_id": "d", "rez_id": "r"}"#.to_vec();
    pair.server.handle_input(
        now,
        Input::HttpDone {
            id,
            result: Ok(HttpResponse { status: 200, body }),
        },
    );
    pair.drive();
    assert!(
        !pair
            .rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::ConnectDyno { .. }))
    );
}

#[test]
fn the_grace_time_cancels_a_lookup_in_flight() {
    let user = ed25519(1, "u");
    // A lookup limit longer than the login grace time (30 s).
    let mut config = config();
    if let Mode::Api { api, .. } = &mut config.mode {
        api.timeout = Duration::from_secs(60);
    }
    let mut pair = platform_with(config, &user, |r| r.url.contains("lookup").then_some(None));
    begin_login(&mut pair, &user);
    assert_eq!(pair.rt.requests.len(), 1);
    // A message sent meanwhile waits for the lookup (reading goes on, so a
    // hang-up is noticed).
    assert!(pair.server.wants_read());
    pair.client.open_session(1 << 20, 32768);
    pair.drive();
    assert!(
        !pair
            .events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened | Event::ChannelOpenFailed { .. }))
    );
    pair.advance(Duration::from_secs(31));
    assert_eq!(pair.rt.cancelled.len(), 1);
    assert!(pair.server.is_finished());
    assert!(
        pair.close_text().contains("login grace time"),
        "{}",
        pair.close_text()
    );
}

#[test]
fn a_hang_up_during_the_key_lookup_cancels_it() {
    let user = ed25519(1, "u");
    let mut pair = platform(&user, |r| r.url.contains("lookup").then_some(None));
    begin_login(&mut pair, &user);
    assert!(pair.server.wants_read());
    let now = pair.now;
    pair.server.handle_input(now, Input::PeerClosed);
    pair.drive();
    assert_eq!(pair.rt.cancelled.len(), 1);
    assert!(pair.server.is_finished());
}

#[test]
fn slow_provisioning_shows_progress() {
    let user = ed25519(1, "u");
    let mut pair = platform(&user, |r| r.url.contains("gitaction").then_some(None));
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    assert!(stderr_text(&pair).is_empty());
    pair.advance(Duration::from_secs(4));
    assert_eq!(stderr_text(&pair), "-----> Waiting for a build server...\n");
    pair.advance(Duration::from_secs(5));
    assert_eq!(stderr_text(&pair).matches("Waiting").count(), 2);
    assert_eq!(pair.exit_status(), None);
}

#[test]
fn upload_archive_goes_through_provisioning() {
    let user = ed25519(1, "u");
    let mut pair = platform(&user, none);
    run(&mut pair, &user, b"git-upload-archive 'myapp.git'");
    let last = &pair.rt.requests.last().unwrap().url;
    assert!(
        last.ends_with("/internal/myapp/gitaction?command=git-upload-archive"),
        "{last}"
    );
    assert_eq!(pair.exit_status(), Some(0));
}

/// The core keeps every time limit of a platform request: one the platform
/// never answers fails at its `timeout`, as a timeout would, and is
/// abandoned (`Output::Cancel`) so the runtime lets its connection go.
#[test]
fn requests_the_platform_never_answers_time_out_in_the_core() {
    let user = ed25519(1, "u");
    // The key lookup (5 s): an outage, not a wrong key; login can go on.
    let mut pair = platform(&user, |r| r.url.contains("lookup").then_some(None));
    begin_login(&mut pair, &user);
    assert!(pair.rt.cancelled.is_empty());
    pair.advance(Duration::from_secs(4));
    assert!(pair.rt.cancelled.is_empty(), "cancelled before its time");
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.rt.cancelled.len(), 1);
    let banner = pair
        .events
        .iter()
        .any(|e| matches!(e, Event::Banner(b) if b.contains("platform is unavailable")));
    assert!(banner, "{:?}", pair.events);
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert!(pair.server_close().is_none(), "the client may try again");

    // Provisioning (30 s): the original's message, and nothing after.
    let mut pair = platform(&user, |r| r.url.contains("gitaction").then_some(None));
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    let provision = match pair.rt.outputs.iter().rev().find_map(|o| match o {
        Output::Http { id, .. } => Some(*id),
        _ => None,
    }) {
        Some(id) => id,
        None => panic!("no provisioning request"),
    };
    pair.advance(Duration::from_secs(29));
    assert_eq!(pair.exit_status(), None);
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.rt.cancelled, [provision]);
    assert!(
        stderr_text(&pair).contains("Unable to contact build server"),
        "{}",
        stderr_text(&pair)
    );
    assert_eq!(pair.exit_status(), Some(127));
    assert!(
        !pair
            .rt
            .outputs
            .iter()
            .any(|o| matches!(o, Output::ConnectDyno { .. }))
    );
}

#[test]
fn command_slots_bound_api_mode_too() {
    use gitmouth_core::test_util::CommandSlots;
    let user = ed25519(1, "u");
    let slots = CommandSlots::new(1);
    // A push to a dyno holds a slot while it relays, and gives it back.
    let mut pair = platform(&user, none);
    pair.rt.slots = slots.clone();
    pair.rt.dyno_script = DynoScript {
        end: None,
        ..DynoScript::default()
    };
    run(&mut pair, &user, b"git-receive-pack 'myapp.git'");
    assert!(pair.rt.dyno.is_some());
    assert_eq!(slots.in_use(), 1);
    // Past the limit: told the server is busy, before the platform is
    // asked anything about the app.
    let mut busy = platform(&user, none);
    busy.rt.slots = slots.clone();
    run(&mut busy, &user, b"git-upload-pack 'myapp.git'");
    assert_eq!(busy.exit_status(), Some(1));
    assert!(stderr_text(&busy).contains("The server is busy"));
    assert_eq!(busy.rt.requests.len(), 1, "only the key lookup");
    let out = String::from_utf8(busy.received().0).unwrap();
    assert!(
        out.get(4..).unwrap().starts_with("ERR The server is busy"),
        "{out}"
    );
    let now = pair.now;
    pair.rt.end_dyno(&mut pair.server, now, DynoEnd::Clean);
    pair.drive();
    assert_eq!(pair.exit_status(), Some(0));
    assert_eq!(slots.in_use(), 0);
}
