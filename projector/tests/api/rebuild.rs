use projector::embedding_cache::CachedEmbedder;
use projector::rebuild::{Rebuild, Targets};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use test_kit::embedder::{local_embedder, openai_embedder};
use test_kit::stack::{Options, spawn_projector_stack};
use uuid::Uuid;

const ALL: Targets = Targets {
    search: true,
    documents: true,
};

#[tokio::test]
async fn a_rebuild_while_reads_run_never_fails_or_empties_a_read_and_ends_verified() {
    let stack = spawn_projector_stack(Options::default()).await;
    let session = stack.start_session("alice", "Notes").await;
    let mut ids: Vec<Uuid> = Vec::new();
    for i in 0..40 {
        ids.push(
            stack
                .capture(
                    "alice",
                    json!({"content": format!("note {i}"), "tags": ["x"], "session_id": session}),
                )
                .await,
        );
    }
    stack.wait_until_verified().await;

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (pool, done, reads, ids) = (
            stack.read_pool.clone(),
            done.clone(),
            reads.clone(),
            ids.clone(),
        );
        let stack = &stack;
        async move {
            let mut failures = Vec::new();
            let mut k = 0;
            while !done.load(Ordering::Relaxed) {
                let id = ids[k % ids.len()];
                k += 1;
                match sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM memories WHERE owner_id = 'alice'",
                )
                .fetch_one(&pool)
                .await
                {
                    Ok(count) if count >= 40 => {}
                    other => failures.push(format!("count: {other:?}")),
                }
                match sqlx::query_scalar::<_, String>("SELECT content FROM memories WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await
                {
                    Ok(Some(content)) if !content.is_empty() => {}
                    other => failures.push(format!("row {id}: {other:?}")),
                }
                if stack.document(id).await.is_none() {
                    failures.push(format!("document {id} missing"));
                }
                reads.fetch_add(3, Ordering::Relaxed);
            }
            failures
        }
    };
    let rebuild = async {
        // Writes during the rebuild exercise its catch-up.
        let writes = async {
            for i in 0..5 {
                stack
                    .note("alice", format!("written during the rebuild {i}"))
                    .await;
            }
        };
        let source = stack.source();
        let embedder = CachedEmbedder::new(local_embedder().await, stack.read_pool.clone());
        let mut rebuild = Rebuild {
            source: &source,
            read_pool: &stack.read_pool,
            embedder: &embedder,
            redis: stack.redis.clone(),
            keys: stack.keys.clone(),
            grace: Duration::from_millis(500),
        };
        let (report, ()) = tokio::join!(rebuild.run(ALL), writes);
        done.store(true, Ordering::Relaxed);
        report.unwrap()
    };
    let (failures, report) = tokio::join!(reader, rebuild);
    assert!(
        failures.is_empty(),
        "reads failed during the rebuild: {failures:?}"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(report.search_generation, Some(2));
    assert_eq!(report.documents_generation, Some(2));
    assert!(report.events >= 41);
    stack.wait_until_verified().await;
    let old_tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_g1'")
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    assert_eq!(old_tables, 0, "the old generation is dropped");
}

#[tokio::test]
async fn a_rebuild_with_another_model_changes_the_dimension_and_stops_a_projector_on_the_old_one() {
    let mut stack = spawn_projector_stack(Options::default()).await;
    for i in 0..5 {
        stack.note("bob", format!("thing {i}")).await;
    }
    stack.wait_until_verified().await;

    let source = stack.source();
    let embedder = CachedEmbedder::new(openai_embedder(8).await, stack.read_pool.clone());
    Rebuild {
        source: &source,
        read_pool: &stack.read_pool,
        embedder: &embedder,
        redis: stack.redis.clone(),
        keys: stack.keys.clone(),
        grace: Duration::ZERO,
    }
    .run(Targets {
        search: true,
        documents: false,
    })
    .await
    .unwrap();

    let (model, dimension): (String, i32) = sqlx::query_as(
        "SELECT embedding_model, dimension FROM projection_state WHERE projection = 'search'",
    )
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    assert_eq!((model.as_str(), dimension), (embedder.model_id(), 8));
    let dims: Vec<Option<i32>> = sqlx::query_scalar("SELECT vector_dims(embedding) FROM memories")
        .fetch_all(&stack.read_pool)
        .await
        .unwrap();
    assert_eq!(dims, vec![Some(8); 5]);
    stack.wait_until_verified().await;

    // The running projector still embeds with the 384-dimension model: the
    // next event stops it with an error that says to rebuild.
    stack.note("bob", "one more").await;
    let projector = stack.projector.take().unwrap();
    let outcome = tokio::time::timeout(stack.deadline, projector)
        .await
        .unwrap()
        .unwrap();
    let error = outcome.unwrap_err().to_string();
    assert!(error.contains("rebuild-projections"), "{error}");
}
