//! The document projection: applies events to the Redis document model
//! (key layout, scores and the compare-and-set script in
//! [`read_model::documents`]), one compare-and-set per aggregate, retried
//! when another writer got there first.

use super::{
    Applied, Cause, Projection, ProjectionError, fold_memory, fold_session, pending, poison,
};
use crate::source::EventSource;
use event_schema::{MemoryState, SessionState, StoredEvent};
use read_model::documents::{Bulk, Keys, Write, WriteError, active_generation, compare_and_set};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use uuid::Uuid;

pub const NAME: &str = read_model::DOCUMENTS;

/// How often a write that lost a compare-and-set is reloaded and retried
/// before the batch fails (and is retried as a whole).
const MAX_CAS_ATTEMPTS: usize = 8;

impl From<WriteError> for ProjectionError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Redis(e) => e.into(),
            WriteError::Serialise(e) => Self::Transient(Cause::with_source(e.to_string(), e)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DocumentProjection {
    redis: ConnectionManager,
    keys: Keys,
    source: EventSource,
}

impl DocumentProjection {
    pub fn new(redis: ConnectionManager, keys: Keys, source: EventSource) -> Self {
        Self {
            redis,
            keys,
            source,
        }
    }

    /// Applies one event to generation `g` (`None`: the active one).
    pub(crate) async fn apply_one(
        &self,
        event: &StoredEvent,
        g: Option<i64>,
        applied: &mut Applied,
    ) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|_| poison(event, "aggregate id is not a uuid"))?;
        let mut redis = self.redis.clone();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let generation = match g {
                Some(g) => g,
                None => active_generation(&mut redis, &self.keys).await?,
            };
            let mut counted = Applied::default();
            let written = match event.aggregate_type.as_str() {
                event_schema::memory::AGGREGATE_TYPE => {
                    self.try_memory(&mut redis, generation, id, event, &mut counted)
                        .await?
                }
                event_schema::session::AGGREGATE_TYPE => {
                    self.try_session(&mut redis, generation, id, event, &mut counted)
                        .await?
                }
                other => return Err(poison(event, &format!("unknown aggregate type {other:?}"))),
            };
            // `Some(false)`: another writer got there first; reload and retry.
            if written != Some(false) {
                applied.add(counted);
                return Ok(());
            }
        }
        Err(ProjectionError::Transient(
            format!("document {id} kept changing under this writer").into(),
        ))
    }

    /// One attempt at applying a memory event: `None` when there was
    /// nothing to write (a duplicate, or the memory was erased), else
    /// whether the compare-and-set won.
    async fn try_memory(
        &self,
        redis: &mut ConnectionManager,
        g: i64,
        id: Uuid,
        event: &StoredEvent,
        counted: &mut Applied,
    ) -> Result<Option<bool>, ProjectionError> {
        let tombstone: Option<u64> = redis.get(self.keys.memory_tombstone(g, id)).await?;
        if tombstone.is_some() {
            counted.duplicates += 1;
            return Ok(None);
        }
        let stored: Option<String> = redis.get(self.keys.memory(g, id)).await?;
        let state: Option<MemoryState> = stored
            .map(|doc| serde_json::from_str(&doc))
            .transpose()
            .map_err(|e| stored_document("memory", e))?;
        let version = state.as_ref().map_or(0, |s| s.version);
        let todo = pending(&self.source, version, event, counted).await?;
        if todo.is_empty() {
            return Ok(None);
        }
        let next = fold_memory(state, &todo)?.ok_or_else(|| poison(event, "nothing to fold"))?;
        Ok(Some(
            self.write(redis, g, version, Write::Memory(&next)).await?,
        ))
    }

    /// One attempt at applying a session event, as [`Self::try_memory`].
    async fn try_session(
        &self,
        redis: &mut ConnectionManager,
        g: i64,
        id: Uuid,
        event: &StoredEvent,
        counted: &mut Applied,
    ) -> Result<Option<bool>, ProjectionError> {
        let stored: Option<String> = redis.get(self.keys.session(g, id)).await?;
        let state: Option<SessionState> = stored
            .map(|doc| serde_json::from_str(&doc))
            .transpose()
            .map_err(|e| stored_document("session", e))?;
        let version = state.as_ref().map_or(0, |s| s.version);
        let todo = pending(&self.source, version, event, counted).await?;
        if todo.is_empty() {
            return Ok(None);
        }
        let next = fold_session(state, &todo)?.ok_or_else(|| poison(event, "nothing to fold"))?;
        Ok(Some(
            self.write(redis, g, version, Write::Session(&next)).await?,
        ))
    }

    /// Runs the compare-and-set script; false when the stored version moved.
    pub(crate) async fn write(
        &self,
        redis: &mut ConnectionManager,
        g: i64,
        expected: u64,
        write: Write<'_>,
    ) -> Result<bool, ProjectionError> {
        Ok(compare_and_set(redis, &self.keys, g, expected, write).await?)
    }

    /// Writes many documents into a generation nobody else writes (a
    /// rebuild's fresh one), pipelined.
    pub(crate) async fn bulk_write<'a>(
        &self,
        g: i64,
        writes: impl Iterator<Item = Write<'a>>,
    ) -> Result<u64, ProjectionError> {
        let mut redis = self.redis.clone();
        let mut bulk = Bulk::new(&mut redis, &self.keys, g).await?;
        for write in writes {
            bulk.push(&mut redis, write).await?;
        }
        Ok(bulk.flush(&mut redis).await?)
    }
}

/// A stored document that does not parse: transient, since the projector
/// rewrites documents (a rebuild mends them).
fn stored_document(kind: &str, error: serde_json::Error) -> ProjectionError {
    ProjectionError::Transient(Cause::with_source(
        format!("stored {kind} document: {error}"),
        error,
    ))
}

#[async_trait::async_trait]
impl Projection for DocumentProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, ProjectionError> {
        let mut applied = Applied::default();
        for event in events {
            self.apply_one(event, None, &mut applied).await?;
        }
        Ok(applied)
    }
}
