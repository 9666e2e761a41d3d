//! History for audit: `/v1/memories/{id}/history`, `/v1/sessions/{id}/history`
//! (the event stream, in order) and `…/as-of` (the state at a version or a
//! time, folded from the events).

use super::AppState;
use super::params::Checks;
use crate::history::{Aggregate, AsOf, PointInTime};
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::Serialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::problem::{Code, FieldCode};
use utoipa::IntoParams;
use uuid::Uuid;

const DEFAULT_ENTRIES: u32 = 100;
const MAX_ENTRIES: u32 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/memories/{id}/history", web::get().to(memory_history))
        .route("/memories/{id}/as-of", web::get().to(memory_as_of))
        .route("/sessions/{id}/history", web::get().to(session_history))
        .route("/sessions/{id}/as-of", web::get().to(session_as_of));
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Entries after this version (0, the default, starts at the beginning).
    #[serde(default)]
    #[param(maximum = 9223372036854775807_i64)]
    pub after: u64,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// The state after the events up to this version. With `at` too, both
    /// bounds apply; with neither, the state now.
    #[param(maximum = 9223372036854775807_i64)]
    pub version: Option<u64>,
    /// The state after the events recorded at or before this time (RFC 3339).
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct HistoryPage {
    items: Vec<crate::history::Entry>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<u64>,
}

async fn history(
    aggregate: Aggregate,
    caller: &Caller,
    state: &AppState,
    id: Uuid,
    query: &HistoryParams,
) -> Result<HttpResponse, Problem> {
    let mut checks = Checks::default();
    let limit = match query.limit {
        None => DEFAULT_ENTRIES,
        Some(n) if (1..=MAX_ENTRIES).contains(&n) => n,
        Some(_) => {
            checks.fail(
                "limit",
                FieldCode::OutOfRange,
                format!("between 1 and {MAX_ENTRIES}"),
            );
            DEFAULT_ENTRIES
        }
    };
    checks.finish()?;
    let owner = caller.user_id.as_str();
    let (items, more) = state
        .history
        .entries(aggregate, owner, id, query.after, limit)
        .await?;
    // An empty page past the end is fine; an empty stream is not found.
    if items.is_empty()
        && !state
            .history
            .exists(aggregate, owner, id)
            .await
            .map_err(super::from_sqlx)?
    {
        return Err(Problem::not_found());
    }
    let next_after = more.then(|| items.last().map(|e| e.version)).flatten();
    Ok(HttpResponse::Ok().json(HistoryPage { items, next_after }))
}

fn point_in_time(query: &AsOfParams) -> PointInTime {
    PointInTime {
        version: query.version,
        at: query.at,
    }
}

fn not_yet() -> Problem {
    Problem::new(Code::NoStateYet).with_detail("it did not exist yet at that version or time")
}

/// A memory's events, in order, for audit.
#[utoipa::path(get, path = "/v1/memories/{id}/history", tag = "history",
    params(("id" = Uuid, Path), HistoryParams),
    responses((status = 200, description = "`{items, next_after}`: one entry per event", body = Object),
              (status = 422, description = "`validation_failed`: `limit` is out of range")),
    security(("bearer" = [])))]
pub async fn memory_history(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<HistoryParams>,
) -> Result<HttpResponse, Problem> {
    history(
        Aggregate::Memory,
        &caller,
        &state,
        path.into_inner(),
        &query,
    )
    .await
}

/// A session's events, in order, for audit.
#[utoipa::path(get, path = "/v1/sessions/{id}/history", tag = "history",
    params(("id" = Uuid, Path), HistoryParams),
    responses((status = 200, description = "`{items, next_after}`: one entry per event", body = Object),
              (status = 422, description = "`validation_failed`: `limit` is out of range")),
    security(("bearer" = [])))]
pub async fn session_history(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<HistoryParams>,
) -> Result<HttpResponse, Problem> {
    history(
        Aggregate::Session,
        &caller,
        &state,
        path.into_inner(),
        &query,
    )
    .await
}

/// A memory as it was at a version or a time.
#[utoipa::path(get, path = "/v1/memories/{id}/as-of", tag = "history",
    params(("id" = Uuid, Path), AsOfParams),
    responses((status = 200, description = "The memory document as it was", body = Object),
              (status = 404, description = "`not_found`, or `no_state_yet`: it did not exist yet at that point"),
              (status = 410, description = "`memory_erased`: an erased memory keeps no past")),
    security(("bearer" = [])))]
pub async fn memory_as_of(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<AsOfParams>,
) -> Result<HttpResponse, Problem> {
    let at = point_in_time(&query);
    match state
        .history
        .memory_as_of(caller.user_id.as_str(), path.into_inner(), at)
        .await?
    {
        AsOf::State(memory) => Ok(HttpResponse::Ok().json(memory)),
        AsOf::NotYet => Err(not_yet()),
        AsOf::NoStream => Err(Problem::not_found()),
        AsOf::Erased => Err(Problem::new(Code::MemoryErased)
            .with_detail("the memory was erased; only the shape of its history remains")),
    }
}

/// A session as it was at a version or a time.
#[utoipa::path(get, path = "/v1/sessions/{id}/as-of", tag = "history",
    params(("id" = Uuid, Path), AsOfParams),
    responses((status = 200, description = "The session document as it was", body = Object),
              (status = 404, description = "`not_found`, or `no_state_yet`: it did not exist yet at that point")),
    security(("bearer" = [])))]
pub async fn session_as_of(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<AsOfParams>,
) -> Result<HttpResponse, Problem> {
    let at = point_in_time(&query);
    match state
        .history
        .session_as_of(caller.user_id.as_str(), path.into_inner(), at)
        .await?
    {
        AsOf::State(session) => Ok(HttpResponse::Ok().json(session)),
        AsOf::NotYet => Err(not_yet()),
        AsOf::NoStream | AsOf::Erased => Err(Problem::not_found()),
    }
}
