//! The OpenAPI document, served at `/v1/openapi.json`.

use super::{history, memories, search, sessions};
use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
