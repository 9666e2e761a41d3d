use projector::startup::Application;
use test_kit::embedder::openai_embedder;
use test_kit::process::assert_healthcheck_subcommand;
use test_kit::stack::{Options, spawn_projector_stack};

#[tokio::test]
async fn the_projector_serves_health_and_metrics() {
    let stack = spawn_projector_stack(Options::default()).await;
    let address = format!("http://127.0.0.1:{}", stack.projector_port.unwrap());
    for path in ["/health/live", "/health/ready"] {
        let response = reqwest::get(format!("{address}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    stack
        .capture("alice", serde_json::json!({"content": "counted"}))
        .await;
    stack.wait_until_verified().await;
    let metrics = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("events_projected_total{"), "{metrics}");
    assert!(metrics.contains("projection_lag_seconds{"), "{metrics}");
}

#[tokio::test]
async fn a_projector_whose_model_does_not_match_the_read_model_refuses_to_start() {
    let stack = spawn_projector_stack(Options::default()).await;
    let error = Application::build(&stack.settings(), openai_embedder(8).await)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("dimension 384"), "{error}");
    assert!(error.contains("rebuild-projections"), "{error}");
}

#[tokio::test]
async fn the_healthcheck_subcommand_passes_against_a_live_projector_and_fails_against_a_dead_one() {
    let stack = spawn_projector_stack(Options::default()).await;
    let port = stack.projector_port.unwrap().to_string();
    assert_healthcheck_subcommand(
        env!("CARGO_BIN_EXE_projector"),
        "SB_PROJECTOR_HTTP_ADDR",
        &port,
    )
    .await;
}
