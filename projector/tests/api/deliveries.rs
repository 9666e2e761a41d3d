use reqwest::Method;
use serde_json::json;
use test_kit::stack::{Options, spawn_projector_stack};

#[tokio::test]
async fn duplicate_and_reordered_deliveries_leave_the_read_models_equal_to_the_fold() {
    // No relay: the only deliveries are the ones this test makes.
    let stack = spawn_projector_stack(Options {
        relay: false,
        projector: true,
    })
    .await;
    let session = stack.start_session("alice", "Work").await;
    let mut memories = Vec::new();
    for i in 0..4 {
        let id = stack
            .capture(
                "alice",
                json!({"content": format!("note {i}"), "tags": ["a"]}),
            )
            .await;
        stack.add_tags("alice", id, json!(["b", "c"])).await;
        stack.move_memory("alice", id, json!(session)).await;
        stack
            .revise(
                "alice",
                id,
                json!({"content": format!("note {i}, revised")}),
            )
            .await;
        stack
            .ok(
                Method::POST,
                &format!("/v1/memories/{id}/tags/remove"),
                "alice",
                Some(json!({"tags": ["a"]})),
            )
            .await;
        memories.push(id);
    }
    stack.delete("alice", memories[1]).await;
    stack
        .ok(
            Method::POST,
            &format!("/v1/memories/{}/erase", memories[2]),
            "alice",
            None,
        )
        .await;
    stack
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/end"),
            "alice",
            None,
        )
        .await;

    let bodies = stack.stored_bodies().await;
    // Newest first (every aggregate arrives with a gap to fill), then each
    // event again in order, then every third once more.
    let mut deliveries: Vec<Vec<u8>> = bodies.iter().rev().cloned().collect();
    deliveries.extend(bodies.iter().cloned());
    deliveries.extend(bodies.iter().step_by(3).cloned());
    for projection in ["search", "documents"] {
        stack.inject(projection, &deliveries).await;
    }
    stack.wait_until_verified().await;
    for projection in ["search", "documents"] {
        let queue = stack.queue(projection);
        stack
            .eventually("the queue drains", || async {
                stack.ready_in(&queue).await == 0
            })
            .await;
    }
    assert!(stack.verify().await.is_empty());
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_later_events_are_still_projected() {
    let stack = spawn_projector_stack(Options::default()).await;
    let first = stack.note("alice", "before the poison").await;
    stack.wait_until_verified().await;

    // One body that is not an event, one event of a kind no projection knows.
    let mut unknown = stack.stored_events().await.remove(0);
    unknown.aggregate_type = "Reminder".to_owned();
    unknown.aggregate_id = uuid::Uuid::now_v7().to_string();
    let poison = vec![b"{not json".to_vec(), serde_json::to_vec(&unknown).unwrap()];
    for projection in ["search", "documents"] {
        stack.inject(projection, &poison).await;
    }
    let later = stack.note("alice", "after the poison").await;
    stack
        .eventually("the later event is projected", || async {
            stack.document(later).await.is_some() && stack.search_row(later).await.is_some()
        })
        .await;
    let dead_letters = format!("{}.dead_letter", stack.queue_prefix);
    stack
        .eventually(
            "both poison messages of both projections are dead-lettered",
            || async { stack.ready_in(&dead_letters).await == 4 },
        )
        .await;
    assert!(stack.document(first).await.is_some());
    stack.wait_until_verified().await;
}
