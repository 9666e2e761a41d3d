//! Reads of the Redis document model the projector maintains (key layout in
//! [`projector::projection::documents`]): documents by id, session timelines,
//! and the repair of a document that went missing.

use event_schema::{MemoryState, SessionState};
use projector::projection::documents::{Keys, Missing, active_generation, write_if_absent};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    redis: ConnectionManager,
    keys: Keys,
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
    pub fn new(redis: ConnectionManager, keys: Keys) -> Self {
        Self { redis, keys }
    }

    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    pub async fn memory(&self, id: Uuid) -> Result<(i64, Stored<MemoryState>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = active_generation(&mut redis, &self.keys).await?;
        let (doc, erased): (Option<String>, Option<u64>) = redis::pipe()
            .get(self.keys.memory(g, id))
            .get(self.keys.memory_tombstone(g, id))
            .query_async(&mut redis)
            .await?;
        let stored = match (doc, erased) {
            (_, Some(version)) => Stored::Erased(version),
            (Some(doc), None) => Stored::Found(serde_json::from_str(&doc)?),
            (None, None) => Stored::Missing,
        };
        Ok((g, stored))
    }

    pub async fn session(&self, id: Uuid) -> Result<(i64, Option<SessionState>), DocumentError> {
        let mut redis = self.redis.clone();
        let g = active_generation(&mut redis, &self.keys).await?;
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
        let g = active_generation(&mut redis, &self.keys).await?;
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
