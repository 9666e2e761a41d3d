//! `/v1/memories`: capture a memory and every change to it.

use super::command::{
    CommandRequest, Endpoint, IdempotencyHeader, MemoryChanged, REUSED_OR_INVALID, TOO_LARGE,
    VersionedHeaders, run,
};
use super::error::{invalid, memory_problem, session_problem};
use super::schemas;
use crate::domain::{Content, Invalid, Metadata, TagSet, Title};
use crate::memory::{Memory, MemoryCommand, TargetSession};
use crate::startup::AppState;
use crate::store::CommandError;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::problem::FieldCode;
use utoipa::ToSchema;
use uuid::Uuid;

impl Endpoint for Memory {
    const COLLECTION: &'static str = "/v1/memories";

    fn command_name(command: &MemoryCommand) -> &'static str {
        command.name()
    }

    fn problem(error: CommandError<Self::Error>) -> Problem {
        memory_problem(error)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/memories", web::post().to(capture))
        .route("/memories/{id}", web::patch().to(revise))
        .route("/memories/{id}", web::delete().to(delete))
        .route("/memories/{id}/tags", web::post().to(add_tags))
        .route("/memories/{id}/tags/remove", web::post().to(remove_tags))
        .route("/memories/{id}/metadata", web::put().to(set_metadata))
        .route("/memories/{id}/move", web::post().to(move_memory))
        .route("/memories/{id}/restore", web::post().to(restore))
        .route("/memories/{id}/erase", web::post().to(erase));
}

/// A new memory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureMemory {
    #[schema(schema_with = schemas::content)]
    pub content: String,
    /// Absent or `null`: no title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schemas::nullable_title)]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schemas::tags)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = schemas::metadata)]
    pub metadata: Map<String, Value>,
    /// A session of the caller's that is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// When the remembered thing happened (or will), e.g. for imports; the
    /// time of capture when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// New content and/or title; `"title": null` clears the title. At least one
/// of them (`minProperties`, set by `schemas::AtLeastOneField`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviseMemory {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    #[schema(schema_with = schemas::content)]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(schema_with = schemas::nullable_title)]
    pub title: Option<Option<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[schema(schema_with = schemas::tags)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataBody {
    #[schema(schema_with = schemas::metadata)]
    pub metadata: Map<String, Value>,
}

/// The session to move into, or `null` to detach the memory from its session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveMemory {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>, required = true)]
    pub session_id: Option<Option<Uuid>>,
}

/// A field that may be absent but, when present, is not `null`.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A field that is present, possibly `null`: `Some(None)` is an explicit null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn target_session(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<TargetSession, Problem> {
    let status = state
        .events
        .session_status(&caller.user_id, id)
        .await
        .map_err(session_problem)?;
    Ok(TargetSession { id, status })
}

/// Capture a memory.
#[utoipa::path(post, path = "/v1/memories", tag = "memories", request_body = CaptureMemory,
    params(IdempotencyHeader),
    responses((status = 201, body = super::AcceptedBody, description = "Captured; `Location` names it, `ETag` is its version",
               headers(("Location" = String), ("ETag" = String))),
              (status = 422, description = REUSED_OR_INVALID),
              (status = 404, description = "`session_not_found`: `session_id` names no session of the caller's"),
              (status = 413, description = TOO_LARGE),
              (status = 409, description = "`session_ended`: the session is ended")),
    security(("bearer" = [])))]
pub async fn capture(
    request: CommandRequest,
    state: web::Data<AppState>,
    body: web::Json<CaptureMemory>,
) -> Result<HttpResponse, Problem> {
    let mut errors: Vec<Invalid> = Vec::new();
    let content = Content::parse("content", &body.content)
        .map_err(|e| errors.push(e))
        .ok();
    let title = match &body.title {
        Some(t) => Title::parse("title", t).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    let tags = TagSet::parse("tags", &body.tags)
        .map_err(|e| errors.extend(e))
        .ok();
    let metadata = Metadata::parse("metadata", body.metadata.clone())
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(content), Some(tags), Some(metadata), true) =
        (content, tags, metadata, errors.is_empty())
    else {
        return Err(invalid(errors));
    };
    let session = match body.session_id {
        Some(id) => Some(target_session(&state, &request.caller, id).await?),
        None => None,
    };
    let command = MemoryCommand::Capture {
        content,
        title,
        tags,
        metadata,
        session,
        occurred_at: body.occurred_at,
    };
    // Time-ordered ids keep the index on ids append-mostly.
    run::<Memory>(&state, &request, Uuid::now_v7(), command, true, &*body).await
}

/// Revise a memory's content and/or title.
#[utoipa::path(patch, path = "/v1/memories/{id}", tag = "memories", request_body = ReviseMemory,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses(MemoryChanged),
    security(("bearer" = [])))]
pub async fn revise(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<ReviseMemory>,
) -> Result<HttpResponse, Problem> {
    let mut errors = Vec::new();
    let content = match &body.content {
        Some(c) => Content::parse("content", c)
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let title = match &body.title {
        Some(Some(t)) => Title::parse("title", t)
            .map(|t| Some(Some(t)))
            .map_err(|e| errors.push(e))
            .ok()
            .flatten(),
        Some(None) => Some(None),
        None => None,
    };
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    run::<Memory>(
        &state,
        &request,
        *path,
        MemoryCommand::Revise { content, title },
        false,
        &*body,
    )
    .await
}

fn tags(body: &TagsBody) -> Result<TagSet, Problem> {
    TagSet::parse("tags", &body.tags).map_err(invalid)
}

/// Add tags.
#[utoipa::path(post, path = "/v1/memories/{id}/tags", tag = "memories", request_body = TagsBody,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses(MemoryChanged),
    security(("bearer" = [])))]
pub async fn add_tags(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<TagsBody>,
) -> Result<HttpResponse, Problem> {
    let command = MemoryCommand::AddTags(tags(&body)?);
    run::<Memory>(&state, &request, *path, command, false, &*body).await
}

/// Remove tags.
#[utoipa::path(post, path = "/v1/memories/{id}/tags/remove", tag = "memories", request_body = TagsBody,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses(MemoryChanged),
    security(("bearer" = [])))]
pub async fn remove_tags(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<TagsBody>,
) -> Result<HttpResponse, Problem> {
    let command = MemoryCommand::RemoveTags(tags(&body)?);
    run::<Memory>(&state, &request, *path, command, false, &*body).await
}

/// Replace the metadata object.
#[utoipa::path(put, path = "/v1/memories/{id}/metadata", tag = "memories", request_body = MetadataBody,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses(MemoryChanged, (status = 413, description = TOO_LARGE)),
    security(("bearer" = [])))]
pub async fn set_metadata(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<MetadataBody>,
) -> Result<HttpResponse, Problem> {
    let metadata =
        Metadata::parse("metadata", body.metadata.clone()).map_err(|e| invalid(vec![e]))?;
    run::<Memory>(
        &state,
        &request,
        *path,
        MemoryCommand::SetMetadata(metadata),
        false,
        &*body,
    )
    .await
}

/// Move into a session, or detach with `"session_id": null`.
#[utoipa::path(post, path = "/v1/memories/{id}/move", tag = "memories", request_body = MoveMemory,
    params(("id" = Uuid, Path), VersionedHeaders),
    responses(MemoryChanged),
    security(("bearer" = [])))]
pub async fn move_memory(
    request: CommandRequest,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<MoveMemory>,
) -> Result<HttpResponse, Problem> {
    let target = match body.session_id {
        Some(Some(id)) => Some(target_session(&state, &request.caller, id).await?),
        Some(None) => None,
        None => {
            return Err(invalid(vec![Invalid::new(
                "session_id",
                FieldCode::SessionIdRequired,
                "name the session, or send null to detach",
            )]));
        }
    };
    run::<Memory>(
        &state,
        &request,
        *path,
        MemoryCommand::Move(target),
        false,
        &*body,
    )
    .await
}

macro_rules! bodiless {
    ($name:ident, $method:ident, $path:literal, $command:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path($method, path = $path, tag = "memories", params(("id" = Uuid, Path), VersionedHeaders),
            responses(MemoryChanged),
            security(("bearer" = [])))]
        pub async fn $name(
            request: CommandRequest,
            state: web::Data<AppState>,
            path: web::Path<Uuid>,
        ) -> Result<HttpResponse, Problem> {
            run::<Memory>(&state, &request, *path, $command, false, &()).await
        }
    };
}

bodiless!(
    delete,
    delete,
    "/v1/memories/{id}",
    MemoryCommand::Delete,
    "Delete a memory; it can be restored."
);
bodiless!(
    restore,
    post,
    "/v1/memories/{id}/restore",
    MemoryCommand::Restore,
    "Restore a deleted memory."
);
bodiless!(
    erase,
    post,
    "/v1/memories/{id}/erase",
    MemoryCommand::Erase,
    "Erase a memory for good: its content, title, tags and metadata are removed from the event store."
);
