//! Postgres pools that come through a server restart without a ping on every
//! checkout.
//!
//! A restart (`pg_ctl restart`, fast or immediate, a crash, a failover) kills
//! every connection at once, while the pool still holds them as idle. sqlx
//! can ping each connection before handing it out, but that is one round
//! trip per query (three per created memory), so the pools here do not.
//! Instead:
//!
//! - [`connection_lost`] tells an error that means "this connection is dead"
//!   (an I/O error, `57P01 admin_shutdown`, `57P02 crash_shutdown`,
//!   `57P03 cannot_connect_now`, any `08` connection exception) from one the
//!   statement itself caused;
//! - the first such error for a server marks the moment ([`mark_lost`]), and
//!   every pool built by [`pool`] discards, at checkout and for free (no round
//!   trip: it compares the connection's age), each connection to that server
//!   opened before it. One failure clears all the dead idle connections at
//!   once, so a burst of requests right after a restart does not find them
//!   one by one; a listener that sees its connection drop marks the moment too,
//!   before any request finds a dead connection (see [`crate::api_keys`]);
//! - [`retry_once`] runs a read again, once, on a fresh connection.
//!
//! The moments are kept per server (host and port), for the whole process:
//! a restart is the server's, so every pool onto it has the same dead
//! connections, whichever database it names.
//!
//! Writes need more care than a retry: a connection that dies during
//! `COMMIT` leaves the outcome unknown (see command-service's `store`).

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Instant;

/// Whether `error` says the connection it came from is dead (or that the
/// server is restarting), so the same statement may succeed on a new one.
pub fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// A failure to reach the database, as opposed to one a statement caused: a
/// retry later may succeed, so a client is told so (503). A lost connection,
/// or a pool, TLS or protocol failure (a server going down mid-handshake or
/// mid-message).
pub fn unavailable(error: &sqlx::Error) -> bool {
    connection_lost(error)
        || matches!(
            error,
            sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed
        )
}

/// The origin of the process's clock for [`LastLoss`].
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When a server last dropped connections: nanoseconds after [`ORIGIN`],
/// plus one so that zero means never.
#[derive(Debug, Default)]
struct LastLoss(AtomicU64);

impl LastLoss {
    fn mark(&self) {
        let now = nanos(ORIGIN.elapsed()).saturating_add(1);
        self.0.fetch_max(now, Ordering::AcqRel);
    }

    /// Whether a connection `age` old was opened after the last loss.
    fn survived(&self, age: std::time::Duration) -> bool {
        let last = self.0.load(Ordering::Acquire);
        if last == 0 {
            return true;
        }
        let opened = nanos(ORIGIN.elapsed().saturating_sub(age)).saturating_add(1);
        opened > last
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

static SERVERS: LazyLock<Mutex<HashMap<String, Arc<LastLoss>>>> = LazyLock::new(Default::default);

fn server(options: &PgConnectOptions) -> Arc<LastLoss> {
    let key = match options.get_socket() {
        Some(socket) => format!("{}:{}", socket.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    // Only ever inserted into; a panic elsewhere leaves it valid.
    let mut servers = SERVERS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(servers.entry(key).or_default())
}

/// A lazily connecting pool from `options` and `connect` that checks no
/// connection with a round trip, but discards those opened before the
/// server last dropped connections (see the module docs).
pub fn pool(options: PgPoolOptions, connect: PgConnectOptions) -> PgPool {
    let last_loss = server(&connect);
    options
        .test_before_acquire(false)
        .before_acquire(move |_, meta| {
            let fresh = last_loss.survived(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .connect_lazy_with(connect)
}

/// Records that the server `pool` connects to dropped its connections now.
pub fn mark_lost(pool: &PgPool) {
    mark_lost_on(&pool.connect_options());
}

/// [`mark_lost`] for the server `options` name.
pub fn mark_lost_on(options: &PgConnectOptions) {
    server(options).mark();
}

/// Before a statement runs again on a fresh connection: counts it
/// (`db_connection_lost_retries_total`) and discards the server's older
/// connections ([`mark_lost`]).
pub fn before_retry(pool: &PgPool) {
    metrics::counter!("db_connection_lost_retries_total").increment(1);
    mark_lost(pool);
}

/// Runs `op`, and once more when it failed on a dead connection, after
/// marking the server's older connections for discarding. Only for
/// statements that may run twice: reads, or writes whose first attempt
/// cannot have committed.
pub async fn retry_once<T, F, Fut>(pool: &PgPool, mut op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match op().await {
        Err(error) if connection_lost(&error) => {
            tracing::warn!(%error, "database connection lost; retrying on a new one");
            before_retry(pool);
            op().await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_connection_opened_before_a_loss_is_discarded_and_one_opened_after_is_kept() {
        let loss = LastLoss::default();
        assert!(loss.survived(ORIGIN.elapsed()), "no loss yet");
        loss.mark();
        // Opened when the clock started, long before the loss.
        assert!(!loss.survived(ORIGIN.elapsed()));
        // Opened after the loss: wait out the clock's resolution first.
        let marked = ORIGIN.elapsed();
        while ORIGIN.elapsed() <= marked {
            std::hint::spin_loop();
        }
        assert!(loss.survived(Duration::ZERO));
    }

    #[test]
    fn only_connection_failures_count_as_lost() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(connection_lost(&io));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
        assert!(!connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!connection_lost(&sqlx::Error::Protocol("odd".into())));
    }
}
