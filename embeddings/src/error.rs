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
