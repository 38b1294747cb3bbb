//! Message numbers (RFC 4250 §4.1, RFC 8308 §2.3): one table that the
//! dispatcher, the strict-kex check and the "who may send this" rule all read.

/// Which side may send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Only the client.
    Client,
    /// Only the server.
    Server,
    /// Either side.
    Both,
}

/// What the table knows about one message number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgInfo {
    /// The number on the wire.
    pub number: u8,
    /// Its RFC name, for logs and DISCONNECT descriptions.
    pub name: &'static str,
    /// Who may send it.
    pub sent_by: Sender,
}

/// Message numbers by name.
pub mod numbers {
    #![allow(missing_docs)]
    pub const DISCONNECT: u8 = 1;
    pub const IGNORE: u8 = 2;
    pub const UNIMPLEMENTED: u8 = 3;
    pub const DEBUG: u8 = 4;
    pub const SERVICE_REQUEST: u8 = 5;
    pub const SERVICE_ACCEPT: u8 = 6;
    pub const EXT_INFO: u8 = 7;
    pub const KEXINIT: u8 = 20;
    pub const NEWKEYS: u8 = 21;
    pub const KEX_ECDH_INIT: u8 = 30;
    pub const KEX_ECDH_REPLY: u8 = 31;
    pub const USERAUTH_REQUEST: u8 = 50;
    pub const USERAUTH_FAILURE: u8 = 51;
    pub const USERAUTH_SUCCESS: u8 = 52;
    pub const USERAUTH_BANNER: u8 = 53;
    pub const USERAUTH_PK_OK: u8 = 60;
    pub const GLOBAL_REQUEST: u8 = 80;
    pub const REQUEST_SUCCESS: u8 = 81;
    pub const REQUEST_FAILURE: u8 = 82;
    pub const CHANNEL_OPEN: u8 = 90;
    pub const CHANNEL_OPEN_CONFIRMATION: u8 = 91;
    pub const CHANNEL_OPEN_FAILURE: u8 = 92;
    pub const CHANNEL_WINDOW_ADJUST: u8 = 93;
    pub const CHANNEL_DATA: u8 = 94;
    pub const CHANNEL_EXTENDED_DATA: u8 = 95;
    pub const CHANNEL_EOF: u8 = 96;
    pub const CHANNEL_CLOSE: u8 = 97;
    pub const CHANNEL_REQUEST: u8 = 98;
    pub const CHANNEL_SUCCESS: u8 = 99;
    pub const CHANNEL_FAILURE: u8 = 100;
}

use numbers::*;

macro_rules! table {
    ($($num:ident => $name:literal, $sender:ident;)*) => {
        const TABLE: &[MsgInfo] = &[
            $(MsgInfo { number: $num, name: $name, sent_by: Sender::$sender },)*
        ];
    };
}

table! {
    DISCONNECT => "SSH_MSG_DISCONNECT", Both;
    IGNORE => "SSH_MSG_IGNORE", Both;
    UNIMPLEMENTED => "SSH_MSG_UNIMPLEMENTED", Both;
    DEBUG => "SSH_MSG_DEBUG", Both;
    SERVICE_REQUEST => "SSH_MSG_SERVICE_REQUEST", Client;
    SERVICE_ACCEPT => "SSH_MSG_SERVICE_ACCEPT", Server;
    EXT_INFO => "SSH_MSG_EXT_INFO", Both;
    KEXINIT => "SSH_MSG_KEXINIT", Both;
    NEWKEYS => "SSH_MSG_NEWKEYS", Both;
    KEX_ECDH_INIT => "SSH_MSG_KEX_ECDH_INIT", Client;
    KEX_ECDH_REPLY => "SSH_MSG_KEX_ECDH_REPLY", Server;
    USERAUTH_REQUEST => "SSH_MSG_USERAUTH_REQUEST", Client;
    USERAUTH_FAILURE => "SSH_MSG_USERAUTH_FAILURE", Server;
    USERAUTH_SUCCESS => "SSH_MSG_USERAUTH_SUCCESS", Server;
    USERAUTH_BANNER => "SSH_MSG_USERAUTH_BANNER", Server;
    USERAUTH_PK_OK => "SSH_MSG_USERAUTH_PK_OK", Server;
    GLOBAL_REQUEST => "SSH_MSG_GLOBAL_REQUEST", Both;
    REQUEST_SUCCESS => "SSH_MSG_REQUEST_SUCCESS", Both;
    REQUEST_FAILURE => "SSH_MSG_REQUEST_FAILURE", Both;
    CHANNEL_OPEN => "SSH_MSG_CHANNEL_OPEN", Both;
    CHANNEL_OPEN_CONFIRMATION => "SSH_MSG_CHANNEL_OPEN_CONFIRMATION", Both;
    CHANNEL_OPEN_FAILURE => "SSH_MSG_CHANNEL_OPEN_FAILURE", Both;
    CHANNEL_WINDOW_ADJUST => "SSH_MSG_CHANNEL_WINDOW_ADJUST", Both;
    CHANNEL_DATA => "SSH_MSG_CHANNEL_DATA", Both;
    CHANNEL_EXTENDED_DATA => "SSH_MSG_CHANNEL_EXTENDED_DATA", Both;
    CHANNEL_EOF => "SSH_MSG_CHANNEL_EOF", Both;
    CHANNEL_CLOSE => "SSH_MSG_CHANNEL_CLOSE", Both;
    CHANNEL_REQUEST => "SSH_MSG_CHANNEL_REQUEST", Both;
    CHANNEL_SUCCESS => "SSH_MSG_CHANNEL_SUCCESS", Both;
    CHANNEL_FAILURE => "SSH_MSG_CHANNEL_FAILURE", Both;
}

/// Looks a message number up; `None` for numbers we do not implement, which
/// are answered with `SSH_MSG_UNIMPLEMENTED` (RFC 4253 §11.4).
pub fn msg_info(number: u8) -> Option<&'static MsgInfo> {
    TABLE.iter().find(|m| m.number == number)
}

impl MsgInfo {
    /// Whether the table allows a peer in `role`'s opposite to send this:
    /// `from_client` is true when the message came from a client.
    pub fn may_come_from(&self, from_client: bool) -> bool {
        match self.sent_by {
            Sender::Both => true,
            Sender::Client => from_client,
            Sender::Server => !from_client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_unique_numbers_and_rfc_names() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.name.starts_with("SSH_MSG_"));
            for b in &TABLE[i + 1..] {
                assert_ne!(a.number, b.number, "{} and {}", a.name, b.name);
            }
        }
        assert_eq!(msg_info(52).map(|m| m.sent_by), Some(Sender::Server));
        assert!(msg_info(200).is_none());
        assert!(!msg_info(USERAUTH_SUCCESS).is_some_and(|m| m.may_come_from(true)));
    }
}
