//! Least privilege on the event store: the command service's role appends
//! events and erases through the redaction trigger, and nothing else may
//! change an event (README, "Database roles").

use reqwest::{Method, StatusCode};
use test_kit::command_app::spawn_app;
use test_kit::db::{WRITER_ROLE, sqlstate_as};

#[tokio::test]
async fn the_writer_role_appends_and_erases_but_cannot_change_or_delete_an_event() {
    // The app itself runs as the writer role (test_kit::command_app::spawn_app).
    let app = spawn_app().await;
    let id = app.memory("alice", "quokka-secret-text").await;
    let answer = app
        .send(
            app.request(Method::PATCH, &format!("/v1/memories/{id}"), "alice")
                .json(&serde_json::json!({"content": "quokka-revised-secret"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let answer = app
        .send(app.request(Method::POST, &format!("/v1/memories/{id}/erase"), "alice"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // Erase redacted the earlier events although the role has no UPDATE.
    let rows: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|row| !row.contains("quokka")),
        "erased text left in {rows:?}"
    );

    let database = app.database();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER USER",
        "UPDATE events SET metadata = metadata WHERE false",
    ] {
        assert_eq!(
            sqlstate_as(&database, WRITER_ROLE, sql).await,
            "42501",
            "{sql} must be refused for lack of privilege"
        );
    }
    assert_eq!(app.event_count().await, 3, "nothing was changed or removed");
}
