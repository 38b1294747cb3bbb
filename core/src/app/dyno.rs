//! The rendezvous with a dyno (`docs/openruko.md` §4): the header,
//! where the dyno's bytes go, and what its close means.
//!
//! The dyno host merges the command's stdout and stderr, and reports its
//! own errors in-band. git's output always starts with a pkt-line length
//! (four hex digits), so the first bytes of the stream decide once and for
//! all: `E:` or `Dyno does not exist.` make the whole stream an error
//! (stderr, exit status 1); anything else is relayed to stdout unchanged.
//! Bytes are held only while they could still become one of the markers,
//! so the outcome never depends on how reads split.

/// Marker of an error the dyno host reports; stripped from what the user sees.
const ERROR_MARKER: &[u8] = b"E:";
/// What the dyno host writes for an unknown dyno; shown as it is.
const NO_DYNO: &[u8] = b"Dyno does not exist.";

/// The first record of the rendezvous: `APISERVER_KEY \n dyno_id \n`, to be
/// written in one TLS record and nothing else with it.
pub fn rendezvous_header(api_key: &str, dyno_id: &str) -> crate::SecretBytes {
    let mut header = Vec::with_capacity(api_key.len() + dyno_id.len() + 2);
    header.extend_from_slice(api_key.as_bytes());
    header.push(b'\n');
    header.extend_from_slice(dyno_id.as_bytes());
    header.push(b'\n');
    crate::SecretBytes::new(header)
}

/// Where the dyno's stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// git's output: the channel's data.
    Stdout,
    /// An error from the dyno host: the channel's stderr.
    Stderr,
}

/// The dyno stream's router: undecided until its first bytes settle it.
#[derive(Debug, Default)]
pub struct DynoStream {
    route: Option<Route>,
    /// Bytes held while undecided (shorter than the longest marker).
    held: Vec<u8>,
}

impl DynoStream {
    /// Where the stream goes, once decided.
    pub fn route(&self) -> Option<Route> {
        self.route
    }

    /// Whether the dyno has sent its first bytes (so the client's stdin may
    /// now flow to it).
    pub fn started(&self) -> bool {
        self.route.is_some() || !self.held.is_empty()
    }

    /// Takes bytes from the dyno; `deliver` receives what can go out now.
    pub fn feed(&mut self, data: &[u8], mut deliver: impl FnMut(Route, &[u8])) {
        if let Some(route) = self.route {
            deliver(route, data);
            return;
        }
        if self.held.is_empty() {
            // Fast path: decide on this chunk alone when it suffices.
            match classify(data) {
                Some(route) => self.decide(route, data, &mut deliver),
                None => self.held.extend_from_slice(data),
            }
            return;
        }
        let mut joined = std::mem::take(&mut self.held);
        joined.extend_from_slice(data);
        match classify(&joined) {
            Some(route) => self.decide(route, &joined, &mut deliver),
            None => self.held = joined,
        }
    }

    /// The stream ended: whatever is held could not become a marker.
    pub fn finish(&mut self, mut deliver: impl FnMut(Route, &[u8])) {
        if self.route.is_none() && !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.decide(Route::Stdout, &held, &mut deliver);
        }
    }

    fn decide(&mut self, route: Route, first: &[u8], deliver: &mut impl FnMut(Route, &[u8])) {
        self.route = Some(route);
        let shown = first.strip_prefix(ERROR_MARKER).unwrap_or(first);
        if !shown.is_empty() {
            deliver(route, shown);
        }
    }
}

/// Decides on the stream's first bytes, or `None` if they are still a
/// proper prefix of a marker.
fn classify(first: &[u8]) -> Option<Route> {
    if first.starts_with(ERROR_MARKER) || first.starts_with(NO_DYNO) {
        return Some(Route::Stderr);
    }
    let prefix_of = |marker: &[u8]| first.len() < marker.len() && marker.starts_with(first);
    if prefix_of(ERROR_MARKER) || prefix_of(NO_DYNO) {
        None
    } else {
        Some(Route::Stdout)
    }
}

/// How the dyno's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoEnd {
    /// TLS close_notify, then end of stream: the command finished.
    Clean,
    /// End of stream without close_notify, a reset, or an error.
    Lost,
}

/// The exit status the user gets (§4.5): 0 only for a clean close of a
/// stream that was git's own.
pub fn exit_status(route: Option<Route>, end: DynoEnd) -> u32 {
    match (route, end) {
        (Some(Route::Stderr), _) => 1,
        (_, DynoEnd::Lost) => 1,
        (_, DynoEnd::Clean) => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> (Option<Route>, Vec<u8>, Vec<u8>) {
        let mut s = DynoStream::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut sink = |r: Route, d: &[u8]| match r {
            Route::Stdout => out.extend_from_slice(d),
            Route::Stderr => err.extend_from_slice(d),
        };
        for c in chunks {
            s.feed(c, &mut sink);
        }
        s.finish(&mut sink);
        (s.route(), out, err)
    }

    #[test]
    fn the_header_is_key_and_dyno_id_on_lines() {
        let header = rendezvous_header("k", "d-1");
        assert_eq!(header.as_bytes(), b"k\nd-1\n");
        assert_eq!(format!("{header:?}"), "<6 secret bytes>");
    }

    #[test]
    fn git_output_goes_to_stdout_unchanged() {
        let (route, out, err) = run(&[b"00a0abc", b"E:not a marker here"]);
        assert_eq!(route, Some(Route::Stdout));
        assert_eq!(out, b"00a0abcE:not a marker here");
        assert!(err.is_empty());
    }

    #[test]
    fn errors_go_to_stderr_without_the_marker() {
        let (route, out, err) = run(&[b"E: \n ! Problem provisioning build server\n\n"]);
        assert_eq!(route, Some(Route::Stderr));
        assert!(out.is_empty());
        assert_eq!(err, b" \n ! Problem provisioning build server\n\n");
        let (route, _, err) = run(&[b"Dyno does not exist."]);
        assert_eq!(route, Some(Route::Stderr));
        assert_eq!(err, b"Dyno does not exist.");
        assert_eq!(exit_status(route, DynoEnd::Clean), 1);
    }

    #[test]
    fn a_split_marker_is_still_a_marker_and_a_near_miss_is_not() {
        assert_eq!(run(&[b"E", b":", b" boom"]).2, b" boom");
        assert_eq!(
            run(&[b"Dyno ", b"does not", b" exist."]).2,
            b"Dyno does not exist."
        );
        let (route, out, _) = run(&[b"Dyno ", b"does exist"]);
        assert_eq!(
            (route, out.as_slice()),
            (Some(Route::Stdout), &b"Dyno does exist"[..])
        );
        let (route, out, _) = run(&[b"E"]);
        assert_eq!((route, out.as_slice()), (Some(Route::Stdout), &b"E"[..]));
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(Some(Route::Stdout), DynoEnd::Clean), 0);
        assert_eq!(exit_status(None, DynoEnd::Clean), 0);
        assert_eq!(exit_status(Some(Route::Stdout), DynoEnd::Lost), 1);
        assert_eq!(exit_status(Some(Route::Stderr), DynoEnd::Lost), 1);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_result(
            body in proptest::collection::vec(any::<u8>(), 0..60),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"E:"[..]), Just(&b"Dyno does not exist."[..]), Just(&b"Dyno"[..]), Just(&b"E"[..])],
            cuts in proptest::collection::vec(1usize..8, 1..20),
        ) {
            let stream = [prefix, &body[..]].concat();
            let whole = run(&[&stream]);
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= stream.len() { break; }
                let n = (*c).min(stream.len() - at);
                chunks.push(&stream[at..at + n]);
                at += n;
            }
            prop_assert_eq!(run(&chunks), whole);
        }
    }
}
