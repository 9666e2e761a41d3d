//! Pending vectors (ADR 21): while a backlog drains, a full batch writes its
//! vectors outside the nearest-neighbour index, never more than the bound
//! at once; once the projection is idle the indexer moves every one into
//! the index, unchanged.

use pgvector::Vector;
use test_kit::embedder::local_embedder;
use test_kit::stack::{Options, spawn_projector_stack};
use uuid::Uuid;

/// What the test's trigger saw: each row written with a pending vector,
/// and how many were pending in all after that write.
#[derive(Debug, sqlx::FromRow)]
struct PendingWrite {
    pending_now: i64,
}

#[tokio::test]
async fn a_backlog_leaves_its_vectors_pending_within_the_bound_and_the_indexer_indexes_them_all() {
    let mut stack = spawn_projector_stack(Options {
        relay: false,
        projector: false,
    })
    .await;
    let bound = 100;
    stack.projector_vars.push((
        "SB_PROJECTOR_PENDING_VECTORS_MAX".to_owned(),
        bound.to_string(),
    ));
    // A batch waits up to a second for more deliveries, so that it fills
    // while the test publishes (on a busy machine, slower than the usual
    // window), as a backlog's batches do.
    stack
        .projector_vars
        .push(("SB_PROJECTOR_BATCH_WINDOW_MS".to_owned(), "1000".to_owned()));
    for i in 0..200 {
        stack
            .note("ana", format!("backlog note {i} about the garden"))
            .await;
    }
    let bodies = stack.stored_bodies().await;

    stack.start_projector_with(local_embedder().await).await;
    // The generation exists once the projector has started: watch its
    // table for writes that leave a vector pending.
    sqlx::raw_sql(
        "CREATE TABLE pending_writes (id uuid NOT NULL, pending_now bigint NOT NULL);
         CREATE FUNCTION note_pending() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO pending_writes (id, pending_now)
             SELECT NEW.id, count(*) FROM memories_g1 WHERE pending_embedding IS NOT NULL;
             RETURN NULL;
         END $$;
         CREATE TRIGGER note_pending AFTER INSERT OR UPDATE ON memories_g1
             FOR EACH ROW WHEN (NEW.pending_embedding IS NOT NULL) EXECUTE FUNCTION note_pending();",
    )
    .execute(&stack.read_pool)
    .await
    .unwrap();
    // All at once: the batches are full, as in a backlog.
    for projection in ["search", "documents"] {
        stack.inject(projection, &bodies).await;
    }
    stack.wait_until_verified().await;

    let writes: Vec<PendingWrite> = sqlx::query_as("SELECT pending_now FROM pending_writes")
        .fetch_all(&stack.read_pool)
        .await
        .unwrap();
    assert!(
        !writes.is_empty(),
        "no batch of the backlog left its vectors pending"
    );
    let most = writes.iter().map(|w| w.pending_now).max().unwrap();
    assert!(
        most <= bound,
        "{most} vectors pending at once, above {bound}"
    );

    stack
        .eventually("every pending vector indexed", || async {
            let (pending, unindexed): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE pending_embedding IS NOT NULL),
                        count(*) FILTER (WHERE embedding IS NULL)
                   FROM memories",
            )
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
            pending == 0 && unindexed == 0
        })
        .await;
    // Moved unchanged: a note written pending has its own text's vector.
    let id: Uuid = sqlx::query_scalar("SELECT id FROM pending_writes LIMIT 1")
        .fetch_one(&stack.read_pool)
        .await
        .unwrap();
    let (content, indexed): (String, Vector) =
        sqlx::query_as("SELECT content, embedding FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    let expected = local_embedder()
        .await
        .embed(&[content])
        .await
        .unwrap()
        .remove(0);
    let dot: f32 = indexed
        .to_vec()
        .iter()
        .zip(&expected)
        .map(|(a, b)| a * b)
        .sum();
    assert!(dot > 0.9999, "the indexed vector is not the note's own");
}
