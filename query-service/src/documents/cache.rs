//! Each HTTP worker's cache of memory documents, kept current by the
//! invalidations Redis pushes on the worker's connection.

use super::{RawMemory, Stored};
use lru::LruCache;
use read_model::documents::Keys;
use redis::{PushInfo, PushKind, Value};
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The longest a cached document is served before it is read from Redis
/// again. Invalidations keep the cache current; this bounds what a
/// connection that died without a word (no reset: no invalidations and no
/// error) could leave behind, and makes a worker find out within this time.
const CACHE_MAX_AGE: Duration = Duration::from_secs(5);

/// Documents larger than this are not cached: with the count bound, it
/// caps a worker's cache at `SB_QUERY_DOCUMENT_CACHE_SIZE` × 8 KiB (~80 MB
/// at the default; memories are mostly far smaller).
const MAX_CACHED_DOCUMENT_BYTES: usize = 8 * 1024;

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
pub(super) struct DocumentCache {
    entries: LruCache<String, (Stored<RawMemory>, Instant)>,
    pushes: mpsc::Receiver<PushInfo>,
    /// What a tombstone's key adds to its document's key.
    tombstone_suffix: String,
    /// Invalidations taken in so far (see above).
    pub(super) invalidations: u64,
    /// The connection is gone: open a new one, with an empty cache.
    pub(super) lost: bool,
}

impl DocumentCache {
    pub(super) fn new(
        capacity: NonZeroUsize,
        pushes: mpsc::Receiver<PushInfo>,
        keys: &Keys,
    ) -> Self {
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
    pub(super) fn take_in_pushes(&mut self) {
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
    pub(super) fn get(&mut self, key: &str, at_least: Option<u64>) -> Option<Stored<RawMemory>> {
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
    pub(super) fn put(
        &mut self,
        key: String,
        stored: &Stored<RawMemory>,
        invalidations_before: u64,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use event_schema::MemoryStatus;

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
