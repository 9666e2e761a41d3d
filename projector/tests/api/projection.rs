use redis::AsyncCommands;
use serde_json::json;
use test_kit::stack::{Options, spawn_projector_stack};

#[tokio::test]
async fn a_create_then_a_revise_reach_the_document_and_the_search_row() {
    let stack = spawn_projector_stack(Options::default()).await;
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
        .revise("alice", id, json!({"content": "Quarterly revenue grew 5%"}))
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
    let stack = spawn_projector_stack(Options::default()).await;
    let session = stack.start_session("alice", "Diary").await;
    let id = stack
        .capture(
            "alice",
            json!({"content": "zebra secret text", "tags": ["private"], "session_id": session}),
        )
        .await;
    let g = 1;
    let listed = |stack: &test_kit::stack::Stack| {
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

    stack.delete("alice", id).await;
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

    stack.restore("alice", id).await;
    stack
        .eventually("the memory returns", || async {
            listed(&stack).await == (true, true, true)
        })
        .await;

    stack.erase("alice", id).await;
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

/// Every member of every key under `prefix`, by key.
async fn members_under(
    redis: &mut redis::aio::ConnectionManager,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(redis)
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(redis)
            .await
            .unwrap();
        let mut members: Vec<String> = match kind.as_str() {
            "zset" => redis.zrange(&key, 0, -1).await.unwrap(),
            "set" => redis.smembers(&key).await.unwrap(),
            other => panic!("{key} is a {other}"),
        };
        members.sort();
        out.insert(key, members);
    }
    out
}

/// User ids and tags are encoded in the keys: a user `x` tagging `y`,
/// `y:recent` and `y:sessions` and a user `x:tag:y` tagging `y` share no key
/// (in key layout 1 `user:x:tag:y:recent` was both user `x`'s tag set and
/// user `x:tag:y`'s recent list), and all of one user's keys, and only
/// those, sit under that user's prefix.
#[tokio::test]
async fn user_ids_and_tags_with_colons_never_share_a_list_or_a_tag_index() {
    let stack = spawn_projector_stack(Options::default()).await;
    let x_session = stack.start_session("x", "x's day").await;
    let x = stack
        .capture(
            "x",
            json!({"content": "x's note", "tags": ["y", "y:recent", "y:sessions"], "session_id": x_session}),
        )
        .await;
    let xy_session = stack.start_session("x:tag:y", "x:tag:y's day").await;
    let xy = stack
        .capture(
            "x:tag:y",
            json!({"content": "x:tag:y's note", "tags": ["y"], "session_id": xy_session}),
        )
        .await;
    // `verify` also fails on any member in another owner's index.
    stack.wait_until_verified().await;

    let g = 1;
    let keys = &stack.keys;
    let mut redis = stack.redis.clone();
    let (x, xy) = (x.to_string(), xy.to_string());
    let (x_session, xy_session) = (x_session.to_string(), xy_session.to_string());
    let want: std::collections::BTreeMap<String, Vec<String>> = [
        (keys.recent(g, "x"), vec![x.clone()]),
        (keys.sessions(g, "x"), vec![x_session]),
        (keys.tag(g, "x", "y"), vec![x.clone()]),
        (keys.tag(g, "x", "y:recent"), vec![x.clone()]),
        (keys.tag(g, "x", "y:sessions"), vec![x]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        members_under(&mut redis, &keys.owner_prefix(g, "x")).await,
        want,
        "x's keys hold x's memory and session only"
    );
    let want: std::collections::BTreeMap<String, Vec<String>> = [
        (keys.recent(g, "x:tag:y"), vec![xy.clone()]),
        (keys.sessions(g, "x:tag:y"), vec![xy_session]),
        (keys.tag(g, "x:tag:y", "y"), vec![xy]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        members_under(&mut redis, &keys.owner_prefix(g, "x:tag:y")).await,
        want,
        "x:tag:y's keys hold x:tag:y's memory and session only"
    );
    let layout_1 = members_under(&mut redis, &format!("{}user:", keys.generation_prefix(g))).await;
    assert!(layout_1.is_empty(), "{layout_1:?}");

    // A member in another owner's index is a difference `verify` reports.
    let x_memory = stack.note("x", "another").await;
    stack.wait_until_verified().await;
    let () = redis
        .sadd(keys.tag(g, "x:tag:y", "y"), x_memory.to_string())
        .await
        .unwrap();
    let differences = stack.verify().await;
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0].detail.contains(&x_memory.to_string()),
        "{differences:?}"
    );
}

/// A deployment projected by a release with key layout 1 comes right with
/// one documents rebuild: `verify` names the leftovers and the fix, the
/// rebuild writes a new generation in layout 2, and the old keys go with
/// the old generation.
#[tokio::test]
async fn a_generation_in_key_layout_1_is_reported_and_a_documents_rebuild_moves_it_to_layout_2() {
    use projector::embedding_cache::CachedEmbedder;
    use projector::rebuild::{Rebuild, Targets};
    let stack = spawn_projector_stack(Options::default()).await;
    let session = stack.start_session("alice", "Diary").await;
    let mut memories = Vec::new();
    for i in 0..3 {
        memories.push(
            stack
                .capture(
                    "alice",
                    json!({"content": format!("note {i}"), "tags": ["t"], "session_id": session}),
                )
                .await,
        );
    }
    stack.wait_until_verified().await;

    // What layout 1 held: the same indexes, keyed by the raw user id and tag.
    let mut redis = stack.redis.clone();
    let generation = stack.keys.generation_prefix(1);
    let owner = stack.keys.owner_prefix(1, "alice");
    let current: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{owner}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    for key in current {
        let legacy = key.replacen(&owner, &format!("{generation}user:alice:"), 1);
        let () = redis::cmd("RENAME")
            .arg(&key)
            .arg(&legacy)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let differences = stack.verify().await;
    assert!(
        differences
            .iter()
            .any(|d| d.detail.contains("key layout 1")
                && d.detail.contains("--projection documents")),
        "{differences:?}"
    );

    let source = stack.source();
    let embedder = CachedEmbedder::new(
        test_kit::embedder::local_embedder().await,
        stack.read_pool.clone(),
    );
    let report = Rebuild {
        source: &source,
        read_pool: &stack.read_pool,
        embedder: &embedder,
        redis: stack.redis.clone(),
        keys: stack.keys.clone(),
        grace: std::time::Duration::ZERO,
    }
    .run(Targets {
        search: false,
        documents: true,
    })
    .await
    .unwrap();
    assert_eq!(report.documents_generation, Some(2));
    stack.wait_until_verified().await;
    let old: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{generation}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(old.is_empty(), "the layout-1 generation is gone: {old:?}");
    let tagged: Vec<String> = redis
        .smembers(stack.keys.tag(2, "alice", "t"))
        .await
        .unwrap();
    assert_eq!(tagged.len(), memories.len());
}

/// The keyword statistics follow every write (a revise, a delete, a
/// restore, an erase) and `verify` counts them again from the rows: a count
/// off by one is a difference it names.
#[tokio::test]
async fn keyword_statistics_follow_every_write_and_verify_recounts_them() {
    let stack = spawn_projector_stack(Options::default()).await;
    let kept = stack.note("alice", "The kiln room opens at nine").await;
    let changing = stack.note("alice", "Pottery class on Tuesday").await;
    let erased = stack.note("alice", "okapi notes").await;
    stack.note("bob", "Pottery for bob").await;
    stack
        .revise(
            "alice",
            changing,
            json!({"content": "Pottery class moved to Thursday"}),
        )
        .await;
    stack.delete("alice", kept).await;
    stack.restore("alice", kept).await;
    stack.erase("alice", erased).await;
    stack.wait_until_verified().await;

    let counted = |term: &'static str| {
        let pool = stack.read_pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT documents FROM keyword_terms WHERE owner_id = 'alice' AND term = $1",
            )
            .bind(term)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(counted("potteri").await, Some(1));
    assert_eq!(counted("thursday").await, Some(1));
    assert_eq!(
        counted("tuesday").await,
        None,
        "the revised-away word is gone"
    );
    assert_eq!(counted("kiln").await, Some(1), "restored");
    assert_eq!(
        counted("okapi").await,
        None,
        "erased: no term of it is left"
    );
    let (documents, terms): (i32, i64) =
        sqlx::query_as("SELECT documents, terms FROM keyword_owners WHERE owner_id = 'alice'")
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    assert_eq!(documents, 2);
    assert!(terms > 0);

    sqlx::query("UPDATE keyword_terms SET documents = documents + 1 WHERE owner_id = 'bob'")
        .execute(&stack.read_pool)
        .await
        .unwrap();
    let differences = stack.verify().await;
    assert!(!differences.is_empty());
    assert!(
        differences
            .iter()
            .all(|d| d.aggregate == "keyword statistics of bob"),
        "{differences:?}"
    );
}
