//! `/v1/search`: semantic, keyword or hybrid search over the caller's
//! memories, with the list filters.

use super::AppState;
use super::params::{Checks, text, with_filters};
use crate::search::{Hit, Mode, SearchRequest};
use actix_web::{HttpResponse, web};
use serde::Serialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use utoipa::ToSchema;

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
pub const DEFAULT_K: u32 = 10;
pub const MAX_K: u32 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/search", web::get().to(search));
}

with_filters! {
    pub struct SearchParams {
        /// What to look for: words, a phrase in double quotes, `-word` to
        /// exclude, or a question in plain language.
        pub q: Option<String>,
        /// `hybrid` (the default), `semantic` or `keyword`.
        #[serde(default)]
        #[param(value_type = Option<String>)]
        pub mode: Mode,
        /// Hits to return, 1 to 100 (default 10).
        pub k: Option<u32>,
        /// Add each hit's rank and score in each ranking.
        #[serde(default)]
        pub explain: bool,
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
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem),
              (status = 503, description = "the query could not be embedded, or the stored vectors are of another model", body = Problem)),
    security(("bearer" = [])))]
pub async fn search(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, Problem> {
    let mut checks = Checks::default();
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.is_empty() {
        checks.fail("q", "required", "a query is required");
    } else if q.chars().count() > MAX_QUERY_CHARS {
        checks.fail(
            "q",
            "too_long",
            format!("at most {MAX_QUERY_CHARS} characters"),
        );
    } else {
        text("q", q, &mut checks);
    }
    let k = match query.k {
        None => DEFAULT_K,
        Some(k) if (1..=MAX_K).contains(&k) => k,
        Some(_) => {
            checks.fail("k", "out_of_range", format!("between 1 and {MAX_K}"));
            DEFAULT_K
        }
    };
    let filters = query.filter_params().to_filters(&mut checks);
    checks.finish()?;
    let request = SearchRequest {
        q: q.to_owned(),
        mode: query.mode,
        k,
        filters,
        explain: query.explain,
    };
    let hits = state.search.run(caller.user_id.as_str(), &request).await?;
    Ok(HttpResponse::Ok().json(SearchResponse {
        mode: query.mode,
        hits,
    }))
}
