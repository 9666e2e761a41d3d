//! Reads of the Redis document model the projector maintains (key layout in
//! [`projector::projection::documents`]): documents by id, session timelines,
//! and the repair of a document that went missing.

use event_schema::{MemoryState, MemoryStatus, SessionState};
use projector::projection::documents::{Keys, Missing, active_generation, write_if_absent};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
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
    Repair(String),
}

/// What Redis holds for one memory id.
#[derive(Debug)]
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
    /// Opens the per-worker connections reads go through.
    client: redis::Client,
    keys: Keys,
    generation: Arc<Mutex<Option<(i64, Instant)>>>,
}

thread_local! {
    /// One multiplexed Redis connection per HTTP worker thread and server,
    /// opened on first use. Its I/O task runs on the worker's own runtime,
    /// so a read by id costs no hop to another thread and back; through the
    /// shared connection every read woke a task on the main runtime twice.
    static WORKER_CONNECTIONS: RefCell<HashMap<usize, MultiplexedConnection>> =
        RefCell::new(HashMap::new());
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
    pub fn new(redis: ConnectionManager, client: redis::Client, keys: Keys) -> Self {
        Self {
            redis,
            client,
            keys,
            generation: Arc::new(Mutex::new(None)),
        }
    }

    /// Which server's connection a thread holds: this `Documents` and its
    /// clones, told apart by their shared cache's address.
    fn worker_key(&self) -> usize {
        Arc::as_ptr(&self.generation) as usize
    }

    /// This thread's connection, opened on first use.
    async fn worker_connection(&self) -> Result<MultiplexedConnection, DocumentError> {
        let key = self.worker_key();
        if let Some(connection) = WORKER_CONNECTIONS.with(|c| c.borrow().get(&key).cloned()) {
            return Ok(connection);
        }
        let connection = self.client.get_multiplexed_async_connection().await?;
        WORKER_CONNECTIONS.with(|c| c.borrow_mut().insert(key, connection.clone()));
        Ok(connection)
    }

    /// Forgets this thread's connection after a connection error, so the
    /// next read opens a new one (a multiplexed connection does not
    /// reconnect by itself).
    fn drop_worker_connection(&self, error: &redis::RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
            let key = self.worker_key();
            WORKER_CONNECTIONS.with(|c| c.borrow_mut().remove(&key));
        }
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

    /// The memory document and its erasure tombstone, in one round trip.
    pub async fn memory(&self, id: Uuid) -> Result<(i64, Stored<RawMemory>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = self.generation(&mut redis).await?;
        let mut local = self.worker_connection().await?;
        let (doc, erased): (Option<String>, Option<u64>) = redis::cmd("MGET")
            .arg(self.keys.memory(g, id))
            .arg(self.keys.memory_tombstone(g, id))
            .query_async(&mut local)
            .await
            .inspect_err(|e| self.drop_worker_connection(e))?;
        let stored = match (doc, erased) {
            (_, Some(version)) => Stored::Erased(version),
            (Some(doc), None) => Stored::Found(RawMemory::parse(doc)?),
            (None, None) => Stored::Missing,
        };
        Ok((g, stored))
    }

    pub async fn session(&self, id: Uuid) -> Result<(i64, Option<SessionState>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = self.generation(&mut redis).await?;
        let doc: Option<String> = redis.get(self.keys.session(g, id)).await?;
        Ok((g, doc.map(|d| serde_json::from_str(&d)).transpose()?))
    }

    /// Puts back a memory document that generation `g` lacks, unless the
    /// projector wrote one (or erased it) meanwhile.
    pub async fn repair_memory(&self, g: i64, state: &MemoryState) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Missing::Memory(state))
            .await
            .map_err(|e| DocumentError::Repair(e.to_string()))
    }

    pub async fn repair_session(
        &self,
        g: i64,
        state: &SessionState,
    ) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Missing::Session(state))
            .await
            .map_err(|e| DocumentError::Repair(e.to_string()))
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
