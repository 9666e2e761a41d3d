//! Any OpenAI-compatible embeddings endpoint: OpenAI, Ollama, vLLM, TEI.
//!
//! `POST {endpoint}` with `{"model", "input": [...], "dimensions"?, "encoding_format": "float"}`
//! and `Authorization: Bearer <key>` when a key is set; the answer's `data[].embedding`
//! are put back in input order by their `index` and L2-normalised (not every
//! server normalises).
//!
//! Each input is first cut to `max_input_chars` characters (at a character
//! boundary), so a long memory is embedded from its beginning rather than
//! refused. Inputs are sent `max_batch` at a time. Each attempt has the configured
//! timeout. 429, 5xx and transport errors (refused, reset, timed out) are
//! retried up to `max_retries` times, waiting `Retry-After` seconds when the
//! server sends it (at most [`MAX_RETRY_AFTER`]), otherwise an exponential
//! backoff with jitter; any other 4xx fails at once, and 400, 413 and 422 say
//! the input itself is refused ([`EmbedError::rejects_input`]).
//!
//! The dimension is the configured `dimensions` when set (sent to the server and
//! checked on every answer); otherwise it is discovered once, when the embedder
//! is built, by embedding a short probe, so a server that is down at start-up
//! fails the start (after the retries) rather than the first write. Set it to
//! avoid that call, but only for servers that accept the `dimensions` field.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{EmbedError, Embedder, EmbedderConfig, Url, l2_normalise};

/// The longest `Retry-After` honoured; longer ones are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// First backoff when the server gives no `Retry-After`; doubled per attempt.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The default of `SB_OPENAI_MAX_INPUT_CHARS`: OpenAI's embedding models
/// take at most 8191 tokens per input, and one token of their tokenizers
/// covers a character or more of nearly any text (about four of English), so
/// 8191 characters fit. A text made mostly of emoji or rare symbols can still
/// exceed the limit; the provider's 400 then dead-letters that one event (lower
/// the setting and retry it). Raise it for servers with longer contexts.
pub const DEFAULT_MAX_INPUT_CHARS: usize = 8191;
/// How much of an error body goes into [`EmbedError::Http`].
const BODY_EXCERPT_CHARS: usize = 300;

/// The embeddings URL for a base URL: `/embeddings` is appended when the base
/// ends in `/v1`, `/v1/embeddings` otherwise (a trailing `/` is ignored). So
/// `https://api.openai.com/v1`, `https://api.openai.com` and
/// `http://127.0.0.1:11434` (Ollama) all work; a base with another path, such
/// as a proxy's `https://gw.example/openai/v1`, keeps it.
pub fn endpoint(base_url: &Url) -> Url {
    let mut url = base_url.clone();
    let path = url.path().trim_end_matches('/').to_owned();
    let suffix = if path.ends_with("/v1") {
        "/embeddings"
    } else {
        "/v1/embeddings"
    };
    url.set_path(&format!("{path}{suffix}"));
    url
}

/// The OpenAI-compatible embedder.
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: Url,
    model: String,
    model_id: String,
    api_key: Option<SecretString>,
    requested_dimensions: Option<usize>,
    dimension: usize,
    max_batch: usize,
    max_retries: u32,
    max_input_chars: usize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("model_id", &self.model_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("max_batch", &self.max_batch)
            .field("max_retries", &self.max_retries)
            .field("max_input_chars", &self.max_input_chars)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// The outcome of one failed attempt.
enum Failure {
    Retry {
        error: EmbedError,
        after: Option<Duration>,
    },
    Fatal(EmbedError),
}

impl OpenAiEmbedder {
    /// Builds the client; asks the server for the dimension when the config has
    /// none. `config` must be [`EmbedderConfig::OpenAi`].
    pub async fn new(config: &EmbedderConfig) -> Result<Self, EmbedError> {
        let EmbedderConfig::OpenAi {
            base_url,
            model,
            api_key,
            dimensions,
            max_batch,
            timeout,
            max_retries,
            max_input_chars,
        } = config
        else {
            return Err(EmbedError::Config {
                name: "EMBEDDING_PROVIDER",
                reason: "not an OpenAI configuration".to_owned(),
            });
        };
        let client = reqwest::Client::builder()
            .timeout(*timeout)
            .connect_timeout((*timeout).min(Duration::from_secs(10)))
            .build()
            .map_err(|e| EmbedError::Transport(format!("cannot build the HTTP client: {e}")))?;
        let mut embedder = Self {
            client,
            endpoint: endpoint(base_url),
            model: model.clone(),
            model_id: String::new(),
            api_key: api_key.clone(),
            requested_dimensions: *dimensions,
            dimension: dimensions.unwrap_or(0),
            max_batch: (*max_batch).max(1),
            max_retries: *max_retries,
            max_input_chars: (*max_input_chars).max(1),
        };
        if embedder.dimension == 0 {
            let probe = embedder
                .embed_batch(&["dimension probe".to_owned()])
                .await?;
            embedder.dimension = probe.first().map_or(0, Vec::len);
            if embedder.dimension == 0 {
                return Err(EmbedError::BadResponse(
                    "the probe's vector is empty".to_owned(),
                ));
            }
        }
        embedder.model_id = format!("openai/{model}@{}", embedder.dimension);
        Ok(embedder)
    }

    /// One batch, retried as the module docs say.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.attempt(texts).await {
                Ok(vectors) => return Ok(vectors),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry { error, .. }) if attempt > self.max_retries => {
                    return Err(EmbedError::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    });
                }
                Err(Failure::Retry { error, after }) => {
                    let wait = after.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "embedding request will be retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let body = EmbeddingsRequest {
            model: &self.model,
            input: texts,
            dimensions: self.requested_dimensions,
            encoding_format: "float",
        };
        let mut request = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let transport = |e: reqwest::Error| Failure::Retry {
            // Without the URL: it is configuration, and may carry credentials.
            error: EmbedError::Transport(e.without_url().to_string()),
            after: None,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let error = EmbedError::Http {
                status: status.as_u16(),
                body: text.chars().take(BODY_EXCERPT_CHARS).collect(),
            };
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    Failure::Retry { error, after }
                } else {
                    Failure::Fatal(error)
                },
            );
        }
        let bytes = response.bytes().await.map_err(transport)?;
        let parsed: EmbeddingsResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Fatal(EmbedError::BadResponse(e.to_string())))?;
        self.in_order(parsed, texts.len()).map_err(Failure::Fatal)
    }

    /// Puts the vectors in input order, checks them, and normalises them.
    fn in_order(
        &self,
        response: EmbeddingsResponse,
        expected: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if response.data.len() != expected {
            return Err(EmbedError::BadResponse(format!(
                "{} embeddings for {expected} inputs",
                response.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in response.data {
            let slot = out.get_mut(item.index).ok_or_else(|| {
                EmbedError::BadResponse(format!("index {} out of range", item.index))
            })?;
            if slot.is_some() {
                return Err(EmbedError::BadResponse(format!(
                    "index {} repeated",
                    item.index
                )));
            }
            let mut vector = item.embedding;
            if self.dimension != 0 && vector.len() != self.dimension {
                return Err(EmbedError::DimensionMismatch {
                    expected: self.dimension,
                    actual: vector.len(),
                });
            }
            if !l2_normalise(&mut vector) {
                return Err(EmbedError::BadResponse(format!(
                    "embedding {} is zero or not finite",
                    item.index
                )));
            }
            *slot = Some(vector);
        }
        // Every slot is filled: `expected` distinct in-range indices.
        Ok(out.into_iter().flatten().collect())
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    #[tracing::instrument(skip_all, fields(model = %self.model_id, texts = texts.len()), err)]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let texts: Vec<String> = texts
            .iter()
            .map(|text| truncate(text, self.max_input_chars).to_owned())
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.max_batch) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }
}

/// The first `max_chars` characters of `text` (all of it when shorter).
pub fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter: between half and all of
/// `INITIAL_BACKOFF * 2^(attempt-1)`, at most `MAX_BACKOFF`.
fn backoff(attempt: u32) -> Duration {
    let full = INITIAL_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_accepts_a_base_url_with_or_without_v1() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "https://api.openai.com/v1/",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "https://api.openai.com",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "http://127.0.0.1:11434/",
                "http://127.0.0.1:11434/v1/embeddings",
            ),
            (
                "https://gw.example/openai/v1",
                "https://gw.example/openai/v1/embeddings",
            ),
            (
                "https://gw.example/openai",
                "https://gw.example/openai/v1/embeddings",
            ),
        ];
        for (base, expected) in cases {
            let base = Url::parse(base).expect("valid");
            assert_eq!(endpoint(&base).as_str(), expected, "for {base}");
        }
    }

    #[test]
    fn truncation_cuts_at_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly", 7), "exactly");
        assert_eq!(truncate("abcdef", 3), "abc");
        // Multi-byte characters are counted as one each and never split.
        assert_eq!(truncate("héllo wörld", 7), "héllo w");
        assert_eq!(truncate("日本語のテキスト", 3), "日本語");
        assert_eq!(truncate("🙂🙂🙂", 2), "🙂🙂");
    }

    #[test]
    fn only_400_413_and_422_reject_the_input() {
        for status in [400, 413, 422] {
            let error = EmbedError::Http {
                status,
                body: String::new(),
            };
            assert!(error.rejects_input(), "{status}");
        }
        for status in [401, 403, 404, 408, 429, 500, 503] {
            let error = EmbedError::Http {
                status,
                body: String::new(),
            };
            assert!(!error.rejects_input(), "{status}");
        }
        assert!(!EmbedError::Transport("reset".into()).rejects_input());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let full = INITIAL_BACKOFF
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(MAX_BACKOFF);
            let wait = backoff(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "2".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, "86400".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
