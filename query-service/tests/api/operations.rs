use query_service::settings::Settings;
use query_service::startup::Application;
use reqwest::StatusCode;
use serde_json::json;
use test_kit::db::{QUERY_READER_ROLE as READER_ROLE, database_url};
use test_kit::embedder::local_embedder;
use test_kit::http::send_raw;
use test_kit::process::assert_healthcheck_subcommand;
use test_kit::stack::spawn_query_stack;

#[tokio::test]
async fn health_openapi_and_metrics_are_served_and_errors_are_problems() {
    let stack = spawn_query_stack().await;
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/openapi.json",
    ] {
        let response = reqwest::get(format!("{}{path}", stack.query()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let document: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", stack.query()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/memories",
        "/v1/memories/{id}",
        "/v1/memories/{id}/history",
        "/v1/memories/{id}/as-of",
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/sessions/{id}/timeline",
        "/v1/sessions/{id}/history",
        "/v1/search",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    let missing = reqwest::get(format!("{}/nothing", stack.query()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    // A method the path lacks: 405, naming the ones it has.
    let wrong = stack
        .client
        .delete(format!("{}/v1/search", stack.query()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers()["allow"], "GET");

    // No credentials: 401 on every read.
    let anonymous = reqwest::get(format!("{}/v1/memories", stack.query()))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_problem_never_a_5xx() {
    let stack = spawn_query_stack().await;
    let cases = [
        "/v1/memories/not-a-uuid",
        "/v1/memories?limit=0",
        "/v1/memories?limit=201",
        "/v1/memories?limit=abc",
        "/v1/memories?cursor=garbage",
        "/v1/memories?order=sideways",
        "/v1/memories?created_after=yesterday",
        "/v1/memories?session=nope",
        "/v1/memories?tags_any=,",
        "/v1/memories?unknown=1",
        "/v1/sessions?status=paused",
        "/v1/sessions/00000000-0000-0000-0000-000000000000/timeline?cursor=x",
        "/v1/search",
        "/v1/search?q=",
        "/v1/search?q=%20%20",
        "/v1/search?q=x&k=0",
        "/v1/search?q=x&k=101",
        "/v1/search?q=x&mode=fuzzy",
        "/v1/search?q=x&explain=perhaps",
        "/v1/memories/00000000-0000-0000-0000-000000000000/as-of?version=-1",
        "/v1/memories/00000000-0000-0000-0000-000000000000/as-of?at=2026-13-01T00:00:00Z",
        "/v1/memories/00000000-0000-0000-0000-000000000000/history?limit=0",
        "/v1/memories/00000000-0000-0000-0000-000000000000/history?after=-1",
    ];
    let long = format!("/v1/search?q={}", "a".repeat(1001));
    for path in cases.iter().copied().chain([long.as_str()]) {
        let response = stack
            .client
            .get(format!("{}{path}", stack.query()))
            .bearer_auth(stack.token("alice"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["code"].is_string(), "{path}: {body}");
    }
}

/// An answer's status, code, and first field error's code.
type Expected = (u16, &'static str, Option<&'static str>);

/// U+0000 in any parameter (Postgres text cannot hold it) and tag lists over
/// the cap are a 4xx problem with their own code, never a database error.
#[tokio::test]
async fn a_nul_anywhere_in_the_query_and_a_huge_tag_list_are_refused_with_their_code() {
    let stack = spawn_query_stack().await;
    let session = stack.start_session("alice", "Standup").await;
    let id = stack
        .capture("alice", json!({"content": "x", "session_id": session}))
        .await;
    let repeated = vec!["a"; 5_000].join(",");
    let distinct = (0..33)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let invalid = |field: &'static str| (422, "validation_failed", Some(field));
    let query = (400, "invalid_query", None);
    let mut cases: Vec<(String, Expected)> = Vec::new();
    for list in ["/v1/memories?", "/v1/search?q=x&"] {
        for filter in ["tags_any", "tags_all"] {
            cases.push((
                format!("{list}{filter}=a%00b"),
                invalid("tag_invalid_character"),
            ));
            cases.push((
                format!("{list}{filter}=ok,%00"),
                invalid("tag_invalid_character"),
            ));
            cases.push((
                format!("{list}{filter}={repeated}"),
                invalid("too_many_tags"),
            ));
            cases.push((
                format!("{list}{filter}={distinct}"),
                invalid("too_many_tags"),
            ));
        }
        for filter in [
            "session",
            "created_after",
            "created_before",
            "updated_after",
            "updated_before",
        ] {
            cases.push((format!("{list}{filter}=%00"), query));
        }
        cases.push((format!("{list}a%00b=1"), query));
    }
    for mode in ["hybrid", "keyword", "semantic"] {
        cases.push((
            format!("/v1/search?mode={mode}&q=a%00b"),
            invalid("invalid_character"),
        ));
    }
    cases.extend([
        ("/v1/search?q=%00".to_owned(), invalid("invalid_character")),
        ("/v1/search?q=x&mode=%00".to_owned(), query),
        ("/v1/search?q=x&k=%00".to_owned(), query),
        (
            "/v1/memories?cursor=a%00b".to_owned(),
            invalid("invalid_cursor"),
        ),
        ("/v1/memories?order=%00".to_owned(), query),
        ("/v1/memories?include_deleted=%00".to_owned(), query),
        ("/v1/memories?limit=%00".to_owned(), query),
        (
            "/v1/sessions?cursor=%00".to_owned(),
            invalid("invalid_cursor"),
        ),
        ("/v1/sessions?status=%00".to_owned(), query),
        (
            format!("/v1/sessions/{session}/timeline?cursor=%00"),
            invalid("invalid_cursor"),
        ),
        (format!("/v1/memories/{id}?min_version=%00"), query),
        (format!("/v1/sessions/{session}?min_version=%00"), query),
        (format!("/v1/memories/{id}/history?after=%00"), query),
        (format!("/v1/memories/{id}/as-of?at=%00"), query),
        (format!("/v1/sessions/{session}/as-of?version=%00"), query),
        ("/v1/memories/a%00b".to_owned(), (404, "invalid_id", None)),
        // Not UTF-8 (a surrogate's encoding): decoded to U+FFFD, no tag
        // character.
        (
            "/v1/memories?tags_any=%ED%A0%80".to_owned(),
            invalid("tag_invalid_character"),
        ),
        (
            "/v1/sessions/%00/timeline".to_owned(),
            (404, "invalid_id", None),
        ),
    ]);
    for (path, (status, code, field_code)) in &cases {
        let response = stack
            .client
            .get(format!("{}{path}", stack.query()))
            .bearer_auth(stack.token("alice"))
            .send()
            .await
            .unwrap();
        let short: String = path.chars().take(80).collect();
        assert_eq!(response.status().as_u16(), *status, "{short}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{short}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], *code, "{short}: {body}");
        if let Some(field_code) = field_code {
            assert_eq!(body["errors"][0]["code"], *field_code, "{short}: {body}");
            assert_eq!(
                body["errors"].as_array().unwrap().len(),
                1,
                "{short}: {body}"
            );
        }
    }
    // The same filters, well-formed, are served, and so is a query with
    // bytes that are not UTF-8 (U+FFFD is text any store can hold).
    for path in [
        "/v1/memories?tags_any=a,b&tags_all=a",
        "/v1/search?q=x&tags_any=a&mode=keyword",
        "/v1/search?q=%ED%A0%80%FF&mode=keyword",
        "/v1/search?q=%ED%A0%80%FF",
    ] {
        stack.get_ok(path, "alice").await;
    }
}

/// Headers: a NUL byte is not HTTP and is refused before any handler runs;
/// a request id that is not plain is replaced by a fresh one.
#[tokio::test]
async fn a_nul_in_a_header_is_refused_and_an_odd_request_id_is_replaced() {
    let stack = spawn_query_stack().await;
    let address = stack.query().trim_start_matches("http://").to_owned();
    for header in ["X-Request-Id", "X-Correlation-Id", "Authorization"] {
        let mut request =
            format!("GET /v1/memories HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n")
                .into_bytes();
        if header != "Authorization" {
            request.extend_from_slice(
                format!("Authorization: Bearer {}\r\n", stack.token("alice")).as_bytes(),
            );
        }
        request.extend_from_slice(header.as_bytes());
        request.extend_from_slice(b": a\0b\r\n\r\n");
        // A client library would refuse to send such a header.
        let response = send_raw(&address, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{header}: {response}");
    }
    let response = stack
        .client
        .get(format!("{}/v1/memories", stack.query()))
        .bearer_auth(stack.token("alice"))
        .header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(b"id-\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fresh = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(fresh).is_ok(), "{fresh}");
}

#[tokio::test]
async fn readiness_fails_while_the_read_database_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings: Settings = service_kit::settings::from_vars([
        (
            "SB_READ_DATABASE_URL".to_owned(),
            format!("postgres://postgres@127.0.0.1:{port}/nowhere"),
        ),
        (
            "SB_EVENT_STORE_READ_URL".to_owned(),
            database_url("nowhere", Some(READER_ROLE)),
        ),
        ("SB_REDIS_URL".to_owned(), test_kit::redis::redis_url()),
        (
            "SB_JWT_SECRET".to_owned(),
            test_kit::http::JWT_SECRET.to_owned(),
        ),
        ("SB_QUERY_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ])
    .unwrap();
    let app = Application::build(&settings, local_embedder().await)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let live = reqwest::get(format!("{address}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn the_healthcheck_subcommand_passes_against_a_live_service_and_fails_against_a_dead_one() {
    let stack = spawn_query_stack().await;
    let port = stack.query().rsplit(':').next().unwrap().to_owned();
    assert_healthcheck_subcommand(
        env!("CARGO_BIN_EXE_query-service"),
        "SB_QUERY_HTTP_ADDR",
        &port,
    )
    .await;
}
