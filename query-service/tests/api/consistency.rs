use crate::helpers::{spawn_stack, spawn_stack_with};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_read_with_the_returned_version_reflects_its_write_200_times_in_a_row() {
    let stack = spawn_stack().await;
    let mut id: Option<uuid::Uuid> = None;
    for i in 0..200 {
        let content = format!("revision {i}");
        let (memory, version) = match id {
            // Every tenth write starts a new memory, the rest revise it.
            Some(memory) if i % 10 != 0 => {
                let version = stack
                    .ok(
                        Method::PATCH,
                        &format!("/v1/memories/{memory}"),
                        "alice",
                        Some(json!({"content": content})),
                    )
                    .await;
                (memory, version)
            }
            _ => {
                let (status, body) = stack
                    .command(
                        Method::POST,
                        "/v1/memories",
                        "alice",
                        Some(json!({"content": content})),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED);
                (
                    body["id"].as_str().unwrap().parse().unwrap(),
                    body["version"].as_u64().unwrap(),
                )
            }
        };
        id = Some(memory);
        let read = stack
            .get_ok(
                &format!("/v1/memories/{memory}?min_version={version}"),
                "alice",
            )
            .await;
        assert_eq!(read["content"], content, "write {i}");
        assert_eq!(read["version"], version, "write {i}");
    }

    // Sessions too.
    let (_, body) = stack
        .command(
            Method::POST,
            "/v1/sessions",
            "alice",
            Some(json!({"title": "one"})),
        )
        .await;
    let session = body["id"].as_str().unwrap();
    let version = stack
        .ok(
            Method::PATCH,
            &format!("/v1/sessions/{session}"),
            "alice",
            Some(json!({"title": "two"})),
        )
        .await;
    let read = stack
        .get_ok(
            &format!("/v1/sessions/{session}?min_version={version}"),
            "alice",
        )
        .await;
    assert_eq!(read["title"], "two");
}

#[tokio::test]
async fn a_version_the_projection_does_not_reach_in_time_is_a_plain_503() {
    let stack = spawn_stack_with(&[("SB_QUERY_CONSISTENCY_TIMEOUT_MS", "300")]).await;
    let id = stack
        .capture("alice", json!({"content": "only one version"}))
        .await;
    stack
        .get_ok(&format!("/v1/memories/{id}?min_version=1"), "alice")
        .await;
    for path in [
        format!("/v1/memories/{id}?min_version=7"),
        format!("/v1/memories/{}?min_version=1", uuid::Uuid::now_v7()),
    ] {
        let response = stack
            .client
            .get(format!("{}{path}", stack.query))
            .bearer_auth(stack.token("alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "not_yet_consistent", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("version"),
            "{body}"
        );
    }
    // Without min_version the same read answers at once with what it has.
    let read = stack.get_ok(&format!("/v1/memories/{id}"), "alice").await;
    assert_eq!(read["version"], 1);
}
