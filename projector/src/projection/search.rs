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
    /// The event ids of the batch `prepare` last embedded: its turn then
    /// finds every vector cached and skips the read-only pass.
    prepared: std::sync::Mutex<Vec<Uuid>>,
    /// When a batch leaves its vectors pending (ADR 21); `None`: never.
    deferral: Option<Deferral>,
}

/// When a live batch writes its new vectors pending rather than into the
/// nearest-neighbour index (ADR 21): a full batch means more deliveries are
/// waiting, so the index insert (the costliest part of the write) is left
/// for the indexer to do once the projection is idle. A batch that is not
/// full, the projection keeping up, indexes its vectors at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    /// The batch size that counts as full (the consumer's batch size).
    pub full_batch: usize,
    /// The most vectors left pending at once: each search compares its
    /// owner's pending vectors exactly, so their number bounds its cost.
    pub max_pending: u32,
}

/// Where a batch writes the vectors it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vectors {
    /// Into `embedding`, under the HNSW index, in the batch's transaction.
    Indexed,
    /// Into `pending_embedding`, for the indexer.
    Pending,
}

/// A memory as loaded for one batch and as it stands after it (by
/// default: not stored).
#[derive(Debug, Default)]
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
            prepared: std::sync::Mutex::default(),
            deferral: None,
        }
    }

    /// Leaves a full batch's vectors pending, within `deferral`'s bound.
    #[must_use]
    pub fn with_deferral(mut self, deferral: Deferral) -> Self {
        self.deferral = Some(deferral);
        self
    }

    /// What the context worker watches to run only while this is idle.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Applies `events` to generation `g` inside `tx`, writing their
    /// vectors as `vectors` says; shared by the live projection and by a
    /// rebuild's catch-up.
    pub async fn apply_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        events: &[StoredEvent],
        vectors: Vectors,
    ) -> Result<Applied, ProjectionError> {
        self.fold_and_write(tx, g, events, Mode::Write(vectors))
            .await
    }

    /// Where a live batch of `n` events writes its vectors: pending when
    /// the batch is full and the pending vectors stay within the bound.
    async fn vectors_for(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        g: i32,
        n: usize,
    ) -> Result<Vectors, ProjectionError> {
        let Some(deferral) = self.deferral.filter(|d| n >= d.full_batch) else {
            return Ok(Vectors::Indexed);
        };
        let max = i64::from(deferral.max_pending);
        // Counted up to the bound only: the partial index holds just the
        // pending rows.
        let pending: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE pending_embedding IS NOT NULL LIMIT $1) p",
            Tables::of(g).memories
        ))
        .bind(max)
        .fetch_one(&mut **tx)
        .await?;
        Ok(if pending + n as i64 <= max {
            Vectors::Pending
        } else {
            Vectors::Indexed
        })
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
        // Every memory of the batch in one read (in id order, so that two
        // writers lock in the same order); an id that is not a uuid is
        // left to `fold_one` to refuse.
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter(|e| e.aggregate_type == event_schema::memory::AGGREGATE_TYPE)
            .filter_map(|e| Uuid::parse_str(&e.aggregate_id).ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let vectors = match mode {
            Mode::Write(vectors) => Some(vectors),
            Mode::WarmCache => None,
        };
        let lock = vectors.is_some();
        batch.memories = load_memories(tx, g, &ids, lock).await?;
        for event in events {
            self.fold_one(tx, g, event, lock, &mut batch, &mut applied)
                .await?;
        }
        // Embed every memory whose text changed, in one call.
        let to_embed = batch.texts_to_embed();
        let texts: Vec<String> = to_embed.iter().map(|(_, t)| t.clone()).collect();
        let made = self.embedder.embed(&texts).await?;
        let Some(vectors) = vectors else {
            return Ok(applied);
        };
        link_texts(tx, &to_embed).await?;
        let embeddings: HashMap<Uuid, pgvector::Vector> = to_embed
            .into_iter()
            .zip(made)
            .map(|((id, _), v)| (id, pgvector::Vector::from(v)))
            .collect();
        self.write_batch(tx, g, batch, embeddings, vectors).await?;
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
                    Entry::Vacant(slot) => {
                        let mut loaded = load_memories(tx, g, &[id], lock).await?;
                        slot.insert(loaded.remove(&id).unwrap_or_default())
                    }
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
        vectors: Vectors,
    ) -> Result<(), ProjectionError> {
        let mut rows = Vec::new();
        for (id, entry) in batch.memories {
            let Some(state) = entry.state.filter(|_| entry.dirty) else {
                continue;
            };
            if state.facts.status == MemoryStatus::Erased {
                erase_memory(tx, g, id, state.version).await?;
            } else {
                let embedding = embeddings.remove(&id);
                rows.push((state, embedding));
            }
        }
        write_memories(tx, g, rows, self.embedder.model_id(), vectors).await?;
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
        // Embed first, outside the writing transaction (see `warm_cache`),
        // unless `prepare` just did for these very events. (Should a vector
        // have left the cache since, the write embeds it: slower, not wrong.)
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let prepared = std::mem::take(
            &mut *self
                .prepared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if prepared != ids {
            let started = std::time::Instant::now();
            self.warm_cache(events).await?;
            stage_done("warm", started);
        }

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
        let g = generation.generation;
        let vectors = self.vectors_for(&mut tx, g, events.len()).await?;
        let applied = self.apply_in(&mut tx, g, events, vectors).await?;
        if vectors == Vectors::Pending {
            metrics::counter!("projector_pending_batches_total").increment(1);
        }
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
        *self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            events.iter().map(|e| e.event_id).collect();
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
/// ahead of the batch's turn), "warm" (the same in its turn, for a batch
/// that was not prepared) and "write" (fold again, write, commit).
fn stage_done(stage: &'static str, started: std::time::Instant) {
    metrics::histogram!("projector_batch_stage_seconds", "projection" => NAME, "stage" => stage)
        .record(started.elapsed().as_secs_f64());
}

/// Whether a pass writes (and where its vectors go), or only embeds what a
/// write would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write(Vectors),
    WarmCache,
}

/// `FOR UPDATE` when the pass will write, so a rebuild's catch-up and the live
/// projection cannot interleave on one aggregate.
fn locking(lock: bool) -> &'static str {
    if lock { "FOR UPDATE" } else { "" }
}

/// The stored state of each memory in `ids`: its tombstone's version if
/// erased, its row (locked when `lock`, in id order) if stored, else nothing.
async fn load_memories(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    ids: &[Uuid],
    lock: bool,
) -> Result<HashMap<Uuid, MemoryEntry>, ProjectionError> {
    let mut entries = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(entries);
    }
    let tables = Tables::of(g);
    let tombstones: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT id, version FROM {} WHERE id = ANY($1)",
        tables.memory_tombstones
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    for (id, version) in tombstones {
        entries.insert(
            id,
            MemoryEntry {
                stored_version: version as u64,
                erased: true,
                ..MemoryEntry::default()
            },
        );
    }
    let rows = sqlx::query(&format!(
        "SELECT {MEMORY_COLUMNS}, \
                (embedding IS NOT NULL OR pending_embedding IS NOT NULL) AS embedded FROM {} \
          WHERE id = ANY($1) ORDER BY id {}",
        tables.memories,
        locking(lock)
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let state = MemoryState::from(MemoryRow::from_row(&row)?);
        let embedded: bool = row.try_get("embedded")?;
        entries.entry(state.id).or_insert(MemoryEntry {
            stored_version: state.version,
            erased: false,
            embedded_text: embedded.then(|| embedding_text(&state)),
            state: Some(state),
            dirty: false,
        });
    }
    for id in ids {
        entries.entry(*id).or_default();
    }
    Ok(entries)
}

/// Upserts `rows` in one statement: the read model's statement triggers
/// (the keyword statistics) then run once per batch, not once per memory,
/// which was most of a batch's database time. A new vector goes where
/// `vectors` says and clears the other column; a row without one keeps
/// whichever it has.
async fn write_memories(
    tx: &mut Transaction<'_, Postgres>,
    g: i32,
    mut rows: Vec<(MemoryState, Option<pgvector::Vector>)>,
    model: &str,
    vectors: Vectors,
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Row locks in id order, as `load_memories` takes them.
    rows.sort_unstable_by_key(|(state, _)| state.id);
    let n = rows.len();
    let mut columns = MemoryColumns::with_capacity(n);
    for (state, embedding) in rows {
        columns.push(state, embedding, model);
    }
    sqlx::query(&format!(
        "INSERT INTO {memories} AS m (id, owner_id, session_id, title, content, tags, metadata, occurred_at,
                                        created_at, updated_at, deleted, version, embedding, pending_embedding,
                                        embedding_model)
         SELECT u.id, u.owner_id, u.session_id, u.title, u.content,
                ARRAY(SELECT jsonb_array_elements_text(u.tags)), u.metadata, u.occurred_at,
                u.created_at, u.updated_at, u.deleted, u.version,
                CASE WHEN $15 THEN NULL ELSE u.embedding END, CASE WHEN $15 THEN u.embedding END,
                u.embedding_model
           FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[],
                       $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::bool[], $12::int8[],
                       $13::vector[], $14::text[])
                AS u(id, owner_id, session_id, title, content, tags, metadata, occurred_at,
                     created_at, updated_at, deleted, version, embedding, embedding_model)
         ON CONFLICT (id) DO UPDATE SET
             owner_id = EXCLUDED.owner_id, session_id = EXCLUDED.session_id, title = EXCLUDED.title,
             content = EXCLUDED.content, tags = EXCLUDED.tags, metadata = EXCLUDED.metadata,
             occurred_at = EXCLUDED.occurred_at, created_at = EXCLUDED.created_at,
             updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, version = EXCLUDED.version,
             embedding = CASE WHEN EXCLUDED.embedding_model IS NULL THEN m.embedding
                              ELSE EXCLUDED.embedding END,
             pending_embedding = CASE WHEN EXCLUDED.embedding_model IS NULL THEN m.pending_embedding
                                      ELSE EXCLUDED.pending_embedding END,
             embedding_model = COALESCE(EXCLUDED.embedding_model, m.embedding_model)",
        memories = Tables::of(g).memories
    ))
    .bind(columns.id)
    .bind(columns.owner_id)
    .bind(columns.session_id)
    .bind(columns.title)
    .bind(columns.content)
    .bind(columns.tags)
    .bind(columns.metadata)
    .bind(columns.occurred_at)
    .bind(columns.created_at)
    .bind(columns.updated_at)
    .bind(columns.deleted)
    .bind(columns.version)
    .bind(columns.embedding)
    .bind(columns.embedding_model)
    .bind(vectors == Vectors::Pending)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Memory rows as one array per column, for `unnest`. (Tags go as JSON
/// arrays: Postgres arrays of arrays must be rectangular.)
#[derive(Default)]
struct MemoryColumns {
    id: Vec<Uuid>,
    owner_id: Vec<String>,
    session_id: Vec<Option<Uuid>>,
    title: Vec<Option<String>>,
    content: Vec<String>,
    tags: Vec<Value>,
    metadata: Vec<Value>,
    occurred_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    updated_at: Vec<chrono::DateTime<chrono::Utc>>,
    deleted: Vec<bool>,
    version: Vec<i64>,
    embedding: Vec<Option<pgvector::Vector>>,
    embedding_model: Vec<Option<String>>,
}

impl MemoryColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            owner_id: Vec::with_capacity(n),
            session_id: Vec::with_capacity(n),
            title: Vec::with_capacity(n),
            content: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            updated_at: Vec::with_capacity(n),
            deleted: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            embedding: Vec::with_capacity(n),
            embedding_model: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, state: MemoryState, embedding: Option<pgvector::Vector>, model: &str) {
        self.id.push(state.id);
        self.owner_id.push(state.owner_id);
        self.session_id.push(state.facts.session_id);
        self.title.push(state.facts.title);
        self.content.push(state.facts.content);
        self.tags.push(Value::from(state.facts.tags));
        self.metadata.push(Value::Object(state.facts.metadata));
        self.occurred_at.push(state.facts.occurred_at);
        self.created_at.push(state.created_at);
        self.updated_at.push(state.updated_at);
        self.deleted
            .push(state.facts.status == MemoryStatus::Deleted);
        self.version.push(state.version as i64);
        self.embedding_model
            .push(embedding.as_ref().map(|_| model.to_owned()));
        self.embedding.push(embedding);
    }
}

/// Records that each memory's text is in the embedding cache.
async fn link_texts(
    tx: &mut Transaction<'_, Postgres>,
    texts: &[(Uuid, String)],
) -> Result<(), ProjectionError> {
    if texts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = texts.iter().map(|(id, _)| *id).collect();
    let hashes: Vec<Vec<u8>> = texts
        .iter()
        .map(|(_, text)| crate::embedding_cache::text_hash(text))
        .collect();
    sqlx::query(
        "INSERT INTO memory_embedding_texts (memory_id, content_sha256)
         SELECT * FROM unnest($1::uuid[], $2::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind(ids)
    .bind(hashes)
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
