//! The outbox relay: publishes every committed event from the event store to
//! RabbitMQ, in commit-safe order, at least once. See
//! `docs/adr/0004-outbox-relay.md`.
//!
//! - [`source`]: the Postgres side. The leader lock (a session advisory lock
//!   on a dedicated connection), the checkpoint, and the read of the events
//!   table in `(transaction_id, global_position)` order below the snapshot's
//!   `xmin`, so an event whose transaction commits late is never skipped.
//! - [`publisher`]: the RabbitMQ side. A durable topic exchange, persistent
//!   messages and publisher confirms; [`message_for`] is the wire contract.
//!
//! A round reads up to `batch_size` events, publishes them all with their
//! confirms in flight, and moves the checkpoint to the last one only once every
//! confirm is an ack. Two batches are kept in flight, so the broker works
//! while the relay reads the next batch and writes the last checkpoint. A crash between publish and checkpoint publishes the
//! batch again; consumers deduplicate by per-aggregate sequence.
//!
//! The relay wakes on `NOTIFY events_appended` (sent at commit by a trigger)
//! and polls every `poll_interval` besides, since a notification can be lost
//! while the listener reconnects, and rows become readable when an *older*
//! transaction finishes, which notifies nothing if it wrote no events.
//!
//! Any error drops what failed (the broker connection, or both connections
//! when Postgres failed, which also gives up the lock), is logged with its
//! cause and counted, and is retried after an exponential backoff with jitter.
//! The task never exits on its own and never panics; it stops when told to,
//! after finishing (or abandoning, unconfirmed) the batch in flight.
//!
//! Readiness: `/health/ready` deliberately does not depend on RabbitMQ or the
//! relay. Writes only need Postgres; while the broker is down events wait in
//! the events table and the relay catches up later, so failing readiness would
//! turn a delay of the read side into an outage of the write side. The relay's
//! health shows in its logs and metrics instead:
//!
//! - `relay_events_published_total` (counter): events confirmed by the broker
//!   (a republished event counts again).
//! - `relay_lag_seconds` (gauge): the age (now − `recorded_at`) of the oldest
//!   committed event the relay has not yet published, measured each time it
//!   reads a batch and each time it retries while the broker is unreachable;
//!   0 when it has caught up. It includes the time the writing transaction
//!   took to commit, and the time an older transaction held the relay back.
//! - `relay_checkpoint_position` (gauge): the `global_position` of the last
//!   confirmed event. Events are read in transaction order, so this can step
//!   back a little when a transaction with lower positions commits late.
//! - `relay_errors_total{stage}` (counter): failures by stage (`connect_postgres`,
//!   `lock`, `listen`, `read`, `checkpoint`, `connect_broker`, `publish`,
//!   `confirm`, `encode`).
//! - `relay_leader` (gauge): 1 while this relay holds the lock, else 0.
//!
//! Every metric has a `relay` label, the relay's name (its exchange): one per
//! configured relay, so the label stays small.

mod publisher;
mod source;

pub use publisher::{Message, message_for};
pub use source::{APPLICATION_NAME, CHANNEL, Checkpoint, LOCK_CLASS};

use crate::settings::Settings;
use event_log::store::Committed;
use publisher::Broker;
use rand::Rng;
use secrecy::SecretString;
use source::Leader;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a relay needs; see [`RelayConfig::from_settings`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Names the checkpoint row and the leader lock: relays with one name
    /// share both, so exactly one of them publishes.
    pub name: String,
    pub event_store_url: SecretString,
    pub rabbitmq_url: SecretString,
    pub exchange: String,
    /// Events per round, and so the publisher confirms in flight.
    pub batch_size: usize,
    /// The longest the relay sleeps without a notification.
    pub poll_interval: Duration,
    /// How often a relay without the lock tries to take it.
    pub standby_retry: Duration,
    /// The client-provided connection name RabbitMQ shows (and an operator
    /// can close the connection by).
    pub connection_name: String,
    /// Partitions the events are split into by aggregate (routing keys end
    /// in `.p<i>` when more than one); the projectors must agree.
    pub partitions: u32,
}

impl RelayConfig {
    /// The relay the settings ask for: `None` when `SB_RELAY_ENABLED` is
    /// false (or, which validation rejects, no broker URL is set). The relay
    /// is named after its exchange.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        if !settings.relay_enabled {
            return None;
        }
        let rabbitmq_url = settings.rabbitmq_url.clone()?;
        let exchange = settings.rabbitmq_exchange.clone();
        Some(Self {
            name: exchange.clone(),
            event_store_url: settings.event_store_url.clone(),
            rabbitmq_url,
            connection_name: format!("command-service relay {exchange}"),
            exchange,
            batch_size: settings.relay_batch_size,
            poll_interval: Duration::from_millis(settings.relay_poll_interval_ms),
            standby_retry: Duration::from_secs(5),
            partitions: settings.relay_partitions,
        })
    }
}

/// A running relay task.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay: it finishes the batch in flight (checkpointing it only
    /// if every confirm arrived), closes its connections and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the relay task failed");
        }
    }

    /// Kills the task where it stands, like a crash (for tests).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Starts a relay on the current Tokio runtime. Dropping the handle stops it
/// like [`RelayHandle::shutdown`], without waiting for it.
pub fn spawn(config: RelayConfig) -> RelayHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(Relay::new(config, stopped).run());
    RelayHandle { stop, task }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("postgres ({stage}): {source}")]
    Postgres {
        stage: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("postgres ({stage}) did not answer within {after:?}")]
    PostgresTimeout {
        stage: &'static str,
        after: Duration,
    },
    #[error("rabbitmq ({stage}): {source}")]
    Broker {
        stage: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("rabbitmq ({stage}) did not answer within {after:?}")]
    BrokerTimeout {
        stage: &'static str,
        after: Duration,
    },
    #[error("rabbitmq refused (nack) the event at position {position}")]
    Nacked { position: i64 },
    #[error(
        "no queue is bound for the event at position {position} (routing key {routing_key}); \
         it is kept until one is"
    )]
    Unroutable { position: i64, routing_key: String },
    #[error("encoding an event: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the stored checkpoint is not behind this relay's: another relay wrote it")]
    CheckpointMoved,
}

impl RelayError {
    fn stage(&self) -> &'static str {
        match self {
            Self::Postgres { stage, .. }
            | Self::PostgresTimeout { stage, .. }
            | Self::Broker { stage, .. }
            | Self::BrokerTimeout { stage, .. } => stage,
            Self::Nacked { .. } => "confirm",
            Self::Unroutable { .. } => "unroutable",
            Self::Encode(_) => "encode",
            Self::CheckpointMoved => "checkpoint",
        }
    }

    /// Whether the Postgres side failed (so the lock may be gone).
    fn is_postgres(&self) -> bool {
        match self {
            Self::Postgres { .. } | Self::PostgresTimeout { .. } | Self::CheckpointMoved => true,
            Self::Broker { .. }
            | Self::BrokerTimeout { .. }
            | Self::Nacked { .. }
            | Self::Unroutable { .. } => false,
            // A row that cannot be encoded is read again after the backoff.
            Self::Encode(_) => false,
        }
    }
}

/// The error and its causes, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff from 100 ms to 10 s with "equal jitter": half the
/// window fixed, half random, so restarting replicas do not retry in step.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn next(&mut self) -> Duration {
        let window = Self::FIRST
            .saturating_mul(1 << self.failures.min(7))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        let half = window / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Batches published and not yet confirmed, at most: so up to
/// `2 × batch_size` confirms are in flight.
const BATCHES_IN_FLIGHT: usize = 2;

/// How a round of work ended.
enum Flow {
    /// Nothing more to read right now: wait for a wake-up.
    CaughtUp,
    /// Asked to stop; the batch in flight was finished.
    Stopped,
    /// Another relay holds the lock.
    Standby,
}

struct Relay {
    config: RelayConfig,
    stopped: watch::Receiver<bool>,
    leader: Option<Leader>,
    broker: Option<Broker>,
}

impl Relay {
    fn new(config: RelayConfig, stopped: watch::Receiver<bool>) -> Self {
        Self {
            config,
            stopped,
            leader: None,
            broker: None,
        }
    }

    /// Told to stop, or the handle is gone (then nobody could stop it, and
    /// `changed()` would return at once forever).
    fn stopping(&self) -> bool {
        *self.stopped.borrow() || self.stopped.has_changed().is_err()
    }

    /// Sleeps for `duration` unless told to stop first; true when stopping.
    async fn sleep_or_stop(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = self.stopped.changed() => {}
        }
        self.stopping()
    }

    fn label(&self) -> String {
        self.config.name.clone()
    }

    async fn run(mut self) {
        let name = self.label();
        tracing::info!(relay = %name, exchange = %self.config.exchange, "relay starting");
        metrics::gauge!("relay_leader", "relay" => name.clone()).set(0.0);
        let mut backoff = Backoff::default();
        while !self.stopping() {
            match self.round().await {
                Ok(Flow::CaughtUp) => {
                    backoff.reset();
                    let poll = self.config.poll_interval;
                    let Some(leader) = self.leader.as_mut() else {
                        continue;
                    };
                    let waited = tokio::select! {
                        waited = leader.wait(poll) => waited,
                        _ = self.stopped.changed() => Ok(()),
                    };
                    if let Err(error) = waited {
                        self.failed(error, &mut backoff).await;
                    }
                }
                Ok(Flow::Standby) => {
                    backoff.reset();
                    let retry = self.config.standby_retry;
                    self.sleep_or_stop(retry).await;
                }
                Ok(Flow::Stopped) => break,
                Err(error) => self.failed(error, &mut backoff).await,
            }
        }
        if let Some(broker) = self.broker.take() {
            broker.close().await;
        }
        if let Some(leader) = self.leader.take() {
            leader.close().await;
        }
        metrics::gauge!("relay_leader", "relay" => name.clone()).set(0.0);
        tracing::info!(relay = %name, "relay stopped");
    }

    /// Logs and counts an error, drops what it broke, and backs off.
    async fn failed(&mut self, error: RelayError, backoff: &mut Backoff) {
        let name = self.label();
        let stage = error.stage();
        metrics::counter!("relay_errors_total", "relay" => name.clone(), "stage" => stage)
            .increment(1);
        let delay = backoff.next();
        tracing::warn!(
            relay = %name,
            stage,
            error = %chain(&error),
            retry_in_ms = delay.as_millis() as u64,
            "relay failed; retrying"
        );
        if error.is_postgres() {
            self.lose_leadership().await;
        } else {
            if let Some(broker) = self.broker.take() {
                // The connection may be half-open: close it without waiting long.
                let _ = tokio::time::timeout(Duration::from_secs(1), broker.close()).await;
            }
            // Keep the lag gauge honest while nothing can be published.
            if let Some(leader) = self.leader.as_mut() {
                match leader.oldest_unpublished_age().await {
                    Ok(age) => metrics::gauge!("relay_lag_seconds", "relay" => name).set(age),
                    Err(_) => self.lose_leadership().await,
                }
            }
        }
        self.sleep_or_stop(delay).await;
    }

    async fn lose_leadership(&mut self) {
        if let Some(leader) = self.leader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), leader.close()).await;
            metrics::gauge!("relay_leader", "relay" => self.label()).set(0.0);
            tracing::warn!(relay = %self.config.name, "relay gave up the leader lock");
        }
        // A standby relay has no use for a broker connection.
        if let Some(broker) = self.broker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), broker.close()).await;
        }
    }

    /// Takes the lock and connects as needed, then publishes until caught up.
    async fn round(&mut self) -> Result<Flow, RelayError> {
        if self.leader.is_none() {
            match Leader::acquire(&self.config.event_store_url, &self.config.name).await? {
                Some(leader) => {
                    tracing::info!(
                        relay = %self.config.name,
                        checkpoint = ?leader.checkpoint(),
                        "relay is the leader"
                    );
                    metrics::gauge!("relay_leader", "relay" => self.label()).set(1.0);
                    self.leader = Some(leader);
                }
                None => {
                    tracing::debug!(relay = %self.config.name, "another relay holds the lock; standing by");
                    return Ok(Flow::Standby);
                }
            }
        }
        if self.broker.as_ref().is_some_and(|broker| !broker.is_open()) {
            tracing::warn!(relay = %self.config.name, "rabbitmq connection lost; reconnecting");
            self.broker = None;
        }
        if self.broker.is_none() {
            let broker = Broker::connect(
                &self.config.rabbitmq_url,
                &self.config.exchange,
                &self.config.connection_name,
                self.config.partitions,
            )
            .await?;
            tracing::info!(relay = %self.config.name, "relay connected to rabbitmq");
            self.broker = Some(broker);
        }
        self.pump().await
    }

    /// Publishes batch after batch until a read comes back empty (or the
    /// relay is asked to stop), keeping up to [`BATCHES_IN_FLIGHT`] batches
    /// unconfirmed so the broker always has work while the relay reads the
    /// next batch and writes the last checkpoint:
    ///
    /// ```text
    /// broker:   publish k ── publish k+1 ─────────── publish k+2 ──────────
    /// confirms:        ······ confirms k ···················· confirms k+1 ·
    /// postgres: read k+1 ──────────────── save k, read k+2 ───────── save k+1
    /// ```
    ///
    /// Confirms arrive in lapin's I/O task whether or not they are awaited, so
    /// the reads and saves overlap them without any explicit concurrency. The
    /// checkpoint only ever moves to a batch whose confirms all arrived, in
    /// order. On stop, no new batch is read; the ones in flight are confirmed
    /// and checkpointed (or abandoned, unconfirmed, on an error).
    async fn pump(&mut self) -> Result<Flow, RelayError> {
        let name = self.label();
        let batch_size = self.config.batch_size;
        let (Some(leader), Some(broker)) = (self.leader.as_mut(), self.broker.as_ref()) else {
            return Ok(Flow::CaughtUp);
        };
        let stopped = &self.stopped;
        let stopping = || *stopped.borrow() || stopped.has_changed().is_err();
        let mut in_flight = std::collections::VecDeque::with_capacity(BATCHES_IN_FLIGHT);
        let mut read_from = leader.checkpoint();
        let mut exhausted = false;
        loop {
            while in_flight.len() < BATCHES_IN_FLIGHT && !exhausted && !stopping() {
                let batch = leader.read_after(read_from, batch_size).await?;
                record_lag(&name, &batch);
                match batch.last().map(|committed| committed.position) {
                    None => exhausted = true,
                    Some(last) => {
                        read_from = last;
                        in_flight.push_back((last, batch.len(), broker.publish(&batch).await?));
                    }
                }
            }
            let Some((last, count, confirms)) = in_flight.pop_front() else {
                return Ok(if stopping() {
                    Flow::Stopped
                } else {
                    Flow::CaughtUp
                });
            };
            confirms.wait().await?;
            metrics::counter!("relay_events_published_total", "relay" => name.clone())
                .increment(count as u64);
            leader.save(last).await?;
            record_checkpoint(&name, last);
        }
    }
}

fn record_lag(name: &str, batch: &[Committed]) {
    let age = batch.first().map_or(0.0, |row| {
        (chrono::Utc::now() - row.event.recorded_at)
            .to_std()
            .map_or(0.0, |age| age.as_secs_f64())
    });
    metrics::gauge!("relay_lag_seconds", "relay" => name.to_owned()).set(age);
}

fn record_checkpoint(name: &str, checkpoint: Checkpoint) {
    metrics::gauge!("relay_checkpoint_position", "relay" => name.to_owned())
        .set(checkpoint.global_position as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_ten_seconds_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let delay = backoff.next();
            assert!(delay <= Duration::from_secs(10), "{delay:?}");
        }
        let late = backoff.next();
        assert!(late >= Duration::from_secs(5), "{late:?}");
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }
}
