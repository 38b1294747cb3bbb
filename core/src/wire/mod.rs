//! Wire encoding helpers and the table of message numbers (RFC 4250, RFC 4251).
