//! Validated inputs ("parse, don't validate"): once a value has one of these
//! types it is within the documented limits, normalised, and safe to store.
//!
//! | input | limit |
//! | --- | --- |
//! | content | 1 to 65,536 characters as sent, not blank, no control characters but tab and newlines; stored in NFC |
//! | title | 1 to 200 characters as sent, not blank, no control characters; stored trimmed, in NFC |
//! | tags | at most 32 per memory, and at most 32 in one request counted before duplicates collapse; each 1 to 64 letters, digits and `- _ : / .` as sent (whitespace around them aside); stored trimmed, NFKC, lowercased |
//! | metadata | a JSON object, at most 16 KiB serialised, nesting depth at most 8, keys 1 to 128 characters without control characters, no U+0000 in any string |
//! | session title | as title |
//!
//! Each text rule is a pattern and a length in characters, checked on the
//! text as the client sent it, before it is normalised: the OpenAPI
//! document states the same pattern and length (`http::schemas`), so a
//! request its schema allows is never refused and one it refuses never gets
//! in.

mod content;
mod metadata;
mod tags;
mod title;

pub use content::{CONTENT_PATTERN, Content};
pub use metadata::{METADATA_KEY_PATTERN, METADATA_STRING_PATTERN, Metadata};
pub use tags::{Tag, TagSet};
pub use title::{TITLE_PATTERN, Title};

use regex::Regex;
use service_kit::problem::FieldCode;
use std::sync::OnceLock;

/// One input that is out of bounds, reported to the client field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub code: FieldCode,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, code: FieldCode, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// A rule for free text: a pattern and a length in characters. Control
/// characters (other than those a rule allows) have no place in text meant
/// for people and break downstream tokenisers and logs.
pub(crate) struct TextRule {
    pattern: &'static str,
    max_chars: usize,
    regex: OnceLock<Regex>,
}

/// Why text broke its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextError {
    Blank,
    TooLong,
    Control,
}

impl TextRule {
    pub(crate) const fn new(pattern: &'static str, max_chars: usize) -> Self {
        Self {
            pattern,
            max_chars,
            regex: OnceLock::new(),
        }
    }

    /// The pattern decides; `allowed_controls` (the control characters the
    /// pattern lets through) only tells a blank text from one with a
    /// forbidden control character, for the error code.
    pub(crate) fn check(&self, raw: &str, allowed_controls: &[char]) -> Result<(), TextError> {
        // Counted first: it bounds the pattern's work, and JSON Schema's
        // `maxLength` counts characters the same way.
        if raw.chars().nth(self.max_chars).is_some() {
            return Err(TextError::TooLong);
        }
        let regex = self
            .regex
            .get_or_init(|| Regex::new(self.pattern).expect("a valid pattern"));
        if regex.is_match(raw) {
            Ok(())
        } else if raw
            .chars()
            .any(|c| c.is_control() && !allowed_controls.contains(&c))
        {
            Err(TextError::Control)
        } else {
            Err(TextError::Blank)
        }
    }
}
