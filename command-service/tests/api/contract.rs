//! What the OpenAPI document promises and `deploy/api-check` (schemathesis)
//! judges from outside, pinned here for what it found: a request the schema
//! allows is taken, and what it cannot state is answered as documented.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_kit::command_app::spawn_app;
use test_kit::http::Answer;

/// A number at the edge of f64 went into the store as `jsonb`, which prints
/// it in full; read back without exact float parsing it overflowed, every
/// later command on the memory panicked, and the relay stopped on the row.
#[tokio::test]
async fn metadata_numbers_at_the_edges_of_f64_survive_the_store() {
    let app = spawn_app().await;
    let body: Value = serde_json::from_str(
        r#"{"content": "edges", "metadata": {"max": 1.7976931348623157e308,
            "min": -1.7976931348623157e308, "tiny": 5e-324,
            "wide": 123456789012345678901234567890}}"#,
    )
    .unwrap();
    let created = app.capture("alice", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.id();
    // A command loads the aggregate: every stored payload is read back.
    let tagged = app
        .post_json(
            &format!("/v1/memories/{id}/tags"),
            "alice",
            &json!({"tags": ["x"]}),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK, "{:?}", tagged.body);
    // As the relay reads them.
    let payloads: Vec<Value> = sqlx::query_scalar("SELECT payload FROM events ORDER BY sequence")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let metadata = &payloads[0]["MemoryCaptured"]["metadata"];
    assert_eq!(metadata["max"].as_f64(), Some(f64::MAX));
    assert_eq!(metadata["tiny"].as_f64(), Some(5e-324));
}

#[tokio::test]
async fn metadata_over_its_size_is_413_and_with_other_faults_422() {
    let app = spawn_app().await;
    let big = json!({"k": "x".repeat(17 * 1024)});
    let answer = app
        .capture("alice", &json!({"content": "x", "metadata": big}))
        .await;
    answer.assert_problem(413, "metadata_too_large");
    let answer = app
        .capture("alice", &json!({"content": " ", "metadata": big}))
        .await;
    answer.assert_problem(422, "validation_failed");
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_method_a_path_lacks_is_405_naming_the_ones_it_has() {
    let app = spawn_app().await;
    let id = app.memory("alice", "x").await;
    for (method, path, allow) in [
        (Method::PUT, format!("/v1/memories/{id}"), "DELETE, PATCH"),
        (Method::GET, "/v1/memories".to_owned(), "POST"),
        (
            Method::from_bytes(b"TRACE").unwrap(),
            format!("/v1/sessions/{id}/end"),
            "POST",
        ),
    ] {
        let answer = app.send(app.request(method.clone(), &path, "alice")).await;
        answer.assert_problem(405, "method_not_allowed");
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn tags_in_any_script_and_either_unicode_form_are_taken() {
    let app = spawn_app().await;
    let answer = app
        .capture(
            "alice",
            &json!({"content": "x", "tags": ["CAFE\u{301}", "café", "हिंदी", " Work ", "日本"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    let payload: Value = sqlx::query_scalar("SELECT payload FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        payload["MemoryCaptured"]["tags"],
        json!(["café", "हिंदी", "work", "日本"])
    );
}

#[tokio::test]
async fn when_it_happened_may_be_any_rfc_3339_time() {
    let app = spawn_app().await;
    for at in ["2999-01-01T00:00:00Z", "0001-01-01T00:00:00Z"] {
        let answer: Answer = app
            .capture("alice", &json!({"content": "x", "occurred_at": at}))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{at}: {:?}",
            answer.body
        );
    }
}
