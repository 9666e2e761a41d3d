use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::process::{Command, Stdio};
use test_kit::stack::{Options, spawn_projector_stack};
use tokio::time::Instant;
use uuid::Uuid;

/// 250 memories in 10 sessions, 20 events each: 5,000 events.
const MEMORIES: usize = 250;
const EVENTS_PER_MEMORY: usize = 20;

fn spawn_projector(vars: &[(String, String)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_projector"))
        .arg("serve")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the projector binary starts")
}

/// The projector process, killed when dropped: a failing assertion unwinds
/// through here, and an orphaned projector would go on running, holding the
/// test run's stderr open.
struct Projector(Option<std::process::Child>);

impl Projector {
    fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("a running projector")
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn a_projector_killed_repeatedly_while_5000_events_flow_ends_equal_to_the_fold() {
    let mut stack = spawn_projector_stack(Options {
        relay: true,
        projector: false,
    })
    .await;
    // The projector declares its queues; events published before they exist
    // would be routed nowhere.
    let mut child = Projector(Some(spawn_projector(&stack.projector_vars)));
    stack.wait_for_queues().await;
    let mut sessions = Vec::new();
    for i in 0..10 {
        sessions.push(stack.start_session("alice", &format!("session {i}")).await);
    }

    let writer = {
        let stack = &stack;
        let sessions = sessions.clone();
        async move {
            // Eight memories in flight at a time.
            futures::stream::iter(0..MEMORIES)
                .map(|i| write_one(stack, i, sessions[i % sessions.len()], &sessions))
                .buffer_unordered(8)
                .collect::<Vec<()>>()
                .await;
        }
    };
    let (read_pool, vars) = (stack.read_pool.clone(), stack.projector_vars.clone());
    let within = stack.deadline;
    let killer = {
        let child = &mut child;
        async move {
            for threshold in [300_i64, 1_500, 3_000] {
                let deadline = Instant::now() + within;
                loop {
                    let projected: i64 = sqlx::query_scalar(
                        "SELECT coalesce(sum(version), 0)::bigint FROM memories",
                    )
                    .fetch_one(&read_pool)
                    .await
                    .unwrap();
                    if projected >= threshold {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the projector stalled below {threshold} events"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                // SIGKILL: no chance to finish a batch or acknowledge anything.
                child.child().kill().unwrap();
                child.child().wait().unwrap();
                child.0 = Some(spawn_projector(&vars));
            }
        }
    };
    tokio::join!(writer, killer);
    stack.child = child.0.take();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&stack.event_pool)
        .await
        .unwrap();
    assert_eq!(total as usize, 10 + MEMORIES * EVENTS_PER_MEMORY);
    stack.wait_until_verified().await;
}

/// One memory and its 19 changes, none of which changes its text (so the
/// embedder works once per memory).
async fn write_one(stack: &test_kit::stack::Stack, i: usize, session: Uuid, sessions: &[Uuid]) {
    let id = stack
        .capture(
            "alice",
            json!({"content": format!("memory number {i}"), "session_id": session}),
        )
        .await;
    let path = format!("/v1/memories/{id}");
    for step in 1..EVENTS_PER_MEMORY {
        let (method, suffix, body) = match step % 4 {
            0 => (Method::POST, "/tags", json!({"tags": [format!("t{step}")]})),
            1 => (
                Method::PUT,
                "/metadata",
                json!({"metadata": {"step": step}}),
            ),
            2 => (
                Method::POST,
                "/move",
                json!({"session_id": sessions[(i + step) % sessions.len()]}),
            ),
            _ => (Method::POST, "/tags", json!({"tags": [format!("u{step}")]})),
        };
        stack
            .ok(method, &format!("{path}{suffix}"), "alice", Some(body))
            .await;
    }
}
