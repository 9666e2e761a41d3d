//! The OpenAPI document, served at `/v1/openapi.json`.

use super::{memories, sessions};
use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A JWT (HS256, `sub` = user id) or an API key `sbk_…`"))
                    .build(),
            ),
        );
    }
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
