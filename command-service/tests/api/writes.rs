use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_kit::command_app::spawn_app;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct EventRow {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    event_id: Uuid,
    global_position: i64,
    transaction_id: String,
}

#[tokio::test]
async fn a_create_writes_one_event_with_its_envelope_and_metadata() {
    let app = spawn_app().await;
    let answer = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header("x-correlation-id", "corr-123")
                .json(&json!({"content": "Remember the milk", "tags": ["Errand"], "metadata": {"source": "test"}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    let id = answer.id();
    assert_eq!(answer.version(), 1);
    assert_eq!(
        answer.header("location"),
        Some(format!("/v1/memories/{id}").as_str())
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert_eq!(answer.header("x-correlation-id"), Some("corr-123"));

    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                event_id, global_position, transaction_id::text
           FROM events",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let EventRow {
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version: version,
        payload,
        metadata,
        event_id,
        global_position: position,
        transaction_id: txid,
    } = rows.into_iter().next().unwrap();
    assert_eq!(aggregate_type, "Memory");
    assert_eq!(aggregate_id, id.to_string());
    assert_eq!(sequence, 1);
    assert_eq!(event_type, "MemoryCaptured");
    assert_eq!(version, "2");
    assert_eq!(payload["MemoryCaptured"]["content"], "Remember the milk");
    assert_eq!(payload["MemoryCaptured"]["tags"], json!(["errand"]));
    assert_eq!(metadata["owner_id"], "alice");
    assert_eq!(metadata["actor_id"], "alice");
    assert_eq!(metadata["correlation_id"], "corr-123");
    assert!(
        metadata["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(!event_id.is_nil());
    assert!(position >= 1);
    assert!(txid.parse::<u64>().unwrap() > 0);
}

#[tokio::test]
async fn every_memory_command_appends_its_event_in_sequence() {
    let app = spawn_app().await;
    let session = app.session("alice", "Groceries").await;
    let id = app.memory("alice", "milk").await;
    let path = |suffix: &str| format!("/v1/memories/{id}{suffix}");
    let steps: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            path(""),
            Some(json!({"content": "oat milk", "title": "Shopping"})),
        ),
        (
            Method::POST,
            path("/tags"),
            Some(json!({"tags": ["errand", "home"]})),
        ),
        (
            Method::POST,
            path("/tags/remove"),
            Some(json!({"tags": ["home"]})),
        ),
        (
            Method::PUT,
            path("/metadata"),
            Some(json!({"metadata": {"source": "chat"}})),
        ),
        (
            Method::POST,
            path("/move"),
            Some(json!({"session_id": session})),
        ),
        (
            Method::POST,
            path("/move"),
            Some(json!({"session_id": null})),
        ),
        (Method::DELETE, path(""), None),
        (Method::POST, path("/restore"), None),
        (Method::POST, path("/erase"), None),
    ];
    for (i, (method, path, body)) in steps.into_iter().enumerate() {
        let mut request = app.request(method.clone(), &path, "alice");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = app.send(request).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{method} {path}: {:?}",
            answer.body
        );
        assert_eq!(answer.version(), i as u64 + 2);
    }
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        [
            "MemoryCaptured",
            "MemoryRevised",
            "MemoryTagged",
            "MemoryUntagged",
            "MemoryMetadataChanged",
            "MemoryMoved",
            "MemoryMoved",
            "MemoryDeleted",
            "MemoryRestored",
            "MemoryErased"
        ]
    );
}

#[tokio::test]
async fn every_session_command_appends_its_event() {
    let app = spawn_app().await;
    let id = app.session("alice", "Standup").await;
    for (method, suffix, body, version) in [
        (Method::PATCH, "", Some(json!({"title": "Retro"})), 2),
        (Method::POST, "/end", None, 3),
        (Method::POST, "/reopen", None, 4),
    ] {
        let mut request = app.request(method, &format!("/v1/sessions/{id}{suffix}"), "alice");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{suffix}: {:?}", answer.body);
        assert_eq!(answer.version(), version);
    }
}

#[tokio::test]
async fn invalid_transitions_are_domain_errors_and_write_nothing() {
    let app = spawn_app().await;
    let session = app.session("alice", "Standup").await;
    let memory = app.memory("alice", "milk").await;
    let deleted = app.memory("alice", "bread").await;
    let answer = app
        .send(app.request(Method::DELETE, &format!("/v1/memories/{deleted}"), "alice"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let erased = app.memory("alice", "secret").await;
    let answer = app
        .send(app.request(
            Method::POST,
            &format!("/v1/memories/{erased}/erase"),
            "alice",
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = app
        .send(app.request(
            Method::POST,
            &format!("/v1/sessions/{session}/end"),
            "alice",
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    let before = app.event_count().await;
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::PATCH,
            format!("/v1/memories/{deleted}"),
            Some(json!({"content": "x"})),
            409,
            "memory_deleted",
        ),
        (
            Method::DELETE,
            format!("/v1/memories/{deleted}"),
            None,
            409,
            "memory_deleted",
        ),
        (
            Method::POST,
            format!("/v1/memories/{memory}/restore"),
            None,
            409,
            "memory_not_deleted",
        ),
        (
            Method::PATCH,
            format!("/v1/memories/{erased}"),
            Some(json!({"content": "x"})),
            410,
            "memory_erased",
        ),
        (
            Method::POST,
            format!("/v1/memories/{erased}/tags"),
            Some(json!({"tags": ["a"]})),
            410,
            "memory_erased",
        ),
        (
            Method::POST,
            format!("/v1/memories/{erased}/erase"),
            None,
            410,
            "memory_erased",
        ),
        (
            Method::POST,
            format!("/v1/memories/{erased}/restore"),
            None,
            410,
            "memory_erased",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{session}/end"),
            None,
            409,
            "session_already_ended",
        ),
        (
            Method::POST,
            format!("/v1/memories/{memory}/move"),
            Some(json!({"session_id": session})),
            409,
            "session_ended",
        ),
        (
            Method::POST,
            "/v1/memories".to_owned(),
            Some(json!({"content": "x", "session_id": session})),
            409,
            "session_ended",
        ),
        (
            Method::POST,
            format!("/v1/memories/{memory}/move"),
            Some(json!({"session_id": Uuid::now_v7()})),
            404,
            "session_not_found",
        ),
        (
            Method::PATCH,
            format!("/v1/memories/{memory}"),
            Some(json!({})),
            422,
            "empty_revision",
        ),
        (
            Method::PATCH,
            format!("/v1/memories/{}", Uuid::now_v7()),
            Some(json!({"content": "x"})),
            404,
            "not_found",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{}/end", Uuid::now_v7()),
            None,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut request = app.request(method.clone(), &path, "alice");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = app.send(request).await;
        answer.assert_problem(status, code);
    }
    let reopened = app
        .send(app.request(
            Method::POST,
            &format!("/v1/sessions/{session}/reopen"),
            "alice",
        ))
        .await;
    assert_eq!(reopened.status, StatusCode::OK);
    let answer = app
        .send(app.request(
            Method::POST,
            &format!("/v1/sessions/{session}/reopen"),
            "alice",
        ))
        .await;
    answer.assert_problem(409, "session_not_ended");
    assert_eq!(
        app.event_count().await,
        before + 1,
        "only the reopen was written"
    );
}

#[tokio::test]
async fn a_no_op_command_answers_the_current_version_and_writes_nothing() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let before = app.event_count().await;
    let answer = app
        .send(
            app.request(Method::PATCH, &format!("/v1/memories/{id}"), "alice")
                .json(&json!({"content": "milk"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.version(), 1);
    assert_eq!(app.event_count().await, before);
}
