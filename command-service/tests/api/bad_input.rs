//! Malformed requests, each answered by a 4xx problem with its own code and
//! nothing written.

use crate::helpers::{Answer, spawn_app, token_for};
use reqwest::Method;
use serde_json::{Value, json};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
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
            Body::Json(json!({ "content": "x".repeat(600 * 1024) })),
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
            "content over 64 KiB",
            m,
            json!({"content": "é".repeat(32_769)}),
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
        invalid(
            "metadata over 16 KiB",
            m,
            json!({"content": "x", "metadata": {"k": "v".repeat(17_000)}}),
            "metadata_too_large",
        ),
        invalid(
            "metadata with an empty key",
            m,
            json!({"content": "x", "metadata": {"": 1}}),
            "metadata_invalid_key",
        ),
        invalid(
            "occurred_at in the future",
            m,
            json!({"content": "x", "occurred_at": "2999-01-01T00:00:00Z"}),
            "occurred_at_in_future",
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
            headers: vec![("if-match", "version-three".to_owned())],
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
            headers: vec![("idempotency-key", "k".repeat(256))],
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
            headers: vec![("idempotency-key", "has space".to_owned())],
            ..case(
                "Idempotency-Key with a space",
                Method::POST,
                m,
                Body::Json(json!({"content": "y"})),
                400,
                "invalid_idempotency_key",
            )
        },
    ];
    assert!(cases.len() >= 25);

    for case in cases {
        let mut request = app
            .client
            .request(case.method.clone(), format!("{}{}", app.address, case.path))
            .bearer_auth(token_for("alice"));
        for (name, value) in &case.headers {
            request = request.header(*name, value);
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
