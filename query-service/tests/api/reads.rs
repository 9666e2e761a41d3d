use futures::StreamExt;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use test_kit::http::ids;
use test_kit::stack::spawn_query_stack;
use uuid::Uuid;

#[tokio::test]
async fn a_memory_is_served_from_redis_and_a_missing_document_is_repaired() {
    let stack = spawn_query_stack().await;
    let session = stack.start_session("alice", "Trip").await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "Pack the tent", "title": "Packing", "tags": ["Trip", "gear"],
                   "metadata": {"list": 1}, "session_id": session}),
        )
        .await;
    stack.wait_until_verified().await;
    let response = stack
        .client
        .get(format!("{}/v1/memories/{id}", stack.query()))
        .bearer_auth(stack.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Pack the tent");
    assert_eq!(body["title"], "Packing");
    assert_eq!(body["tags"], json!(["trip", "gear"]));
    assert_eq!(body["metadata"], json!({"list": 1}));
    assert_eq!(body["session_id"], session.to_string());
    assert_eq!(body["version"], 1);

    // Redis loses the document (a restart without persistence, say).
    let mut redis = stack.redis.clone();
    let key = stack.keys.memory(1, id);
    let () = redis.del(&key).await.unwrap();
    // A worker that cached the document may serve it until the deletion's
    // invalidation reaches it (moments, and always the same bytes), so read
    // until a read has gone to the database: every answer must be the
    // document, and the key must come back well within the cache's 5 s bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let read = stack.get_ok(&format!("/v1/memories/{id}"), "alice").await;
        assert_eq!(
            read, body,
            "served unchanged, from the cache or the read database"
        );
        let back: Option<String> = redis.get(&key).await.unwrap();
        if back.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no read put the document back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // And the repair is exactly what the projector would have written,
    // indexes included.
    stack.wait_until_verified().await;
    // Later events apply on top of the repaired document.
    stack
        .revise(
            "alice",
            id,
            json!({"content": "Pack the tent and the stove"}),
        )
        .await;
    stack.wait_until_verified().await;
    let revised = stack.get_ok(&format!("/v1/memories/{id}"), "alice").await;
    assert_eq!(revised["content"], "Pack the tent and the stove");
    assert_eq!(revised["version"], 2);

    let (status, _) = stack
        .get(&format!("/v1/memories/{}", Uuid::now_v7()), "alice")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Reads through `clients` fresh connections (so through every HTTP worker's
/// cache, whichever each lands on) until all of them answer `expected`, or
/// a second passes: far less than the cache's 5 s bound on an entry's age,
/// so a change the cache missed fails the test.
async fn until_every_worker_reads(
    stack: &test_kit::stack::Stack,
    path: &str,
    expected: impl Fn(StatusCode, &Value) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let mut all = true;
        for _ in 0..4 {
            let (status, body) = stack.get_via(&reqwest::Client::new(), path, "alice").await;
            all &= expected(status, &body);
        }
        if all {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a worker kept serving an old document for {path}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cached_documents_follow_every_change_redis_sees() {
    let stack = spawn_query_stack().await;
    let id = stack.note("alice", "The first words").await;
    stack.wait_until_verified().await;
    let path = format!("/v1/memories/{id}");
    let original = stack.get_ok(&path, "alice").await;
    // Every worker caches it.
    until_every_worker_reads(&stack, &path, |s, b| s == 200 && *b == original).await;

    // A change written straight into Redis, as the projector writes.
    let mut redis = stack.redis.clone();
    let key = stack.keys.memory(1, id);
    let mut changed = original.clone();
    changed["content"] = json!("Changed behind the cache");
    let () = redis.set(&key, changed.to_string()).await.unwrap();
    until_every_worker_reads(&stack, &path, |s, b| {
        s == 200 && b["content"] == "Changed behind the cache"
    })
    .await;

    // A revision through the command side, read without asking for its version.
    stack
        .ok(
            Method::PATCH,
            &path,
            "alice",
            Some(json!({"content": "The second words"})),
        )
        .await;
    stack.wait_until_verified().await;
    until_every_worker_reads(&stack, &path, |s, b| {
        s == 200 && b["content"] == "The second words" && b["version"] == 2
    })
    .await;

    // Erasure: the tombstone's key changes, and the cached document goes.
    stack
        .ok(Method::POST, &format!("{path}/erase"), "alice", None)
        .await;
    stack.wait_until_verified().await;
    until_every_worker_reads(&stack, &path, |s, _| s == StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn deleted_memories_leave_the_reads_unless_asked_for_and_return_on_restore() {
    let stack = spawn_query_stack().await;
    let kept = stack.note("alice", "kept").await;
    let gone = stack.note("alice", "deleted").await;
    stack.delete("alice", gone).await;
    stack.wait_until_verified().await;

    let (status, body) = stack.get(&format!("/v1/memories/{gone}"), "alice").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let deleted = stack
        .get_ok(
            &format!("/v1/memories/{gone}?include_deleted=true"),
            "alice",
        )
        .await;
    assert_eq!(deleted["status"], "deleted");
    let list = stack.get_ok("/v1/memories", "alice").await;
    assert_eq!(ids(&list, "items"), vec![kept]);
    let all = stack
        .get_ok("/v1/memories?include_deleted=true", "alice")
        .await;
    assert_eq!(
        ids(&all, "items").into_iter().collect::<HashSet<_>>(),
        HashSet::from([kept, gone])
    );
    let search = stack
        .get_ok("/v1/search?q=deleted&mode=keyword", "alice")
        .await;
    assert!(ids(&search, "hits").is_empty(), "{search}");

    stack.restore("alice", gone).await;
    stack.wait_until_verified().await;
    let restored = stack.get_ok(&format!("/v1/memories/{gone}"), "alice").await;
    assert_eq!(restored["status"], "active");
    let search = stack
        .get_ok("/v1/search?q=deleted&mode=keyword", "alice")
        .await;
    assert_eq!(ids(&search, "hits"), vec![gone]);
}

/// The ids of `/v1/memories?<query>` as a set.
async fn listed(stack: &test_kit::stack::Stack, query: &str) -> HashSet<Uuid> {
    let body = stack
        .get_ok(&format!("/v1/memories?{query}"), "alice")
        .await;
    assert!(body["next_cursor"].is_null(), "one page: {body}");
    ids(&body, "items").into_iter().collect()
}

#[tokio::test]
async fn lists_filter_by_session_by_any_or_all_tags_and_by_time() {
    let stack = spawn_query_stack().await;
    let session = stack.start_session("alice", "Work").await;
    let a = stack
        .capture(
            "alice",
            json!({"content": "a", "tags": ["red", "blue"], "session_id": session}),
        )
        .await;
    let b = stack
        .capture("alice", json!({"content": "b", "tags": ["red"]}))
        .await;
    let c = stack
        .capture(
            "alice",
            json!({"content": "c", "tags": ["green"], "session_id": session}),
        )
        .await;
    stack.wait_until_verified().await;
    let doc = |id: Uuid| {
        let stack = &stack;
        async move { stack.get_ok(&format!("/v1/memories/{id}"), "alice").await }
    };
    let created_b = doc(b).await["created_at"].as_str().unwrap().to_owned();
    let created_c = doc(c).await["created_at"].as_str().unwrap().to_owned();
    let enc = |t: &str| t.replace('+', "%2B");

    assert_eq!(
        listed(&stack, &format!("session={session}")).await,
        HashSet::from([a, c])
    );
    assert_eq!(
        listed(&stack, "tags_any=red,green").await,
        HashSet::from([a, b, c])
    );
    assert_eq!(
        listed(&stack, "tags_any=RED").await,
        HashSet::from([a, b]),
        "normalised"
    );
    assert_eq!(
        listed(&stack, "tags_all=red,blue").await,
        HashSet::from([a])
    );
    assert_eq!(listed(&stack, "tags_all=red,green").await, HashSet::new());
    assert_eq!(
        listed(&stack, &format!("created_after={}", enc(&created_b))).await,
        HashSet::from([b, c]),
        "the lower bound is inclusive"
    );
    assert_eq!(
        listed(&stack, &format!("created_before={}", enc(&created_c))).await,
        HashSet::from([a, b]),
        "the upper bound is exclusive"
    );
    assert_eq!(
        listed(&stack, &format!("session={session}&tags_any=red")).await,
        HashSet::from([a]),
        "filters combine"
    );

    // Updated-at moves with a change; created-at does not.
    let version = stack.add_tags("alice", a, json!(["new"])).await;
    stack.wait_until_verified().await;
    let updated_a = doc(a).await;
    assert_eq!(updated_a["version"], version);
    let updated = updated_a["updated_at"].as_str().unwrap().to_owned();
    assert_eq!(
        listed(&stack, &format!("updated_after={}", enc(&updated))).await,
        HashSet::from([a])
    );
    assert_eq!(
        listed(&stack, &format!("updated_before={}", enc(&updated))).await,
        HashSet::from([b, c])
    );

    // Newest first by default, oldest first on request.
    let newest = stack.get_ok("/v1/memories", "alice").await;
    assert_eq!(ids(&newest, "items"), vec![c, b, a]);
    let oldest = stack.get_ok("/v1/memories?order=asc", "alice").await;
    assert_eq!(ids(&oldest, "items"), vec![a, b, c]);
}

#[tokio::test]
async fn sessions_are_read_listed_and_their_timelines_run_in_time_order() {
    let stack = spawn_query_stack().await;
    let first = stack.start_session("alice", "First").await;
    let second = stack.start_session("alice", "Second").await;
    stack
        .ok(
            Method::POST,
            &format!("/v1/sessions/{first}/end"),
            "alice",
            None,
        )
        .await;
    // Imported memories happened before they were captured: the timeline
    // follows when they happened.
    let late = stack
        .capture(
            "alice",
            json!({"content": "late", "session_id": second, "occurred_at": "2026-03-01T10:00:00Z"}),
        )
        .await;
    let early = stack
        .capture("alice", json!({"content": "early", "session_id": second, "occurred_at": "2026-01-01T10:00:00Z"}))
        .await;
    let middle = stack
        .capture("alice", json!({"content": "middle", "session_id": second, "occurred_at": "2026-02-01T10:00:00Z"}))
        .await;
    stack.wait_until_verified().await;

    let session = stack
        .get_ok(&format!("/v1/sessions/{first}"), "alice")
        .await;
    assert_eq!(session["title"], "First");
    assert_eq!(session["status"], "ended");
    let listed = stack.get_ok("/v1/sessions", "alice").await;
    assert_eq!(ids(&listed, "items"), vec![second, first]);
    let open = stack.get_ok("/v1/sessions?status=open", "alice").await;
    assert_eq!(ids(&open, "items"), vec![second]);
    let paged = stack
        .get_ok("/v1/sessions?limit=1&order=asc", "alice")
        .await;
    assert_eq!(ids(&paged, "items"), vec![first]);
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = stack
        .get_ok(
            &format!("/v1/sessions?limit=1&order=asc&cursor={cursor}"),
            "alice",
        )
        .await;
    assert_eq!(ids(&rest, "items"), vec![second]);
    assert!(rest["next_cursor"].is_null());
    // A cursor is a place in the list, read in whatever order is asked:
    // before the second session, newest first, is the first.
    let newest = stack.get_ok("/v1/sessions?limit=1", "alice").await;
    assert_eq!(ids(&newest, "items"), vec![second]);
    let at_second = newest["next_cursor"].as_str().unwrap();
    let back = stack
        .get_ok(
            &format!("/v1/sessions?order=desc&cursor={at_second}"),
            "alice",
        )
        .await;
    assert_eq!(ids(&back, "items"), vec![first]);
    let on = stack
        .get_ok(
            &format!("/v1/sessions?order=asc&cursor={at_second}"),
            "alice",
        )
        .await;
    assert!(ids(&on, "items").is_empty(), "{on}");

    let timeline = stack
        .get_ok(&format!("/v1/sessions/{second}/timeline"), "alice")
        .await;
    assert_eq!(ids(&timeline, "items"), vec![early, middle, late]);
    // A page at a time.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sessions/{second}/timeline?limit=1&cursor={c}"),
            None => format!("/v1/sessions/{second}/timeline?limit=1"),
        };
        let page = stack.get_ok(&path, "alice").await;
        walked.extend(ids(&page, "items"));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, vec![early, middle, late]);
    // Moving a memory out takes it off the timeline.
    stack.move_memory("alice", middle, json!(null)).await;
    stack.wait_until_verified().await;
    let timeline = stack
        .get_ok(&format!("/v1/sessions/{second}/timeline"), "alice")
        .await;
    assert_eq!(ids(&timeline, "items"), vec![early, late]);
}

#[tokio::test]
async fn pagination_walks_1000_memories_without_a_duplicate_or_a_gap_while_writes_continue() {
    let stack = spawn_query_stack().await;
    let created: Vec<Uuid> = futures::stream::iter(0..1000)
        .map(|i| {
            let stack = &stack;
            async move {
                stack
                    .capture(
                        "alice",
                        json!({"content": format!("note {i}"), "tags": ["walk"]}),
                    )
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    stack.wait_until_verified().await;

    let writer = async {
        // New memories, and changes to the listed ones, while the walk runs.
        for i in 0..60 {
            stack
                .capture(
                    "alice",
                    json!({"content": format!("written during the walk {i}"), "tags": ["walk"]}),
                )
                .await;
            stack
                .ok(
                    Method::POST,
                    &format!("/v1/memories/{}/tags", created[i * 7]),
                    "alice",
                    Some(json!({"tags": [format!("touched-{i}")]})),
                )
                .await;
        }
    };
    let walker = async {
        let mut seen: Vec<Uuid> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/memories?tags_any=walk&limit=37&cursor={c}"),
                None => "/v1/memories?tags_any=walk&limit=37".to_owned(),
            };
            let page = stack.get_ok(&path, "alice").await;
            seen.extend(ids(&page, "items"));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        (seen, pages)
    };
    let ((), (seen, pages)) = tokio::join!(writer, walker);
    assert!(pages >= 28, "{pages} pages");
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no memory twice");
    let missing: Vec<&Uuid> = created.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of the 1000 never listed",
        missing.len()
    );
}
