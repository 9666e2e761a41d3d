//! Redis for a service: the shared reconnecting connection, and its
//! readiness check.

use crate::http::ReadinessCheck;
use anyhow::Context;
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};

/// Connects to `SB_REDIS_URL`; the manager reconnects by itself afterwards.
pub async fn connect(url: &SecretString) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url.expose_secret()).context("invalid SB_REDIS_URL")?;
    client
        .get_connection_manager()
        .await
        .context("connecting to Redis")
}

/// Redis answers PING.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // the connection manager has no Debug
pub struct RedisCheck(pub ConnectionManager);

impl ReadinessCheck for RedisCheck {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let mut connection = self.0.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}
