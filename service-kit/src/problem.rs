//! `application/problem+json` responses (RFC 9457).
//!
//! Every error a client sees carries a stable machine-readable `code`; the
//! human-readable `title` and `detail` may change. Internal error text is never
//! put into a problem: callers log it and return [`Problem::internal`].
//! The codes, with their statuses and titles, are one table ([`Code`],
//! [`FieldCode`]).

mod codes;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
pub use codes::{Api, Code, FieldCode};
use serde::Serialize;
use std::fmt;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field-level validation failure inside a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer-ish path of the offending field, e.g. `tags[2]`.
    pub field: String,
    /// Stable code of the failure, e.g. `too_long`.
    #[schema(value_type = String)]
    pub code: FieldCode,
    pub message: String,
}

/// An RFC 9457 problem document. Its `type` is `urn:second-brain:problem:<code>`.
/// Its OpenAPI schema is the wire form's (`http::openapi`).
#[derive(Debug, Clone)]
pub struct Problem {
    pub title: &'static str,
    pub status: StatusCode,
    /// Stable, machine-readable error code.
    pub code: Code,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    retry_after_seconds: Option<u32>,
    www_authenticate: bool,
}

/// The wire form, kept apart so the struct stays small (it is the error type
/// of many `Result`s) while the document carries the derived `type` URI.
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ProblemBody {
            type_uri: format!("urn:second-brain:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code.as_str(),
            detail: self.detail.as_deref(),
            errors: &self.errors,
        }
        .serialize(s)
    }
}

impl Problem {
    /// A problem with the status and title the table gives `code`.
    pub fn new(code: Code) -> Self {
        Self {
            title: code.title(),
            status: code.status(),
            code,
            detail: None,
            errors: Vec::new(),
            retry_after_seconds: None,
            www_authenticate: false,
        }
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// A client error the HTTP layer answered itself, with a status no
    /// other code names: `bad_request` keeps that status and its reason.
    pub fn refused(status: StatusCode) -> Self {
        let mut problem = Self::new(Code::BadRequest);
        problem.status = status;
        problem.title = status.canonical_reason().unwrap_or(problem.title);
        problem
    }

    pub fn not_found() -> Self {
        Self::new(Code::NotFound)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(Code::Unauthorized).with_detail(detail);
        problem.www_authenticate = true;
        problem
    }

    /// The answer to an internal failure; the cause must be logged by the caller.
    pub fn internal() -> Self {
        Self::new(Code::InternalError)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Code::ServiceUnavailable)
            .with_detail(detail)
            .with_retry_after(1)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.title, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl Serialize for FieldCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.www_authenticate {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        // Serialising this struct cannot fail: every field is a plain string or number.
        response.body(serde_json::to_vec(self).unwrap_or_default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_takes_its_status_and_title_from_the_table() {
        let problem = Problem::new(Code::VersionMismatch).with_errors(vec![FieldError {
            field: "tags[0]".to_owned(),
            code: FieldCode::TagEmpty,
            message: "a tag must not be blank".to_owned(),
        }]);
        let body = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:second-brain:problem:version_mismatch",
                "title": "Precondition failed",
                "status": 412,
                "code": "version_mismatch",
                "errors": [{"field": "tags[0]", "code": "tag_empty", "message": "a tag must not be blank"}],
            })
        );
    }

    #[test]
    fn a_refusal_of_the_http_layer_keeps_its_status_and_reason() {
        let problem = Problem::refused(StatusCode::URI_TOO_LONG);
        assert_eq!(problem.status, StatusCode::URI_TOO_LONG);
        assert_eq!(problem.title, "URI Too Long");
        assert_eq!(problem.code, Code::BadRequest);
    }
}
