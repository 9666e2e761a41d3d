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
//! | `P gG:session:<id>:timeline` | zset of its active memories, by [`timeline_score`] |
//! | `P gG:owner:<owner>:recent` | zset of the owner's active memories, by [`recency_score`] |
//! | `P gG:owner:<owner>:tag:<tag>` | set of the owner's active memories with that tag |
//! | `P gG:owner:<owner>:sessions` | zset of the owner's sessions, by [`session_score`] |
//!
//! User ids and tags may contain `:` (a user `x:tag:y` and a user `x` with
//! the tag `y`), so they are encoded: an encoded value has no `:`, and one
//! user's keys are exactly those under `P gG:owner:<owner>:`. This is key
//! layout 2; layout 1 put the raw values under `P gG:user:`, where two
//! users' keys could be the same key. A generation of layout 1 is moved to
//! layout 2 by `projector rebuild-projections --projection documents`, and
//! `projector verify` reports any `user:` key left ([`LEGACY_USER_KEYS`]).
//!
//! Every write is one Lua script (`documents.lua`): compare the stored
//! version, write the document and move its index entries, atomically. The
//! script encodes the owner and tags as [`encode`] does, and takes the scores
//! from [`timeline_score`] and [`recency_score`].

use event_schema::{MemoryState, MemoryStatus, SessionState};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;
use uuid::Uuid;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("documents.lua")));

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

    /// The active generation's number; absent before the first rebuild.
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

/// A memory's score in its session's timeline (ms): when it happened, else
/// when it was captured.
pub fn timeline_score(memory: &MemoryState) -> i64 {
    memory
        .facts
        .occurred_at
        .unwrap_or(memory.created_at)
        .timestamp_millis()
}

/// A memory's score in its owner's recent list (ms): its last change.
pub fn recency_score(memory: &MemoryState) -> i64 {
    memory.updated_at.timestamp_millis()
}

/// A session's score in its owner's session list (ms): its start.
pub fn session_score(session: &SessionState) -> i64 {
    session.started_at.timestamp_millis()
}

/// A document the script writes, with its index entries.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// An erased memory is written as no document: the script deletes it
    /// and leaves a tombstone.
    Memory(&'a MemoryState),
    Session(&'a SessionState),
}

/// Why a write could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("serialising a document: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// Writes `write` into generation `g` if the stored version is `expected`
/// (0: absent, and no erasure tombstone either). Returns false when another
/// writer got there first: reload and retry.
pub async fn compare_and_set(
    redis: &mut ConnectionManager,
    keys: &Keys,
    g: i64,
    expected: u64,
    write: Write<'_>,
) -> Result<bool, WriteError> {
    let argv = ScriptArgs::of(expected, write)?.argv(g);
    let outcome: i64 = SCRIPT
        .key(keys.generation_pointer())
        .arg(keys.prefix())
        .arg(&argv[..])
        .invoke_async(redis)
        .await?;
    Ok(outcome == -1)
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
    write: Write<'_>,
) -> Result<bool, WriteError> {
    compare_and_set(redis, keys, g, 0, write).await
}

/// Writes into a generation nobody else writes (a rebuild's fresh one),
/// pipelined: [`Bulk::push`] each document, [`Bulk::flush`] at the end.
#[derive(Debug)]
pub struct Bulk<'k> {
    keys: &'k Keys,
    g: i64,
    pipe: redis::Pipeline,
    queued: usize,
    written: u64,
}

impl<'k> Bulk<'k> {
    /// Writes go out in round trips of this many.
    const BATCH: usize = 1000;

    /// Loads the script, so the pipeline can call it by hash.
    pub async fn new(
        redis: &mut ConnectionManager,
        keys: &'k Keys,
        g: i64,
    ) -> Result<Self, WriteError> {
        SCRIPT.load_async(redis).await?;
        Ok(Self {
            keys,
            g,
            pipe: redis::pipe(),
            queued: 0,
            written: 0,
        })
    }

    pub async fn push(
        &mut self,
        redis: &mut ConnectionManager,
        write: Write<'_>,
    ) -> Result<(), WriteError> {
        let argv = ScriptArgs::of(0, write)?.argv(self.g);
        self.pipe
            .cmd("EVALSHA")
            .arg(SCRIPT.get_hash())
            .arg(1)
            .arg(self.keys.generation_pointer())
            .arg(self.keys.prefix())
            .arg(&argv[..])
            .ignore();
        self.queued += 1;
        if self.queued == Self::BATCH {
            self.send(redis).await?;
        }
        Ok(())
    }

    /// Sends what is queued; returns how many documents were written.
    pub async fn flush(mut self, redis: &mut ConnectionManager) -> Result<u64, WriteError> {
        if self.queued > 0 {
            self.send(redis).await?;
        }
        Ok(self.written)
    }

    async fn send(&mut self, redis: &mut ConnectionManager) -> Result<(), WriteError> {
        let pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        let () = pipe.query_async(redis).await?;
        self.written += self.queued as u64;
        self.queued = 0;
        Ok(())
    }
}

/// The script's arguments after the key and the prefix (`ARGV[2..]`).
struct ScriptArgs {
    kind: &'static str,
    id: Uuid,
    expected: u64,
    version: u64,
    doc: String,
    timeline: i64,
    recency: i64,
}

impl ScriptArgs {
    fn of(expected: u64, write: Write<'_>) -> Result<Self, serde_json::Error> {
        Ok(match write {
            Write::Memory(state) => Self {
                kind: "memory",
                id: state.id,
                expected,
                version: state.version,
                doc: if state.facts.status == MemoryStatus::Erased {
                    String::new()
                } else {
                    serde_json::to_string(state)?
                },
                timeline: timeline_score(state),
                recency: recency_score(state),
            },
            Write::Session(state) => Self {
                kind: "session",
                id: state.id,
                expected,
                version: state.version,
                doc: serde_json::to_string(state)?,
                timeline: session_score(state),
                recency: state.updated_at.timestamp_millis(),
            },
        })
    }

    /// `ARGV[2..=9]`, in the script's order; numbers as their decimal text,
    /// which is how Redis receives them anyway.
    fn argv(self, g: i64) -> [String; 8] {
        [
            self.kind.to_owned(),
            self.id.to_string(),
            self.expected.to_string(),
            self.version.to_string(),
            self.doc,
            self.timeline.to_string(),
            self.recency.to_string(),
            g.to_string(),
        ]
    }
}

#[cfg(test)]
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
