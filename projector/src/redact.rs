//! Keeping memory text out of what a failure leaves behind.
//!
//! A failed event's error message travels further than the event: into the
//! logs, the read database's ledger (`delivery_attempts.last_error`,
//! `parked_aggregates.reason`) and the dead letter's `x-sb-error` header,
//! none of which an erase rewrites. Error messages may quote the data they
//! choke on: serde quotes a string of the wrong type (`invalid type: string
//! "..."`), an embedding server may echo the input it refuses (pydantic's
//! 422 answers carry an `"input"` field), a database error may quote a
//! value. So every error is redacted before it leaves the consumer: serde's
//! quoted strings always, and every text of the events at hand (the memory
//! fields an erase strips, [`event_schema::MEMORY_PRIVATE_FIELDS`], and the
//! idempotency key), raw or escaped as JSON or Rust would, wherever it
//! appears. A long text is also caught when only its beginning is quoted,
//! as a server that cut the input before echoing it would.

use event_schema::{MEMORY_PRIVATE_FIELDS, StoredEvent};
use serde_json::Value;

/// What replaces a redacted text.
pub const REDACTED: &str = "[redacted]";

/// A text this long or longer is redacted wherever it appears, and from its
/// first this-many characters on when it is quoted only in part; a shorter
/// one only as a whole word, so a tag like `db` leaves `database` alone.
const ANCHOR_CHARS: usize = 16;

/// The texts to keep out of error messages.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Each text in every form it may be quoted in, longest first.
    forms: Vec<String>,
}

impl Redactor {
    /// The private texts of `events`: their memory fields and idempotency keys.
    pub fn of_events<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Self {
        let mut texts = Vec::new();
        for event in events {
            if let Some(inner) = event.payload.as_object().and_then(|o| o.values().next()) {
                for field in MEMORY_PRIVATE_FIELDS {
                    if let Some(value) = inner.get(field) {
                        strings(value, &mut texts);
                    }
                }
            }
            if let Some(key) = event
                .metadata
                .get("idempotency_key")
                .and_then(Value::as_str)
            {
                texts.push(key.to_owned());
            }
        }
        Self::default().with(texts)
    }

    /// These texts too.
    #[must_use]
    pub fn with(mut self, texts: impl IntoIterator<Item = String>) -> Self {
        for text in texts {
            if text.chars().count() < 2 {
                continue;
            }
            // Both quoted forms are `"…"`: the text is what lies between.
            let json = serde_json::to_string(&text).unwrap_or_default();
            let debug = format!("{text:?}");
            let unquoted = |quoted: &str| {
                quoted
                    .get(1..quoted.len().saturating_sub(1))
                    .map(str::to_owned)
            };
            for form in [unquoted(&json), unquoted(&debug), Some(text)]
                .into_iter()
                .flatten()
            {
                if !form.is_empty() && !self.forms.contains(&form) {
                    self.forms.push(form);
                }
            }
        }
        self.forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        self
    }

    /// `message` without serde's quoted strings or any of the texts.
    pub fn redact(&self, message: &str) -> String {
        let mut out = without_quoted_strings(message);
        for form in &self.forms {
            out = redact_form(&out, form);
        }
        out
    }
}

/// Every string under `value`: object keys (free-form metadata's names are
/// text too) and values.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                out.push(key.clone());
                strings(item, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// serde's rendering of a string it could not take, `string "<Rust-escaped
/// text>"`, with the text replaced.
fn without_quoted_strings(message: &str) -> String {
    const OPEN: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        out.push_str("string ");
        let quoted = &rest[at + OPEN.len()..];
        let mut escaped = false;
        let mut end = None;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        out.push_str(REDACTED);
        // An unterminated quote (a message cut short) is redacted to the end.
        rest = end.map_or("", |end| &quoted[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `message` with `form` redacted: a long form wherever it starts (its
/// first [`ANCHOR_CHARS`] characters) and as far as it goes on matching, a
/// short one only as a whole word.
fn redact_form(message: &str, form: &str) -> String {
    let long = form.chars().count() >= ANCHOR_CHARS;
    let anchor = if long {
        let end = form
            .char_indices()
            .nth(ANCHOR_CHARS)
            .map_or(form.len(), |(i, _)| i);
        &form[..end]
    } else {
        form
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(anchor) {
        let start_ok = long
            || !rest[..at]
                .chars()
                .next_back()
                .or(before)
                .is_some_and(is_word);
        let matched = if long {
            common_prefix(&rest[at..], form)
        } else {
            anchor.len()
        };
        let end_ok = long || !rest[at + matched..].chars().next().is_some_and(is_word);
        if start_ok && end_ok {
            out.push_str(&rest[..at]);
            out.push_str(REDACTED);
            before = form[..matched].chars().next_back();
            rest = &rest[at + matched..];
        } else {
            // Not a whole word: keep one character and look again after it.
            let step = rest[at..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..at + step]);
            before = rest[..at + step].chars().next_back();
            rest = &rest[at + step..];
        }
    }
    out.push_str(rest);
    out
}

/// How many bytes `text` and `form` share from their start, on a character
/// boundary.
fn common_prefix(text: &str, form: &str) -> usize {
    text.char_indices()
        .zip(form.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

/// `text` cut to at most `max` bytes, on a character boundary, saying so.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn memory_event(payload: Value, metadata: Value) -> StoredEvent {
        StoredEvent {
            event_id: uuid::Uuid::nil(),
            aggregate_type: "Memory".into(),
            aggregate_id: "m-1".into(),
            sequence: 2,
            global_position: 7,
            event_type: "MemoryRevised".into(),
            event_version: "1".into(),
            recorded_at: chrono::Utc::now(),
            payload,
            metadata,
        }
    }

    #[test]
    fn serde_quoted_strings_are_redacted_escapes_included() {
        let message =
            r#"invalid type: string "okapi \"secret\" note", expected a sequence at line 1"#;
        assert_eq!(
            Redactor::default().redact(message),
            "invalid type: string [redacted], expected a sequence at line 1"
        );
        assert_eq!(
            Redactor::default().redact(r#"invalid value: string "cut short"#),
            "invalid value: string [redacted]"
        );
    }

    #[test]
    fn the_events_private_texts_are_redacted_but_not_their_ids() {
        let event = memory_event(
            json!({"MemoryCaptured": {
                "content": "okapi-content-secret about the enclosure",
                "title": "okapi-title",
                "tags": ["zoo"],
                "metadata": {"okapi-key": {"nested": "okapi-value"}},
                "session_id": "s-1"
            }}),
            json!({"idempotency_key": "okapi-idempotency"}),
        );
        let redactor = Redactor::of_events([&event]);
        let message = "Memory m-1 #2: refused okapi-content-secret about the enclosure, \
                       okapi-title, zoo, zookeeper, okapi-key=okapi-value, okapi-idempotency, s-1";
        assert_eq!(
            redactor.redact(message),
            "Memory m-1 #2: refused [redacted], [redacted], [redacted], zookeeper, \
             [redacted]=[redacted], [redacted], s-1"
        );
    }

    #[test]
    fn a_text_echoed_as_json_or_cut_short_is_redacted_from_its_beginning() {
        let text = "line one\nline \"two\" and a long tail that the server cut".to_owned();
        let redactor = Redactor::default().with([text]);
        let echoed = r#"422: {"detail":[{"input":"line one\nline \"two\" and a long"}]}"#;
        assert_eq!(
            redactor.redact(echoed),
            r#"422: {"detail":[{"input":"[redacted]"}]}"#
        );
    }

    #[test]
    fn short_texts_go_only_as_whole_words_and_single_characters_stay() {
        let redactor = Redactor::default().with(["db".to_owned(), "x".to_owned()]);
        assert_eq!(
            redactor.redact("db database (db) xdb dbs x"),
            "[redacted] database ([redacted]) xdb dbs x"
        );
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("ééé", 3), "é… (4 bytes cut)");
    }
}
