//! `rebuild-projections`: replay the event store, in global order and straight
//! from Postgres, into a fresh generation of each read model while the live
//! one keeps serving; then switch readers over atomically and catch up.
//!
//! 1. Read every event in one `REPEATABLE READ` snapshot, folding as it goes,
//!    and note the snapshot's `xmin`: every event of an older transaction is in
//!    the snapshot; only events of transactions `>= xmin` may be missing.
//! 2. Bulk-load the new generation (Postgres `COPY`, then the indexes with a
//!    generous `maintenance_work_mem`; Redis in pipelines).
//! 3. Switch: one transaction repoints the views and `projection_state` (it
//!    waits for live batches in flight); one `SET` repoints Redis readers.
//! 4. Catch up: apply the events of transactions `>= xmin` through the normal,
//!    idempotent projection path; the live projector also writes to the new
//!    generation from the switch on. Duplicates are skipped by version.
//! 5. Drop the old generation (Redis after a grace period for readers that
//!    resolved the old generation just before the switch).

use crate::embedding_cache::CachedEmbedder;
use crate::projection::documents::DocumentProjection;
use crate::projection::search::SearchProjection;
use crate::projection::{Projection, embedding_text, fold_memory, fold_session};
use crate::source::{EventSource, snapshot_xmin};
use anyhow::Context;
use event_schema::{MemoryState, MemoryStatus, SessionState, StoredEvent};
use futures::TryStreamExt;
use read_model::documents::{Keys, Write, active_generation};
use read_model::tables::{Tables, session_status_text};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Which read models to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub search: bool,
    pub documents: bool,
}

/// The state of every aggregate after the snapshot's replay.
#[derive(Debug, Default)]
struct Replayed {
    memories: HashMap<Uuid, MemoryState>,
    sessions: HashMap<Uuid, SessionState>,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub events: u64,
    pub memories: u64,
    pub sessions: u64,
    pub caught_up: u64,
    pub search_generation: Option<i32>,
    pub documents_generation: Option<i64>,
    pub replay_seconds: f64,
    pub total_seconds: f64,
}

/// Everything a rebuild works with.
#[derive(Debug)]
pub struct Rebuild<'a> {
    pub source: &'a EventSource,
    pub read_pool: &'a PgPool,
    pub embedder: &'a CachedEmbedder,
    pub redis: ConnectionManager,
    pub keys: Keys,
    /// How long the old Redis generation stays readable after the switch.
    pub grace: Duration,
}

/// Progress on a terminal as a bar, otherwise as log lines.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    count: u64,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message("replaying events");
            bar
        });
        Self { bar, count: 0 }
    }

    fn tick(&mut self) {
        self.count += 1;
        match &self.bar {
            Some(bar) if self.count.is_multiple_of(1000) => bar.set_position(self.count),
            Some(_) => {}
            None if self.count.is_multiple_of(50_000) => {
                tracing::info!(events = self.count, "rebuild: replaying")
            }
            None => {}
        }
    }

    fn stage(&self, message: &'static str) {
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None => tracing::info!(events = self.count, "rebuild: {message}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message("done");
        }
    }
}

impl Rebuild<'_> {
    pub async fn run(&mut self, targets: Targets) -> anyhow::Result<Report> {
        let started = Instant::now();
        let mut progress = Progress::new();
        let mut report = Report::default();

        // 1. Replay one snapshot of the store, in global order.
        let (replayed, xmin) = self.replay(&mut progress, &mut report).await?;
        report.memories = replayed.memories.len() as u64;
        report.sessions = replayed.sessions.len() as u64;
        report.replay_seconds = started.elapsed().as_secs_f64();

        // 2–3. Load each new generation and switch to it.
        let mut old_search = None;
        if targets.search {
            progress.stage("loading the search generation");
            let (new, old) = self
                .load_search(&replayed.memories, &replayed.sessions)
                .await?;
            report.search_generation = Some(new);
            old_search = old;
        }
        let mut old_documents = None;
        if targets.documents {
            progress.stage("loading the document generation");
            let (new, old) = self
                .load_documents(&replayed.memories, &replayed.sessions)
                .await?;
            report.documents_generation = Some(new);
            old_documents = Some(old);
        }

        // 4. Catch up with what the snapshot may have missed.
        progress.stage("catching up");
        report.caught_up = self.catch_up(targets, &xmin).await?;

        // 5. Retire the old generations.
        progress.stage("dropping the old generation");
        self.retire(old_search, old_documents).await?;
        progress.finish();
        report.total_seconds = started.elapsed().as_secs_f64();
        tracing::info!(?report, "rebuild finished");
        Ok(report)
    }

    /// Folds one repeatable-read snapshot of the whole store; returns the
    /// states and the snapshot's horizon, for the catch-up.
    async fn replay(
        &self,
        progress: &mut Progress,
        report: &mut Report,
    ) -> anyhow::Result<(Replayed, String)> {
        let mut replayed = Replayed::default();
        let mut tx = self.source.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let xmin = snapshot_xmin(&mut tx).await?;
        {
            let mut stream = EventSource::all_in(&mut tx);
            while let Some(event) = stream.try_next().await? {
                report.events += 1;
                progress.tick();
                fold_into(&mut replayed.memories, &mut replayed.sessions, &event)?;
            }
        }
        tx.commit().await?;
        Ok((replayed, xmin))
    }

    /// Applies the events committed after the snapshot; returns how many.
    async fn catch_up(&self, targets: Targets, xmin: &str) -> anyhow::Result<u64> {
        let late = self.source.since_xmin(xmin).await?;
        if late.is_empty() {
            return Ok(0);
        }
        let search = SearchProjection::new(
            self.read_pool.clone(),
            self.source.clone(),
            self.embedder.clone(),
        );
        let documents =
            DocumentProjection::new(self.redis.clone(), self.keys.clone(), self.source.clone());
        for chunk in late.chunks(256) {
            if targets.search {
                search.apply(chunk).await.context("catch-up")?;
            }
            if targets.documents {
                documents.apply(chunk).await.context("catch-up")?;
            }
        }
        Ok(late.len() as u64)
    }

    /// Drops the replaced generations: the search tables at once, the
    /// documents after the grace period readers may still be in.
    async fn retire(&mut self, search: Option<i32>, documents: Option<i64>) -> anyhow::Result<()> {
        if let Some(old) = search {
            sqlx::query("SELECT drop_search_generation($1)")
                .bind(old)
                .execute(self.read_pool)
                .await?;
        }
        if let Some(old) = documents {
            tokio::time::sleep(self.grace).await;
            delete_generation(&mut self.redis, &self.keys, old).await?;
        }
        Ok(())
    }

    /// Fills a fresh search generation and switches to it; returns the new
    /// generation and the one it replaced.
    async fn load_search(
        &self,
        memories: &HashMap<Uuid, MemoryState>,
        sessions: &HashMap<Uuid, SessionState>,
    ) -> anyhow::Result<(i32, Option<i32>)> {
        let active = read_model::tables::active_generation(self.read_pool)
            .await?
            .map(|active| active.generation);
        let new = active.unwrap_or(0) + 1;
        let dimension = i32::try_from(self.embedder.dimension())?;
        // A rebuild that died half-way leaves its tables behind.
        sqlx::query("SELECT drop_search_generation($1)")
            .bind(new)
            .execute(self.read_pool)
            .await?;
        sqlx::query("SELECT create_search_generation($1, $2)")
            .bind(new)
            .bind(dimension)
            .execute(self.read_pool)
            .await?;
        let vectors = self.embed_all(memories).await?;
        self.bulk_load_search(new, memories, sessions, &vectors)
            .await?;
        self.switch_search(new, dimension).await?;
        Ok((new, active))
    }

    /// The embedding of every memory not erased, through the cache, in
    /// batches; each text is linked to its memory, so an erasure finds the
    /// cached vectors to drop.
    async fn embed_all(
        &self,
        memories: &HashMap<Uuid, MemoryState>,
    ) -> anyhow::Result<HashMap<Uuid, Vec<f32>>> {
        let live: Vec<&MemoryState> = memories
            .values()
            .filter(|m| m.facts.status != MemoryStatus::Erased)
            .collect();
        let mut vectors: HashMap<Uuid, Vec<f32>> = HashMap::with_capacity(live.len());
        for chunk in live.chunks(512) {
            let texts: Vec<String> = chunk.iter().map(|m| embedding_text(m)).collect();
            let embedded = self.embedder.embed(&texts).await?;
            for (memory, vector) in chunk.iter().zip(embedded) {
                vectors.insert(memory.id, vector);
            }
        }
        let (ids, hashes): (Vec<Uuid>, Vec<Vec<u8>>) = live
            .iter()
            .map(|m| (m.id, crate::embedding_cache::text_hash(&embedding_text(m))))
            .unzip();
        sqlx::query(
            "INSERT INTO memory_embedding_texts (memory_id, content_sha256)
             SELECT * FROM UNNEST($1::uuid[], $2::bytea[]) ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&hashes)
        .execute(self.read_pool)
        .await?;
        Ok(vectors)
    }

    /// Copies the rows into generation `new`, then builds its indexes.
    async fn bulk_load_search(
        &self,
        new: i32,
        memories: &HashMap<Uuid, MemoryState>,
        sessions: &HashMap<Uuid, SessionState>,
        vectors: &HashMap<Uuid, Vec<f32>>,
    ) -> anyhow::Result<()> {
        let mut conn = self.read_pool.acquire().await?;
        copy_memories(&mut conn, new, memories, vectors, self.embedder.model_id()).await?;
        copy_sessions(&mut conn, new, sessions).await?;
        // Index after loading: building HNSW over a full table with room in
        // memory is several times faster than maintaining it row by row.
        sqlx::query("SET maintenance_work_mem = '1GB'")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT create_search_indexes($1)")
            .bind(new)
            .execute(&mut *conn)
            .await?;
        sqlx::query("RESET maintenance_work_mem")
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("ANALYZE {}", Tables::of(new).memories))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Points `projection_state` and the views at generation `new`, in one
    /// transaction.
    async fn switch_search(&self, new: i32, dimension: i32) -> anyhow::Result<()> {
        let mut tx = self.read_pool.begin().await?;
        // FOR UPDATE waits for live batches holding FOR SHARE to commit.
        sqlx::query("SELECT 1 FROM projection_state WHERE projection = $1 FOR UPDATE")
            .bind(read_model::SEARCH)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO projection_state (projection, generation, embedding_model, dimension, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (projection) DO UPDATE SET generation = EXCLUDED.generation,
                 embedding_model = EXCLUDED.embedding_model, dimension = EXCLUDED.dimension, updated_at = now()",
        )
        .bind(read_model::SEARCH)
        .bind(new)
        .bind(self.embedder.model_id())
        .bind(dimension)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT activate_search_generation($1)")
            .bind(new)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            generation = new,
            model = self.embedder.model_id(),
            "search read model switched"
        );
        Ok(())
    }

    /// Fills a fresh Redis generation and switches to it; returns the new and
    /// the old generation.
    async fn load_documents(
        &mut self,
        memories: &HashMap<Uuid, MemoryState>,
        sessions: &HashMap<Uuid, SessionState>,
    ) -> anyhow::Result<(i64, i64)> {
        let old = active_generation(&mut self.redis, &self.keys).await?;
        let new = old + 1;
        delete_generation(&mut self.redis, &self.keys, new).await?;
        let documents =
            DocumentProjection::new(self.redis.clone(), self.keys.clone(), self.source.clone());
        documents
            .bulk_write(
                new,
                memories
                    .values()
                    .map(Write::Memory)
                    .chain(sessions.values().map(Write::Session)),
            )
            .await?;
        let _: () = self.redis.set(self.keys.generation_pointer(), new).await?;
        tracing::info!(generation = new, "document read model switched");
        Ok((new, old))
    }
}

fn fold_into(
    memories: &mut HashMap<Uuid, MemoryState>,
    sessions: &mut HashMap<Uuid, SessionState>,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    let id = Uuid::parse_str(&event.aggregate_id)?;
    let one = std::slice::from_ref(event);
    match event.aggregate_type.as_str() {
        event_schema::memory::AGGREGATE_TYPE => {
            let next = fold_memory(memories.remove(&id), one)?;
            if let Some(state) = next {
                memories.insert(id, state);
            }
        }
        event_schema::session::AGGREGATE_TYPE => {
            let next = fold_session(sessions.remove(&id), one)?;
            if let Some(state) = next {
                sessions.insert(id, state);
            }
        }
        other => anyhow::bail!("unknown aggregate type {other:?}"),
    }
    Ok(())
}

/// Escapes a value for COPY's text format.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

fn nullable(value: Option<String>) -> String {
    value.map_or_else(|| "\\N".to_owned(), |v| text(&v))
}

/// A Postgres array literal of text elements.
fn text_array(values: &[String]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", items.join(","))
}

async fn copy_memories(
    conn: &mut sqlx::PgConnection,
    g: i32,
    memories: &HashMap<Uuid, MemoryState>,
    vectors: &HashMap<Uuid, Vec<f32>>,
    model: &str,
) -> anyhow::Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} (id, owner_id, session_id, title, content, tags, metadata, occurred_at, created_at,
                      updated_at, deleted, version, embedding, embedding_model) FROM STDIN",
            Tables::of(g).memories
        ))
        .await?;
    let mut buffer = String::new();
    for state in memories
        .values()
        .filter(|m| m.facts.status != MemoryStatus::Erased)
    {
        let vector = vectors.get(&state.id).map(|v| {
            let items: Vec<String> = v.iter().map(f32::to_string).collect();
            format!("[{}]", items.join(","))
        });
        let line = [
            state.id.to_string(),
            text(&state.owner_id),
            nullable(state.facts.session_id.map(|s| s.to_string())),
            nullable(state.facts.title.clone()),
            text(&state.facts.content),
            text(&text_array(&state.facts.tags)),
            text(&serde_json::Value::Object(state.facts.metadata.clone()).to_string()),
            nullable(state.facts.occurred_at.map(|t| t.to_rfc3339())),
            state.created_at.to_rfc3339(),
            state.updated_at.to_rfc3339(),
            (state.facts.status == MemoryStatus::Deleted).to_string(),
            state.version.to_string(),
            nullable(vector.clone()),
            nullable(vector.map(|_| model.to_owned())),
        ]
        .join("\t");
        buffer.push_str(&line);
        buffer.push('\n');
        if buffer.len() > 1 << 20 {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
        }
    }
    copy.send(buffer.into_bytes()).await?;
    copy.finish().await?;

    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} (id, version) FROM STDIN",
            Tables::of(g).memory_tombstones
        ))
        .await?;
    let mut buffer = String::new();
    for state in memories
        .values()
        .filter(|m| m.facts.status == MemoryStatus::Erased)
    {
        buffer.push_str(&format!("{}\t{}\n", state.id, state.version));
    }
    copy.send(buffer.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

async fn copy_sessions(
    conn: &mut sqlx::PgConnection,
    g: i32,
    sessions: &HashMap<Uuid, SessionState>,
) -> anyhow::Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} (id, owner_id, title, metadata, status, started_at, updated_at, ended_at, version) FROM STDIN",
            Tables::of(g).sessions
        ))
        .await?;
    let mut buffer = String::new();
    for state in sessions.values() {
        let line = [
            state.id.to_string(),
            text(&state.owner_id),
            text(&state.facts.title),
            text(&serde_json::Value::Object(state.facts.metadata.clone()).to_string()),
            session_status_text(state.facts.status).to_owned(),
            state.started_at.to_rfc3339(),
            state.updated_at.to_rfc3339(),
            nullable(state.ended_at.map(|t| t.to_rfc3339())),
            state.version.to_string(),
        ]
        .join("\t");
        buffer.push_str(&line);
        buffer.push('\n');
    }
    copy.send(buffer.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Deletes every key of generation `g`.
pub async fn delete_generation(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
) -> anyhow::Result<()> {
    let pattern = format!("{}*", keys.generation_prefix(g));
    let found: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = redis.scan_match(&pattern).await?;
        let mut all = Vec::new();
        while let Some(key) = iter.next_item().await {
            all.push(key?);
        }
        all
    };
    for chunk in found.chunks(500) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(redis).await?;
    }
    Ok(())
}
