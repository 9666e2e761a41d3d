//! The one table of codes a client of either service reads: every problem
//! code with its status, title and meaning ([`Code`]), and every field code
//! an `errors[]` entry can carry ([`FieldCode`]). The services name codes
//! from here, never as string literals, and a test holds `docs/api.md` and
//! `docs/query-api.md` to the table in both directions.
//!
//! Field codes are a list of their own rather than rows of [`Code`]: they
//! have no status and no title (the problem around them is
//! `validation_failed`, or `metadata_too_large`), and a [`crate::Problem`]
//! with a field code as its `type` would name no problem at all. Keeping
//! the two types apart lets the compiler refuse that mix-up, while both are
//! documented and tested the same way.

use actix_web::http::StatusCode;

/// Which API answers a code, so each service's document is held to the
/// codes it can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Command,
    Query,
    Both,
}

impl Api {
    /// Whether a code of this API belongs in `api`'s document.
    pub fn includes(self, api: Api) -> bool {
        self == Api::Both || self == api
    }
}

macro_rules! problem_codes {
    ($($variant:ident = ($code:literal, $status:ident, $title:literal, $api:ident, $doc:literal),)*) => {
        /// A problem's stable, machine-readable code: its `code` member and
        /// the end of its `type` URI.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            /// Every code, in the order of the table.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The status a problem with this code answers.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }

            /// When a client gets it, in one line.
            pub fn doc(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }

            pub fn api(self) -> Api {
                match self { $(Code::$variant => Api::$api,)* }
            }
        }
    };
}

problem_codes! {
    BadRequest = ("bad_request", BAD_REQUEST, "Bad request", Both,
        "the HTTP layer refused the request for a reason no other code names (its status is the 4xx the layer chose)"),
    MalformedJson = ("malformed_json", BAD_REQUEST, "Bad request", Command,
        "the body is not JSON"),
    UnreadableBody = ("unreadable_body", BAD_REQUEST, "Bad request", Command,
        "the body could not be read to its end (the connection broke, or its encoding is wrong)"),
    InvalidQuery = ("invalid_query", BAD_REQUEST, "Bad request", Query,
        "a query parameter does not parse, or is unknown"),
    InvalidIfMatch = ("invalid_if_match", BAD_REQUEST, "Bad request", Command,
        "`If-Match` is not one version"),
    InvalidIdempotencyKey = ("invalid_idempotency_key", BAD_REQUEST, "Bad request", Command,
        "`Idempotency-Key` is not 1 to 255 visible ASCII characters"),
    Unauthorized = ("unauthorized", UNAUTHORIZED, "Unauthorized", Both,
        "missing, invalid, expired or revoked credentials"),
    NotFound = ("not_found", NOT_FOUND, "Not found", Both,
        "nothing of the caller's under that id, or no such route"),
    InvalidId = ("invalid_id", NOT_FOUND, "Not found", Both,
        "the id in the path is not a UUID"),
    SessionNotFound = ("session_not_found", NOT_FOUND, "Not found", Command,
        "`session_id` names no session of the caller's"),
    NoStateYet = ("no_state_yet", NOT_FOUND, "Not found", Query,
        "`as-of` names a version or time before the aggregate existed"),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed", Both,
        "the path has no such method; `Allow` names the ones it has"),
    MemoryExists = ("memory_exists", CONFLICT, "Conflict", Command,
        "capturing a memory whose id is taken (ids are made by the server, so only a fault can cause it)"),
    MemoryDeleted = ("memory_deleted", CONFLICT, "Conflict", Command,
        "changing a deleted memory (restore it first)"),
    MemoryNotDeleted = ("memory_not_deleted", CONFLICT, "Conflict", Command,
        "restoring a memory that is not deleted"),
    SessionEnded = ("session_ended", CONFLICT, "Conflict", Command,
        "capturing into or moving to an ended session"),
    TooManyTags = ("too_many_tags", CONFLICT, "Conflict", Command,
        "adding tags would give the memory more than 32"),
    SessionExists = ("session_exists", CONFLICT, "Conflict", Command,
        "starting a session whose id is taken (ids are made by the server, so only a fault can cause it)"),
    SessionAlreadyEnded = ("session_already_ended", CONFLICT, "Conflict", Command,
        "ending an ended session"),
    SessionNotEnded = ("session_not_ended", CONFLICT, "Conflict", Command,
        "reopening an open session"),
    MemoryErased = ("memory_erased", GONE, "Gone", Both,
        "the memory is erased: any command on it, or `as-of` on it"),
    VersionMismatch = ("version_mismatch", PRECONDITION_FAILED, "Precondition failed", Command,
        "a stale `If-Match`"),
    BodyTooLarge = ("body_too_large", PAYLOAD_TOO_LARGE, "Body too large", Command,
        "the body is over 1 MiB"),
    MetadataTooLarge = ("metadata_too_large", PAYLOAD_TOO_LARGE, "Metadata too large", Command,
        "the metadata is over 16 KiB serialised"),
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type", Command,
        "a body that is not `application/json`"),
    InvalidBody = ("invalid_body", UNPROCESSABLE_ENTITY, "Invalid body", Command,
        "unknown field, missing field or wrong type"),
    ValidationFailed = ("validation_failed", UNPROCESSABLE_ENTITY, "The request has invalid fields", Both,
        "a field outside its limits; `errors` names each one with a field code"),
    EmptyRevision = ("empty_revision", UNPROCESSABLE_ENTITY, "Unprocessable request", Command,
        "a revision with neither content nor title"),
    IdempotencyKeyReused = ("idempotency_key_reused", UNPROCESSABLE_ENTITY, "Unprocessable request", Command,
        "the `Idempotency-Key` was used for another request"),
    RateLimited = ("rate_limited", TOO_MANY_REQUESTS, "Too many requests", Both,
        "the client address or the user is over its rate limit (`Retry-After`)"),
    InternalError = ("internal_error", INTERNAL_SERVER_ERROR, "Internal server error", Both,
        "logged with its cause; never for bad input"),
    WriteContention = ("write_contention", SERVICE_UNAVAILABLE, "Too many concurrent writes", Command,
        "too many concurrent writes to one aggregate (`Retry-After`)"),
    ServiceUnavailable = ("service_unavailable", SERVICE_UNAVAILABLE, "Service unavailable", Both,
        "a store or a credential check cannot be reached right now (`Retry-After`)"),
    EmbeddingModelMismatch = ("embedding_model_mismatch", SERVICE_UNAVAILABLE, "Semantic search is unavailable", Query,
        "the configured embedder is not the one the stored vectors were made with"),
    NotYetConsistent = ("not_yet_consistent", SERVICE_UNAVAILABLE, "The read model has not caught up with the requested version", Query,
        "`min_version` was not reached within the wait (`Retry-After`)"),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! field_codes {
    ($($variant:ident = ($code:literal, $api:ident, $doc:literal),)*) => {
        /// The code of one entry of a problem's `errors[]`: which rule a
        /// field broke.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FieldCode {
            $(#[doc = $doc] $variant,)*
        }

        impl FieldCode {
            /// Every field code, in the order of the table.
            pub const ALL: &'static [FieldCode] = &[$(FieldCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(FieldCode::$variant => $code,)* }
            }

            /// Which rule, in one line.
            pub fn doc(self) -> &'static str {
                match self { $(FieldCode::$variant => $doc,)* }
            }

            pub fn api(self) -> Api {
                match self { $(FieldCode::$variant => Api::$api,)* }
            }
        }
    };
}

field_codes! {
    ContentEmpty = ("content_empty", Command, "content is blank"),
    ContentTooLong = ("content_too_long", Command, "content is over 65,536 characters"),
    ContentControlCharacter = ("content_control_character", Command,
        "content holds a control character other than tab, CR and LF"),
    TitleEmpty = ("title_empty", Command, "a title is blank"),
    TitleTooLong = ("title_too_long", Command, "a title is over 200 characters"),
    TitleControlCharacter = ("title_control_character", Command, "a title holds a control character"),
    TooManyTags = ("too_many_tags", Both, "more than 32 tags in one request or filter, duplicates included"),
    TagEmpty = ("tag_empty", Both, "a tag is blank"),
    TagTooLong = ("tag_too_long", Both, "a tag is over 64 characters"),
    TagInvalidCharacter = ("tag_invalid_character", Both,
        "a tag holds something other than letters, marks, digits and `- _ : / .`"),
    MetadataTooDeep = ("metadata_too_deep", Command, "metadata nests deeper than 8"),
    MetadataInvalidKey = ("metadata_invalid_key", Command,
        "a metadata key is empty, over 128 characters or holds a control character"),
    MetadataInvalidValue = ("metadata_invalid_value", Command,
        "a metadata string holds U+0000, or a number is outside f64"),
    MetadataTooLarge = ("metadata_too_large", Command, "metadata is over 16 KiB serialised"),
    SessionIdRequired = ("session_id_required", Command,
        "a move names no `session_id` (send null to detach)"),
    Required = ("required", Query, "the parameter is missing or blank"),
    TooLong = ("too_long", Query, "the parameter is over its length"),
    InvalidCharacter = ("invalid_character", Query, "free text holds U+0000 (NUL)"),
    OutOfRange = ("out_of_range", Query, "a number is outside its range"),
    InvalidCursor = ("invalid_cursor", Query, "a cursor that the list or timeline did not issue"),
}

impl std::fmt::Display for FieldCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire form, as a client (and a test) sees it.
impl PartialEq<&str> for FieldCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Compares with the wire form, as a client (and a test) sees it.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<event_schema::tag::TagError> for FieldCode {
    fn from(error: event_schema::tag::TagError) -> Self {
        use event_schema::tag::TagError;
        match error {
            TagError::Empty => FieldCode::TagEmpty,
            TagError::TooLong => FieldCode::TagTooLong,
            TagError::InvalidCharacter => FieldCode::TagInvalidCharacter,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn doc(name: &str) -> String {
        let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).expect("the docs are beside the crates")
    }

    /// The cells of column `column` of the first table after `heading`.
    fn column<'a>(text: &'a str, heading: &str, column: usize) -> Vec<Vec<&'a str>> {
        let start = text
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no heading {heading:?}"));
        text[start..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and its rule
            .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
            .map(|cells: Vec<&str>| vec![cells[0], cells[column]])
            .collect()
    }

    /// The `code`-like words of a cell: snake_case in backticks.
    fn codes(cell: &str) -> Vec<&str> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter(|word| {
                !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
            .collect()
    }

    /// The problem codes of a document's error table, with their status.
    fn documented_problems(text: &str) -> BTreeMap<&str, u16> {
        let mut found = BTreeMap::new();
        for row in column(text, "## Errors", 1) {
            let status: u16 = row[0].parse().expect("a status in the first column");
            for code in codes(row[1]) {
                assert!(found.insert(code, status).is_none(), "{code} twice");
            }
        }
        found
    }

    fn check_problems(name: &str, api: Api) {
        let text = doc(name);
        let documented = documented_problems(&text);
        let table: BTreeMap<&str, u16> = Code::ALL
            .iter()
            .filter(|code| code.api().includes(api))
            .map(|code| (code.as_str(), code.status().as_u16()))
            .collect();
        let missing: Vec<_> = table
            .keys()
            .filter(|c| !documented.contains_key(*c))
            .collect();
        assert!(missing.is_empty(), "{name} does not list {missing:?}");
        let unknown: Vec<_> = documented
            .keys()
            .filter(|c| !table.contains_key(*c))
            .collect();
        assert!(
            unknown.is_empty(),
            "{name} lists codes the table lacks: {unknown:?}"
        );
        assert_eq!(documented, table, "{name}: statuses differ from the table");
    }

    fn check_fields(name: &str, heading: &str, column_index: usize, api: Api) {
        let text = doc(name);
        let documented: BTreeSet<&str> = column(&text, heading, column_index)
            .iter()
            .flat_map(|row| codes(row[1]))
            // The limits table names a problem code where a limit is not a
            // field's (413 `body_too_large`); some codes are both.
            .filter(|code| {
                FieldCode::ALL.iter().any(|c| c.as_str() == *code)
                    || !Code::ALL.iter().any(|c| c.as_str() == *code)
            })
            .collect();
        let table: BTreeSet<&str> = FieldCode::ALL
            .iter()
            .filter(|code| code.api().includes(api))
            .map(|code| code.as_str())
            .collect();
        let missing: Vec<_> = table.difference(&documented).collect();
        assert!(missing.is_empty(), "{name} does not list {missing:?}");
        let unknown: Vec<_> = documented.difference(&table).collect();
        assert!(
            unknown.is_empty(),
            "{name} lists codes the table lacks: {unknown:?}"
        );
    }

    #[test]
    fn the_command_api_document_lists_exactly_its_problem_codes() {
        check_problems("api.md", Api::Command);
    }

    #[test]
    fn the_query_api_document_lists_exactly_its_problem_codes() {
        check_problems("query-api.md", Api::Query);
    }

    #[test]
    fn the_command_api_document_lists_exactly_its_field_codes() {
        check_fields("api.md", "## Limits", 2, Api::Command);
    }

    #[test]
    fn the_query_api_document_lists_exactly_its_field_codes() {
        check_fields("query-api.md", "### Field codes", 1, Api::Query);
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = BTreeSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        let mut seen = BTreeSet::new();
        for code in FieldCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        let all = seen
            .into_iter()
            .chain(Code::ALL.iter().map(|code| code.as_str()));
        for code in all {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }
}
