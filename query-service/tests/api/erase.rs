//! Erase reaches everywhere text can hide: after an erase and its
//! projection, no secret of the memory is left in a dump of either
//! database, in any Redis key of the stack, or in any message of its
//! RabbitMQ queues, the dead-letter queue included, even when one of the
//! memory's events was dead-lettered and its memory parked when the erase
//! came, and again once that dead letter is retried.

use crate::helpers::{DEADLINE, Stack, admin_url, rabbitmq_url, spawn_stack};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use projector::broker::ConsumerConfig;
use projector::dead_letters::{DeadLetter, DeadLetterQueue, Held, Ledger, Selection};
use projector::source::EventSource;
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;
use sqlx::Executor as _;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

const SECRETS: [&str; 8] = [
    "okapi-content-secret",
    "okapi-title-secret",
    "okapi-tag-secret",
    "okapi-metadata-key-secret",
    "okapi-metadata-value-secret",
    "okapi-revised-secret",
    "okapi-idempotency-secret",
    "okapi-session-note-secret",
];

/// `pg_dump` of one database, as text: every row, including the event
/// store's payloads and metadata, the read model's tables, caches and
/// tombstones.
fn pg_dump(database: &str) -> String {
    let bin = std::env::var("SB_PG_BIN_DIR")
        .expect("SB_PG_BIN_DIR names Postgres's binaries (deploy/native/stack test sets it)");
    let admin = admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let out = std::process::Command::new(format!("{bin}/pg_dump"))
        .arg(format!("--dbname={base}/{database}"))
        .arg("--data-only")
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every value under the stack's Redis prefix, whatever its type.
async fn redis_dump(stack: &Stack) -> String {
    let mut redis = stack.redis.clone();
    let keys: Vec<String> = redis
        .keys(format!("{}*", stack.keys.prefix()))
        .await
        .unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => redis
                .get::<_, Option<String>>(&key)
                .await
                .unwrap()
                .unwrap_or_default(),
            "zset" => redis
                .zrange::<_, Vec<String>>(&key, 0, -1)
                .await
                .unwrap()
                .join(" "),
            "set" => redis
                .smembers::<_, Vec<String>>(&key)
                .await
                .unwrap()
                .join(" "),
            "hash" => format!(
                "{:?}",
                redis
                    .hgetall::<_, Vec<(String, String)>>(&key)
                    .await
                    .unwrap()
            ),
            "list" => redis
                .lrange::<_, Vec<String>>(&key, 0, -1)
                .await
                .unwrap()
                .join(" "),
            _ => String::new(),
        };
        out.push_str(&format!("{key} {value}\n"));
    }
    out
}

/// The bodies and headers of every message waiting in the stack's queues.
/// Messages are fetched without an acknowledgement, so closing the channel
/// puts them back.
async fn rabbitmq_dump(stack: &Stack) -> String {
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let mut out = String::new();
    for queue in stack.queue_names() {
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        };
        if channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .is_err()
        {
            continue;
        }
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            out.push_str(&String::from_utf8_lossy(&message.delivery.data));
            out.push_str(&format!("{:?}\n", message.delivery.properties.headers()));
        }
        channel.close(200, "scanned".into()).await.ok();
    }
    connection.close(200, "done".into()).await.ok();
    out
}

/// The stack's dead-letter queue, as `projector dead-letters` opens it.
fn dead_letter_config(stack: &Stack) -> ConsumerConfig {
    let queue = stack
        .queue_names()
        .into_iter()
        .find(|q| q.ends_with(".dead_letter"))
        .unwrap();
    ConsumerConfig {
        url: rabbitmq_url().into(),
        exchange: String::new(),
        queue_prefix: queue.trim_end_matches(".dead_letter").to_owned(),
        prefetch: 1,
        batch_size: 1,
        max_attempts: 1,
        dead_letter_max_length: projector::settings::default_dead_letter_max_length(),
        partitions: 1,
        partition: 0,
    }
}

async fn dead_letter_queue(stack: &Stack) -> DeadLetterQueue {
    DeadLetterQueue::open(&rabbitmq_url(), &dead_letter_config(stack))
        .await
        .unwrap()
}

/// Polls until the memory has a dead letter.
async fn dead_lettered(stack: &Stack, id: Uuid) -> DeadLetter {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let letters = dead_letter_queue(stack).await.list().await.unwrap();
        if let Some(letter) = letters
            .into_iter()
            .find(|l| l.aggregate_id.as_deref() == Some(id.to_string().as_str()))
        {
            return letter;
        }
        assert!(Instant::now() < deadline, "{id} was never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The search projection refuses the memory's rows from now on (a trigger,
/// as a database fault would): its next event is dead-lettered after
/// `SB_PROJECTOR_MAX_ATTEMPTS` tries, and the memory parked there.
async fn refuse_search_rows(stack: &Stack, id: Uuid) {
    stack
        .read_pool
        .execute(
            r#"
            CREATE TABLE test_faults (id uuid PRIMARY KEY);
            CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM test_faults WHERE id = NEW.id) THEN
                    RAISE EXCEPTION 'injected fault for memory %', NEW.id;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_fault BEFORE INSERT OR UPDATE ON memories_g1
                FOR EACH ROW EXECUTE FUNCTION test_fault();
            "#,
        )
        .await
        .unwrap();
    sqlx::query("INSERT INTO test_faults (id) VALUES ($1)")
        .bind(id)
        .execute(&stack.read_pool)
        .await
        .unwrap();
}

async fn everything(stack: &Stack) -> String {
    let [events, read] = stack.database_names() else {
        panic!("two databases")
    };
    [
        pg_dump(events),
        pg_dump(read),
        redis_dump(stack).await,
        rabbitmq_dump(stack).await,
    ]
    .join("\n")
}

#[tokio::test]
async fn after_erase_no_text_of_the_memory_is_left_in_postgres_redis_or_rabbitmq() {
    let stack = spawn_stack().await;
    let session = stack.start_session("alice", "Zoo diary").await;
    // Keyed, with a key built from the note's words, as some clients do.
    let response = stack
        .client
        .post(format!("{}/v1/memories", stack.command))
        .bearer_auth(stack.token("alice"))
        .header("idempotency-key", "okapi-idempotency-secret")
        .json(&json!({
            "content": "okapi-content-secret about the okapi enclosure",
            "title": "okapi-title-secret",
            "tags": ["okapi-tag-secret"],
            "metadata": {"okapi-metadata-key-secret": "okapi-metadata-value-secret"},
            "session_id": session,
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let memory: Uuid = id.parse().unwrap();
    stack.wait_until_projected().await;
    // The revision cannot be projected into the search model: it is
    // dead-lettered, and the memory parked there, when the erase comes.
    refuse_search_rows(&stack, memory).await;
    stack
        .ok(
            Method::PATCH,
            &format!("/v1/memories/{id}"),
            "alice",
            Some(json!({"content": "okapi-revised-secret, and okapi-session-note-secret"})),
        )
        .await;
    let letter = dead_lettered(&stack, memory).await;
    assert_eq!(
        (letter.projection.as_deref(), letter.sequence, letter.body),
        (Some("search"), Some(2), Held::Reference)
    );
    let kept = stack
        .capture("alice", json!({"content": "okapi-kept-elsewhere"}))
        .await;
    let before = everything(&stack).await;
    for secret in [
        "okapi-content-secret",
        "okapi-revised-secret",
        "okapi-tag-secret",
        "okapi-idempotency-secret",
    ] {
        assert!(
            before.contains(secret),
            "the scan finds {secret} before the erase"
        );
    }

    stack
        .ok(
            Method::POST,
            &format!("/v1/memories/{id}/erase"),
            "alice",
            None,
        )
        .await;
    stack.wait_until_projected().await;

    let after = everything(&stack).await;
    for secret in SECRETS {
        assert!(
            !after.contains(secret),
            "{secret} survived the erase:\n{after}"
        );
    }
    assert!(
        after.contains("okapi-kept-elsewhere"),
        "another memory ({kept}) is untouched"
    );

    // The dead letter is still there, and a retry sends the event as the
    // store has it now: still no text anywhere.
    assert_eq!(dead_lettered(&stack, memory).await.sequence, Some(2));
    let source = EventSource::new(stack.event_pool.clone());
    let outcome = dead_letter_queue(&stack)
        .await
        .retry(
            &Ledger::new(stack.read_pool.clone()),
            &source,
            &Selection::Aggregate(id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(outcome.messages, 1);
    stack.wait_until_projected().await;
    let retried = everything(&stack).await;
    for secret in SECRETS {
        assert!(
            !retried.contains(secret),
            "{secret} came back with the retry:\n{retried}"
        );
    }
    assert!(
        dead_letter_queue(&stack)
            .await
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}
