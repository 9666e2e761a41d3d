//! The vector indexer (ADR 21): moves the vectors a search batch left
//! pending (written while a backlog drained, to spare the batch the HNSW
//! insert) into the indexed column, while the search projection is idle.
//! Until then semantic search compares them exactly, so nothing waits for
//! this to be searchable; it only keeps that exact comparison small.

use crate::context::{Activity, run_while_idle};
use crate::projection::ProjectionError;
use read_model::tables::{Tables, active_generation};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use uuid::Uuid;

/// Vectors indexed per transaction: indexing one took about 2.4 ms on two
/// cores (5,000 in 12 s after a drain: the row's new version goes into
/// every index of the row, the HNSW graph the costliest), so a search
/// batch arriving meanwhile waits for at most ~80 ms.
const CHUNK: i64 = 32;

/// Indexes pending vectors while the search projection is idle.
#[derive(Debug)]
pub struct VectorIndexer {
    pool: PgPool,
    activity: Arc<Activity>,
}

impl VectorIndexer {
    pub fn new(pool: PgPool, activity: Arc<Activity>) -> Self {
        Self { pool, activity }
    }

    /// Runs until `shutdown` turns true; a failure is logged and tried
    /// again later (the vectors stay searchable meanwhile).
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        run_while_idle(&self.activity, shutdown, "indexing pending vectors", || {
            self.step()
        })
        .await;
    }

    /// Indexes up to [`CHUNK`] pending vectors; how many. Rows another
    /// transaction holds (a batch, another projector's indexer) are left
    /// for a later step. Looks before it writes: an idle step, the usual
    /// case, takes no lock that a writer could have to wait for.
    pub async fn step(&self) -> Result<usize, ProjectionError> {
        let Some(generation) = active_generation(&self.pool).await? else {
            return Ok(0);
        };
        let started = Instant::now();
        let memories = Tables::of(generation.generation).memories;
        let pending: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT id FROM {memories} WHERE pending_embedding IS NOT NULL LIMIT $1"
        ))
        .bind(CHUNK)
        .fetch_all(&self.pool)
        .await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let indexed = sqlx::query(&format!(
            "UPDATE {memories} m SET embedding = m.pending_embedding, pending_embedding = NULL
               FROM (SELECT id FROM {memories} WHERE id = ANY($1) AND pending_embedding IS NOT NULL
                     FOR UPDATE SKIP LOCKED) todo
              WHERE m.id = todo.id"
        ))
        .bind(&pending)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if indexed > 0 {
            metrics::counter!("projector_vectors_indexed_total").increment(indexed);
            metrics::histogram!("projector_index_step_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        Ok(usize::try_from(indexed).unwrap_or(usize::MAX))
    }
}
