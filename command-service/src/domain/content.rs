use super::{Invalid, has_forbidden_control};
use unicode_normalization::UnicodeNormalization;

/// The text of a memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub const MAX_BYTES: usize = 65_536;

    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        // NFC so that the same text typed on two systems is stored, hashed and
        // searched as one string.
        let text: String = raw.nfc().collect();
        if text.trim().is_empty() {
            return Err(Invalid::new(
                field,
                "content_empty",
                "content must not be blank",
            ));
        }
        if text.len() > Self::MAX_BYTES {
            return Err(Invalid::new(
                field,
                "content_too_long",
                format!("content is limited to {} bytes of UTF-8", Self::MAX_BYTES),
            ));
        }
        if has_forbidden_control(&text) {
            return Err(Invalid::new(
                field,
                "content_control_character",
                "content may not contain control characters other than tab and newlines",
            ));
        }
        Ok(Self(text))
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
            Content::parse("content", &"a".repeat(Content::MAX_BYTES + 1))
                .unwrap_err()
                .code,
            "content_too_long"
        );
        assert_eq!(
            Content::parse("content", "bell\u{7}").unwrap_err().code,
            "content_control_character"
        );
        assert!(Content::parse("content", &"a".repeat(Content::MAX_BYTES)).is_ok());
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
                prop_assert!(content.as_str().len() <= Content::MAX_BYTES);
            }
        }
    }
}
