//! `verify`: recompute what every read model should hold from the event store
//! (with the same fold the projections use) and list every difference.

use crate::projection::documents::{Keys, LEGACY_USER_KEYS, active_generation};
use crate::projection::search::{as_object as object, memory_from_row, session_status_text};
use crate::projection::{fold_memory, fold_session};
use crate::source::EventSource;
use event_schema::{MemoryState, MemoryStatus, SessionState, StoredEvent};
use futures::TryStreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;

/// One way a read model differs from the fold of the event store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: &'static str,
    pub aggregate: String,
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.projection, self.aggregate, self.detail
        )
    }
}

/// The expected state of everything, folded from the store.
#[derive(Debug, Default)]
pub struct Expected {
    pub memories: HashMap<Uuid, MemoryState>,
    pub sessions: HashMap<Uuid, SessionState>,
}

impl Expected {
    pub async fn fold(source: &EventSource) -> anyhow::Result<Self> {
        let mut expected = Self::default();
        let mut stream = source.by_aggregate();
        let mut current: Vec<StoredEvent> = Vec::new();
        while let Some(event) = stream.try_next().await? {
            if current.first().is_some_and(|first| {
                first.aggregate_id != event.aggregate_id
                    || first.aggregate_type != event.aggregate_type
            }) {
                expected.absorb(std::mem::take(&mut current))?;
            }
            current.push(event);
        }
        expected.absorb(current)?;
        Ok(expected)
    }

    fn absorb(&mut self, events: Vec<StoredEvent>) -> anyhow::Result<()> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let id = Uuid::parse_str(&first.aggregate_id)?;
        match first.aggregate_type.as_str() {
            event_schema::memory::AGGREGATE_TYPE => {
                if let Some(state) =
                    fold_memory(None, &events).map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    self.memories.insert(id, state);
                }
            }
            event_schema::session::AGGREGATE_TYPE => {
                if let Some(state) =
                    fold_session(None, &events).map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    self.sessions.insert(id, state);
                }
            }
            other => anyhow::bail!("unknown aggregate type {other:?} in the event store"),
        }
        Ok(())
    }
}

fn difference(
    projection: &'static str,
    kind: &str,
    id: Uuid,
    detail: impl Into<String>,
) -> Difference {
    Difference {
        projection,
        aggregate: format!("{kind} {id}"),
        detail: detail.into(),
    }
}

/// Compares the active search generation with `expected`.
pub async fn verify_search(pool: &PgPool, expected: &Expected) -> anyhow::Result<Vec<Difference>> {
    const P: &str = "search";
    let mut out = Vec::new();
    let (g, dimension): (i32, Option<i32>) = sqlx::query_as(
        "SELECT generation, dimension FROM projection_state WHERE projection = 'search'",
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(&format!(
        "SELECT id, owner_id, session_id, title, content, tags, metadata, occurred_at, created_at, updated_at,
                deleted, version, vector_dims(embedding) AS dims FROM memories_g{g}"
    ))
    .fetch_all(pool)
    .await?;
    let mut actual: HashMap<Uuid, (MemoryState, Option<i32>)> = HashMap::new();
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let state = memory_from_row(id, &row)?;
        actual.insert(id, (state, row.try_get("dims")?));
    }
    let tombstones: HashMap<Uuid, i64> =
        sqlx::query_as(&format!("SELECT id, version FROM memory_tombstones_g{g}"))
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();

    for (id, want) in &expected.memories {
        if want.facts.status == MemoryStatus::Erased {
            if actual.contains_key(id) {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    "erased, but its row is still there",
                ));
            }
            if tombstones.get(id).map(|v| *v as u64) != Some(want.version) {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    format!(
                        "erased at version {}, tombstone says {:?}",
                        want.version,
                        tombstones.get(id)
                    ),
                ));
            }
            continue;
        }
        match actual.get(id) {
            None => out.push(difference(
                P,
                "memory",
                *id,
                format!("missing (expected version {})", want.version),
            )),
            Some((have, dims)) => {
                if have != want {
                    out.push(difference(
                        P,
                        "memory",
                        *id,
                        format!("row {have:?} differs from fold {want:?}"),
                    ));
                }
                if *dims != dimension {
                    out.push(difference(
                        P,
                        "memory",
                        *id,
                        format!("embedding dimension {dims:?}, expected {dimension:?}"),
                    ));
                }
            }
        }
    }
    for id in actual
        .keys()
        .filter(|id| !expected.memories.contains_key(id))
    {
        out.push(difference(P, "memory", *id, "a row with no events"));
    }

    let rows = sqlx::query(&format!(
        "SELECT id, owner_id, title, metadata, status, started_at, updated_at, ended_at, version FROM sessions_g{g}"
    ))
    .fetch_all(pool)
    .await?;
    let mut seen = HashSet::new();
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        seen.insert(id);
        let Some(want) = expected.sessions.get(&id) else {
            out.push(difference(P, "session", id, "a row with no events"));
            continue;
        };
        let version: i64 = row.try_get("version")?;
        let status: String = row.try_get("status")?;
        let owner: String = row.try_get("owner_id")?;
        let title: String = row.try_get("title")?;
        let metadata = object(row.try_get("metadata")?);
        let same = owner == want.owner_id
            && title == want.facts.title
            && metadata == want.facts.metadata
            && status == session_status_text(want.facts.status)
            && row.try_get::<chrono::DateTime<chrono::Utc>, _>("started_at")? == want.started_at
            && row.try_get::<chrono::DateTime<chrono::Utc>, _>("updated_at")? == want.updated_at
            && row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("ended_at")?
                == want.ended_at
            && version as u64 == want.version;
        if !same {
            out.push(difference(
                P,
                "session",
                id,
                format!("row differs from fold {want:?}"),
            ));
        }
    }
    for id in expected.sessions.keys().filter(|id| !seen.contains(id)) {
        out.push(difference(P, "session", *id, "missing"));
    }
    Ok(out)
}

/// Compares the active Redis generation with `expected`: documents,
/// tombstones, and the membership and scores of every index.
pub async fn verify_documents(
    redis: &mut ConnectionManager,
    keys: &Keys,
    expected: &Expected,
) -> anyhow::Result<Vec<Difference>> {
    const P: &str = "documents";
    let mut out = Vec::new();
    let g = active_generation(redis, keys).await?;
    for (id, want) in &expected.memories {
        let doc: Option<String> = redis.get(keys.memory(g, *id)).await?;
        let recent: Option<f64> = redis
            .zscore(keys.recent(g, &want.owner_id), id.to_string())
            .await?;
        if want.facts.status == MemoryStatus::Erased {
            if doc.is_some() {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    "erased, but its document is still there",
                ));
            }
            let tombstone: Option<u64> = redis.get(keys.memory_tombstone(g, *id)).await?;
            if tombstone != Some(want.version) {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    format!(
                        "erased at version {}, tombstone says {tombstone:?}",
                        want.version
                    ),
                ));
            }
            if recent.is_some() {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    "erased, but still in the recent list",
                ));
            }
            continue;
        }
        match doc.map(|d| serde_json::from_str::<MemoryState>(&d)) {
            None => out.push(difference(
                P,
                "memory",
                *id,
                format!("missing (expected version {})", want.version),
            )),
            Some(Err(e)) => out.push(difference(
                P,
                "memory",
                *id,
                format!("unreadable document: {e}"),
            )),
            Some(Ok(have)) if have != *want => out.push(difference(
                P,
                "memory",
                *id,
                format!("document {have:?} differs from fold {want:?}"),
            )),
            Some(Ok(_)) => {}
        }
        let active = want.facts.status == MemoryStatus::Active;
        let want_recent = active.then(|| want.updated_at.timestamp_millis() as f64);
        if recent != want_recent {
            out.push(difference(
                P,
                "memory",
                *id,
                format!("recent-list score {recent:?}, expected {want_recent:?}"),
            ));
        }
        for tag in &want.facts.tags {
            let member: bool = redis
                .sismember(keys.tag(g, &want.owner_id, tag), id.to_string())
                .await?;
            if member != active {
                out.push(difference(
                    P,
                    "memory",
                    *id,
                    format!("tag index {tag:?}: member {member}, expected {active}"),
                ));
            }
        }
    }
    // Every timeline holds exactly the active memories of its session.
    let mut timelines: HashMap<Uuid, Vec<(Uuid, f64)>> = HashMap::new();
    for (id, state) in &expected.memories {
        if let (MemoryStatus::Active, Some(session)) = (state.facts.status, state.facts.session_id)
        {
            let score = state
                .facts
                .occurred_at
                .unwrap_or(state.created_at)
                .timestamp_millis() as f64;
            timelines.entry(session).or_default().push((*id, score));
        }
    }
    let mut sessions_with_timelines: HashSet<Uuid> = expected.sessions.keys().copied().collect();
    sessions_with_timelines.extend(timelines.keys().copied());
    for session in sessions_with_timelines {
        let mut have: Vec<(String, f64)> = redis
            .zrange_withscores(keys.timeline(g, session), 0, -1)
            .await?;
        let mut want: Vec<(String, f64)> = timelines
            .remove(&session)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, score)| (id.to_string(), score))
            .collect();
        have.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        if have != want {
            out.push(difference(
                P,
                "session",
                session,
                format!("timeline {have:?}, expected {want:?}"),
            ));
        }
    }
    for (id, want) in &expected.sessions {
        let doc: Option<String> = redis.get(keys.session(g, *id)).await?;
        match doc.map(|d| serde_json::from_str::<SessionState>(&d)) {
            None => out.push(difference(P, "session", *id, "missing")),
            Some(Err(e)) => out.push(difference(
                P,
                "session",
                *id,
                format!("unreadable document: {e}"),
            )),
            Some(Ok(have)) if have != *want => out.push(difference(
                P,
                "session",
                *id,
                format!("document {have:?} differs from fold {want:?}"),
            )),
            Some(Ok(_)) => {}
        }
        let listed: Option<f64> = redis
            .zscore(keys.sessions(g, &want.owner_id), id.to_string())
            .await?;
        if listed != Some(want.started_at.timestamp_millis() as f64) {
            out.push(difference(
                P,
                "session",
                *id,
                format!("user session list score {listed:?}"),
            ));
        }
    }
    // One pass over the generation's keys, in large steps: the Redis may
    // hold far more than this deployment's keys.
    let generation = keys.generation_prefix(g);
    let all = scan(redis, &format!("{generation}*")).await?;
    out.extend(verify_owner_indexes(redis, keys, g, expected, &all).await?);
    // No document may exist without events behind it.
    let documents = format!("{generation}memory:");
    for rest in all.iter().filter_map(|key| key.strip_prefix(&documents)) {
        if rest.ends_with(":erased") {
            continue;
        }
        if let Ok(id) = Uuid::parse_str(rest)
            && !expected.memories.contains_key(&id)
        {
            out.push(difference(P, "memory", id, "a document with no events"));
        }
    }
    Ok(out)
}

async fn scan(redis: &mut ConnectionManager, pattern: &str) -> anyhow::Result<Vec<String>> {
    let options = redis::ScanOptions::default()
        .with_pattern(pattern)
        .with_count(1000);
    let mut iter: redis::AsyncIter<String> = redis.scan_options(options).await?;
    let mut all = Vec::new();
    while let Some(key) = iter.next_item().await {
        all.push(key?);
    }
    Ok(all)
}

/// Every per-owner index holds only what `expected` puts there: a memory or
/// session of another owner (or of nobody) in a user's recent list, tag set
/// or session list is a difference, as is any key left by key layout 1.
/// (Entries that are missing are reported per aggregate above.)
async fn verify_owner_indexes(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    expected: &Expected,
    generation_keys: &[String],
) -> anyhow::Result<Vec<Difference>> {
    const P: &str = "documents";
    let mut out = Vec::new();
    let generation = keys.generation_prefix(g);
    let legacy_prefix = format!("{generation}{LEGACY_USER_KEYS}");
    let legacy: Vec<&String> = generation_keys
        .iter()
        .filter(|key| key.starts_with(&legacy_prefix))
        .collect();
    if !legacy.is_empty() {
        out.push(Difference {
            projection: P,
            aggregate: format!("generation {g}"),
            detail: format!(
                "{} keys of key layout 1 (e.g. {:?}); run `projector rebuild-projections --projection documents`",
                legacy.len(),
                legacy[0]
            ),
        });
    }
    let mut want: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, memory) in &expected.memories {
        if memory.facts.status != MemoryStatus::Active {
            continue;
        }
        let owner = &memory.owner_id;
        want.entry(keys.recent(g, owner))
            .or_default()
            .insert(id.to_string());
        for tag in &memory.facts.tags {
            want.entry(keys.tag(g, owner, tag))
                .or_default()
                .insert(id.to_string());
        }
    }
    for (id, session) in &expected.sessions {
        want.entry(keys.sessions(g, &session.owner_id))
            .or_default()
            .insert(id.to_string());
    }
    let owners = format!("{generation}owner:");
    let mut indexes: Vec<(&String, bool)> = Vec::new();
    for key in generation_keys
        .iter()
        .filter(|key| key.starts_with(&owners))
    {
        let kind = key
            .strip_prefix(&owners)
            .and_then(|rest| rest.split_once(':'))
            .map_or("", |(_, kind)| kind);
        match kind {
            "recent" | "sessions" => indexes.push((key, true)),
            tag if tag.starts_with("tag:") => indexes.push((key, false)),
            _ => out.push(Difference {
                projection: P,
                aggregate: format!("key {key:?}"),
                detail: "not a key of this layout".to_owned(),
            }),
        }
    }
    let none = HashSet::new();
    // Pipelined, a bounded batch per round trip.
    for chunk in indexes.chunks(500) {
        let mut pipe = redis::pipe();
        for (key, sorted) in chunk {
            if *sorted {
                pipe.zrange(*key, 0, -1);
            } else {
                pipe.smembers(*key);
            }
        }
        let members: Vec<Vec<String>> = pipe.query_async(redis).await?;
        for ((key, _), members) in chunk.iter().zip(members) {
            let allowed = want.get(*key).unwrap_or(&none);
            let mut strays: Vec<&String> =
                members.iter().filter(|m| !allowed.contains(*m)).collect();
            if !strays.is_empty() {
                strays.sort();
                out.push(Difference {
                    projection: P,
                    aggregate: format!("key {key:?}"),
                    detail: format!("holds {strays:?}, which do not belong there"),
                });
            }
        }
    }
    Ok(out)
}
