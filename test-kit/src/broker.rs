//! RabbitMQ for one test: a private exchange and queue prefix, probes and
//! dumps of its queues, `rabbitmqctl`, and the one place that builds the
//! projector's consumer settings and the command service's relay settings
//! (so a change to either is one edit here).

use command_service::relay::RelayConfig;
use event_log::broker::Queues;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use projector::broker::ConsumerConfig;
use secrecy::SecretString;
use std::time::Duration;
use tokio::time::Instant;

/// The projections whose queues a projector declares.
pub const PROJECTIONS: [&str; 2] = [read_model::SEARCH, read_model::DOCUMENTS];

/// The test RabbitMQ; `deploy/native/stack test` exports it.
pub fn rabbitmq_url() -> String {
    std::env::var("SB_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub async fn connect() -> Connection {
    Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap()
}

/// One test's exchange and projector queue prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub exchange: String,
    pub queue_prefix: String,
}

impl Names {
    pub fn for_tag(tag: &str) -> Self {
        Self {
            exchange: format!("sbt_{tag}.events"),
            queue_prefix: format!("sbt_{tag}.projector"),
        }
    }

    /// The queues under the prefix, named by the broker contract (one
    /// partition).
    fn queues(&self) -> Queues<'_> {
        Queues {
            prefix: &self.queue_prefix,
            partitions: 1,
            partition: 0,
        }
    }

    /// The queue of `projection`.
    pub fn queue(&self, projection: &str) -> String {
        self.queues().projection(projection)
    }

    /// The exchange (and queue) the consumers' dead letters go through.
    pub fn dead_letter_exchange(&self) -> String {
        self.queues().dead_letter()
    }

    /// The consumer settings `projector dead-letters` needs to find these
    /// queues.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            url: SecretString::from(rabbitmq_url()),
            exchange: self.exchange.clone(),
            queue_prefix: self.queue_prefix.clone(),
            prefetch: 1,
            batch_size: 1,
            batch_window: std::time::Duration::ZERO,
            max_attempts: 1,
            dead_letter_max_length: projector::settings::default_dead_letter_max_length(),
            partitions: 1,
            partition: 0,
        }
    }
}

/// A relay outside any app: from the event store at `events_url` to
/// `exchange`, named `connection_name` on the broker.
pub fn relay_config(
    events_url: &str,
    exchange: &str,
    connection_name: String,
    batch_size: usize,
    partitions: u32,
) -> RelayConfig {
    RelayConfig {
        name: exchange.to_owned(),
        event_store_url: SecretString::from(events_url.to_owned()),
        rabbitmq_url: SecretString::from(rabbitmq_url()),
        exchange: exchange.to_owned(),
        batch_size,
        poll_interval: Duration::from_millis(100),
        standby_retry: Duration::from_millis(200),
        connection_name,
        partitions,
    }
}

/// A passive declare: finds a durable queue without creating it.
pub fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    }
}

/// Whether `queue` exists. A failed passive declare closes its channel, so
/// each probe takes a fresh one.
pub async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .is_ok()
}

/// Waits until every one of `queues` exists, so nothing published is lost.
pub async fn wait_for_queues(queues: &[String], deadline: Duration) {
    let connection = connect().await;
    let deadline = Instant::now() + deadline;
    for queue in queues {
        while !queue_exists(&connection, queue).await {
            assert!(Instant::now() < deadline, "queue {queue} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    connection.close(200, "done".into()).await.ok();
}

/// Messages ready in a queue (not counting unacknowledged ones).
pub async fn ready_in(queue: &str) -> u32 {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(queue.into(), passive(), FieldTable::default())
        .await
        .unwrap();
    connection.close(200, "done".into()).await.ok();
    queue.message_count()
}

/// The bodies and properties of every message in `queue`, as text: what
/// anyone reading the broker would find. Taken unacknowledged, so closing
/// the channel puts them back.
pub async fn dump_queue(queue: &str) -> String {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let out = drain_text(&channel, queue, |p| format!("{p:?}\n")).await;
    connection.close(200, "dumped".into()).await.ok();
    out
}

/// Every message of `queue` on `channel`, unacknowledged: each body, then
/// what `describe` makes of its properties.
pub async fn drain_text(
    channel: &Channel,
    queue: &str,
    describe: impl Fn(&BasicProperties) -> String,
) -> String {
    let mut out = String::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        out.push_str(&String::from_utf8_lossy(&message.delivery.data));
        out.push_str(&describe(&message.delivery.properties));
    }
    out
}

/// Publishes raw bodies straight into `queue`, bypassing the exchange, as a
/// broker redelivery or a misbehaving publisher would.
pub async fn inject(queue: &str, bodies: &[Vec<u8>]) {
    let (connection, channel) = confirming().await;
    for body in bodies {
        publish_on(
            &channel,
            queue,
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
    }
    connection.close(200, "done".into()).await.ok();
}

/// Publishes `body` straight into `queue` with `properties`.
pub async fn put(queue: &str, body: &[u8], properties: BasicProperties) {
    let (connection, channel) = confirming().await;
    publish_on(&channel, queue, body, properties).await;
    connection.close(200, "done".into()).await.ok();
}

/// A connection and a channel in publisher-confirm mode.
async fn confirming() -> (Connection, Channel) {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    (connection, channel)
}

/// Publishes through the default exchange and waits for the broker's
/// confirmation.
async fn publish_on(channel: &Channel, queue: &str, body: &[u8], properties: BasicProperties) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Deletes `queues` and `exchanges`; errors are ignored (teardown).
pub async fn delete(queues: &[String], exchanges: &[String]) {
    let Ok(connection) =
        Connection::connect(&rabbitmq_url(), ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in queues {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in exchanges {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
}

/// `rabbitmqctl` (root, or `SB_TEST_RABBITMQCTL`), off the async threads.
pub async fn rabbitmqctl(args: &[&str]) -> String {
    let program =
        std::env::var("SB_TEST_RABBITMQCTL").unwrap_or_else(|_| "/usr/sbin/rabbitmqctl".to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("{program} runs (as root, or set SB_TEST_RABBITMQCTL): {e}")
            });
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// The broker's pids of the connections whose client-provided name
/// contains `needle`.
pub async fn connection_pids(needle: &str) -> Vec<String> {
    rabbitmqctl(&[
        "list_connections",
        "--no-table-headers",
        "-q",
        "pid",
        "client_properties",
    ])
    .await
    .lines()
    .filter(|line| line.contains(needle))
    .filter_map(|line| line.split('\t').next())
    .map(str::to_owned)
    .collect()
}

/// Starts a relay outside any app (see [`relay_config`]).
pub fn spawn_relay(config: RelayConfig) -> command_service::relay::RelayHandle {
    command_service::relay::spawn(config)
}

/// Declares durable exchange `name` of `kind`, exactly as the relay and the
/// projector declare theirs, so a test's declaration may come first.
pub async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeKind) {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// Binds `queue` to `exchange` with `routing_key`.
pub async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}
