//! The query-service serves its operational endpoints against a real Postgres.

#![allow(clippy::unwrap_used)]

use query_service::settings::Settings;
use query_service::startup::Application;

fn read_database_url() -> String {
    // The admin database stands in for the read model until it has tables.
    std::env::var("SB_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

async fn spawn(url: &str) -> String {
    let settings: Settings = service_kit::settings::from_vars([
        ("SB_READ_DATABASE_URL".to_owned(), url.to_owned()),
        ("SB_QUERY_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ])
    .unwrap();
    let app = Application::build(&settings).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    address
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let address = spawn(&read_database_url()).await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = reqwest::get(format!("{address}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let missing = reqwest::get(format!("{address}/nothing")).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn readiness_fails_while_the_read_database_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = spawn(&format!("postgres://postgres@127.0.0.1:{port}/nowhere")).await;
    let live = reqwest::get(format!("{address}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}
