//! `/v1/search`: semantic, keyword or hybrid search over the caller's
//! memories, with the list filters.

use super::AppState;
use super::memories::{WaitFor, wait_for_memory, wait_for_schema};
use super::params::{Checks, text, with_filters};
use crate::search::{Hit, Mode, SearchRequest};
use actix_web::{HttpResponse, web};
use regex::Regex;
use serde::Serialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::problem::FieldCode;
use std::sync::LazyLock;
use utoipa::ToSchema;

/// Longest query accepted, in characters as sent.
pub const MAX_QUERY_CHARS: usize = 1000;

/// What a query may be: not blank, and without U+0000, which Postgres text
/// cannot hold. The OpenAPI document states this pattern.
pub const QUERY_PATTERN: &str = r"^[^\x00]*[^\s\x00][^\x00]*$";

static QUERY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(QUERY_PATTERN).expect("a valid pattern"));

fn query_text() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_QUERY_CHARS))
        .pattern(Some(QUERY_PATTERN))
        .description(Some(
            "What to look for: words, a phrase in double quotes, `-word` to exclude, or a \
             question in plain language; 1 to 1,000 characters, not blank",
        ))
}
pub const DEFAULT_K: u32 = 10;
pub const MAX_K: u32 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/search", web::get().to(search));
}

with_filters! {
    pub struct SearchParams {
        /// What to look for: words, a phrase in double quotes, `-word` to
        /// exclude, or a question in plain language; 1 to 1,000 characters,
        /// not blank.
        #[param(schema_with = query_text)]
        pub q: String,
        /// `hybrid` (the default), `semantic` or `keyword`.
        #[serde(default)]
        #[param(value_type = Option<Mode>)]
        pub mode: Mode,
        /// Hits to return, 1 to 100 (default 10).
        #[param(minimum = 1, maximum = 100)]
        pub k: Option<u32>,
        /// Add each hit's rank and score in each ranking.
        #[serde(default)]
        pub explain: bool,
        /// Read your writes: `<memory id>@<version>`, as a command answered
        /// it; the search waits until the index holds that write (as `GET
        /// /v1/memories/{id}?min_version` waits).
        #[param(schema_with = wait_for_schema, value_type = Option<String>)]
        pub wait_for: Option<WaitFor>,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub mode: Mode,
    pub hits: Vec<Hit>,
}

/// Search the caller's memories.
#[utoipa::path(get, path = "/v1/search", tag = "search",
    params(SearchParams),
    responses((status = 200, body = SearchResponse),
              (status = 422, description = "`validation_failed`: `q`, `k` or a filter is invalid"),
              (status = 429, description = "`rate_limited`: too many requests, or every one of the caller's `min_version` waits is taken"),
              (status = 503, description = "`not_yet_consistent`: the index did not reach the `wait_for` write in time; or `service_unavailable`: the query could not be embedded, or the stored vectors are of another model")),
    security(("bearer" = [])))]
pub async fn search(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, Problem> {
    let mut checks = Checks::default();
    // Checked as sent, as the document states it; searched trimmed.
    if query.q.chars().nth(MAX_QUERY_CHARS).is_some() {
        checks.fail(
            "q",
            FieldCode::TooLong,
            format!("at most {MAX_QUERY_CHARS} characters"),
        );
    } else if !QUERY.is_match(&query.q) {
        if query.q.contains('\0') {
            text("q", &query.q, &mut checks);
        } else {
            checks.fail("q", FieldCode::Required, "a query is required");
        }
    }
    let q = query.q.trim();
    let k = match query.k {
        None => DEFAULT_K,
        Some(k) if (1..=MAX_K).contains(&k) => k,
        Some(_) => {
            checks.fail("k", FieldCode::OutOfRange, format!("between 1 and {MAX_K}"));
            DEFAULT_K
        }
    };
    let filters = query.filter_params().to_filters(&mut checks);
    checks.finish()?;
    let owner = caller.user_id.as_str();
    if let Some(write) = query.wait_for {
        wait_for_memory(&state, owner, write).await?;
    }
    let request = SearchRequest {
        q: q.to_owned(),
        mode: query.mode,
        k,
        filters,
        explain: query.explain,
    };
    let hits = state.search.run(owner, &request).await?;
    Ok(HttpResponse::Ok().json(SearchResponse {
        mode: query.mode,
        hits,
    }))
}
