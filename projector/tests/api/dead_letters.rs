//! Failures that keep repeating are parked, not retried forever: real faults
//! injected for one aggregate only (a trigger in the read database, a
//! provider refusing one text, a connection killed during one event), while
//! other aggregates flow on; then `dead-letters retry` and `purge`.

use projector::dead_letters::{DeadLetter, Held, Selection};
use serde_json::json;
use sqlx::{Connection as _, Executor as _, PgConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use test_kit::db::{self, FaultHits};
use test_kit::fake_openai::{Faults, spawn_fake_openai};
use test_kit::stack::{Options, Stack, spawn_projector_stack};
use tokio::time::Instant;
use uuid::Uuid;

/// `SB_PROJECTOR_MAX_ATTEMPTS` in the test stack.
const MAX_ATTEMPTS: i64 = 3;

pub(crate) fn of(letters: &[DeadLetter], aggregate: Uuid) -> Vec<DeadLetter> {
    let id = aggregate.to_string();
    letters
        .iter()
        .filter(|l| l.aggregate_id.as_deref() == Some(id.as_str()))
        .cloned()
        .collect()
}

/// Polls the dead-letter queue until `aggregate` has `count` dead letters.
pub(crate) async fn dead_letters_of(
    stack: &Stack,
    aggregate: Uuid,
    count: usize,
) -> Vec<DeadLetter> {
    let deadline = Instant::now() + stack.deadline;
    loop {
        let letters = of(&stack.dead_letters().await, aggregate);
        if letters.len() >= count {
            assert_eq!(letters.len(), count, "{letters:#?}");
            return letters;
        }
        assert!(
            Instant::now() < deadline,
            "{aggregate} never had {count} dead letters: {letters:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `projector dead-letters <args>` as an operator would, with the
/// test's settings; returns (success, stdout, stderr).
pub(crate) async fn dead_letters_command(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("dead-letters")
        .chain(args.iter().copied())
        .collect();
    stack.projector_command(&args, &[]).await
}

pub(crate) async fn revise(stack: &Stack, id: Uuid, content: &str) -> u64 {
    stack
        .revise("alice", id, json!({ "content": content }))
        .await
}

pub(crate) async fn search_version(stack: &Stack, id: Uuid) -> Option<i64> {
    stack.search_row(id).await.map(|(version, ..)| version)
}

pub(crate) async fn fault_hits(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_fault_hits")
        .fetch_one(&stack.read_pool)
        .await
        .unwrap()
}

/// A real fault for one aggregate only: the search table refuses its rows
/// (a trigger). The sequence `test_fault_hits` counts the tries; it is not
/// rolled back with them. `DELETE FROM test_faults` lifts it.
pub(crate) async fn refuse_search_rows(stack: &Stack, id: Uuid) {
    db::refuse_search_rows(&stack.read_pool, id, FaultHits::Counted).await;
}

async fn stored_event_type(stack: &Stack, id: Uuid, sequence: i64) -> String {
    stack
        .stored_events()
        .await
        .into_iter()
        .find(|e| e.aggregate_id == id.to_string() && e.sequence == sequence)
        .unwrap()
        .event_type
}

#[tokio::test]
async fn an_event_that_fails_every_time_is_dead_lettered_after_max_attempts_and_its_aggregate_parked_while_others_flow()
 {
    let stack = spawn_projector_stack(Options::default()).await;
    let faulty = stack.note("alice", "will fail").await;
    let other = stack.note("alice", "fine").await;
    stack.wait_until_verified().await;

    refuse_search_rows(&stack, faulty).await;

    revise(&stack, faulty, "will fail, revised").await;
    // Once the first try failed, other aggregates' events arrive.
    stack
        .eventually("the first try fails", || async {
            fault_hits(&stack).await >= 1
        })
        .await;
    let version = revise(&stack, other, "fine, revised").await;
    let third = stack.note("alice", "another one").await;

    let letters = dead_letters_of(&stack, faulty, 1).await;
    let letter = &letters[0];
    assert_eq!(letter.projection.as_deref(), Some("search"));
    assert_eq!(letter.aggregate_type.as_deref(), Some("Memory"));
    assert_eq!(letter.sequence, Some(2));
    assert_eq!(
        letter.event_type.as_deref(),
        Some(stored_event_type(&stack, faulty, 2).await.as_str())
    );
    assert_eq!(letter.reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(letter.error_kind.as_deref(), Some("transient"));
    let error = letter.error.as_deref().unwrap();
    assert!(
        error.contains("P0001") && error.contains("injected fault"),
        "{error}"
    );
    assert_eq!(letter.attempts, Some(MAX_ATTEMPTS));
    assert!(letter.first_failed_at.is_some() && letter.last_failed_at.is_some());
    assert_eq!(
        letter.queue.as_deref(),
        Some(stack.queue("search").as_str())
    );
    assert_eq!(letter.body, Held::Reference);
    let queued = stack.dump_queue(&stack.dead_letter_queue_name()).await;
    assert!(
        queued.contains(&faulty.to_string()) && !queued.contains("will fail"),
        "a reference to the event, without its text: {queued}"
    );
    assert_eq!(fault_hits(&stack).await, MAX_ATTEMPTS, "exactly N tries");

    // The others flowed on.
    stack
        .eventually("the other aggregates' events are applied", || async {
            search_version(&stack, other).await == Some(version as i64)
                && search_version(&stack, third).await == Some(1)
        })
        .await;
    let parked = stack.ledger().all_parked().await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(
        (
            parked[0].projection.as_str(),
            parked[0].aggregate_id.as_str(),
            parked[0].first_parked_sequence
        ),
        ("search", faulty.to_string().as_str(), 2)
    );

    // A later event of the parked aggregate is parked behind it, not tried.
    let latest = revise(&stack, faulty, "will fail, revised again").await;
    let letters = dead_letters_of(&stack, faulty, 2).await;
    assert_eq!(letters[1].sequence, Some(3));
    assert_eq!(letters[1].reason.as_deref(), Some("parked_behind"));
    assert_eq!(letters[1].parked_behind, Some(2));
    assert_eq!(
        letters[1].error.as_deref(),
        Some("parked behind sequence 2")
    );
    assert_eq!(search_version(&stack, faulty).await, Some(1));
    assert_eq!(fault_hits(&stack).await, MAX_ATTEMPTS);
    // The documents projection has no fault: it applied everything.
    stack
        .eventually("the documents projection is not parked", || async {
            stack
                .document(faulty)
                .await
                .is_some_and(|d| d.version == latest)
        })
        .await;
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(
            r#"projector_dead_letters_total{projection="search",reason="attempts_exhausted"}"#
        ) && metrics.contains(
            r#"projector_dead_letters_total{projection="search",reason="parked_behind"}"#
        ) && metrics.contains(r#"projector_parked_aggregates{projection="search"}"#),
        "{metrics}"
    );

    // What an operator sees, as JSON and as tables; the queue is left as is.
    let (ok, json, stderr) = dead_letters_command(&stack, &["list", "--json"]).await;
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed_letters = listed["dead_letters"].as_array().unwrap();
    assert_eq!(listed_letters.len(), 2, "{json}");
    assert_eq!(listed_letters[0]["aggregate_id"], faulty.to_string());
    assert_eq!(listed_letters[0]["reason"], "attempts_exhausted");
    assert_eq!(listed_letters[0]["attempts"], MAX_ATTEMPTS);
    assert_eq!(listed_letters[1]["reason"], "parked_behind");
    assert_eq!(listed["parked_aggregates"][0]["first_parked_sequence"], 2);
    let (ok, table, _) = dead_letters_command(&stack, &["list"]).await;
    assert!(ok);
    assert!(
        table.starts_with("2 dead letters\n")
            && table.contains("1 parked aggregates")
            && table.contains(&format!("Memory {faulty}"))
            && table.contains("parked behind sequence 2"),
        "{table}"
    );
    assert_eq!(of(&stack.dead_letters().await, faulty).len(), 2);
    let (ok, _, stderr) = dead_letters_command(&stack, &["retry"]).await;
    assert!(
        !ok && stderr.contains("--aggregate"),
        "a selection is required: {stderr}"
    );

    // Fault gone, retry: applied in order, and the read model equals the store.
    sqlx::query("DELETE FROM test_faults")
        .execute(&stack.read_pool)
        .await
        .unwrap();
    let (ok, _, stderr) =
        dead_letters_command(&stack, &["retry", "--aggregate", &faulty.to_string()]).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("sent back 2 dead letters, un-parked 1 aggregates"),
        "{stderr}"
    );
    stack.wait_until_verified().await;
    assert_eq!(search_version(&stack, faulty).await, Some(latest as i64));
    assert!(stack.dead_letters().await.is_empty());
    assert!(stack.ledger().all_parked().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_openai_compatible_providers_refusal_of_one_text_dead_letters_that_event_only() {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    let (url, received) = spawn_fake_openai(
        16,
        Faults {
            refuse: Some(("REFUSE-ME".to_owned(), 422)),
            ..Faults::default()
        },
    )
    .await;
    start_openai_projector(&mut stack, url, &[("SB_OPENAI_MAX_INPUT_CHARS", "200")]).await;

    let fine = stack.note("alice", "a fine note").await;
    let refused = stack
        .note("alice", "REFUSE-ME: the provider cannot take this")
        .await;
    let long = stack
        .capture("alice", json!({"content": "long ".repeat(300)}))
        .await;

    let letters = dead_letters_of(&stack, refused, 1).await;
    assert_eq!(letters[0].projection.as_deref(), Some("search"));
    assert_eq!(letters[0].reason.as_deref(), Some("poison"));
    assert_eq!(letters[0].error_kind.as_deref(), Some("poison"));
    assert_eq!(letters[0].attempts, Some(1), "not retried as transient");
    let error = letters[0].error.as_deref().unwrap();
    assert!(error.contains("422"), "{error}");
    // The provider echoed the text it refused; the dead letter does not.
    assert!(
        error.contains("[redacted]") && !error.contains("the provider cannot take this"),
        "{error}"
    );
    stack
        .eventually("the other memories are embedded", || async {
            let fine = stack.search_row(fine).await;
            let long = stack.search_row(long).await;
            fine.is_some_and(|(_, _, dims, _)| dims == Some(16))
                && long.is_some_and(|(_, _, dims, _)| dims == Some(16))
        })
        .await;
    assert!(stack.search_row(refused).await.is_none());
    assert!(
        stack.document(refused).await.is_some(),
        "documents need no embedding"
    );
    // Every input was cut to the limit first; the long one exactly.
    let inputs = received.lock().unwrap().clone();
    let lengths: Vec<usize> = inputs.iter().map(|i| i.chars().count()).collect();
    assert!(lengths.iter().all(|&n| n <= 200), "{lengths:?}");
    assert!(lengths.contains(&200), "{lengths:?}");
    // Refused once, alone or in a batch, then once more alone at most, to
    // find it among the batch: never retried as a transient error.
    let refusals = inputs.iter().filter(|i| i.contains("REFUSE-ME")).count();
    assert!((1..=2).contains(&refusals), "{refusals}");
    assert!(
        of(&stack.dead_letters().await, fine).is_empty()
            && of(&stack.dead_letters().await, long).is_empty()
    );

    // Purge un-parks; the aggregate's next event fills the gap from the store.
    let outcome = stack
        .dead_letter_queue()
        .await
        .purge(&stack.ledger(), &Selection::Aggregate(refused.to_string()))
        .await
        .unwrap();
    assert_eq!((outcome.messages, outcome.unparked), (1, 1));
    assert!(
        !stack.verify().await.is_empty(),
        "the purged event is missing until the next one"
    );
    revise(&stack, refused, "now the provider takes it").await;
    stack.wait_until_verified().await;
    assert!(stack.dead_letters().await.is_empty());
}

/// Starts the projector with the openai provider pointed at `url`,
/// configured as an operator would.
pub(crate) async fn start_openai_projector(stack: &mut Stack, url: String, extra: &[(&str, &str)]) {
    let mut vars = vec![
        ("SB_EMBEDDING_PROVIDER".to_owned(), "openai".to_owned()),
        ("SB_OPENAI_BASE_URL".to_owned(), url),
        ("SB_OPENAI_MODEL".to_owned(), "fake-16".to_owned()),
        ("SB_OPENAI_DIMENSIONS".to_owned(), "16".to_owned()),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings: embeddings::EmbeddingSettings = service_kit::settings::from_vars(vars).unwrap();
    stack
        .start_projector_with(projector::cli::embedder(&settings).await.unwrap())
        .await;
}

#[tokio::test]
async fn a_provider_outage_longer_than_max_attempts_is_waited_out_and_parks_nothing() {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    // Twice as many failed requests as the projector has attempts, and no
    // retries inside the client: only an outage that counts nothing passes.
    let outage = 2 * MAX_ATTEMPTS as usize;
    let (url, received) = spawn_fake_openai(
        16,
        Faults {
            unavailable_first: outage,
            ..Faults::default()
        },
    )
    .await;
    start_openai_projector(&mut stack, url, &[("SB_OPENAI_MAX_RETRIES", "0")]).await;

    let id = stack.note("alice", "written during an outage").await;
    stack.wait_until_verified().await;
    assert!(
        received.lock().unwrap().len() > outage,
        "the outage was met"
    );
    assert!(stack.dead_letters().await.is_empty());
    assert!(stack.ledger().all_parked().await.unwrap().is_empty());
    assert!(stack.search_row(id).await.is_some());
}

/// Kills every backend of the test's read database that waits on a lock
/// (the projector's write, blocked by [`lock_search_table`]),
/// up to `limit` times; counts the kills. A side channel: no trigger, no
/// change to what the projector runs.
fn spawn_killer(
    stack: &Stack,
    limit: usize,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let kills = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pool = stack.read_pool.clone();
    let (k, s) = (kills.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) && k.load(Ordering::SeqCst) < limit {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND pid <> pg_backend_pid()",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            k.fetch_add(killed.iter().filter(|k| **k).count(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (kills, stop, task)
}

/// Holds the search table locked against writes until the connection
/// commits. A table lock takes no transaction id, unlike a row lock: a
/// transaction with one would hold back every relay on the cluster, which
/// publishes only below the oldest running transaction.
async fn lock_search_table(stack: &Stack) -> PgConnection {
    let url = stack.settings().read_database_url;
    let mut connection = PgConnection::connect(secrecy::ExposeSecret::expose_secret(&url))
        .await
        .unwrap();
    connection.execute("BEGIN").await.unwrap();
    connection
        .execute("LOCK TABLE memories_g1 IN SHARE MODE")
        .await
        .unwrap();
    let xid: Option<String> = sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(xid, None, "the lock holds back no relay");
    connection
}

#[tokio::test]
async fn a_connection_that_drops_during_one_event_every_time_parks_it_and_one_that_recovers_parks_nothing()
 {
    let stack = spawn_projector_stack(Options::default()).await;
    let recovers = stack.note("alice", "drops once").await;
    let drops = stack.note("alice", "drops every time").await;
    stack.wait_until_verified().await;

    // Dropped once, then it goes through: nothing is dead-lettered.
    let mut locker = lock_search_table(&stack).await;
    let (kills, _, killer) = spawn_killer(&stack, 1);
    let version = revise(&stack, recovers, "drops once, revised").await;
    stack
        .eventually("the projector's connection is killed once", || async {
            kills.load(Ordering::SeqCst) == 1
        })
        .await;
    killer.await.unwrap();
    locker.execute("COMMIT").await.unwrap();
    stack
        .eventually("the event is applied on a fresh connection", || async {
            search_version(&stack, recovers).await == Some(version as i64)
        })
        .await;
    assert!(stack.dead_letters().await.is_empty());
    assert!(stack.ledger().all_parked().await.unwrap().is_empty());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
        .fetch_one(&stack.read_pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the count goes once the event is applied");

    // Dropped on every attempt: parked after N, with the reason.
    let mut locker = lock_search_table(&stack).await;
    let (kills, stop, killer) = spawn_killer(&stack, usize::MAX);
    let latest = revise(&stack, drops, "drops every time, revised").await;
    let letters = dead_letters_of(&stack, drops, 1).await;
    stop.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    assert_eq!(kills.load(Ordering::SeqCst) as i64, MAX_ATTEMPTS);
    assert_eq!(letters[0].reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(letters[0].attempts, Some(MAX_ATTEMPTS));
    assert_eq!(letters[0].error_kind.as_deref(), Some("transient"));
    assert!(
        letters[0].error.as_deref().unwrap().starts_with("database"),
        "{letters:#?}"
    );
    locker.execute("COMMIT").await.unwrap();

    let outcome = stack
        .dead_letter_queue()
        .await
        .retry(&stack.ledger(), &stack.source(), &Selection::All)
        .await
        .unwrap();
    assert_eq!((outcome.messages, outcome.unparked), (1, 1));
    stack.wait_until_verified().await;
    assert_eq!(search_version(&stack, drops).await, Some(latest as i64));
}
