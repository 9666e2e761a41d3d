//! History for audit: an aggregate's events as the event store holds them,
//! and a memory's or session's state as of a version or a time, folded from
//! those events with the shared folds of `event-schema`.
//!
//! The pool this reads through belongs to a role that may only read the event
//! store, and marks its transactions read-only besides. Ownership is part of
//! every query: another user's stream reads as no stream at all.

use chrono::{DateTime, Utc};
use event_log::store::Slice;
use event_schema::{
    DecodeError, FoldError, MemoryEvent, MemoryState, SessionEvent, SessionState, StoredEvent, fold,
};
use serde::Serialize;
use serde_json::Value;
use service_kit::pg::retry_once;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a stored event does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("a stream does not fold: {0}")]
    Fold(#[from] FoldError),
}

/// Which kind of aggregate a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Memory,
    Session,
}

impl Aggregate {
    fn type_name(self) -> &'static str {
        match self {
            Self::Memory => event_schema::memory::AGGREGATE_TYPE,
            Self::Session => event_schema::session::AGGREGATE_TYPE,
        }
    }
}

/// One event of a stream, as the audit trail shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub event_id: Uuid,
    /// The aggregate's version after this event (its sequence, from 1).
    pub version: u64,
    /// E.g. `MemoryRevised`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    /// Who made the change.
    pub actor_id: String,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What changed: the event's fields, at their current schema version. An
    /// erased memory's earlier events keep their shape but carry none of its
    /// content, title, tags or metadata.
    #[schema(value_type = Object)]
    pub changes: Value,
}

#[derive(Debug, Clone)]
pub struct History {
    pool: PgPool,
}

impl History {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The owner's events of one aggregate with `after < sequence`, in order,
    /// at most `limit` (`None`: all).
    async fn events(
        &self,
        aggregate: Aggregate,
        owner: &str,
        id: Uuid,
        after: u64,
        limit: Option<u32>,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let id = id.to_string();
        let mut slice = Slice::of(aggregate.type_name(), &id)
            .after(i64::try_from(after).unwrap_or(i64::MAX))
            .owned_by(owner);
        if let Some(limit) = limit {
            slice = slice.limit(i64::from(limit));
        }
        retry_once(&self.pool, || slice.read(&self.pool)).await
    }

    /// Up to `limit` entries after version `after`, and whether more follow.
    /// Empty when the aggregate does not exist or is not the owner's.
    pub async fn entries(
        &self,
        aggregate: Aggregate,
        owner: &str,
        id: Uuid,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<Entry>, bool), HistoryError> {
        let mut events = self
            .events(aggregate, owner, id, after, Some(limit.saturating_add(1)))
            .await?;
        let more = events.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let entries = events
            .into_iter()
            .map(|event| entry(aggregate, event))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, more))
    }

    /// Whether the owner has a stream with this id (for a 404 on an empty page).
    pub async fn exists(
        &self,
        aggregate: Aggregate,
        owner: &str,
        id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        Ok(!self
            .events(aggregate, owner, id, 0, Some(1))
            .await?
            .is_empty())
    }

    /// Whether `owner` owns a live aggregate with this id: it was created by
    /// them and, for a memory, not erased. The event store knows at once
    /// what the read models may not have caught up with, so a read that
    /// waits for its own write can be told from one that never will be
    /// answered. Two primary-key lookups, whoever asks.
    pub async fn owns_live(
        &self,
        aggregate: Aggregate,
        owner: &str,
        id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM events \
                             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1 \
                               AND metadata->>'owner_id' = $3) \
                AND NOT EXISTS (SELECT FROM events \
                                 WHERE aggregate_type = $1 AND aggregate_id = $2 \
                                   AND event_type = $4)",
        )
        .bind(aggregate.type_name())
        .bind(id.to_string())
        .bind(owner)
        // A session is never erased; the type name never matches one.
        .bind(MemoryEvent::MemoryErased {}.kind().event_type)
        .fetch_one(&self.pool)
        .await
    }

    /// The memory as of `at`, or `None` when it has no such past.
    pub async fn memory_as_of(
        &self,
        owner: &str,
        id: Uuid,
        at: PointInTime,
    ) -> Result<AsOf<MemoryState>, HistoryError> {
        let events = self.events(Aggregate::Memory, owner, id, 0, None).await?;
        if events.is_empty() {
            return Ok(AsOf::NoStream);
        }
        let envelopes = events
            .into_iter()
            .map(StoredEvent::decode::<MemoryEvent>)
            .collect::<Result<Vec<_>, _>>()?;
        if envelopes
            .iter()
            .any(|e| matches!(e.payload, MemoryEvent::MemoryErased { .. }))
        {
            return Ok(AsOf::Erased);
        }
        let state = fold::fold_memory_at(&envelopes, at.version, at.at)?;
        Ok(state.map_or(AsOf::NotYet, AsOf::State))
    }

    /// The session as of `at`.
    pub async fn session_as_of(
        &self,
        owner: &str,
        id: Uuid,
        at: PointInTime,
    ) -> Result<AsOf<SessionState>, HistoryError> {
        let events = self.events(Aggregate::Session, owner, id, 0, None).await?;
        if events.is_empty() {
            return Ok(AsOf::NoStream);
        }
        let envelopes = events
            .into_iter()
            .map(StoredEvent::decode::<SessionEvent>)
            .collect::<Result<Vec<_>, _>>()?;
        let state = fold::fold_session_at(&envelopes, at.version, at.at)?;
        Ok(state.map_or(AsOf::NotYet, AsOf::State))
    }
}

/// A point in an aggregate's past: after the events up to `version`, among
/// those recorded at or before `at`. Both bounds apply; either may be absent;
/// with neither it is now.
#[derive(Debug, Clone, Copy, Default)]
pub struct PointInTime {
    pub version: Option<u64>,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub enum AsOf<T> {
    State(T),
    /// The aggregate exists but had no state yet at that point.
    NotYet,
    /// No such aggregate of this owner.
    NoStream,
    /// Erased: its past is not kept.
    Erased,
}

fn entry(aggregate: Aggregate, event: StoredEvent) -> Result<Entry, HistoryError> {
    // `changes` is the stored payload brought to its current shape, not the
    // decoded event re-serialised: a redacted field stays absent instead of
    // coming back as an empty default.
    let (_, upcast) = event_schema::upcast(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        event.payload.clone(),
    )
    .map_err(DecodeError::from)?;
    let (metadata, schema_version, version) = match aggregate {
        Aggregate::Memory => {
            let e = event.clone().decode::<MemoryEvent>()?;
            (e.metadata, e.schema_version, e.sequence)
        }
        Aggregate::Session => {
            let e = event.clone().decode::<SessionEvent>()?;
            (e.metadata, e.schema_version, e.sequence)
        }
    };
    // Stored externally tagged (`{"MemoryRevised": {...}}`); the entry names
    // the type once and shows the fields.
    let changes = match upcast {
        Value::Object(mut map) if map.len() == 1 => map
            .remove(&event.event_type)
            .unwrap_or(Value::Object(Default::default())),
        other => other,
    };
    Ok(Entry {
        event_id: event.event_id,
        version,
        event_type: event.event_type,
        schema_version,
        recorded_at: event.recorded_at,
        actor_id: metadata.actor_id,
        correlation_id: metadata.correlation_id,
        causation_id: metadata.causation_id,
        request_id: metadata.request_id,
        changes,
    })
}
