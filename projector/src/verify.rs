//! `verify`: recompute what every read model should hold from the event store
//! (with the same fold the projections use) and list every difference.

use crate::projection::{fold_memory, fold_session};
use crate::source::EventSource;
use anyhow::Context;
use event_schema::{MemoryState, MemoryStatus, SessionState, StoredEvent};
use futures::TryStreamExt;
use read_model::documents::{
    Keys, LEGACY_USER_KEYS, active_generation, recency_score, session_score, timeline_score,
};
use read_model::tables::{MEMORY_COLUMNS, MemoryRow, SESSION_COLUMNS, SessionRow, Tables};
use read_model::{DOCUMENTS, SEARCH};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::{FromRow, PgPool, Row};
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
                if let Some(state) = fold_memory(None, &events)? {
                    self.memories.insert(id, state);
                }
            }
            event_schema::session::AGGREGATE_TYPE => {
                if let Some(state) = fold_session(None, &events)? {
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
    let generation = read_model::tables::active_generation(pool)
        .await?
        .context("the search read model has no generation")?;
    let tables = Tables::of(generation.generation);
    let mut out = Vec::new();
    let memories = search_memories(pool, &tables).await?;
    let tombstones: HashMap<Uuid, i64> = sqlx::query_as(&format!(
        "SELECT id, version FROM {}",
        tables.memory_tombstones
    ))
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    for (id, want) in &expected.memories {
        out.extend(compare_memory_row(
            *id,
            want,
            memories.get(id),
            tombstones.get(id),
            generation.dimension,
        ));
    }
    for id in memories
        .keys()
        .filter(|id| !expected.memories.contains_key(id))
    {
        out.push(difference(SEARCH, "memory", *id, "a row with no events"));
    }
    out.extend(compare_session_rows(pool, &tables, expected).await?);
    out.extend(compare_keyword_statistics(pool, &tables).await?);
    Ok(out)
}

/// The keyword statistics against a count over the memory rows (which are
/// compared with the fold above): at most [`MAX_STATISTICS_DIFFERENCES`]
/// terms and owners whose counts differ.
async fn compare_keyword_statistics(
    pool: &PgPool,
    tables: &Tables,
) -> anyhow::Result<Vec<Difference>> {
    let Tables {
        memories,
        keyword_terms,
        keyword_owners,
        ..
    } = tables;
    let terms: Vec<(String, String, Option<i32>, Option<i32>)> = sqlx::query_as(&format!(
        "WITH want AS (SELECT owner_id, term, count(*)::integer AS documents
                         FROM {memories}, unnest(tsvector_to_array(search)) AS term
                        WHERE NOT deleted GROUP BY owner_id, term)
         SELECT owner_id, term, want.documents, have.documents
           FROM want FULL JOIN {keyword_terms} AS have USING (owner_id, term)
          WHERE want.documents IS DISTINCT FROM have.documents
          ORDER BY owner_id, term LIMIT {MAX_STATISTICS_DIFFERENCES}"
    ))
    .fetch_all(pool)
    .await?;
    let owners: Vec<OwnerCounts> = sqlx::query_as(&format!(
            "WITH want AS (SELECT owner_id, count(*) AS documents, sum(length(search)) AS terms
                             FROM {memories} WHERE NOT deleted GROUP BY owner_id)
             SELECT owner_id, want.documents AS want_documents, have.documents::bigint AS have_documents,
                    want.terms::bigint AS want_terms, have.terms AS have_terms
               FROM want FULL JOIN {keyword_owners} AS have USING (owner_id)
              WHERE (want.documents, want.terms::bigint) IS DISTINCT FROM (have.documents::bigint, have.terms)
              ORDER BY owner_id LIMIT {MAX_STATISTICS_DIFFERENCES}"
    ))
    .fetch_all(pool)
    .await?;
    let statistics = |owner: &str, detail: String| Difference {
        projection: SEARCH,
        aggregate: format!("keyword statistics of {owner}"),
        detail,
    };
    let mut out: Vec<Difference> = terms
        .into_iter()
        .map(|(owner, term, want, have)| {
            statistics(
                &owner,
                format!(
                    "term {term:?} counted in {} memories, held by {}",
                    have.unwrap_or(0),
                    want.unwrap_or(0)
                ),
            )
        })
        .collect();
    out.extend(owners.into_iter().map(|o| {
        statistics(
            &o.owner_id,
            format!(
                "{} memories of {} terms counted, {} of {} held",
                o.have_documents.unwrap_or(0),
                o.have_terms.unwrap_or(0),
                o.want_documents.unwrap_or(0),
                o.want_terms.unwrap_or(0)
            ),
        )
    }));
    Ok(out)
}

/// One owner's totals as counted (`have`) and as the rows hold them (`want`).
#[derive(Debug, FromRow)]
struct OwnerCounts {
    owner_id: String,
    want_documents: Option<i64>,
    have_documents: Option<i64>,
    want_terms: Option<i64>,
    have_terms: Option<i64>,
}

/// Enough to see what went wrong; a broken trigger would list every term.
const MAX_STATISTICS_DIFFERENCES: i64 = 20;

/// Every memory row of a generation, with its embedding's dimension
/// (indexed or still pending: either is searchable, ADR 21).
async fn search_memories(
    pool: &PgPool,
    tables: &Tables,
) -> anyhow::Result<HashMap<Uuid, (MemoryState, Option<i32>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMORY_COLUMNS}, vector_dims(coalesce(embedding, pending_embedding)) AS dims FROM {}",
        tables.memories
    ))
    .fetch_all(pool)
    .await?;
    let mut memories = HashMap::new();
    for row in rows {
        let state = MemoryState::from(MemoryRow::from_row(&row)?);
        memories.insert(state.id, (state, row.try_get("dims")?));
    }
    Ok(memories)
}

/// One memory's row (and tombstone) against its fold.
fn compare_memory_row(
    id: Uuid,
    want: &MemoryState,
    have: Option<&(MemoryState, Option<i32>)>,
    tombstone: Option<&i64>,
    dimension: Option<i32>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differs = |detail: String| out.push(difference(SEARCH, "memory", id, detail));
    if want.facts.status == MemoryStatus::Erased {
        if have.is_some() {
            differs("erased, but its row is still there".to_owned());
        }
        if tombstone.map(|v| *v as u64) != Some(want.version) {
            differs(format!(
                "erased at version {}, tombstone says {tombstone:?}",
                want.version
            ));
        }
        return out;
    }
    match have {
        None => differs(format!("missing (expected version {})", want.version)),
        Some((have, dims)) => {
            if have != want {
                differs(format!("row {have:?} differs from fold {want:?}"));
            }
            if *dims != dimension {
                differs(format!(
                    "embedding dimension {dims:?}, expected {dimension:?}"
                ));
            }
        }
    }
    out
}

/// Every session row of a generation against its fold.
async fn compare_session_rows(
    pool: &PgPool,
    tables: &Tables,
    expected: &Expected,
) -> anyhow::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let rows: Vec<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM {}",
        tables.sessions
    ))
    .fetch_all(pool)
    .await?;
    let mut seen = HashSet::new();
    for have in rows.into_iter().map(SessionState::from) {
        let id = have.id;
        seen.insert(id);
        match expected.sessions.get(&id) {
            None => out.push(difference(SEARCH, "session", id, "a row with no events")),
            Some(want) if have != *want => out.push(difference(
                SEARCH,
                "session",
                id,
                format!("row differs from fold {want:?}"),
            )),
            Some(_) => {}
        }
    }
    for id in expected.sessions.keys().filter(|id| !seen.contains(id)) {
        out.push(difference(SEARCH, "session", *id, "missing"));
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
    let g = active_generation(redis, keys).await?;
    let mut out = Vec::new();
    for (id, want) in &expected.memories {
        out.extend(verify_memory_document(redis, keys, g, *id, want).await?);
    }
    out.extend(verify_timelines(redis, keys, g, expected).await?);
    for (id, want) in &expected.sessions {
        out.extend(verify_session_document(redis, keys, g, *id, want).await?);
    }
    // One pass over the generation's keys, in large steps: the Redis may
    // hold far more than this deployment's keys.
    let all = scan(redis, &format!("{}*", keys.generation_prefix(g))).await?;
    out.extend(verify_owner_indexes(redis, keys, g, expected, &all).await?);
    out.extend(documents_without_events(keys, g, expected, &all));
    Ok(out)
}

/// One memory's document, tombstone, recent-list entry and tag entries.
async fn verify_memory_document(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    id: Uuid,
    want: &MemoryState,
) -> anyhow::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let mut differs = |detail: String| out.push(difference(DOCUMENTS, "memory", id, detail));
    let doc: Option<String> = redis.get(keys.memory(g, id)).await?;
    let recent: Option<f64> = redis
        .zscore(keys.recent(g, &want.owner_id), id.to_string())
        .await?;
    if want.facts.status == MemoryStatus::Erased {
        if doc.is_some() {
            differs("erased, but its document is still there".to_owned());
        }
        let tombstone: Option<u64> = redis.get(keys.memory_tombstone(g, id)).await?;
        if tombstone != Some(want.version) {
            differs(format!(
                "erased at version {}, tombstone says {tombstone:?}",
                want.version
            ));
        }
        if recent.is_some() {
            differs("erased, but still in the recent list".to_owned());
        }
        return Ok(out);
    }
    match doc.map(|d| serde_json::from_str::<MemoryState>(&d)) {
        None => differs(format!("missing (expected version {})", want.version)),
        Some(Err(e)) => differs(format!("unreadable document: {e}")),
        Some(Ok(have)) if have != *want => {
            differs(format!("document {have:?} differs from fold {want:?}"))
        }
        Some(Ok(_)) => {}
    }
    let active = want.facts.status == MemoryStatus::Active;
    let want_recent = active.then(|| recency_score(want) as f64);
    if recent != want_recent {
        differs(format!(
            "recent-list score {recent:?}, expected {want_recent:?}"
        ));
    }
    for tag in &want.facts.tags {
        let member: bool = redis
            .sismember(keys.tag(g, &want.owner_id, tag), id.to_string())
            .await?;
        if member != active {
            differs(format!(
                "tag index {tag:?}: member {member}, expected {active}"
            ));
        }
    }
    Ok(out)
}

/// Every timeline holds exactly the active memories of its session.
async fn verify_timelines(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    expected: &Expected,
) -> anyhow::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let mut timelines: HashMap<Uuid, Vec<(Uuid, f64)>> = HashMap::new();
    for (id, state) in &expected.memories {
        if let (MemoryStatus::Active, Some(session)) = (state.facts.status, state.facts.session_id)
        {
            let score = timeline_score(state) as f64;
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
                DOCUMENTS,
                "session",
                session,
                format!("timeline {have:?}, expected {want:?}"),
            ));
        }
    }
    Ok(out)
}

/// One session's document and its entry in its owner's session list.
async fn verify_session_document(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    id: Uuid,
    want: &SessionState,
) -> anyhow::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let mut differs = |detail: String| out.push(difference(DOCUMENTS, "session", id, detail));
    let doc: Option<String> = redis.get(keys.session(g, id)).await?;
    match doc.map(|d| serde_json::from_str::<SessionState>(&d)) {
        None => differs("missing".to_owned()),
        Some(Err(e)) => differs(format!("unreadable document: {e}")),
        Some(Ok(have)) if have != *want => {
            differs(format!("document {have:?} differs from fold {want:?}"))
        }
        Some(Ok(_)) => {}
    }
    let listed: Option<f64> = redis
        .zscore(keys.sessions(g, &want.owner_id), id.to_string())
        .await?;
    if listed != Some(session_score(want) as f64) {
        differs(format!("user session list score {listed:?}"));
    }
    Ok(out)
}

/// No document may exist without events behind it.
fn documents_without_events(
    keys: &Keys,
    g: i64,
    expected: &Expected,
    generation_keys: &[String],
) -> Vec<Difference> {
    let documents = format!("{}memory:", keys.generation_prefix(g));
    generation_keys
        .iter()
        .filter_map(|key| key.strip_prefix(&documents))
        .filter(|rest| !rest.ends_with(":erased"))
        .filter_map(|rest| Uuid::parse_str(rest).ok())
        .filter(|id| !expected.memories.contains_key(id))
        .map(|id| difference(DOCUMENTS, "memory", id, "a document with no events"))
        .collect()
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
    let mut out: Vec<Difference> = legacy_keys(keys, g, generation_keys).into_iter().collect();
    let owners = format!("{}owner:", keys.generation_prefix(g));
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
                projection: DOCUMENTS,
                aggregate: format!("key {key:?}"),
                detail: "not a key of this layout".to_owned(),
            }),
        }
    }
    let want = index_members(keys, g, expected);
    out.extend(stray_members(redis, &indexes, &want).await?);
    Ok(out)
}

/// Keys of key layout 1 left in generation `g`, as one difference.
fn legacy_keys(keys: &Keys, g: i64, generation_keys: &[String]) -> Option<Difference> {
    let legacy_prefix = format!("{}{LEGACY_USER_KEYS}", keys.generation_prefix(g));
    let legacy: Vec<&String> = generation_keys
        .iter()
        .filter(|key| key.starts_with(&legacy_prefix))
        .collect();
    let first = legacy.first()?;
    Some(Difference {
        projection: DOCUMENTS,
        aggregate: format!("generation {g}"),
        detail: format!(
            "{} keys of key layout 1 (e.g. {first:?}); run `projector rebuild-projections --projection documents`",
            legacy.len(),
        ),
    })
}

/// What each per-owner index should hold, by key.
fn index_members(keys: &Keys, g: i64, expected: &Expected) -> HashMap<String, HashSet<String>> {
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
    want
}

/// Members of `indexes` (key, whether a sorted set) that `want` does not
/// put there, read pipelined, a bounded batch per round trip.
async fn stray_members(
    redis: &mut ConnectionManager,
    indexes: &[(&String, bool)],
    want: &HashMap<String, HashSet<String>>,
) -> anyhow::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let none = HashSet::new();
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
                    projection: DOCUMENTS,
                    aggregate: format!("key {key:?}"),
                    detail: format!("holds {strays:?}, which do not belong there"),
                });
            }
        }
    }
    Ok(out)
}
