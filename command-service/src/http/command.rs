//! What every command endpoint shares: the `If-Match` and `Idempotency-Key`
//! headers, the request hash, the response shape and the command metrics.

use crate::startup::AppState;
use crate::store::{Accepted, CommandError, CommandMeta, Decides, Idempotency};
use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload};
use futures::future::{LocalBoxFuture, try_join3};
use regex::Regex;
use serde::Serialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::http::RequestContext;
use service_kit::problem::Code;
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};
use std::sync::OnceLock;
use utoipa::openapi::{ObjectBuilder, Type};
use uuid::Uuid;

/// The largest request body accepted: room for every field at its limit
/// however it is escaped. Content alone is 65,536 characters, which JSON's
/// `\uXXXX\uXXXX` escapes inflate to 12 bytes each (768 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// The 422 of every command, for the OpenAPI document.
pub const REUSED_OR_INVALID: &str = "`idempotency_key_reused`: the `Idempotency-Key` was used for another request; \
     for a body, `validation_failed` (`errors` names each field) or `invalid_body`";

/// The 413 of a command whose body carries metadata.
pub const TOO_LARGE: &str = "`body_too_large`: the body is over 1 MiB; or `metadata_too_large`: \
     the metadata is over 16 KiB serialised";

/// What a command on an existing memory answers, for the OpenAPI document
/// (the statuses every operation shares are added by `StandardResponses`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum MemoryChanged {
    /// The memory's new version, also as `ETag`.
    #[response(status = 200, headers(("ETag" = String)))]
    Changed(AcceptedBody),
    /// The memory's state does not allow it (`memory_deleted`,
    /// `memory_not_deleted`, `too_many_tags`, `session_ended`).
    #[response(status = 409)]
    Conflict,
    /// `memory_erased`: the memory was erased.
    #[response(status = 410)]
    Erased,
    /// `version_mismatch`: `If-Match` names another version.
    #[response(status = 412)]
    VersionMoved,
    /// `idempotency_key_reused`: the `Idempotency-Key` was used for another
    /// request; for a body, `validation_failed` (`errors` names each field)
    /// or `invalid_body`.
    #[response(status = 422)]
    Refused,
}

/// `Idempotency-Key`, as the OpenAPI document states it.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: `CommandHeaders` parses the headers
pub struct IdempotencyHeader {
    #[param(rename = "Idempotency-Key", schema_with = idempotency_key_schema)]
    pub idempotency_key: Option<String>,
}

/// `Idempotency-Key` and `If-Match`, as the OpenAPI document states them.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: `CommandHeaders` parses the headers
pub struct VersionedHeaders {
    #[param(rename = "Idempotency-Key", schema_with = idempotency_key_schema)]
    pub idempotency_key: Option<String>,
    #[param(rename = "If-Match", schema_with = if_match_schema)]
    pub if_match: Option<String>,
}

/// The optional command headers, parsed.
#[derive(Debug, Clone, Default)]
pub struct CommandHeaders {
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
}

impl FromRequest for CommandHeaders {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_headers(req).map_err(Into::into))
    }
}

fn parse_headers(req: &HttpRequest) -> Result<CommandHeaders, Problem> {
    let if_match = match req.headers().get(header::IF_MATCH) {
        None => None,
        Some(value) => parse_if_match(value)?,
    };
    let idempotency_key = match req.headers().get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => Some(parse_idempotency_key(value)?),
    };
    Ok(CommandHeaders {
        if_match,
        idempotency_key,
    })
}

/// `If-Match`: one version as the ETag carried it (`"3"`), or bare (`3`),
/// or `*` for none in particular. The OpenAPI document states this pattern.
pub const IF_MATCH_PATTERN: &str = r#"^[ \t]*(\*|[0-9]{1,19}|"[0-9]{1,19}")[ \t]*$"#;

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[!-~]{1,255}$";

// The headers' schemas, from the same patterns. utoipa drops a header's doc
// comment when its schema comes from `schema_with`, so the descriptions live
// on the schemas.

fn idempotency_key_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
        .description(Some(
            "1 to 255 visible ASCII characters, fresh for each new request: a retry with the \
             same key and body answers the first result (`Idempotent-Replayed: true`) instead \
             of acting again",
        ))
}

fn if_match_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(IF_MATCH_PATTERN))
        .description(Some(
            "Act only if the version is still this one: the `ETag` you read (`\"3\"`), a bare \
             `3`, or `*` for any; 412 `version_mismatch` if it changed meanwhile",
        ))
}

fn matches(pattern: &'static str, cell: &'static OnceLock<Regex>, text: &str) -> bool {
    cell.get_or_init(|| Regex::new(pattern).expect("a valid pattern"))
        .is_match(text)
}

fn parse_if_match(value: &HeaderValue) -> Result<Option<u64>, Problem> {
    static RULE: OnceLock<Regex> = OnceLock::new();
    let invalid = || {
        Problem::new(Code::InvalidIfMatch).with_detail("If-Match takes one version, as in \"3\"")
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if !matches(IF_MATCH_PATTERN, &RULE, text) {
        return Err(invalid());
    }
    let text = text.trim_matches([' ', '\t', '"']);
    if text == "*" {
        return Ok(None);
    }
    // At most 19 digits: always within u64.
    text.parse().map(Some).map_err(|_| invalid())
}

fn parse_idempotency_key(value: &HeaderValue) -> Result<String, Problem> {
    static RULE: OnceLock<Regex> = OnceLock::new();
    match value.to_str() {
        Ok(text) if matches(IDEMPOTENCY_KEY_PATTERN, &RULE, text) => Ok(text.to_owned()),
        _ => Err(Problem::new(Code::InvalidIdempotencyKey)
            .with_detail("Idempotency-Key is 1 to 255 visible ASCII characters")),
    }
}

/// Identifies one command at one target, so that a key reused for another
/// request is noticed. `route` is the route template, `target` the path id.
fn request_hash(method: &str, route: &str, target: Option<Uuid>, body: &impl Serialize) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b"\n");
    hash.update(route.as_bytes());
    hash.update(b"\n");
    hash.update(target.map(|t| t.to_string()).unwrap_or_default().as_bytes());
    hash.update(b"\n");
    // The body as parsed and re-serialised: key order and whitespace of the
    // client's JSON do not matter, only what it says.
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(hash.finalize())
}

/// Everything about one command request that is not the command itself:
/// the caller, the request and correlation ids, the command headers, and
/// what identifies the request for its idempotency key.
#[derive(Debug)]
pub struct CommandRequest {
    pub caller: Caller,
    pub context: RequestContext,
    pub headers: CommandHeaders,
    method: Method,
    /// The route template, e.g. `/v1/memories/{id}`.
    route: String,
}

impl FromRequest for CommandRequest {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        let context = RequestContext::from_request(req, payload);
        let headers = CommandHeaders::from_request(req, payload);
        let method = req.method().clone();
        let route = req.match_pattern().unwrap_or_default();
        Box::pin(async move {
            // Polled together, in this order, as the three were when they
            // were a handler's own arguments: the first to fail answers.
            let (caller, context, headers) = try_join3(caller, context, headers).await?;
            Ok(Self {
                caller,
                context,
                headers,
                method,
                route,
            })
        })
    }
}

impl CommandRequest {
    /// Builds the metadata of the command; `target` is the path id, `body`
    /// what the client sent.
    pub fn meta(
        &self,
        success: StatusCode,
        target: Option<Uuid>,
        body: &impl Serialize,
    ) -> CommandMeta {
        let idempotency = self
            .headers
            .idempotency_key
            .as_ref()
            .map(|key| Idempotency {
                key: key.clone(),
                request_hash: request_hash(self.method.as_str(), &self.route, target, body),
            });
        CommandMeta {
            caller: self.caller.user_id.clone(),
            request: self.context.clone(),
            expected_version: self.headers.if_match,
            idempotency,
            success_status: success.as_u16(),
        }
    }
}

/// The body of every successful command.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AcceptedBody {
    /// The aggregate's id.
    pub id: Uuid,
    /// Its version after the command: pass it to the read side to read your
    /// own write, or back as `If-Match` to guard the next command.
    pub version: u64,
}

/// Answers an accepted command, with `Location` for a creation, the version as
/// `ETag`, and `Idempotent-Replayed` when this is a replay of an earlier answer.
pub fn respond(accepted: &Accepted, location_prefix: &str) -> HttpResponse {
    let status = StatusCode::from_u16(accepted.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::ETAG, format!("\"{}\"", accepted.version)));
    if status == StatusCode::CREATED {
        response.insert_header((
            header::LOCATION,
            format!("{location_prefix}/{}", accepted.aggregate_id),
        ));
    }
    if accepted.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED_HEADER, "true"));
    }
    response.json(AcceptedBody {
        id: accepted.aggregate_id,
        version: accepted.version,
    })
}

/// What a command endpoint needs of its aggregate beyond the store.
pub trait Endpoint: Decides {
    /// The collection a creation's `Location` is in.
    const COLLECTION: &'static str;
    /// A short, bounded name for metrics.
    fn command_name(command: &Self::Command) -> &'static str;
    /// The aggregate's refusals and the store's failures, as problems.
    fn problem(error: CommandError<Self::Error>) -> Problem;
}

/// Runs `command` on aggregate `id` and answers it, counting the outcome.
/// `creates` marks a command that brings the aggregate into being (201);
/// `body` is what the client sent, for the idempotency key.
pub async fn run<A>(
    state: &AppState,
    request: &CommandRequest,
    id: Uuid,
    command: A::Command,
    creates: bool,
    body: &impl Serialize,
) -> Result<HttpResponse, Problem>
where
    A: Endpoint,
    A::Command: Clone,
    A::Error: Clone,
{
    let success = if creates {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let meta = request.meta(success, (!creates).then_some(id), body);
    let name = A::command_name(&command);
    let result = state.events.execute::<A>(id, command, creates, &meta).await;
    record_outcome(A::TYPE, name, &result);
    let accepted = result.map_err(A::problem)?;
    Ok(respond(&accepted, A::COLLECTION))
}

/// Counts a command by aggregate, name and outcome.
pub fn record_outcome<E: std::error::Error>(
    aggregate: &'static str,
    command: &'static str,
    result: &Result<Accepted, CommandError<E>>,
) {
    let outcome = match result {
        Ok(accepted) if accepted.replayed => "replayed",
        Ok(_) => "accepted",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::NotFound) => "not_found",
        Err(CommandError::VersionMismatch { .. }) => "version_mismatch",
        Err(CommandError::IdempotencyKeyReused) => "idempotency_key_reused",
        Err(CommandError::Contention) => "contention",
        Err(CommandError::Unavailable(_)) => "unavailable",
        Err(CommandError::Store(_)) => "error",
    };
    metrics::counter!("commands_total", "aggregate" => aggregate, "command" => command, "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_quoted_and_bare_versions() {
        assert_eq!(
            parse_if_match(&HeaderValue::from_static("\"3\"")).unwrap(),
            Some(3)
        );
        assert_eq!(
            parse_if_match(&HeaderValue::from_static("7")).unwrap(),
            Some(7)
        );
        assert_eq!(
            parse_if_match(&HeaderValue::from_static("*")).unwrap(),
            None
        );
        assert_eq!(
            parse_if_match(&HeaderValue::from_static(" \"42\" ")).unwrap(),
            Some(42)
        );
        for bad in ["W/\"x\"", "\"3", "null", "", "99999999999999999999", "3, 4"] {
            assert!(
                parse_if_match(&HeaderValue::from_static(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_request_hash_depends_on_target_and_body() {
        let a = request_hash("POST", "/v1/memories", None, &serde_json::json!({"a": 1}));
        let b = request_hash("POST", "/v1/memories", None, &serde_json::json!({"a": 2}));
        let c = request_hash(
            "POST",
            "/v1/memories",
            Some(Uuid::nil()),
            &serde_json::json!({"a": 1}),
        );
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            request_hash("POST", "/v1/memories", None, &serde_json::json!({"a": 1}))
        );
    }
}
