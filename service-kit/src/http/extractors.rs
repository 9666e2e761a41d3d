//! Extractor configurations that turn every malformed request into a problem
//! with a stable code instead of actix-web's plain-text default.

use crate::problem::{Code, Problem};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

/// JSON bodies: `application/json` only, at most `limit` bytes, unknown fields
/// and type mismatches reported with serde's position-bearing message.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .content_type(|mime| mime.type_() == "application" && mime.subtype() == "json")
        .error_handler(|error, _req| json_problem(&error).into())
}

fn json_problem(error: &JsonPayloadError) -> Problem {
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => Problem::new(Code::BodyTooLarge)
            .with_detail(format!("the request body is limited to {limit} bytes")),
        JsonPayloadError::ContentType => Problem::new(Code::UnsupportedMediaType)
            .with_detail("send the body as application/json"),
        JsonPayloadError::Deserialize(inner) => {
            use serde_json::error::Category;
            match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    Problem::new(Code::MalformedJson)
                        .with_detail(format!("the body is not valid JSON: {inner}"))
                }
                Category::Data => Problem::new(Code::InvalidBody).with_detail(inner.to_string()),
            }
        }
        // Only reachable when the framework serialises a response; never a client fault.
        JsonPayloadError::Serialize(_) => Problem::internal(),
        JsonPayloadError::Payload(inner) => {
            Problem::new(Code::UnreadableBody).with_detail(inner.to_string())
        }
        // `JsonPayloadError` is non-exhaustive: a variant added upstream is
        // still a client error, and says so in the status and title it had
        // before the table (400, "Bad request"); the code is the table's
        // one for a refusal it does not name.
        other => Problem::new(Code::BadRequest).with_detail(other.to_string()),
    }
}

/// Path segments: a malformed id is a 404, as it names nothing that can exist,
/// but with its own code so a client can tell a typo from a missing resource.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, _req| {
        Problem::new(Code::InvalidId)
            .with_detail(format!("the path does not name a resource: {error}"))
            .into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _req| {
        Problem::new(Code::InvalidQuery)
            .with_detail(error.to_string())
            .into()
    })
}

/// The default service: unknown paths get a problem, not an empty 404; a
/// known path asked with another method gets a 405 that says, in `Allow`,
/// which methods it has (from [`super::AllowedMethods`] in the app data).
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let Some(pattern) = req.match_pattern() else {
        return Problem::not_found()
            .with_detail(format!("no route for {}", req.path()))
            .error_response();
    };
    let mut response = Problem::new(Code::MethodNotAllowed).error_response();
    set_allow(&req, &pattern, &mut response);
    response
}

fn set_allow<B>(req: &HttpRequest, pattern: &str, response: &mut HttpResponse<B>) {
    let allow = req
        .app_data::<web::Data<super::AllowedMethods>>()
        .and_then(|methods| methods.for_pattern(pattern))
        .and_then(|allow| actix_web::http::header::HeaderValue::from_str(&allow).ok());
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, allow);
    }
}

/// A safety net for error responses the framework makes itself (a 405 from a
/// resource without that method, say): any 4xx or 5xx that is not already a
/// problem document becomes one, so clients parse one error format only.
pub fn problem_fallback<B: actix_web::body::MessageBody + 'static>()
-> actix_web::middleware::ErrorHandlers<B> {
    use actix_web::http::header::CONTENT_TYPE;
    use actix_web::middleware::ErrorHandlerResponse;
    actix_web::middleware::ErrorHandlers::new().default_handler(
        |res: actix_web::dev::ServiceResponse<B>| {
            let is_problem = res.headers().get(CONTENT_TYPE).is_some_and(|v| {
                v.as_bytes()
                    .starts_with(crate::problem::PROBLEM_JSON.as_bytes())
            });
            if is_problem {
                return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
            }
            let status = res.status();
            let problem = match status {
                StatusCode::NOT_FOUND => Problem::not_found(),
                StatusCode::METHOD_NOT_ALLOWED => Problem::new(Code::MethodNotAllowed),
                StatusCode::PAYLOAD_TOO_LARGE => Problem::new(Code::BodyTooLarge),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(Code::UnsupportedMediaType),
                s if s.is_client_error() => Problem::refused(s),
                _ => Problem::internal(),
            };
            let (req, _) = res.into_parts();
            let mut response = problem.error_response();
            // RFC 9110: a 405 says which methods the resource has.
            if status == StatusCode::METHOD_NOT_ALLOWED
                && let Some(pattern) = req.match_pattern()
            {
                set_allow(&req, &pattern, &mut response);
            }
            let response = response.map_into_right_body();
            Ok(ErrorHandlerResponse::Response(
                actix_web::dev::ServiceResponse::new(req, response),
            ))
        },
    )
}
