use reqwest::Method;
use serde_json::{Value, json};
use test_kit::command_app::spawn_app;

#[tokio::test]
async fn another_users_memory_or_session_is_not_found_and_untouched() {
    let app = spawn_app().await;
    let memory = app.memory("alice", "alice's secret").await;
    let session = app.session("alice", "alice's session").await;
    let bobs_session = app.session("bob", "bob's session").await;
    let before = app.event_count().await;

    let m = |suffix: &str| format!("/v1/memories/{memory}{suffix}");
    let s = |suffix: &str| format!("/v1/sessions/{session}{suffix}");
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            m(""),
            Some(json!({"content": "bob was here"})),
        ),
        (Method::DELETE, m(""), None),
        (Method::POST, m("/tags"), Some(json!({"tags": ["bob"]}))),
        (
            Method::POST,
            m("/tags/remove"),
            Some(json!({"tags": ["x"]})),
        ),
        (Method::PUT, m("/metadata"), Some(json!({"metadata": {}}))),
        (
            Method::POST,
            m("/move"),
            Some(json!({"session_id": bobs_session})),
        ),
        (Method::POST, m("/restore"), None),
        (Method::POST, m("/erase"), None),
        (Method::PATCH, s(""), Some(json!({"title": "bob's now"}))),
        (Method::POST, s("/end"), None),
        (Method::POST, s("/reopen"), None),
    ];
    for (method, path, body) in cases {
        let mut request = app.request(method.clone(), &path, "bob");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = app.send(request).await;
        answer.assert_problem(404, "not_found");
        assert!(
            !answer.body.to_string().contains("alice"),
            "{method} {path} leaks: {:?}",
            answer.body
        );
    }
    // Alice's session is no target for Bob's memories either.
    let bobs_memory = app.memory("bob", "bob's note").await;
    let before_moves = app.event_count().await;
    let answer = app
        .send(
            app.request(
                Method::POST,
                &format!("/v1/memories/{bobs_memory}/move"),
                "bob",
            )
            .json(&json!({"session_id": session})),
        )
        .await;
    answer.assert_problem(404, "session_not_found");
    let answer = app
        .capture("bob", &json!({"content": "x", "session_id": session}))
        .await;
    answer.assert_problem(404, "session_not_found");
    assert_eq!(app.event_count().await, before_moves);
    assert_eq!(before_moves, before + 1);
}
