use reqwest::{Method, StatusCode};
use serde_json::json;
use test_kit::command_app::spawn_app;

#[tokio::test]
async fn after_erase_the_event_store_holds_none_of_the_erased_text() {
    let app = spawn_app().await;
    let session = app.session("alice", "Diary").await;
    let answer = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("idempotency-key", "zebra-idempotency-secret")
                .json(&json!({
                    "content": "zebra-content-secret",
                    "title": "zebra-title-secret",
                    "tags": ["zebra-tag-secret"],
                    "metadata": {"note": "zebra-metadata-secret"},
                    "session_id": session,
                })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let id = answer.id();
    let path = |s: &str| format!("/v1/memories/{id}{s}");
    for (method, suffix, body) in [
        (
            Method::PATCH,
            "",
            json!({"content": "zebra-revised-secret", "title": "zebra-retitled-secret"}),
        ),
        (
            Method::POST,
            "/tags",
            json!({"tags": ["zebra-added-secret"]}),
        ),
        (
            Method::POST,
            "/tags/remove",
            json!({"tags": ["zebra-tag-secret"]}),
        ),
        (
            Method::PUT,
            "/metadata",
            json!({"metadata": {"zebra-key-secret": "zebra-value-secret"}}),
        ),
    ] {
        let answer = app
            .send(app.request(method, &path(suffix), "alice").json(&body))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{suffix}: {:?}", answer.body);
    }
    let other = app.memory("alice", "zebra-kept-in-another-memory").await;

    let dump = || async {
        let rows: Vec<String> = sqlx::query_scalar("SELECT row_to_json(events)::text FROM events")
            .fetch_all(&app.pool)
            .await
            .unwrap();
        rows.join("\n")
    };
    assert!(
        dump().await.contains("zebra-content-secret"),
        "the text is there before the erase"
    );

    let answer = app
        .send(
            app.request(Method::POST, &path("/erase"), "alice")
                .header("idempotency-key", "zebra-erase-key-secret"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    let after = dump().await;
    for secret in [
        "zebra-content-secret",
        "zebra-title-secret",
        "zebra-tag-secret",
        "zebra-metadata-secret",
        "zebra-revised-secret",
        "zebra-retitled-secret",
        "zebra-added-secret",
        "zebra-key-secret",
        "zebra-value-secret",
        "zebra-idempotency-secret",
        "zebra-erase-key-secret",
    ] {
        assert!(!after.contains(secret), "{secret} survived the erase");
    }
    assert!(
        after.contains("zebra-kept-in-another-memory"),
        "other memories are untouched"
    );

    // The stream keeps its shape: types, sequences, actors and times.
    let shape: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT sequence, event_type, metadata ->> 'owner_id' FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let types: Vec<&str> = shape.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "MemoryCaptured",
            "MemoryRevised",
            "MemoryTagged",
            "MemoryUntagged",
            "MemoryMetadataChanged",
            "MemoryErased"
        ]
    );
    assert!(shape.iter().all(|(_, _, owner)| owner == "alice"));
    assert_eq!(
        shape.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<i64>>()
    );

    // A retry of the capture with its (now redacted) key still replays the
    // first answer rather than capturing again.
    let before = app.event_count().await;
    let retry = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("idempotency-key", "zebra-idempotency-secret")
                .json(&json!({"content": "anything"})),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    assert_eq!(retry.id(), id);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, before, "nothing appended");

    // The redacted stream still loads: the memory answers as erased.
    let answer = app
        .send(
            app.request(Method::PATCH, &path(""), "alice")
                .json(&json!({"content": "back?"})),
        )
        .await;
    answer.assert_problem(410, "memory_erased");
    let answer = app
        .send(app.request(Method::DELETE, &format!("/v1/memories/{other}"), "alice"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}
