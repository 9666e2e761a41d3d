use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_kit::command_app::spawn_app;

#[tokio::test]
async fn a_stale_if_match_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let path = format!("/v1/memories/{id}");
    let first = app
        .send(
            app.request(Method::PATCH, &path, "alice")
                .header("if-match", "\"1\"")
                .json(&json!({"content": "oat milk"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.version(), 2);
    let before = app.event_count().await;

    let stale = app
        .send(
            app.request(Method::PATCH, &path, "alice")
                .header("if-match", "\"1\"")
                .json(&json!({"content": "soy milk"})),
        )
        .await;
    stale.assert_problem(412, "version_mismatch");
    let stale_bare = app
        .send(
            app.request(Method::POST, &format!("{path}/erase"), "alice")
                .header("if-match", "1"),
        )
        .await;
    stale_bare.assert_problem(412, "version_mismatch");
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn concurrent_if_match_writers_on_one_version_let_exactly_one_win() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let path = format!("/v1/memories/{id}");
    let attempts = (0..10).map(|i| {
        app.send(
            app.request(Method::PATCH, &path, "alice")
                .header("if-match", "\"1\"")
                .json(&json!({ "content": format!("revision {i}") })),
        )
    });
    let answers = join_all(attempts).await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(
        won,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for lost in answers.iter().filter(|a| a.status != StatusCode::OK) {
        lost.assert_problem(412, "version_mismatch");
    }
    assert_eq!(app.sequences(id).await, vec![1, 2]);
}

#[tokio::test]
async fn twenty_concurrent_revisions_without_if_match_all_land() {
    let app = spawn_app().await;
    let id = app.memory("alice", "version zero").await;
    let path = format!("/v1/memories/{id}");
    let revisions = (1..=20).map(|i| {
        app.send(
            app.request(Method::PATCH, &path, "alice")
                .json(&json!({ "content": format!("revision {i}") })),
        )
    });
    let answers = join_all(revisions).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let mut versions: Vec<u64> = answers.iter().map(|a| a.version()).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=21).collect::<Vec<u64>>(),
        "each revision got its own version"
    );
    assert_eq!(app.sequences(id).await, (1..=21).collect::<Vec<i64>>());
    let contents: Vec<String> = sqlx::query_scalar(
        "SELECT payload -> 'MemoryRevised' ->> 'content' FROM events WHERE aggregate_id = $1 AND sequence > 1",
    )
    .bind(id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut contents = contents;
    contents.sort();
    let mut expected: Vec<String> = (1..=20).map(|i| format!("revision {i}")).collect();
    expected.sort();
    assert_eq!(contents, expected, "no revision was lost");
}
