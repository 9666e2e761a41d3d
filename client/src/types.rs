//! Requests and answers of both APIs. Documents are the read side's own
//! types from `event-schema`, so a field the services add is one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use event_schema::memory::MemoryStatus;
pub use event_schema::session::SessionStatus;
pub use event_schema::{MemoryState as Memory, SessionState as Session};

/// What every command answers: the aggregate and its version after it, to
/// pass as `min_version` (read your writes) or `If-Match` (no lost update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Written {
    pub id: Uuid,
    pub version: u64,
    /// The service answered an earlier call's result for this idempotency
    /// key (`Idempotent-Replayed: true`): nothing new was written.
    #[serde(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NewMemory {
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
}

impl NewMemory {
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A revision: `None` leaves a field as it is; `title: Some(None)` clears it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryEdit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NewSession {
    pub title: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Semantic,
    Keyword,
    #[default]
    Hybrid,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semantic => "semantic",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// The filters `/v1/memories` and `/v1/search` share.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub session: Option<Uuid>,
    pub tags_any: Vec<String>,
    pub tags_all: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

impl Filters {
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(session) = self.session {
            pairs.push(("session", session.to_string()));
        }
        if !self.tags_any.is_empty() {
            pairs.push(("tags_any", self.tags_any.join(",")));
        }
        if !self.tags_all.is_empty() {
            pairs.push(("tags_all", self.tags_all.join(",")));
        }
        let times = [
            ("created_after", self.created_after),
            ("created_before", self.created_before),
            ("updated_after", self.updated_after),
            ("updated_before", self.updated_before),
        ];
        for (name, at) in times {
            if let Some(at) = at {
                pairs.push((name, at.to_rfc3339()));
            }
        }
        pairs
    }
}

#[derive(Debug, Clone, Default)]
pub struct Search {
    pub q: String,
    pub mode: Mode,
    /// Hits wanted, 1–100 (the service's default, 10, when `None`).
    pub k: Option<u32>,
    pub explain: bool,
    pub filters: Filters,
    /// Read your writes: search once the index holds this write (a memory
    /// command's answer) or a later one.
    pub wait_for: Option<Written>,
}

impl Search {
    pub fn new(q: impl Into<String>) -> Self {
        Self {
            q: q.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SearchResults {
    pub mode: Mode,
    pub hits: Vec<Hit>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Hit {
    pub id: Uuid,
    pub session_id: Option<Uuid>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub title: Option<String>,
    /// HTML-escaped, matched words in `<mark>…</mark>`.
    pub snippet: String,
    pub score: f64,
    /// Each ranking's part, with `explain`; its shape is in the query API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Value>,
}

/// A list page of `/v1/memories`, `/v1/sessions` or a timeline.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub filters: Filters,
    pub order: Option<Order>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub include_deleted: bool,
    /// Read your writes: list once the list holds this memory write.
    pub wait_for: Option<Written>,
}

/// A page of `/v1/sessions`: no filters but the status.
#[derive(Debug, Clone, Default)]
pub struct SessionListOptions {
    pub order: Option<Order>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back unchanged for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HistoryEntry {
    pub event_id: Uuid,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub actor_id: String,
    pub correlation_id: String,
    #[serde(default)]
    pub causation_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    pub changes: Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HistoryPage {
    pub items: Vec<HistoryEntry>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next_after: Option<u64>,
}

/// A point in an aggregate's past: both bounds apply, either may be left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct PointInTime {
    pub version: Option<u64>,
    pub at: Option<DateTime<Utc>>,
}
