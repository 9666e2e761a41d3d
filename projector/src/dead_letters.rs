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
//!
//! A dead letter never holds memory text: its body is a [`Body`], a
//! reference to the event in the event store (or, for a message that is no
//! event, a fingerprint of it), and `retry` reads the event again from the
//! store. An erase redacts the store in place, so it has nothing to chase in
//! the queue, and a retry after it sends the redacted event. Error messages
//! are redacted before they get here ([`crate::redact`]). The queue has a
//! length limit; see [`queue`].

pub mod queue;

use crate::broker::ConsumerConfig;
use crate::redact::{Redactor, bounded};
use crate::source::EventSource;
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use event_schema::StoredEvent;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

    /// Un-parks one aggregate in `projection`.
    pub async fn unpark_in(
        &self,
        projection: &str,
        key: &AggregateKey,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM parked_aggregates
              WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projection)
        .bind(&key.0)
        .bind(&key.1)
        .execute(&self.pool)
        .await?;
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

/// The most of an error message a dead letter carries. With a body that is
/// a reference, this bounds the size of every dead letter, so the queue's
/// length limit bounds what it holds.
pub const MAX_ERROR_BYTES: usize = 2048;

/// What a dead letter's body holds in place of the message: never memory
/// text. An event is kept as its place in the event store, which `retry`
/// reads again; a message that is no event cannot be read again, so only a
/// fingerprint of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "dead_letter", rename_all = "snake_case")]
pub enum Body {
    Event {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        event_id: Uuid,
        event_type: String,
    },
    Undecodable {
        /// SHA-256 of the message, in hex.
        sha256: String,
        /// Its length in bytes.
        length: u64,
    },
}

impl Body {
    pub fn of_event(event: &StoredEvent) -> Self {
        Self::Event {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
        }
    }

    pub fn fingerprint(data: &[u8]) -> Self {
        Self::Undecodable {
            sha256: hex::encode(Sha256::digest(data)),
            length: data.len() as u64,
        }
    }

    /// What the body `data` of a delivery or of a dead letter becomes: a
    /// reference stays as it is, an event becomes its reference, anything
    /// else its fingerprint.
    pub fn of_message(data: &[u8]) -> Self {
        match Found::of(data) {
            Found::Reference(body) => body,
            Found::Event(event) => Self::of_event(&event),
            Found::Message => Self::fingerprint(data),
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Puts what the body says in the headers too, where `list` (and an
    /// operator's tools) read it.
    fn stamp(&self, headers: &mut FieldTable) {
        let mut put = |name: &str, value: AMQPValue| {
            headers.insert(ShortString::from(format!("{HEADER_PREFIX}{name}")), value);
        };
        match self {
            Self::Event {
                aggregate_type,
                aggregate_id,
                sequence,
                event_id,
                event_type,
            } => {
                put("aggregate-type", text(aggregate_type.as_str()));
                put("aggregate-id", text(aggregate_id.as_str()));
                put("sequence", AMQPValue::LongLongInt(*sequence));
                put("event-type", text(event_type.as_str()));
                put("event-id", text(event_id.to_string()));
            }
            Self::Undecodable { sha256, length } => {
                put("body-sha256", text(sha256.as_str()));
                put(
                    "body-length",
                    AMQPValue::LongLongInt(i64::try_from(*length).unwrap_or(i64::MAX)),
                );
            }
        }
    }
}

/// A dead letter's body as found: a [`Body`], or what a projector from before
/// references left (or RabbitMQ itself, dead-lettering from a projection
/// queue): the whole message.
#[derive(Debug)]
enum Found {
    Reference(Body),
    Event(Box<StoredEvent>),
    Message,
}

impl Found {
    fn of(data: &[u8]) -> Self {
        if let Ok(body) = serde_json::from_slice::<Body>(data) {
            Self::Reference(body)
        } else if let Ok(event) = serde_json::from_slice::<StoredEvent>(data) {
            Self::Event(Box::new(event))
        } else {
            Self::Message
        }
    }

    fn held(&self) -> Held {
        match self {
            Self::Reference(Body::Event { .. }) => Held::Reference,
            Self::Reference(Body::Undecodable { .. }) => Held::Fingerprint,
            Self::Event(_) => Held::Event,
            Self::Message => Held::Message,
        }
    }
}

/// What a dead letter's body holds, as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// A reference to the event in the event store.
    Reference,
    /// The SHA-256 and length of a message that was no event; the message
    /// itself is not kept, so there is nothing to retry.
    Fingerprint,
    /// The whole event, memory text included, as dead letters were before
    /// references: `projector migrate` turns it into a reference.
    Event,
    /// The whole message that is no event: `projector migrate` turns it into
    /// a fingerprint.
    Message,
}

impl Held {
    /// Whether the body still holds a whole message (text, perhaps).
    pub fn is_whole(self) -> bool {
        matches!(self, Self::Event | Self::Message)
    }
}

/// Why a dead letter was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing the dead letter: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker took the message but no queue kept it: the dead-letter
    /// queue is full (it refuses the overflow) or missing. Nothing is lost
    /// while the delivery waits, unacknowledged.
    #[error("the dead letter was refused: {0}")]
    Refused(&'static str),
}

/// Publishes the dead letter of `delivery` (a reference to `event`, or a
/// fingerprint of a body that is no event) to the dead-letter exchange with
/// `failure` in its headers, and waits for the broker's confirm. `channel`
/// must be in confirm mode.
pub async fn publish(
    channel: &Channel,
    config: &ConsumerConfig,
    projection: &str,
    delivery: &Delivery,
    event: Option<&StoredEvent>,
    failure: &Failure,
) -> Result<(), PublishError> {
    let body = event.map_or_else(|| Body::of_message(&delivery.data), Body::of_event);
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut put = |name: &str, value: AMQPValue| {
        headers.insert(ShortString::from(format!("{HEADER_PREFIX}{name}")), value);
    };
    put("projection", text(projection));
    put("queue", text(config.queue(projection)));
    put("reason", text(failure.reason.as_str()));
    put("error-kind", text(failure.error_kind.as_str()));
    put("error", text(bounded(&failure.error, MAX_ERROR_BYTES)));
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
    body.stamp(&mut headers);
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    let confirmation = channel
        .basic_publish(
            config.dead_letter().as_str().into(),
            delivery.routing_key.clone(),
            // Mandatory: with no queue bound (the queue deleted, or being
            // redeclared by `migrate`) the message comes back instead of
            // vanishing, and the delivery waits.
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &body.to_vec(),
            properties,
        )
        .await?
        .await?;
    settled(confirmation)
}

/// A publisher confirm as a result: stored, or refused and why.
fn settled(confirmation: Confirmation) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Refused(
            "no queue is bound to the dead-letter exchange",
        )),
        Confirmation::Nack(_) => Err(PublishError::Refused(
            "the dead-letter queue is full (SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH)",
        )),
        Confirmation::NotRequested => Err(PublishError::Broker(lapin::Error::from(
            std::io::Error::other("the channel is not in confirm mode"),
        ))),
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
    /// What its body holds: a reference, a fingerprint, or (from before
    /// references) the whole message.
    pub body: Held,
    /// For a message that was no event: the SHA-256 of the message and its
    /// length in bytes, all that is kept of it.
    pub body_sha256: Option<String>,
    pub body_length: Option<i64>,
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
        let found = Found::of(&delivery.data);
        let held = found.held();
        // What the body says, for letters whose headers do not.
        let body = match found {
            Found::Reference(body) => body,
            Found::Event(event) => Body::of_event(&event),
            Found::Message => Body::fingerprint(&delivery.data),
        };
        let (event, fingerprint) = match body {
            Body::Event {
                aggregate_type,
                aggregate_id,
                sequence,
                event_id,
                event_type,
            } => (
                Some((
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    event_id.to_string(),
                    event_type,
                )),
                None,
            ),
            Body::Undecodable { sha256, length } => (
                None,
                Some((sha256, i64::try_from(length).unwrap_or(i64::MAX))),
            ),
        };
        let queue = own("queue").or_else(|| death_queue(&headers));
        Self {
            body: held,
            body_sha256: own("body-sha256").or_else(|| fingerprint.as_ref().map(|f| f.0.clone())),
            body_length: own_int("body-length").or_else(|| fingerprint.as_ref().map(|f| f.1)),
            projection: own("projection").or_else(|| {
                queue
                    .as_deref()
                    .and_then(|q| event_log::broker::projection_of_queue(q))
                    .map(str::to_owned)
            }),
            queue,
            aggregate_type: own("aggregate-type").or_else(|| event.as_ref().map(|e| e.0.clone())),
            aggregate_id: own("aggregate-id").or_else(|| event.as_ref().map(|e| e.1.clone())),
            sequence: own_int("sequence").or_else(|| event.as_ref().map(|e| e.2)),
            event_id: own("event-id").or_else(|| event.as_ref().map(|e| e.3.clone())),
            event_type: own("event-type").or_else(|| event.as_ref().map(|e| e.4.clone())),
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

    /// Where its event is in the event store; `None` for a message that was
    /// no event.
    fn event_key(&self) -> Option<(&str, &str, i64)> {
        Some((
            self.aggregate_type.as_deref()?,
            self.aggregate_id.as_deref()?,
            self.sequence?,
        ))
    }
}

/// A dead letter's message as `migrate` keeps it: the same properties and
/// headers, the body turned into a [`Body`] (and said in the headers too),
/// and the error redacted of the texts of a whole event, as a projector from
/// before redaction may have left them there.
pub fn converted(delivery: &Delivery) -> (BasicProperties, Vec<u8>) {
    let (body, redactor) = match Found::of(&delivery.data) {
        Found::Reference(body) => (body, Redactor::default()),
        Found::Event(event) => (
            Body::of_event(&event),
            Redactor::of_events([event.as_ref()]),
        ),
        Found::Message => (Body::fingerprint(&delivery.data), Redactor::default()),
    };
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let error = format!("{HEADER_PREFIX}error");
    if let Some(message) = header_text(&headers, &error) {
        headers.insert(
            error.as_str().into(),
            text(bounded(&redactor.redact(&message), MAX_ERROR_BYTES)),
        );
    }
    body.stamp(&mut headers);
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    (properties, body.to_vec())
}

/// The properties of a dead letter's event sent back to its queue: the
/// relay's, without what dead-lettering added.
fn resent_properties(delivery: &Delivery) -> BasicProperties {
    let headers = delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default()
        .inner()
        .iter()
        .filter(|(name, _)| !name.as_str().starts_with(HEADER_PREFIX) && name.as_str() != "x-death")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect::<std::collections::BTreeMap<_, _>>();
    delivery
        .properties
        .clone()
        .with_headers(FieldTable::from(headers))
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

/// `p3`, the suffix of a partition's queue.
/// What `retry` or `purge` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Dead letters whose event was sent back (retry) or dropped (purge).
    pub messages: usize,
    /// Aggregates un-parked.
    pub unparked: u64,
    /// Selected dead letters left in the queue: no queue is known to send
    /// them back to.
    pub skipped: usize,
    /// Selected dead letters left in the queue: the message was no event,
    /// and only its fingerprint is kept.
    pub undecodable: usize,
    /// Selected dead letters left in the queue: the event store has no such
    /// event (the wrong store?).
    pub missing: usize,
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

    /// Un-parks the selected aggregates, then sends their dead letters'
    /// events, read again from the event store as they are now (redacted,
    /// if the memory was erased since), back to the queues they came from,
    /// in order. The events are read first, so a store that cannot be read
    /// changes nothing. Un-parking comes before sending, so the projector
    /// applies what comes back instead of parking it again; a live event
    /// that arrives in between fills its gap from the event store, and the
    /// returning ones are then skipped as duplicates.
    pub async fn retry(
        self,
        ledger: &Ledger,
        source: &EventSource,
        selection: &Selection,
    ) -> anyhow::Result<Outcome> {
        let taken = self.take_all().await?;
        let mut outcome = Outcome::default();
        let mut resend = Vec::new();
        for delivery in &taken {
            let letter = DeadLetter::of(delivery);
            if !selection.covers(&letter) {
                continue;
            }
            let Some(queue) = letter.queue.clone() else {
                outcome.skipped += 1;
                continue;
            };
            let Some((aggregate_type, aggregate_id, sequence)) = letter.event_key() else {
                outcome.undecodable += 1;
                continue;
            };
            let event = source
                .at(aggregate_type, aggregate_id, sequence)
                .await
                .context("reading the dead letters' events from the event store")?
                .filter(|event| {
                    letter
                        .event_id
                        .as_deref()
                        .is_none_or(|id| id == event.event_id.to_string())
                });
            match event {
                Some(event) => resend.push((delivery, queue, event)),
                None => outcome.missing += 1,
            }
        }
        outcome.unparked = ledger.unpark(selection).await?;
        for (delivery, queue, event) in resend {
            let confirmation = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &serde_json::to_vec(&event)?,
                    resent_properties(delivery),
                )
                .await?
                .await?;
            if !matches!(confirmation, Confirmation::Ack(None)) {
                anyhow::bail!("the broker did not take the event sent back to {queue}");
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
    let mut out = format!("{} dead letters\n", letters.len());
    if !letters.is_empty() {
        out.push_str(&letters_table(letters));
    }
    out.push_str(&format!("\n{} parked aggregates\n", parked.len()));
    if !parked.is_empty() {
        out.push_str(&parked_table(parked));
    }
    out
}

/// The dead letters, one row each, and what `retry` cannot do with some.
fn letters_table(letters: &[DeadLetter]) -> String {
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
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
                body_cell(l),
                match (&l.error_kind, &l.error) {
                    (Some(kind), Some(error)) => format!("{kind}: {error}"),
                    (_, error) => or_dash(error.clone()),
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PROJECTION",
            "AGGREGATE",
            "SEQUENCE",
            "EVENT TYPE",
            "REASON",
            "ATTEMPTS",
            "DEAD-LETTERED AT",
            "BODY",
            "ERROR",
        ],
        &rows,
    );
    let undecodable = letters
        .iter()
        .filter(|l| l.body == Held::Fingerprint)
        .count();
    if undecodable > 0 {
        out.push_str(&format!(
            "{undecodable} dead letters were no event: only a SHA-256 of the message and its \
             length are kept, so `retry` has nothing to send back; `purge` drops them\n"
        ));
    }
    let whole = letters.iter().filter(|l| l.body.is_whole()).count();
    if whole > 0 {
        out.push_str(&format!(
            "{whole} dead letters still hold their whole message, memory text included \
             (from before dead letters held references, or dead-lettered by RabbitMQ \
             itself): `projector migrate` turns them into references\n"
        ));
    }
    out
}

/// The parked aggregates, one row each.
fn parked_table(parked: &[ParkedAggregate]) -> String {
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
    table(
        &[
            "PROJECTION",
            "AGGREGATE",
            "PARKED AT SEQUENCE",
            "ATTEMPTS",
            "SINCE",
            "REASON",
        ],
        &rows,
    )
}

/// What a dead letter's body holds, in a few words.
fn body_cell(letter: &DeadLetter) -> String {
    match letter.body {
        Held::Reference => "reference".to_owned(),
        Held::Fingerprint => format!(
            "sha256:{}… {} bytes, not kept",
            letter
                .body_sha256
                .as_deref()
                .map_or("?", |h| h.get(..12).unwrap_or(h)),
            letter.body_length.unwrap_or(0)
        ),
        Held::Event => "whole event".to_owned(),
        Held::Message => "whole message".to_owned(),
    }
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

    fn event() -> StoredEvent {
        StoredEvent {
            event_id: Uuid::now_v7(),
            aggregate_type: "Memory".into(),
            aggregate_id: "m-1".into(),
            sequence: 3,
            global_position: 9,
            event_type: "MemoryRevised".into(),
            event_version: "1".into(),
            recorded_at: Utc::now(),
            payload: serde_json::json!({"MemoryRevised": {"content": "okapi secret"}}),
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn an_event_becomes_a_reference_without_its_text_and_a_reference_stays_one() {
        let event = event();
        let body = Body::of_message(&serde_json::to_vec(&event).unwrap());
        assert_eq!(body, Body::of_event(&event));
        let bytes = body.to_vec();
        assert!(!String::from_utf8_lossy(&bytes).contains("okapi"));
        assert!(String::from_utf8_lossy(&bytes).contains(r#""dead_letter":"event""#));
        assert_eq!(Body::of_message(&bytes), body);
        assert_eq!(Found::of(&bytes).held(), Held::Reference);
        assert_eq!(
            Found::of(&serde_json::to_vec(&event).unwrap()).held(),
            Held::Event
        );
    }

    #[test]
    fn a_message_that_is_no_event_becomes_its_fingerprint() {
        let body = Body::of_message(b"abc");
        assert_eq!(
            body,
            Body::Undecodable {
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                length: 3,
            }
        );
        assert_eq!(Found::of(b"abc").held(), Held::Message);
        assert_eq!(Found::of(&body.to_vec()).held(), Held::Fingerprint);
        assert_eq!(Body::of_message(&body.to_vec()), body);
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
