use serde_json::json;
use test_kit::broker::{connection_pids, rabbitmqctl};
use test_kit::stack::{Options, spawn_projector_stack};

#[tokio::test]
async fn relay_and_projector_recover_on_their_own_when_the_broker_cuts_their_connections() {
    let stack = spawn_projector_stack(Options::default()).await;
    let needle = format!("sbt_{}", stack.tag);
    stack
        .eventually("the relay and both consumers are connected", || async {
            connection_pids(&needle).await.len() >= 3
        })
        .await;

    let writer = {
        let stack = &stack;
        async move {
            for i in 0..120 {
                let id = stack.note("alice", format!("flowing {i}")).await;
                stack.add_tags("alice", id, json!(["t"])).await;
            }
        }
    };
    let cutter = {
        let stack = &stack;
        let needle = needle.clone();
        async move {
            // Cut mid-stream: once some, but not all, events are projected.
            stack
                .eventually("some events are projected", || async {
                    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
                        .fetch_one(&stack.read_pool)
                        .await
                        .unwrap();
                    rows >= 20
                })
                .await;
            let pids = connection_pids(&needle).await;
            assert!(pids.len() >= 3, "relay and consumers: {pids:?}");
            for pid in &pids {
                rabbitmqctl(&["close_connection", pid, "test: cut mid-stream"]).await;
            }
            pids
        }
    };
    let ((), cut) = tokio::join!(writer, cutter);
    stack.wait_until_verified().await;
    // They come back on new connections: each reconnects with its own backoff,
    // so one may still be waiting after the others have caught up.
    stack
        .eventually("the relay and both consumers reconnect", || async {
            let now = connection_pids(&needle).await;
            now.len() >= 3 && now.iter().all(|pid| !cut.contains(pid))
        })
        .await;
    // And the new connections carry traffic end to end.
    stack.note("alice", "after the reconnect").await;
    stack.wait_until_verified().await;
}
