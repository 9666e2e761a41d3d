//! Least privilege on the event store: the command service's role appends
//! events and erases through the redaction trigger, and nothing else may
//! change an event (README, "Database roles").

use crate::helpers::{WRITER_ROLE, database_url_as, spawn_app};
use reqwest::{Method, StatusCode};
use sqlx::{Connection, PgConnection};

/// Runs `sql` as login `role` and returns the SQLSTATE it failed with.
async fn refused_as(database: &str, role: &str, sql: &str) -> String {
    let mut conn = PgConnection::connect(&database_url_as(database, role))
        .await
        .expect("the role logs in");
    let error = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| code.into_owned())
        .unwrap_or_else(|| panic!("{sql}: not a database error: {error}"))
}

#[tokio::test]
async fn the_writer_role_appends_and_erases_but_cannot_change_or_delete_an_event() {
    // The app itself runs as the writer role (helpers::spawn_app).
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

    let database = app.database_url.rsplit('/').next().unwrap().to_owned();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER USER",
        "UPDATE events SET metadata = metadata WHERE false",
    ] {
        assert_eq!(
            refused_as(&database, WRITER_ROLE, sql).await,
            "42501",
            "{sql} must be refused for lack of privilege"
        );
    }
    assert_eq!(app.event_count().await, 3, "nothing was changed or removed");
}
