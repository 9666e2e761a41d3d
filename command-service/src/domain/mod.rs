//! Validated inputs ("parse, don't validate"): once a value has one of these
//! types it is within the documented limits, normalised, and safe to store.
//!
//! | input | limit |
//! | --- | --- |
//! | content | 1 to 65,536 bytes of UTF-8 after NFC, not blank, no control characters but tab and newlines |
//! | title | 1 to 200 characters after trimming and NFC, no control characters |
//! | tags | at most 32 per memory, and at most 32 in one request counted before duplicates collapse; each 1 to 64 characters after NFKC and lowercasing, letters, digits and `- _ : / .` |
//! | metadata | a JSON object, at most 16 KiB serialised, nesting depth at most 8, keys 1 to 128 characters without control characters, no U+0000 in any string |
//! | session title | as title |

mod content;
mod metadata;
mod tags;
mod title;

pub use content::Content;
pub use metadata::Metadata;
pub use tags::{Tag, TagSet};
pub use title::Title;

/// One input that is out of bounds, reported to the client field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Control characters other than tab, line feed and carriage return have no
/// place in text meant for people and break downstream tokenisers and logs.
fn has_forbidden_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}
