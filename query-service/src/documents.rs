//! Reads of the Redis document model the projector maintains (key layout in
//! [`read_model::documents`]): documents by id, session timelines, and the
//! repair of a document that went missing.

use event_schema::{MemoryState, MemoryStatus, SessionState};
use lru::LruCache;
use read_model::documents::{Keys, Write, WriteError, active_generation, write_if_absent};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncCommands, AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long the active generation is taken as read. A rebuild's switch
/// reaches readers within this, and the old generation stays readable for the
/// rebuild's grace period (10 s by default) meanwhile; in exchange a read by
/// id costs one Redis round trip instead of two.
const GENERATION_TTL: Duration = Duration::from_secs(1);

/// The longest a cached document is served before it is read from Redis
/// again. Invalidations keep the cache current; this bounds what a
/// connection that died without a word (no reset: no invalidations and no
/// error) could leave behind, and makes a worker find out within this time.
const CACHE_MAX_AGE: Duration = Duration::from_secs(5);

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

/// Documents larger than this are not cached: with the count bound, it
/// caps a worker's cache at `SB_QUERY_DOCUMENT_CACHE_SIZE` × 8 KiB (~80 MB
/// at the default; memories are mostly far smaller).
const MAX_CACHED_DOCUMENT_BYTES: usize = 8 * 1024;

/// One HTTP worker's connection for reads by id, and its document cache.
struct Worker {
    /// Tells this connection from the one that may replace it: a read keeps
    /// what it found only in the cache of the connection it read through,
    /// since Redis tracks the key for that connection alone.
    id: u64,
    connection: MultiplexedConnection,
    cache: Option<DocumentCache>,
}

/// Numbers the workers' connections.
static NEXT_WORKER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// One multiplexed Redis connection (and document cache) per HTTP worker
    /// thread and server, opened on first use. Its I/O task runs on the
    /// worker's own runtime, so a read by id costs no hop to another thread
    /// and back; through the shared connection every read woke a task on the
    /// main runtime twice.
    static WORKERS: RefCell<HashMap<usize, Worker>> = RefCell::new(HashMap::new());
}

/// The memory documents one HTTP worker has read, kept current by Redis's
/// server-assisted client-side caching: the worker's connection turns
/// `CLIENT TRACKING` on, and from then on Redis pushes on it the name of
/// every key it served that connection as soon as the key changes, whoever
/// changes it (the projector, a repair, an erasure, a flush).
///
/// The cache is only as current as the invalidations it has taken in, so:
/// - before it answers from the cache, a read yields once to the worker's
///   runtime, which lets the connection's task take in whatever Redis has
///   already delivered; only a push still on the wire (one hop) can be
///   missed, and then the read gets the document as it was before;
/// - a document read from Redis is kept only if no invalidation arrived
///   while the read was under way (it might predate the change);
/// - a lost connection empties the cache (its invalidations are lost with
///   it), and no entry is served for longer than [`CACHE_MAX_AGE`];
/// - a read that asks for a version newer than the cached one (read your
///   writes) goes to Redis.
struct DocumentCache {
    entries: LruCache<String, (Stored<RawMemory>, Instant)>,
    pushes: mpsc::Receiver<PushInfo>,
    /// What a tombstone's key adds to its document's key.
    tombstone_suffix: String,
    /// Invalidations taken in so far (see above).
    invalidations: u64,
    /// The connection is gone: open a new one, with an empty cache.
    lost: bool,
}

impl DocumentCache {
    fn new(capacity: NonZeroUsize, pushes: mpsc::Receiver<PushInfo>, keys: &Keys) -> Self {
        let (doc, tombstone) = (
            keys.memory(0, Uuid::nil()),
            keys.memory_tombstone(0, Uuid::nil()),
        );
        Self {
            entries: LruCache::new(capacity),
            pushes,
            tombstone_suffix: tombstone
                .strip_prefix(doc.as_str())
                .unwrap_or_default()
                .to_owned(),
            invalidations: 0,
            lost: false,
        }
    }

    /// Applies what Redis pushed since the last call.
    fn take_in_pushes(&mut self) {
        while let Ok(push) = self.pushes.try_recv() {
            match push.kind {
                PushKind::Invalidate => {
                    self.invalidations += 1;
                    match push.data.first() {
                        Some(Value::Array(keys)) => {
                            for key in keys {
                                let Value::BulkString(key) = key else {
                                    continue;
                                };
                                let key = String::from_utf8_lossy(key);
                                let doc = key
                                    .strip_suffix(self.tombstone_suffix.as_str())
                                    .unwrap_or(&key);
                                self.entries.pop(doc);
                            }
                        }
                        // Nil: the server flushed its data or its tracking table.
                        _ => self.entries.clear(),
                    }
                }
                PushKind::Disconnection => {
                    self.invalidations += 1;
                    self.entries.clear();
                    self.lost = true;
                }
                _ => {}
            }
        }
    }

    /// A cached document no older than [`CACHE_MAX_AGE`] and, for a found
    /// one, at least at version `at_least`.
    fn get(&mut self, key: &str, at_least: Option<u64>) -> Option<Stored<RawMemory>> {
        self.take_in_pushes();
        let (stored, cached_at) = self.entries.get(key)?;
        let fresh = cached_at.elapsed() < CACHE_MAX_AGE
            && match stored {
                Stored::Found(doc) => at_least.is_none_or(|v| doc.version >= v),
                Stored::Erased(_) | Stored::Missing => true,
            };
        fresh.then(|| stored.clone())
    }

    /// Keeps what a read from Redis found, unless an invalidation arrived
    /// since `invalidations_before` (read before the read was sent).
    fn put(&mut self, key: String, stored: &Stored<RawMemory>, invalidations_before: u64) {
        self.take_in_pushes();
        let cacheable = match stored {
            Stored::Found(doc) => doc.json.len() <= MAX_CACHED_DOCUMENT_BYTES,
            Stored::Erased(_) => true,
            // Left to the repair path to settle.
            Stored::Missing => false,
        };
        if cacheable && self.invalidations == invalidations_before && !self.lost {
            self.entries.put(key, (stored.clone(), Instant::now()));
        }
    }
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

    /// Which server's connection a thread holds: this `Documents` and its
    /// clones, told apart by their shared cache's address.
    fn worker_key(&self) -> usize {
        Arc::as_ptr(&self.generation) as usize
    }

    /// This thread's connection and its id, opened on first use and again
    /// once lost.
    async fn worker_connection(&self) -> Result<(u64, MultiplexedConnection), DocumentError> {
        if let Some(current) = self.live_worker() {
            return Ok(current);
        }
        let worker = self.open_worker().await?;
        // Another read on this thread may have opened one meanwhile: keep
        // the first, so that no read's cache goes with a connection that
        // Redis no longer tracks its keys for.
        if let Some(current) = self.live_worker() {
            return Ok(current);
        }
        let current = (worker.id, worker.connection.clone());
        WORKERS.with(|w| w.borrow_mut().insert(self.worker_key(), worker));
        Ok(current)
    }

    /// This thread's connection, unless there is none or it is known lost.
    fn live_worker(&self) -> Option<(u64, MultiplexedConnection)> {
        WORKERS.with(|w| {
            let mut workers = w.borrow_mut();
            let worker = workers.get_mut(&self.worker_key())?;
            let lost = worker.cache.as_mut().is_some_and(|c| {
                c.take_in_pushes();
                c.lost
            });
            (!lost).then(|| (worker.id, worker.connection.clone()))
        })
    }

    async fn open_worker(&self) -> Result<Worker, DocumentError> {
        let Some(capacity) = self.cache_size else {
            let connection = self.client.get_multiplexed_async_connection().await?;
            return Ok(Worker {
                id: NEXT_WORKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                connection,
                cache: None,
            });
        };
        let (sender, pushes) = mpsc::channel();
        let config = AsyncConnectionConfig::new().set_push_sender(sender);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .exec_async(&mut connection)
            .await?;
        Ok(Worker {
            id: NEXT_WORKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            connection,
            cache: Some(DocumentCache::new(capacity, pushes, &self.keys)),
        })
    }

    /// Runs `f` on the document cache of this thread's connection `id`, if
    /// that connection is still the thread's and has a cache.
    fn with_cache<R>(&self, id: u64, f: impl FnOnce(&mut DocumentCache) -> R) -> Option<R> {
        let key = self.worker_key();
        WORKERS.with(|w| {
            let mut workers = w.borrow_mut();
            let worker = workers.get_mut(&key).filter(|worker| worker.id == id)?;
            worker.cache.as_mut().map(f)
        })
    }

    /// Forgets this thread's connection `id` after a connection error, so
    /// the next read opens a new one (a multiplexed connection does not
    /// reconnect by itself); a newer one is left alone.
    fn drop_worker_connection(&self, id: u64, error: &redis::RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
            let key = self.worker_key();
            WORKERS.with(|w| {
                let mut workers = w.borrow_mut();
                if workers.get(&key).is_some_and(|worker| worker.id == id) {
                    workers.remove(&key);
                }
            });
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

    /// Puts back a memory document that generation `g` lacks, unless the
    /// projector wrote one (or erased it) meanwhile.
    pub async fn repair_memory(&self, g: i64, state: &MemoryState) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Write::Memory(state))
            .await
            .map_err(DocumentError::Repair)
    }

    pub async fn repair_session(
        &self,
        g: i64,
        state: &SessionState,
    ) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Write::Session(state))
            .await
            .map_err(DocumentError::Repair)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u64) -> Stored<RawMemory> {
        Stored::Found(RawMemory {
            owner_id: "alice".to_owned(),
            version,
            status: MemoryStatus::Active,
            json: format!("{{\"version\":{version}}}"),
        })
    }

    fn version(stored: Option<Stored<RawMemory>>) -> Option<u64> {
        match stored? {
            Stored::Found(doc) => Some(doc.version),
            Stored::Erased(v) => Some(v + 1000),
            Stored::Missing => None,
        }
    }

    fn invalidate(keys: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                keys.iter()
                    .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    fn cache() -> (DocumentCache, mpsc::Sender<PushInfo>, Keys) {
        let keys = Keys::new("t:");
        let (sender, pushes) = mpsc::channel();
        let cache = DocumentCache::new(NonZeroUsize::new(8).unwrap(), pushes, &keys);
        (cache, sender, keys)
    }

    #[test]
    fn an_invalidated_document_or_tombstone_leaves_the_cache() {
        let (mut cache, pushes, keys) = cache();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        cache.put(keys.memory(1, a), &doc(3), 0);
        cache.put(keys.memory(1, b), &doc(4), 0);
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), Some(3));

        pushes.send(invalidate(&[&keys.memory(1, a)])).unwrap();
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), None);
        assert_eq!(version(cache.get(&keys.memory(1, b), None)), Some(4));

        // Erasure writes the tombstone: its document goes too.
        pushes
            .send(invalidate(&[&keys.memory_tombstone(1, b)]))
            .unwrap();
        assert_eq!(version(cache.get(&keys.memory(1, b), None)), None);
    }

    #[test]
    fn a_flush_or_a_lost_connection_empties_the_cache() {
        let (mut cache, pushes, keys) = cache();
        let a = Uuid::from_u128(1);
        cache.put(keys.memory(1, a), &doc(1), 0);
        pushes
            .send(PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            })
            .unwrap();
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), None);

        let before = cache.invalidations;
        cache.put(keys.memory(1, a), &doc(2), before);
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), Some(2));
        pushes
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: Vec::new(),
            })
            .unwrap();
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), None);
        assert!(cache.lost);
        // Nothing is kept for a connection that is gone.
        let before = cache.invalidations;
        cache.put(keys.memory(1, a), &doc(3), before);
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), None);
    }

    #[test]
    fn a_read_overtaken_by_an_invalidation_is_not_kept() {
        let (mut cache, pushes, keys) = cache();
        let a = Uuid::from_u128(1);
        let before = cache.invalidations;
        // The read from Redis is under way when a change is pushed.
        pushes.send(invalidate(&[&keys.memory(1, a)])).unwrap();
        cache.put(keys.memory(1, a), &doc(1), before);
        assert_eq!(version(cache.get(&keys.memory(1, a), None)), None);
    }

    #[test]
    fn a_read_for_a_newer_version_passes_the_cache_and_missing_is_not_kept() {
        let (mut cache, _pushes, keys) = cache();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        cache.put(keys.memory(1, a), &doc(2), 0);
        assert_eq!(version(cache.get(&keys.memory(1, a), Some(2))), Some(2));
        assert_eq!(version(cache.get(&keys.memory(1, a), Some(3))), None);
        cache.put(keys.memory(1, b), &Stored::Erased(5), 0);
        assert_eq!(version(cache.get(&keys.memory(1, b), Some(9))), Some(1005));
        cache.put(keys.memory(1, c), &Stored::Missing, 0);
        assert!(cache.get(&keys.memory(1, c), None).is_none());
    }

    #[test]
    fn a_large_document_is_not_kept() {
        let (mut cache, _pushes, keys) = cache();
        let a = Uuid::from_u128(1);
        let Stored::Found(mut large) = doc(1) else {
            unreachable!()
        };
        large.json = "x".repeat(MAX_CACHED_DOCUMENT_BYTES + 1);
        cache.put(keys.memory(1, a), &Stored::Found(large), 0);
        assert!(cache.get(&keys.memory(1, a), None).is_none());
    }
}
