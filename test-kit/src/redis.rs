//! Redis for one test: a private key prefix under `SB_TEST_REDIS_URL`, and
//! its removal when the test ends.

use ::redis::aio::ConnectionManager;

/// The test Redis; `deploy/native/stack test` exports it.
pub fn redis_url() -> String {
    std::env::var("SB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// The key prefix of the test tagged `tag`.
pub fn key_prefix(tag: &str) -> String {
    format!("sbt:{tag}:")
}

pub async fn connection_manager() -> ConnectionManager {
    ::redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

/// Removes every key under `prefix` on `redis` (in chunks, without blocking
/// the server); errors are ignored, as a clean-up has no one to report to.
pub async fn unlink_prefix<C: ::redis::aio::ConnectionLike>(redis: &mut C, prefix: &str) {
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(redis)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = ::redis::cmd("UNLINK").arg(chunk).query_async(redis).await;
    }
}

/// [`unlink_prefix`] on a connection of its own.
pub async fn remove_prefix(prefix: &str) {
    if let Ok(client) = ::redis::Client::open(redis_url())
        && let Ok(mut redis) = client.get_multiplexed_async_connection().await
    {
        unlink_prefix(&mut redis, prefix).await;
    }
}
