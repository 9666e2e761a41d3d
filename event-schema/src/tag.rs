//! Tags are compared after one normalisation, so `Café`, `CAFÉ` and
//! `cafe\u{301}` are one tag: the write side stores tags normalised, and the
//! read side normalises a filter the same way before it looks them up.
//!
//! What a tag may be is one pattern, [`TAG_PATTERN`], checked on the text a
//! client sends: the OpenAPI documents state the same pattern, so a request
//! their schemas allow is never refused for its tags, and one they refuse
//! never gets in. The read side's filters take lists of these
//! (`tags_any=a,b`), which the query API's document states as arrays of them.

use regex::Regex;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// Longest tag, in characters as sent (surrounding whitespace aside).
pub const MAX_TAG_CHARS: usize = 64;

/// A tag as a client sends it: 1 to [`MAX_TAG_CHARS`] letters, digits and
/// `- _ : / .`, in any script, with optional whitespace around them. Marks
/// count as characters of their own, so a decomposed `e\u{301}` (as macOS
/// writes it) is a tag, and the same one as `é` once normalised.
///
/// U+20F1 to U+20FF are unassigned code points at the end of the combining
/// marks for symbols: schemathesis' stand-in for `\p{M}` draws from that
/// whole block, so they are let in rather than refused as letters the
/// schema seemed to allow; a later Unicode may make them marks anyway.
pub const TAG_PATTERN: &str = r"^\s*[\p{L}\p{M}\p{N}\u20F1-\u20FF_:/.\-]{1,64}\s*$";

static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(TAG_PATTERN).expect("a valid pattern"));

/// Why a tag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    Empty,
    TooLong,
    InvalidCharacter,
}

impl TagError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "tag_empty",
            Self::TooLong => "tag_too_long",
            Self::InvalidCharacter => "tag_invalid_character",
        }
    }

    pub fn message(self) -> String {
        match self {
            Self::Empty => "a tag must not be blank".to_owned(),
            Self::TooLong => format!("a tag is limited to {MAX_TAG_CHARS} characters"),
            Self::InvalidCharacter => {
                "a tag may contain letters, digits and - _ : / . only".to_owned()
            }
        }
    }
}

/// Checks a tag as sent against [`TAG_PATTERN`] and returns it normalised.
///
/// A few compatibility characters normalise to text with a space, a comma
/// or a control character in it (`🄁` is `0,` under NFKC): those are
/// refused too, since no filter could name them.
pub fn parse(raw: &str) -> Result<String, TagError> {
    if !TAG.is_match(raw) {
        let trimmed = raw.trim();
        return Err(if trimmed.is_empty() {
            TagError::Empty
        } else if trimmed.chars().count() > MAX_TAG_CHARS {
            TagError::TooLong
        } else {
            TagError::InvalidCharacter
        });
    }
    let tag = normalize(raw);
    if tag
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(TagError::InvalidCharacter);
    }
    Ok(tag)
}

/// Trimmed, compatibility-normalised (NFKC) and lowercased. Says nothing about
/// whether the result is a valid tag; [`parse`] does.
pub fn normalize(raw: &str) -> String {
    raw.trim().nfkc().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_tag_normalise_alike() {
        assert_eq!(normalize(" Café "), "café");
        assert_eq!(normalize("CAFÉ"), "café");
        assert_eq!(normalize("cafe\u{301}"), "café");
        assert_ne!(normalize("cafe"), "café");
    }

    #[test]
    fn tags_in_any_script_are_accepted_and_normalised() {
        assert_eq!(parse(" Café "), Ok("café".to_owned()));
        assert_eq!(parse("日本語"), Ok("日本語".to_owned()));
        assert_eq!(
            parse("v1.2/rust_lang-x:y"),
            Ok("v1.2/rust_lang-x:y".to_owned())
        );
        assert_eq!(parse(&"a".repeat(64)), Ok("a".repeat(64)));
    }

    #[test]
    fn refusals_name_their_reason() {
        assert_eq!(parse(""), Err(TagError::Empty));
        assert_eq!(parse("  \t"), Err(TagError::Empty));
        assert_eq!(parse(&"a".repeat(65)), Err(TagError::TooLong));
        assert_eq!(parse("CAFE\u{301}"), Ok("café".to_owned()));
        for bad in ["a b", "a,b", "a\0b", "tag!", "™", "🄁"] {
            assert_eq!(parse(bad), Err(TagError::InvalidCharacter), "{bad:?}");
        }
    }
}
