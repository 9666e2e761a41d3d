//! The command service's settings, from `SB_*` environment variables.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use service_kit::rate_limit::{self, Rate, RateLimitConfig};
use service_kit::settings::{self, LogFormat, SettingsError};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `SB_COMMAND_HTTP_ADDR`: where the HTTP API listens.
    #[serde(default = "default_http_addr")]
    pub command_http_addr: SocketAddr,
    /// `SB_EVENT_STORE_URL`: the event-store database (secret: it may hold a password).
    pub event_store_url: SecretString,
    /// `SB_EVENT_STORE_MAX_CONNECTIONS`: pool size towards the event store.
    #[serde(default = "default_max_connections")]
    pub event_store_max_connections: u32,
    /// `SB_JWT_SECRET`: HS256 key for bearer tokens, at least 32 bytes.
    pub jwt_secret: SecretString,
    /// `SB_LOG_FORMAT`: `json` or `pretty`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `SB_RABBITMQ_URL`: the broker the relay publishes to (secret: it holds
    /// a password); required while the relay is enabled.
    #[serde(default)]
    pub rabbitmq_url: Option<SecretString>,
    /// `SB_RABBITMQ_EXCHANGE`: the durable topic exchange events go to. It
    /// also names the relay's checkpoint and leader lock.
    #[serde(default = "event_log::broker::default_exchange")]
    pub rabbitmq_exchange: String,
    /// `SB_RELAY_ENABLED`: run the outbox relay in this process.
    #[serde(default = "default_relay_enabled")]
    pub relay_enabled: bool,
    /// `SB_RELAY_BATCH_SIZE`: events read and published per batch; two
    /// batches may await their confirms at once.
    #[serde(default = "default_relay_batch_size")]
    pub relay_batch_size: usize,
    /// `SB_RELAY_POLL_INTERVAL_MS`: how often the relay looks for events when
    /// no notification wakes it.
    #[serde(default = "default_relay_poll_interval_ms")]
    pub relay_poll_interval_ms: u64,
    /// `SB_RELAY_PARTITIONS`: split the events into this many partitions by
    /// aggregate, for as many projectors (`SB_PROJECTOR_PARTITIONS` must
    /// match); 1, the default, is no split.
    #[serde(default = "default_relay_partitions")]
    pub relay_partitions: u32,
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
}

/// Only the listen address: what `healthcheck` needs to find the service.
#[derive(Debug, Clone, Deserialize)]
pub struct ListenSettings {
    #[serde(default = "default_http_addr")]
    pub command_http_addr: SocketAddr,
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_max_connections() -> u32 {
    16
}

fn default_relay_enabled() -> bool {
    true
}

fn default_relay_batch_size() -> usize {
    256
}

/// Short, because a notification finds nothing when an older transaction
/// (in any database of the server) is still open; the next poll then
/// publishes. A poll that finds nothing is one indexed query.
fn default_relay_partitions() -> u32 {
    1
}

fn default_relay_poll_interval_ms() -> u64 {
    200
}

/// The largest relay batch: RabbitMQ keeps every unconfirmed message of a
/// channel in memory, and a bigger round only delays the checkpoint.
const MAX_RELAY_BATCH_SIZE: usize = 10_000;

impl Settings {
    /// Reads and validates the settings; the service refuses to start otherwise.
    pub fn from_env() -> Result<Self, SettingsError> {
        let settings: Self = settings::from_env()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        settings::require_min_len("JWT_SECRET", &self.jwt_secret, 32)?;
        if self.event_store_max_connections == 0 {
            return Err(SettingsError::Invalid {
                name: "EVENT_STORE_MAX_CONNECTIONS",
                reason: "must be at least 1".to_owned(),
            });
        }
        self.rate_limits()?;
        self.validate_relay()
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

    fn validate_relay(&self) -> Result<(), SettingsError> {
        if !self.relay_enabled {
            return Ok(());
        }
        let invalid = |name, reason: &str| {
            Err(SettingsError::Invalid {
                name,
                reason: reason.to_owned(),
            })
        };
        match &self.rabbitmq_url {
            None => return invalid("RABBITMQ_URL", "is required while SB_RELAY_ENABLED is true"),
            Some(url) => {
                let url = url.expose_secret();
                if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                    // The value may hold a password: never echo it.
                    return invalid("RABBITMQ_URL", "must be an amqp:// or amqps:// URL");
                }
            }
        }
        if !event_log::broker::is_valid_exchange(&self.rabbitmq_exchange) {
            return invalid("RABBITMQ_EXCHANGE", event_log::broker::EXCHANGE_RULE);
        }
        if !(1..=MAX_RELAY_BATCH_SIZE).contains(&self.relay_batch_size) {
            return invalid("RELAY_BATCH_SIZE", "must be between 1 and 10000");
        }
        if !(10..=3_600_000).contains(&self.relay_poll_interval_ms) {
            return invalid("RELAY_POLL_INTERVAL_MS", "must be between 10 and 3600000");
        }
        if !(1..=1024).contains(&self.relay_partitions) {
            return invalid("RELAY_PARTITIONS", "must be between 1 and 1024");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut vars = vec![
            ("SB_EVENT_STORE_URL", "postgres://localhost/events"),
            (
                "SB_JWT_SECRET",
                "a-test-secret-that-is-long-enough-for-hs256",
            ),
        ];
        vars.extend_from_slice(extra);
        let settings: Settings =
            settings::from_vars(vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())))?;
        settings.validate()?;
        Ok(settings)
    }

    fn rejected(extra: &[(&str, &str)]) -> String {
        match settings(extra) {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_relay_is_on_by_default_and_needs_a_broker_url() {
        assert!(rejected(&[]).contains("SB_RABBITMQ_URL"));
        let ok = settings(&[("SB_RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2f")])
            .expect("valid");
        assert!(ok.relay_enabled);
        assert_eq!(ok.rabbitmq_exchange, "second_brain.events");
        assert_eq!(ok.relay_batch_size, 256);
        assert_eq!(ok.relay_poll_interval_ms, 200);
    }

    #[test]
    fn rate_limits_are_on_by_default_and_bad_ones_are_rejected() {
        let off = ("SB_RELAY_ENABLED", "false");
        let ok = settings(&[off]).expect("valid");
        assert_eq!(ok.rate_limit_user_per_second, 50.0);
        assert_eq!(ok.rate_limit_user_burst, 200);
        assert_eq!(ok.rate_limit_ip_per_second, 100.0);
        assert_eq!(ok.rate_limit_ip_burst, 400);
        assert!(ok.trusted_proxies.is_empty());
        // A rate of 0 is off, whatever the burst.
        settings(&[
            off,
            ("SB_RATE_LIMIT_USER_PER_SECOND", "0"),
            ("SB_RATE_LIMIT_USER_BURST", "0"),
        ])
        .expect("valid");
        settings(&[off, ("SB_TRUSTED_PROXIES", "10.0.0.0/8, ::1")]).expect("valid");
        assert!(
            rejected(&[off, ("SB_RATE_LIMIT_USER_BURST", "0")])
                .contains("SB_RATE_LIMIT_USER_BURST")
        );
        assert!(
            rejected(&[off, ("SB_RATE_LIMIT_IP_PER_SECOND", "-1")])
                .contains("SB_RATE_LIMIT_IP_PER_SECOND")
        );
        assert!(rejected(&[off, ("SB_TRUSTED_PROXIES", "proxy")]).contains("SB_TRUSTED_PROXIES"));
    }

    #[test]
    fn a_disabled_relay_needs_nothing() {
        let ok = settings(&[("SB_RELAY_ENABLED", "false")]).expect("valid");
        assert!(!ok.relay_enabled);
        assert!(ok.rabbitmq_url.is_none());
    }

    #[test]
    fn bad_relay_settings_are_rejected_without_echoing_the_url() {
        let url = ("SB_RABBITMQ_URL", "amqp://localhost");
        let error = rejected(&[("SB_RABBITMQ_URL", "http://user:hunter2@localhost")]);
        assert!(error.contains("SB_RABBITMQ_URL") && !error.contains("hunter2"));
        assert!(rejected(&[url, ("SB_RELAY_BATCH_SIZE", "0")]).contains("SB_RELAY_BATCH_SIZE"));
        assert!(rejected(&[url, ("SB_RELAY_BATCH_SIZE", "20000")]).contains("BATCH_SIZE"));
        assert!(rejected(&[url, ("SB_RELAY_POLL_INTERVAL_MS", "1")]).contains("POLL_INTERVAL"));
        assert!(rejected(&[url, ("SB_RABBITMQ_EXCHANGE", "amq.topic")]).contains("EXCHANGE"));
        assert!(rejected(&[url, ("SB_RABBITMQ_EXCHANGE", "a b")]).contains("EXCHANGE"));
    }
}
