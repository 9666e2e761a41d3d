use reqwest::{Method, StatusCode};
use serde_json::json;
use test_kit::stack::{spawn_query_stack, spawn_query_stack_with};

#[tokio::test]
async fn a_read_with_the_returned_version_reflects_its_write_200_times_in_a_row() {
    let stack = spawn_query_stack().await;
    let mut id: Option<uuid::Uuid> = None;
    for i in 0..200 {
        let content = format!("revision {i}");
        let (memory, version) = match id {
            // Every tenth write starts a new memory, the rest revise it.
            Some(memory) if i % 10 != 0 => {
                let version = stack
                    .revise("alice", memory, json!({"content": content}))
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
    let stack = spawn_query_stack_with(&[("SB_QUERY_CONSISTENCY_TIMEOUT_MS", "300")]).await;
    let id = stack.note("alice", "only one version").await;
    stack
        .get_ok(&format!("/v1/memories/{id}?min_version=1"), "alice")
        .await;
    {
        let path = format!("/v1/memories/{id}?min_version=7");
        let response = stack
            .client
            .get(format!("{}{path}", stack.query()))
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

/// `min_version` tells a stranger nothing: another user's memory or session,
/// an erased memory and an id that never existed all answer the same 404 at
/// once, while the owner of a write the projection has not reached waits
/// for it. With a 300 ms timeout, a read that waited would end as the 503
/// `not_yet_consistent` the owner's read shows, so a 404 means no wait.
#[tokio::test]
async fn min_version_answers_strangers_erased_and_unknown_ids_alike_and_only_the_owner_waits() {
    let stack = spawn_query_stack_with(&[("SB_QUERY_CONSISTENCY_TIMEOUT_MS", "300")]).await;
    let alices = stack.note("alice", "alice's note").await;
    let alices_session = stack.start_session("alice", "Alice's day").await;
    let erased = stack.note("bob", "to forget").await;
    stack.erase("bob", erased).await;
    let unprojected = stack.note("bob", "not projected yet").await;
    let unprojected_session = stack.start_session("bob", "Bob's day").await;
    stack.wait_until_verified().await;
    // Bob's latest writes as the read side holds them before the projector
    // gets to them: nowhere. No later event will bring them.
    stack.unproject("memory", unprojected).await;
    stack.unproject("session", unprojected_session).await;

    let answer = |path: String, user: &'static str| {
        let stack = &stack;
        async move {
            let response = stack
                .client
                .get(format!("{}{path}", stack.query()))
                .bearer_auth(stack.token(user))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };

    // The owner of the unprojected writes waits, and says so when time is up.
    for path in [
        format!("/v1/memories/{unprojected}?min_version=1"),
        format!("/v1/sessions/{unprojected_session}?min_version=1"),
    ] {
        let (status, body) = answer(path.clone(), "bob").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(body["code"], "not_yet_consistent", "{path}: {body}");
    }

    // Everyone else: the same 404, body for body, and no wait.
    let unknown = uuid::Uuid::now_v7();
    let cases = [
        (
            format!("/v1/memories/{alices}?min_version=1"),
            "bob",
            "another user's memory",
        ),
        (
            format!("/v1/memories/{alices}?min_version=99"),
            "bob",
            "another user's memory, far ahead",
        ),
        (
            format!("/v1/sessions/{alices_session}?min_version=1"),
            "bob",
            "another user's session",
        ),
        (
            format!("/v1/memories/{unprojected}?min_version=1"),
            "alice",
            "another user's unprojected memory",
        ),
        (
            format!("/v1/sessions/{unprojected_session}?min_version=1"),
            "alice",
            "another user's unprojected session",
        ),
        (
            format!("/v1/memories/{erased}?min_version=1"),
            "alice",
            "another user's erased memory",
        ),
        (
            format!("/v1/memories/{erased}?min_version=1"),
            "bob",
            "one's own erased memory",
        ),
        (
            format!("/v1/memories/{erased}?min_version=9"),
            "bob",
            "one's own erased memory, far ahead",
        ),
        (
            format!("/v1/memories/{unknown}?min_version=1"),
            "bob",
            "an id that never existed",
        ),
        (
            format!("/v1/sessions/{unknown}?min_version=1"),
            "bob",
            "a session id that never existed",
        ),
    ];
    let mut bodies = Vec::new();
    for (path, user, what) in cases {
        let (status, body) = answer(path, user).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert_eq!(body["code"], "not_found", "{what}: {body}");
        bodies.push((what, body));
    }
    for (what, body) in &bodies {
        assert_eq!(body, &bodies[0].1, "{what} answers unlike {}", bodies[0].0);
    }
}

/// `wait_for=<id>@<version>` on `/v1/search` and `/v1/memories`: they see the write the
/// command answered, every time, with no polling; a version the index does
/// not reach is the same 503 as a read by id; a stranger's id is nothing to
/// wait for (an answer at once, as without it).
#[tokio::test]
async fn a_search_or_list_waiting_for_a_write_finds_it_every_time_and_an_unreached_version_is_a_503()
 {
    // The service's own timeout (5 s): a loaded machine's projection may
    // take more than a short one, and only the unreachable version waits it out.
    let stack = spawn_query_stack().await;
    let search = |q: String, user: &'static str, wait: String| {
        let stack = &stack;
        async move {
            let response = stack
                .client
                // Plain words and UUIDs: nothing to escape.
                .get(format!(
                    "{}/v1/search?mode=keyword&q={q}{wait}",
                    stack.query()
                ))
                .bearer_auth(stack.token(user))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let wait = |id: &uuid::Uuid, version: u64| format!("&wait_for={id}%40{version}");
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };

    for i in 0..40 {
        let word = format!("quokka{i}");
        let (status, body) = stack
            .command(
                Method::POST,
                "/v1/memories",
                "alice",
                Some(json!({"content": format!("saw a {word} today")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
        let version = body["version"].as_u64().unwrap();
        let (status, body) = search(word.clone(), "alice", wait(&id, version)).await;
        assert_eq!(status, StatusCode::OK, "write {i}: {body}");
        // Near words of earlier rounds may rank too (the keyword leg's fuzzy
        // tier); the write itself must be there.
        assert!(ids(&body).contains(&id.to_string()), "write {i}: {body}");

        // The list of memories takes the same promise.
        let list = stack
            .get_ok(
                &format!("/v1/memories?limit=1{}", wait(&id, version)),
                "alice",
            )
            .await;
        assert_eq!(list["items"][0]["id"], id.to_string(), "write {i}: {list}");

        // A revision is searchable by its new words at once, too.
        let revised = format!("wombat{i}");
        let version = stack
            .revise("alice", id, json!({"content": format!("saw a {revised}")}))
            .await;
        let (_, body) = search(revised, "alice", wait(&id, version)).await;
        assert!(ids(&body).contains(&id.to_string()), "revision {i}: {body}");
    }

    let id = stack.note("alice", "a lonely narwhal").await;
    let (status, body) = search("narwhal".into(), "alice", wait(&id, 7)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "not_yet_consistent", "{body}");

    // Bob waiting on Alice's memory: no wait, no 503, and none of hers.
    let (status, body) = search("narwhal".into(), "bob", wait(&id, 99)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ids(&body).is_empty(), "{body}");

    // Half a write, or not a write: the parameter does not parse.
    for bad in [
        format!("{id}"),
        format!("{id}@"),
        format!("{{{id}}}@1"),
        format!("{id}@-1"),
    ] {
        let (status, body) = search("narwhal".into(), "alice", format!("&wait_for={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_query", "{bad}: {body}");
    }
}
