//! The outbox relay against a real Postgres and a real RabbitMQ
//! (`SB_TEST_RABBITMQ_URL`). Each test has its own database, exchange
//! (`sb_test_<uuid>`) and queue, bound with `#`, and deletes the exchange and
//! queue when it passes.

use command_service::relay::{self, APPLICATION_NAME, RelayConfig, RelayHandle};
use event_schema::{MemoryEvent, SessionEvent, StoredEvent};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use std::collections::HashSet;
use std::time::Duration;
use test_kit::broker::{self, connection_pids, rabbitmq_url, rabbitmqctl};
use test_kit::command_app::{TestApp, spawn_app, spawn_app_with};
use tokio::time::{Instant, timeout};
use uuid::Uuid;

/// How long any one expectation may take before the test fails. Generous:
/// the machine is shared and noisy; a passing test takes far less.
const DEADLINE: Duration = Duration::from_secs(30);

fn unique_exchange() -> String {
    format!("sb_test_{}", Uuid::new_v4().simple())
}

/// The settings that turn the app's own relay on, publishing to `exchange`.
fn relay_vars(exchange: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SB_RELAY_ENABLED", "true".to_owned()),
        ("SB_RABBITMQ_URL", rabbitmq_url()),
        ("SB_RABBITMQ_EXCHANGE", exchange.to_owned()),
        ("SB_RELAY_POLL_INTERVAL_MS", "100".to_owned()),
    ]
}

async fn spawn_app_with_relay(exchange: &str) -> TestApp {
    let vars = relay_vars(exchange);
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&borrowed).await
}

/// A relay outside the app, on the app's database.
fn relay_config(app: &TestApp, exchange: &str, instance: &str) -> RelayConfig {
    broker::relay_config(
        &app.database_url,
        exchange,
        format!("sb test relay {exchange} {instance}"),
        256,
        1,
    )
}

/// One message as the test queue got it.
#[derive(Debug)]
struct Received {
    routing_key: String,
    properties: BasicProperties,
    event: StoredEvent,
}

impl Received {
    fn header(&self, key: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(key)
    }

    fn text_header(&self, key: &str) -> Option<String> {
        match self.header(key)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            other => panic!("header {key} is not a long string: {other:?}"),
        }
    }
}

/// The test's end of the broker: its exchange and a queue bound with `#`.
struct TestBroker {
    connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
    consumer: Consumer,
    received: Vec<Received>,
}

impl TestBroker {
    async fn new(exchange: &str) -> Self {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .expect("the test RabbitMQ answers (run deploy/native/stack servers)");
        let channel = connection.create_channel().await.unwrap();
        // Declared exactly as the relay declares it, so either may come first.
        broker::declare_exchange(&channel, exchange, ExchangeKind::Topic).await;
        let queue = format!("{exchange}_all");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        broker::bind(&channel, &queue, exchange, "#").await;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            connection,
            channel,
            exchange: exchange.to_owned(),
            queue,
            consumer,
            received: Vec::new(),
        }
    }

    /// Takes one delivery if one arrives within `wait`.
    async fn take_one(&mut self, wait: Duration) -> bool {
        match timeout(wait, self.consumer.next()).await {
            Ok(Some(delivery)) => {
                let delivery = delivery.expect("a delivery");
                let event: StoredEvent =
                    serde_json::from_slice(&delivery.data).expect("the body is a StoredEvent");
                self.received.push(Received {
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    properties: delivery.properties,
                    event,
                });
                true
            }
            Ok(None) => panic!("the test consumer was cancelled"),
            Err(_) => false,
        }
    }

    /// Receives until every id in `ids` has arrived at least once.
    async fn receive_all(&mut self, ids: &[Uuid]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen: HashSet<Uuid> = self.received.iter().map(|r| r.event.event_id).collect();
            let missing = ids.iter().filter(|id| !seen.contains(id)).count();
            if missing == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{missing} of {} events never arrived; got {} messages",
                ids.len(),
                self.received.len()
            );
            self.take_one(left).await;
        }
    }

    /// Collects whatever arrives within `window`. Only for negative evidence
    /// ("nothing more came"), always after positive evidence that the relay
    /// had its chance; never as synchronisation.
    async fn collect_for(&mut self, window: Duration) {
        let end = Instant::now() + window;
        while !end.saturating_duration_since(Instant::now()).is_zero() {
            let left = end.saturating_duration_since(Instant::now());
            self.take_one(left).await;
        }
    }

    fn ids(&self) -> Vec<Uuid> {
        self.received.iter().map(|r| r.event.event_id).collect()
    }

    /// The ids in order of first arrival, duplicates dropped.
    fn first_occurrences(&self) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        self.ids()
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect()
    }

    async fn delete(self) {
        self.channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        self.channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Every event id in the relay's order, `(transaction_id, global_position)`.
async fn ids_in_relay_order(app: &TestApp) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM events ORDER BY transaction_id, global_position")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The relay's stored checkpoint `(transaction_id, global_position)`.
async fn checkpoint(app: &TestApp, name: &str) -> Option<(u64, i64)> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT transaction_id::text, global_position FROM relay_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&app.pool)
    .await
    .unwrap();
    row.map(|(txid, position)| (txid.parse().unwrap(), position))
}

/// The `(transaction_id, global_position)` of one event.
async fn key_of(app: &TestApp, event_id: Uuid) -> (u64, i64) {
    let (txid, position): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, global_position FROM events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (txid.parse().unwrap(), position)
}

/// Polls until the checkpoint is at the last event in relay order.
async fn wait_for_checkpoint_at_end(app: &TestApp, name: &str) {
    let last = *ids_in_relay_order(app).await.last().expect("some events");
    let target = key_of(app, last).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        if checkpoint(app, name).await == Some(target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint never reached {target:?}; it is {:?}",
            checkpoint(app, name).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn capture_many(app: &TestApp, user: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        ids.push(app.memory(user, &format!("memory {n}")).await);
    }
    ids
}

#[tokio::test]
async fn the_relay_publishes_each_event_in_order_with_the_contract_shape_and_checkpoints() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app_with_relay(&exchange).await;

    let session = app.session("alice", "Trip planning").await;
    let answer = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("x-correlation-id", "corr-relay")
                .json(&json!({"content": "Book the train", "tags": ["travel"], "session_id": session})),
        )
        .await;
    assert!(answer.status.is_success(), "{:?}", answer.body);
    let memory = answer.id();
    let tagged = app
        .post_json(
            &format!("/v1/memories/{memory}/tags"),
            "alice",
            &json!({"tags": ["urgent"]}),
        )
        .await;
    assert!(tagged.status.is_success(), "{:?}", tagged.body);
    let ended = app
        .post_json(&format!("/v1/sessions/{session}/end"), "alice", &json!({}))
        .await;
    assert!(ended.status.is_success(), "{:?}", ended.body);

    let expected = ids_in_relay_order(&app).await;
    assert_eq!(expected.len(), 4);
    broker.receive_all(&expected).await;
    assert_eq!(broker.ids(), expected, "in order, once each");

    let routing: Vec<&str> = broker
        .received
        .iter()
        .map(|r| r.routing_key.as_str())
        .collect();
    assert_eq!(
        routing,
        [
            "session.started",
            "memory.captured",
            "memory.tagged",
            "session.ended"
        ]
    );
    for message in &broker.received {
        let event = &message.event;
        let p = &message.properties;
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str().to_owned()),
            Some(event.event_id.to_string())
        );
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.kind().as_ref().map(|s| s.as_str()),
            Some(event.event_type.as_str())
        );
        assert_eq!(
            p.timestamp(),
            &Some(u64::try_from(event.recorded_at.timestamp()).unwrap())
        );
        assert_eq!(
            message.text_header("aggregate_type").as_deref(),
            Some(event.aggregate_type.as_str())
        );
        assert_eq!(
            message.text_header("aggregate_id").as_deref(),
            Some(event.aggregate_id.as_str())
        );
        assert_eq!(
            message.text_header("event_type").as_deref(),
            Some(event.event_type.as_str())
        );
        assert_eq!(
            message.text_header("schema_version").as_deref(),
            Some(event.event_version.as_str())
        );
        assert_eq!(
            message.header("sequence"),
            Some(&AMQPValue::LongLongInt(event.sequence))
        );
        assert_eq!(
            message.header("global_position"),
            Some(&AMQPValue::LongLongInt(event.global_position))
        );
        assert_eq!(message.text_header("owner_id").as_deref(), Some("alice"));
        assert!(message.text_header("correlation_id").is_some());
        // The body is the stored row, exactly as a consumer will decode it.
        match event.aggregate_type.as_str() {
            "Memory" => {
                let envelope = event.clone().decode::<MemoryEvent>().unwrap();
                assert_eq!(envelope.aggregate_id, memory);
            }
            "Session" => {
                let envelope = event.clone().decode::<SessionEvent>().unwrap();
                assert_eq!(envelope.aggregate_id, session);
            }
            other => panic!("unexpected aggregate {other}"),
        }
    }
    let captured = &broker.received[1];
    assert_eq!(
        captured.text_header("correlation_id").as_deref(),
        Some("corr-relay")
    );

    wait_for_checkpoint_at_end(&app, &exchange).await;
    let last = key_of(&app, *expected.last().unwrap()).await;
    assert_eq!(checkpoint(&app, &exchange).await, Some(last));
    broker.delete().await;
}

#[tokio::test]
async fn an_event_whose_transaction_commits_late_is_published_before_later_ones_and_none_is_skipped()
 {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app_with_relay(&exchange).await;

    // A first event, so the relay is known to be up and checkpointed.
    app.memory("alice", "before the gap").await;
    let first_event = ids_in_relay_order(&app).await;
    broker.receive_all(&first_event).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    let before_gap = checkpoint(&app, &exchange).await;

    // One writer appends and holds its transaction open...
    let mut held = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut held).await.unwrap();
    let held_event: Uuid = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Memory', $1, 1, 'MemoryCaptured', '2', $2, $3)
         RETURNING event_id",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(json!({"MemoryCaptured": {
        "content": "held open", "title": null, "tags": [], "metadata": {},
        "session_id": null, "occurred_at": null
    }}))
    .bind(json!({"owner_id": "alice", "actor_id": "alice", "correlation_id": "held"}))
    .fetch_one(&mut held)
    .await
    .unwrap();

    // ...while others append and commit after it.
    let later = capture_many(&app, "bob", 3).await;
    assert_eq!(
        app.event_count().await,
        4,
        "the held event is not visible yet"
    );
    let committed_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // Positive evidence that the relay looked after those commits: two
    // finished reads of the events table that began after the last commit.
    let deadline = Instant::now() + DEADLINE;
    let mut reads = Vec::new();
    while reads.len() < 2 {
        if let Some(started) = last_relay_read(&app).await
            && started > committed_at
            && !reads.contains(&started)
        {
            reads.push(started);
        }
        assert!(
            Instant::now() < deadline,
            "the relay never read again: {reads:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The relay has read twice since the later events committed, and still
    // stands before the held one: nothing past it was published.
    assert_eq!(checkpoint(&app, &exchange).await, before_gap);
    // And nothing reached the queue (a bounded window: negative evidence only,
    // after the positive evidence above).
    broker.collect_for(Duration::from_millis(300)).await;
    assert_eq!(
        broker.ids(),
        first_event,
        "nothing past the open transaction"
    );

    sqlx::query("COMMIT").execute(&mut held).await.unwrap();
    let expected = ids_in_relay_order(&app).await;
    assert_eq!(expected.len(), 5);
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    broker.collect_for(Duration::from_millis(200)).await;
    assert_eq!(broker.ids(), expected, "in order, none skipped, none twice");
    // The held event went out before the events that committed first: its
    // transaction started first.
    assert_eq!(broker.ids()[1], held_event);
    assert_eq!(&broker.ids()[2..], &events_of(&app, &later).await[..]);
    broker.delete().await;
}

/// The event ids of these aggregates, in relay order.
async fn events_of(app: &TestApp, aggregates: &[Uuid]) -> Vec<Uuid> {
    let ids: Vec<String> = aggregates.iter().map(Uuid::to_string).collect();
    sqlx::query_scalar(
        "SELECT event_id FROM events WHERE aggregate_id = ANY($1)
          ORDER BY transaction_id, global_position",
    )
    .bind(&ids)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// When the relay's last finished read of the events table began (`None`
/// while a read is running).
async fn last_relay_read(app: &TestApp) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar(
        "SELECT max(query_start) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1
            AND state = 'idle' AND query LIKE '%pg_snapshot_xmin%'",
    )
    .bind(APPLICATION_NAME)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_relay_recovers_on_its_own_when_the_broker_closes_its_connection_mid_stream() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app_with_relay(&exchange).await;
    let relay_connection = format!("command-service relay {exchange}");

    let mut ids = capture_many(&app, "alice", 10).await;
    broker.receive_all(&ids_in_relay_order(&app).await).await;
    let pids = connection_pids(&relay_connection).await;
    assert_eq!(pids.len(), 1, "one relay connection: {pids:?}");

    // Cut the connection server-side while commands keep coming.
    let cut = async {
        rabbitmqctl(&["close_connection", &pids[0], "test: cut the relay"]).await;
    };
    let (_, more) = tokio::join!(cut, capture_many(&app, "alice", 30));
    ids.extend(more);
    let after_cut = capture_many(&app, "alice", 10).await;
    ids.extend(after_cut);

    let expected = ids_in_relay_order(&app).await;
    assert_eq!(expected.len(), ids.len());
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    // Duplicates are allowed (at-least-once); none is missing, and the first
    // arrival of each is in relay order.
    assert_eq!(broker.first_occurrences(), expected);
    let now = connection_pids(&relay_connection).await;
    assert_eq!(now.len(), 1, "the relay reconnected: {now:?}");
    assert_ne!(now, pids, "on a new connection");
    broker.delete().await;
}

#[tokio::test]
async fn the_relay_recovers_when_postgres_drops_its_connections() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app().await;
    let relay = relay::spawn(relay_config(&app, &exchange, "a"));

    capture_many(&app, "alice", 5).await;
    broker.receive_all(&ids_in_relay_order(&app).await).await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1",
    )
    .bind(APPLICATION_NAME)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!killed.is_empty() && killed.iter().all(|k| *k));
    capture_many(&app, "alice", 5).await;

    let expected = ids_in_relay_order(&app).await;
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    assert_eq!(broker.first_occurrences(), expected);
    relay.shutdown().await;
    broker.delete().await;
}

/// Granted advisory locks in the app's database (the relays' leader locks).
async fn advisory_locks(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn of_two_relays_on_one_database_exactly_one_publishes_and_the_other_takes_over() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app().await;
    let a = relay::spawn(relay_config(&app, &exchange, "a"));
    let b = relay::spawn(relay_config(&app, &exchange, "b"));

    capture_many(&app, "alice", 20).await;
    let expected = ids_in_relay_order(&app).await;
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    assert_eq!(advisory_locks(&app).await, 1, "one leader lock");
    // Only the leader connects to the broker; it is the one to stop.
    let a_connected = !connection_pids(&format!("{exchange} a")).await.is_empty();
    let b_connected = !connection_pids(&format!("{exchange} b")).await.is_empty();
    assert!(a_connected ^ b_connected, "exactly one relay on the broker");
    // The standby retried the lock several times meanwhile (every 200 ms,
    // and rabbitmqctl took far longer); a short window catches a late copy.
    broker.collect_for(Duration::from_millis(300)).await;
    assert_eq!(broker.ids(), expected, "each event once, in order");

    let (leader, standby) = if a_connected { (a, b) } else { (b, a) };
    leader.shutdown().await;
    capture_many(&app, "alice", 10).await;
    let expected = ids_in_relay_order(&app).await;
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    broker.collect_for(Duration::from_millis(300)).await;
    assert_eq!(
        broker.ids(),
        expected,
        "the standby took over from the checkpoint"
    );
    standby.shutdown().await;
    broker.delete().await;
}

#[tokio::test]
async fn a_restarted_relay_resumes_from_its_checkpoint_without_republishing() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app().await;

    let first: RelayHandle = relay::spawn(relay_config(&app, &exchange, "first"));
    capture_many(&app, "alice", 10).await;
    broker.receive_all(&ids_in_relay_order(&app).await).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    first.shutdown().await;
    let stopped_at = checkpoint(&app, &exchange).await;

    capture_many(&app, "alice", 5).await;
    assert_eq!(
        checkpoint(&app, &exchange).await,
        stopped_at,
        "no relay is running"
    );
    let second = relay::spawn(relay_config(&app, &exchange, "second"));
    let expected = ids_in_relay_order(&app).await;
    broker.receive_all(&expected).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    broker.collect_for(Duration::from_millis(300)).await;
    assert_eq!(broker.ids(), expected, "each event exactly once");
    second.shutdown().await;
    broker.delete().await;
}

#[tokio::test]
async fn transaction_ids_are_ordered_as_numbers_not_as_text() {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let app = spawn_app().await;
    // Hand-written rows with old transaction ids either side of a digit
    // boundary: as text "10" sorts before "9".
    let mut ids = Vec::new();
    for txid in ["10", "9", "100"] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, transaction_id)
             VALUES ('Memory', $1, 1, 'MemoryCaptured', '2', $2, $3, $4::text::xid8)
             RETURNING event_id",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(json!({"MemoryCaptured": {"content": txid, "session_id": null, "occurred_at": null}}))
        .bind(json!({"owner_id": "alice", "correlation_id": "order"}))
        .bind(txid)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let relay = relay::spawn(relay_config(&app, &exchange, "a"));
    broker.receive_all(&ids).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    assert_eq!(broker.ids(), [ids[1], ids[0], ids[2]], "9, 10, 100");
    relay.shutdown().await;
    broker.delete().await;
}

/// The relay's error count for one stage, from the service's `/metrics`.
async fn relay_errors(app: &TestApp, relay: &str, stage: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("relay_errors_total{")
                && line.contains(&format!("relay=\"{relay}\""))
                && line.contains(&format!("stage=\"{stage}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn an_event_no_queue_is_bound_for_is_held_until_one_is_not_dropped() {
    let exchange = unique_exchange();
    let app = spawn_app_with_relay(&exchange).await;
    let ids = capture_many(&app, "alice", 3).await;
    // The relay published, the broker returned every message (nothing is
    // bound yet), and the relay kept its checkpoint where it was.
    let deadline = Instant::now() + DEADLINE;
    while relay_errors(&app, &exchange, "unroutable").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the relay never tried to publish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = events_of(&app, &ids).await;
    let first = key_of(&app, events[0]).await.1;
    let held = checkpoint(&app, &exchange).await.map_or(0, |(_, p)| p);
    assert!(
        held < first,
        "the checkpoint ({held}) passed unpublished events"
    );
    // Once a queue is bound, every event arrives.
    let mut broker = TestBroker::new(&exchange).await;
    broker.receive_all(&events).await;
    wait_for_checkpoint_at_end(&app, &exchange).await;
    broker.delete().await;
}

#[tokio::test]
async fn with_partitions_each_aggregates_events_carry_its_one_partition_and_all_partitions_are_used()
 {
    let exchange = unique_exchange();
    let mut broker = TestBroker::new(&exchange).await;
    let mut vars = relay_vars(&exchange);
    vars.push(("SB_RELAY_PARTITIONS", "3".to_owned()));
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&borrowed).await;
    let ids = capture_many(&app, "alice", 30).await;
    for id in &ids {
        app.post_json(
            &format!("/v1/memories/{id}/tags"),
            "alice",
            &json!({"tags": ["again"]}),
        )
        .await;
    }
    let events = events_of(&app, &ids).await;
    assert_eq!(events.len(), 60);
    broker.receive_all(&events).await;
    let mut used = HashSet::new();
    for received in &broker.received {
        let partition = event_log::broker::partition_of(&received.event.aggregate_id, 3);
        assert!(
            received.routing_key.ends_with(&format!(".p{partition}")),
            "{} for aggregate {}",
            received.routing_key,
            received.event.aggregate_id
        );
        used.insert(partition);
    }
    assert_eq!(
        used.len(),
        3,
        "30 aggregates over 3 partitions use all three"
    );
    broker.delete().await;
}
