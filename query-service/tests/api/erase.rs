//! Erase reaches everywhere text can hide: after an erase and its
//! projection, no secret of the memory is left in a dump of either
//! database, in any Redis key of the stack, or in any message of its
//! RabbitMQ queues (the dead-letter queue included).

use crate::helpers::{Stack, admin_url, rabbitmq_url, spawn_stack};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;

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
    stack
        .ok(
            Method::PATCH,
            &format!("/v1/memories/{id}"),
            "alice",
            Some(json!({"content": "okapi-revised-secret, and okapi-session-note-secret"})),
        )
        .await;
    let kept = stack
        .capture("alice", json!({"content": "okapi-kept-elsewhere"}))
        .await;
    stack.wait_until_projected().await;
    let before = everything(&stack).await;
    for secret in [
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
}
