use super::{Invalid, TextError, TextRule};
use service_kit::problem::FieldCode;
use unicode_normalization::UnicodeNormalization;

/// The text of a memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

/// What content may be, as sent: not blank, no control characters but tab,
/// line feed and carriage return. The OpenAPI document states this pattern
/// and [`Content::MAX_CHARS`] as the field's schema.
pub const CONTENT_PATTERN: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$";

static RULE: TextRule = TextRule::new(CONTENT_PATTERN, Content::MAX_CHARS);

impl Content {
    /// In characters as sent, as JSON Schema's `maxLength` counts them.
    pub const MAX_CHARS: usize = 65_536;

    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        if let Err(why) = RULE.check(raw, &['\t', '\n', '\r']) {
            let (code, message) = match why {
                TextError::Blank => (
                    FieldCode::ContentEmpty,
                    "content must not be blank".to_owned(),
                ),
                TextError::TooLong => (
                    FieldCode::ContentTooLong,
                    format!("content is limited to {} characters", Self::MAX_CHARS),
                ),
                TextError::Control => (
                    FieldCode::ContentControlCharacter,
                    "content may not contain control characters other than tab and newlines"
                        .to_owned(),
                ),
            };
            return Err(Invalid::new(field, code, message));
        }
        // NFC so that the same text typed on two systems is stored, hashed and
        // searched as one string.
        Ok(Self(raw.nfc().collect()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blank_overlong_and_control_characters_are_rejected() {
        assert_eq!(
            Content::parse("content", "  \n").unwrap_err().code,
            "content_empty"
        );
        assert_eq!(
            Content::parse("content", &"é".repeat(Content::MAX_CHARS + 1))
                .unwrap_err()
                .code,
            "content_too_long"
        );
        assert_eq!(
            Content::parse("content", "bell\u{7}").unwrap_err().code,
            "content_control_character"
        );
        assert!(Content::parse("content", &"é".repeat(Content::MAX_CHARS)).is_ok());
        assert!(Content::parse("content", "line\nbreak\ttab").is_ok());
    }

    #[test]
    fn content_is_stored_in_nfc() {
        let decomposed = "e\u{301}";
        assert_eq!(
            Content::parse("content", decomposed).unwrap().as_str(),
            "\u{e9}"
        );
    }

    proptest! {
        #[test]
        fn accepted_content_is_within_limits(raw in "\\PC{0,200}") {
            if let Ok(content) = Content::parse("content", &raw) {
                prop_assert!(!content.as_str().trim().is_empty());
            }
        }
    }
}
