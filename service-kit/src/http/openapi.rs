//! What every service's OpenAPI document shares: the bearer scheme, the
//! problem document, and the error responses every operation can give.

use crate::problem::{Code, FieldError};
use std::collections::HashMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ObjectBuilder, OpenApi, Ref, RefOr, Response, Type};
use utoipa::{Modify, PartialSchema, ToSchema};

/// Adds the `bearer` security scheme the services' paths name: a JWT or an
/// API key, as `Authorization: Bearer …`.
#[derive(Debug)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
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

/// The methods of each path an OpenAPI document names, for the `Allow`
/// header of a 405 (`problem_fallback` reads it from the app data): the
/// document is the one list of routes, so the header cannot drift from it.
#[derive(Debug, Clone, Default)]
pub struct AllowedMethods(HashMap<String, String>);

impl AllowedMethods {
    pub fn from_openapi(openapi: &OpenApi) -> Self {
        let paths = openapi.paths.paths.iter().map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            let allow: Vec<&str> = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
            (path.clone(), allow.join(", "))
        });
        Self(paths.collect())
    }

    /// `Allow` for a route pattern as actix-web names it (`/v1/memories/{id}`).
    pub fn for_pattern(&self, pattern: &str) -> Option<String> {
        self.0.get(pattern).cloned()
    }
}

/// An RFC 9457 problem document, as [`crate::Problem`] serialises it.
#[derive(Debug, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)] // a schema only: the wire form is written by `Problem`
struct ProblemDocument {
    /// `urn:second-brain:problem:<code>`.
    #[schema(rename = "type")]
    type_uri: String,
    /// A short, human-readable summary of the kind of problem.
    title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// Stable, machine-readable code; `docs/api.md` and `docs/query-api.md`
    /// list them.
    code: String,
    /// What went wrong with this request, for people.
    detail: Option<String>,
    /// One entry per invalid field (`validation_failed`).
    errors: Option<Vec<FieldError>>,
}

impl PartialSchema for crate::Problem {
    fn schema() -> RefOr<utoipa::openapi::Schema> {
        ProblemDocument::schema()
    }
}

impl ToSchema for crate::Problem {
    fn name() -> std::borrow::Cow<'static, str> {
        ProblemDocument::name()
    }
}

/// The error responses every operation can give and their `application/
/// problem+json` body, added to each operation from what it declares:
///
/// - every operation: 429 (the client address's rate limit) and 503 (a
///   dependency is down), both with `Retry-After`;
/// - with a security requirement: 401 with `WWW-Authenticate`;
/// - with query or header parameters: 400 (`invalid_query`, a header that
///   breaks its pattern);
/// - with a path parameter: 404 (`invalid_id`, `not_found`);
/// - with a request body: 400 (`malformed_json`, `unreadable_body`), 413,
///   415 and 422 (`invalid_body`, `validation_failed`).
///
/// Every 4xx and 5xx response an operation lists itself gets the problem
/// body too, in place of whatever content it named, so a client parses one
/// error format.
#[derive(Debug)]
pub struct StandardResponses;

const PROBLEM_JSON: &str = crate::problem::PROBLEM_JSON;

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("Problem".to_owned(), ProblemDocument::schema());
        components
            .schemas
            .insert("FieldError".to_owned(), FieldError::schema());
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_standard_responses(operation);
            }
        }
    }
}

fn add_standard_responses(operation: &mut Operation) {
    let takes = |place: ParameterIn| {
        operation
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == place)
    };
    let (query, path, header) = (
        takes(ParameterIn::Query),
        takes(ParameterIn::Path),
        takes(ParameterIn::Header),
    );
    let body = operation.request_body.is_some();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| Response::new(description).into());
    };
    add("429", &describe(&[Code::RateLimited]));
    add("503", &describe(&[Code::ServiceUnavailable]));
    if secured {
        add("401", &describe(&[Code::Unauthorized]));
    }
    if query || body || header {
        add(
            "400",
            &format!(
                "The request is malformed; {}; or a header that breaks its pattern",
                describe(&[
                    Code::InvalidQuery,
                    Code::MalformedJson,
                    Code::UnreadableBody
                ])
            ),
        );
    }
    if path {
        add("404", &describe(&[Code::NotFound, Code::InvalidId]));
    }
    if body {
        add("413", &describe(&[Code::BodyTooLarge]));
        add("415", &describe(&[Code::UnsupportedMediaType]));
        add(
            "422",
            &describe(&[Code::InvalidBody, Code::ValidationFailed]),
        );
    }
    for (status, response) in &mut operation.responses.responses {
        if let RefOr::T(response) = response
            && status.starts_with(['4', '5'])
        {
            as_problem(status, response);
        }
    }
}

/// A response's description from the table: each code with its line.
pub fn describe(codes: &[Code]) -> String {
    let lines: Vec<String> = codes
        .iter()
        .map(|code| format!("`{code}`: {}", code.doc()))
        .collect();
    lines.join("; ")
}

fn as_problem(status: &str, response: &mut Response) {
    response.content.clear();
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    let seconds = || {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some("Seconds to wait before retrying"))
            .build()
    };
    match status {
        "429" | "503" => {
            response.headers.insert("Retry-After".to_owned(), seconds());
        }
        "401" => {
            response.headers.insert(
                "WWW-Authenticate".to_owned(),
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::ResponseBuilder;
    use utoipa::openapi::path::{OperationBuilder, ParameterBuilder};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;

    fn statuses(operation: &Operation) -> Vec<&str> {
        operation
            .responses
            .responses
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn an_operation_gets_the_responses_its_inputs_can_cause() {
        let mut read = OperationBuilder::new()
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path),
            )
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("200", ResponseBuilder::new().description("ok"))
            .build();
        add_standard_responses(&mut read);
        assert_eq!(statuses(&read), ["200", "401", "404", "429", "503"]);

        let mut write = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .response("409", ResponseBuilder::new().description("conflict"))
            .build();
        add_standard_responses(&mut write);
        assert_eq!(
            statuses(&write),
            ["400", "409", "413", "415", "422", "429", "503"]
        );
    }

    #[test]
    fn every_error_response_carries_the_problem_document() {
        let mut operation = OperationBuilder::new()
            .response(
                "409",
                ResponseBuilder::new()
                    .description("conflict")
                    .content("application/json", Content::new(None::<RefOr<_>>)),
            )
            .build();
        add_standard_responses(&mut operation);
        for (status, response) in &operation.responses.responses {
            let RefOr::T(response) = response else {
                panic!("a reference")
            };
            let types: Vec<&String> = response.content.keys().collect();
            assert_eq!(types, [PROBLEM_JSON], "{status}");
        }
        let RefOr::T(limited) = &operation.responses.responses["429"] else {
            panic!()
        };
        assert!(limited.headers.contains_key("Retry-After"));
    }
}
