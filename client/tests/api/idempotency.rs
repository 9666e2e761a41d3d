//! A retry after a lost answer appends nothing: the client sends the same
//! `Idempotency-Key` again and the command service replays its first answer.
//! A real HTTP proxy in front of the command service forwards the first
//! create and then drops the service's answer, answering 503 instead, as a
//! load balancer whose upstream connection broke after the write would.

use std::sync::{Arc, Mutex};

use crate::client_for;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use second_brain_client::{Client, NewMemory, RetryPolicy};
use test_kit::stack::spawn_query_stack;

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// The `Idempotency-Key` of every request forwarded, in order.
    keys: Mutex<Vec<String>>,
    /// How many answers are still to be dropped.
    drop_answers: Mutex<usize>,
}

async fn forward(
    request: HttpRequest,
    body: web::Bytes,
    proxy: web::Data<Arc<Proxy>>,
) -> HttpResponse {
    let url = format!("{}{}", proxy.upstream, request.uri());
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes()).unwrap();
    let mut upstream = proxy.http.request(method, url).body(body.to_vec());
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
    ] {
        if let Some(value) = request.headers().get(name) {
            upstream = upstream.header(name, value.to_str().unwrap());
        }
    }
    if let Some(key) = request.headers().get("idempotency-key") {
        proxy
            .keys
            .lock()
            .unwrap()
            .push(key.to_str().unwrap().to_owned());
    }
    let answer = upstream.send().await.unwrap();
    let status = answer.status().as_u16();
    let headers: Vec<_> = ["content-type", "idempotent-replayed"]
        .into_iter()
        .filter_map(|name| Some((name, answer.headers().get(name)?.to_str().ok()?.to_owned())))
        .collect();
    let bytes = answer.bytes().await.unwrap();
    {
        let mut to_drop = proxy.drop_answers.lock().unwrap();
        if *to_drop > 0 {
            *to_drop -= 1;
            return HttpResponse::ServiceUnavailable()
                .insert_header(("retry-after", "0"))
                .content_type("application/problem+json")
                .body(r#"{"status":503,"code":"upstream_lost","title":"The upstream answer was lost"}"#);
        }
    }
    let mut reply = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    for header in headers {
        reply.insert_header(header);
    }
    reply.body(bytes)
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_reuses_its_key_and_appends_nothing() {
    let stack = spawn_query_stack().await;
    let proxy = Arc::new(Proxy {
        upstream: stack.command.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        keys: Mutex::default(),
        drop_answers: Mutex::new(1),
    });
    let data = web::Data::new(proxy.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(forward))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());

    let client = Client::builder(format!("http://127.0.0.1:{port}"), stack.query())
        .token(stack.token("client-idempotent"))
        .retry(RetryPolicy::default())
        .build()
        .unwrap();
    let note = NewMemory::new("The spare key is under the third flowerpot");
    let written = client.create_memory(&note).await.unwrap();

    let keys = proxy.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2, "one try and one retry: {keys:?}");
    assert_eq!(keys[0], keys[1], "the retry carries the first try's key");
    let memories: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Memory'",
    )
    .fetch_one(&stack.event_pool)
    .await
    .unwrap();
    assert_eq!(memories, 1, "the retry appended a second memory");
    assert!(
        written.replayed,
        "the retry's answer is the first one, replayed"
    );
    let memory = client
        .get_memory(written.id, Some(written.version))
        .await
        .unwrap();
    assert_eq!(memory.facts.content, note.content);

    // The same request again is another logical call: a new key, a new memory.
    let again = client.create_memory(&note).await.unwrap();
    assert_ne!(again.id, written.id);
    assert!(!again.replayed);
    let keys = proxy.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert_ne!(keys[2], keys[0]);
}

/// A key of the caller's: the same key and memory answer the first result,
/// however often they are sent (what `sb import` relies on).
#[tokio::test]
async fn a_key_of_the_callers_answers_its_first_result_every_time() {
    let stack = spawn_query_stack().await;
    let client = client_for(&stack, "alice", RetryPolicy::none());
    let note = NewMemory::new("imported once");
    let first = client
        .create_memory_with_key(&note, "import-1")
        .await
        .unwrap();
    assert!(!first.replayed);
    let second = client
        .create_memory_with_key(&note, "import-1")
        .await
        .unwrap();
    assert_eq!((second.id, second.version), (first.id, first.version));
    assert!(second.replayed);
    let other = client
        .create_memory_with_key(&NewMemory::new("something else"), "import-1")
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some("idempotency_key_reused"), "{other}");
    // Keys are per user: Bob's same key is Bob's own first call.
    let bob = client_for(&stack, "bob", RetryPolicy::none());
    let bobs = bob.create_memory_with_key(&note, "import-1").await.unwrap();
    assert!(!bobs.replayed);
    assert_ne!(bobs.id, first.id);
}
