//! The git command's lifecycle in API mode (`docs/openruko.md`):
//! check the user's access to the app, provision a build dyno, meet it over
//! TLS and relay until it closes.
//!
//! ```text
//! exec ─▶ CheckingAccess ─200─▶ Provisioning ─200─▶ Connecting ─up─▶ Relaying ─close─▶ Done
//!             │ 401/403/404        │ anything else     │ failed          │ not clean: "lost"
//!             │ (one message)      └── "Unable to contact build server" (127)
//!             └ 5xx/timeout: "platform unavailable"
//! ```
//!
//! A client that goes away cancels whatever is in flight: the HTTP request
//! is abandoned, the dyno connection closed (the protocol's only stop
//! signal). The client's stdin is held until the dyno speaks first, and the
//! dyno connection is never half-closed.

use std::time::Instant;

use crate::app::api::{self, AccessResult, HttpError, HttpResponse};
use crate::app::command::GitCommand;
use crate::app::dyno::{self, DynoEnd, DynoStream, Route};
use crate::app::messages::{self, UserError};
use crate::transport::Transport;

use super::job::{Job, Relay};

/// When the first "waiting" line goes out during provisioning.
pub(super) const PROGRESS_FIRST: std::time::Duration = std::time::Duration::from_secs(3);
/// How often it repeats.
pub(super) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
use super::{ExitStatus, Mode, Output, RequestId, ServerUpper, Stream};

impl ServerUpper {
    /// Starts the API-mode lifecycle: the access check first.
    pub(super) fn start_remote(&mut self, cmd: GitCommand) {
        let config = self.config.clone();
        let Mode::Api { api, .. } = &config.mode else {
            return;
        };
        let Some(user) = &self.api_user else {
            self.fail_command(UserError::PlatformFailing);
            return;
        };
        let request = api::access_request(api, &cmd.repo, &user.api_key);
        let id = self.next_id();
        self.outputs.push_back(Output::Http { id, request });
        self.job = Job::CheckingAccess { id, cmd };
    }

    /// Asks the platform for a build dyno.
    pub(super) fn provision(&mut self, cmd: GitCommand, now: Instant) {
        let config = self.config.clone();
        let Mode::Api { api, .. } = &config.mode else {
            return self.internal_error("a dyno asked for in standalone mode");
        };
        tracing::info!(session = %self.id, app = cmd.repo.as_str(), "provisioning");
        let request = api::provision_request(api, &cmd.repo, cmd.verb);
        let id = self.next_id();
        self.outputs.push_back(Output::Http { id, request });
        let progress_at = now + PROGRESS_FIRST;
        self.job = Job::Provisioning {
            id,
            cmd,
            progress_at,
        };
    }

    /// An HTTP answer for the job (the access check or provisioning).
    pub(super) fn on_http_done(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<HttpResponse, HttpError>,
    ) {
        match std::mem::replace(&mut self.job, Job::Done) {
            Job::CheckingAccess { id: expected, cmd } if expected == id => {
                match api::parse_access(&result) {
                    AccessResult::Granted => {
                        tracing::info!(session = %self.id, app = cmd.repo.as_str(), "access granted");
                        if cmd.verb.is_push() {
                            self.request_push_lock(cmd);
                        } else {
                            self.provision(cmd, now);
                        }
                    }
                    AccessResult::Denied => {
                        tracing::info!(session = %self.id, app = cmd.repo.as_str(), "no such app or no access");
                        self.fail_command(UserError::NoSuchApp {
                            app: cmd.repo.as_str().to_owned(),
                        });
                    }
                    AccessResult::Unavailable(why) => {
                        tracing::error!(session = %self.id, error = %why, "the platform did not answer the access check");
                        self.fail_command(UserError::PlatformFailing);
                    }
                }
            }
            Job::Provisioning {
                id: expected, cmd, ..
            } if expected == id => match api::parse_provision(&result) {
                Ok(found) => {
                    let config = self.config.clone();
                    let Mode::Api {
                        api,
                        rendezvous_port,
                    } = &config.mode
                    else {
                        return;
                    };
                    tracing::info!(
                        session = %self.id,
                        host = %found.host,
                        dyno = %found.dyno_id,
                        rez = %crate::log_safe(found.rez_id.as_bytes()),
                        "dyno provisioned; connecting"
                    );
                    let header = dyno::rendezvous_header(&api.key, &found.dyno_id);
                    let id = self.next_id();
                    self.outputs.push_back(Output::ConnectDyno {
                        id,
                        host: found.host,
                        port: *rendezvous_port,
                        header,
                    });
                    self.job = Job::Connecting { id, cmd };
                }
                Err(why) => {
                    tracing::error!(session = %self.id, error = %why, "provisioning failed");
                    self.fail_command(UserError::BuildServerUnavailable);
                }
            },
            // A late answer for something abandoned.
            other => self.job = other,
        }
    }

    pub(super) fn on_dyno_connected(
        &mut self,
        _now: Instant,
        id: RequestId,
        result: Result<(), String>,
    ) {
        match std::mem::replace(&mut self.job, Job::Done) {
            Job::Connecting { id: expected, cmd } if expected == id => match result {
                Ok(()) => {
                    tracing::info!(session = %self.id, command = cmd.verb.dashed(), "relaying to the dyno");
                    self.job = Job::Relaying(Relay {
                        id,
                        stream: DynoStream::default(),
                    });
                }
                Err(why) => {
                    tracing::error!(session = %self.id, error = %why, "cannot reach the dyno");
                    self.fail_command(UserError::BuildServerUnavailable);
                }
            },
            other => self.job = other,
        }
    }

    /// Bytes from the dyno: routed by the stream's first bytes.
    pub(super) fn on_dyno_data(&mut self, t: &mut Transport, data: &[u8]) {
        let Job::Relaying(relay) = &mut self.job else {
            return;
        };
        let mut stream = std::mem::take(&mut relay.stream);
        stream.feed(data, |route, bytes| {
            self.deliver(t, to_stream(route), bytes)
        });
        if let Job::Relaying(relay) = &mut self.job {
            relay.stream = stream;
        }
    }

    pub(super) fn on_dyno_closed(&mut self, t: &mut Transport, id: RequestId, end: DynoEnd) {
        let Job::Relaying(relay) = &self.job else {
            return;
        };
        if relay.id != id {
            return;
        }
        let Job::Relaying(mut relay) = std::mem::replace(&mut self.job, Job::Done) else {
            return;
        };
        relay
            .stream
            .finish(|route, bytes| self.deliver(t, to_stream(route), bytes));
        let route = relay.stream.route();
        let status = dyno::exit_status(route, end);
        tracing::info!(session = %self.id, ?end, ?route, status, "dyno closed");
        if end == DynoEnd::Lost && route != Some(Route::Stderr) {
            let text = messages::with_session_id(messages::lost_build_server(), &self.id);
            if let Some(ch) = self.channel.as_mut() {
                ch.push_notice(text.into_bytes());
            }
        }
        self.report_exit(ExitStatus::Code(status));
    }
}

fn to_stream(route: Route) -> Stream {
    match route {
        Route::Stdout => Stream::Stdout,
        Route::Stderr => Stream::Stderr,
    }
}
