//! Context vectors (ADR 17): a memory in a session also gets the embedding
//! of itself between the visible turn before and the turn after it, which
//! hybrid search ranks by beside the memory's own vector.
//!
//! The read model's triggers forget a context vector in the transaction that
//! changes its window (the memory's text or place, or a neighbour's); this
//! worker makes the missing ones. It works only while the search projection
//! is idle, so that it never slows the path that makes a write searchable:
//! under a backlog it waits, and a memory is ranked by its own vector until
//! its context vector is there. Window texts are not put in the embedding
//! cache: a window holds its neighbours' text, which an erase of a neighbour
//! must remove, and the trigger does that for the column only.

use crate::embedding_cache::classify;
use crate::projection::ProjectionError;
use crate::redact::Redactor;
use embeddings::Embedder;
use read_model::tables::{Tables, active_generation};
use sqlx::{FromRow, PgPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// How long the search projection must have been idle before the worker
/// embeds: longer than the projector's batch window, so that a delivery
/// arriving behind the last batch is not overtaken.
const QUIET: Duration = Duration::from_millis(25);

/// Windows per embedding call: small, so that a search batch arriving
/// meanwhile waits for at most one short call (~50 ms on two cores).
const CHUNK: i64 = 8;

/// How long the worker waits without news before it looks for work again
/// (a rebuild's new generation, say, arrives without a search batch).
const RECHECK: Duration = Duration::from_secs(2);

/// What the search projection is doing, as far as the worker cares.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    last_done: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last_done: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }
}

/// Marks the search projection busy until dropped.
#[derive(Debug)]
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self
            .0
            .last_done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Activity {
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// Resolves once nothing has been busy for [`QUIET`].
    async fn idle(&self) {
        loop {
            let changed = self.changed.notified();
            if self.busy.load(Ordering::SeqCst) == 0 {
                let since = self
                    .last_done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .elapsed();
                match QUIET.checked_sub(since) {
                    None => return,
                    Some(rest) => tokio::time::sleep(rest).await,
                }
            } else {
                changed.await;
            }
        }
    }

    /// Resolves when a busy period ends, or after `timeout`.
    async fn next_batch_or(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }
}

/// Runs `step` whenever the search projection has been idle for
/// [`QUIET`], until `shutdown` turns true: again at once while it finds
/// work, at the next batch's end (or after [`RECHECK`]) when it found none.
/// A failure is logged as `what` failing and tried again after
/// [`RECHECK`]: idle-time work is never a reason to stop projecting.
pub(crate) async fn run_while_idle<F, Fut>(
    activity: &Activity,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    step: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<usize, ProjectionError>>,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            () = activity.idle() => {}
            _ = shutdown.changed() => return,
        }
        match step().await {
            Ok(0) => tokio::select! {
                () = activity.next_batch_or(RECHECK) => {}
                _ = shutdown.changed() => return,
            },
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "{what} failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RECHECK) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A memory whose context vector is missing, with its window.
#[derive(Debug, FromRow)]
struct Window {
    id: Uuid,
    context_version: i64,
    title: Option<String>,
    content: String,
    prev_title: Option<String>,
    prev_content: Option<String>,
    next_title: Option<String>,
    next_content: Option<String>,
}

impl Window {
    /// The window's text, each turn as it is embedded on its own (title,
    /// blank line, content), one per line; `None` for a memory alone in its
    /// session, whose context is its own vector.
    fn text(&self) -> Option<String> {
        let turn = |title: &Option<String>, content: &str| match title {
            Some(title) => format!("{title}\n\n{content}"),
            None => content.to_owned(),
        };
        if self.prev_content.is_none() && self.next_content.is_none() {
            return None;
        }
        let mut parts = Vec::with_capacity(3);
        if let Some(prev) = &self.prev_content {
            parts.push(turn(&self.prev_title, prev));
        }
        parts.push(turn(&self.title, &self.content));
        if let Some(next) = &self.next_content {
            parts.push(turn(&self.next_title, next));
        }
        Some(parts.join("\n"))
    }
}

/// Makes missing context vectors while the search projection is idle.
#[derive(Debug)]
pub struct ContextWorker {
    pool: PgPool,
    embedder: Arc<dyn Embedder>,
    activity: Arc<Activity>,
}

impl ContextWorker {
    pub fn new(pool: PgPool, embedder: Arc<dyn Embedder>, activity: Arc<Activity>) -> Self {
        Self {
            pool,
            embedder,
            activity,
        }
    }

    /// Runs until `shutdown` turns true. A failure (the database away, the
    /// embedder failing) is logged and tried again later: context vectors
    /// are an improvement to ranking, never a reason to stop projecting.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        run_while_idle(&self.activity, shutdown, "making context vectors", || {
            self.step()
        })
        .await;
    }

    /// Makes up to [`CHUNK`] missing context vectors; how many it found.
    pub async fn step(&self) -> Result<usize, ProjectionError> {
        let Some(generation) = active_generation(&self.pool).await? else {
            return Ok(0);
        };
        let memories = Tables::of(generation.generation).memories;
        let windows: Vec<Window> = sqlx::query_as(&format!(
            "SELECT m.id, m.context_version, m.title, m.content,
                    p.title AS prev_title, p.content AS prev_content,
                    n.title AS next_title, n.content AS next_content
               FROM (SELECT * FROM {memories}
                      WHERE context_embedding IS NULL AND session_id IS NOT NULL AND NOT deleted
                        AND (embedding IS NOT NULL OR pending_embedding IS NOT NULL)
                      LIMIT $1) m
               LEFT JOIN LATERAL (
                    SELECT title, content FROM {memories} x
                     WHERE x.session_id = m.session_id AND x.owner_id = m.owner_id AND NOT x.deleted
                       AND (coalesce(x.occurred_at, x.created_at), x.id)
                           < (coalesce(m.occurred_at, m.created_at), m.id)
                     ORDER BY coalesce(x.occurred_at, x.created_at) DESC, x.id DESC LIMIT 1) p ON true
               LEFT JOIN LATERAL (
                    SELECT title, content FROM {memories} x
                     WHERE x.session_id = m.session_id AND x.owner_id = m.owner_id AND NOT x.deleted
                       AND (coalesce(x.occurred_at, x.created_at), x.id)
                           > (coalesce(m.occurred_at, m.created_at), m.id)
                     ORDER BY coalesce(x.occurred_at, x.created_at), x.id LIMIT 1) n ON true"
        ))
        .bind(CHUNK)
        .fetch_all(&self.pool)
        .await?;
        if windows.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let (alone, together): (Vec<&Window>, Vec<&Window>) =
            windows.iter().partition(|w| w.text().is_none());
        let texts: Vec<String> = together.iter().filter_map(|w| w.text()).collect();
        let vectors = if texts.is_empty() {
            Vec::new()
        } else {
            self.embedder
                .embed(&texts)
                .await
                // The error may quote the texts; the log outlives an erase.
                .map_err(|e| {
                    classify(e).redacted(&Redactor::default().with(texts.iter().cloned()))
                })?
        };
        let mut tx = self.pool.begin().await?;
        // Each write only if the window read is still the memory's: a change
        // since (a neighbour erased, say) counted the version up.
        for window in &alone {
            sqlx::query(&format!(
                "UPDATE {memories} SET context_embedding = coalesce(embedding, pending_embedding)
                  WHERE id = $1 AND context_version = $2"
            ))
            .bind(window.id)
            .bind(window.context_version)
            .execute(&mut *tx)
            .await?;
        }
        for (window, vector) in together.iter().zip(vectors) {
            sqlx::query(&format!(
                "UPDATE {memories} SET context_embedding = $3
                  WHERE id = $1 AND context_version = $2"
            ))
            .bind(window.id)
            .bind(window.context_version)
            .bind(pgvector::Vector::from(vector))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("projector_context_vectors_total").increment(windows.len() as u64);
        metrics::histogram!("projector_context_step_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(windows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(prev: Option<&str>, next: Option<&str>) -> Window {
        Window {
            id: Uuid::nil(),
            context_version: 0,
            title: Some("T".into()),
            content: "self".into(),
            prev_title: None,
            prev_content: prev.map(str::to_owned),
            next_title: None,
            next_content: next.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn the_worker_waits_while_the_search_projection_is_busy() {
        let activity = Activity::default();
        let busy = activity.busy();
        let waited = tokio::time::timeout(Duration::from_millis(200), activity.idle()).await;
        assert!(waited.is_err(), "idle while a batch is applied");
        drop(busy);
        let waited = tokio::time::timeout(Duration::from_secs(5), activity.idle()).await;
        assert!(waited.is_ok(), "never idle after the batch");
    }

    #[test]
    fn a_window_is_its_turns_one_per_line_and_none_alone() {
        assert_eq!(
            window(Some("before"), Some("after")).text().as_deref(),
            Some("before\nT\n\nself\nafter")
        );
        assert_eq!(
            window(None, Some("after")).text().as_deref(),
            Some("T\n\nself\nafter")
        );
        assert_eq!(window(None, None).text(), None);
    }
}
