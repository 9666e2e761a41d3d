use crate::helpers::{Options, spawn_stack};
use reqwest::Method;
use serde_json::json;

/// `rabbitmqctl` (root, or `SB_TEST_RABBITMQCTL`), off the async threads.
async fn rabbitmqctl(args: &[&str]) -> String {
    let program =
        std::env::var("SB_TEST_RABBITMQCTL").unwrap_or_else(|_| "/usr/sbin/rabbitmqctl".to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("{program} runs (as root, or set SB_TEST_RABBITMQCTL): {e}")
            });
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// The broker pids of the connections whose client-provided name holds `needle`.
async fn connections(needle: &str) -> Vec<String> {
    rabbitmqctl(&[
        "list_connections",
        "--no-table-headers",
        "-q",
        "pid",
        "client_properties",
    ])
    .await
    .lines()
    .filter(|line| line.contains(needle))
    .filter_map(|line| line.split('\t').next())
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn relay_and_projector_recover_on_their_own_when_the_broker_cuts_their_connections() {
    let stack = spawn_stack(Options::default()).await;
    let needle = format!("sbt_{}", stack.tag);
    stack
        .eventually("the relay and both consumers are connected", || async {
            connections(&needle).await.len() >= 3
        })
        .await;

    let writer = {
        let stack = &stack;
        async move {
            for i in 0..120 {
                let id = stack
                    .capture("alice", json!({"content": format!("flowing {i}")}))
                    .await;
                stack
                    .ok(
                        Method::POST,
                        &format!("/v1/memories/{id}/tags"),
                        "alice",
                        Some(json!({"tags": ["t"]})),
                    )
                    .await;
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
            let pids = connections(&needle).await;
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
            let now = connections(&needle).await;
            now.len() >= 3 && now.iter().all(|pid| !cut.contains(pid))
        })
        .await;
    // And the new connections carry traffic end to end.
    stack
        .capture("alice", json!({"content": "after the reconnect"}))
        .await;
    stack.wait_until_verified().await;
}
