//! `/v1/sessions`: one session by id, the caller's sessions, and a session's
//! timeline.

use super::memories::{Found, read_your_writes};
use super::params::{Checks, limit, position};
use super::{AppState, from_sqlx};
use crate::documents::TimelinePosition;
use crate::history::Aggregate;
use crate::rows::{Order, SessionFilter};
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use event_schema::SessionState;
use serde::Deserialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::problem::FieldCode;
use utoipa::IntoParams;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sessions", web::get().to(list))
        .route("/sessions/{id}", web::get().to(get))
        .route("/sessions/{id}/timeline", web::get().to(timeline));
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Read-your-writes: wait (boundedly) until the read model holds at least
    /// this version.
    #[param(maximum = 9223372036854775807_i64)]
    pub min_version: Option<u64>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `open` or `ended`; both when absent.
    pub status: Option<SessionFilter>,
    /// By start time: `desc` (the default) or `asc`.
    #[serde(default)]
    #[param(value_type = Option<Order>)]
    pub order: Order,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// From the previous page's `next_cursor`: the page after it, in `order`.
    #[param(schema_with = crate::cursor::schema)]
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// From the previous page's `next_cursor`.
    #[param(schema_with = crate::cursor::schema)]
    pub cursor: Option<String>,
}

/// A session of the caller's: the Redis document, or else the read
/// database's row, put back into Redis.
async fn lookup(state: &AppState, owner: &str, id: Uuid) -> Result<Found<SessionState>, Problem> {
    let (g, doc) = state.documents.session(id).await?;
    match doc {
        Some(doc) if doc.owner_id == owner => Ok(Found::Mine(doc)),
        Some(_) => Ok(Found::Gone),
        None => {
            let Some(row) = state.rows.session(owner, id).await.map_err(from_sqlx)? else {
                return Ok(Found::Absent);
            };
            match state.documents.repair_session(g, &row).await {
                Ok(true) => {
                    metrics::counter!("document_repairs_total", "kind" => "session").increment(1);
                    tracing::info!(session = %id, version = row.version, "repaired a missing session document");
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(session = %id, %error, "repairing a session document failed");
                }
            }
            Ok(Found::Mine(row))
        }
    }
}

/// Get one session.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path), GetParams),
    responses((status = 200, description = "The session document, with its version as the ETag", body = Object,
               headers(("ETag" = String))),
              (status = 404, description = "`not_found`: no session of the caller's by this id"),
              (status = 429, description = "`rate_limited`: too many requests, or every one of the caller's `min_version` waits is taken"),
              (status = 503, description = "`not_yet_consistent`: `min_version` was not reached in time; or `service_unavailable`")),
    security(("bearer" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<GetParams>,
) -> Result<HttpResponse, Problem> {
    let id = path.into_inner();
    let owner = caller.user_id.as_str();
    let session = read_your_writes(
        &state.min_version_waits,
        owner,
        state.consistency_timeout,
        query.min_version,
        |s: &SessionState| s.version,
        async || lookup(&state, owner, id).await,
        async || {
            state
                .history
                .owns_live(Aggregate::Session, owner, id)
                .await
                .map_err(from_sqlx)
        },
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", session.version)))
        .json(session))
}

/// List the caller's sessions by start time.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    params(ListParams),
    responses((status = 200, description = "`{items, next_cursor}` of session documents", body = Object),
              (status = 422, description = "`validation_failed`: `limit` or `cursor` is invalid")),
    security(("bearer" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, Problem> {
    let mut checks = Checks::default();
    let limit = limit(query.limit, &mut checks);
    let after = position(query.cursor.as_deref(), &mut checks);
    checks.finish()?;
    let (items, more) = state
        .rows
        .sessions(
            caller.user_id.as_str(),
            query.status,
            query.order,
            after,
            limit,
        )
        .await
        .map_err(from_sqlx)?;
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|last| crate::cursor::encode(last.started_at.timestamp_micros(), last.id));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": next_cursor,
    })))
}

/// A session's active memories in time order (when they happened, else when
/// they were captured), oldest first.
#[utoipa::path(get, path = "/v1/sessions/{id}/timeline", tag = "sessions",
    params(("id" = Uuid, Path), TimelineParams),
    responses((status = 200, description = "`{items, next_cursor}` of memory documents", body = Object),
              (status = 404, description = "`not_found`: no session of the caller's by this id"),
              (status = 422, description = "`validation_failed`: `limit` or `cursor` is invalid")),
    security(("bearer" = [])))]
pub async fn timeline(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<TimelineParams>,
) -> Result<HttpResponse, Problem> {
    let id = path.into_inner();
    let mut checks = Checks::default();
    let limit = limit(query.limit, &mut checks);
    let after = match query.cursor.as_deref() {
        None => None,
        Some(raw) => {
            let decoded =
                crate::cursor::decode(raw).map(|(score, id)| TimelinePosition { score, id });
            if decoded.is_none() {
                checks.fail(
                    "cursor",
                    FieldCode::InvalidCursor,
                    "not a cursor this timeline issued",
                );
            }
            decoded
        }
    };
    checks.finish()?;
    let Found::Mine(_) = lookup(&state, caller.user_id.as_str(), id).await? else {
        return Err(Problem::not_found());
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (items, next) = state.documents.timeline(id, after, limit).await?;
    // The timeline holds ids only; a document is the owner's by construction,
    // but check anyway rather than trust an index.
    let items: Vec<_> = items
        .into_iter()
        .filter(|m| m.owner_id == caller.user_id.as_str())
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": next.map(|n| crate::cursor::encode(n.score, n.id)),
    })))
}
