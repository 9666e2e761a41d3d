//! Pending vectors (ADR 21): a memory whose vector a batch left out of the
//! nearest-neighbour index (while a backlog drained) is found by semantic
//! and hybrid search exactly as when it is indexed, with the same scores,
//! under the same filters, and only by its owner.

use serde_json::{Value, json};
use sqlx::{Postgres, Transaction};
use test_kit::stack::{Stack, spawn_query_stack};
use uuid::Uuid;

/// The hits' ids and scores.
async fn ranking(stack: &Stack, user: &str, query: &str) -> Vec<(Uuid, f64)> {
    let body = stack.get_ok(&format!("/v1/search?{query}"), user).await;
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            (
                hit["id"].as_str().unwrap().parse().unwrap(),
                hit["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Moves `owner`'s vectors out of the index into `pending_embedding`, as a
/// batch during a backlog writes them, and keeps them there until the
/// returned transaction ends: the projector's indexer skips locked rows.
async fn hold_pending(stack: &Stack, owner: &str) -> Transaction<'static, Postgres> {
    for _ in 0..20 {
        sqlx::query(
            "UPDATE memories SET pending_embedding = embedding, embedding = NULL
              WHERE owner_id = $1 AND embedding IS NOT NULL",
        )
        .bind(owner)
        .execute(&stack.read_pool)
        .await
        .unwrap();
        let mut tx = stack.read_pool.begin().await.unwrap();
        let (pending, all): (i64, i64) = sqlx::query_as(
            "SELECT count(pending_embedding), count(*)
               FROM (SELECT pending_embedding FROM memories WHERE owner_id = $1 FOR SHARE) m",
        )
        .bind(owner)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        if pending == all {
            return tx;
        }
        // The indexer took some back between the two statements: again.
        tx.rollback().await.unwrap();
    }
    panic!("the indexer took {owner}'s vectors back every time");
}

#[tokio::test]
async fn a_memory_whose_vector_is_pending_is_found_as_if_it_were_indexed() {
    let stack = spawn_query_stack().await;
    let notes: [(&str, Value); 8] = [
        (
            "cat",
            json!({"content": "The cat sleeps on the warm windowsill every afternoon.", "tags": ["pets"]}),
        ),
        (
            "invoice",
            json!({"content": "Invoice INV-4471 from the plumber is due on Friday."}),
        ),
        (
            "deploy",
            json!({"content": "We switched production to a blue green deployment last spring."}),
        ),
        (
            "garden",
            json!({"content": "The garden is green and the sky is blue.", "tags": ["home"]}),
        ),
        (
            "dog",
            json!({"content": "The dog waits by the door for the evening walk.", "tags": ["pets"]}),
        ),
        (
            "tax",
            json!({"content": "File the tax return before the end of April."}),
        ),
        (
            "train",
            json!({"content": "The 7:42 train to Leeds was cancelled again this morning."}),
        ),
        (
            "recipe",
            json!({"content": "Grandma's lentil soup needs cumin, lemon and a lot of patience.", "tags": ["home"]}),
        ),
    ];
    let mut ids = Vec::new();
    for (_, body) in &notes {
        ids.push(stack.capture("alice", body.clone()).await);
    }
    let bobs = stack
        .note("bob", "My cat naps in the sun on the balcony.")
        .await;
    stack.wait_until_verified().await;

    let queries = [
        "q=a%20kitten%20napping%20in%20the%20sun&mode=semantic",
        "q=bill%20from%20the%20plumber&mode=semantic",
        "q=kitten%20napping",
        "q=what%20is%20for%20dinner",
        "q=animals&mode=semantic&tags_any=pets",
        "q=animals&tags_any=pets",
        "q=trains&mode=semantic&k=3",
    ];
    let mut indexed = Vec::new();
    for query in queries {
        indexed.push(ranking(&stack, "alice", query).await);
    }
    let bob_indexed = ranking(&stack, "bob", queries[0]).await;
    assert_eq!(bob_indexed.first().map(|h| h.0), Some(bobs));

    let held = hold_pending(&stack, "alice").await;
    for (query, before) in queries.iter().zip(&indexed) {
        let pending = ranking(&stack, "alice", query).await;
        assert_eq!(pending.len(), before.len(), "{query}");
        for ((id, score), (was_id, was_score)) in pending.iter().zip(before) {
            assert_eq!(id, was_id, "{query}: {pending:?} against {before:?}");
            assert!(
                (score - was_score).abs() < 1e-6,
                "{query}: {score} against {was_score}"
            );
        }
    }
    // The filters hold on the pending leg: only the tagged memories.
    let pets: Vec<Uuid> = indexed[4].iter().map(|h| h.0).collect();
    assert_eq!(pets.len(), 2, "{pets:?}");
    assert!(pets.contains(&ids[0]) && pets.contains(&ids[4]));
    // Alice's pending vectors are hers only.
    assert_eq!(ranking(&stack, "bob", queries[0]).await, bob_indexed);
    held.rollback().await.unwrap();

    // Released, the indexer puts them back into the index.
    stack
        .eventually("alice's vectors indexed again", || async {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM memories WHERE pending_embedding IS NOT NULL",
            )
            .fetch_one(&stack.read_pool)
            .await
            .unwrap();
            pending == 0
        })
        .await;
    assert_eq!(ranking(&stack, "alice", queries[0]).await, indexed[0]);
}
