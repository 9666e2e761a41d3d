//! Query-string parameters shared by the lists and search, and their checks.
//! A value that does not parse is a 400 (`invalid_query`, from the extractor);
//! one that parses but is out of bounds is a 422 naming the field.

use crate::rows::{Filters, Position};
use chrono::{DateTime, Utc};
use service_kit::Problem;
use service_kit::problem::{Code, FieldCode, FieldError};
use std::collections::HashSet;
use uuid::Uuid;

/// Most tags a filter may name.
pub const MAX_FILTER_TAGS: usize = 32;
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// Collects field errors; [`Checks::finish`] turns them into one 422.
#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn fail(&mut self, field: &str, code: FieldCode, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            code,
            message: message.into(),
        });
    }

    pub fn finish(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.into_problem())
        }
    }

    pub fn into_problem(self) -> Problem {
        Problem::new(Code::ValidationFailed).with_errors(self.0)
    }
}

/// The memory filters, as lists and search take them.
#[derive(Debug, Default, Clone)]
pub struct FilterParams {
    pub session: Option<Uuid>,
    pub tags_any: Option<String>,
    pub tags_all: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

/// Declares a query-string struct with the memory filters beside its own
/// fields. Not `#[serde(flatten)]`: that cannot be combined with
/// `deny_unknown_fields`, and a misspelt filter must be an error, not a
/// silently wider result.
macro_rules! with_filters {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Only memories in this session.
            pub session: Option<uuid::Uuid>,
            /// Memories with at least one of these tags: comma-separated,
            /// 1 to 32 (duplicates included).
            #[param(schema_with = $crate::http::params::tag_list, style = Form, explode = false)]
            pub tags_any: Option<String>,
            /// Memories with every one of these tags: comma-separated, 1 to
            /// 32 (duplicates included).
            #[param(schema_with = $crate::http::params::tag_list, style = Form, explode = false)]
            pub tags_all: Option<String>,
            /// Created at or after (RFC 3339).
            pub created_after: Option<chrono::DateTime<chrono::Utc>>,
            /// Created before (RFC 3339).
            pub created_before: Option<chrono::DateTime<chrono::Utc>>,
            /// Last changed at or after (RFC 3339).
            pub updated_after: Option<chrono::DateTime<chrono::Utc>>,
            /// Last changed before (RFC 3339).
            pub updated_before: Option<chrono::DateTime<chrono::Utc>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn filter_params(&self) -> $crate::http::params::FilterParams {
                $crate::http::params::FilterParams {
                    session: self.session,
                    tags_any: self.tags_any.clone(),
                    tags_all: self.tags_all.clone(),
                    created_after: self.created_after,
                    created_before: self.created_before,
                    updated_after: self.updated_after,
                    updated_before: self.updated_before,
                }
            }
        }
    };
}
pub(crate) use with_filters;

/// A tag filter as the OpenAPI document states it: an array of tags that
/// travels comma-separated (`style: form, explode: false`), each item the
/// write side's tag pattern, so a filter can name only tags a memory can
/// carry.
pub fn tag_list() -> utoipa::openapi::schema::ArrayBuilder {
    use utoipa::openapi::{ObjectBuilder, Type};
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(event_schema::tag::TAG_PATTERN)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_FILTER_TAGS))
}

impl FilterParams {
    pub fn to_filters(&self, checks: &mut Checks) -> Filters {
        Filters {
            session: self.session,
            tags_any: tags("tags_any", self.tags_any.as_deref(), checks),
            tags_all: tags("tags_all", self.tags_all.as_deref(), checks),
            created_after: self.created_after,
            created_before: self.created_before,
            updated_after: self.updated_after,
            updated_before: self.updated_before,
            include_deleted: false,
        }
    }
}

fn tags(field: &str, raw: Option<&str>, checks: &mut Checks) -> Vec<String> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    // Counted before normalising or collapsing duplicates, so a long list is
    // refused for the price of a scan.
    if raw.split(',').nth(MAX_FILTER_TAGS).is_some() {
        checks.fail(
            field,
            FieldCode::TooManyTags,
            format!("at most {MAX_FILTER_TAGS} tags, duplicates included"),
        );
        return Vec::new();
    }
    let mut tags: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for part in raw.split(',') {
        // As on the write side, so a filter names only tags a memory can
        // carry (a NUL, say, never reaches the database).
        match event_schema::tag::parse(part) {
            Ok(tag) => {
                if seen.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            Err(e) => checks.fail(field, e.into(), e.message()),
        }
    }
    tags
}

/// Free text for the database: U+0000 is the one character Postgres text
/// cannot hold, so it is refused here rather than failing the query.
pub fn text(field: &str, value: &str, checks: &mut Checks) {
    if value.contains('\0') {
        checks.fail(
            field,
            FieldCode::InvalidCharacter,
            "may not contain U+0000 (NUL)",
        );
    }
}

/// `limit` within 1..=[`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn limit(raw: Option<u32>, checks: &mut Checks) -> u32 {
    match raw {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            checks.fail(
                "limit",
                FieldCode::OutOfRange,
                format!("between 1 and {MAX_PAGE}"),
            );
            DEFAULT_PAGE
        }
    }
}

/// A list cursor: where the previous page ended, in whatever order this page
/// is read.
pub fn position(raw: Option<&str>, checks: &mut Checks) -> Option<Position> {
    // Postgres' earliest timestamp (4714 BC). No item is older, so a cursor
    // from further back is the same place in every order, and the query must
    // not be asked about a time Postgres cannot hold.
    const EARLIEST_MICROS: i64 = -210_866_803_200_000_000;
    let raw = raw?;
    let Some((at, id)) = crate::cursor::decode(raw) else {
        checks.fail(
            "cursor",
            FieldCode::InvalidCursor,
            "not a cursor this list issued",
        );
        return None;
    };
    match DateTime::<Utc>::from_timestamp_micros(at.max(EARLIEST_MICROS)) {
        Some(at) => Some(Position { at, id }),
        None => {
            checks.fail(
                "cursor",
                FieldCode::InvalidCursor,
                "not a cursor this list issued",
            );
            None
        }
    }
}
