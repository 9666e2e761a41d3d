//! A real HTTP server speaking the OpenAI embeddings API, with failures to
//! order: the remote API we do not run in tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

pub const KEY: &str = "sk-test-secret-key";
pub const MODEL: &str = "fake-embed";
pub const DEFAULT_DIMENSION: usize = 8;

/// What the server does; every failure counts calls from 1.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// Answer 429 with `Retry-After: 0` to the first this many calls.
    pub rate_limited_calls: usize,
    /// Then answer 500 (no `Retry-After`) to this many.
    pub failing_calls: usize,
    /// Then answer 400 to every call.
    pub bad_request: bool,
    /// Sleep this long before answering the first call.
    pub first_call_delay: Option<Duration>,
    /// Answer with this many dimensions whatever was asked.
    pub ignore_requested_dimensions: Option<usize>,
    /// Answer this status to any request with an input containing the text,
    /// as a provider refuses an input it cannot take.
    pub refuse_inputs_containing: Option<(String, u16)>,
}

#[derive(Debug, Default)]
pub struct Recorded {
    calls: AtomicUsize,
    batch_sizes: Mutex<Vec<usize>>,
    requested_dimensions: Mutex<Vec<Option<u64>>>,
    input_chars: Mutex<Vec<usize>>,
}

#[derive(Debug)]
pub struct FakeOpenAi {
    pub base_url: String,
    recorded: Arc<Recorded>,
}

impl FakeOpenAi {
    /// Requests that reached the server, well-formed or not.
    pub fn calls(&self) -> usize {
        self.recorded.calls.load(Ordering::SeqCst)
    }

    /// Inputs per successful request, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.recorded.batch_sizes.lock().unwrap().clone()
    }

    pub fn requested_dimensions(&self) -> Vec<Option<u64>> {
        self.recorded.requested_dimensions.lock().unwrap().clone()
    }

    /// The length in characters of every input received, in order.
    pub fn input_chars(&self) -> Vec<usize> {
        self.recorded.input_chars.lock().unwrap().clone()
    }
}

struct State {
    behaviour: Behaviour,
    recorded: Arc<Recorded>,
}

/// Starts the server on a free loopback port; it lives as long as the test's
/// runtime.
pub fn spawn(behaviour: Behaviour) -> FakeOpenAi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let recorded = Arc::new(Recorded::default());
    let state = web::Data::new(State {
        behaviour,
        recorded: recorded.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/v1/embeddings", web::post().to(embeddings))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    FakeOpenAi {
        base_url: format!("http://127.0.0.1:{port}"),
        recorded,
    }
}

/// The vector the server gives `text`: deterministic and deliberately not
/// unit length, so the client must normalise.
pub fn fake_vector(text: &str, dimension: usize) -> Vec<f32> {
    // FNV-1a, then a small LCG: stable across runs and platforms.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..dimension)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 7.0
        })
        .collect()
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"message": message, "type": "test"}}))
}

async fn embeddings(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let call = state.recorded.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let behaviour = &state.behaviour;
    if let (1, Some(delay)) = (call, behaviour.first_call_delay) {
        tokio::time::sleep(delay).await;
    }

    let authorised = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {KEY}"));
    if !authorised {
        return error(StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let inputs: Option<Vec<String>> = body["input"]
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
    let (Some(inputs), Some(MODEL), Some("float")) = (
        inputs,
        body["model"].as_str(),
        body["encoding_format"].as_str(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected model, input[] and encoding_format float",
        );
    };

    if call <= behaviour.rate_limited_calls {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "0"))
            .json(json!({"error": {"message": "Rate limit reached", "type": "requests"}}));
    }
    let failing_until = behaviour
        .rate_limited_calls
        .saturating_add(behaviour.failing_calls);
    if call <= failing_until {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error");
    }
    state
        .recorded
        .input_chars
        .lock()
        .unwrap()
        .extend(inputs.iter().map(|i| i.chars().count()));
    if let Some((marker, status)) = &behaviour.refuse_inputs_containing
        && inputs.iter().any(|i| i.contains(marker.as_str()))
    {
        return error(
            StatusCode::from_u16(*status).unwrap(),
            "This input cannot be processed",
        );
    }
    if behaviour.bad_request {
        return error(
            StatusCode::BAD_REQUEST,
            "This model's maximum context length is 8192 tokens",
        );
    }

    let requested = body["dimensions"].as_u64();
    state
        .recorded
        .requested_dimensions
        .lock()
        .unwrap()
        .push(requested);
    state
        .recorded
        .batch_sizes
        .lock()
        .unwrap()
        .push(inputs.len());
    let dimension = behaviour
        .ignore_requested_dimensions
        .or(requested.map(|d| d as usize))
        .unwrap_or(DEFAULT_DIMENSION);
    // Reversed, so the client has to order by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": fake_vector(text, dimension)})
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "model": MODEL,
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }))
}
