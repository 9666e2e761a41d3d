use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_kit::command_app::spawn_app;

#[tokio::test]
async fn a_replayed_idempotency_key_answers_the_first_result_and_appends_nothing() {
    let app = spawn_app().await;
    let body = json!({"content": "Remember the milk", "tags": ["errand"]});
    let send = || {
        app.send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("idempotency-key", "key-1")
                .json(&body),
        )
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send().await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let first = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("idempotency-key", "key-1")
                .json(&json!({"content": "a"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("idempotency-key", "key-1")
                .json(&json!({"content": "b"})),
        )
        .await;
    other.assert_problem(422, "idempotency_key_reused");
    // Another endpoint with the same key is another request too.
    let id = first.id();
    let elsewhere = app
        .send(
            app.request(Method::POST, &format!("/v1/memories/{id}/erase"), "alice")
                .header("idempotency-key", "key-1"),
        )
        .await;
    elsewhere.assert_problem(422, "idempotency_key_reused");
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_their_user() {
    let app = spawn_app().await;
    let body = json!({"content": "same words"});
    for user in ["alice", "bob"] {
        let answer = app
            .send(
                app.request(Method::POST, "/v1/memories", user)
                    .header("idempotency-key", "shared")
                    .json(&body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert!(answer.header("idempotent-replayed").is_none());
    }
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn concurrent_duplicates_of_one_keyed_request_append_once() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let path = format!("/v1/memories/{id}");
    let duplicates = (0..10).map(|_| {
        app.send(
            app.request(Method::PATCH, &path, "alice")
                .header("idempotency-key", "revise-once")
                .json(&json!({"content": "oat milk"})),
        )
    });
    let answers = join_all(duplicates).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(app.sequences(id).await, vec![1, 2]);
}

#[tokio::test]
async fn a_key_whose_first_attempt_committed_without_answering_replays_that_commit() {
    // The first attempt's effect and its key are one row, so whatever
    // happens after the commit (a crash, a dropped connection), a retry finds
    // it. Here the client sends, the server commits, and the answer is
    // thrown away unread; the client then retries.
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let path = format!("/v1/memories/{id}/tags");
    let body = json!({"tags": ["errand"]});
    let lost = app
        .client
        .request(Method::POST, format!("{}{path}", app.address))
        .bearer_auth(test_kit::http::token_for("alice"))
        .header("idempotency-key", "lost-response")
        .json(&body)
        .send()
        .await
        .unwrap();
    // The client gives up on the answer without reading it.
    drop(lost);
    let retry = app
        .send(
            app.request(Method::POST, &path, "alice")
                .header("idempotency-key", "lost-response")
                .json(&body),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.version(), 2);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.sequences(id).await, vec![1, 2]);
}
