//! What can go wrong while loading a model or embedding.

use std::path::PathBuf;

/// Every error the embedders return. None of them carries an API key.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The settings do not describe a usable embedder.
    #[error("invalid embedding setting SB_{name}: {reason}")]
    Config { name: &'static str, reason: String },
    /// The local model's files are missing or unreadable.
    #[error("cannot load the embedding model from {path}: {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    /// The tokenizer rejected an input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The local forward pass failed.
    #[error("inference error: {0}")]
    Inference(String),
    /// The server answered with an error status (a short excerpt of its body).
    #[error("embedding endpoint answered {status}: {body}")]
    Http { status: u16, body: String },
    /// No answer: connection refused or reset, timeout, unreadable body.
    #[error("embedding endpoint unreachable: {0}")]
    Transport(String),
    /// A retryable failure lasted through every attempt.
    #[error("embedding request failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<EmbedError>,
    },
    /// The server returned vectors of another length than expected.
    #[error("embedding dimension mismatch: expected {expected}, got {actual}")]
    DimensionMismatch { expected: usize, actual: usize },
    /// The server's answer does not have the OpenAI embeddings shape.
    #[error("bad embeddings response: {0}")]
    BadResponse(String),
}

impl EmbedError {
    /// The provider refused the input itself (400 Bad Request, 413 Payload
    /// Too Large, 422 Unprocessable): sending the same text again gets the
    /// same answer, so the text, not the provider, is at fault. 401, 403 and
    /// 404 are configuration (key, permission, model or URL), 408 and 429
    /// are the provider's moment: they are not the input's fault.
    pub fn rejects_input(&self) -> bool {
        matches!(
            self,
            Self::Http {
                status: 400 | 413 | 422,
                ..
            }
        )
    }
}
