//! What the tools answer, as JSON objects (structured content, and the
//! same JSON as text for clients that read only text). Every write answers
//! the id and the version it made, which `update_memory` takes back as
//! `expected_version`; documents (`get_memory`, lists) carry theirs.
//!
//! The client's answer types are for reading the services, not for writing
//! JSON again, so each answer here names the fields it shows.

use chrono::{DateTime, Utc};
use second_brain_client::{HistoryPage, Memory, Page, SearchResults, Session, Written};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// A write's outcome.
#[derive(Debug, Serialize)]
pub struct WriteAnswer {
    pub id: Uuid,
    pub version: u64,
}

impl From<Written> for WriteAnswer {
    fn from(written: Written) -> Self {
        Self {
            id: written.id,
            version: written.version,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RecallAnswer {
    pub mode: &'static str,
    pub hits: Vec<HitAnswer>,
}

#[derive(Debug, Serialize)]
pub struct HitAnswer {
    pub id: Uuid,
    pub title: Option<String>,
    /// HTML-escaped, the matched words in `<mark>…</mark>`.
    pub snippet: String,
    pub score: f64,
    pub session_id: Option<Uuid>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<SearchResults> for RecallAnswer {
    fn from(results: SearchResults) -> Self {
        Self {
            mode: results.mode.as_str(),
            hits: results
                .hits
                .into_iter()
                .map(|hit| HitAnswer {
                    id: hit.id,
                    title: hit.title,
                    snippet: hit.snippet,
                    score: hit.score,
                    session_id: hit.session_id,
                    occurred_at: hit.occurred_at,
                    created_at: hit.created_at,
                })
                .collect(),
        }
    }
}

/// A page of memories or sessions.
#[derive(Debug, Serialize)]
pub struct PageAnswer<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<Page<Memory>> for PageAnswer<Memory> {
    fn from(page: Page<Memory>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

impl From<Page<Session>> for PageAnswer<Session> {
    fn from(page: Page<Session>) -> Self {
        Self {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HistoryAnswer {
    pub items: Vec<ChangeAnswer>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// One event of a memory's history.
#[derive(Debug, Serialize)]
pub struct ChangeAnswer {
    pub version: u64,
    /// The event's name, e.g. `MemoryCaptured`, `MemoryRevised`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub actor_id: String,
    /// What the event changed.
    pub changes: Value,
    pub event_id: Uuid,
}

impl From<HistoryPage> for HistoryAnswer {
    fn from(page: HistoryPage) -> Self {
        Self {
            items: page
                .items
                .into_iter()
                .map(|entry| ChangeAnswer {
                    version: entry.version,
                    event_type: entry.event_type,
                    recorded_at: entry.recorded_at,
                    actor_id: entry.actor_id,
                    changes: entry.changes,
                    event_id: entry.event_id,
                })
                .collect(),
            next_after: page.next_after,
        }
    }
}
