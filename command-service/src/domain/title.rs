use super::{Invalid, has_forbidden_control};
use unicode_normalization::UnicodeNormalization;

/// A memory's or session's title: one trimmed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        let text: String = raw.trim().nfc().collect();
        if text.is_empty() {
            return Err(Invalid::new(
                field,
                "title_empty",
                "a title must not be blank; send null to clear it",
            ));
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(
                field,
                "title_too_long",
                format!("a title is limited to {} characters", Self::MAX_CHARS),
            ));
        }
        if has_forbidden_control(&text) || text.contains(['\n', '\r', '\t']) {
            return Err(Invalid::new(
                field,
                "title_control_character",
                "a title is one line without control characters",
            ));
        }
        Ok(Self(text))
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
