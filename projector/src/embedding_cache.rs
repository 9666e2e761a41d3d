//! Embeddings by (model, content hash): unchanged text is never embedded
//! twice, across revisions, redeliveries, replays and rebuilds.

use crate::projection::{Cause, ProjectionError};
use crate::redact::Redactor;
use embeddings::{EmbedError, Embedder};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The cache key of a text: its SHA-256.
pub fn text_hash(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

#[derive(Debug, Clone)]
pub struct CachedEmbedder {
    inner: Arc<dyn Embedder>,
    pool: PgPool,
}

impl CachedEmbedder {
    pub fn new(inner: Arc<dyn Embedder>, pool: PgPool) -> Self {
        Self { inner, pool }
    }

    pub fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    pub fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    /// One vector per text, in order: from the cache where present, else from
    /// the embedder (each distinct text once), then cached.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProjectionError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<Vec<u8>> = texts
            .iter()
            .map(|t| Sha256::digest(t.as_bytes()).to_vec())
            .collect();
        let rows: Vec<(Vec<u8>, Vec<f32>)> = sqlx::query_as(
            "SELECT content_sha256, embedding FROM embedding_cache WHERE model = $1 AND content_sha256 = ANY($2)",
        )
        .bind(self.model_id())
        .bind(&hashes)
        .fetch_all(&self.pool)
        .await?;
        let mut known: HashMap<Vec<u8>, Vec<f32>> = rows.into_iter().collect();
        let hits = hashes.iter().filter(|h| known.contains_key(*h)).count();
        metrics::counter!("embedding_cache_hits_total").increment(hits as u64);

        let mut missing: Vec<(Vec<u8>, String)> = Vec::new();
        for (hash, text) in hashes.iter().zip(texts) {
            if !known.contains_key(hash) && !missing.iter().any(|(h, _)| h == hash) {
                missing.push((hash.clone(), text.clone()));
            }
        }
        if !missing.is_empty() {
            metrics::counter!("embedding_cache_misses_total").increment(missing.len() as u64);
            metrics::histogram!("embedding_texts").record(missing.len() as f64);
            let started = Instant::now();
            let fresh_texts: Vec<String> = missing.iter().map(|(_, t)| t.clone()).collect();
            // A provider may echo the input it refuses (pydantic's 422s
            // do): the texts sent never reach the error's message.
            let vectors = self.inner.embed(&fresh_texts).await.map_err(|error| {
                classify(error).redacted(&Redactor::default().with(fresh_texts.iter().cloned()))
            })?;
            metrics::histogram!("embedding_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            if vectors.len() != missing.len() || vectors.iter().any(|v| v.len() != self.dimension())
            {
                // The provider's answer, not this event: wait for it to mend
                // rather than park every event it answers badly.
                return Err(ProjectionError::Unavailable(
                    format!(
                        "the embedder returned {} vectors for {} texts, or of the wrong dimension",
                        vectors.len(),
                        missing.len()
                    )
                    .into(),
                ));
            }
            let storing = Instant::now();
            let fresh: Vec<(Vec<u8>, Vec<f32>)> = missing
                .into_iter()
                .map(|(hash, _)| hash)
                .zip(vectors)
                .collect();
            self.store(&fresh).await?;
            known.extend(fresh);
            metrics::histogram!("embedding_cache_store_seconds")
                .record(storing.elapsed().as_secs_f64());
        }
        hashes
            .iter()
            .map(|h| {
                known.get(h).cloned().ok_or_else(|| {
                    ProjectionError::Transient("embedding cache lost a vector".into())
                })
            })
            .collect()
    }
}

impl CachedEmbedder {
    /// Caches fresh vectors, a few hundred rows per statement: one round
    /// trip and one commit for a batch's texts, not one each.
    async fn store(&self, fresh: &[(Vec<u8>, Vec<f32>)]) -> Result<(), ProjectionError> {
        // Three parameters a row, well below Postgres's 65,535.
        for chunk in fresh.chunks(500) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO embedding_cache (model, content_sha256, embedding) ",
            );
            insert.push_values(chunk, |mut row, (hash, vector)| {
                row.push_bind(self.model_id())
                    .push_bind(hash)
                    .push_bind(vector);
            });
            insert.push(" ON CONFLICT (model, content_sha256) DO NOTHING");
            insert.build().execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// How an embedding failure is settled. Only a refusal of the text itself
/// (a provider's 400, 413 or 422, or a tokenizer that cannot take it) is the
/// event's fault: it is poison and dead-lettered at once. A failed forward
/// pass counts as an attempt. Everything else is the provider's state or its
/// configuration (unreachable, 429, 5xx after the client's own retries, 401,
/// 403, 404, a malformed answer): waited for, never counted, so an outage or
/// a wrong key parks nothing.
pub(crate) fn classify(error: EmbedError) -> ProjectionError {
    let mut text = format!(
        "embedding: {}",
        crate::projection::with_causes(&error as &(dyn std::error::Error + 'static))
    );
    let kind: fn(Cause) -> ProjectionError = if error.rejects_input() {
        text = format!("the embedding provider refused the text: {text}");
        ProjectionError::Poison
    } else {
        match error {
            EmbedError::Tokenizer(_) => ProjectionError::Poison,
            EmbedError::Inference(_) => ProjectionError::Transient,
            EmbedError::Config { .. }
            | EmbedError::ModelLoad { .. }
            | EmbedError::Http { .. }
            | EmbedError::Transport(_)
            | EmbedError::RetriesExhausted { .. }
            | EmbedError::DimensionMismatch { .. }
            | EmbedError::BadResponse(_) => ProjectionError::Unavailable,
        }
    };
    kind(Cause::with_source(text, error))
}
