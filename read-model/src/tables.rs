//! The search read model in the read database (see the read-model
//! migrations): per generation `g`, the tables `memories_g<g>` (a row per
//! memory, with its embedding and full-text vector), `memory_tombstones_g<g>`
//! (the version an erased memory ended at) and `sessions_g<g>`; readers query
//! the views [`MEMORIES`] and [`SESSIONS`] over the active generation, which
//! `projection_state` names.
//!
//! The rows map to `event_schema`'s states in one place ([`MemoryRow`],
//! [`SessionRow`]), for the projector's loads, `verify` and the query
//! service alike. Columns are always named: the embedding's dimension
//! depends on the model, so no shared read selects it.

use crate::SEARCH;
use chrono::{DateTime, Utc};
use event_schema::{
    MemoryFacts, MemoryState, MemoryStatus, SessionFacts, SessionState, SessionStatus,
};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use uuid::Uuid;

/// The view over the active generation's memories.
pub const MEMORIES: &str = "memories";

/// The view over the active generation's sessions.
pub const SESSIONS: &str = "sessions";

/// The view over the active generation's per-owner term counts: for each
/// owner and lexeme, how many of the owner's searchable memories hold it
/// (`owner_id, term, documents`; kept by triggers, ADR 16).
pub const KEYWORD_TERMS: &str = "keyword_terms";

/// The view over the active generation's per-owner totals: searchable
/// memories and the distinct lexemes they hold in all (`owner_id,
/// documents, terms`).
pub const KEYWORD_OWNERS: &str = "keyword_owners";

/// The columns [`MemoryRow`] reads.
pub const MEMORY_COLUMNS: &str = "id, owner_id, session_id, title, content, tags, metadata, \
     occurred_at, created_at, updated_at, deleted, version";

/// The columns [`SessionRow`] reads.
pub const SESSION_COLUMNS: &str =
    "id, owner_id, title, metadata, status, started_at, updated_at, ended_at, version";

/// The tables of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub memories: String,
    pub memory_tombstones: String,
    pub sessions: String,
    pub keyword_terms: String,
    pub keyword_owners: String,
}

impl Tables {
    pub fn of(g: i32) -> Self {
        Self {
            memories: format!("memories_g{g}"),
            memory_tombstones: format!("memory_tombstones_g{g}"),
            sessions: format!("sessions_g{g}"),
            keyword_terms: format!("keyword_terms_g{g}"),
            keyword_owners: format!("keyword_owners_g{g}"),
        }
    }
}

/// The generation the search projection writes and readers read, and the
/// embedder its vectors were made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: i32,
    pub embedding_model: Option<String>,
    pub dimension: Option<i32>,
}

impl Generation {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            generation: row.try_get("generation")?,
            embedding_model: row.try_get("embedding_model")?,
            dimension: row.try_get("dimension")?,
        })
    }
}

/// The active search generation; `None` before the projector first started.
pub async fn active_generation<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query(
        "SELECT generation, embedding_model, dimension FROM projection_state WHERE projection = $1",
    )
    .bind(SEARCH)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(Generation::from_row)
    .transpose()
}

/// Reads the active generation and holds a share lock on it until `tx` ends,
/// so a rebuild's switch waits for batches in flight and no batch writes the
/// generation being retired after the switch.
pub async fn lock_generation(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query(
        "SELECT generation, embedding_model, dimension FROM projection_state WHERE projection = $1 FOR SHARE",
    )
    .bind(SEARCH)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(Generation::from_row)
    .transpose()
}

/// A memory row: the [`MEMORY_COLUMNS`] of a generation's table or the view.
#[derive(Debug, sqlx::FromRow)]
pub struct MemoryRow {
    id: Uuid,
    owner_id: String,
    session_id: Option<Uuid>,
    title: Option<String>,
    content: String,
    tags: Vec<String>,
    metadata: Json<Value>,
    occurred_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted: bool,
    version: i64,
}

impl From<MemoryRow> for MemoryState {
    fn from(row: MemoryRow) -> Self {
        Self {
            id: row.id,
            owner_id: row.owner_id,
            facts: MemoryFacts {
                content: row.content,
                title: row.title,
                tags: row.tags,
                metadata: as_object(row.metadata.0),
                session_id: row.session_id,
                occurred_at: row.occurred_at,
                status: if row.deleted {
                    MemoryStatus::Deleted
                } else {
                    MemoryStatus::Active
                },
            },
            version: u64::try_from(row.version).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A session row: the [`SESSION_COLUMNS`] of a generation's table or the view.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    id: Uuid,
    owner_id: String,
    title: String,
    metadata: Json<Value>,
    status: String,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    version: i64,
}

impl From<SessionRow> for SessionState {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            owner_id: row.owner_id,
            facts: SessionFacts {
                title: row.title,
                metadata: as_object(row.metadata.0),
                status: session_status(&row.status),
            },
            version: u64::try_from(row.version).unwrap_or_default(),
            started_at: row.started_at,
            updated_at: row.updated_at,
            ended_at: row.ended_at,
        }
    }
}

/// A session's status as the `status` column stores it.
pub fn session_status_text(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Open => "open",
        SessionStatus::Ended => "ended",
    }
}

fn session_status(text: &str) -> SessionStatus {
    if text == session_status_text(SessionStatus::Ended) {
        SessionStatus::Ended
    } else {
        SessionStatus::Open
    }
}

/// Metadata is always written as an object; anything else reads as empty
/// (and so differs from the fold, which `verify` reports).
fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
