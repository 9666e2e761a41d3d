//! Waiting for something to become true, with a deadline: tests never sleep
//! as a means of synchronisation (STYLE.md, "Habits").

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How long any one expectation may take. Generous: the machine is shared
/// and noisy; a passing test takes far less.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `check` every `every` until it holds; fails the test, naming
/// `what`, once `within` has passed.
pub async fn eventually_every<F, Fut>(what: &str, within: Duration, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// [`eventually_every`] 50 ms.
pub async fn eventually<F, Fut>(what: &str, within: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_every(what, within, Duration::from_millis(50), check).await;
}

/// Polls `find` every `every` until it yields a value, and returns it; fails
/// the test, naming `what`, once `within` has passed.
pub async fn until_some<T, F, Fut>(what: &str, within: Duration, every: Duration, mut find: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = find().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}
