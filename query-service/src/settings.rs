//! Settings from `SB_*` environment variables, validated at start-up. The
//! embedder's own variables (`SB_EMBEDDING_*`, `SB_OPENAI_*`) are read
//! separately into [`embeddings::EmbeddingSettings`], shared with the projector,
//! so queries are embedded exactly as the stored memories were.

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::rate_limit::{self, Rate, RateLimitConfig};
use service_kit::settings::{self, LogFormat, SettingsError, require_min_len};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `SB_QUERY_HTTP_ADDR`: where the HTTP API listens.
    #[serde(default = "default_http_addr")]
    pub query_http_addr: SocketAddr,
    /// `SB_READ_DATABASE_URL`: the read-model database (secret: it may hold a password).
    pub read_database_url: SecretString,
    /// `SB_EVENT_STORE_READ_URL`: the event store, as a role that may only
    /// read it (history, point-in-time state, API keys). The pool also marks
    /// every transaction read-only.
    pub event_store_read_url: SecretString,
    /// `SB_REDIS_URL`: the document store.
    pub redis_url: SecretString,
    /// `SB_REDIS_KEY_PREFIX`: the projector's key prefix.
    #[serde(default = "default_key_prefix")]
    pub redis_key_prefix: String,
    /// `SB_JWT_SECRET`: the HS256 secret bearer tokens are checked with (at least 32 bytes).
    pub jwt_secret: SecretString,
    /// `SB_QUERY_MAX_CONNECTIONS`: read-database pool size.
    #[serde(default = "default_max_connections")]
    pub query_max_connections: u32,
    /// `SB_QUERY_HNSW_EF_SEARCH`: HNSW candidate list size per vector search;
    /// higher is more exact and slower (see docs/benchmarks.md for the recall
    /// it buys).
    #[serde(default = "default_ef_search")]
    pub query_hnsw_ef_search: u32,
    /// `SB_QUERY_EMBEDDING_CACHE_SIZE`: query embeddings kept (LRU).
    #[serde(default = "default_embedding_cache_size")]
    pub query_embedding_cache_size: usize,
    /// `SB_QUERY_DOCUMENT_CACHE_SIZE`: memory documents each HTTP worker keeps
    /// in memory, invalidated by Redis as they change (0 turns the cache off;
    /// see `documents::DocumentCache`).
    #[serde(default = "default_document_cache_size")]
    pub query_document_cache_size: usize,
    /// `SB_QUERY_CONSISTENCY_TIMEOUT_MS`: how long a read that asks for a
    /// version (`min_version`) waits for the projection at most.
    #[serde(default = "default_consistency_timeout_ms")]
    pub query_consistency_timeout_ms: u64,
    /// `SB_QUERY_MIN_VERSION_WAITS_PER_USER`: reads with `min_version` one
    /// user may have waiting for the projection at once; 0 is no cap.
    #[serde(default = "default_min_version_waits_per_user")]
    pub query_min_version_waits_per_user: u32,
    /// `SB_RATE_LIMIT_USER_PER_SECOND`: requests per second each user may
    /// make, sustained; 0 turns the per-user limit off.
    #[serde(default = "rate_limit::default_user_per_second")]
    pub rate_limit_user_per_second: f64,
    /// `SB_RATE_LIMIT_USER_BURST`: requests a user may make at once.
    #[serde(default = "rate_limit::default_user_burst")]
    pub rate_limit_user_burst: u32,
    /// `SB_RATE_LIMIT_IP_PER_SECOND`: requests per second from one client
    /// address (an IPv6 /64), authenticated or not; 0 turns it off.
    #[serde(default = "rate_limit::default_ip_per_second")]
    pub rate_limit_ip_per_second: f64,
    /// `SB_RATE_LIMIT_IP_BURST`: requests one client address may make at once.
    #[serde(default = "rate_limit::default_ip_burst")]
    pub rate_limit_ip_burst: u32,
    /// `SB_TRUSTED_PROXIES`: addresses and CIDR networks of the reverse
    /// proxies whose `X-Forwarded-For` names the client; empty trusts none.
    #[serde(default)]
    pub trusted_proxies: String,
    /// `SB_LOG_FORMAT`: `json` or `pretty`.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// Only the listen address: what `healthcheck` needs to find the service.
#[derive(Debug, Clone, Deserialize)]
pub struct ListenSettings {
    #[serde(default = "default_http_addr")]
    pub query_http_addr: SocketAddr,
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_key_prefix() -> String {
    "sb:".to_owned()
}
fn default_max_connections() -> u32 {
    16
}
fn default_ef_search() -> u32 {
    // pgvector's default of 40 gave recall@10 0.88 at 100k real MiniLM
    // vectors here, 100 gave 0.94, 200 gave 0.97 (docs/benchmarks.md).
    200
}
fn default_embedding_cache_size() -> usize {
    1024
}
fn default_document_cache_size() -> usize {
    10_000
}
fn default_consistency_timeout_ms() -> u64 {
    5000
}
/// A client writes, then reads its write back: a few such reads in flight
/// are normal; hundreds, each polling for seconds, are not.
fn default_min_version_waits_per_user() -> u32 {
    8
}

impl Settings {
    /// Reads and validates the settings; the service refuses to start otherwise.
    pub fn from_env() -> Result<Self, SettingsError> {
        let settings: Self = settings::from_env()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name, reason: &str| {
            Err(SettingsError::Invalid {
                name,
                reason: reason.to_owned(),
            })
        };
        require_min_len("JWT_SECRET", &self.jwt_secret, 32)?;
        if self.query_max_connections == 0 {
            return invalid("QUERY_MAX_CONNECTIONS", "must be at least 1");
        }
        // pgvector's own bounds for hnsw.ef_search.
        if !(1..=1000).contains(&self.query_hnsw_ef_search) {
            return invalid("QUERY_HNSW_EF_SEARCH", "must be between 1 and 1000");
        }
        if self.query_embedding_cache_size == 0 {
            return invalid("QUERY_EMBEDDING_CACHE_SIZE", "must be at least 1");
        }
        if !(1..=60_000).contains(&self.query_consistency_timeout_ms) {
            return invalid(
                "QUERY_CONSISTENCY_TIMEOUT_MS",
                "must be between 1 and 60000",
            );
        }
        if self.query_min_version_waits_per_user > 10_000 {
            return invalid(
                "QUERY_MIN_VERSION_WAITS_PER_USER",
                "must be between 0 (no cap) and 10000",
            );
        }
        self.rate_limits()?;
        Ok(())
    }

    /// The validated rate limits.
    pub fn rate_limits(&self) -> Result<RateLimitConfig, SettingsError> {
        RateLimitConfig::new(
            Rate {
                per_second: self.rate_limit_user_per_second,
                burst: self.rate_limit_user_burst,
            },
            Rate {
                per_second: self.rate_limit_ip_per_second,
                burst: self.rate_limit_ip_burst,
            },
            &self.trusted_proxies,
        )
    }

    pub fn consistency_timeout(&self) -> Duration {
        Duration::from_millis(self.query_consistency_timeout_ms)
    }
}
