//! Request and correlation ids, the request span and the request metrics.
//!
//! A client may send `X-Request-Id` and `X-Correlation-Id`; well-formed values are
//! kept so one id can follow a write from the client through the event store to
//! the read side. Otherwise fresh ids are made. Both are echoed in the response.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use std::future::{Ready, ready};
use std::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// The ids of the request being served, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
}

impl FromRequest for RequestContext {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // The middleware always runs first; a handler mounted without it still
        // gets a usable context instead of a failure.
        let context = req
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| {
                let id = Uuid::now_v7().to_string();
                RequestContext {
                    request_id: id.clone(),
                    correlation_id: id,
                }
            });
        ready(Ok(context))
    }
}

/// An id from a client is only trusted when it is short and plain, because it
/// ends up in logs, event metadata and message headers.
fn client_id(req: &ServiceRequest, name: &str) -> Option<String> {
    let value = req.headers().get(name)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| value.to_owned())
}

/// Middleware: assigns the ids, opens the request span, records
/// `http_server_request_duration_seconds{method, route, status}` with the route
/// template (never the raw path, so ids do not explode label cardinality).
pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id =
        client_id(&req, REQUEST_ID_HEADER).unwrap_or_else(|| Uuid::now_v7().to_string());
    let correlation_id =
        client_id(&req, CORRELATION_ID_HEADER).unwrap_or_else(|| request_id.clone());
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        correlation_id: correlation_id.clone(),
    });

    let span = tracing::info_span!(
        "http_request",
        %method,
        %route,
        %request_id,
        %correlation_id,
        status = tracing::field::Empty,
    );
    let result = next.call(req).instrument(span.clone()).await;

    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    span.record("status", status.as_u16());
    let elapsed = started.elapsed().as_secs_f64();
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.as_u16().to_string(),
    )
    .record(elapsed);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(elapsed_seconds = elapsed, "request failed");
        } else {
            tracing::info!(elapsed_seconds = elapsed, "request served");
        }
    });

    let mut response = result?;
    let headers = response.headers_mut();
    for (name, value) in [
        (REQUEST_ID_HEADER, request_id),
        (CORRELATION_ID_HEADER, correlation_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}
