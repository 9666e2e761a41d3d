//! Pagination cursors: the position of the last item a page returned, as
//! `<key>.<id>` (a signed integer, a dot, the item's id in 32 hex digits).
//! Clients pass them back unchanged. The OpenAPI document states
//! [`CURSOR_PATTERN`], and every text it allows decodes, so a cursor is never
//! refused for its shape once its schema accepts it.

use regex::Regex;
use std::sync::LazyLock;
use uuid::Uuid;

/// What a cursor looks like. 18 digits hold every microsecond timestamp of
/// a four-digit year, which is all RFC 3339 can name.
pub const CURSOR_PATTERN: &str = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$";

static CURSOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(CURSOR_PATTERN).expect("a valid pattern"));

pub fn encode(key: i64, id: Uuid) -> String {
    format!("{key}.{}", id.simple())
}

/// `None` when the text is not a cursor.
pub fn decode(text: &str) -> Option<(i64, Uuid)> {
    if !CURSOR.is_match(text) {
        return None;
    }
    let (key, id) = text.split_once('.')?;
    Some((key.parse().ok()?, Uuid::try_parse(id).ok()?))
}

/// The cursor's schema in the OpenAPI documents.
pub fn schema() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(CURSOR_PATTERN))
        .description(Some("The previous page's `next_cursor`, as it was given"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        for key in [0, 1_764_500_000_000_000, -62_135_596_800_000_000] {
            assert_eq!(decode(&encode(key, id)), Some((key, id)));
        }
        assert_eq!(
            decode("999999999999999999.0123456789abcdef0123456789abcdef"),
            Some((
                999_999_999_999_999_999,
                Uuid::from_u128(0x0123456789abcdef0123456789abcdef)
            ))
        );
        for bad in [
            "not a cursor",
            "1.0123456789ABCDEF0123456789ABCDEF",
            "1234567890123456789.0123456789abcdef0123456789abcdef",
            "1.0123456789abcdef0123456789abcde",
            "",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
