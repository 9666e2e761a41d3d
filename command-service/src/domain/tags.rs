use super::Invalid;
use service_kit::problem::FieldCode;
use std::collections::HashSet;

/// One tag: compatibility-normalised and lowercased, so `Café`, `CAFÉ` and
/// `cafe\u{301}` are one tag, built from letters, digits and `- _ : / .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub const MAX_CHARS: usize = event_schema::tag::MAX_TAG_CHARS;

    /// A tag as sent, checked against `event_schema::tag::TAG_PATTERN` (the
    /// pattern the OpenAPI document states) and normalised.
    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        event_schema::tag::parse(raw)
            .map(Self)
            .map_err(|e| Invalid::new(field, e.into(), e.message()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The tags of one request: each valid, duplicates collapsed, order kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSet(Vec<Tag>);

impl TagSet {
    /// The most tags one memory may carry.
    pub const MAX_TAGS: usize = 32;

    pub fn parse(field: &str, raw: &[String]) -> Result<Self, Vec<Invalid>> {
        // Counted before anything else, duplicates included: a body of tens
        // of thousands of tags is refused without normalising any of them.
        if raw.len() > Self::MAX_TAGS {
            return Err(vec![Invalid::new(
                field,
                FieldCode::TooManyTags,
                format!(
                    "a request names at most {} tags, duplicates included",
                    Self::MAX_TAGS
                ),
            )]);
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        let mut seen: HashSet<String> = HashSet::with_capacity(raw.len());
        let mut errors = Vec::new();
        for (i, value) in raw.iter().enumerate() {
            match Tag::parse(&format!("{field}[{i}]"), value) {
                Ok(tag) => {
                    if seen.insert(tag.as_str().to_owned()) {
                        tags.push(tag);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Self(tags))
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn into_strings(self) -> Vec<String> {
        self.0.into_iter().map(Tag::into_inner).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_are_normalised_and_duplicates_collapse() {
        let raw = vec![
            "Café".to_owned(),
            "CAFE\u{301}".to_owned(),
            " work ".to_owned(),
        ];
        let tags = TagSet::parse("tags", &raw).unwrap();
        assert_eq!(tags.into_strings(), vec!["café", "work"]);
    }

    #[test]
    fn bad_tags_are_reported_by_position() {
        let raw = vec!["ok".to_owned(), "no spaces".to_owned(), String::new()];
        let errors = TagSet::parse("tags", &raw).unwrap_err();
        assert_eq!(errors[0].field, "tags[1]");
        assert_eq!(errors[0].code, "tag_invalid_character");
        assert_eq!(errors[1].code, "tag_empty");
    }

    #[test]
    fn at_most_32_tags() {
        let raw: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(
            TagSet::parse("tags", &raw).unwrap_err()[0].code,
            "too_many_tags"
        );
        assert!(TagSet::parse("tags", &raw[..32]).is_ok());
    }

    #[test]
    fn the_cap_counts_duplicates_and_comes_before_any_tag_is_checked() {
        let repeated = vec!["same".to_owned(); 33];
        let errors = TagSet::parse("tags", &repeated).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "too_many_tags");
        // 80,000 invalid tags: one error, not 80,000.
        let invalid = vec!["not a tag".to_owned(); 80_000];
        let errors = TagSet::parse("tags", &invalid).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "too_many_tags");
        let duplicates = vec!["same".to_owned(); 32];
        assert_eq!(
            TagSet::parse("tags", &duplicates).unwrap().into_strings(),
            vec!["same"]
        );
    }

    #[test]
    fn a_nul_in_a_tag_is_an_invalid_character() {
        let errors = TagSet::parse("tags", &["a\0b".to_owned()]).unwrap_err();
        assert_eq!(errors[0].code, "tag_invalid_character");
    }

    proptest! {
        #[test]
        fn a_parsed_tag_parses_to_itself(raw in "\\PC{1,80}") {
            if let Ok(tag) = Tag::parse("t", &raw) {
                let again = Tag::parse("t", tag.as_str()).unwrap();
                prop_assert_eq!(again, tag);
            }
        }
    }
}
