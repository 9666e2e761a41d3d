//! An event-store row as a [`StoredEvent`]. The projector reads events to
//! fill gaps, rebuild and verify; the query service reads them for history.
//! It lives here, beside the read models, only until the workspace has its
//! one event-reading module (issue 10), which takes it over.

use chrono::{DateTime, Utc};
use event_schema::StoredEvent;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// `SELECT <every column a StoredEvent needs> FROM events <rest>`, as a
/// literal (so the statement can be borrowed for as long as a stream runs):
/// the columns [`stored`] reads.
#[macro_export]
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT event_id, aggregate_type, aggregate_id, sequence, global_position, event_type, ",
            "event_version, recorded_at, payload, metadata FROM events ",
            $rest
        )
    };
}

/// An event-store row as a [`StoredEvent`]: the columns [`select_events!`]
/// names.
pub fn stored(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        event_id: row.try_get::<Uuid, _>("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        global_position: row.try_get("global_position")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        payload: row.try_get::<Value, _>("payload")?,
        metadata: row.try_get::<Value, _>("metadata")?,
    })
}
