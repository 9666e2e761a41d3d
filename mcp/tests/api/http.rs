//! The HTTP edge: the `Host` check against DNS rebinding, and health.

use reqwest::StatusCode;
use serde_json::json;

use crate::spawn_mcp;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

#[tokio::test]
async fn a_request_naming_a_foreign_host_is_forbidden_and_a_loopback_one_is_answered() {
    let url = spawn_mcp("http://127.0.0.1:9", "http://127.0.0.1:9").await;
    let http = reqwest::Client::new();
    let post = |host: Option<&'static str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INITIALIZE);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let foreign = post(Some("attacker.example")).await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let local = post(None).await.unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    let body: serde_json::Value = local.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], json!("second-brain"));

    let health = http
        .get(url.replace("/mcp", "/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
