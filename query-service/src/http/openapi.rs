//! The OpenAPI document, served at `/v1/openapi.json`.

use super::{history, memories, search, sessions};
use actix_web::HttpResponse;
use service_kit::http::BearerAuth;
use utoipa::OpenApi;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Second Brain query API", description = "Read memories and sessions, search them, and audit their history."),
    paths(
        memories::get, memories::list,
        sessions::get, sessions::list, sessions::timeline,
        search::search,
        history::memory_history, history::memory_as_of, history::session_history, history::session_as_of,
    ),
    components(schemas(service_kit::problem::FieldError, crate::history::Entry)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
