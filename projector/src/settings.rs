//! Settings from `SB_*` environment variables. The embedder's settings are
//! read separately, by the `embeddings` crate's own struct.

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::settings::{self, LogFormat, SettingsError};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `SB_PROJECTOR_HTTP_ADDR`: health and metrics.
    #[serde(default = "default_http_addr")]
    pub projector_http_addr: SocketAddr,
    /// `SB_READ_DATABASE_URL`: the read-model database.
    pub read_database_url: SecretString,
    /// `SB_EVENT_STORE_URL`: the event store, read to fill gaps, rebuild,
    /// verify and retry dead letters.
    pub event_store_url: SecretString,
    /// `SB_RABBITMQ_URL`.
    pub rabbitmq_url: SecretString,
    /// `SB_RABBITMQ_EXCHANGE`: the topic exchange the relay publishes to.
    #[serde(default = "event_log::broker::default_exchange")]
    pub rabbitmq_exchange: String,
    /// `SB_PROJECTOR_QUEUE_PREFIX`: queue names are `<prefix>.<projection>`;
    /// the dead-letter exchange and queue are `<prefix>.dead_letter`.
    #[serde(default = "event_log::broker::default_queue_prefix")]
    pub projector_queue_prefix: String,
    /// `SB_REDIS_URL`.
    pub redis_url: SecretString,
    /// `SB_REDIS_KEY_PREFIX`: every Redis key starts with it.
    #[serde(default = "default_key_prefix")]
    pub redis_key_prefix: String,
    /// `SB_PROJECTOR_PREFETCH`: unacknowledged deliveries per queue.
    #[serde(default = "default_prefetch")]
    pub projector_prefetch: u16,
    /// `SB_PROJECTOR_BATCH_SIZE`: deliveries applied (and embedded) together.
    #[serde(default = "default_batch_size")]
    pub projector_batch_size: usize,
    /// `SB_PROJECTOR_BATCH_WINDOW_MS`: how long a batch that is not full
    /// waits for more deliveries after its first, when no batch is in
    /// flight (while one is, the next batch gathers until it is settled).
    /// What an idle projector adds to a lone event's latency at most.
    #[serde(default = "default_batch_window_ms")]
    pub projector_batch_window_ms: u64,
    /// `SB_PROJECTOR_MAX_ATTEMPTS`: tries of one event (a database connection
    /// dropping during it included) before it is dead-lettered and its
    /// aggregate parked; an unavailable dependency is waited for and counts
    /// no try (see [`crate::broker`]).
    #[serde(default = "default_max_attempts")]
    pub projector_max_attempts: u32,
    /// `SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH`: the most messages the
    /// dead-letter queue holds; past it the queue refuses dead letters and
    /// the projection waits (see [`crate::dead_letters::queue`]).
    #[serde(default = "default_dead_letter_max_length")]
    pub projector_dead_letter_max_length: u32,
    /// `SB_PROJECTOR_PARTITIONS`: how many partitions the relay splits the
    /// events into (its `SB_RELAY_PARTITIONS`); 1, the default, is one queue
    /// per projection.
    #[serde(default = "default_partitions")]
    pub projector_partitions: u32,
    /// `SB_PROJECTOR_PARTITION`: which partition this projector consumes,
    /// 0 to partitions − 1 (in Kubernetes, the StatefulSet pod's ordinal).
    #[serde(default)]
    pub projector_partition: u32,
    /// `SB_PROJECTOR_CONTEXT_VECTORS`: whether this projector makes the
    /// context vectors hybrid search ranks by (ADR 17), while its search
    /// projection is idle; only partition 0's does. `false` leaves hybrid
    /// ranking by each memory's own vector and words, and saves the
    /// embedding of each window (about three times a turn's cost).
    #[serde(default = "default_true")]
    pub projector_context_vectors: bool,
    /// `SB_PROJECTOR_PENDING_VECTORS_MAX`: while a backlog drains (full
    /// batches), a batch leaves its new vectors out of the nearest-neighbour
    /// index, for the indexer to add once the projection is idle, as long
    /// as at most this many are pending (ADR 21). Searches compare their
    /// owner's pending vectors exactly, so this bounds what that costs.
    /// 0: every batch indexes its vectors.
    #[serde(default = "default_pending_vectors_max")]
    pub projector_pending_vectors_max: u32,
    /// `SB_LOG_FORMAT`.
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_true() -> bool {
    true
}

/// Only the listen address: what `healthcheck` needs to find the projector.
#[derive(Debug, Clone, Deserialize)]
pub struct ListenSettings {
    #[serde(default = "default_http_addr")]
    pub projector_http_addr: SocketAddr,
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8082))
}
fn default_key_prefix() -> String {
    "sb:".to_owned()
}
fn default_prefetch() -> u16 {
    256
}
fn default_batch_size() -> usize {
    64
}
fn default_batch_window_ms() -> u64 {
    5
}
pub fn default_partitions() -> u32 {
    1
}
fn default_pending_vectors_max() -> u32 {
    10_000
}
fn default_max_attempts() -> u32 {
    5
}
/// Enough for a bad hour at a busy rate; with references of about a
/// kilobyte of headers each, about 100 MB of broker storage at worst.
pub fn default_dead_letter_max_length() -> u32 {
    100_000
}

impl Settings {
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
        if self.projector_batch_size == 0 {
            return invalid("PROJECTOR_BATCH_SIZE", "must be at least 1");
        }
        if self.projector_prefetch == 0
            || usize::from(self.projector_prefetch) < self.projector_batch_size
        {
            return invalid("PROJECTOR_PREFETCH", "must be at least the batch size");
        }
        if self.projector_batch_window_ms > 1_000 {
            return invalid("PROJECTOR_BATCH_WINDOW_MS", "must be at most 1000");
        }
        if self.projector_max_attempts == 0 {
            return invalid("PROJECTOR_MAX_ATTEMPTS", "must be at least 1");
        }
        validate_dead_letter_max_length(self.projector_dead_letter_max_length)?;
        if !(1..=1024).contains(&self.projector_partitions) {
            return invalid("PROJECTOR_PARTITIONS", "must be between 1 and 1024");
        }
        if self.projector_partition >= self.projector_partitions {
            return invalid(
                "PROJECTOR_PARTITION",
                "must be below SB_PROJECTOR_PARTITIONS",
            );
        }
        Ok(())
    }
}

/// The dead-letter queue's limit: at least one message. `migrate` checks it
/// too, since it declares the queue.
pub fn validate_dead_letter_max_length(max_length: u32) -> Result<(), SettingsError> {
    if max_length == 0 {
        return Err(SettingsError::Invalid {
            name: "PROJECTOR_DEAD_LETTER_MAX_LENGTH",
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(())
}
