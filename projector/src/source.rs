//! The event store as the projector holds it: read-only, through one pool.
//! What it reads and in which order is [`event_log::store`]'s: the events a
//! gap is missing, the event a dead letter refers to, and everything for a
//! rebuild or a verification.

use event_log::store::{self, Slice};
use event_schema::StoredEvent;
use futures::Stream;
use sqlx::PgPool;
use sqlx::{Postgres, Transaction};

pub use event_log::store::snapshot_xmin;

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
        Slice::of(aggregate_type, aggregate_id)
            .after(after)
            .before(before)
            .read(&self.pool)
            .await
    }

    /// The event of one aggregate at `sequence`, if the store has it: what a
    /// dead letter refers to.
    pub async fn at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        Ok(Slice::at(aggregate_type, aggregate_id, sequence)
            .read(&self.pool)
            .await?
            .pop())
    }

    /// Every event committed before the snapshot of `tx`, in commit-safe
    /// order ([`store::in_snapshot`]).
    pub fn all_in<'t>(
        tx: &'t mut Transaction<'static, Postgres>,
    ) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + 't {
        store::in_snapshot(tx)
    }

    /// Every event whose transaction is `>= xmin`, in commit-safe order
    /// ([`store::since_xmin`]).
    pub async fn since_xmin(&self, xmin: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
        store::since_xmin(&self.pool, xmin).await
    }

    /// Every event, one aggregate after another, each in sequence order.
    pub fn by_aggregate(&self) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + '_ {
        store::by_aggregate(&self.pool)
    }
}
