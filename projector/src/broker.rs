//! RabbitMQ: the queues of the projections and the loop that feeds each
//! projection its deliveries.
//!
//! Topology (declared idempotently on every connect):
//! - the relay's durable topic exchange;
//! - per projection, a durable queue `<prefix>.<projection>` bound with `#`,
//!   dead-lettering to the fanout exchange `<prefix>.dead_letter`, whose queue
//!   of the same name keeps what could not be projected for inspection;
//! - or, with `SB_PROJECTOR_PARTITIONS` = P > 1, per projection P queues
//!   `<prefix>.<projection>.p<i>` bound with `#.p<i>`: the relay (with
//!   `SB_RELAY_PARTITIONS` = P) suffixes each routing key with the partition
//!   of the event's aggregate, so each aggregate's events stay in one queue,
//!   in order, and P projectors (partition 0..P-1) share the load.
//!
//! Deliveries are acknowledged only after the read-model write committed;
//! a crash before that redelivers them, and the projections skip duplicates.

use crate::projection::{Applied, Projection, ProjectionError};
use event_schema::StoredEvent;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where and how a projection consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: SecretString,
    pub exchange: String,
    pub queue_prefix: String,
    pub prefetch: u16,
    pub batch_size: usize,
    pub max_attempts: u32,
    /// How many partitions the events are split into, and which one this
    /// projector consumes.
    pub partitions: u32,
    pub partition: u32,
}

impl ConsumerConfig {
    pub fn queue(&self, projection: &str) -> String {
        if self.partitions > 1 {
            format!("{}.{projection}.p{}", self.queue_prefix, self.partition)
        } else {
            format!("{}.{projection}", self.queue_prefix)
        }
    }

    /// The binding key of this partition's queues.
    pub fn binding_key(&self) -> String {
        if self.partitions > 1 {
            format!("#.p{}", self.partition)
        } else {
            "#".to_owned()
        }
    }

    /// The same consumer for another partition.
    #[must_use]
    pub fn for_partition(&self, partition: u32) -> Self {
        Self {
            partition,
            ..self.clone()
        }
    }

    pub fn dead_letter(&self) -> String {
        format!("{}.dead_letter", self.queue_prefix)
    }
}

/// Declares the exchange, the dead-letter exchange and queue, and the
/// projection's queue with its binding.
pub async fn declare(
    channel: &Channel,
    config: &ConsumerConfig,
    projection: &str,
) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    let dead_letter = config.dead_letter();
    channel
        .exchange_declare(
            dead_letter.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            dead_letter.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            dead_letter.as_str().into(),
            dead_letter.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let queue = config.queue(projection);
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter.as_str().into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            config.exchange.as_str().into(),
            config.binding_key().as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Why a consumer stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Fatal(ProjectionError),
}

/// Consumes for `projection` until `shutdown` turns true, reconnecting with
/// backoff whenever the broker goes away. Returns only on shutdown or on a
/// fatal projection error (a misconfiguration no retry can fix).
pub async fn run(
    projection: Arc<dyn Projection>,
    config: ConsumerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let name = projection.name();
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        match consume(&*projection, &config, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(Stop::Fatal(error)) => {
                tracing::error!(projection = name, %error, "projection stopped");
                return Err(ConsumerError::Fatal(error));
            }
            Err(Stop::Broker(error)) => {
                failures += 1;
                metrics::counter!("projector_broker_errors_total", "projection" => name)
                    .increment(1);
                let wait = backoff(failures);
                tracing::warn!(projection = name, %error, retry_in_ms = wait.as_millis() as u64, "broker connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    Ok(())
}

enum Stop {
    Fatal(ProjectionError),
    Broker(lapin::Error),
}

impl From<lapin::Error> for Stop {
    fn from(error: lapin::Error) -> Self {
        Self::Broker(error)
    }
}

fn backoff(failures: u32) -> Duration {
    let ceiling_ms = (100u64 << failures.min(7)).min(10_000);
    Duration::from_millis(rand::rng().random_range(ceiling_ms / 2..=ceiling_ms))
}

async fn consume(
    projection: &dyn Projection,
    config: &ConsumerConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let name = projection.name();
    // Named after its queue, so an operator (or a test) can pick this
    // connection out among the broker's.
    let properties =
        ConnectionProperties::default().with_connection_name(config.queue(name).as_str().into());
    let connection = Connection::connect(config.url.expose_secret(), properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    declare(&channel, config, name).await?;
    let mut consumer = channel
        .basic_consume(
            config.queue(name).as_str().into(),
            format!("projector.{name}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(projection = name, queue = %config.queue(name), "consuming");
    loop {
        let first = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.changed() => None,
        };
        if *shutdown.borrow() {
            let _ = connection.close(200, "shutting down".into()).await;
            return Ok(());
        }
        let first = match first {
            Some(delivery) => delivery?,
            None => {
                return Err(Stop::Broker(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                )));
            }
        };
        // Whatever else has already arrived joins the batch: under load
        // batches fill up (one transaction, one embedding call), when idle
        // each event goes alone without waiting.
        let mut batch = vec![first];
        while batch.len() < config.batch_size {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        handle_batch(projection, config, batch, shutdown).await?;
    }
}

/// Applies a batch and settles every delivery in it: acked once applied,
/// dead-lettered once it has failed `max_attempts` times.
async fn handle_batch(
    projection: &dyn Projection,
    config: &ConsumerConfig,
    batch: Vec<Delivery>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), Stop> {
    let events: Vec<Option<StoredEvent>> = batch
        .iter()
        .map(|d| serde_json::from_slice(&d.data).ok())
        .collect();
    if events.iter().all(Option::is_some) {
        let events: Vec<StoredEvent> = events.iter().flatten().cloned().collect();
        match apply_until_settled(projection, &events, shutdown).await {
            Ok(applied) => {
                record(projection.name(), applied, events.last());
                if let Some(last) = batch.last() {
                    last.ack(BasicAckOptions { multiple: true }).await?;
                }
                return Ok(());
            }
            Err(ProjectionError::Fatal(e)) => return Err(Stop::Fatal(ProjectionError::Fatal(e))),
            // Shutting down mid-outage: leave the batch unacknowledged; the
            // broker redelivers it to the next consumer.
            Err(ProjectionError::Transient(_)) => return Ok(()),
            // One event of the batch cannot be applied: find it by going one by one.
            Err(ProjectionError::Poison(_)) => {}
        }
    }
    for (delivery, event) in batch.iter().zip(events) {
        handle_one(projection, config, delivery, event, shutdown).await?;
    }
    Ok(())
}

async fn handle_one(
    projection: &dyn Projection,
    config: &ConsumerConfig,
    delivery: &Delivery,
    event: Option<StoredEvent>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), Stop> {
    let name = projection.name();
    let mut last_error = String::from("the message body is not an event");
    if let Some(event) = &event {
        for attempt in 1..=config.max_attempts {
            match apply_until_settled(projection, std::slice::from_ref(event), shutdown).await {
                Ok(applied) => {
                    record(name, applied, Some(event));
                    delivery.ack(BasicAckOptions::default()).await?;
                    return Ok(());
                }
                Err(ProjectionError::Fatal(e)) => {
                    return Err(Stop::Fatal(ProjectionError::Fatal(e)));
                }
                Err(ProjectionError::Transient(_)) => return Ok(()),
                Err(error @ ProjectionError::Poison(_)) => {
                    last_error = error.to_string();
                    tracing::warn!(projection = name, attempt, error = %last_error, "event failed");
                    if attempt < config.max_attempts {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
            }
        }
    }
    // `requeue: false` routes it to the dead-letter exchange.
    delivery
        .reject(BasicRejectOptions { requeue: false })
        .await?;
    metrics::counter!("projector_dead_letters_total", "projection" => name).increment(1);
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "dead_lettered")
        .increment(1);
    tracing::error!(
        projection = name,
        message_id = delivery.properties.message_id().as_ref().map(|m| m.as_str()).unwrap_or(""),
        routing_key = delivery.routing_key.as_str(),
        error = %last_error,
        "event dead-lettered"
    );
    Ok(())
}

/// Applies, retrying transient failures (a database or Redis outage, an
/// embedding provider's bad minute) until they pass or shutdown is asked;
/// returns poison and fatal errors at once.
async fn apply_until_settled(
    projection: &dyn Projection,
    events: &[StoredEvent],
    shutdown: &watch::Receiver<bool>,
) -> Result<Applied, ProjectionError> {
    let mut failures = 0;
    loop {
        match projection.apply(events).await {
            Err(ProjectionError::Transient(error)) if !*shutdown.borrow() => {
                failures += 1;
                metrics::counter!("projector_transient_errors_total", "projection" => projection.name()).increment(1);
                tracing::warn!(projection = projection.name(), %error, failures, "transient failure; retrying");
                tokio::time::sleep(backoff(failures)).await;
            }
            other => return other,
        }
    }
}

fn record(name: &'static str, applied: Applied, last: Option<&StoredEvent>) {
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "applied")
        .increment(applied.applied);
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "duplicate")
        .increment(applied.duplicates);
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "gap_filled")
        .increment(applied.gap_filled);
    if let Some(last) = last {
        let lag = (chrono::Utc::now() - last.recorded_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        metrics::gauge!("projection_lag_seconds", "projection" => name).set(lag);
    }
}
