//! The human log format's fields: `name=value`, each value plain (no
//! Rust debug quoting of its own), and quoted, with escapes, only where
//! needed (empty, or holding a space, a quote, `=` or a control
//! character), so `user="Frank Smith"` and `repo=app` alike read back.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// [`FormatFields`] for the human log format (events and spans).
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = PlainVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut v);
        v.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

/// Whether `value` must be quoted to read back as one value.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
}

impl PlainVisitor<'_> {
    fn put(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value}")
        } else if needs_quotes(value) {
            write!(self.writer, "{sep}{name}=\"{}\"", Quoted(value))
        } else {
            write!(self.writer, "{sep}{name}={value}")
        };
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields and the message arrive here; their Debug is their
        // Display.
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, &text);
    }
}

/// A value inside quotes: a bare `"` escaped, control characters as
/// Rust escapes them; a backslash is left alone, so a value the core
/// already escaped (`crate::log_safe`: `\"`, `\n`) is not escaped twice.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev = None;
        for c in self.0.chars() {
            if c == '"' && prev != Some('\\') {
                f.write_str("\\\"")?;
            } else if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
            prev = Some(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Quoted, needs_quotes};

    #[test]
    fn quoted_values_escape_bare_quotes_and_controls_once() {
        assert_eq!(Quoted("Frank Smith").to_string(), "Frank Smith");
        assert_eq!(Quoted("say \"hi\"").to_string(), "say \\\"hi\\\"");
        assert_eq!(Quoted("a\nb").to_string(), "a\\nb");
        // Already escaped by the core: left as it is.
        assert_eq!(Quoted("{\\\"error\\\"}").to_string(), "{\\\"error\\\"}");
    }

    #[test]
    fn only_values_that_would_not_read_back_are_quoted() {
        for plain in ["app", "127.0.0.1:22", "SHA256:abc+/", "0.123", "SIGTERM"] {
            assert!(!needs_quotes(plain), "{plain}");
        }
        for quoted in ["", "Frank Smith", "a=b", "say \"hi\"", "a\nb"] {
            assert!(needs_quotes(quoted), "{quoted:?}");
        }
    }
}
