//! Reading the event store: the events a gap is missing, the event a dead
//! letter refers to, and everything for a rebuild or a verification. The
//! projector never writes there.

use event_schema::StoredEvent;
use futures::{Stream, StreamExt, TryStreamExt};
use read_model::events::stored;
use read_model::select_events;
use sqlx::PgPool;
use sqlx::{Postgres, Transaction};

/// The event store, read-only.
#[derive(Debug, Clone)]
pub struct EventSource {
    pool: PgPool,
}

impl EventSource {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The events of one aggregate with `after < sequence < before`, in order:
    /// what a projection is missing when a delivery skips ahead.
    pub async fn between(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: i64,
        before: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(select_events!(
            "WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence < $4 ORDER BY sequence"
        ))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after)
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored).collect()
    }

    /// The event of one aggregate at `sequence`, if the store has it: what a
    /// dead letter refers to.
    pub async fn at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        Ok(self
            .between(
                aggregate_type,
                aggregate_id,
                sequence.saturating_sub(1),
                sequence.saturating_add(1),
            )
            .await?
            .pop())
    }

    /// Every event committed before the snapshot of `tx`, in global order.
    /// Run it in a `REPEATABLE READ` transaction so the stream and
    /// [`snapshot_xmin`] describe the same snapshot.
    pub fn all_in<'t>(
        tx: &'t mut Transaction<'static, Postgres>,
    ) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + 't {
        sqlx::query(select_events!("ORDER BY transaction_id, global_position"))
            .fetch(&mut **tx)
            .map(|row| row.and_then(|r| stored(&r)))
    }

    /// Every event whose transaction is `>= xmin` (as text), in commit-safe
    /// order: after a snapshot, the only events it may not have seen.
    pub async fn since_xmin(&self, xmin: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query(select_events!(
            "WHERE transaction_id >= $1::text::xid8 ORDER BY transaction_id, global_position"
        ))
        .bind(xmin)
        .fetch(&self.pool)
        .map(|row| row.and_then(|r| stored(&r)))
        .try_collect()
        .await
    }

    /// Every event, one aggregate after another, each in sequence order.
    pub fn by_aggregate(&self) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + '_ {
        sqlx::query(select_events!(
            "ORDER BY aggregate_type, aggregate_id, sequence"
        ))
        .fetch(&self.pool)
        .map(|row| row.and_then(|r| stored(&r)))
    }
}

/// The oldest transaction still running in `tx`'s snapshot, as text: every
/// event of an older transaction is in the snapshot.
pub async fn snapshot_xmin(tx: &mut Transaction<'static, Postgres>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut **tx)
        .await
}
