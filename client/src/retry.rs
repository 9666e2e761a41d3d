//! When to try a call again and how long to wait first.
//!
//! 429 and 503 carry `Retry-After` (whole seconds here; an HTTP date is
//! understood too) and are retried after it; a connection that could not be
//! made or broke before an answer is retried with exponential backoff and
//! full jitter. Every command carries an `Idempotency-Key` that stays the
//! same on its retries, so a retry after a lost answer appends nothing twice.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The first backoff without `Retry-After`; doubled per attempt.
    pub base_delay: Duration,
    /// No wait is longer, whatever `Retry-After` says: a caller that would
    /// rather wait longer raises it.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1` after a status that can be
    /// retried, or `None` when it should not be.
    pub(crate) fn after_status(
        &self,
        attempt: u32,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let stated = retry_after(headers);
        let wait = match status {
            StatusCode::TOO_MANY_REQUESTS => stated.unwrap_or_else(|| self.backoff(attempt)),
            // A 503 that says when to come back is passing (`not_yet_consistent`,
            // a dependency down); one that does not (`embedding_model_mismatch`)
            // stays until an operator acts.
            StatusCode::SERVICE_UNAVAILABLE => stated?,
            _ => return None,
        };
        Some(wait.min(self.max_delay))
    }

    /// The wait after a transport error on attempt `attempt`.
    pub(crate) fn after_transport(&self, attempt: u32, error: &reqwest::Error) -> Option<Duration> {
        // A connection not made (a service restarting) or an answer that did
        // not come in time; not a bad URL, a refused TLS handshake or a body
        // that cannot be built, which no retry mends.
        let retriable = error.is_connect() || error.is_timeout();
        (attempt < self.max_attempts && retriable).then(|| self.backoff(attempt))
    }

    /// Full jitter: uniform in [0, base × 2^(attempt-1)], capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// `Retry-After` as a wait: delta-seconds, or an HTTP date from now.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        h
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&soon)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn only_429_and_503_are_retried_and_never_past_the_last_attempt() {
        let policy = RetryPolicy::default();
        let h = headers("2");
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert_eq!(
                policy.after_status(1, status, &h),
                Some(Duration::from_secs(2))
            );
            assert_eq!(policy.after_status(policy.max_attempts, status, &h), None);
        }
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::CONFLICT,
            StatusCode::NOT_FOUND,
        ] {
            assert_eq!(policy.after_status(1, status, &h), None);
        }
        // A long Retry-After is capped, a missing one backs off within the cap.
        assert_eq!(
            policy.after_status(1, StatusCode::SERVICE_UNAVAILABLE, &headers("3600")),
            Some(policy.max_delay)
        );
        let backoff = policy
            .after_status(3, StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new())
            .unwrap();
        assert!(backoff <= policy.base_delay * 4, "{backoff:?}");
        // A 503 without Retry-After is not passing: not retried.
        assert_eq!(
            policy.after_status(1, StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None
        );
        assert_eq!(
            RetryPolicy::none().after_status(1, StatusCode::TOO_MANY_REQUESTS, &h),
            None
        );
    }
}
