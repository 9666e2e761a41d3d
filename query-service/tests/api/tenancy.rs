use reqwest::StatusCode;
use serde_json::json;
use test_kit::http::ids;
use test_kit::stack::spawn_query_stack;
use uuid::Uuid;

/// Alice's and Bob's data interleaved; Bob, with Alice's ids and words, gets
/// nothing of hers from any endpoint.
#[tokio::test]
async fn no_query_endpoint_returns_another_users_data() {
    let stack = spawn_query_stack().await;
    let mut alice_memories: Vec<Uuid> = Vec::new();
    let mut bob_memories: Vec<Uuid> = Vec::new();
    let alice_session = stack.start_session("alice", "Zanzibar expedition").await;
    let bob_session = stack.start_session("bob", "Groceries").await;
    for i in 0..5 {
        alice_memories.push(
            stack
                .capture("alice", json!({"content": format!("Zanzibar spice farm visit {i} with the xylophone club"),
                                         "tags": ["zanzibar"], "session_id": alice_session}))
                .await,
        );
        bob_memories.push(
            stack
                .capture("bob", json!({"content": format!("Buy oat milk and bread {i}"), "tags": ["shopping"], "session_id": bob_session}))
                .await,
        );
    }
    let alice_one = alice_memories[0];
    stack
        .revise("alice", alice_one, json!({"content": "Zanzibar revised"}))
        .await;
    stack.wait_until_verified().await;

    // By id: 404, never the document, with or without options.
    for path in [
        format!("/v1/memories/{alice_one}"),
        format!("/v1/memories/{alice_one}?include_deleted=true"),
        format!("/v1/memories/{alice_one}?min_version=1"),
        format!("/v1/memories/{alice_one}/history"),
        format!("/v1/memories/{alice_one}/as-of?version=1"),
        format!("/v1/memories/{alice_one}/as-of?at=2099-01-01T00:00:00Z"),
        format!("/v1/sessions/{alice_session}"),
        format!("/v1/sessions/{alice_session}?min_version=1"),
        format!("/v1/sessions/{alice_session}/timeline"),
        format!("/v1/sessions/{alice_session}/history"),
        format!("/v1/sessions/{alice_session}/as-of?version=1"),
    ] {
        let (status, body) = stack.get(&path, "bob").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.to_string().contains("Zanzibar"), "{path}: {body}");
    }
    // With Alice's document missing from Redis the read goes to the read
    // database, and that path is scoped too. The memory is one nobody has
    // read by id, so no worker's document cache can answer in its place.
    let unread = alice_memories[1];
    let unread_key = stack.keys.memory(1, unread);
    let mut redis = stack.redis.clone();
    let () = redis::AsyncCommands::del(&mut redis, &unread_key)
        .await
        .unwrap();
    let (status, body) = stack.get(&format!("/v1/memories/{unread}"), "bob").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.to_string().contains("Zanzibar"), "{body}");
    let back: Option<String> = redis::AsyncCommands::get(&mut redis, &unread_key)
        .await
        .unwrap();
    assert!(back.is_none(), "Bob's read wrote Alice's document back");
    // Alice's own read takes the same path and finds it.
    let own = stack
        .get_ok(&format!("/v1/memories/{unread}"), "alice")
        .await;
    assert_eq!(own["id"], unread.to_string());

    // Lists: only Bob's, whatever the filter names.
    for path in [
        "/v1/memories".to_owned(),
        "/v1/memories?include_deleted=true".to_owned(),
        format!("/v1/memories?session={alice_session}"),
        "/v1/memories?tags_any=zanzibar,shopping".to_owned(),
        "/v1/sessions".to_owned(),
    ] {
        let body = stack.get_ok(&path, "bob").await;
        let listed = ids(&body, "items");
        assert!(
            listed
                .iter()
                .all(|id| !alice_memories.contains(id) && *id != alice_session),
            "{path}: {body}"
        );
        assert!(!body.to_string().contains("Zanzibar"), "{path}");
    }
    let bob_list = stack.get_ok("/v1/memories", "bob").await;
    assert_eq!(ids(&bob_list, "items").len(), bob_memories.len());

    // Search with Alice's words, in every mode: nothing of hers.
    for mode in ["semantic", "keyword", "hybrid"] {
        for q in ["Zanzibar%20spice%20farm", "xylophone", "zanzibr"] {
            let body = stack
                .get_ok(
                    &format!("/v1/search?q={q}&mode={mode}&k=100&explain=true"),
                    "bob",
                )
                .await;
            let found = ids(&body, "hits");
            assert!(
                found.iter().all(|id| bob_memories.contains(id)),
                "{mode} {q}: {body}"
            );
            assert!(!body.to_string().contains("Zanzibar"), "{mode} {q}");
        }
    }
    // And Alice does find hers (all but the revised one), so the searches
    // above could have.
    let body = stack
        .get_ok("/v1/search?q=xylophone&mode=keyword", "alice")
        .await;
    let mut found = ids(&body, "hits");
    found.sort();
    let mut expected = alice_memories[1..].to_vec();
    expected.sort();
    assert_eq!(found, expected);
}
