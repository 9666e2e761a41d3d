//! The OpenAPI document, served at `/v1/openapi.json`.

use super::schemas::{AtLeastOneField, MetadataLevels};
use super::{memories, sessions};
use actix_web::HttpResponse;
use service_kit::http::{BearerAuth, StandardResponses};
use utoipa::OpenApi;

const REVISION_NEEDS_A_FIELD: AtLeastOneField = AtLeastOneField("ReviseMemory");

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Second Brain command API", description = "Write memories and sessions. Every change is an event."),
    paths(
        memories::capture, memories::revise, memories::delete, memories::add_tags, memories::remove_tags,
        memories::set_metadata, memories::move_memory, memories::restore, memories::erase,
        sessions::start, sessions::rename, sessions::end, sessions::reopen,
    ),
    components(schemas(service_kit::problem::FieldError)),
    modifiers(&BearerAuth, &StandardResponses, &MetadataLevels, &REVISION_NEEDS_A_FIELD),
)]
pub struct ApiDoc;

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CONTENT_PATTERN, TITLE_PATTERN};
    use serde_json::Value;

    fn schema(name: &str) -> Value {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        document["components"]["schemas"][name].clone()
    }

    #[test]
    fn request_schemas_state_the_limits_the_domain_checks() {
        let capture = &schema("CaptureMemory")["properties"];
        assert_eq!(capture["content"]["pattern"], CONTENT_PATTERN);
        assert_eq!(capture["content"]["maxLength"], 65_536);
        assert_eq!(capture["title"]["pattern"], TITLE_PATTERN);
        assert_eq!(capture["tags"]["maxItems"], 32);
        assert_eq!(
            capture["tags"]["items"]["pattern"],
            event_schema::tag::TAG_PATTERN
        );
        let revise = schema("ReviseMemory");
        assert_eq!(revise["minProperties"], 1);
        assert!(revise.get("maxProperties").is_none());
        // Nesting is spelled out level by level, and the deepest level holds
        // no containers.
        let deepest = schema("MetadataValue9");
        assert_eq!(deepest["oneOf"].as_array().unwrap().len(), 4);
        assert_eq!(
            schema("MetadataValue8")["oneOf"].as_array().unwrap().len(),
            6
        );
    }
}
