//! Context vectors (ADR 17): a memory in a session gets the embedding of
//! itself between its neighbours; a change to the window forgets it in the
//! same transaction (so an erased neighbour's text is never left in one),
//! and the worker makes it again from what is there now.

use pgvector::Vector;
use serde_json::json;
use std::time::Duration;
use test_kit::embedder::local_embedder;
use test_kit::stack::{Options, Stack, spawn_projector_stack};
use uuid::Uuid;

async fn context_of(stack: &Stack, id: Uuid) -> Option<Vec<f32>> {
    let row: Option<Vector> =
        sqlx::query_scalar("SELECT context_embedding FROM memories WHERE id = $1")
            .bind(id)
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
    row.map(|v| v.to_vec())
}

async fn embedding_of(text: &str) -> Vec<f32> {
    local_embedder()
        .await
        .embed(&[text.to_owned()])
        .await
        .unwrap()
        .remove(0)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Whether `id`'s context vector is the embedding of `window`.
async fn is_context(stack: &Stack, id: Uuid, window: &str) -> bool {
    let expected = embedding_of(window).await;
    context_of(stack, id)
        .await
        .is_some_and(|v| cosine(&v, &expected) > 0.9999)
}

#[tokio::test]
async fn a_memory_in_a_session_is_embedded_between_its_neighbours_and_an_erased_one_leaves_no_trace()
 {
    let stack = spawn_projector_stack(Options::default()).await;
    let session = stack.start_session("ana", "Chat").await;
    let turn = |text: &str, second: u32| {
        json!({
            "content": text,
            "session_id": session,
            "occurred_at": format!("2026-01-01T10:00:0{second}Z"),
        })
    };
    // Captured out of order: the window follows occurred_at.
    let third = stack.capture("ana", turn("Ana: third", 3)).await;
    let first = stack.capture("ana", turn("Ana: first", 1)).await;
    let second = stack.capture("ana", turn("Bo: second", 2)).await;
    let alone = stack.note("ana", "a note in no session").await;
    stack.wait_until_verified().await;
    stack.wait_until_context_made(Duration::from_secs(60)).await;

    assert!(is_context(&stack, first, "Ana: first\nBo: second").await);
    assert!(is_context(&stack, second, "Ana: first\nBo: second\nAna: third").await);
    assert!(is_context(&stack, third, "Bo: second\nAna: third").await);
    // Outside a session a memory's context is its own vector, left NULL.
    assert_eq!(context_of(&stack, alone).await, None);

    // The trigger forgets the neighbours' vectors with the erase itself:
    // within the transaction that deletes the row, before any commit.
    let mut tx = stack.read_pool.begin().await.unwrap();
    sqlx::query("DELETE FROM memories WHERE id = $1")
        .bind(third)
        .execute(&mut *tx)
        .await
        .unwrap();
    let forgotten: bool =
        sqlx::query_scalar("SELECT context_embedding IS NULL FROM memories WHERE id = $1")
            .bind(second)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert!(forgotten, "deleting a neighbour forgets the context vector");
    tx.rollback().await.unwrap();

    // Through the service: erased, then the window is made again without it.
    stack.erase("ana", third).await;
    stack.wait_until_verified().await;
    stack
        .eventually("the window made again without the erased turn", || {
            is_context(&stack, second, "Ana: first\nBo: second")
        })
        .await;
    // An edit forgets and remakes both its own window and its neighbours'.
    stack
        .revise("ana", first, json!({"content": "Ana: first, edited"}))
        .await;
    stack.wait_until_verified().await;
    stack
        .eventually("the windows made again with the edit", || async {
            is_context(&stack, first, "Ana: first, edited\nBo: second").await
                && is_context(&stack, second, "Ana: first, edited\nBo: second").await
        })
        .await;
}
