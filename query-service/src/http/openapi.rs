//! The OpenAPI document, served at `/v1/openapi.json`.

use super::{history, memories, search, sessions};
use actix_web::HttpResponse;
use service_kit::http::{BearerAuth, StandardResponses};
use utoipa::openapi::Required;
use utoipa::openapi::path::ParameterStyle;
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
    modifiers(&BearerAuth, &StandardResponses, &SchemaWithParameters),
)]
pub struct ApiDoc;

/// What utoipa drops from a parameter whose schema comes from `schema_with`
/// (its description, `required`, `style`, `explode`), put back: `q` is
/// required, and the tag filters travel comma-separated (`tags_any=a,b`:
/// `style: form, explode: false`).
#[derive(Debug)]
struct SchemaWithParameters;

impl Modify for SchemaWithParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let Some(get) = item.get.as_mut() else {
                continue;
            };
            for parameter in get.parameters.iter_mut().flatten() {
                if parameter.name == "q" {
                    parameter.required = Required::True;
                    continue;
                }
                let description = match parameter.name.as_str() {
                    "tags_any" => "Memories with at least one of these tags",
                    "tags_all" => "Memories with every one of these tags",
                    _ => continue,
                };
                parameter.style = Some(ParameterStyle::Form);
                parameter.explode = Some(false);
                parameter.description = Some(format!(
                    "{description}: comma-separated, 1 to 32 (duplicates included)"
                ));
            }
        }
    }
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parameter(document: &Value, path: &str, name: &str) -> Value {
        let parameters = document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap();
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    }

    #[test]
    fn parameters_state_the_limits_the_service_checks() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let q = parameter(&document, "/v1/search", "q");
        assert_eq!(q["required"], true);
        assert_eq!(q["schema"]["pattern"], crate::http::search::QUERY_PATTERN);
        let tags = parameter(&document, "/v1/search", "tags_any");
        assert_eq!(
            (tags["style"].as_str(), tags["explode"].as_bool()),
            (Some("form"), Some(false))
        );
        assert_eq!(
            tags["schema"]["items"]["pattern"],
            event_schema::tag::TAG_PATTERN
        );
        let cursor = parameter(&document, "/v1/memories", "cursor");
        assert_eq!(cursor["schema"]["pattern"], crate::cursor::CURSOR_PATTERN);
        let limit = parameter(&document, "/v1/memories", "limit");
        assert_eq!(
            (
                limit["schema"]["minimum"].as_u64(),
                limit["schema"]["maximum"].as_u64()
            ),
            (Some(1), Some(200))
        );
    }
}
