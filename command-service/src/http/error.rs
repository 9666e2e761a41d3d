//! The one place where command failures become HTTP problems. Every match is
//! exhaustive, so a new error variant cannot slip out as a blanket status.

use crate::domain::Invalid;
use crate::memory::MemoryError;
use crate::session::SessionError;
use crate::store::CommandError;
use actix_web::http::StatusCode;
use service_kit::Problem;
use service_kit::problem::FieldError;

/// Input outside the documented limits: 422 with one entry per field; 413
/// when the only fault is metadata's size in bytes, the one limit a JSON
/// Schema cannot state (a request its schema allows fails no other way).
pub fn invalid(errors: Vec<Invalid>) -> Problem {
    let too_large = !errors.is_empty() && errors.iter().all(|e| e.code == "metadata_too_large");
    let problem = if too_large {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "metadata_too_large",
            "Metadata too large",
        )
    } else {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request has invalid fields",
        )
    };
    problem.with_errors(
        errors
            .into_iter()
            .map(|e| FieldError {
                field: e.field,
                code: e.code.to_owned(),
                message: e.message,
            })
            .collect(),
    )
}

fn conflict(code: &'static str, detail: String) -> Problem {
    Problem::new(StatusCode::CONFLICT, code, "Conflict").with_detail(detail)
}

pub fn memory_problem(error: CommandError<MemoryError>) -> Problem {
    match error {
        CommandError::Domain(domain) => {
            let detail = domain.to_string();
            match domain {
                MemoryError::AlreadyExists => conflict("memory_exists", detail),
                MemoryError::NotFound => Problem::not_found(),
                MemoryError::Deleted => conflict("memory_deleted", detail),
                MemoryError::NotDeleted => conflict("memory_not_deleted", detail),
                MemoryError::Erased => {
                    Problem::new(StatusCode::GONE, "memory_erased", "Gone").with_detail(detail)
                }
                // Both depend on what is stored, not on the request's shape:
                // the same request succeeds against another memory or session.
                MemoryError::TooManyTags { .. } => conflict("too_many_tags", detail),
                MemoryError::SessionNotFound => {
                    Problem::new(StatusCode::NOT_FOUND, "session_not_found", "Not found")
                        .with_detail(detail)
                }
                MemoryError::SessionEnded => conflict("session_ended", detail),
                MemoryError::EmptyRevision => unprocessable("empty_revision", detail),
            }
        }
        other => command_problem(other),
    }
}

pub fn session_problem(error: CommandError<SessionError>) -> Problem {
    match error {
        CommandError::Domain(domain) => {
            let detail = domain.to_string();
            match domain {
                SessionError::AlreadyExists => conflict("session_exists", detail),
                SessionError::NotFound => Problem::not_found(),
                SessionError::AlreadyEnded => conflict("session_already_ended", detail),
                SessionError::NotEnded => conflict("session_not_ended", detail),
            }
        }
        other => command_problem(other),
    }
}

fn unprocessable(code: &'static str, detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        "Unprocessable request",
    )
    .with_detail(detail)
}

/// The failures common to every aggregate; the domain case is answered by the
/// aggregate-specific functions above.
fn command_problem<E: std::error::Error>(error: CommandError<E>) -> Problem {
    match error {
        CommandError::Domain(domain) => {
            tracing::error!(error = %domain, "domain error reached the generic mapping");
            Problem::internal()
        }
        CommandError::NotFound => Problem::not_found(),
        CommandError::VersionMismatch { expected, current } => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "version_mismatch",
            "Precondition failed",
        )
        .with_detail(format!(
            "If-Match named version {expected}, but the current version is {current}; read it again"
        )),
        CommandError::IdempotencyKeyReused => unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request".to_owned(),
        ),
        CommandError::Contention => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "write_contention",
            "Too many concurrent writes",
        )
        .with_detail("the aggregate is being changed by many requests at once; retry shortly")
        .with_retry_after(1),
        CommandError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "event store unavailable");
            Problem::unavailable("the event store is unavailable").with_retry_after(1)
        }
        CommandError::Store(cause) => {
            tracing::error!(error = %cause, "event store failure");
            Problem::internal()
        }
    }
}
