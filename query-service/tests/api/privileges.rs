//! Least privilege on the read side: the query service's login may read the
//! read model and the event store and change neither; the stack's services
//! run as these roles throughout the suite (test_kit::stack::spawn_query_stack), so every
//! other test also shows that reads, search and history need nothing more.

use sqlx::PgPool;
use test_kit::db::{QUERY_READER_ROLE as READER_ROLE, database_of, sqlstate_as};
use test_kit::stack::spawn_query_stack;

/// SQLSTATE of `sql` run as [`READER_ROLE`] in the database of `pool`.
async fn refused_as_reader(pool: &PgPool, sql: &str) -> String {
    sqlstate_as(&database_of(pool), READER_ROLE, sql).await
}

#[tokio::test]
async fn the_query_role_reads_both_databases_and_can_change_neither() {
    let stack = spawn_query_stack().await;
    let id = stack.note("alice", "Capybara husbandry notes").await;
    stack.wait_until_verified().await;
    // Served through the reader login: search (read model) and history
    // (event store).
    let hits = stack
        .get_ok("/v1/search?q=capybara&mode=keyword", "alice")
        .await;
    assert_eq!(hits["hits"][0]["id"], id.to_string(), "{hits}");
    let history = stack
        .get_ok(&format!("/v1/memories/{id}/history"), "alice")
        .await;
    assert!(history.to_string().contains("MemoryCaptured"), "{history}");

    let generation: i32 =
        sqlx::query_scalar("SELECT generation FROM projection_state WHERE projection = 'search'")
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    for sql in [
        "DELETE FROM memories".to_owned(),
        format!("UPDATE memories_g{generation} SET content = ''"),
        format!("DELETE FROM memories_g{generation}"),
        format!("TRUNCATE memories_g{generation}"),
        "UPDATE projection_state SET generation = 0".to_owned(),
        "INSERT INTO embedding_cache DEFAULT VALUES".to_owned(),
        "CREATE TABLE planted (x int)".to_owned(),
    ] {
        assert_eq!(
            refused_as_reader(&stack.read_pool, &sql).await,
            "42501",
            "read model: {sql} must be refused for lack of privilege"
        );
    }
    for sql in [
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Memory', 'x', 1, 'MemoryCaptured', '2', '{}', '{}')",
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "UPDATE api_keys SET revoked_at = now()",
    ] {
        assert_eq!(
            refused_as_reader(&stack.event_pool, sql).await,
            "42501",
            "event store: {sql} must be refused for lack of privilege"
        );
    }
}
