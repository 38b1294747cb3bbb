//! The git command in API mode (`docs/openruko.md`): check the user's
//! access to the app, provision a build dyno, meet it over TLS and relay
//! until it closes.
//!
//! ```text
//! start ─▶ CheckingAccess ─200─▶ [Parked: lock] ─▶ Provisioning ─200─▶ Connecting ─up─▶ Relaying ─close─▶ Done
//!              │ 401/403/404         │ held            │ anything else    │ failed          │ not clean: "lost"
//!              │ (one message)       │                 └── "Unable to contact build server" (127)
//!              └ 5xx/timeout: "platform unavailable"
//! ```
//!
//! The lock comes after the access check: a stranger must not learn that
//! someone is pushing to an app. A client that goes away cancels whatever
//! is in flight: the HTTP request is abandoned, the dyno connection closed
//! (the protocol's only stop signal). The client's stdin is held until the
//! dyno speaks first, and the dyno connection is never half-closed.

use std::time::{Duration, Instant};

use crate::actions::{ExitStatus, Output, RequestId, Stream};
use crate::app::api::{self, AccessResult, ApiServer, HttpError, HttpResponse};
use crate::app::command::GitCommand;
use crate::app::dyno::{self, DynoEnd, DynoStream, Route};
use crate::app::messages::{self, UserError};
use crate::timer::{Timers, timer_kinds};

use super::{JobCx, JobInput};

/// When the first "waiting" line goes out during provisioning.
const PROGRESS_FIRST: Duration = Duration::from_secs(3);
/// How often it repeats.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long the TLS connection to a dyno, header included, may take.
const DYNO_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

timer_kinds! {
    /// The platform command's deadlines.
    enum PlatformTimer {
        /// The request in flight (access check, provisioning, dyno
        /// connection) has had its time.
        Request,
        /// Provisioning is slow: tell the user it is not stuck.
        Progress,
    }
}

enum State {
    /// Asking whether the user may use the app.
    CheckingAccess { id: RequestId, cmd: GitCommand },
    /// A push waits while its task takes the app's lock.
    Parked,
    /// Asking for a build dyno.
    Provisioning { id: RequestId, cmd: GitCommand },
    /// Connecting to the dyno.
    Connecting { id: RequestId, cmd: GitCommand },
    /// Relaying to and from the dyno.
    Relaying { id: RequestId, stream: DynoStream },
    /// Over.
    Done,
}

/// git on a build dyno of an Openruko platform.
pub(super) struct PlatformJob {
    api: ApiServer,
    rendezvous_port: u16,
    state: State,
    timers: Timers<PlatformTimer, 2>,
}

impl PlatformJob {
    /// Starts with the access check.
    pub(super) fn start(
        cx: &mut JobCx<'_>,
        cmd: GitCommand,
        api: ApiServer,
        rendezvous_port: u16,
    ) -> Self {
        let mut job = Self {
            api,
            rendezvous_port,
            state: State::Done,
            timers: Timers::default(),
        };
        let Some(user) = cx.api_user else {
            // Authentication in API mode always yields an account.
            cx.internal_error("no platform account for an authenticated user");
            return job;
        };
        let request = api::access_request(&job.api, &cmd.repo, &user.api_key);
        let id = job.http(cx, request);
        job.state = State::CheckingAccess { id, cmd };
        job
    }

    /// The push lock is granted: provisioning is next.
    pub(super) fn resume(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand) {
        if matches!(self.state, State::Parked) {
            self.provision(cx, cmd);
        } else {
            self.impossible(cx, "a lock granted to a job not waiting for one");
        }
    }

    /// A bug: the user is told the server failed, and whatever is in
    /// flight is abandoned.
    fn impossible(&mut self, cx: &mut JobCx<'_>, what: &'static str) {
        cx.internal_error(what);
        self.stop(cx);
    }

    /// Asks the platform for a build dyno.
    fn provision(&mut self, cx: &mut JobCx<'_>, cmd: GitCommand) {
        tracing::info!(app = cmd.repo.as_str(), "provisioning");
        let request = api::provision_request(&self.api, &cmd.repo, cmd.verb);
        let id = self.http(cx, request);
        self.timers
            .set(PlatformTimer::Progress, cx.now + PROGRESS_FIRST);
        self.state = State::Provisioning { id, cmd };
    }

    /// Sends a request to the platform, within its time limit.
    fn http(&mut self, cx: &mut JobCx<'_>, request: api::HttpRequest) -> RequestId {
        let id = cx.next_id();
        self.timers
            .set(PlatformTimer::Request, cx.now + request.timeout);
        cx.push(Output::Http { id, request });
        id
    }

    pub(super) fn owns(&self, id: RequestId) -> bool {
        match &self.state {
            State::CheckingAccess { id: own, .. }
            | State::Provisioning { id: own, .. }
            | State::Connecting { id: own, .. }
            | State::Relaying { id: own, .. } => *own == id,
            State::Parked | State::Done => false,
        }
    }

    pub(super) fn handle(&mut self, cx: &mut JobCx<'_>, id: RequestId, input: JobInput<'_>) {
        if !self.owns(id) {
            return;
        }
        if !matches!(self.state, State::Relaying { .. }) {
            // The answer came in time.
            self.timers.stop(PlatformTimer::Request);
        }
        match input {
            JobInput::Http(result) => self.on_http_done(cx, result),
            JobInput::DynoConnected(result) => self.on_dyno_connected(cx, id, result),
            JobInput::Data(_, data) => self.on_dyno_data(cx, data),
            JobInput::DynoClosed(end) => self.on_dyno_closed(cx, end),
            JobInput::RepoOpened(_)
            | JobInput::Spawned(_)
            | JobInput::Eof(_)
            | JobInput::Exited(_)
            | JobInput::Helper(_)
            | JobInput::Lock(_)
            | JobInput::LockWaiting(_)
            | JobInput::Slot(_) => self.impossible(cx, "a local answer for a platform job"),
        }
    }

    /// An HTTP answer: the access check or provisioning.
    fn on_http_done(&mut self, cx: &mut JobCx<'_>, result: Result<HttpResponse, HttpError>) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::CheckingAccess { cmd, .. } => match api::parse_access(&result) {
                AccessResult::Granted => {
                    tracing::info!(app = cmd.repo.as_str(), "access granted");
                    if cmd.verb.is_push() {
                        cx.park_for_lock(cmd);
                        self.state = State::Parked;
                    } else {
                        self.provision(cx, cmd);
                    }
                }
                AccessResult::Denied => {
                    tracing::info!(app = cmd.repo.as_str(), "no such app or no access");
                    cx.fail(UserError::NoSuchApp {
                        app: cmd.repo.as_str().to_owned(),
                    });
                }
                AccessResult::Unavailable(why) => {
                    tracing::error!(error = %why, "the platform did not answer the access check");
                    cx.fail(UserError::PlatformFailing);
                }
            },
            State::Provisioning { cmd, .. } => {
                self.timers.stop(PlatformTimer::Progress);
                self.provisioned(cx, cmd, &result);
            }

            other => {
                self.state = other;
                self.impossible(cx, "an HTTP answer for a job waiting for none");
            }
        }
    }

    /// Provisioning answered: connect to the dyno, or tell the user why
    /// not.
    fn provisioned(
        &mut self,
        cx: &mut JobCx<'_>,
        cmd: GitCommand,
        result: &Result<HttpResponse, HttpError>,
    ) {
        match api::parse_provision(result) {
            Ok(found) => {
                tracing::info!(
                    host = %found.host,
                    dyno = %found.dyno_id,
                    rez = %crate::log_safe(found.rez_id.as_bytes()),
                    "dyno provisioned; connecting"
                );
                let header = dyno::rendezvous_header(&self.api.key, &found.dyno_id);
                let id = cx.next_id();
                self.timers
                    .set(PlatformTimer::Request, cx.now + DYNO_CONNECT_TIMEOUT);
                cx.push(Output::ConnectDyno {
                    id,
                    host: found.host,
                    port: self.rendezvous_port,
                    header,
                });
                self.state = State::Connecting { id, cmd };
            }
            Err(why) => {
                tracing::error!(error = %why, "provisioning failed");
                cx.fail(UserError::BuildServerUnavailable);
            }
        }
    }

    fn on_dyno_connected(&mut self, cx: &mut JobCx<'_>, id: RequestId, result: Result<(), String>) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Connecting { cmd, .. } => match result {
                Ok(()) => {
                    tracing::info!(command = cmd.verb.dashed(), "relaying to the dyno");
                    self.state = State::Relaying {
                        id,
                        stream: DynoStream::default(),
                    };
                    if cx.client_gone() {
                        self.stop(cx);
                    }
                }
                Err(why) => {
                    tracing::error!(error = %why, "cannot reach the dyno");
                    cx.fail(UserError::BuildServerUnavailable);
                }
            },
            other => {
                self.state = other;
                self.impossible(cx, "a dyno connection for a job not making one");
            }
        }
    }

    /// Bytes from the dyno: routed by the stream's first bytes.
    fn on_dyno_data(&mut self, cx: &mut JobCx<'_>, data: &[u8]) {
        let State::Relaying { stream, .. } = &mut self.state else {
            return self.impossible(cx, "dyno bytes for a job not relaying");
        };
        stream.feed(data, |route, bytes| cx.deliver(to_stream(route), bytes));
    }

    fn on_dyno_closed(&mut self, cx: &mut JobCx<'_>, end: DynoEnd) {
        let State::Relaying { mut stream, .. } = std::mem::replace(&mut self.state, State::Done)
        else {
            return self.impossible(cx, "a dyno closed for a job not relaying");
        };
        stream.finish(|route, bytes| cx.deliver(to_stream(route), bytes));
        let route = stream.route();
        let status = dyno::exit_status(route, end);
        let end_name = match end {
            DynoEnd::Clean => "clean",
            DynoEnd::Lost => "lost",
        };
        let route_name = match route {
            Some(Route::Stdout) => "stdout",
            Some(Route::Stderr) => "stderr",
            None => "none",
        };
        tracing::info!(end = end_name, route = route_name, status, "dyno closed");
        if end == DynoEnd::Lost && route != Some(Route::Stderr) {
            let text = messages::with_session_id(messages::lost_build_server(), cx.session);
            cx.notice(&text);
        }
        cx.exit(ExitStatus::Code(status));
    }

    /// Cancels whatever is in flight.
    pub(super) fn stop(&mut self, cx: &mut JobCx<'_>) {
        match &self.state {
            State::CheckingAccess { id, .. } | State::Provisioning { id, .. } => {
                tracing::info!("abandoning the platform request");
                cx.push(Output::Cancel { id: *id });
            }
            State::Connecting { id, .. } | State::Relaying { id, .. } => {
                tracing::info!("closing the dyno connection");
                cx.push(Output::CloseDyno { id: *id });
            }
            State::Parked | State::Done => {}
        }
        self.timers.stop_all();
        self.state = State::Done;
    }

    /// A request that took too long fails as if it had failed at once
    /// (and is abandoned); slow provisioning tells the user it is not
    /// stuck.
    pub(super) fn on_timeout(&mut self, cx: &mut JobCx<'_>) {
        for timer in self.timers.take_due(cx.now) {
            match (timer, &self.state) {
                (PlatformTimer::Request, State::CheckingAccess { id, .. })
                | (PlatformTimer::Request, State::Provisioning { id, .. }) => {
                    let id = *id;
                    tracing::info!("the platform did not answer in time");
                    cx.push(Output::Cancel { id });
                    self.on_http_done(cx, Err(HttpError::Timeout));
                }
                (PlatformTimer::Request, State::Connecting { id, .. }) => {
                    let id = *id;
                    cx.push(Output::CloseDyno { id });
                    let why = format!("no connection within {}s", DYNO_CONNECT_TIMEOUT.as_secs());
                    self.on_dyno_connected(cx, id, Err(why));
                }
                (PlatformTimer::Progress, State::Provisioning { .. }) => {
                    self.timers
                        .set(PlatformTimer::Progress, cx.now + PROGRESS_EVERY);
                    cx.notice(messages::waiting_for_build_server());
                }
                // A deadline of a state already left.
                _ => {}
            }
        }
    }

    /// Nothing moves on by itself here: every step is an answer.
    pub(super) fn settle(&mut self, _cx: &mut JobCx<'_>) {}

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub(super) fn relay_id(&self) -> Option<RequestId> {
        match &self.state {
            State::Relaying { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The dyno's one stream goes through as it is once its first bytes
    /// chose where (stdout, or stderr after an error marker).
    pub(super) fn passthrough(&self, stream: Stream) -> Option<Stream> {
        match &self.state {
            State::Relaying { stream: s, .. } if stream == Stream::Stdout => {
                s.route().map(to_stream)
            }
            _ => None,
        }
    }

    pub(super) fn is_running(&self) -> bool {
        matches!(self.state, State::Relaying { .. })
    }

    pub(super) fn accepts_stdin(&self) -> bool {
        matches!(&self.state, State::Relaying { stream, .. } if stream.started())
    }

    pub(super) fn holds_backend(&self) -> bool {
        matches!(
            self.state,
            State::Connecting { .. } | State::Relaying { .. }
        )
    }

    pub(super) fn stdin_closed(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub(super) fn is_over(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

fn to_stream(route: Route) -> Stream {
    match route {
        Route::Stdout => Stream::Stdout,
        Route::Stderr => Stream::Stderr,
    }
}
