//! The HTTP read API under `/v1`, one file per resource; the OpenAPI
//! document in [`openapi`]. Every handler takes the [`Caller`] and scopes
//! every read to it: another user's id answers 404, as a missing one does.
//!
//! [`Caller`]: service_kit::auth::Caller

mod history;
mod memories;
pub mod openapi;
mod params;
mod search;
mod sessions;

use crate::documents::{DocumentError, Documents};
use crate::history::{History, HistoryError};
use crate::rows::ReadModel;
use crate::search::{Search, SearchError};
use actix_web::web;
use service_kit::Problem;
use service_kit::problem::Code;
use service_kit::rate_limit::ConcurrencyCap;
use std::time::Duration;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub documents: Documents,
    pub rows: ReadModel,
    pub search: Search,
    pub history: History,
    /// The longest a read with `min_version` waits for the projection.
    pub consistency_timeout: Duration,
    /// Per user, the reads with `min_version` waiting at once.
    pub min_version_waits: ConcurrencyCap,
}

/// Mounts the `/v1` resources.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/openapi.json", web::get().to(openapi::document))
            .configure(memories::routes)
            .configure(sessions::routes)
            .configure(history::routes)
            .configure(search::routes),
    );
}

/// An infrastructure failure: logged with its cause, answered as a bare 500
/// (or 503 where a dependency is down and a retry may succeed).
fn internal(what: &str, error: &dyn std::fmt::Display) -> Problem {
    tracing::error!(%error, "{what} failed");
    Problem::internal()
}

impl From<DocumentError> for Problem {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::Redis(e) if e.is_io_error() || e.is_connection_dropped() => {
                tracing::warn!(error = %e, "redis unavailable");
                Problem::unavailable("the document store is unavailable").with_retry_after(1)
            }
            other => internal("a document read", &other),
        }
    }
}

fn from_sqlx(error: sqlx::Error) -> Problem {
    // Lost connections were retried once already (service_kit::pg); one
    // still lost, or a protocol failure mid-message, means the server is
    // down or restarting, as the command service judges it.
    if service_kit::pg::unavailable(&error) {
        tracing::warn!(%error, "database unavailable");
        return Problem::unavailable("the database is unavailable").with_retry_after(1);
    }
    internal("a database read", &error)
}

impl From<SearchError> for Problem {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Database(e) => from_sqlx(e),
            SearchError::Embedding(e) => {
                tracing::warn!(error = %e, "query embedding failed");
                Problem::unavailable("the query could not be embedded").with_retry_after(1)
            }
            SearchError::ModelMismatch { .. } => {
                tracing::error!(%error, "semantic search refused");
                Problem::new(Code::EmbeddingModelMismatch).with_detail(error.to_string())
            }
        }
    }
}

impl From<HistoryError> for Problem {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::Database(e) => from_sqlx(e),
            other => internal("a history read", &other),
        }
    }
}

/// The answer to a read that asked for a version the projection has not
/// reached within the wait: 503 with `Retry-After`, never a stale body.
fn not_yet_consistent(requested: u64, seen: Option<u64>, waited: Duration) -> Problem {
    let seen = seen.map_or_else(|| "nothing".to_owned(), |v| format!("version {v}"));
    Problem::new(Code::NotYetConsistent)
    .with_detail(format!(
        "asked for version {requested} or later; after waiting {} ms the read model holds {seen}",
        waited.as_millis()
    ))
    .with_retry_after(1)
}
