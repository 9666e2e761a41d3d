//! What every command endpoint shares: the `If-Match` and `Idempotency-Key`
//! headers, the request hash, the response shape and the command metrics.

use crate::store::{Accepted, CommandError, CommandMeta, Idempotency};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload};
use serde::Serialize;
use service_kit::Problem;
use service_kit::auth::Caller;
use service_kit::http::RequestContext;
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};
use uuid::Uuid;

/// The largest request body accepted. Content is limited to 64 KiB of UTF-8,
/// which JSON escaping can inflate several times.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

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

/// `If-Match: "3"` (the ETag a response carried) or a bare `3`; `*` asks for
/// no particular version.
fn parse_if_match(value: &HeaderValue) -> Result<Option<u64>, Problem> {
    let invalid = || {
        Problem::bad_request(
            "invalid_if_match",
            "If-Match takes one version, as in \"3\"",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let version: u64 = unquoted.parse().map_err(|_| invalid())?;
    Ok(Some(version))
}

fn parse_idempotency_key(value: &HeaderValue) -> Result<String, Problem> {
    let text = value.to_str().unwrap_or_default();
    let ok = !text.is_empty()
        && text.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(Problem::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ))
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

/// Everything about one command request that is not the command itself.
#[derive(Debug)]
pub struct CommandRequest<'a> {
    pub caller: Caller,
    pub context: RequestContext,
    pub headers: CommandHeaders,
    pub req: &'a HttpRequest,
}

impl CommandRequest<'_> {
    /// Builds the metadata of the command; `target` is the path id, `body`
    /// what the client sent.
    pub fn meta(
        &self,
        success: StatusCode,
        target: Option<Uuid>,
        body: &impl Serialize,
    ) -> CommandMeta {
        let route = self.req.match_pattern().unwrap_or_default();
        let idempotency = self
            .headers
            .idempotency_key
            .as_ref()
            .map(|key| Idempotency {
                key: key.clone(),
                request_hash: request_hash(self.req.method().as_str(), &route, target, body),
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
        assert!(parse_if_match(&HeaderValue::from_static("W/\"x\"")).is_err());
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
