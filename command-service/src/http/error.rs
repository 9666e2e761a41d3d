//! The one place where command failures become HTTP problems. Every match is
//! exhaustive, so a new error variant cannot slip out as a blanket status.

use crate::domain::Invalid;
use crate::memory::MemoryError;
use crate::session::SessionError;
use crate::store::CommandError;
use service_kit::Problem;
use service_kit::problem::{Code, FieldCode, FieldError};

/// Input outside the documented limits: 422 with one entry per field; 413
/// when the only fault is metadata's size in bytes, the one limit a JSON
/// Schema cannot state (a request its schema allows fails no other way).
pub fn invalid(errors: Vec<Invalid>) -> Problem {
    let too_large =
        !errors.is_empty() && errors.iter().all(|e| e.code == FieldCode::MetadataTooLarge);
    let problem = Problem::new(if too_large {
        Code::MetadataTooLarge
    } else {
        Code::ValidationFailed
    });
    problem.with_errors(
        errors
            .into_iter()
            .map(|e| FieldError {
                field: e.field,
                code: e.code,
                message: e.message,
            })
            .collect(),
    )
}

fn with_detail(code: Code, detail: String) -> Problem {
    Problem::new(code).with_detail(detail)
}

pub fn memory_problem(error: CommandError<MemoryError>) -> Problem {
    match error {
        CommandError::Domain(domain) => {
            let detail = domain.to_string();
            match domain {
                MemoryError::AlreadyExists => with_detail(Code::MemoryExists, detail),
                MemoryError::NotFound => Problem::not_found(),
                MemoryError::Deleted => with_detail(Code::MemoryDeleted, detail),
                MemoryError::NotDeleted => with_detail(Code::MemoryNotDeleted, detail),
                MemoryError::Erased => with_detail(Code::MemoryErased, detail),
                // Both depend on what is stored, not on the request's shape:
                // the same request succeeds against another memory or session.
                MemoryError::TooManyTags { .. } => with_detail(Code::TooManyTags, detail),
                MemoryError::SessionNotFound => with_detail(Code::SessionNotFound, detail),
                MemoryError::SessionEnded => with_detail(Code::SessionEnded, detail),
                MemoryError::EmptyRevision => with_detail(Code::EmptyRevision, detail),
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
                SessionError::AlreadyExists => with_detail(Code::SessionExists, detail),
                SessionError::NotFound => Problem::not_found(),
                SessionError::AlreadyEnded => with_detail(Code::SessionAlreadyEnded, detail),
                SessionError::NotEnded => with_detail(Code::SessionNotEnded, detail),
            }
        }
        other => command_problem(other),
    }
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
            Code::VersionMismatch,
        )
        .with_detail(format!(
            "If-Match named version {expected}, but the current version is {current}; read it again"
        )),
        CommandError::IdempotencyKeyReused => Problem::new(Code::IdempotencyKeyReused)
            .with_detail("this Idempotency-Key was already used for a different request"),
        CommandError::Contention => Problem::new(Code::WriteContention)
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
