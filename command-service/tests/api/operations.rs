use command_service::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use test_kit::command_app::{settings_for, spawn_app};
use test_kit::http::Answer;
use test_kit::process::assert_healthcheck_subcommand;

#[tokio::test]
async fn health_openapi_and_metrics_are_served() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let answer = Answer::read(
            app.client
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
    let openapi = Answer::read(
        app.client
            .get(format!("{}/v1/openapi.json", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["paths"]["/v1/memories"]["post"].is_object());
    assert!(openapi.body["paths"]["/v1/sessions/{id}/end"]["post"].is_object());

    let id = app.memory("alice", "milk").await;
    let answer = app
        .send(
            app.request(Method::PATCH, &format!("/v1/memories/{id}"), "alice")
                .json(&json!({})),
        )
        .await;
    answer.assert_problem(422, "empty_revision");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_server_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/v1/memories/{id}""#),
        "route templates, not raw paths: {metrics}"
    );
    assert!(!metrics.contains(&id.to_string()), "no ids in labels");
    assert!(metrics.contains("commands_total{"), "{metrics}");
    assert!(metrics.contains(r#"outcome="rejected""#), "{metrics}");
    assert!(metrics.contains("events_appended_total{"), "{metrics}");
}

#[tokio::test]
async fn readiness_fails_while_postgres_is_unreachable() {
    // A port nothing listens on: bind one, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy(&url)
        .unwrap();
    let app = Application::build(&settings_for(&url), pool).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let live = client
        .get(format!("{address}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = Answer::read(
        client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    ready.assert_problem(503, "service_unavailable");
}

#[tokio::test]
async fn the_healthcheck_subcommand_passes_against_a_live_service_and_fails_against_a_dead_one() {
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    assert_healthcheck_subcommand(
        env!("CARGO_BIN_EXE_command-service"),
        "SB_COMMAND_HTTP_ADDR",
        &port,
    )
    .await;
}
