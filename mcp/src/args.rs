//! What each tool takes. The doc comments are the schema's descriptions,
//! the words an agent reads to fill the arguments in; unknown fields are
//! refused so a misspelt one is a tool error, not silently ignored.
//!
//! Each type turns into the client's request here ("parse, don't
//! validate"); the services judge the values (lengths, counts, `k`'s range)
//! and their refusals come back as tool errors with their field errors.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use second_brain_client::{
    Filters, ListOptions, MemoryEdit, Mode, NewMemory, NewSession, Order, Search,
    SessionListOptions, SessionStatus,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ToolError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The note itself, in plain words; it is what `recall` searches.
    pub content: String,
    /// A short title (optional).
    pub title: Option<String>,
    /// Labels to find the note by later, e.g. ["house", "todo"]; stored
    /// lower-cased.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The session (from `start_session`) this note belongs to.
    pub session_id: Option<Uuid>,
    /// Any JSON object of extra facts (source URL, people, …).
    pub metadata: Option<Map<String, Value>>,
    /// When what the note tells happened, RFC 3339 (e.g.
    /// "2026-03-01T09:30:00Z"); leave out when it is now.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl From<RememberArgs> for NewMemory {
    fn from(args: RememberArgs) -> Self {
        Self {
            content: args.content,
            title: args.title,
            tags: args.tags,
            metadata: args.metadata.unwrap_or_default(),
            session_id: args.session_id,
            occurred_at: args.occurred_at,
        }
    }
}

/// How `recall` ranks.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// By meaning: finds paraphrases and related notes.
    Semantic,
    /// By the words themselves.
    Keyword,
    /// Both rankings fused (the default, and usually best).
    #[default]
    Hybrid,
}

impl From<SearchMode> for Mode {
    fn from(mode: SearchMode) -> Self {
        match mode {
            SearchMode::Semantic => Self::Semantic,
            SearchMode::Keyword => Self::Keyword,
            SearchMode::Hybrid => Self::Hybrid,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// What to look for, as a question or a few words.
    pub query: String,
    /// `hybrid` (default), `semantic` or `keyword`.
    #[serde(default)]
    pub mode: SearchMode,
    /// How many notes at most, 1 to 100 (default 10).
    #[schemars(range(min = 1, max = 100))]
    pub k: Option<u32>,
    /// Only notes with at least one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only notes of this session.
    pub session_id: Option<Uuid>,
    /// Only notes created at or after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Only notes created before this instant (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// Only notes last changed at or after this instant (RFC 3339).
    pub updated_after: Option<DateTime<Utc>>,
    /// Only notes last changed before this instant (RFC 3339).
    pub updated_before: Option<DateTime<Utc>>,
}

impl From<RecallArgs> for Search {
    fn from(args: RecallArgs) -> Self {
        Self {
            q: args.query,
            mode: args.mode.into(),
            k: args.k,
            filters: Filters {
                session: args.session_id,
                tags_any: args.tags,
                tags_all: Vec::new(),
                created_after: args.created_after,
                created_before: args.created_before,
                updated_after: args.updated_after,
                updated_before: args.updated_before,
            },
            ..Self::default()
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetMemoryArgs {
    /// The note's id (a UUID, as `remember`, `recall` or `list_memories` gave it).
    pub id: Uuid,
    /// Also answer a forgotten (deleted) note, e.g. before restoring it.
    #[serde(default)]
    pub include_deleted: bool,
}

/// Newest or oldest first.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl From<SortOrder> for Order {
    fn from(order: SortOrder) -> Self {
        match order {
            SortOrder::Asc => Self::Asc,
            SortOrder::Desc => Self::Desc,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMemoriesArgs {
    /// Only notes of this session.
    pub session_id: Option<Uuid>,
    /// Only notes with at least one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only notes with every one of these tags.
    #[serde(default)]
    pub tags_all: Vec<String>,
    /// Only notes created at or after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Only notes created before this instant (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// Only notes last changed at or after this instant (RFC 3339).
    pub updated_after: Option<DateTime<Utc>>,
    /// Only notes last changed before this instant (RFC 3339).
    pub updated_before: Option<DateTime<Utc>>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<SortOrder>,
    /// Notes per page, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, unchanged.
    pub cursor: Option<String>,
    /// List forgotten (deleted) notes too.
    #[serde(default)]
    pub include_deleted: bool,
}

impl From<ListMemoriesArgs> for ListOptions {
    fn from(args: ListMemoriesArgs) -> Self {
        Self {
            filters: Filters {
                session: args.session_id,
                tags_any: args.tags,
                tags_all: args.tags_all,
                created_after: args.created_after,
                created_before: args.created_before,
                updated_after: args.updated_after,
                updated_before: args.updated_before,
            },
            order: args.order.map(Order::from),
            limit: args.limit,
            cursor: args.cursor,
            include_deleted: args.include_deleted,
            ..Self::default()
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemoryArgs {
    /// The note's id.
    pub id: Uuid,
    /// The new content, replacing the old.
    pub content: Option<String>,
    /// The new title.
    pub title: Option<String>,
    /// Remove the title.
    #[serde(default)]
    pub clear_title: bool,
    /// The `version` you last saw (from `get_memory` or a write): the
    /// update is refused with `version_mismatch` if the note changed since,
    /// so no one's change is overwritten unseen. Leave out to update
    /// whatever the note holds now.
    pub expected_version: Option<u64>,
}

/// An update as the client sends it.
#[derive(Debug)]
pub struct Update {
    pub id: Uuid,
    pub edit: MemoryEdit,
    pub if_match: Option<u64>,
}

impl UpdateMemoryArgs {
    pub fn parse(self) -> Result<Update, ToolError> {
        let title = match (self.title, self.clear_title) {
            (Some(_), true) => {
                return Err(ToolError::bad_argument(
                    "clear_title",
                    "give a new `title` or `clear_title`, not both",
                ));
            }
            (Some(title), false) => Some(Some(title)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        if self.content.is_none() && title.is_none() {
            return Err(ToolError::bad_argument(
                "content",
                "nothing to change: give `content`, `title` or `clear_title`",
            ));
        }
        Ok(Update {
            id: self.id,
            edit: MemoryEdit {
                content: self.content,
                title,
            },
            if_match: self.expected_version,
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagMemoryArgs {
    /// The note's id.
    pub id: Uuid,
    /// Tags to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl TagMemoryArgs {
    /// Refuses a call with nothing to do, which would otherwise answer a
    /// version that no write made.
    pub fn check(self) -> Result<Self, ToolError> {
        if self.add.is_empty() && self.remove.is_empty() {
            return Err(ToolError::bad_argument(
                "add",
                "nothing to change: give tags to `add` and/or `remove`",
            ));
        }
        Ok(self)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryIdArgs {
    /// The note's id.
    pub id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryHistoryArgs {
    /// The note's id.
    pub id: Uuid,
    /// Only changes after this version (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Changes per page, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSessionArgs {
    /// What the session is about, e.g. "Kitchen renovation".
    pub title: String,
    /// Any JSON object of extra facts.
    pub metadata: Option<Map<String, Value>>,
}

impl From<StartSessionArgs> for NewSession {
    fn from(args: StartSessionArgs) -> Self {
        Self {
            title: args.title,
            metadata: args.metadata.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIdArgs {
    /// The session's id (from `start_session` or `list_sessions`).
    pub id: Uuid,
}

/// A session's state.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Ended,
}

impl From<SessionState> for SessionStatus {
    fn from(state: SessionState) -> Self {
        match state {
            SessionState::Open => Self::Open,
            SessionState::Ended => Self::Ended,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSessionsArgs {
    /// Only `open` or only `ended` sessions (both when left out).
    pub status: Option<SessionState>,
    /// `desc` (latest started first, the default) or `asc`.
    pub order: Option<SortOrder>,
    /// Sessions per page, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, unchanged.
    pub cursor: Option<String>,
}

impl ListSessionsArgs {
    pub fn parse(self) -> (Option<SessionStatus>, SessionListOptions) {
        let options = SessionListOptions {
            order: self.order.map(Order::from),
            limit: self.limit,
            cursor: self.cursor,
        };
        (self.status.map(SessionStatus::from), options)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(value: Value) -> Result<Update, ToolError> {
        serde_json::from_value::<UpdateMemoryArgs>(value)
            .unwrap()
            .parse()
    }

    #[test]
    fn an_update_needs_something_to_change_and_one_title_at_most() {
        let id = Uuid::nil();
        assert!(update(json!({"id": id})).is_err());
        assert!(update(json!({"id": id, "title": "t", "clear_title": true})).is_err());
        let cleared = update(json!({"id": id, "clear_title": true, "expected_version": 3}));
        let cleared = cleared.unwrap();
        assert_eq!(cleared.edit.title, Some(None));
        assert_eq!(cleared.if_match, Some(3));
        assert_eq!(
            update(json!({"id": id, "content": "c"}))
                .unwrap()
                .edit
                .title,
            None
        );
    }

    #[test]
    fn recall_sends_its_tags_as_any_and_its_time_range_as_filters() {
        let args: RecallArgs = serde_json::from_value(json!({
            "query": "boiler", "mode": "keyword", "k": 5, "tags": ["house"],
            "created_after": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let search = Search::from(args);
        assert_eq!(search.mode, Mode::Keyword);
        assert_eq!(search.filters.tags_any, ["house"]);
        assert!(search.filters.tags_all.is_empty());
        assert!(search.filters.created_after.is_some());
        assert_eq!(search.wait_for, None);
    }

    #[test]
    fn a_misspelt_argument_is_refused_not_ignored() {
        let args = serde_json::from_value::<RecallArgs>(json!({"query": "x", "tag": ["a"]}));
        assert!(args.is_err());
    }
}
