use super::{Invalid, TextError, TextRule};
use service_kit::problem::FieldCode;
use unicode_normalization::UnicodeNormalization;

/// A memory's or session's title: one trimmed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

/// What a title may be, as sent: one line that is not blank, without control
/// characters. The OpenAPI document states this pattern and
/// [`Title::MAX_CHARS`] as the field's schema.
pub const TITLE_PATTERN: &str =
    r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

static RULE: TextRule = TextRule::new(TITLE_PATTERN, Title::MAX_CHARS);

impl Title {
    /// In characters as sent, surrounding whitespace included.
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        if let Err(why) = RULE.check(raw, &[]) {
            let (code, message) = match why {
                TextError::Blank => (
                    FieldCode::TitleEmpty,
                    "a title must not be blank; send null to clear it".to_owned(),
                ),
                TextError::TooLong => (
                    FieldCode::TitleTooLong,
                    format!("a title is limited to {} characters", Self::MAX_CHARS),
                ),
                TextError::Control => (
                    FieldCode::TitleControlCharacter,
                    "a title is one line without control characters".to_owned(),
                ),
            };
            return Err(Invalid::new(field, code, message));
        }
        Ok(Self(raw.trim().nfc().collect()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_single_lines_within_the_limit() {
        assert_eq!(
            Title::parse("title", "  Plan  ").unwrap().into_inner(),
            "Plan"
        );
        assert_eq!(
            Title::parse("title", "   ").unwrap_err().code,
            "title_empty"
        );
        assert_eq!(
            Title::parse("title", "a\nb").unwrap_err().code,
            "title_control_character"
        );
        assert_eq!(
            Title::parse("title", &"é".repeat(201)).unwrap_err().code,
            "title_too_long"
        );
        assert!(Title::parse("title", &"é".repeat(200)).is_ok());
    }
}
