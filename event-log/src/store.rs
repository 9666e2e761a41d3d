//! Reading the events table. Every read selects the same columns and maps a
//! row the same way ([`stored`]); what differs is which events and in what
//! order:
//!
//! - one aggregate's events by `sequence` ([`Slice`]): history, the
//!   projector's gap fill, the event a dead letter refers to;
//! - every event in **commit-safe order**, `(transaction_id,
//!   global_position)` ([`committed_after`], [`in_snapshot`],
//!   [`since_xmin`]): the relay and a rebuild. `global_position` comes from a
//!   sequence, so a transaction that is still open may yet commit a smaller
//!   position than one already committed; ordering by the transaction first,
//!   and reading only transactions older than every one still running, means
//!   nothing can later appear behind a place already read.
//!
//! `transaction_id` is an `xid8` (a full 64-bit transaction id), which sqlx
//! has no type for: it travels as text and is cast in SQL.

use chrono::{DateTime, Utc};
use event_schema::StoredEvent;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use uuid::Uuid;

/// `SELECT <every column a StoredEvent needs> FROM events <rest>`, as a
/// literal, so a statement can be borrowed for as long as its stream runs.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT event_id, aggregate_type, aggregate_id, sequence, global_position, event_type, ",
            "event_version, recorded_at, payload, metadata, ",
            // Its own alias: named `transaction_id`, the text would be what
            // `ORDER BY transaction_id` sorts ("10" < "9"), and the index
            // could not serve the order.
            "transaction_id::text AS transaction_text FROM events ",
            $rest
        )
    };
}

/// An event-store row as a [`StoredEvent`].
fn stored(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
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

/// A place in commit-safe order, `(transaction_id, global_position)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub transaction_id: u64,
    pub global_position: i64,
}

/// An event with its place in commit-safe order.
#[derive(Debug, Clone)]
pub struct Committed {
    pub position: Position,
    pub event: StoredEvent,
}

fn committed(row: &PgRow) -> Result<Committed, sqlx::Error> {
    let event = stored(row)?;
    let text: String = row.try_get("transaction_text")?;
    let transaction_id = text.parse().map_err(|_| {
        sqlx::Error::Decode(format!("transaction id {text:?} is not an xid8").into())
    })?;
    Ok(Committed {
        position: Position {
            transaction_id,
            global_position: event.global_position,
        },
        event,
    })
}

/// Some of one aggregate's events, in `sequence` order: those with
/// `after < sequence < before`, optionally only if `owner` recorded them, at
/// most `limit`.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Slice<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    after: i64,
    before: i64,
    owner: Option<&'a str>,
    limit: Option<i64>,
}

impl<'a> Slice<'a> {
    /// Every event of the aggregate.
    pub fn of(aggregate_type: &'a str, aggregate_id: &'a str) -> Self {
        Self {
            aggregate_type,
            aggregate_id,
            after: 0,
            before: i64::MAX,
            owner: None,
            limit: None,
        }
    }

    pub fn after(self, sequence: i64) -> Self {
        Self {
            after: sequence,
            ..self
        }
    }

    pub fn before(self, sequence: i64) -> Self {
        Self {
            before: sequence,
            ..self
        }
    }

    /// Only what `owner` recorded: the aggregate is theirs, or reads empty.
    pub fn owned_by(self, owner: &'a str) -> Self {
        Self {
            owner: Some(owner),
            ..self
        }
    }

    pub fn limit(self, limit: i64) -> Self {
        Self {
            limit: Some(limit),
            ..self
        }
    }

    /// The event at `sequence`, if the store has it.
    pub fn at(aggregate_type: &'a str, aggregate_id: &'a str, sequence: i64) -> Self {
        Self::of(aggregate_type, aggregate_id)
            .after(sequence.saturating_sub(1))
            .before(sequence.saturating_add(1))
    }

    pub async fn read<'e>(
        &self,
        executor: impl PgExecutor<'e>,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(select_events!(
            "WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence < $4 \
               AND ($5::text IS NULL OR metadata->>'owner_id' = $5) \
             ORDER BY sequence LIMIT $6"
        ))
        .bind(self.aggregate_type)
        .bind(self.aggregate_id)
        .bind(self.after)
        .bind(self.before)
        .bind(self.owner)
        .bind(self.limit)
        .fetch_all(executor)
        .await?;
        rows.iter().map(stored).collect()
    }
}

/// Up to `limit` events after `after` in commit-safe order, from
/// transactions older than every transaction still running (the
/// statement's own snapshot, taken with the read): what the relay publishes
/// next.
pub async fn committed_after<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
    limit: usize,
) -> Result<Vec<Committed>, sqlx::Error> {
    let rows = sqlx::query(select_events!(
        "WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id, global_position \
         LIMIT $3"
    ))
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    rows.iter().map(committed).collect()
}

/// The age in seconds of the first event [`committed_after`] would return,
/// or 0 when there is none.
pub async fn age_of_first_committed_after<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
) -> Result<f64, sqlx::Error> {
    let age: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM clock_timestamp() - recorded_at)::float8
           FROM events
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id, global_position
          LIMIT 1",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .fetch_optional(executor)
    .await?;
    Ok(age.unwrap_or(0.0).max(0.0))
}

/// Every event committed before the snapshot of `tx`, in commit-safe order.
/// Run it in a `REPEATABLE READ` transaction, so that the stream and
/// [`snapshot_xmin`] describe the same snapshot.
pub fn in_snapshot<'t>(
    tx: &'t mut Transaction<'static, Postgres>,
) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + 't {
    sqlx::query(select_events!("ORDER BY transaction_id, global_position"))
        .fetch(&mut **tx)
        .map(|row| row.and_then(|r| stored(&r)))
}

/// The oldest transaction still running in `tx`'s snapshot, as text: every
/// event of an older transaction is in the snapshot.
pub async fn snapshot_xmin(tx: &mut Transaction<'static, Postgres>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut **tx)
        .await
}

/// Every event whose transaction is `>= xmin` (from [`snapshot_xmin`]), in
/// commit-safe order: after a snapshot, the only events it may not have seen.
pub async fn since_xmin<'e>(
    executor: impl PgExecutor<'e>,
    xmin: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query(select_events!(
        "WHERE transaction_id >= $1::text::xid8 ORDER BY transaction_id, global_position"
    ))
    .bind(xmin)
    .fetch(executor)
    .map(|row| row.and_then(|r| stored(&r)))
    .try_collect()
    .await
}

/// Every event, one aggregate after another, each in sequence order: what
/// a verification folds.
pub fn by_aggregate<'e>(
    executor: impl PgExecutor<'e> + 'e,
) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + 'e {
    sqlx::query(select_events!(
        "ORDER BY aggregate_type, aggregate_id, sequence"
    ))
    .fetch(executor)
    .map(|row| row.and_then(|r| stored(&r)))
}
