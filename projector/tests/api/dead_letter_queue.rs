//! What the dead-letter queue holds and how much: references instead of
//! memory text (so an erase leaves nothing behind there, and a retry sends
//! the event as the store has it now), fingerprints of messages that were no
//! event, a length limit past which the projection waits, and the upgrade of
//! a queue declared by an earlier release.

use crate::dead_letters::{
    dead_letters_command, dead_letters_of, refuse_search_rows, revise, start_openai_projector,
};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use projector::dead_letters::queue::arguments;
use projector::dead_letters::{Held, Selection};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::process::{Command, Stdio};
use test_kit::broker::{self, put, rabbitmq_url};
use test_kit::fake_openai::{Faults, spawn_fake_openai};
use test_kit::stack::{Options, Stack, spawn_projector_stack};
use uuid::Uuid;

const SECRETS: [&str; 4] = [
    "okapi-content-secret",
    "okapi-title-secret",
    "okapi-tag-secret",
    "okapi-revised-secret",
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
}

/// Every row of the ledger tables, as text.
async fn ledger_dump(stack: &Stack) -> String {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(a)::text FROM delivery_attempts a
          UNION ALL SELECT row_to_json(p)::text FROM parked_aggregates p",
    )
    .fetch_all(&stack.read_pool)
    .await
    .unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn a_dead_letter_holds_no_memory_text_an_erase_passes_the_park_and_a_retry_sends_the_event_as_redacted()
 {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    // A projector process: it is killed before the retry, so what the retry
    // sends waits in the queue to be read.
    stack.child = Some(
        Command::new(env!("CARGO_BIN_EXE_projector"))
            .arg("serve")
            .envs(stack.projector_vars.clone())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    stack.wait_for_queues().await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "okapi-content-secret", "title": "okapi-title-secret", "tags": ["okapi-tag-secret"]}),
        )
        .await;
    stack.wait_until_verified().await;

    refuse_search_rows(&stack, id).await;
    revise(&stack, id, "okapi-revised-secret, in a note").await;
    let letters = dead_letters_of(&stack, id, 1).await;
    assert_eq!(letters[0].reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(letters[0].body, Held::Reference);
    assert_eq!(letters[0].sequence, Some(2));

    assert_eq!(stack.ledger().all_parked().await.unwrap().len(), 1);
    assert!(
        stack.search_row(id).await.is_some(),
        "parked at its first version"
    );

    // The erase is not held behind the park: the search row, with the text
    // of the memory's first version, goes, and so does the park.
    stack.erase("alice", id).await;
    stack.wait_until_verified().await;
    assert!(stack.search_row(id).await.is_none());
    assert!(stack.ledger().all_parked().await.unwrap().is_empty());
    let letters = dead_letters_of(&stack, id, 1).await;
    assert_eq!(letters[0].sequence, Some(2));
    let queued = stack.dump_queue(&stack.dead_letter_queue_name()).await;
    assert!(queued.contains(&id.to_string()), "{queued}");
    assert_no_secret("the dead-letter queue", &queued);
    assert_no_secret("the ledger", &ledger_dump(&stack).await);

    // With the projector stopped, what a retry sends waits in the search
    // queue: the event as the store has it now.
    if let Some(mut child) = stack.child.take() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (ok, _, stderr) =
        dead_letters_command(&stack, &["retry", "--aggregate", &id.to_string()]).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("sent back 1 dead letters, un-parked 0 aggregates"),
        "{stderr}"
    );
    let resent = stack.dump_queue(&stack.queue("search")).await;
    assert!(
        resent.contains("MemoryRevised") && resent.contains(&id.to_string()),
        "{resent}"
    );
    assert_no_secret("the event sent back", &resent);

    // Applied already (the erase filled it in): a duplicate.
    stack.start_projector().await;
    stack
        .eventually("the search queue drains", || async {
            stack.ready_in(&stack.queue("search")).await == 0
        })
        .await;
    stack.wait_until_verified().await;
    assert!(stack.search_row(id).await.is_none());
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_message_that_is_no_event_is_kept_only_as_its_fingerprint() {
    let stack = spawn_projector_stack(Options::default()).await;
    let raw = b"okapi-content-secret, and no JSON at all".to_vec();
    // serde quotes a string it cannot take in its error.
    let mistyped = br#"{"sequence": "okapi-revised-secret"}"#.to_vec();
    stack
        .inject("search", &[raw.clone(), mistyped.clone()])
        .await;
    stack
        .eventually("both are dead-lettered", || async {
            stack.dead_letters().await.len() == 2
        })
        .await;

    let letters = stack.dead_letters().await;
    for (letter, body) in letters.iter().zip([&raw, &mistyped]) {
        assert_eq!(letter.body, Held::Fingerprint);
        assert_eq!(letter.reason.as_deref(), Some("undecodable"));
        assert_eq!(
            letter.body_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(body)).as_str())
        );
        assert_eq!(letter.body_length, Some(body.len() as i64));
        assert_eq!(letter.aggregate_id, None);
    }
    let error = letters[1].error.as_deref().unwrap();
    assert!(error.contains("invalid type: string [redacted]"), "{error}");
    assert_no_secret(
        "the dead-letter queue",
        &stack.dump_queue(&stack.dead_letter_queue_name()).await,
    );

    let (ok, table, _) = dead_letters_command(&stack, &["list"]).await;
    assert!(ok);
    let short = &hex::encode(Sha256::digest(&raw))[..12];
    assert!(
        table.contains(&format!("sha256:{short}"))
            && table.contains("2 dead letters were no event: only a SHA-256"),
        "{table}"
    );
    // Nothing to send back: they stay, and say why.
    let (ok, _, stderr) = dead_letters_command(&stack, &["retry", "--all"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("sent back 0 dead letters")
            && stderr.contains("2 left in the queue: the message was no event"),
        "{stderr}"
    );
    assert_eq!(stack.dead_letters().await.len(), 2);
    let outcome = stack
        .dead_letter_queue()
        .await
        .purge(&stack.ledger(), &Selection::All)
        .await
        .unwrap();
    assert_eq!(outcome.messages, 2);
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_full_dead_letter_queue_refuses_the_next_and_its_projection_waits_until_there_is_room() {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    stack.projector_vars.push((
        "SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH".to_owned(),
        "1".to_owned(),
    ));
    stack.start_projector().await;
    let dead_letters = stack.dead_letter_queue_name();
    stack
        .inject("documents", &[b"first".to_vec(), b"second".to_vec()])
        .await;
    let refused = r#"projector_dead_letters_refused_total{projection="documents"}"#;
    stack
        .eventually("the second dead letter is refused", || async {
            stack.metrics().await.contains(refused)
        })
        .await;
    assert_eq!(stack.ready_in(&dead_letters).await, 1);

    // The documents projection waits behind it; the search projection goes on.
    let later = stack.note("alice", "written while it waits").await;
    stack
        .eventually("the search projection applies it", || async {
            stack.search_row(later).await.is_some()
        })
        .await;
    assert!(stack.document(later).await.is_none());
    assert_eq!(stack.ready_in(&dead_letters).await, 1, "the limit holds");

    // Room again: the waiting dead letter goes in, and what waited behind it
    // is applied.
    let outcome = stack
        .dead_letter_queue()
        .await
        .purge(&stack.ledger(), &Selection::All)
        .await
        .unwrap();
    assert_eq!(outcome.messages, 1);
    stack
        .eventually("the documents projection goes on", || async {
            stack.document(later).await.is_some()
        })
        .await;
    let letters = stack.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].body_sha256.as_deref(),
        Some(hex::encode(Sha256::digest(b"second")).as_str())
    );
    stack.wait_until_verified().await;
}

#[tokio::test]
async fn a_text_the_embedding_provider_echoes_in_its_refusal_stays_out_of_the_dead_letter() {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    let (url, _) = spawn_fake_openai(
        16,
        Faults {
            refuse: Some(("REFUSE-ME".to_owned(), 422)),
            ..Faults::default()
        },
    )
    .await;
    start_openai_projector(&mut stack, url, &[]).await;
    let id = stack
        .note("alice", "okapi-content-secret, embedded fine")
        .await;
    stack.wait_until_verified().await;
    // The new title's event holds no content, but the text embedded (and
    // echoed back by the provider's refusal) does.
    stack
        .revise("alice", id, json!({"title": "REFUSE-ME"}))
        .await;
    let letters = dead_letters_of(&stack, id, 1).await;
    assert_eq!(letters[0].reason.as_deref(), Some("poison"));
    let error = letters[0].error.as_deref().unwrap();
    assert!(
        error.contains("422") && error.contains("[redacted]"),
        "{error}"
    );
    assert_no_secret("the dead letter's error", error);
    assert_no_secret(
        "the dead-letter queue",
        &stack.dump_queue(&stack.dead_letter_queue_name()).await,
    );
    assert_no_secret("the ledger", &ledger_dump(&stack).await);
}

/// A dead letter as a projector from before references left it: the whole
/// message, with the reason in headers.
fn old_letter(stack: &Stack, reason: &str, error: &str) -> BasicProperties {
    let text = |s: &str| AMQPValue::LongString(s.into());
    let mut headers = FieldTable::default();
    headers.insert("x-sb-projection".into(), text("search"));
    headers.insert("x-sb-queue".into(), text(&stack.queue("search")));
    headers.insert("x-sb-reason".into(), text(reason));
    headers.insert("x-sb-error-kind".into(), text("poison"));
    headers.insert("x-sb-error".into(), text(error));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Whether declaring `queue` with `arguments` succeeds: RabbitMQ refuses
/// arguments other than the queue's.
async fn declares_with(queue: &str, arguments: FieldTable) -> bool {
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let ok = channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .is_ok();
    connection.close(200, "done".into()).await.ok();
    ok
}

async fn exists(queue: &str) -> bool {
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let ok = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok();
    connection.close(200, "done".into()).await.ok();
    ok
}

#[tokio::test]
async fn migrate_gives_an_earlier_releases_dead_letter_queue_its_limit_and_turns_its_letters_into_references()
 {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "okapi-content-secret", "tags": ["okapi-tag-secret"]}),
        )
        .await;
    let event = stack.stored_events().await.remove(0);
    let whole = serde_json::to_vec(&event).unwrap();

    // The queue as an earlier release declared it (no limit), holding whole
    // messages; and one left in the staging queue by a `migrate` that died.
    let dead_letters = stack.dead_letter_queue_name();
    let staging = format!("{dead_letters}.migrating");
    {
        let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        broker::declare_exchange(&channel, &dead_letters, ExchangeKind::Fanout).await;
        for queue in [&dead_letters, &staging] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        broker::bind(&channel, &dead_letters, &dead_letters, "").await;
        connection.close(200, "declared".into()).await.ok();
    }
    put(
        &dead_letters,
        &whole,
        old_letter(
            &stack,
            "poison",
            r#"invalid type: string "okapi-tag-secret", and okapi-content-secret"#,
        ),
    )
    .await;
    put(
        &dead_letters,
        b"okapi-revised-secret, no event",
        old_letter(&stack, "undecodable", "the message body is not an event"),
    )
    .await;
    put(
        &staging,
        &whole,
        old_letter(&stack, "parked_behind", "parked behind sequence 1"),
    )
    .await;

    // A new projector runs against the old queue as it is, with references.
    stack.start_projector().await;
    // The relay may have published the capture before the projector's
    // consumers declared their queues (a deployment runs `projector migrate`
    // first; here the old queue has to come first): a later event of the
    // memory makes each projection fill the gap from the store.
    stack.wait_for_queues().await;
    stack.add_tags("alice", id, json!(["okapi-late"])).await;
    stack.wait_until_verified().await;
    stack.inject("search", &[b"not an event".to_vec()]).await;
    stack
        .eventually(
            "the new projector dead-letters into the old queue",
            || async { stack.ready_in(&dead_letters).await == 3 },
        )
        .await;

    let limit = [("SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH", "10")];
    let (ok, _, stderr) = stack.projector_command(&["migrate"], &limit).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "dead-letter queue {dead_letters} declared again with at most 10 messages"
        )) && stderr.contains("3 dead letters that held their whole message now hold a reference"),
        "{stderr}"
    );
    assert!(!exists(&staging).await, "the staging queue is gone");
    assert!(declares_with(&dead_letters, arguments(10)).await);
    assert!(!declares_with(&dead_letters, FieldTable::default()).await);

    let letters = stack.dead_letters().await;
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let held: Vec<Held> = letters.iter().map(|l| l.body).collect();
    assert_eq!(
        held.iter().filter(|h| **h == Held::Reference).count(),
        2,
        "{held:?}"
    );
    assert_eq!(
        held.iter().filter(|h| **h == Held::Fingerprint).count(),
        2,
        "{held:?}"
    );
    for letter in letters.iter().filter(|l| l.body == Held::Reference) {
        assert_eq!(
            letter.aggregate_id.as_deref(),
            Some(id.to_string().as_str())
        );
        assert_eq!(letter.sequence, Some(1));
    }
    let queued = stack.dump_queue(&dead_letters).await;
    assert_no_secret("the migrated dead-letter queue", &queued);

    // A whole message that reaches the queue later (RabbitMQ's own
    // dead-lettering, an old projector still running) is converted by the
    // next `migrate`, which leaves the queue's declaration alone.
    put(&dead_letters, &whole, old_letter(&stack, "poison", "boom")).await;
    let (ok, _, stderr) = stack.projector_command(&["migrate"], &limit).await;
    assert!(ok, "{stderr}");
    assert!(
        !stderr.contains("declared again")
            && stderr.contains("1 dead letters that held their whole message now hold a reference"),
        "{stderr}"
    );
    assert_no_secret(
        "the dead-letter queue",
        &stack.dump_queue(&dead_letters).await,
    );

    let (ok, _, stderr) = dead_letters_command(&stack, &["retry", "--all"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("sent back 3 dead letters")
            && stderr.contains("2 left in the queue: the message was no event"),
        "{stderr}"
    );
    stack.wait_until_verified().await;
}

#[tokio::test]
async fn retry_reads_the_event_from_the_store_not_from_the_dead_letter() {
    let stack = spawn_projector_stack(Options::default()).await;
    let id = stack.note("alice", "the note as stored").await;
    stack.wait_until_verified().await;
    // The search model misses the memory, until a retry brings it back.
    sqlx::query("DELETE FROM memories WHERE id = $1")
        .bind(id)
        .execute(&stack.read_pool)
        .await
        .unwrap();
    assert!(!stack.verify().await.is_empty());
    // A reference to an event the store does not have (another event id at
    // that place) stays.
    let mut properties = old_letter(&stack, "poison", "boom");
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-sb-aggregate-type".into(),
        AMQPValue::LongString("Memory".into()),
    );
    headers.insert(
        "x-sb-aggregate-id".into(),
        AMQPValue::LongString(id.to_string().into()),
    );
    headers.insert("x-sb-sequence".into(), AMQPValue::LongLongInt(1));
    properties = properties.with_headers(headers);
    let reference = json!({
        "dead_letter": "event", "aggregate_type": "Memory", "aggregate_id": id,
        "sequence": 1, "event_id": Uuid::nil(), "event_type": "MemoryCaptured",
    });
    let dead_letters = stack.dead_letter_queue_name();
    put(
        &dead_letters,
        &serde_json::to_vec(&reference).unwrap(),
        properties.clone(),
    )
    .await;
    let outcome = stack
        .dead_letter_queue()
        .await
        .retry(&stack.ledger(), &stack.source(), &Selection::All)
        .await
        .unwrap();
    assert_eq!(
        (outcome.messages, outcome.missing),
        (0, 1),
        "another event id"
    );

    let event_id = stack.stored_events().await.remove(0).event_id;
    let reference = json!({
        "dead_letter": "event", "aggregate_type": "Memory", "aggregate_id": id,
        "sequence": 1, "event_id": event_id, "event_type": "MemoryCaptured",
    });
    put(
        &dead_letters,
        &serde_json::to_vec(&reference).unwrap(),
        properties,
    )
    .await;
    let outcome = stack
        .dead_letter_queue()
        .await
        .retry(&stack.ledger(), &stack.source(), &Selection::All)
        .await
        .unwrap();
    assert_eq!(outcome.messages, 1);
    stack.wait_until_verified().await;
}
