//! Erase reaches everywhere text can hide: after an erase and its
//! projection, no secret of the memory is left in a dump of either
//! database, in any Redis key of the stack, or in any message of its
//! RabbitMQ queues, the dead-letter queue included, even when one of the
//! memory's events was dead-lettered and its memory parked when the erase
//! came, and again once that dead letter is retried.

use lapin::BasicProperties;
use projector::dead_letters::{Held, Selection};
use redis::AsyncCommands;
use serde_json::json;
use test_kit::broker;
use test_kit::db::{self, FaultHits, database_url};
use test_kit::stack::{Stack, spawn_query_stack};
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
    let out = std::process::Command::new(format!("{bin}/pg_dump"))
        .arg(format!("--dbname={}", database_url(database, None)))
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
    let connection = broker::connect().await;
    let mut out = String::new();
    for queue in stack.queue_names() {
        if !broker::queue_exists(&connection, &queue).await {
            continue;
        }
        let channel = connection.create_channel().await.unwrap();
        let headers = |p: &BasicProperties| format!("{:?}\n", p.headers());
        out.push_str(&broker::drain_text(&channel, &queue, headers).await);
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
    let stack = spawn_query_stack().await;
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
    stack.wait_until_verified().await;
    // The revision cannot be projected into the search model: it is
    // dead-lettered, and the memory parked there, when the erase comes.
    db::refuse_search_rows(&stack.read_pool, memory, FaultHits::Uncounted).await;
    stack
        .revise(
            "alice",
            memory,
            json!({"content": "okapi-revised-secret, and okapi-session-note-secret"}),
        )
        .await;
    let letter = stack.dead_lettered(memory).await;
    assert_eq!(
        (letter.projection.as_deref(), letter.sequence, letter.body),
        (Some("search"), Some(2), Held::Reference)
    );
    let kept = stack.note("alice", "okapi-kept-elsewhere").await;
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

    stack.erase("alice", memory).await;
    stack.wait_until_verified().await;

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
    assert_eq!(stack.dead_lettered(memory).await.sequence, Some(2));
    let source = stack.source();
    let outcome = stack
        .dead_letter_queue()
        .await
        .retry(&stack.ledger(), &source, &Selection::Aggregate(id.clone()))
        .await
        .unwrap();
    assert_eq!(outcome.messages, 1);
    stack.wait_until_verified().await;
    let retried = everything(&stack).await;
    for secret in SECRETS {
        assert!(
            !retried.contains(secret),
            "{secret} came back with the retry:\n{retried}"
        );
    }
    assert!(
        stack
            .dead_letter_queue()
            .await
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}
