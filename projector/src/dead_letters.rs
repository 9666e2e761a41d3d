//! Deliveries that keep failing: each event's attempts, counted in the read
//! database; the dead-letter queue, whose messages carry their reason in
//! headers; the aggregates parked behind a dead-lettered event; and what the
//! `projector dead-letters list|retry|purge` commands do.
//!
//! Why our own count, in Postgres, rather than RabbitMQ's `x-delivery-count`:
//! that header exists only on quorum queues (the projection queues are
//! classic, and a queue's type cannot change in place), it counts returns to
//! the queue while the projector retries in-process, and its meaning changed
//! between RabbitMQ 3.x and 4.x. A header we stamp ourselves would mean
//! republishing the message behind later events of its aggregate. A row per
//! failing event, written *before* each attempt and committed, survives
//! redeliveries, projector restarts and a database that dies during the
//! attempt (the count is already durable when the connection drops); it costs
//! nothing on the normal path, since only events that failed once are
//! counted this way.
//!
//! Dead letters are published, with publisher confirms, to the dead-letter
//! exchange before the delivery is acknowledged: at least once, so a crash in
//! between can leave a duplicate in the queue, which a retry skips like any
//! duplicate delivery.

use crate::broker::ConsumerConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use event_schema::StoredEvent;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use uuid::Uuid;

/// Every header the projector adds starts with this.
pub const HEADER_PREFIX: &str = "x-sb-";

/// Why a delivery went to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The body is not an event.
    Undecodable,
    /// The event cannot be applied, whatever the number of tries.
    Poison,
    /// It failed `SB_PROJECTOR_MAX_ATTEMPTS` times.
    AttemptsExhausted,
    /// An earlier event of its aggregate is dead-lettered.
    ParkedBehind,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Poison => "poison",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::ParkedBehind => "parked_behind",
        }
    }
}

/// What is known about a failure; it travels as the dead letter's headers.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: Reason,
    /// `poison`, `transient`, `undecodable` or `parked`.
    pub error_kind: String,
    /// The error's message with its causes.
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// For [`Reason::ParkedBehind`]: the sequence of the event it waits for.
    pub parked_behind: Option<i64>,
}

/// The attempts of one event so far.
#[derive(Debug, Clone)]
pub struct Attempts {
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub last_error_kind: Option<String>,
    pub last_error: Option<String>,
    /// Which attempt `last_error` is from.
    pub last_error_attempt: Option<u32>,
}

impl Attempts {
    /// The failure to report once the attempts ran out. The last attempt may
    /// have left no error behind (the projector or its database died during
    /// it): say so, with the last error that was recorded.
    pub fn exhausted(&self) -> Failure {
        let (error_kind, error) = match (&self.last_error_kind, &self.last_error) {
            (Some(kind), Some(error)) if self.last_error_attempt == Some(self.attempts) => {
                (kind.clone(), error.clone())
            }
            (kind, error) => (
                "interrupted".to_owned(),
                format!(
                    "attempt {} ended without an outcome (the projector stopped or lost its \
                     connection during it); last recorded error{}: {}",
                    self.attempts,
                    self.last_error_attempt
                        .map(|n| format!(" (attempt {n}, {})", kind.as_deref().unwrap_or("?")))
                        .unwrap_or_default(),
                    error.as_deref().unwrap_or("none"),
                ),
            ),
        };
        Failure {
            reason: Reason::AttemptsExhausted,
            error_kind,
            error,
            attempts: self.attempts,
            first_failed_at: self.first_failed_at,
            last_failed_at: self.last_failed_at,
            parked_behind: None,
        }
    }
}

/// Where an aggregate is parked: the event that was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedAt {
    pub sequence: i64,
    pub event_id: Uuid,
}

/// A parked aggregate, as `dead-letters list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedAggregate {
    pub projection: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub first_parked_sequence: i64,
    pub reason: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
}

/// The aggregate key of the parked set.
pub type AggregateKey = (String, String);

pub fn aggregate_key(event: &StoredEvent) -> AggregateKey {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

/// The attempts and parked aggregates, in the read database.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: PgPool,
}

impl Ledger {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Counts an attempt about to be made; `None` when `max` attempts were
    /// already made (the event is to be dead-lettered, not tried again).
    pub async fn begin_attempt(
        &self,
        projection: &str,
        event: &StoredEvent,
        max: u32,
    ) -> Result<Option<u32>, sqlx::Error> {
        let attempts: Option<i32> = sqlx::query_scalar(
            "INSERT INTO delivery_attempts (projection, event_id, aggregate_type, aggregate_id, sequence, attempts)
             VALUES ($1, $2, $3, $4, $5, 1)
             ON CONFLICT (projection, event_id) DO UPDATE SET attempts = delivery_attempts.attempts + 1
              WHERE delivery_attempts.attempts < $6
             RETURNING attempts",
        )
        .bind(projection)
        .bind(event.event_id)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(i32::try_from(max).unwrap_or(i32::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(attempts.map(|n| n.unsigned_abs()))
    }

    /// Records how the current attempt failed.
    pub async fn fail(
        &self,
        projection: &str,
        event: &StoredEvent,
        kind: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE delivery_attempts
                SET last_failed_at = now(), last_error_kind = $3, last_error = $4, last_error_attempt = attempts
              WHERE projection = $1 AND event_id = $2",
        )
        .bind(projection)
        .bind(event.event_id)
        .bind(kind)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts an attempt that was made (as part of a batch of one) and how
    /// it failed.
    pub async fn count_failed(
        &self,
        projection: &str,
        event: &StoredEvent,
        kind: &str,
        error: &str,
    ) -> Result<u32, sqlx::Error> {
        let attempts: i32 = sqlx::query_scalar(
            "INSERT INTO delivery_attempts (projection, event_id, aggregate_type, aggregate_id, sequence,
                                            attempts, last_error_kind, last_error, last_error_attempt)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $7, 1)
             ON CONFLICT (projection, event_id) DO UPDATE
                SET attempts = delivery_attempts.attempts + 1, last_failed_at = now(),
                    last_error_kind = EXCLUDED.last_error_kind, last_error = EXCLUDED.last_error,
                    last_error_attempt = delivery_attempts.attempts + 1
             RETURNING attempts",
        )
        .bind(projection)
        .bind(event.event_id)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(kind)
        .bind(error)
        .fetch_one(&self.pool)
        .await?;
        Ok(attempts.unsigned_abs())
    }

    /// Takes back an attempt that never reached the event (a dependency was
    /// unavailable).
    pub async fn uncount(&self, projection: &str, event: &StoredEvent) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE delivery_attempts SET attempts = attempts - 1
              WHERE projection = $1 AND event_id = $2 AND attempts > 0",
        )
        .bind(projection)
        .bind(event.event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn attempts(
        &self,
        projection: &str,
        event: &StoredEvent,
    ) -> Result<Option<Attempts>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT attempts, first_failed_at, last_failed_at, last_error_kind, last_error, last_error_attempt
               FROM delivery_attempts WHERE projection = $1 AND event_id = $2",
        )
        .bind(projection)
        .bind(event.event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Attempts {
                attempts: row.try_get::<i32, _>("attempts")?.unsigned_abs(),
                first_failed_at: row.try_get("first_failed_at")?,
                last_failed_at: row.try_get("last_failed_at")?,
                last_error_kind: row.try_get("last_error_kind")?,
                last_error: row.try_get("last_error")?,
                last_error_attempt: row
                    .try_get::<Option<i32>, _>("last_error_attempt")?
                    .map(i32::unsigned_abs),
            })
        })
        .transpose()
    }

    /// The event was applied: its count goes.
    pub async fn clear(&self, projection: &str, event: &StoredEvent) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM delivery_attempts WHERE projection = $1 AND event_id = $2")
            .bind(projection)
            .bind(event.event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Parks the event's aggregate behind it (keeping an earlier park) and
    /// drops its count, in one transaction.
    pub async fn park(
        &self,
        projection: &str,
        event: &StoredEvent,
        failure: &Failure,
    ) -> Result<ParkedAt, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO parked_aggregates (projection, aggregate_type, aggregate_id, first_parked_sequence,
                                            first_parked_event_id, reason, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (projection, aggregate_type, aggregate_id) DO NOTHING",
        )
        .bind(projection)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(event.event_id)
        .bind(format!("{}: {}", failure.error_kind, failure.error))
        .bind(i32::try_from(failure.attempts).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM delivery_attempts WHERE projection = $1 AND event_id = $2")
            .bind(projection)
            .bind(event.event_id)
            .execute(&mut *tx)
            .await?;
        let parked = sqlx::query(
            "SELECT first_parked_sequence, first_parked_event_id FROM parked_aggregates
              WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projection)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ParkedAt {
            sequence: parked.try_get("first_parked_sequence")?,
            event_id: parked.try_get("first_parked_event_id")?,
        })
    }

    /// Every aggregate parked in `projection`.
    pub async fn parked(
        &self,
        projection: &str,
    ) -> Result<HashMap<AggregateKey, ParkedAt>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, first_parked_sequence, first_parked_event_id
               FROM parked_aggregates WHERE projection = $1",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    (row.try_get("aggregate_type")?, row.try_get("aggregate_id")?),
                    ParkedAt {
                        sequence: row.try_get("first_parked_sequence")?,
                        event_id: row.try_get("first_parked_event_id")?,
                    },
                ))
            })
            .collect()
    }

    /// Whether the aggregate is (still) parked in `projection`.
    pub async fn parked_one(
        &self,
        projection: &str,
        key: &AggregateKey,
    ) -> Result<Option<ParkedAt>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT first_parked_sequence, first_parked_event_id FROM parked_aggregates
              WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projection)
        .bind(&key.0)
        .bind(&key.1)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ParkedAt {
                sequence: row.try_get("first_parked_sequence")?,
                event_id: row.try_get("first_parked_event_id")?,
            })
        })
        .transpose()
    }

    /// Every parked aggregate, for `dead-letters list`.
    pub async fn all_parked(&self) -> Result<Vec<ParkedAggregate>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT projection, aggregate_type, aggregate_id, first_parked_sequence, reason, attempts, parked_at
               FROM parked_aggregates ORDER BY parked_at, projection, aggregate_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ParkedAggregate {
                    projection: row.try_get("projection")?,
                    aggregate_type: row.try_get("aggregate_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    first_parked_sequence: row.try_get("first_parked_sequence")?,
                    reason: row.try_get("reason")?,
                    attempts: row.try_get("attempts")?,
                    parked_at: row.try_get("parked_at")?,
                })
            })
            .collect()
    }

    /// Un-parks the selection in every projection; returns how many
    /// aggregates were parked.
    pub async fn unpark(&self, selection: &Selection) -> Result<u64, sqlx::Error> {
        let done = match selection {
            Selection::All => {
                sqlx::query("DELETE FROM parked_aggregates")
                    .execute(&self.pool)
                    .await?
            }
            Selection::Aggregate(id) => {
                sqlx::query("DELETE FROM parked_aggregates WHERE aggregate_id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// How many aggregates `projection` has parked.
    pub async fn parked_count(&self, projection: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM parked_aggregates WHERE projection = $1")
            .bind(projection)
            .fetch_one(&self.pool)
            .await
    }
}

fn text(value: impl Into<String>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.into()))
}

fn time(at: DateTime<Utc>) -> AMQPValue {
    text(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Publishes `delivery` to the dead-letter exchange with `failure` in its
/// headers and waits for the broker's confirm. `channel` must be in confirm
/// mode.
pub async fn publish(
    channel: &Channel,
    config: &ConsumerConfig,
    projection: &str,
    delivery: &Delivery,
    event: Option<&StoredEvent>,
    failure: &Failure,
) -> Result<(), lapin::Error> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut put = |name: &str, value: AMQPValue| {
        headers.insert(ShortString::from(format!("{HEADER_PREFIX}{name}")), value);
    };
    put("projection", text(projection));
    put("queue", text(config.queue(projection)));
    put("reason", text(failure.reason.as_str()));
    put("error-kind", text(failure.error_kind.as_str()));
    put("error", text(failure.error.as_str()));
    put(
        "attempts",
        AMQPValue::LongLongInt(i64::from(failure.attempts)),
    );
    put("first-failed-at", time(failure.first_failed_at));
    put("last-failed-at", time(failure.last_failed_at));
    put("dead-lettered-at", time(Utc::now()));
    if let Some(sequence) = failure.parked_behind {
        put("parked-behind", AMQPValue::LongLongInt(sequence));
    }
    if let Some(event) = event {
        put("aggregate-type", text(event.aggregate_type.as_str()));
        put("aggregate-id", text(event.aggregate_id.as_str()));
        put("sequence", AMQPValue::LongLongInt(event.sequence));
        put("event-type", text(event.event_type.as_str()));
        put("event-id", text(event.event_id.to_string()));
    }
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirmation = channel
        .basic_publish(
            config.dead_letter().as_str().into(),
            delivery.routing_key.clone(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    match confirmation {
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) | Confirmation::NotRequested => Err(lapin::Error::from(
            std::io::Error::other("the broker did not confirm the dead letter"),
        )),
    }
}

/// Which dead letters a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// One aggregate's, by id (in every projection).
    Aggregate(String),
}

impl Selection {
    fn covers(&self, letter: &DeadLetter) -> bool {
        match self {
            Self::All => true,
            Self::Aggregate(id) => letter.aggregate_id.as_deref() == Some(id.as_str()),
        }
    }
}

/// One message of the dead-letter queue, as the commands show it. Fields are
/// `None` for messages dead-lettered before the projector stamped reasons (or
/// whose body is not an event).
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub projection: Option<String>,
    /// The queue it came from, and goes back to on retry.
    pub queue: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub reason: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<i64>,
    pub parked_behind: Option<i64>,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
    pub dead_lettered_at: Option<String>,
}

fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header_int(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// The queue RabbitMQ recorded when it dead-lettered the message itself
/// (`x-death`), for messages from before the projector stamped `x-sb-queue`.
fn death_queue(headers: &FieldTable) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    deaths.as_slice().iter().find_map(|death| match death {
        AMQPValue::FieldTable(death) => header_text(death, "queue"),
        _ => None,
    })
}

impl DeadLetter {
    pub fn of(delivery: &Delivery) -> Self {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let own = |name: &str| header_text(&headers, &format!("{HEADER_PREFIX}{name}"));
        let own_int = |name: &str| header_int(&headers, &format!("{HEADER_PREFIX}{name}"));
        let event: Option<StoredEvent> = serde_json::from_slice(&delivery.data).ok();
        let queue = own("queue").or_else(|| death_queue(&headers));
        Self {
            projection: own("projection").or_else(|| {
                queue
                    .as_deref()
                    .and_then(|q| q.rsplit('.').find(|part| !is_partition(part)))
                    .map(str::to_owned)
            }),
            queue,
            aggregate_type: own("aggregate-type")
                .or_else(|| event.as_ref().map(|e| e.aggregate_type.clone())),
            aggregate_id: own("aggregate-id")
                .or_else(|| event.as_ref().map(|e| e.aggregate_id.clone())),
            sequence: own_int("sequence").or_else(|| event.as_ref().map(|e| e.sequence)),
            event_type: own("event-type").or_else(|| event.as_ref().map(|e| e.event_type.clone())),
            event_id: own("event-id").or_else(|| event.as_ref().map(|e| e.event_id.to_string())),
            reason: own("reason"),
            error_kind: own("error-kind"),
            error: own("error"),
            attempts: own_int("attempts"),
            parked_behind: own_int("parked-behind"),
            first_failed_at: own("first-failed-at"),
            last_failed_at: own("last-failed-at"),
            dead_lettered_at: own("dead-lettered-at"),
        }
    }
}

/// `p3`, the suffix of a partition's queue.
fn is_partition(part: &str) -> bool {
    part.strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What `retry` or `purge` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Dead letters republished (retry) or dropped (purge).
    pub messages: usize,
    /// Aggregates un-parked.
    pub unparked: u64,
    /// Selected dead letters left in the queue: no queue is known to send
    /// them back to.
    pub skipped: usize,
}

/// The dead-letter queue, read without consuming: every message is taken
/// unacknowledged and whatever is not acknowledged goes back, in its place,
/// when the channel closes.
#[derive(Debug)]
pub struct DeadLetterQueue {
    connection: Connection,
    channel: Channel,
    queue: String,
}

impl DeadLetterQueue {
    pub async fn open(url: &str, config: &ConsumerConfig) -> Result<Self, lapin::Error> {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("projector dead-letters".into()),
        )
        .await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
            queue: config.dead_letter(),
        })
    }

    /// Takes every message, in queue order, without acknowledging it.
    async fn take_all(&self) -> Result<Vec<Delivery>, lapin::Error> {
        let mut taken = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?
        {
            taken.push(message.delivery);
        }
        Ok(taken)
    }

    /// Every dead letter, left in the queue.
    pub async fn list(self) -> Result<Vec<DeadLetter>, lapin::Error> {
        let taken = self.take_all().await?;
        let letters = taken.iter().map(DeadLetter::of).collect();
        self.close().await;
        Ok(letters)
    }

    /// Un-parks the selected aggregates, then sends their dead letters back
    /// to the queues they came from, in order. Un-parking comes first, so the
    /// projector applies what comes back instead of parking it again; a live
    /// event that arrives in between fills its gap from the event store, and
    /// the returning ones are then skipped as duplicates.
    pub async fn retry(self, ledger: &Ledger, selection: &Selection) -> anyhow::Result<Outcome> {
        let taken = self.take_all().await?;
        let mut outcome = Outcome {
            unparked: ledger.unpark(selection).await?,
            ..Outcome::default()
        };
        for delivery in &taken {
            let letter = DeadLetter::of(delivery);
            if !selection.covers(&letter) {
                continue;
            }
            let Some(queue) = letter.queue.as_deref() else {
                outcome.skipped += 1;
                continue;
            };
            let headers = delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default()
                .inner()
                .iter()
                .filter(|(name, _)| {
                    !name.as_str().starts_with(HEADER_PREFIX) && name.as_str() != "x-death"
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect::<std::collections::BTreeMap<_, _>>();
            let properties: BasicProperties = delivery
                .properties
                .clone()
                .with_headers(FieldTable::from(headers));
            let confirmation = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await?
                .await?;
            if !matches!(confirmation, Confirmation::Ack(_)) {
                anyhow::bail!("the broker did not confirm the message sent back to {queue}");
            }
            delivery.ack(BasicAckOptions::default()).await?;
            outcome.messages += 1;
        }
        self.close().await;
        Ok(outcome)
    }

    /// Drops the selected dead letters and un-parks their aggregates: the
    /// read model misses those events until a later event of the aggregate
    /// fills the gap from the event store (or a rebuild).
    pub async fn purge(self, ledger: &Ledger, selection: &Selection) -> anyhow::Result<Outcome> {
        let taken = self.take_all().await?;
        let mut outcome = Outcome::default();
        for delivery in &taken {
            if selection.covers(&DeadLetter::of(delivery)) {
                delivery.ack(BasicAckOptions::default()).await?;
                outcome.messages += 1;
            }
        }
        outcome.unparked = ledger.unpark(selection).await?;
        self.close().await;
        Ok(outcome)
    }

    async fn close(self) {
        // Closing returns every message not acknowledged to the queue.
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// `dead-letters list` for people: one table of dead letters, one of parked
/// aggregates.
pub fn tables(letters: &[DeadLetter], parked: &[ParkedAggregate]) -> String {
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let mut out = format!("{} dead letters\n", letters.len());
    if !letters.is_empty() {
        let rows: Vec<Vec<String>> = letters
            .iter()
            .map(|l| {
                vec![
                    or_dash(l.projection.clone()),
                    format!(
                        "{} {}",
                        l.aggregate_type.as_deref().unwrap_or("-"),
                        l.aggregate_id.as_deref().unwrap_or("-")
                    ),
                    or_dash(l.sequence.map(|s| s.to_string())),
                    or_dash(l.event_type.clone()),
                    or_dash(l.reason.clone()),
                    or_dash(l.attempts.map(|a| a.to_string())),
                    or_dash(l.dead_lettered_at.clone()),
                    match (&l.error_kind, &l.error) {
                        (Some(kind), Some(error)) => format!("{kind}: {error}"),
                        (_, error) => or_dash(error.clone()),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PROJECTION",
                "AGGREGATE",
                "SEQUENCE",
                "EVENT TYPE",
                "REASON",
                "ATTEMPTS",
                "DEAD-LETTERED AT",
                "ERROR",
            ],
            &rows,
        ));
    }
    out.push_str(&format!("\n{} parked aggregates\n", parked.len()));
    if !parked.is_empty() {
        let rows: Vec<Vec<String>> = parked
            .iter()
            .map(|p| {
                vec![
                    p.projection.clone(),
                    format!("{} {}", p.aggregate_type, p.aggregate_id),
                    p.first_parked_sequence.to_string(),
                    p.attempts.to_string(),
                    p.parked_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    p.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PROJECTION",
                "AGGREGATE",
                "PARKED AT SEQUENCE",
                "ATTEMPTS",
                "SINCE",
                "REASON",
            ],
            &rows,
        ));
    }
    out
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let rows = vec![
            vec!["search".to_owned(), "1".to_owned(), "x".to_owned()],
            vec!["documents".to_owned(), "12".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            table(&["P", "SEQ", "E"], &rows),
            "P          SEQ  E\nsearch     1    x\ndocuments  12   y\n"
        );
    }

    #[test]
    fn a_partition_suffix_is_recognised() {
        assert!(is_partition("p0"));
        assert!(is_partition("p12"));
        assert!(!is_partition("p"));
        assert!(!is_partition("projector"));
        assert!(!is_partition("search"));
    }

    fn attempts(last_error_attempt: Option<u32>) -> Attempts {
        Attempts {
            attempts: 3,
            first_failed_at: Utc::now(),
            last_failed_at: Utc::now(),
            last_error_kind: Some("transient".into()),
            last_error: Some("database: boom".into()),
            last_error_attempt,
        }
    }

    #[test]
    fn exhausted_attempts_report_the_last_error() {
        let failure = attempts(Some(3)).exhausted();
        assert_eq!(failure.reason, Reason::AttemptsExhausted);
        assert_eq!(failure.error_kind, "transient");
        assert_eq!(failure.error, "database: boom");
        assert_eq!(failure.attempts, 3);
    }

    #[test]
    fn an_interrupted_last_attempt_says_so_and_keeps_the_last_recorded_error() {
        let failure = attempts(Some(2)).exhausted();
        assert_eq!(failure.error_kind, "interrupted");
        assert!(failure.error.contains("attempt 3 ended without an outcome"));
        assert!(
            failure
                .error
                .contains("(attempt 2, transient): database: boom")
        );
    }
}
