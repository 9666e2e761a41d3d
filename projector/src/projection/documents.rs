//! The document read model in Redis: the memory and session documents the
//! query service returns by id, session timelines and per-user recent lists
//! (sorted sets), per-user tag sets, and a user's sessions.
//!
//! Keys, under the configured prefix `P` and the active generation `G` (the
//! value of `P documents:generation`); `<owner>` and `<tag>` are
//! percent-encoded ([`encode`]):
//!
//! | key | value |
//! | --- | --- |
//! | `P gG:memory:<id>` | the memory document (JSON of `MemoryState`) |
//! | `P gG:memory:<id>:erased` | the version an erased memory ended at |
//! | `P gG:session:<id>` | the session document (JSON of `SessionState`) |
//! | `P gG:session:<id>:timeline` | zset of its active memories, by occurred-at or created-at (ms) |
//! | `P gG:owner:<owner>:recent` | zset of the owner's active memories, by updated-at (ms) |
//! | `P gG:owner:<owner>:tag:<tag>` | set of the owner's active memories with that tag |
//! | `P gG:owner:<owner>:sessions` | zset of the owner's sessions, by started-at (ms) |
//!
//! User ids and tags may contain `:` (a user `x:tag:y` and a user `x` with
//! the tag `y`), so they are encoded: an encoded value has no `:`, and one
//! user's keys are exactly those under `P gG:owner:<owner>:`. This is key
//! layout 2; layout 1 put the raw values under `P gG:user:`, where two
//! users' keys could be the same key. A generation of layout 1 is moved to
//! layout 2 by `projector rebuild-projections --projection documents`, and
//! `projector verify` reports any `user:` key left ([`LEGACY_USER_KEYS`]).
//!
//! Every write is one Lua script: compare the stored version, write the
//! document and move its index entries, atomically. The script encodes the
//! owner and tags as [`encode`] does.

use super::{Applied, Projection, ProjectionError, fold_memory, fold_session, pending, poison};
use crate::source::EventSource;
use event_schema::{MemoryState, MemoryStatus, SessionState, StoredEvent};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;
use uuid::Uuid;

pub const NAME: &str = "documents";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("documents.lua")));

/// How often a write that lost a compare-and-set is reloaded and retried
/// before the batch fails (and is retried as a whole).
const MAX_CAS_ATTEMPTS: usize = 8;

/// The segment under which key layout 1 kept a user's indexes, with the raw
/// user id and tag: any key under `P gG:user:` is a leftover of that layout.
pub const LEGACY_USER_KEYS: &str = "user:";

/// What stays as it is in an encoded key segment: ASCII letters, digits and
/// `- _ . ~` (RFC 3986's unreserved set). Everything else, `:` and `%`
/// included, becomes `%XX` per UTF-8 byte, so encoded segments never hold
/// the separator and two different values never encode alike.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A user id or tag as it appears in a key; the Lua script's `enc` does the
/// same byte for byte.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, KEY_SEGMENT).to_string()
}

/// Key layout under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn generation_pointer(&self) -> String {
        format!("{}documents:generation", self.prefix)
    }

    pub fn generation_prefix(&self, g: i64) -> String {
        format!("{}g{g}:", self.prefix)
    }

    pub fn memory(&self, g: i64, id: Uuid) -> String {
        format!("{}g{g}:memory:{id}", self.prefix)
    }

    pub fn memory_tombstone(&self, g: i64, id: Uuid) -> String {
        format!("{}g{g}:memory:{id}:erased", self.prefix)
    }

    pub fn session(&self, g: i64, id: Uuid) -> String {
        format!("{}g{g}:session:{id}", self.prefix)
    }

    pub fn timeline(&self, g: i64, session: Uuid) -> String {
        format!("{}g{g}:session:{session}:timeline", self.prefix)
    }

    /// Every key of one owner's indexes starts with this.
    pub fn owner_prefix(&self, g: i64, owner: &str) -> String {
        format!("{}g{g}:owner:{}:", self.prefix, encode(owner))
    }

    pub fn recent(&self, g: i64, owner: &str) -> String {
        format!("{}recent", self.owner_prefix(g, owner))
    }

    pub fn tag(&self, g: i64, owner: &str, tag: &str) -> String {
        format!("{}tag:{}", self.owner_prefix(g, owner), encode(tag))
    }

    pub fn sessions(&self, g: i64, owner: &str) -> String {
        format!("{}sessions", self.owner_prefix(g, owner))
    }
}

/// The active generation; 1 before any rebuild.
pub async fn active_generation(
    redis: &mut ConnectionManager,
    keys: &Keys,
) -> Result<i64, redis::RedisError> {
    let value: Option<i64> = redis.get(keys.generation_pointer()).await?;
    Ok(value.unwrap_or(1))
}

/// A document to restore where its key went missing: see [`write_if_absent`].
#[derive(Debug, Clone, Copy)]
pub enum Missing<'a> {
    Memory(&'a MemoryState),
    Session(&'a SessionState),
}

/// Writes a document, with its index entries, into generation `g` only if
/// that generation holds neither it nor an erasure tombstone: the query
/// service's repair of a key that is missing (Redis restarted without its
/// data, say) from the read database. The same compare-and-set as the
/// projector's own writes, expecting "absent", so a repair never overwrites
/// what the projector wrote, and a later event is applied on top of it as
/// usual. Returns whether it wrote.
pub async fn write_if_absent(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    missing: Missing<'_>,
) -> Result<bool, ProjectionError> {
    let write = match missing {
        Missing::Memory(state) => Write::Memory(state),
        Missing::Session(state) => Write::Session(state),
    };
    let args = ScriptArgs::of(g, 0, write)?;
    run_script(redis, keys, args).await
}

/// Runs the compare-and-set script once; false when the stored version was
/// not the expected one (or an erasure tombstone was there).
async fn run_script(
    redis: &mut ConnectionManager,
    keys: &Keys,
    args: ScriptArgs,
) -> Result<bool, ProjectionError> {
    let outcome: i64 = SCRIPT
        .key(keys.generation_pointer())
        .arg(keys.prefix())
        .arg(args.kind)
        .arg(args.id.to_string())
        .arg(args.expected)
        .arg(args.version)
        .arg(args.doc)
        .arg(args.timeline)
        .arg(args.recency)
        .arg(args.generation)
        .invoke_async(redis)
        .await?;
    Ok(outcome == -1)
}

#[derive(Debug, Clone)]
pub struct DocumentProjection {
    redis: ConnectionManager,
    keys: Keys,
    source: EventSource,
}

/// A write the script performs: expected version, then the new state.
pub(crate) enum Write<'a> {
    Memory(&'a MemoryState),
    Session(&'a SessionState),
}

impl DocumentProjection {
    pub fn new(redis: ConnectionManager, keys: Keys, source: EventSource) -> Self {
        Self {
            redis,
            keys,
            source,
        }
    }

    /// Applies one event to generation `g` (`None`: the active one).
    pub(crate) async fn apply_one(
        &self,
        event: &StoredEvent,
        g: Option<i64>,
        applied: &mut Applied,
    ) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|_| poison(event, "aggregate id is not a uuid"))?;
        let mut redis = self.redis.clone();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let generation = match g {
                Some(g) => g,
                None => active_generation(&mut redis, &self.keys).await?,
            };
            let mut counted = Applied::default();
            let written = match event.aggregate_type.as_str() {
                event_schema::memory::AGGREGATE_TYPE => {
                    let tombstone: Option<u64> = redis
                        .get(self.keys.memory_tombstone(generation, id))
                        .await?;
                    if tombstone.is_some() {
                        counted.duplicates += 1;
                        None
                    } else {
                        let stored: Option<String> =
                            redis.get(self.keys.memory(generation, id)).await?;
                        let state: Option<MemoryState> = stored
                            .map(|doc| serde_json::from_str(&doc))
                            .transpose()
                            .map_err(|e| {
                                ProjectionError::Transient(format!("stored memory document: {e}"))
                            })?;
                        let version = state.as_ref().map_or(0, |s| s.version);
                        let todo = pending(&self.source, version, event, &mut counted).await?;
                        if todo.is_empty() {
                            None
                        } else {
                            let next = fold_memory(state, &todo)?
                                .ok_or_else(|| poison(event, "nothing to fold"))?;
                            Some(
                                self.write(&mut redis, generation, version, Write::Memory(&next))
                                    .await?,
                            )
                        }
                    }
                }
                event_schema::session::AGGREGATE_TYPE => {
                    let stored: Option<String> =
                        redis.get(self.keys.session(generation, id)).await?;
                    let state: Option<SessionState> = stored
                        .map(|doc| serde_json::from_str(&doc))
                        .transpose()
                        .map_err(|e| {
                            ProjectionError::Transient(format!("stored session document: {e}"))
                        })?;
                    let version = state.as_ref().map_or(0, |s| s.version);
                    let todo = pending(&self.source, version, event, &mut counted).await?;
                    if todo.is_empty() {
                        None
                    } else {
                        let next = fold_session(state, &todo)?
                            .ok_or_else(|| poison(event, "nothing to fold"))?;
                        Some(
                            self.write(&mut redis, generation, version, Write::Session(&next))
                                .await?,
                        )
                    }
                }
                other => return Err(poison(event, &format!("unknown aggregate type {other:?}"))),
            };
            // `Some(false)`: another writer got there first; reload and retry.
            if written != Some(false) {
                applied.add(counted);
                return Ok(());
            }
        }
        Err(ProjectionError::Transient(format!(
            "document {id} kept changing under this writer"
        )))
    }

    /// Runs the compare-and-set script; false when the stored version moved.
    pub(crate) async fn write(
        &self,
        redis: &mut ConnectionManager,
        g: i64,
        expected: u64,
        write: Write<'_>,
    ) -> Result<bool, ProjectionError> {
        let args = ScriptArgs::of(g, expected, write)?;
        run_script(redis, &self.keys, args).await
    }

    /// Writes many documents into a generation nobody else writes (a
    /// rebuild's fresh one), pipelined.
    pub(crate) async fn bulk_write<'a>(
        &self,
        g: i64,
        writes: impl Iterator<Item = Write<'a>>,
    ) -> Result<u64, ProjectionError> {
        let mut redis = self.redis.clone();
        SCRIPT.load_async(&mut redis).await?;
        let mut pipe = redis::pipe();
        let (mut queued, mut written) = (0usize, 0u64);
        for write in writes {
            let args = ScriptArgs::of(g, 0, write)?;
            pipe.cmd("EVALSHA")
                .arg(SCRIPT.get_hash())
                .arg(1)
                .arg(self.keys.generation_pointer())
                .arg(self.keys.prefix())
                .arg(args.kind)
                .arg(args.id.to_string())
                .arg(args.expected)
                .arg(args.version)
                .arg(args.doc)
                .arg(args.timeline)
                .arg(args.recency)
                .arg(args.generation)
                .ignore();
            queued += 1;
            if queued == 1000 {
                let () = pipe.query_async(&mut redis).await?;
                pipe = redis::pipe();
                written += queued as u64;
                queued = 0;
            }
        }
        if queued > 0 {
            let () = pipe.query_async(&mut redis).await?;
            written += queued as u64;
        }
        Ok(written)
    }
}

/// The script's arguments for one write.
struct ScriptArgs {
    kind: &'static str,
    id: Uuid,
    expected: u64,
    version: u64,
    doc: String,
    timeline: i64,
    recency: i64,
    generation: i64,
}

impl ScriptArgs {
    fn of(generation: i64, expected: u64, write: Write<'_>) -> Result<Self, ProjectionError> {
        Ok(match write {
            Write::Memory(state) => Self {
                kind: "memory",
                id: state.id,
                expected,
                version: state.version,
                // An erased memory is written as no document: the script
                // deletes it and leaves a tombstone.
                doc: if state.facts.status == MemoryStatus::Erased {
                    String::new()
                } else {
                    to_json(state)?
                },
                timeline: state
                    .facts
                    .occurred_at
                    .unwrap_or(state.created_at)
                    .timestamp_millis(),
                recency: state.updated_at.timestamp_millis(),
                generation,
            },
            Write::Session(state) => Self {
                kind: "session",
                id: state.id,
                expected,
                version: state.version,
                doc: to_json(state)?,
                timeline: state.started_at.timestamp_millis(),
                recency: state.updated_at.timestamp_millis(),
                generation,
            },
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ProjectionError> {
    serde_json::to_string(value).map_err(|e| ProjectionError::Transient(e.to_string()))
}

#[async_trait::async_trait]
impl Projection for DocumentProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, events: &[StoredEvent]) -> Result<Applied, ProjectionError> {
        let mut applied = Applied::default();
        for event in events {
            self.apply_one(event, None, &mut applied).await?;
        }
        Ok(applied)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encoded_segments_hold_no_separator_and_keep_plain_ids_readable() {
        assert_eq!(encode("alice"), "alice");
        assert_eq!(encode("x:tag:y"), "x%3Atag%3Ay");
        assert_eq!(encode("50%"), "50%25");
        assert_eq!(encode("café/to-do_1.0~"), "caf%C3%A9%2Fto-do_1.0~");
    }

    #[test]
    fn no_two_users_or_tags_share_a_key_or_a_key_prefix() {
        let keys = Keys::new("p:");
        // Layout 1: `user:x:tag:y:recent` was both user `x:tag:y`'s recent
        // list and user `x`'s tag `y:recent`.
        let owners = ["x", "x:tag:y", "x:tag", "x%3Atag%3Ay"];
        let tags = ["y", "y:recent", "y:sessions", "recent"];
        let mut all: Vec<(String, &str)> = Vec::new();
        for owner in owners {
            all.push((keys.recent(1, owner), owner));
            all.push((keys.sessions(1, owner), owner));
            for tag in tags {
                all.push((keys.tag(1, owner, tag), owner));
            }
        }
        let distinct: std::collections::HashSet<&String> = all.iter().map(|(k, _)| k).collect();
        assert_eq!(distinct.len(), all.len(), "two indexes share a key");
        for (key, owner) in &all {
            for other in owners.iter().filter(|o| *o != owner) {
                assert!(
                    !key.starts_with(&keys.owner_prefix(1, other)),
                    "{key} of {owner} lies under {other}'s prefix"
                );
            }
        }
    }
}
