//! API keys are cached by every instance and a revocation reaches them all at
//! once: the `api_keys` table notifies (LISTEN/NOTIFY) from the revoking
//! transaction, and an instance whose listener lost its connection stops
//! trusting its cache until it listens again.

use reqwest::StatusCode;
use serde_json::json;
use service_kit::api_keys::DEFAULT_TTL;
use service_kit::auth::{ApiKeyStore, UserId};
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use test_kit::stack::{Stack, spawn_query_stack};
use tokio::time::Instant;
use uuid::Uuid;

const USER: &str = "key-holder";

/// How long a notice may take to arrive. Far shorter than the cache's
/// time-to-live, so a refusal within it cannot be an entry expiring.
const NOTICE_DEADLINE: Duration = Duration::from_secs(30);
const _: () = assert!(DEFAULT_TTL.as_secs() > 2 * NOTICE_DEADLINE.as_secs());

/// The status each service answers with `key`: 404 (a random id) while the
/// key is accepted, 401 once it is refused.
async fn answers(stack: &Stack, key: &str) -> (StatusCode, StatusCode) {
    let missing = Uuid::new_v4();
    let command = stack
        .client
        .post(format!("{}/v1/memories/{missing}/tags", stack.command))
        .bearer_auth(key)
        .json(&json!({ "tags": ["a"] }))
        .send()
        .await
        .unwrap()
        .status();
    let query = stack
        .client
        .get(format!("{}/v1/memories/{missing}", stack.query()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status();
    (command, query)
}

const ACCEPTED: (StatusCode, StatusCode) = (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND);
const REFUSED: (StatusCode, StatusCode) = (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED);

/// Revokes key `id` behind the listeners' backs: with the table's notice
/// switched off, as if the notice were lost.
async fn revoke_silently(stack: &Stack, id: &str) {
    let mut tx = stack.event_pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE api_keys DISABLE TRIGGER api_keys_revoked_notice")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE api_keys ENABLE TRIGGER api_keys_revoked_notice")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Polls until both services answer `expected` for `key`.
async fn until_both(stack: &Stack, key: &str, expected: (StatusCode, StatusCode)) {
    let deadline = Instant::now() + NOTICE_DEADLINE;
    loop {
        let got = answers(stack, key).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?} rather than {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until both services cache keys: a key used once and then revoked
/// silently is still accepted by both, which only a cache can do. (Each
/// instance keeps nothing until its listener has subscribed.)
async fn until_both_cache(stack: &Stack, keys: &ApiKeyStore, user: &UserId) {
    let deadline = Instant::now() + NOTICE_DEADLINE;
    loop {
        let (info, key) = keys.create(user, "probe").await.unwrap();
        assert_eq!(answers(stack, &key).await, ACCEPTED);
        revoke_silently(stack, &info.id).await;
        if answers(stack, &key).await == ACCEPTED {
            return;
        }
        assert!(Instant::now() < deadline, "the services never cached a key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_by_every_instance_that_had_cached_it() {
    let stack = spawn_query_stack().await;
    // As `command-service api-key` does, from a process of its own.
    let keys = ApiKeyStore::new(stack.event_pool.clone());
    let user = UserId::parse(USER).unwrap();
    until_both_cache(&stack, &keys, &user).await;

    let (info, key) = keys.create(&user, "to revoke").await.unwrap();
    assert_eq!(answers(&stack, &key).await, ACCEPTED);
    assert!(keys.revoke(&info.id).await.unwrap());
    until_both(&stack, &key, REFUSED).await;

    // Deleting a key's row is a revocation too.
    let (info, key) = keys.create(&user, "to delete").await.unwrap();
    assert_eq!(answers(&stack, &key).await, ACCEPTED);
    sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(&info.id)
        .execute(&stack.event_pool)
        .await
        .unwrap();
    until_both(&stack, &key, REFUSED).await;
}

#[tokio::test]
async fn a_revocation_while_the_listeners_are_disconnected_is_not_missed() {
    let stack = spawn_query_stack().await;
    let keys = ApiKeyStore::new(stack.event_pool.clone());
    let user = UserId::parse(USER).unwrap();
    until_both_cache(&stack, &keys, &user).await;
    let (info, key) = keys.create(&user, "revoked unheard").await.unwrap();
    assert_eq!(answers(&stack, &key).await, ACCEPTED);

    // Cut both services' listeners, then revoke without a notice: nothing
    // but the loss of their connections can tell them.
    let mut admin = PgConnection::connect(&stack.events_url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        cut.len() >= 2,
        "a listener per service, found {}",
        cut.len()
    );
    revoke_silently(&stack, &info.id).await;
    until_both(&stack, &key, REFUSED).await;
}
