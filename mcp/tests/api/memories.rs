//! Notes through the tools: read your writes, one user's notes invisible
//! to another, optimistic concurrency and history.

use serde_json::json;
use test_kit::stack::spawn_query_stack;
use uuid::Uuid;

use crate::{agent, connect, hit_ids, ok, refused, spawn_mcp_for};

#[tokio::test]
async fn a_note_remembered_is_recalled_at_once_and_by_no_one_else() {
    let stack = spawn_query_stack().await;
    let url = spawn_mcp_for(&stack).await;
    let alice = agent(&url, &stack, "mcp-alice").await;
    let bob = agent(&url, &stack, "mcp-bob").await;

    let word = format!("zanzibar{}", Uuid::new_v4().simple());
    let written = ok(
        &alice,
        "remember",
        json!({
            "content": format!("The spare key is under the {word} flowerpot"),
            "title": "Spare key",
            "tags": ["House"],
            "metadata": {"source": "test"},
            "occurred_at": "2026-03-01T09:30:00Z"
        }),
    )
    .await;
    let id = written["id"].as_str().unwrap().to_owned();
    assert_eq!(written["version"], 1);

    // No polling: each read waits for the write it follows.
    let listed = ok(&alice, "list_memories", json!({"tags": ["house"]})).await;
    assert_eq!(listed["items"][0]["id"], json!(id), "{listed}");
    for mode in ["keyword", "hybrid"] {
        let found = ok(&alice, "recall", json!({"query": word, "mode": mode})).await;
        assert_eq!(hit_ids(&found), [id.as_str()], "{mode}: {found}");
    }
    let memory = ok(&alice, "get_memory", json!({"id": id})).await;
    assert_eq!(memory["tags"], json!(["house"]));
    assert_eq!(memory["version"], 1);

    // Bob asks once the index surely holds it (Alice found it), and his
    // token finds nothing, and cannot read it by id.
    let theirs = ok(&bob, "recall", json!({"query": word, "mode": "keyword"})).await;
    assert_eq!(hit_ids(&theirs), Vec::<String>::new(), "{theirs}");
    let not_found = refused(&bob, "get_memory", json!({"id": id})).await;
    assert_eq!(not_found["code"], "not_found", "{not_found}");
    assert_eq!(not_found["status"], 404);
    let not_theirs = refused(&bob, "forget_memory", json!({"id": id})).await;
    assert_eq!(not_theirs["code"], "not_found", "{not_theirs}");
}

#[tokio::test]
async fn a_call_without_a_bearer_token_is_a_tool_error_unauthorized() {
    let stack = spawn_query_stack().await;
    let url = spawn_mcp_for(&stack).await;
    let anonymous = connect(&url, None).await;
    let refusal = refused(&anonymous, "recall", json!({"query": "anything"})).await;
    assert_eq!(refusal["code"], "unauthorized", "{refusal}");
    assert_eq!(refusal["status"], 401);
}

#[tokio::test]
async fn a_stale_expected_version_is_refused_and_history_shows_every_version() {
    let stack = spawn_query_stack().await;
    let url = spawn_mcp_for(&stack).await;
    let alice = agent(&url, &stack, "mcp-alice").await;

    let written = ok(
        &alice,
        "remember",
        json!({"content": "The boiler code is 4471"}),
    )
    .await;
    let id = written["id"].as_str().unwrap().to_owned();
    let updated = ok(
        &alice,
        "update_memory",
        json!({"id": id, "content": "The boiler code is 4472", "expected_version": 1}),
    )
    .await;
    assert_eq!(updated["version"], 2);
    // Read your write: the document is at the new version at once.
    let memory = ok(&alice, "get_memory", json!({"id": id})).await;
    assert_eq!(memory["content"], "The boiler code is 4472");

    let stale = refused(
        &alice,
        "update_memory",
        json!({"id": id, "title": "Boiler", "expected_version": 1}),
    )
    .await;
    assert_eq!(stale["code"], "version_mismatch", "{stale}");
    assert!(
        stale["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{stale}"
    );

    let history = ok(&alice, "memory_history", json!({"id": id})).await;
    let versions: Vec<u64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "{history}");
    assert_eq!(history["items"][0]["type"], "MemoryCaptured");

    // A value the service refuses is its own code, with its field errors.
    let too_many = refused(&alice, "recall", json!({"query": "boiler", "k": 1000})).await;
    assert_eq!(too_many["code"], "validation_failed", "{too_many}");
    assert!(
        too_many["errors"].is_array() || too_many["errors"].is_object(),
        "{too_many}"
    );
}

#[tokio::test]
async fn tags_change_and_a_forgotten_note_leaves_recall_until_it_is_restored() {
    let stack = spawn_query_stack().await;
    let url = spawn_mcp_for(&stack).await;
    let alice = agent(&url, &stack, "mcp-alice").await;

    let word = format!("quokka{}", Uuid::new_v4().simple());
    let written = ok(
        &alice,
        "remember",
        json!({"content": format!("Feed the {word} on Sundays"), "tags": ["pets", "todo"]}),
    )
    .await;
    let id = written["id"].as_str().unwrap().to_owned();

    let tagged = ok(
        &alice,
        "tag_memory",
        json!({"id": id, "add": ["weekly"], "remove": ["todo"]}),
    )
    .await;
    assert_eq!(tagged["version"], 3);
    let memory = ok(&alice, "get_memory", json!({"id": id})).await;
    assert_eq!(memory["tags"], json!(["pets", "weekly"]));
    let by_tag = ok(
        &alice,
        "recall",
        json!({"query": word, "mode": "keyword", "tags": ["weekly"]}),
    )
    .await;
    assert_eq!(hit_ids(&by_tag), [id.as_str()], "{by_tag}");

    ok(&alice, "forget_memory", json!({"id": id})).await;
    let gone = ok(&alice, "recall", json!({"query": word, "mode": "keyword"})).await;
    assert_eq!(hit_ids(&gone), Vec::<String>::new(), "{gone}");
    let deleted = ok(
        &alice,
        "get_memory",
        json!({"id": id, "include_deleted": true}),
    )
    .await;
    assert_eq!(deleted["status"], "deleted", "{deleted}");

    let restored = ok(&alice, "restore_memory", json!({"id": id})).await;
    assert_eq!(restored["version"], 5);
    let back = ok(&alice, "recall", json!({"query": word, "mode": "keyword"})).await;
    assert_eq!(hit_ids(&back), [id], "{back}");
}
