//! `/v1/sessions`: start, rename, end and reopen sessions.

use super::command::{
    CommandRequest, Endpoint, IdempotencyHeader, REUSED_OR_INVALID, TOO_LARGE, VersionedHeaders,
    run,
};
use super::error::{invalid, session_problem};
use super::schemas;
use crate::domain::{Invalid, Metadata, Title};
use crate::session::{Session, SessionCommand};
use crate::startup::AppState;
use crate::store::CommandError;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use service_kit::Problem;
use utoipa::ToSchema;
use uuid::Uuid;

impl Endpoint for Session {
    const COLLECTION: &'static str = "/v1/sessions";

    fn command_name(command: &SessionCommand) -> &'static str {
        command.name()
    }

    fn problem(error: CommandError<Self::Error>) -> Problem {
        session_problem(error)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sessions", web::post().to(start))
        .route("/sessions/{id}", web::patch().to(rename))
        .route("/sessions/{id}/end", web::post().to(end))
        .route("/sessions/{id}/reopen", web::post().to(reopen));
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    #[schema(schema_with = schemas::title)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = schemas::metadata)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameSession {
    #[schema(schema_with = schemas::title)]
    pub title: String,
}

/// Start a session.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = StartSession,
    params(IdempotencyHeader),
    responses((status = 201, body = super::AcceptedBody, description = "Started; `Location` names it, `ETag` is its version",
               headers(("Location" = String), ("ETag" = String))),
              (status = 413, description = TOO_LARGE),
              (status = 422, description = REUSED_OR_INVALID)),
    security(("bearer" = [])))]
pub async fn start(
    request: CommandRequest,
    state: web::Data<AppState>,
    body: web::Json<StartSession>,
) -> Result<HttpResponse, Problem> {
    let mut errors: Vec<Invalid> = Vec::new();
    let title = Title::parse("title", &body.title)
        .map_err(|e| errors.push(e))
        .ok();
    let metadata = Metadata::parse("metadata", body.metadata.clone())
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(title), Some(metadata)) = (title, metadata) else {
        return Err(invalid(errors));
    };
    run::<Session>(
        &state,
        &request,
        Uuid::now_v7(),
        SessionCommand::Start { title, metadata },
        true,
        &*body,
    )
    .await
}

/// Rename a session.
#[utoipa::path(patch, path = "/v1/sessions/{id}", tag = "sessions", request_body = RenameSession,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses((status = 200, body = super::AcceptedBody, headers(("ETag" = String))),
              (status = 422, description = REUSED_OR_INVALID),
                           (status = 412, description = "`version_mismatch`: `If-Match` names another version")),
    security(("bearer" = [])))]
pub async fn rename(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<RenameSession>,
) -> Result<HttpResponse, Problem> {
    let title = Title::parse("title", &body.title).map_err(|e| invalid(vec![e]))?;
    run::<Session>(
        &state,
        &request,
        *path,
        SessionCommand::Rename(title),
        false,
        &*body,
    )
    .await
}

/// End a session.
#[utoipa::path(post, path = "/v1/sessions/{id}/end", tag = "sessions", params(("id" = Uuid, Path), VersionedHeaders),
    responses((status = 200, body = super::AcceptedBody, headers(("ETag" = String))),
              (status = 422, description = REUSED_OR_INVALID),
              (status = 409, description = "The session is already ended"),
              (status = 412, description = "`version_mismatch`: `If-Match` names another version")),
    security(("bearer" = [])))]
pub async fn end(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    run::<Session>(&state, &request, *path, SessionCommand::End, false, &()).await
}

/// Reopen an ended session.
#[utoipa::path(post, path = "/v1/sessions/{id}/reopen", tag = "sessions", params(("id" = Uuid, Path), VersionedHeaders),
    responses((status = 200, body = super::AcceptedBody, headers(("ETag" = String))),
              (status = 422, description = REUSED_OR_INVALID),
              (status = 409, description = "The session is not ended"),
              (status = 412, description = "`version_mismatch`: `If-Match` names another version")),
    security(("bearer" = [])))]
pub async fn reopen(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    run::<Session>(&state, &request, *path, SessionCommand::Reopen, false, &()).await
}
