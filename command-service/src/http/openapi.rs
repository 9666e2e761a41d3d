//! The OpenAPI document, served at `/v1/openapi.json`.

use super::{memories, sessions};
use actix_web::HttpResponse;
use service_kit::http::BearerAuth;
use utoipa::OpenApi;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Second Brain command API", description = "Write memories and sessions. Every change is an event."),
    paths(
        memories::capture, memories::revise, memories::delete, memories::add_tags, memories::remove_tags,
        memories::set_metadata, memories::move_memory, memories::restore, memories::erase,
        sessions::start, sessions::rename, sessions::end, sessions::reopen,
    ),
    components(schemas(service_kit::problem::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
