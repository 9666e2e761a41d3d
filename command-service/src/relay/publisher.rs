//! The RabbitMQ side of the relay: one connection, one confirm-mode channel,
//! and the shape of the message each event becomes (the contract the
//! projector consumes).

use super::RelayError;
use event_log::broker::published_routing_key;
use event_log::store::Committed;
use event_schema::StoredEvent;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;

/// How long connecting and declaring may take before the attempt counts as
/// failed: a broker that accepts TCP but never answers must not hang the relay.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the broker may take to confirm one batch. Confirms normally take
/// milliseconds; a broker under memory or disk alarm blocks publishers, and
/// the relay then reconnects and retries rather than wait forever.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// An AMQP short string (routing key, message id, type) holds 255 bytes;
/// lapin panics on a longer one, so a hand-written row with a huge type name
/// is cut at a character boundary instead.
fn short(value: &str) -> ShortString {
    let mut end = value.len().min(255);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::try_new(&value[..end]).unwrap_or_default()
}

/// One event as it goes on the wire.
#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: ShortString,
    /// The JSON of the [`StoredEvent`], exactly as stored (not upcast).
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// Builds the message for one stored event: persistent JSON, message id =
/// event id, type = event type, timestamp = recorded_at (unix seconds), and
/// headers for routing and deduplication without parsing the body. The
/// routing key is the broker contract's
/// ([`event_log::broker::published_routing_key`]).
pub fn message_for(event: &StoredEvent, partitions: u32) -> Result<Message, serde_json::Error> {
    let body = serde_json::to_vec(event)?;
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes()));
    let mut headers = FieldTable::default();
    headers.insert("aggregate_type".into(), text(&event.aggregate_type));
    headers.insert("aggregate_id".into(), text(&event.aggregate_id));
    headers.insert("event_type".into(), text(&event.event_type));
    headers.insert("sequence".into(), AMQPValue::LongLongInt(event.sequence));
    headers.insert(
        "global_position".into(),
        AMQPValue::LongLongInt(event.global_position),
    );
    headers.insert("schema_version".into(), text(&event.event_version));
    for key in ["correlation_id", "owner_id"] {
        if let Some(value) = event.metadata.get(key).and_then(Value::as_str) {
            headers.insert(key.into(), text(value));
        }
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(short(&event.event_id.to_string()))
        .with_type(short(&event.event_type))
        .with_timestamp(u64::try_from(event.recorded_at.timestamp()).unwrap_or(0))
        .with_headers(headers);
    Ok(Message {
        routing_key: short(&published_routing_key(event, partitions)),
        body,
        properties,
    })
}

/// A connection and its confirm-mode channel, with the exchange declared.
pub(super) struct Broker {
    connection: Connection,
    channel: Channel,
    exchange: ShortString,
    partitions: u32,
}

/// The confirms of one published batch, in publish order.
pub(super) struct Confirms {
    pending: Vec<(i64, PublisherConfirm)>,
}

fn broker_error(stage: &'static str) -> impl FnOnce(lapin::Error) -> RelayError {
    move |source| RelayError::Broker { stage, source }
}

impl Broker {
    pub(super) async fn connect(
        url: &SecretString,
        exchange: &str,
        connection_name: &str,
        partitions: u32,
    ) -> Result<Self, RelayError> {
        let attempt = async {
            let properties =
                ConnectionProperties::default().with_connection_name(connection_name.into());
            let connection = Connection::connect(url.expose_secret(), properties)
                .await
                .map_err(broker_error("connect_broker"))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(broker_error("connect_broker"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker_error("connect_broker"))?;
            let exchange = short(exchange);
            channel
                .exchange_declare(
                    exchange.clone(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(broker_error("connect_broker"))?;
            Ok(Self {
                connection,
                channel,
                exchange,
                partitions,
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| RelayError::BrokerTimeout {
                stage: "connect_broker",
                after: CONNECT_TIMEOUT,
            })?
    }

    /// Sends every event of the batch, in order, without waiting for any
    /// confirm: the whole batch is in flight at once.
    #[tracing::instrument(skip_all, fields(events = rows.len()), err(Display))]
    pub(super) async fn publish(&self, rows: &[Committed]) -> Result<Confirms, RelayError> {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let message = message_for(&row.event, self.partitions).map_err(RelayError::Encode)?;
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.clone(),
                    message.routing_key,
                    // Mandatory: a message no queue is bound for comes back
                    // instead of vanishing, and fails the batch (see `wait`).
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties,
                )
                .await
                .map_err(broker_error("publish"))?;
            pending.push((row.event.global_position, confirm));
        }
        Ok(Confirms { pending })
    }

    /// Whether the connection and channel are still open. A broker that
    /// closes an idle connection is only noticed here (or on the next publish),
    /// so the relay checks before each round and reconnects at once rather
    /// than fail the first batch after a quiet spell.
    pub(super) fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Closes the connection politely (a stopping relay, not a failed one).
    pub(super) async fn close(self) {
        let _ = self.channel.close(200, "relay stopping".into()).await;
        let _ = self.connection.close(200, "relay stopping".into()).await;
    }
}

impl Confirms {
    /// Waits for every confirm; any nack, return, error or timeout fails the
    /// whole batch, so the checkpoint stays where it was and the batch is sent
    /// again. A returned message matched no queue binding (the projector's
    /// queues not declared yet, say): the broker would otherwise have dropped
    /// it, so the relay waits and retries until something can receive it.
    pub(super) async fn wait(self) -> Result<(), RelayError> {
        let all = async {
            for (position, confirm) in self.pending {
                match confirm.await.map_err(broker_error("confirm"))? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(returned)) => {
                        return Err(RelayError::Unroutable {
                            position,
                            routing_key: returned.delivery.routing_key.to_string(),
                        });
                    }
                    Confirmation::Nack(_) | Confirmation::NotRequested => {
                        return Err(RelayError::Nacked { position });
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, all)
            .await
            .map_err(|_| RelayError::BrokerTimeout {
                stage: "confirm",
                after: CONFIRM_TIMEOUT,
            })?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;
    use uuid::Uuid;

    fn event(aggregate_type: &str, event_type: &str) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::from_u128(7),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: Uuid::from_u128(9).to_string(),
            sequence: 3,
            global_position: 42,
            event_type: event_type.to_owned(),
            event_version: "2".to_owned(),
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            payload: json!({"MemoryCaptured": {"content": "c"}}),
            metadata: json!({"owner_id": "u1", "correlation_id": "c1", "request_id": "r1"}),
        }
    }

    #[test]
    fn a_message_carries_the_stored_row_and_the_contract_headers() {
        let stored = event("Memory", "MemoryCaptured");
        let message = message_for(&stored, 1).unwrap();
        assert_eq!(message.routing_key.as_str(), "memory.captured");
        let body: StoredEvent = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body, stored);
        let p = &message.properties;
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(
            p.message_id().as_ref().map(ShortString::as_str),
            Some(Uuid::from_u128(7).to_string().as_str())
        );
        assert_eq!(
            p.kind().as_ref().map(ShortString::as_str),
            Some("MemoryCaptured")
        );
        assert_eq!(p.timestamp(), &Some(1_700_000_000));
        let headers = p.headers().as_ref().unwrap().inner();
        assert_eq!(headers["sequence"], AMQPValue::LongLongInt(3));
        assert_eq!(headers["global_position"], AMQPValue::LongLongInt(42));
        let text = |key: &str| match &headers[key] {
            AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
            other => panic!("{key} is {other:?}"),
        };
        assert_eq!(text("aggregate_type"), "Memory");
        assert_eq!(text("aggregate_id"), Uuid::from_u128(9).to_string());
        assert_eq!(text("event_type"), "MemoryCaptured");
        assert_eq!(text("schema_version"), "2");
        assert_eq!(text("correlation_id"), "c1");
        assert_eq!(text("owner_id"), "u1");
        assert!(!headers.contains_key("request_id"));
    }

    #[test]
    fn an_oversized_type_name_is_cut_instead_of_panicking() {
        let long = format!("Spun{}", "é".repeat(200));
        let message = message_for(&event("Widget", &long), 1).unwrap();
        assert!(message.routing_key.as_str().len() <= 255);
        assert!(message.properties.kind().as_ref().unwrap().as_str().len() <= 255);
    }
}
