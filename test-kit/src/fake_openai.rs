//! A real HTTP server speaking the OpenAI embeddings API, standing in for a
//! remote provider we do not run (STYLE.md, "Tests"): deterministic unit
//! vectors from each text's hash, and faults on request.

use serde_json::{Value, json};
use std::sync::Arc;

/// A real HTTP server speaking the OpenAI embeddings API, standing in for a
/// remote provider: deterministic unit vectors of `dimension` from each
/// text's hash. Returns its base URL.
pub async fn fake_openai(dimension: usize) -> String {
    spawn_fake_openai(dimension, Faults::default()).await.0
}

/// What a [`spawn_fake_openai`] server gets wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer this status to any request with an input containing the text,
    /// as a provider refuses a text it cannot take.
    pub refuse: Option<(String, u16)>,
    /// Answer 503 to the first this many requests, as a provider in an outage.
    pub unavailable_first: usize,
}

/// What a [`spawn_fake_openai`] server received: every input, in order.
pub type Inputs = Arc<std::sync::Mutex<Vec<String>>>;

/// [`fake_openai`] with `faults`.
pub async fn spawn_fake_openai(dimension: usize, faults: Faults) -> (String, Inputs) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use sha2::{Digest, Sha256};
    struct Fake {
        dimension: usize,
        faults: Faults,
        inputs: Inputs,
        calls: std::sync::atomic::AtomicUsize,
    }
    async fn embeddings(body: web::Json<Value>, fake: web::Data<Fake>) -> HttpResponse {
        let inputs: Vec<String> = body["input"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        fake.inputs.lock().unwrap().extend(inputs.iter().cloned());
        let call = fake.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < fake.faults.unavailable_first {
            return HttpResponse::ServiceUnavailable().json(
                json!({"error": {"message": "The server is overloaded", "type": "server_error"}}),
            );
        }
        if let Some((marker, status)) = &fake.faults.refuse
            && inputs.iter().any(|i| i.contains(marker.as_str()))
        {
            // Echoing the input, as pydantic-based servers (vLLM, TEI's
            // OpenAI routes) do in their validation errors.
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(*status).unwrap())
                .json(json!({
                    "error": {"message": "This input cannot be processed", "type": "invalid_request_error"},
                    "detail": [{"type": "string_too_long", "loc": ["body", "input", 0], "input": inputs}],
                }));
        }
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let digest = Sha256::digest(text.as_bytes());
                let raw: Vec<f32> = (0..fake.dimension).map(|i| f32::from(digest[i % 32]) - 127.5).collect();
                let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                json!({"object": "embedding", "index": index, "embedding": raw.iter().map(|x| x / norm).collect::<Vec<_>>()})
            })
            .collect();
        HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
    }
    let received = Inputs::default();
    let fake = web::Data::new(Fake {
        dimension,
        faults,
        inputs: received.clone(),
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(fake.clone())
            .route("/v1/embeddings", web::post().to(embeddings))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), received)
}
