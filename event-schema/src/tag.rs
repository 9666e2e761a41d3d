//! Tags are compared after one normalisation, so `Café`, `CAFÉ` and
//! `cafe\u{301}` are one tag: the write side stores tags normalised, and the
//! read side normalises a filter the same way before it looks them up.

use unicode_normalization::UnicodeNormalization;

/// Trimmed, compatibility-normalised (NFKC) and lowercased. Says nothing about
/// whether the result is a valid tag; the write side checks that.
pub fn normalize(raw: &str) -> String {
    raw.trim().nfkc().flat_map(char::to_lowercase).collect()
}

/// Whether a normalised tag may contain `c`: letters, digits and `- _ : / .`.
/// The write side refuses any other character, so the read side can refuse a
/// filter that names a tag no memory can carry (a NUL, say) instead of
/// passing it to the database.
pub fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '/' | '.')
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn spellings_of_one_tag_normalise_alike() {
        assert_eq!(normalize(" Café "), "café");
        assert_eq!(normalize("CAFÉ"), "café");
        assert_eq!(normalize("cafe\u{301}"), "café");
        assert_ne!(normalize("cafe"), "café");
    }
}
