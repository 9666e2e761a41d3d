//! Query-string parameters shared by the lists and search, and their checks.
//! A value that does not parse is a 400 (`invalid_query`, from the extractor);
//! one that parses but is out of bounds is a 422 naming the field.

use crate::rows::{Filters, Order, Position};
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use service_kit::Problem;
use service_kit::problem::FieldError;
use std::collections::HashSet;
use uuid::Uuid;

/// Most tags a filter may name.
pub const MAX_FILTER_TAGS: usize = 32;
/// Longest tag, as on the write side.
const MAX_TAG_CHARS: usize = 64;
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// Collects field errors; [`Checks::finish`] turns them into one 422.
#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn fail(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            code: code.to_owned(),
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
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request has invalid fields",
        )
        .with_errors(self.0)
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
            /// Comma-separated, at most 32 (duplicates included): memories
            /// with at least one of these tags.
            pub tags_any: Option<String>,
            /// Comma-separated, at most 32 (duplicates included): memories
            /// with every one of these tags.
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
            "too_many_tags",
            format!("at most {MAX_FILTER_TAGS} tags, duplicates included"),
        );
        return Vec::new();
    }
    let mut tags: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for part in raw.split(',') {
        let tag = event_schema::tag::normalize(part);
        if tag.is_empty() {
            checks.fail(field, "tag_empty", "a tag must not be blank");
        } else if tag.chars().count() > MAX_TAG_CHARS {
            checks.fail(
                field,
                "tag_too_long",
                format!("a tag is limited to {MAX_TAG_CHARS} characters"),
            );
        } else if !tag.chars().all(event_schema::tag::is_tag_char) {
            // As on the write side; a NUL here would also fail the query.
            checks.fail(
                field,
                "tag_invalid_character",
                "a tag may contain letters, digits and - _ : / . only",
            );
        } else if seen.insert(tag.clone()) {
            tags.push(tag);
        }
    }
    tags
}

/// Free text for the database: U+0000 is the one character Postgres text
/// cannot hold, so it is refused here rather than failing the query.
pub fn text(field: &str, value: &str, checks: &mut Checks) {
    if value.contains('\0') {
        checks.fail(field, "invalid_character", "may not contain U+0000 (NUL)");
    }
}

/// `limit` within 1..=[`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn limit(raw: Option<u32>, checks: &mut Checks) -> u32 {
    match raw {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            checks.fail("limit", "out_of_range", format!("between 1 and {MAX_PAGE}"));
            DEFAULT_PAGE
        }
    }
}

/// A list cursor, which must have been issued for the same order.
pub fn position(raw: Option<&str>, order: Order, checks: &mut Checks) -> Option<Position> {
    let raw = raw?;
    match crate::cursor::decode::<Position>(raw) {
        Some(position) if position.order == order => Some(position),
        Some(_) => {
            checks.fail(
                "cursor",
                "cursor_order",
                "the cursor belongs to the other order",
            );
            None
        }
        None => {
            checks.fail("cursor", "invalid_cursor", "not a cursor this list issued");
            None
        }
    }
}
