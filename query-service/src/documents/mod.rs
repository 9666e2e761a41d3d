//! Reads of the Redis document model the projector maintains (key layout in
//! [`read_model::documents`]): documents by id and session timelines, through
//! a connection per HTTP worker with its own document cache.
//!
//! - this module: the reader ([`Documents`]) and what it returns;
//! - `worker`: the per-worker connections reads by id go through;
//! - `cache`: each worker's document cache, kept current by Redis's
//!   invalidations;
//! - `repair`: putting back a document that went missing.

mod cache;
mod repair;
mod worker;

use event_schema::{MemoryState, MemoryStatus, SessionState};
use read_model::documents::{Keys, WriteError, active_generation};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, ProtocolVersion};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long the active generation is taken as read. A rebuild's switch
/// reaches readers within this, and the old generation stays readable for the
/// rebuild's grace period (10 s by default) meanwhile; in exchange a read by
/// id costs one Redis round trip instead of two.
const GENERATION_TTL: Duration = Duration::from_secs(1);

/// A memory document as stored, with the fields a read checks parsed out and
/// the JSON kept as it is, to be sent without a parse-and-serialise trip.
#[derive(Debug, Clone)]
pub struct RawMemory {
    pub owner_id: String,
    pub version: u64,
    pub status: MemoryStatus,
    pub json: String,
}

#[derive(Deserialize)]
struct Header {
    owner_id: String,
    version: u64,
    status: MemoryStatus,
}

impl RawMemory {
    pub fn parse(json: String) -> Result<Self, serde_json::Error> {
        let header: Header = serde_json::from_str(&json)?;
        Ok(Self {
            owner_id: header.owner_id,
            version: header.version,
            status: header.status,
            json,
        })
    }

    pub fn of(state: &MemoryState) -> Result<Self, serde_json::Error> {
        Ok(Self {
            owner_id: state.owner_id.clone(),
            version: state.version,
            status: state.facts.status,
            json: serde_json::to_string(state)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a stored document does not parse: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("repairing a document: {0}")]
    Repair(#[source] WriteError),
}

/// What Redis holds for one memory id.
#[derive(Debug, Clone)]
pub enum Stored<T> {
    Found(T),
    /// Erased at this version: gone for good.
    Erased(u64),
    Missing,
}

/// Where a timeline page ended: the score (ms) and id of its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePosition {
    pub score: i64,
    pub id: Uuid,
}

#[derive(Clone)]
pub struct Documents {
    /// Shared, reconnecting: for repairs and whatever runs off the workers.
    redis: ConnectionManager,
    /// Opens the per-worker connections reads go through (RESP3 when the
    /// document cache is on: invalidations arrive as RESP3 pushes).
    client: redis::Client,
    keys: Keys,
    generation: Arc<Mutex<Option<(i64, Instant)>>>,
    /// Documents each worker caches; `None`: no cache.
    cache_size: Option<NonZeroUsize>,
}

impl std::fmt::Debug for Documents {
    // The connection manager has no `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Documents {
    /// `cache_size`: memory documents each HTTP worker keeps (0: none).
    pub fn new(
        redis: ConnectionManager,
        client: &redis::Client,
        keys: Keys,
        cache_size: usize,
    ) -> Result<Self, DocumentError> {
        let cache_size = NonZeroUsize::new(cache_size);
        let mut info = client.get_connection_info().clone();
        if cache_size.is_some() {
            let resp3 = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(resp3);
        }
        Ok(Self {
            redis,
            client: redis::Client::open(info)?,
            keys,
            generation: Arc::new(Mutex::new(None)),
            cache_size,
        })
    }

    /// The active generation, read at most once per [`GENERATION_TTL`].
    async fn generation(&self, redis: &mut ConnectionManager) -> Result<i64, DocumentError> {
        let cached = *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((g, read_at)) = cached
            && read_at.elapsed() < GENERATION_TTL
        {
            return Ok(g);
        }
        let g = active_generation(redis, &self.keys).await?;
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((g, Instant::now()));
        Ok(g)
    }

    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The memory document and its erasure tombstone: from this worker's
    /// cache, or else in one round trip. `at_least`: a cached document older
    /// than this version is read again.
    pub async fn memory(
        &self,
        id: Uuid,
        at_least: Option<u64>,
    ) -> Result<(i64, Stored<RawMemory>), DocumentError> {
        retry_once_on_lost_connection(async || self.memory_once(id, at_least).await).await
    }

    async fn memory_once(
        &self,
        id: Uuid,
        at_least: Option<u64>,
    ) -> Result<(i64, Stored<RawMemory>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = self.generation(&mut redis).await?;
        let (worker, mut local) = self.worker_connection().await?;
        let key = self.keys.memory(g, id);
        let mut invalidations_before = None;
        if self.cache_size.is_some() {
            // Lets the connection's task take in what Redis already pushed.
            tokio::task::yield_now().await;
            if let Some((cached, invalidations)) =
                self.with_cache(worker, |c| (c.get(&key, at_least), c.invalidations))
            {
                if let Some(stored) = cached {
                    metrics::counter!("document_cache_total", "outcome" => "hit").increment(1);
                    return Ok((g, stored));
                }
                metrics::counter!("document_cache_total", "outcome" => "miss").increment(1);
                invalidations_before = Some(invalidations);
            }
        }
        let (doc, erased): (Option<String>, Option<u64>) = redis::cmd("MGET")
            .arg(&key)
            .arg(self.keys.memory_tombstone(g, id))
            .query_async(&mut local)
            .await
            .inspect_err(|e| self.drop_worker_connection(worker, e))?;
        let stored = match (doc, erased) {
            (_, Some(version)) => Stored::Erased(version),
            (Some(doc), None) => Stored::Found(RawMemory::parse(doc)?),
            (None, None) => Stored::Missing,
        };
        if let Some(before) = invalidations_before {
            self.with_cache(worker, |c| c.put(key, &stored, before));
        }
        Ok((g, stored))
    }

    pub async fn session(&self, id: Uuid) -> Result<(i64, Option<SessionState>), DocumentError> {
        retry_once_on_lost_connection(async || self.session_once(id).await).await
    }

    async fn session_once(&self, id: Uuid) -> Result<(i64, Option<SessionState>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = self.generation(&mut redis).await?;
        let doc: Option<String> = redis.get(self.keys.session(g, id)).await?;
        Ok((g, doc.map(|d| serde_json::from_str(&d)).transpose()?))
    }

    /// Up to `limit` active memories of a session's timeline after `after`,
    /// in time order (the memory's `occurred_at`, else its creation), and
    /// where the next page starts if more follow. Entries whose document
    /// vanished between the two reads (erased, say) are skipped.
    pub async fn timeline(
        &self,
        session: Uuid,
        after: Option<TimelinePosition>,
        limit: usize,
    ) -> Result<(Vec<MemoryState>, Option<TimelinePosition>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = self.generation(&mut redis).await?;
        let key = self.keys.timeline(g, session);
        let min = after.map_or_else(|| "-inf".to_owned(), |a| a.score.to_string());
        // Entries with the cursor's own score sort by member; skip those up to
        // the cursor's id, reading further while a page is all ties.
        let mut ids: Vec<(Uuid, i64)> = Vec::with_capacity(limit + 1);
        let mut offset = 0usize;
        let chunk = limit + 1;
        loop {
            let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&min)
                .arg("+inf")
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(offset)
                .arg(chunk)
                .arg("WITHSCORES")
                .query_async(&mut redis)
                .await?;
            let fetched = entries.len();
            for (member, score) in entries {
                let Ok(id) = member.parse::<Uuid>() else {
                    continue;
                };
                // Scores are whole milliseconds, well inside f64's exact range.
                #[allow(clippy::cast_possible_truncation)]
                let score = score as i64;
                if let Some(a) = after
                    && score == a.score
                    && member.as_str() <= a.id.to_string().as_str()
                {
                    continue;
                }
                ids.push((id, score));
            }
            if ids.len() > limit || fetched < chunk {
                break;
            }
            offset += fetched;
        }
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last()
                .map(|&(id, score)| TimelinePosition { score, id })
        } else {
            None
        };
        if ids.is_empty() {
            return Ok((Vec::new(), next));
        }
        let keys: Vec<String> = ids.iter().map(|(id, _)| self.keys.memory(g, *id)).collect();
        let docs: Vec<Option<String>> =
            redis::cmd("MGET").arg(keys).query_async(&mut redis).await?;
        let memories = docs
            .into_iter()
            .flatten()
            .map(|doc| serde_json::from_str::<MemoryState>(&doc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((memories, next))
    }
}

/// Runs a read once more when Redis dropped its connection under it (a Redis
/// restart, `CLIENT KILL`, a proxy's idle timeout): the failed connection is
/// gone by then (a worker's is forgotten, the shared manager reconnects by
/// itself), so the second try runs on a fresh one and the request does not
/// fail for a loss it could not see coming. A second loss is a real outage.
async fn retry_once_on_lost_connection<T>(
    mut read: impl AsyncFnMut() -> Result<T, DocumentError>,
) -> Result<T, DocumentError> {
    match read().await {
        Err(DocumentError::Redis(e)) if e.is_io_error() || e.is_connection_dropped() => {
            tracing::debug!(error = %e, "redis connection lost under a read; trying once more");
            metrics::counter!("redis_connection_lost_retries_total").increment(1);
            read().await
        }
        other => other,
    }
}
