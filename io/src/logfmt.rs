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
            write!(self.writer, "{sep}{name}={value:?}")
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

#[cfg(test)]
mod tests {
    use super::needs_quotes;

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
