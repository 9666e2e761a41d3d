//! Rate limits: per user after authentication, per client address before it.
//! Every limit here refills one token an hour, so a bucket the test empties
//! stays empty for the test's whole run, however slow the machine: no
//! timing is asserted and nothing sleeps.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;
use test_kit::command_app::{TestApp, spawn_app_with};
use test_kit::http::{Answer, token_for};

/// One token an hour.
const HOURLY: &str = "0.000277778";

/// An API key of the right shape that is in no database: only a lookup can
/// tell it is bad.
const UNKNOWN_KEY: &str =
    "sbk_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Asserts a 429 `rate_limited` problem whose `Retry-After` is whole
/// seconds within the hour the bucket takes to give a token back.
fn assert_rate_limited(answer: &Answer) {
    answer.assert_problem(429, "rate_limited");
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
}

/// A capture: the request every test here repeats.
fn capture(request: RequestBuilder) -> RequestBuilder {
    request.json(&json!({"content": "a note"}))
}

/// A capture with no credentials, or with `token`, optionally from behind a
/// proxy that says the client is `forwarded_for`.
fn unauthenticated(
    app: &TestApp,
    token: Option<&str>,
    forwarded_for: Option<&str>,
) -> RequestBuilder {
    let mut request = app.client.post(format!("{}/v1/memories", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    capture(request)
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_with_retry_after_and_another_user_does_not() {
    let app = spawn_app_with(&[
        ("SB_RATE_LIMIT_USER_PER_SECOND", HOURLY),
        ("SB_RATE_LIMIT_USER_BURST", "2"),
    ])
    .await;
    for _ in 0..2 {
        let answer = app
            .send(capture(app.request(Method::POST, "/v1/memories", "alice")))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    }
    let refused = app
        .send(capture(app.request(Method::POST, "/v1/memories", "alice")))
        .await;
    assert_rate_limited(&refused);
    assert_eq!(
        app.event_count().await,
        2,
        "a refused command writes nothing"
    );

    // The limit is the user's, whatever the credential: an API key of hers
    // draws on the same empty bucket.
    let (_, key) = app.api_key("alice").await;
    let with_key = app
        .send(capture(unauthenticated(&app, Some(&key), None)))
        .await;
    assert_rate_limited(&with_key);

    // Another user, from the same address, has a bucket of his own.
    let bob = app
        .send(capture(app.request(Method::POST, "/v1/memories", "bob")))
        .await;
    assert_eq!(bob.status, StatusCode::CREATED, "{:?}", bob.body);

    // Health and metrics are never limited, even for alice's token.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let answer = app
            .send(
                app.client
                    .get(format!("{}{path}", app.address))
                    .bearer_auth(token_for("alice")),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {:?}", answer.body);
    }
}

#[tokio::test]
async fn unauthenticated_requests_are_limited_by_address_before_any_database_lookup() {
    let app = spawn_app_with(&[
        ("SB_RATE_LIMIT_IP_PER_SECOND", HOURLY),
        ("SB_RATE_LIMIT_IP_BURST", "3"),
    ])
    .await;
    // With the pool closed, any request that reaches the database answers
    // 503: a 429 where a lookup would be due shows that none was made.
    app.service_pool.close().await;

    let none = app.send(unauthenticated(&app, None, None)).await;
    none.assert_problem(401, "unauthorized");
    let bad_jwt = app
        .send(unauthenticated(&app, Some("not-a-jwt"), None))
        .await;
    bad_jwt.assert_problem(401, "unauthorized");
    // The last token: this key is looked up, and the closed pool shows it.
    let looked_up = app
        .send(unauthenticated(&app, Some(UNKNOWN_KEY), None))
        .await;
    looked_up.assert_problem(503, "service_unavailable");

    // The bucket is empty: the same key, and no key at all, are refused
    // before authentication, so the database is not asked again.
    for token in [Some(UNKNOWN_KEY), None, Some("not-a-jwt")] {
        let refused = app.send(unauthenticated(&app, token, None)).await;
        assert_rate_limited(&refused);
    }

    let live = app
        .send(app.client.get(format!("{}/health/live", app.address)))
        .await;
    assert_eq!(live.status, StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sends_it() {
    let limits = [
        ("SB_RATE_LIMIT_IP_PER_SECOND", HOURLY),
        ("SB_RATE_LIMIT_IP_BURST", "1"),
    ];

    // The test client connects from 127.0.0.1: here, a trusted proxy.
    let behind_proxy =
        spawn_app_with(&[limits[0], limits[1], ("SB_TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let send = |forwarded_for: &'static str| {
        behind_proxy.send(unauthenticated(&behind_proxy, None, Some(forwarded_for)))
    };
    send("203.0.113.7")
        .await
        .assert_problem(401, "unauthorized");
    assert_rate_limited(&send("203.0.113.7").await);
    // Another client behind the same proxy has its own bucket.
    send("203.0.113.8")
        .await
        .assert_problem(401, "unauthorized");
    // A client cannot escape its bucket by writing an address of its own
    // in front of the one the proxy appended.
    assert_rate_limited(&send("198.51.100.1, 203.0.113.7").await);
    // The proxy itself, with no header, is one more client.
    behind_proxy
        .send(unauthenticated(&behind_proxy, None, None))
        .await
        .assert_problem(401, "unauthorized");

    // With no trusted proxy, the header is the client's word and counts for
    // nothing: every request is 127.0.0.1's.
    let direct = spawn_app_with(&limits).await;
    let answer = direct
        .send(unauthenticated(&direct, None, Some("203.0.113.7")))
        .await;
    answer.assert_problem(401, "unauthorized");
    let answer = direct
        .send(unauthenticated(&direct, None, Some("203.0.113.8")))
        .await;
    assert_rate_limited(&answer);
}
