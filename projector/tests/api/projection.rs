use crate::helpers::{Options, spawn_stack};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_create_then_a_revise_reach_the_document_and_the_search_row() {
    let stack = spawn_stack(Options::default()).await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "The cat sits on the mat", "title": "Cats", "tags": ["pets"]}),
        )
        .await;
    stack
        .eventually("the create reaches both read models", || async {
            stack.document(id).await.is_some_and(|d| d.version == 1)
                && stack.search_row(id).await.is_some_and(|r| r.0 == 1)
        })
        .await;
    let (version, content, dims, has_tsvector) = stack.search_row(id).await.unwrap();
    assert_eq!(
        (version, content.as_str(), dims, has_tsvector),
        (1, "The cat sits on the mat", Some(384), true)
    );
    let document = stack.document(id).await.unwrap();
    assert_eq!(document.facts.tags, ["pets"]);
    assert_eq!(document.owner_id, "alice");
    let embedding_before: String =
        sqlx::query_scalar("SELECT embedding::text FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();

    stack
        .ok(
            Method::PATCH,
            &format!("/v1/memories/{id}"),
            "alice",
            Some(json!({"content": "Quarterly revenue grew 5%"})),
        )
        .await;
    stack
        .eventually("the revision reaches both read models", || async {
            stack.document(id).await.is_some_and(|d| d.version == 2)
                && stack.search_row(id).await.is_some_and(|r| r.0 == 2)
        })
        .await;
    assert_eq!(
        stack.document(id).await.unwrap().facts.content,
        "Quarterly revenue grew 5%"
    );
    assert_eq!(
        stack.search_row(id).await.unwrap().1,
        "Quarterly revenue grew 5%"
    );
    let embedding_after: String =
        sqlx::query_scalar("SELECT embedding::text FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    assert_ne!(
        embedding_before, embedding_after,
        "the new text was embedded"
    );
    let matched: bool = sqlx::query_scalar(
        "SELECT search @@ websearch_to_tsquery('english', 'revenue') FROM memories WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    assert!(matched, "the full-text vector follows the revision");
    stack.wait_until_verified().await;
}

#[tokio::test]
async fn deleted_memories_leave_the_lists_and_return_on_restore_and_erased_ones_leave_everything() {
    let stack = spawn_stack(Options::default()).await;
    let session = stack.start_session("alice", "Diary").await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "zebra secret text", "tags": ["private"], "session_id": session}),
        )
        .await;
    let g = 1;
    let listed = |stack: &crate::helpers::Stack| {
        let (recent, timeline, tag) = (
            stack.keys.recent(g, "alice"),
            stack.keys.timeline(g, session),
            stack.keys.tag(g, "alice", "private"),
        );
        let mut redis = stack.redis.clone();
        async move {
            let a: Option<f64> = redis.zscore(recent, id.to_string()).await.unwrap();
            let b: Option<f64> = redis.zscore(timeline, id.to_string()).await.unwrap();
            let c: bool = redis.sismember(tag, id.to_string()).await.unwrap();
            (a.is_some(), b.is_some(), c)
        }
    };
    stack
        .eventually("the memory is listed", || async {
            listed(&stack).await == (true, true, true)
        })
        .await;

    stack
        .ok(Method::DELETE, &format!("/v1/memories/{id}"), "alice", None)
        .await;
    stack
        .eventually("the memory leaves the lists", || async {
            listed(&stack).await == (false, false, false)
        })
        .await;
    // The two read models are independent: wait for the search row too.
    stack
        .eventually("the search row is flagged deleted", || async {
            sqlx::query_scalar::<_, bool>("SELECT deleted FROM memories WHERE id = $1")
                .bind(id)
                .fetch_optional(&stack.read_pool)
                .await
                .unwrap()
                == Some(true)
        })
        .await;

    stack
        .ok(
            Method::POST,
            &format!("/v1/memories/{id}/restore"),
            "alice",
            None,
        )
        .await;
    stack
        .eventually("the memory returns", || async {
            listed(&stack).await == (true, true, true)
        })
        .await;

    stack
        .ok(
            Method::POST,
            &format!("/v1/memories/{id}/erase"),
            "alice",
            None,
        )
        .await;
    stack
        .eventually("the memory disappears", || async {
            stack.document(id).await.is_none() && stack.search_row(id).await.is_none()
        })
        .await;
    assert_eq!(listed(&stack).await, (false, false, false));
    let cached: i64 = sqlx::query_scalar("SELECT count(*) FROM embedding_cache")
        .fetch_one(&stack.read_pool)
        .await
        .unwrap();
    assert_eq!(cached, 0, "the erased text's embedding left the cache too");
    let mut redis = stack.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", stack.keys.prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    for key in keys {
        let dump: String = match redis.key_type::<_, String>(&key).await.unwrap().as_str() {
            "string" => redis.get(&key).await.unwrap(),
            _ => String::new(),
        };
        assert!(!dump.contains("zebra"), "{key} still holds erased text");
    }
    stack.wait_until_verified().await;
}
