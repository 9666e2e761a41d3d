//! Rate limits on the read side: per user, per client address before any
//! database lookup, and the cap on one user's waiting `min_version` reads.
//! A limit here refills one token an hour and a wait lasts until the test
//! writes what it waits for: no timing is asserted and nothing sleeps.

use futures::future::{Either, select};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use test_kit::stack::{Stack, spawn_query_stack_with};

/// One token an hour.
const HOURLY: &str = "0.000277778";

/// An API key of the right shape that is in no database: only a lookup can
/// tell it is bad.
const UNKNOWN_KEY: &str =
    "sbk_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Asserts a 429 `rate_limited` problem with `Retry-After` in whole
/// seconds, at most `max_retry_after`; returns the body.
async fn assert_rate_limited(response: Response, max_retry_after: u64) -> Value {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=max_retry_after).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(body["status"], 429, "{body}");
    body
}

async fn get(stack: &Stack, path: &str, token: Option<&str>) -> Response {
    let mut request = stack.client.get(format!("{}{path}", stack.query()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_reader_over_the_limit_gets_429_and_another_reader_does_not() {
    let stack = spawn_query_stack_with(&[
        ("SB_RATE_LIMIT_USER_PER_SECOND", HOURLY),
        ("SB_RATE_LIMIT_USER_BURST", "2"),
    ])
    .await;
    let alice = stack.token("alice");
    for _ in 0..2 {
        let response = get(&stack, "/v1/memories", Some(&alice)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_rate_limited(get(&stack, "/v1/memories", Some(&alice)).await, 3600).await;
    let bob = get(&stack, "/v1/memories", Some(&stack.token("bob"))).await;
    assert_eq!(bob.status(), StatusCode::OK);
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = get(&stack, path, Some(&alice)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn unauthenticated_reads_are_limited_by_address_before_the_key_lookup() {
    // API keys live in the event store; this one is a port nothing listens
    // on, so a request whose key is looked up answers 503.
    let stack = spawn_query_stack_with(&[
        ("SB_RATE_LIMIT_IP_PER_SECOND", HOURLY),
        ("SB_RATE_LIMIT_IP_BURST", "2"),
        (
            "SB_EVENT_STORE_READ_URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        ),
    ])
    .await;
    let looked_up = get(&stack, "/v1/memories", Some(UNKNOWN_KEY)).await;
    assert_eq!(looked_up.status(), StatusCode::SERVICE_UNAVAILABLE);
    let none = get(&stack, "/v1/memories", None).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    // The bucket is empty: refused before any lookup, so no 503.
    for token in [Some(UNKNOWN_KEY), None] {
        assert_rate_limited(get(&stack, "/v1/memories", token).await, 3600).await;
    }
    assert_eq!(
        get(&stack, "/health/live", None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_user_waits_for_at_most_the_capped_number_of_versions_at_once() {
    let stack = spawn_query_stack_with(&[
        ("SB_QUERY_MIN_VERSION_WAITS_PER_USER", "1"),
        // Longer than the test: a wait ends when its version is written.
        ("SB_QUERY_CONSISTENCY_TIMEOUT_MS", "60000"),
    ])
    .await;
    let mine = stack.note("alice", "one").await;
    let bobs = stack.note("bob", "one").await;
    for (id, user) in [(mine, "alice"), (bobs, "bob")] {
        stack
            .get_ok(&format!("/v1/memories/{id}?min_version=1"), user)
            .await;
    }
    let waiting_read = |id: uuid::Uuid, user: &str, version: u64| {
        let request = stack
            .client
            .get(format!(
                "{}/v1/memories/{id}?min_version={version}",
                stack.query()
            ))
            .bearer_auth(stack.token(user));
        tokio::spawn(async move { request.send().await.unwrap() })
    };

    // Two reads of alice's wait for version 2: one holds her only slot, the
    // other is refused at once, whichever comes first.
    let first = waiting_read(mine, "alice", 2);
    let second = waiting_read(mine, "alice", 2);
    let (refused, waiting) = match select(first, second).await {
        Either::Left((done, other)) | Either::Right((done, other)) => (done.unwrap(), other),
    };
    let body = assert_rate_limited(refused, 1).await;
    assert!(
        body["detail"].as_str().unwrap().contains("at most 1"),
        "{body}"
    );

    // Bob's slot is his own: his read waits while alice's does.
    let bobs_read = waiting_read(bobs, "bob", 2);
    stack.revise("bob", bobs, json!({"content": "two"})).await;
    let read = bobs_read.await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.unwrap()["version"], 2);

    // Alice's write ends her wait, and frees her slot for the next one.
    stack.revise("alice", mine, json!({"content": "two"})).await;
    let read = waiting.await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.unwrap()["version"], 2);
    let next = waiting_read(mine, "alice", 3);
    stack
        .revise("alice", mine, json!({"content": "three"}))
        .await;
    let read = next.await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.unwrap()["version"], 3);
}
