//! Malformed requests, each answered by a 4xx problem with its own code and
//! nothing written.

use reqwest::Method;
use serde_json::{Value, json};
use test_kit::command_app::spawn_app;
use test_kit::http::{Answer, send_raw, token_for};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    /// Raw bytes: a header value need not be ASCII on the wire.
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Body,
    status: u16,
    code: &'static str,
    /// For `validation_failed`: the code of the first field error.
    field_code: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body,
        status,
        code,
        field_code: None,
    }
}

fn invalid(name: &'static str, path: &str, body: Value, field_code: &'static str) -> Case {
    Case {
        field_code: Some(field_code),
        ..case(
            name,
            Method::POST,
            path,
            Body::Json(body),
            422,
            "validation_failed",
        )
    }
}

fn deep(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "k": inner }))
}

#[tokio::test]
async fn malformed_requests_get_a_problem_with_their_code_and_write_nothing() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let session = app.session("alice", "Standup").await;
    let before = app.event_count().await;
    let memory = format!("/v1/memories/{id}");
    let m = "/v1/memories";
    let s = "/v1/sessions";

    let cases = vec![
        case(
            "truncated JSON",
            Method::POST,
            m,
            Body::Raw("application/json", b"{\"content\":".to_vec()),
            400,
            "malformed_json",
        ),
        case(
            "not JSON",
            Method::POST,
            m,
            Body::Raw("application/json", b"hello".to_vec()),
            400,
            "malformed_json",
        ),
        case(
            "text/plain body",
            Method::POST,
            m,
            Body::Raw("text/plain", b"{\"content\":\"x\"}".to_vec()),
            415,
            "unsupported_media_type",
        ),
        case(
            "form body",
            Method::POST,
            m,
            Body::Raw("application/x-www-form-urlencoded", b"content=x".to_vec()),
            415,
            "unsupported_media_type",
        ),
        case(
            "oversized body",
            Method::POST,
            m,
            Body::Json(json!({ "content": "x".repeat(1100 * 1024) })),
            413,
            "body_too_large",
        ),
        case(
            "unknown field",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "colour": "red"})),
            422,
            "invalid_body",
        ),
        case(
            "missing content",
            Method::POST,
            m,
            Body::Json(json!({})),
            422,
            "invalid_body",
        ),
        case(
            "content of the wrong type",
            Method::POST,
            m,
            Body::Json(json!({"content": 5})),
            422,
            "invalid_body",
        ),
        case(
            "a JSON array",
            Method::POST,
            m,
            Body::Json(json!([1, 2])),
            422,
            "invalid_body",
        ),
        case(
            "tags as a string",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "tags": "a,b"})),
            422,
            "invalid_body",
        ),
        case(
            "metadata as a string",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "metadata": "x"})),
            422,
            "invalid_body",
        ),
        case(
            "occurred_at not a time",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "occurred_at": "yesterday"})),
            422,
            "invalid_body",
        ),
        case(
            "session_id not a uuid",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "session_id": "s-1"})),
            422,
            "invalid_body",
        ),
        invalid(
            "blank content",
            m,
            json!({"content": " \n "}),
            "content_empty",
        ),
        invalid(
            "content over 65,536 characters",
            m,
            json!({"content": "é".repeat(65_537)}),
            "content_too_long",
        ),
        invalid(
            "content with a control character",
            m,
            json!({"content": "ring\u{7}"}),
            "content_control_character",
        ),
        invalid(
            "title over 200 characters",
            m,
            json!({"content": "x", "title": "t".repeat(201)}),
            "title_too_long",
        ),
        invalid(
            "blank title",
            m,
            json!({"content": "x", "title": "  "}),
            "title_empty",
        ),
        invalid(
            "two-line title",
            m,
            json!({"content": "x", "title": "a\nb"}),
            "title_control_character",
        ),
        invalid(
            "33 tags",
            m,
            json!({"content": "x", "tags": (0..33).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "too_many_tags",
        ),
        invalid(
            "tag with a space",
            m,
            json!({"content": "x", "tags": ["two words"]}),
            "tag_invalid_character",
        ),
        invalid(
            "tag over 64 characters",
            m,
            json!({"content": "x", "tags": ["t".repeat(65)]}),
            "tag_too_long",
        ),
        invalid(
            "metadata nested 9 deep",
            m,
            json!({"content": "x", "metadata": deep(9)}),
            "metadata_too_deep",
        ),
        // The one limit a JSON Schema cannot state: 413, not 422.
        case(
            "metadata over 16 KiB",
            Method::POST,
            m,
            Body::Json(json!({"content": "x", "metadata": {"k": "v".repeat(17_000)}})),
            413,
            "metadata_too_large",
        ),
        invalid(
            "metadata with an empty key",
            m,
            json!({"content": "x", "metadata": {"": 1}}),
            "metadata_invalid_key",
        ),
        invalid(
            "move without session_id",
            &format!("{memory}/move"),
            json!({}),
            "session_id_required",
        ),
        invalid(
            "blank tag to add",
            &format!("{memory}/tags"),
            json!({"tags": [""]}),
            "tag_empty",
        ),
        invalid(
            "session with a blank title",
            s,
            json!({"title": ""}),
            "title_empty",
        ),
        case(
            "session with an unknown field",
            Method::POST,
            s,
            Body::Json(json!({"title": "x", "owner": "bob"})),
            422,
            "invalid_body",
        ),
        case(
            "rename with a title of the wrong type",
            Method::PATCH,
            &format!("{s}/{session}"),
            Body::Json(json!({"title": 7})),
            422,
            "invalid_body",
        ),
        case(
            "memory id not a uuid",
            Method::PATCH,
            "/v1/memories/not-a-uuid",
            Body::Json(json!({"content": "x"})),
            404,
            "invalid_id",
        ),
        case(
            "session id not a uuid",
            Method::POST,
            "/v1/sessions/12345/end",
            Body::None,
            404,
            "invalid_id",
        ),
        case(
            "unknown route",
            Method::POST,
            "/v1/notes",
            Body::Json(json!({"content": "x"})),
            404,
            "not_found",
        ),
        case(
            "unsupported method",
            Method::GET,
            m,
            Body::None,
            405,
            "method_not_allowed",
        ),
        Case {
            headers: vec![("if-match", b"version-three".to_vec())],
            ..case(
                "If-Match not a version",
                Method::PATCH,
                &memory,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_if_match",
            )
        },
        Case {
            headers: vec![("idempotency-key", "k".repeat(256).into_bytes())],
            ..case(
                "Idempotency-Key too long",
                Method::POST,
                m,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_idempotency_key",
            )
        },
        Case {
            headers: vec![("idempotency-key", b"has space".to_vec())],
            ..case(
                "Idempotency-Key with a space",
                Method::POST,
                m,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_idempotency_key",
            )
        },
        // U+0000 is valid JSON but no Postgres text or jsonb can hold it:
        // refused wherever it hides, before the store sees it.
        invalid(
            "content with a NUL",
            m,
            json!({"content": "a\u{0}b"}),
            "content_control_character",
        ),
        invalid(
            "title with a NUL",
            m,
            json!({"content": "x", "title": "a\u{0}b"}),
            "title_control_character",
        ),
        invalid(
            "tag with a NUL",
            m,
            json!({"content": "x", "tags": ["a\u{0}b"]}),
            "tag_invalid_character",
        ),
        invalid(
            "metadata key with a NUL",
            m,
            json!({"content": "x", "metadata": {"a\u{0}b": 1}}),
            "metadata_invalid_key",
        ),
        invalid(
            "nested metadata key with a NUL",
            m,
            json!({"content": "x", "metadata": {"k": [{"a\u{0}": 1}]}}),
            "metadata_invalid_key",
        ),
        invalid(
            "metadata value with a NUL",
            m,
            json!({"content": "x", "metadata": {"k": "a\u{0}b"}}),
            "metadata_invalid_value",
        ),
        invalid(
            "nested metadata value with a NUL",
            m,
            json!({"content": "x", "metadata": {"k": {"j": [1, "\u{0}"]}}}),
            "metadata_invalid_value",
        ),
        Case {
            field_code: Some("content_control_character"),
            ..case(
                "revised content with a NUL",
                Method::PATCH,
                &memory,
                Body::Json(json!({"content": "a\u{0}b"})),
                422,
                "validation_failed",
            )
        },
        Case {
            field_code: Some("title_control_character"),
            ..case(
                "revised title with a NUL",
                Method::PATCH,
                &memory,
                Body::Json(json!({"title": "a\u{0}b"})),
                422,
                "validation_failed",
            )
        },
        invalid(
            "added tag with a NUL",
            &format!("{memory}/tags"),
            json!({"tags": ["\u{0}"]}),
            "tag_invalid_character",
        ),
        invalid(
            "removed tag with a NUL",
            &format!("{memory}/tags/remove"),
            json!({"tags": ["a\u{0}"]}),
            "tag_invalid_character",
        ),
        Case {
            field_code: Some("metadata_invalid_value"),
            ..case(
                "replaced metadata with a NUL",
                Method::PUT,
                &format!("{memory}/metadata"),
                Body::Json(json!({"metadata": {"k": "\u{0}"}})),
                422,
                "validation_failed",
            )
        },
        invalid(
            "session title with a NUL",
            s,
            json!({"title": "a\u{0}b"}),
            "title_control_character",
        ),
        invalid(
            "session metadata with a NUL",
            s,
            json!({"title": "x", "metadata": {"k": "\u{0}"}}),
            "metadata_invalid_value",
        ),
        Case {
            field_code: Some("title_control_character"),
            ..case(
                "session renamed with a NUL",
                Method::PATCH,
                &format!("{s}/{session}"),
                Body::Json(json!({"title": "a\u{0}b"})),
                422,
                "validation_failed",
            )
        },
        // A lone surrogate is not text at all: JSON that does not decode.
        case(
            "content with a lone surrogate",
            Method::POST,
            m,
            Body::Raw("application/json", br#"{"content":"a\ud800b"}"#.to_vec()),
            400,
            "malformed_json",
        ),
        case(
            "metadata with a lone surrogate",
            Method::POST,
            m,
            Body::Raw(
                "application/json",
                br#"{"content":"x","metadata":{"k":"\udc00"}}"#.to_vec(),
            ),
            400,
            "malformed_json",
        ),
        // Header values that are not ASCII (obs-text on the wire).
        Case {
            headers: vec![("idempotency-key", b"key-\xe9\xff".to_vec())],
            ..case(
                "Idempotency-Key with bytes beyond ASCII",
                Method::POST,
                m,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_idempotency_key",
            )
        },
        Case {
            headers: vec![("if-match", b"\"3\xe9\"".to_vec())],
            ..case(
                "If-Match with bytes beyond ASCII",
                Method::PATCH,
                &memory,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_if_match",
            )
        },
        case(
            "memory id with a NUL",
            Method::PATCH,
            "/v1/memories/a%00b",
            Body::Json(json!({"content": "x"})),
            404,
            "invalid_id",
        ),
        // The cap counts what was sent, duplicates included.
        invalid(
            "33 copies of one tag",
            m,
            json!({"content": "x", "tags": vec!["same"; 33]}),
            "too_many_tags",
        ),
    ];
    assert!(cases.len() >= 25);

    for case in cases {
        let mut request = app
            .client
            .request(case.method.clone(), format!("{}{}", app.address, case.path))
            .bearer_auth(token_for("alice"));
        for (name, value) in &case.headers {
            request = request.header(
                *name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        request = match case.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
        };
        let answer = Answer::read(request.send().await.unwrap()).await;
        assert!(
            answer.status.is_client_error(),
            "{}: {:?}",
            case.name,
            answer.status
        );
        assert_eq!(
            answer.status.as_u16(),
            case.status,
            "{}: {:?}",
            case.name,
            answer.body
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{}",
            case.name
        );
        assert_eq!(
            answer.body["code"], case.code,
            "{}: {:?}",
            case.name, answer.body
        );
        if let Some(field_code) = case.field_code {
            assert_eq!(
                answer.body["errors"][0]["code"], field_code,
                "{}: {:?}",
                case.name, answer.body
            );
        }
    }
    assert_eq!(
        app.event_count().await,
        before,
        "no malformed request wrote an event"
    );
}

/// 80,000 tags of 7 spellings in a 400 KiB body, 50,000 different ones
/// (which used to be deduplicated pairwise before the count), or 50,000
/// NULs: refused by their count alone, with one error rather than one per
/// tag, and nothing written.
#[tokio::test]
async fn a_huge_tag_list_is_refused_by_its_count_before_any_tag_is_looked_at() {
    let app = spawn_app().await;
    let id = app.memory("alice", "milk").await;
    let before = app.event_count().await;
    let huge: Vec<String> = (0..80_000).map(|i| format!("t{}", i % 7)).collect();
    // All different: the pairwise deduplication's worst case.
    let distinct: Vec<String> = (0..50_000).map(|i| format!("t{i}")).collect();
    // Each `"\u0000",` is 9 bytes: 50,000 of them fill 440 KiB.
    let invalid: Vec<&str> = vec!["\u{0}"; 50_000];
    for (path, body) in [
        (
            "/v1/memories".to_owned(),
            json!({"content": "x", "tags": distinct}),
        ),
        (
            "/v1/memories".to_owned(),
            json!({"content": "x", "tags": huge}),
        ),
        (
            "/v1/memories".to_owned(),
            json!({"content": "x", "tags": invalid}),
        ),
        (format!("/v1/memories/{id}/tags"), json!({"tags": huge})),
        (
            format!("/v1/memories/{id}/tags/remove"),
            json!({"tags": huge}),
        ),
    ] {
        let answer = app.post_json(&path, "alice", &body).await;
        answer.assert_problem(422, "validation_failed");
        let errors = answer.body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{path}: {errors:?}");
        assert_eq!(errors[0]["code"], "too_many_tags", "{path}");
        assert_eq!(errors[0]["field"], "tags", "{path}");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");
}

/// NUL cannot travel in an HTTP/1.1 header at all: the request is refused
/// as malformed before any handler runs, and nothing is written. A request
/// id that is not plain is replaced, never stored.
#[tokio::test]
async fn a_nul_in_a_header_never_reaches_the_store_and_an_odd_request_id_is_replaced() {
    let app = spawn_app().await;
    let before = app.event_count().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    for header in [
        "Idempotency-Key",
        "If-Match",
        "X-Request-Id",
        "X-Correlation-Id",
    ] {
        let body = br#"{"content":"x"}"#;
        let mut request = format!(
            "POST /v1/memories HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            token_for("alice"),
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(header.as_bytes());
        request.extend_from_slice(b": a\0b\r\n\r\n");
        request.extend_from_slice(body);
        // A client library would refuse to send such a header.
        let response = send_raw(&address, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{header}: {response}");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");

    let answer = app
        .send(
            app.request(Method::POST, "/v1/memories", "alice")
                .header(
                    "x-request-id",
                    reqwest::header::HeaderValue::from_bytes(b"id-\xe9").unwrap(),
                )
                .json(&json!({"content": "kept"})),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 201, "{:?}", answer.body);
    let fresh = answer.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
    let stored: String =
        sqlx::query_scalar("SELECT metadata->>'request_id' FROM events WHERE aggregate_id = $1")
            .bind(answer.id().to_string())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, fresh);
}
