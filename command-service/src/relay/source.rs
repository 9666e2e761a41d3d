//! The Postgres side of the relay: the leader lock, the checkpoint, the
//! commit-safe read of the events table ([`event_log::store`]), and the
//! wake-up notifications.
//!
//! Everything but the notifications runs on one dedicated connection that
//! holds the session advisory lock. The checkpoint is written through that same
//! connection, so a relay whose lock connection has died cannot move the
//! checkpoint any more: the lock fences the writes, not just the reads.

use super::RelayError;
use event_log::store::{self, Committed, Position};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;
use std::time::Duration;

/// The channel the events table's trigger notifies on each append.
pub const CHANNEL: &str = "events_appended";

/// The class half of the two-part advisory lock key (`b"SBR1"`); the other
/// half is `hashtext(relay name)`. Two-part keys live apart from one-part
/// (`bigint`) keys, so this only meets other users of the same class.
pub const LOCK_CLASS: i32 = 0x5342_5231;

/// Relay connections show up under this name in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "second-brain-relay";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A place in the relay's reading order: the last event it published.
pub type Checkpoint = Position;

fn pg_error(stage: &'static str) -> impl FnOnce(sqlx::Error) -> RelayError {
    move |source| RelayError::Postgres { stage, source }
}

fn parse_xid(text: &str) -> Result<u64, RelayError> {
    text.parse().map_err(|_| RelayError::Postgres {
        stage: "read",
        source: sqlx::Error::Decode(format!("transaction id {text:?} is not an xid8").into()),
    })
}

async fn within<T>(
    stage: &'static str,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, RelayError> {
    tokio::time::timeout(CONNECT_TIMEOUT, future)
        .await
        .map_err(|_| RelayError::PostgresTimeout {
            stage,
            after: CONNECT_TIMEOUT,
        })?
        .map_err(pg_error(stage))
}

/// The options of every relay connection: named, and with a statement
/// timeout so a hung query fails (and the relay reconnects) instead of
/// stalling it for good.
fn options(url: &SecretString) -> Result<PgConnectOptions, RelayError> {
    Ok(PgConnectOptions::from_str(url.expose_secret())
        .map_err(pg_error("connect_postgres"))?
        .application_name(APPLICATION_NAME)
        .options([("statement_timeout", "30s")]))
}

/// The relay while it holds the leader lock.
pub(super) struct Leader {
    connection: PgConnection,
    listener: PgListener,
    name: String,
    checkpoint: Checkpoint,
}

impl Leader {
    /// Connects and tries the lock once; `None` when another relay holds it.
    pub(super) async fn acquire(
        url: &SecretString,
        name: &str,
    ) -> Result<Option<Self>, RelayError> {
        let options = options(url)?;
        let mut connection = within("connect_postgres", options.connect()).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(name)
            .fetch_one(&mut connection)
            .await
            .map_err(pg_error("lock"))?;
        if !locked {
            let _ = connection.close().await;
            return Ok(None);
        }
        // Listen before the first read, so an append that commits between
        // the read and the wait still wakes the relay.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let mut listener = within("listen", PgListener::connect_with(&pool)).await?;
        within("listen", listener.listen(CHANNEL)).await?;
        let checkpoint = load_checkpoint(&mut connection, name).await?;
        Ok(Some(Self {
            connection,
            listener,
            name: name.to_owned(),
            checkpoint,
        }))
    }

    pub(super) fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// The next events after `after` in commit-safe order (see
    /// [`event_log::store`]): nothing can later appear behind them.
    #[tracing::instrument(skip_all, fields(limit), err(Display))]
    pub(super) async fn read_after(
        &mut self,
        after: Checkpoint,
        limit: usize,
    ) -> Result<Vec<Committed>, RelayError> {
        store::committed_after(&mut self.connection, after, limit)
            .await
            .map_err(pg_error("read"))
    }

    /// Moves the checkpoint forward to `to`, through the lock's connection.
    /// It only ever moves forward; finding it already there or beyond means
    /// another relay wrote it, which the lock should make impossible, so the
    /// relay starts over from what is stored.
    #[tracing::instrument(skip_all, fields(position = to.global_position), err(Display))]
    pub(super) async fn save(&mut self, to: Checkpoint) -> Result<(), RelayError> {
        let updated = sqlx::query(
            "UPDATE relay_checkpoints
                SET transaction_id = $2::text::xid8, global_position = $3, updated_at = now()
              WHERE name = $1
                AND (transaction_id, global_position) < ($2::text::xid8, $3)",
        )
        .bind(&self.name)
        .bind(to.transaction_id.to_string())
        .bind(to.global_position)
        .execute(&mut self.connection)
        .await
        .map_err(pg_error("checkpoint"))?;
        if updated.rows_affected() != 1 {
            return Err(RelayError::CheckpointMoved);
        }
        self.checkpoint = to;
        Ok(())
    }

    /// Waits for a notification or the poll interval, whichever comes first.
    /// Notifications that piled up meanwhile are dropped: one read covers them.
    pub(super) async fn wait(&mut self, poll: Duration) -> Result<(), RelayError> {
        tokio::select! {
            received = self.listener.recv() => { received.map_err(pg_error("listen"))?; }
            () = tokio::time::sleep(poll) => {}
        }
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }

    /// The age in seconds of the oldest committed event not yet published,
    /// or 0 when there is none. Used while the broker is unreachable, when
    /// no batch is being read.
    pub(super) async fn oldest_unpublished_age(&mut self) -> Result<f64, RelayError> {
        store::age_of_first_committed_after(&mut self.connection, self.checkpoint)
            .await
            .map_err(pg_error("read"))
    }

    /// Closes both connections; closing the lock's connection releases the lock.
    pub(super) async fn close(mut self) {
        let _ = self.listener.unlisten_all().await;
        let _ = self.connection.close().await;
    }
}

async fn load_checkpoint(
    connection: &mut PgConnection,
    name: &str,
) -> Result<Checkpoint, RelayError> {
    sqlx::query("INSERT INTO relay_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *connection)
        .await
        .map_err(pg_error("checkpoint"))?;
    let (transaction_id, global_position): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, global_position FROM relay_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut *connection)
    .await
    .map_err(pg_error("checkpoint"))?;
    Ok(Checkpoint {
        transaction_id: parse_xid(&transaction_id)?,
        global_position,
    })
}
