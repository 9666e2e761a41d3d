//! Settings from `SB_*` environment variables.

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::settings::{self, LogFormat, SettingsError};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `SB_QUERY_HTTP_ADDR`: where the HTTP endpoints listen.
    #[serde(default = "default_http_addr")]
    pub query_http_addr: SocketAddr,
    /// `SB_READ_DATABASE_URL`: the read-model database (secret: it may hold a password).
    pub read_database_url: SecretString,
    /// `SB_LOG_FORMAT`: `json` or `pretty`.
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        settings::from_env()
    }
}
