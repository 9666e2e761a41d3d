//! The search projection: a row per memory (with its embedding and
//! full-text vector) and per session, in the active generation's tables
//! (names, rows and generations in [`read_model::tables`]).

use super::{
    Applied, Projection, ProjectionError, embedding_text, fold_memory, fold_session, pending,
    poison,
};
use crate::context::Activity;
use crate::embedding_cache::CachedEmbedder;
use crate::source::EventSource;
use event_schema::{MemoryState, MemoryStatus, SessionState, StoredEvent};
use read_model::tables::{
    Generation, MEMORY_COLUMNS, MemoryRow, SESSION_COLUMNS, SessionRow, Tables, lock_generation,
    session_status_text,
};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, Row, Transaction};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = read_model::SEARCH;

/// Creates generation 1 for the configured embedder when the read model is
/// empty, or checks that the active generation was built with it.
pub async fn ensure_generation(
    pool: &PgPool,
    model: &str,
    dimension: usize,
) -> Result<Generation, ProjectionError> {
    let mut tx = pool.begin().await?;
    // Serialise first-time creation between projector replicas.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('second_brain.search_generation'))")
        .execute(&mut *tx)
        .await?;
    let generation = match lock_generation(&mut tx).await? {
        Some(existing) => existing,
        None => {
            let dim = i32::try_from(dimension)
                .map_err(|_| ProjectionError::Fatal("dimension too large".into()))?;
            sqlx::query("SELECT create_search_generation(1, $1)")
                .bind(dim)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT create_search_indexes(1)")
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT activate_search_generation(1)")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO projection_state (projection, generation, embedding_model, dimension) VALUES ($1, 1, $2, $3)",
            )
            .bind(NAME)
            .bind(model)
            .bind(dim)
            .execute(&mut *tx)
            .await?;
            Generation {
                generation: 1,
                embedding_model: Some(model.to_owned()),
                dimension: Some(dim),
            }
        }
    };
    tx.commit().await?;
    check_model(&generation, model, dimension)?;
    Ok(generation)
}

/// Stops a projector whose embedder does not match the read model: its
/// vectors would not be comparable with the stored ones.
pub fn check_model(
    generation: &Generation,
    model: &str,
    dimension: usize,
) -> Result<(), ProjectionError> {
    let stored_dimension = generation.dimension.and_then(|d| usize::try_from(d).ok());
    if generation.embedding_model.as_deref() != Some(model) || stored_dimension != Some(dimension) {
        return Err(ProjectionError::Fatal(
            format!(
            "the search read model (generation {}) was built with embedding model {} of dimension {}, \
             but this projector is configured with {model} of dimension {dimension}; \
             rebuild it with that model: `projector rebuild-projections --projection search`",
            generation.generation,
            generation.embedding_model.as_deref().unwrap_or("(none)"),
            generation
                .dimension
                .map_or_else(|| "(none)".to_owned(), |d| d.to_string()),
        )
            .into(),
        ));
    }
    Ok(())
}

/// The search projection.
#[derive(Debug)]
pub struct SearchProjection {
    pool: PgPool,
    source: EventSource,
    embedder: CachedEmbedder,
    /// When this projection works, for the context worker to keep out of
    /// its way.
    activity: Arc<Activity>,
}

/// A memory as loaded for one batch and as it stands after it.
#[derive(Debug)]
struct MemoryEntry {
    /// The version stored before the batch (a tombstone's, if erased).
    stored_version: u64,
    erased: bool,
    state: Option<MemoryState>,
    /// The text the stored embedding was made from, if any.
    embedded_text: Option<String>,
    dirty: bool,
}

#[derive(Debug)]
struct SessionEntry {
    stored_version: u64,
    state: Option<SessionState>,
    dirty: bool,
}

impl SearchProjection {
    pub fn new(pool: PgPool, source: EventSource, embedder: CachedEmbedder) -> Self {
        Self {
            pool,
            source,
            embedder,
            activity: Arc::default(),
        }
    }

    /// What the context worker watches to run only while this is idle.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Applies `events` to generation `g` inside `tx`; shared by the live
    /// projection and by a rebuild's catch-up.
    pub async fn apply_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        events: &[StoredEvent],
    ) -> Result<Applied, ProjectionError> {
        self.fold_and_write(tx, g, events, Mode::Write).await
    }

    /// Folds `events` onto what generation `g` stores, embeds every text
    /// that changed, and (in [`Mode::Write`]) writes the new rows.
    async fn fold_and_write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        events: &[StoredEvent],
        mode: Mode,
    ) -> Result<Applied, ProjectionError> {
        let mut batch = Batch::default();
        let mut applied = Applied::default();
        for event in events {
            self.fold_one(tx, g, event, mode == Mode::Write, &mut batch, &mut applied)
                .await?;
        }
        // Embed every memory whose text changed, in one call.
        let to_embed = batch.texts_to_embed();
        let texts: Vec<String> = to_embed.iter().map(|(_, t)| t.clone()).collect();
        let vectors = self.embedder.embed(&texts).await?;
        if mode == Mode::WarmCache {
            return Ok(applied);
        }
        for (id, text) in &to_embed {
            link_text(tx, *id, text).await?;
        }
        let embeddings: HashMap<Uuid, pgvector::Vector> = to_embed
            .into_iter()
            .zip(vectors)
            .map(|((id, _), v)| (id, pgvector::Vector::from(v)))
            .collect();
        self.write_batch(tx, g, batch, embeddings).await?;
        Ok(applied)
    }

    /// Folds one event onto its aggregate's entry in `batch`, loading the
    /// entry (locked when `lock`) on the aggregate's first event.
    async fn fold_one(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        event: &StoredEvent,
        lock: bool,
        batch: &mut Batch,
        applied: &mut Applied,
    ) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|_| poison(event, "aggregate id is not a uuid"))?;
        match event.aggregate_type.as_str() {
            event_schema::memory::AGGREGATE_TYPE => {
                let entry = match batch.memories.entry(id) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(slot) => slot.insert(load_memory(tx, g, id, lock).await?),
                };
                if entry.erased {
                    applied.duplicates += 1;
                    return Ok(());
                }
                let version = entry
                    .state
                    .as_ref()
                    .map_or(entry.stored_version, |s| s.version);
                let todo = pending(&self.source, version, event, applied).await?;
                if !todo.is_empty() {
                    entry.state = fold_memory(entry.state.take(), &todo)?;
                    entry.dirty = true;
                }
            }
            event_schema::session::AGGREGATE_TYPE => {
                let entry = match batch.sessions.entry(id) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(slot) => slot.insert(load_session(tx, g, id, lock).await?),
                };
                let version = entry
                    .state
                    .as_ref()
                    .map_or(entry.stored_version, |s| s.version);
                let todo = pending(&self.source, version, event, applied).await?;
                if !todo.is_empty() {
                    entry.state = fold_session(entry.state.take(), &todo)?;
                    entry.dirty = true;
                }
            }
            other => return Err(poison(event, &format!("unknown aggregate type {other:?}"))),
        }
        Ok(())
    }

    /// Writes every entry the batch changed.
    async fn write_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        batch: Batch,
        mut embeddings: HashMap<Uuid, pgvector::Vector>,
    ) -> Result<(), ProjectionError> {
        for (id, entry) in batch.memories {
            let Some(state) = entry.state.filter(|_| entry.dirty) else {
                continue;
            };
            if state.facts.status == MemoryStatus::Erased {
                erase_memory(tx, g, id, state.version).await?;
            } else {
                let embedding = embeddings.remove(&id);
                write_memory(tx, g, &state, embedding, self.embedder.model_id()).await?;
            }
        }
        for (_, entry) in batch.sessions {
            if let Some(state) = entry.state.filter(|_| entry.dirty) {
                write_session(tx, g, &state).await?;
            }
        }
        Ok(())
    }
}

/// The aggregates one batch touches, as loaded and as folded.
#[derive(Debug, Default)]
struct Batch {
    memories: HashMap<Uuid, MemoryEntry>,
    sessions: HashMap<Uuid, SessionEntry>,
}

impl Batch {
    /// The memories whose text to embed changed (an erased one has none).
    fn texts_to_embed(&self) -> Vec<(Uuid, String)> {
        let mut to_embed = Vec::new();
        for (id, entry) in &self.memories {
            if let Some(state) = entry.state.as_ref().filter(|_| entry.dirty) {
                if state.facts.status == MemoryStatus::Erased {
                    continue;
                }
                let text = embedding_text(state);
                if entry.embedded_text.as_deref() != Some(text.as_str()) {
                    to_embed.push((*id, text));
                }
            }
        }
        to_embed
    }
}

#[async_trait::async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, ProjectionError> {
        let _busy = self.activity.busy();
        // Embed first (a no-op when `prepare` already did), outside the
        // writing transaction: see `warm_cache`.
        let started = std::time::Instant::now();
        self.warm_cache(events).await?;
        stage_done("warm", started);

        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let generation = lock_generation(&mut tx).await?.ok_or_else(|| {
            ProjectionError::Fatal(
                "the search read model has no generation; run the projector's start-up".into(),
            )
        })?;
        check_model(
            &generation,
            self.embedder.model_id(),
            self.embedder.dimension(),
        )?;
        let applied = self
            .apply_in(&mut tx, generation.generation, events)
            .await?;
        tx.commit().await?;
        stage_done("write", started);
        Ok(applied)
    }

    /// Embeds the batch's texts into the cache while the batch before it is
    /// written. The cache is keyed by text, so vectors made ahead are right
    /// whatever happens to the batch; the fold reads the event store for
    /// what the batch in flight has not written yet (a gap, to this pass).
    async fn prepare(&self, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let _busy = self.activity.busy();
        let started = std::time::Instant::now();
        self.warm_cache(events).await?;
        stage_done("prepare", started);
        Ok(())
    }
}

impl SearchProjection {
    /// Folds `events` onto what is stored and embeds every changed text
    /// into the embedding cache, in a read-only transaction that takes no
    /// locks and so gets no transaction id: a writing transaction open for
    /// the length of an embedding would hold back the relay, which publishes
    /// only below the oldest running transaction. The writing transaction
    /// then finds every vector in the cache.
    async fn warm_cache(&self, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let mut warm = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *warm)
            .await?;
        let active = read_model::tables::active_generation(&mut *warm).await?;
        if let Some(Generation { generation: g, .. }) = active {
            self.fold_and_write(&mut warm, g, events, Mode::WarmCache)
                .await?;
        }
        warm.commit().await?;
        Ok(())
    }
}

/// Times a stage of a batch: "prepare" (fold, embed, cache the vectors,
/// ahead of the batch's turn), "warm" (the same in its turn, finding the
/// vectors `prepare` made) and "write" (fold again, write, commit).
fn stage_done(stage: &'static str, started: std::time::Instant) {
    metrics::histogram!("projector_batch_stage_seconds", "projection" => NAME, "stage" => stage)
        .record(started.elapsed().as_secs_f64());
}

/// Whether a pass writes, or only embeds what a write would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    WarmCache,
}

/// `FOR UPDATE` when the pass will write, so a rebuild's catch-up and the live
/// projection cannot interleave on one aggregate.
fn locking(lock: bool) -> &'static str {
    if lock { "FOR UPDATE" } else { "" }
}

async fn load_memory(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    id: Uuid,
    lock: bool,
) -> Result<MemoryEntry, ProjectionError> {
    let tables = Tables::of(g);
    let tombstone: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {} WHERE id = $1",
        tables.memory_tombstones
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(version) = tombstone {
        return Ok(MemoryEntry {
            stored_version: version as u64,
            erased: true,
            state: None,
            embedded_text: None,
            dirty: false,
        });
    }
    let row = sqlx::query(&format!(
        "SELECT {MEMORY_COLUMNS}, embedding IS NOT NULL AS embedded FROM {} WHERE id = $1 {}",
        tables.memories,
        locking(lock)
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(MemoryEntry {
            stored_version: 0,
            erased: false,
            state: None,
            embedded_text: None,
            dirty: false,
        });
    };
    let state = MemoryState::from(MemoryRow::from_row(&row)?);
    let embedded: bool = row.try_get("embedded")?;
    Ok(MemoryEntry {
        stored_version: state.version,
        erased: false,
        embedded_text: embedded.then(|| embedding_text(&state)),
        state: Some(state),
        dirty: false,
    })
}

async fn write_memory(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    state: &MemoryState,
    embedding: Option<pgvector::Vector>,
    model: &str,
) -> Result<(), ProjectionError> {
    let model = embedding.as_ref().map(|_| model);
    sqlx::query(&format!(
        "INSERT INTO {memories} AS m (id, owner_id, session_id, title, content, tags, metadata, occurred_at,
                                        created_at, updated_at, deleted, version, embedding, embedding_model)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (id) DO UPDATE SET
             owner_id = EXCLUDED.owner_id, session_id = EXCLUDED.session_id, title = EXCLUDED.title,
             content = EXCLUDED.content, tags = EXCLUDED.tags, metadata = EXCLUDED.metadata,
             occurred_at = EXCLUDED.occurred_at, created_at = EXCLUDED.created_at,
             updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, version = EXCLUDED.version,
             embedding = COALESCE(EXCLUDED.embedding, m.embedding),
             embedding_model = COALESCE(EXCLUDED.embedding_model, m.embedding_model)",
        memories = Tables::of(g).memories
    ))
    .bind(state.id)
    .bind(&state.owner_id)
    .bind(state.facts.session_id)
    .bind(&state.facts.title)
    .bind(&state.facts.content)
    .bind(&state.facts.tags)
    .bind(Value::Object(state.facts.metadata.clone()))
    .bind(state.facts.occurred_at)
    .bind(state.created_at)
    .bind(state.updated_at)
    .bind(state.facts.status == MemoryStatus::Deleted)
    .bind(state.version as i64)
    .bind(embedding)
    .bind(model)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records that `text` of memory `id` is in the embedding cache.
async fn link_text(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    text: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO memory_embedding_texts (memory_id, content_sha256) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(crate::embedding_cache::text_hash(text))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An erased memory leaves the read model entirely: row, text, tags and
/// embedding, and the cached vectors of its texts that no other memory
/// shares. Only the version remains, so late duplicates stay duplicates.
async fn erase_memory(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    id: Uuid,
    version: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "DELETE FROM embedding_cache c
          WHERE c.content_sha256 IN (SELECT content_sha256 FROM memory_embedding_texts WHERE memory_id = $1)
            AND NOT EXISTS (SELECT 1 FROM memory_embedding_texts o
                             WHERE o.content_sha256 = c.content_sha256 AND o.memory_id <> $1)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM memory_embedding_texts WHERE memory_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let tables = Tables::of(g);
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", tables.memories))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO {tombstones} (id, version) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET version = GREATEST({tombstones}.version, EXCLUDED.version)",
        tombstones = tables.memory_tombstones
    ))
    .bind(id)
    .bind(version as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn load_session(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    id: Uuid,
    lock: bool,
) -> Result<SessionEntry, ProjectionError> {
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM {} WHERE id = $1 {}",
        Tables::of(g).sessions,
        locking(lock)
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let state = row.map(SessionState::from);
    Ok(SessionEntry {
        stored_version: state.as_ref().map_or(0, |s| s.version),
        state,
        dirty: false,
    })
}

async fn write_session(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    state: &SessionState,
) -> Result<(), ProjectionError> {
    sqlx::query(&format!(
        "INSERT INTO {sessions} (id, owner_id, title, metadata, status, started_at, updated_at, ended_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET
             owner_id = EXCLUDED.owner_id, title = EXCLUDED.title, metadata = EXCLUDED.metadata,
             status = EXCLUDED.status, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
             ended_at = EXCLUDED.ended_at, version = EXCLUDED.version",
        sessions = Tables::of(g).sessions
    ))
    .bind(state.id)
    .bind(&state.owner_id)
    .bind(&state.facts.title)
    .bind(Value::Object(state.facts.metadata.clone()))
    .bind(session_status_text(state.facts.status))
    .bind(state.started_at)
    .bind(state.updated_at)
    .bind(state.ended_at)
    .bind(state.version as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
