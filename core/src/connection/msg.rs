//! The connection protocol's channel messages (RFC 4254 §5-6) as types:
//! one parser and one encoder, used by the server's connection layer and by
//! our client, so both sides agree on every field by construction.
//!
//! Parsing borrows from the packet (nothing is copied); encoding appends to
//! the transport's packet buffer (nothing is allocated).

use crate::wire::{self, Malformed, Parsed, Parser, numbers};

/// A channel request's type and its type-specific fields (RFC 4254 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `env`: one environment variable for the command (§6.4).
    Env {
        /// The variable's name.
        name: &'a [u8],
        /// Its value.
        value: &'a [u8],
    },
    /// `exec`: run this command (§6.5).
    Exec {
        /// The command line, as the client sent it.
        command: &'a [u8],
    },
    /// `shell`: start the user's shell (§6.5).
    Shell,
    /// `signal`: deliver a signal to the command (§6.9).
    Signal {
        /// The signal's name without "SIG".
        name: &'a [u8],
    },
    /// `exit-status` (§6.10).
    ExitStatus {
        /// The command's exit status.
        code: u32,
    },
    /// `exit-signal` (§6.10).
    ExitSignal {
        /// The signal's name without "SIG".
        name: &'a [u8],
        /// Whether it dumped core.
        core_dumped: bool,
        /// A message for the user.
        message: &'a [u8],
    },
    /// Any other type, with its fields unparsed.
    Other {
        /// The request's type.
        kind: &'a [u8],
        /// The rest of the message.
        data: &'a [u8],
    },
}

impl Request<'_> {
    /// The request's type name on the wire.
    pub fn kind(&self) -> &[u8] {
        match self {
            Request::Env { .. } => b"env",
            Request::Exec { .. } => b"exec",
            Request::Shell => b"shell",
            Request::Signal { .. } => b"signal",
            Request::ExitStatus { .. } => b"exit-status",
            Request::ExitSignal { .. } => b"exit-signal",
            Request::Other { kind, .. } => kind,
        }
    }
}

/// One channel message (numbers 90 to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMsg<'a> {
    /// CHANNEL_OPEN (§5.1).
    Open {
        /// The channel type, `session` for us.
        kind: &'a [u8],
        /// The opener's channel number.
        sender: u32,
        /// The opener's initial window.
        window: u32,
        /// The largest data packet the opener accepts.
        max_packet: u32,
        /// Type-specific fields, unparsed.
        extra: &'a [u8],
    },
    /// CHANNEL_OPEN_CONFIRMATION (§5.1).
    OpenConfirmation {
        /// The opener's channel number.
        recipient: u32,
        /// The confirming side's channel number.
        sender: u32,
        /// The confirming side's initial window.
        window: u32,
        /// The largest data packet the confirming side accepts.
        max_packet: u32,
    },
    /// CHANNEL_OPEN_FAILURE (§5.1).
    OpenFailure {
        /// The opener's channel number.
        recipient: u32,
        /// One of the `OPEN_*` reason codes.
        reason: u32,
        /// Why, for the user.
        description: &'a [u8],
    },
    /// CHANNEL_WINDOW_ADJUST (§5.2).
    WindowAdjust {
        /// The receiving side's channel number.
        recipient: u32,
        /// Bytes added to the window.
        bytes: u32,
    },
    /// CHANNEL_DATA (§5.2).
    Data {
        /// The receiving side's channel number.
        recipient: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// CHANNEL_EXTENDED_DATA (§5.2); code 1 is stderr.
    ExtendedData {
        /// The receiving side's channel number.
        recipient: u32,
        /// The data type code.
        code: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// CHANNEL_EOF (§5.3).
    Eof {
        /// The receiving side's channel number.
        recipient: u32,
    },
    /// CHANNEL_CLOSE (§5.3).
    Close {
        /// The receiving side's channel number.
        recipient: u32,
    },
    /// CHANNEL_REQUEST (§5.4).
    Request {
        /// The receiving side's channel number.
        recipient: u32,
        /// Whether the sender wants SUCCESS or FAILURE back.
        want_reply: bool,
        /// What is asked.
        request: Request<'a>,
    },
    /// CHANNEL_SUCCESS (§5.4).
    Success {
        /// The receiving side's channel number.
        recipient: u32,
    },
    /// CHANNEL_FAILURE (§5.4).
    Failure {
        /// The receiving side's channel number.
        recipient: u32,
    },
}

/// OPEN_FAILURE reason codes (RFC 4254 §5.1).
pub mod open_failure {
    /// The server will not open such a channel (or not one more).
    pub const ADMINISTRATIVELY_PROHIBITED: u32 = 1;
    /// The channel type is not known.
    pub const UNKNOWN_CHANNEL_TYPE: u32 = 3;
}

/// The extended data type code of stderr (RFC 4254 §5.2).
pub const EXTENDED_STDERR: u32 = 1;

impl<'a> ChannelMsg<'a> {
    /// Parses a whole message, its number included; `Err` for anything that
    /// is not a well-formed channel message (trailing bytes included, except
    /// in the unparsed parts of an open or an unknown request).
    pub fn parse(payload: &'a [u8]) -> Parsed<Self> {
        let mut p = Parser::new(payload);
        let number = p.u8()?;
        if number == numbers::CHANNEL_OPEN {
            let kind = p.string()?;
            let (sender, window, max_packet) = (p.u32()?, p.u32()?, p.u32()?);
            return Ok(ChannelMsg::Open {
                kind,
                sender,
                window,
                max_packet,
                extra: p.rest(),
            });
        }
        let recipient = p.u32()?;
        let msg = match number {
            numbers::CHANNEL_OPEN_CONFIRMATION => {
                let (sender, window, max_packet) = (p.u32()?, p.u32()?, p.u32()?);
                // Type-specific fields may follow; none of ours has any.
                return Ok(ChannelMsg::OpenConfirmation {
                    recipient,
                    sender,
                    window,
                    max_packet,
                });
            }
            numbers::CHANNEL_OPEN_FAILURE => {
                let reason = p.u32()?;
                let description = p.string()?;
                let _language = p.string()?;
                ChannelMsg::OpenFailure {
                    recipient,
                    reason,
                    description,
                }
            }
            numbers::CHANNEL_WINDOW_ADJUST => ChannelMsg::WindowAdjust {
                recipient,
                bytes: p.u32()?,
            },
            numbers::CHANNEL_DATA => ChannelMsg::Data {
                recipient,
                data: p.string()?,
            },
            numbers::CHANNEL_EXTENDED_DATA => ChannelMsg::ExtendedData {
                recipient,
                code: p.u32()?,
                data: p.string()?,
            },
            numbers::CHANNEL_EOF => ChannelMsg::Eof { recipient },
            numbers::CHANNEL_CLOSE => ChannelMsg::Close { recipient },
            numbers::CHANNEL_REQUEST => {
                let kind = p.string()?;
                let want_reply = p.bool()?;
                let request = parse_request(kind, &mut p)?;
                return Ok(ChannelMsg::Request {
                    recipient,
                    want_reply,
                    request,
                });
            }
            numbers::CHANNEL_SUCCESS => ChannelMsg::Success { recipient },
            numbers::CHANNEL_FAILURE => ChannelMsg::Failure { recipient },
            _ => return Err(Malformed),
        };
        p.finish()?;
        Ok(msg)
    }

    /// The message number.
    pub fn number(&self) -> u8 {
        match self {
            ChannelMsg::Open { .. } => numbers::CHANNEL_OPEN,
            ChannelMsg::OpenConfirmation { .. } => numbers::CHANNEL_OPEN_CONFIRMATION,
            ChannelMsg::OpenFailure { .. } => numbers::CHANNEL_OPEN_FAILURE,
            ChannelMsg::WindowAdjust { .. } => numbers::CHANNEL_WINDOW_ADJUST,
            ChannelMsg::Data { .. } => numbers::CHANNEL_DATA,
            ChannelMsg::ExtendedData { .. } => numbers::CHANNEL_EXTENDED_DATA,
            ChannelMsg::Eof { .. } => numbers::CHANNEL_EOF,
            ChannelMsg::Close { .. } => numbers::CHANNEL_CLOSE,
            ChannelMsg::Request { .. } => numbers::CHANNEL_REQUEST,
            ChannelMsg::Success { .. } => numbers::CHANNEL_SUCCESS,
            ChannelMsg::Failure { .. } => numbers::CHANNEL_FAILURE,
        }
    }

    /// The channel number the message is addressed to (`None` for an open).
    pub fn recipient(&self) -> Option<u32> {
        match *self {
            ChannelMsg::Open { .. } => None,
            ChannelMsg::OpenConfirmation { recipient, .. }
            | ChannelMsg::OpenFailure { recipient, .. }
            | ChannelMsg::WindowAdjust { recipient, .. }
            | ChannelMsg::Data { recipient, .. }
            | ChannelMsg::ExtendedData { recipient, .. }
            | ChannelMsg::Eof { recipient }
            | ChannelMsg::Close { recipient }
            | ChannelMsg::Request { recipient, .. }
            | ChannelMsg::Success { recipient }
            | ChannelMsg::Failure { recipient } => Some(recipient),
        }
    }

    /// Appends the message, its number first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::put_u8(out, self.number());
        match *self {
            ChannelMsg::Open {
                kind,
                sender,
                window,
                max_packet,
                extra,
            } => {
                wire::put_string(out, kind);
                wire::put_u32(out, sender);
                wire::put_u32(out, window);
                wire::put_u32(out, max_packet);
                out.extend_from_slice(extra);
            }
            ChannelMsg::OpenConfirmation {
                recipient,
                sender,
                window,
                max_packet,
            } => {
                wire::put_u32(out, recipient);
                wire::put_u32(out, sender);
                wire::put_u32(out, window);
                wire::put_u32(out, max_packet);
            }
            ChannelMsg::OpenFailure {
                recipient,
                reason,
                description,
            } => {
                wire::put_u32(out, recipient);
                wire::put_u32(out, reason);
                wire::put_string(out, description);
                wire::put_string(out, b"");
            }
            ChannelMsg::WindowAdjust { recipient, bytes } => {
                wire::put_u32(out, recipient);
                wire::put_u32(out, bytes);
            }
            ChannelMsg::Data { recipient, data } => {
                wire::put_u32(out, recipient);
                wire::put_string(out, data);
            }
            ChannelMsg::ExtendedData {
                recipient,
                code,
                data,
            } => {
                wire::put_u32(out, recipient);
                wire::put_u32(out, code);
                wire::put_string(out, data);
            }
            ChannelMsg::Eof { recipient }
            | ChannelMsg::Close { recipient }
            | ChannelMsg::Success { recipient }
            | ChannelMsg::Failure { recipient } => wire::put_u32(out, recipient),
            ChannelMsg::Request {
                recipient,
                want_reply,
                request,
            } => {
                wire::put_u32(out, recipient);
                wire::put_string(out, request.kind());
                wire::put_bool(out, want_reply);
                encode_request(&request, out);
            }
        }
    }
}

fn parse_request<'a>(kind: &'a [u8], p: &mut Parser<'a>) -> Parsed<Request<'a>> {
    let request = match kind {
        b"env" => Request::Env {
            name: p.string()?,
            value: p.string()?,
        },
        b"exec" => Request::Exec {
            command: p.string()?,
        },
        b"shell" => Request::Shell,
        b"signal" => Request::Signal { name: p.string()? },
        b"exit-status" => Request::ExitStatus { code: p.u32()? },
        b"exit-signal" => {
            let name = p.string()?;
            let core_dumped = p.bool()?;
            let message = p.string()?;
            let _language = p.string()?;
            Request::ExitSignal {
                name,
                core_dumped,
                message,
            }
        }
        _ => {
            return Ok(Request::Other {
                kind,
                data: p.rest(),
            });
        }
    };
    p.finish()?;
    Ok(request)
}

fn encode_request(request: &Request<'_>, out: &mut Vec<u8>) {
    match *request {
        Request::Env { name, value } => {
            wire::put_string(out, name);
            wire::put_string(out, value);
        }
        Request::Exec { command } => wire::put_string(out, command),
        Request::Shell => {}
        Request::Signal { name } => wire::put_string(out, name),
        Request::ExitStatus { code } => wire::put_u32(out, code),
        Request::ExitSignal {
            name,
            core_dumped,
            message,
        } => {
            wire::put_string(out, name);
            wire::put_bool(out, core_dumped);
            wire::put_string(out, message);
            wire::put_string(out, b"");
        }
        Request::Other { data, .. } => out.extend_from_slice(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..40)
    }

    /// Owned inputs for one message of every shape.
    #[derive(Debug, Clone)]
    struct Fields {
        which: u8,
        a: u32,
        b: u32,
        c: u32,
        d: u32,
        flag: bool,
        s1: Vec<u8>,
        s2: Vec<u8>,
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            0u8..17,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            bytes(),
            bytes(),
        )
            .prop_map(|(which, a, b, c, d, flag, s1, s2)| Fields {
                which,
                a,
                b,
                c,
                d,
                flag,
                s1,
                s2,
            })
    }

    fn build(f: &Fields) -> ChannelMsg<'_> {
        let request = |request| ChannelMsg::Request {
            recipient: f.a,
            want_reply: f.flag,
            request,
        };
        match f.which {
            0 => ChannelMsg::Open {
                kind: &f.s1,
                sender: f.a,
                window: f.b,
                max_packet: f.c,
                extra: &f.s2,
            },
            1 => ChannelMsg::OpenConfirmation {
                recipient: f.a,
                sender: f.b,
                window: f.c,
                max_packet: f.d,
            },
            2 => ChannelMsg::OpenFailure {
                recipient: f.a,
                reason: f.b,
                description: &f.s1,
            },
            3 => ChannelMsg::WindowAdjust {
                recipient: f.a,
                bytes: f.b,
            },
            4 => ChannelMsg::Data {
                recipient: f.a,
                data: &f.s1,
            },
            5 => ChannelMsg::ExtendedData {
                recipient: f.a,
                code: f.b,
                data: &f.s1,
            },
            6 => ChannelMsg::Eof { recipient: f.a },
            7 => ChannelMsg::Close { recipient: f.a },
            8 => ChannelMsg::Success { recipient: f.a },
            9 => ChannelMsg::Failure { recipient: f.a },
            10 => request(Request::Env {
                name: &f.s1,
                value: &f.s2,
            }),
            11 => request(Request::Exec { command: &f.s1 }),
            12 => request(Request::Shell),
            13 => request(Request::Signal { name: &f.s1 }),
            14 => request(Request::ExitStatus { code: f.b }),
            15 => request(Request::ExitSignal {
                name: &f.s1,
                core_dumped: f.flag,
                message: &f.s2,
            }),
            _ => request(Request::Other {
                kind: b"pty-req",
                data: &f.s2,
            }),
        }
    }

    proptest! {
        /// Every message encodes to bytes that parse back to itself.
        #[test]
        fn channel_messages_round_trip(f in fields()) {
            let msg = build(&f);
            let mut out = Vec::new();
            msg.encode(&mut out);
            prop_assert_eq!(ChannelMsg::parse(&out), Ok(msg));
        }

        /// Parsing never panics, and whatever parses re-encodes to the
        /// bytes it came from (so no field is silently dropped).
        #[test]
        fn parsing_arbitrary_bytes_is_total_and_faithful(
            number in 90u8..=100,
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut payload = vec![number];
            payload.extend_from_slice(&body);
            if let Ok(msg) = ChannelMsg::parse(&payload) {
                let mut out = Vec::new();
                msg.encode(&mut out);
                // Languages tags are not kept; confirmations may carry
                // type-specific bytes we do not keep either.
                let lossy = matches!(
                    msg,
                    ChannelMsg::OpenFailure { .. }
                        | ChannelMsg::OpenConfirmation { .. }
                        | ChannelMsg::Request { request: Request::ExitSignal { .. }, .. }
                );
                if !lossy {
                    prop_assert_eq!(out, payload);
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut out = Vec::new();
        ChannelMsg::Eof { recipient: 3 }.encode(&mut out);
        out.push(0);
        assert_eq!(ChannelMsg::parse(&out), Err(Malformed));
        let mut out = Vec::new();
        ChannelMsg::Request {
            recipient: 0,
            want_reply: true,
            request: Request::Exec { command: b"x" },
        }
        .encode(&mut out);
        out.push(0);
        assert_eq!(ChannelMsg::parse(&out), Err(Malformed));
    }
}
