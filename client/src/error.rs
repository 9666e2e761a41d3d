//! What a call can fail with: the service's `application/problem+json`
//! answer as a typed [`Problem`], or the transport.

use serde::Deserialize;
use serde_json::Value;

/// An RFC 9457 problem as the services send it; `code` is the stable part to
/// match on (`not_found`, `version_mismatch`, `rate_limited`, …).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Problem {
    /// The HTTP status (from the response, should the body leave it out).
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Field errors of a 422, as the service lists them.
    #[serde(default)]
    pub errors: Option<Value>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.code)?;
        match &self.detail {
            Some(detail) => write!(f, ": {detail}"),
            None if !self.title.is_empty() => write!(f, ": {}", self.title),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with a problem (after any retries). Boxed: a
    /// problem is large and every `Result` of the crate carries the error.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// The service could not be reached, or the connection broke.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// A success whose body is not what the API documents.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// A base URL the client cannot join a path to.
    #[error("bad base URL {0:?}")]
    BaseUrl(String),
}

impl Error {
    /// The problem's code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Problem(p) => Some(&p.code),
            _ => None,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Problem(p) => Some(p.status),
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }
}
