//! Sessions through the tools: start, file a note in one, list, end.

use std::time::Duration;

use serde_json::{Value, json};
use test_kit::poll::until_some;
use test_kit::stack::spawn_query_stack;

use crate::{Agent, agent, ok, spawn_mcp_for};

/// The session `id` in `status`'s list, once the list shows it so: only
/// memory writes are waited for, and the session list lags a moment.
async fn listed(alice: &Agent, id: &str, status: &'static str) -> Value {
    until_some(
        &format!("session {id} listed as {status}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let page = ok(alice, "list_sessions", json!({"status": status})).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|session| session["id"] == id)
                .cloned()
        },
    )
    .await
}

#[tokio::test]
async fn a_session_is_started_filled_listed_and_ended() {
    let stack = spawn_query_stack().await;
    let url = spawn_mcp_for(&stack).await;
    let alice = agent(&url, &stack, "mcp-alice").await;

    let started = ok(&alice, "start_session", json!({"title": "Kitchen works"})).await;
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["version"], 1);
    let note = ok(
        &alice,
        "remember",
        json!({"content": "The tiler comes on Monday", "session_id": id}),
    )
    .await;
    let in_session = ok(
        &alice,
        "recall",
        json!({"query": "tiler", "mode": "keyword", "session_id": id}),
    )
    .await;
    assert_eq!(in_session["hits"][0]["id"], note["id"], "{in_session}");
    assert_eq!(in_session["hits"][0]["session_id"], json!(id));

    let open = listed(&alice, &id, "open").await;
    assert_eq!(open["title"], "Kitchen works");
    let ended = ok(&alice, "end_session", json!({"id": id})).await;
    assert_eq!(ended["version"], 2);
    let closed = listed(&alice, &id, "ended").await;
    assert_eq!(closed["version"], 2);

    let notes = ok(
        &alice,
        "list_memories",
        json!({"session_id": id, "limit": 10}),
    )
    .await;
    assert_eq!(notes["items"][0]["id"], note["id"], "{notes}");
}
