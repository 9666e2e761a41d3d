//! Whose call this is, and what that caller wrote last.
//!
//! Over HTTP the caller is the `Authorization: Bearer …` of the request that
//! carried the tool call (rmcp puts the request's `http::request::Parts`
//! into the call's extensions); over stdio it is the one token the server
//! was started with. Either way the token goes on to the services
//! unchanged, and they decide who it is: this server authenticates no one.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lru::LruCache;
use rmcp::model::Extensions;
use second_brain_client::Written;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Where each call's token comes from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// One user's server (stdio): this token for every call; `None` sends
    /// none, and the services answer 401.
    Fixed(Option<SecretString>),
    /// A shared server (streamable HTTP): the bearer of the HTTP request
    /// that carried the call, never anything the server holds.
    PerRequest,
}

impl Credentials {
    /// The token of the call whose extensions these are.
    pub fn token(&self, extensions: &Extensions) -> Option<SecretString> {
        match self {
            Self::Fixed(token) => token.clone(),
            Self::PerRequest => extensions.get::<Parts>().and_then(bearer),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(parts: &Parts) -> Option<SecretString> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .then(|| SecretString::from(token.to_owned()))
}

/// A caller, as the key of its last write: the token's SHA-256, so the map
/// never holds a token. Two tokens of one user are two callers, which only
/// means a recall through one does not wait for a write through the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerKey([u8; 32]);

impl CallerKey {
    pub fn of(token: &SecretString) -> Self {
        Self(Sha256::digest(token.expose_secret().as_bytes()).into())
    }
}

/// Each caller's last memory write, for the next `recall` to wait for.
/// Bounded: the least recently used caller is dropped first, and a dropped
/// caller's next recall merely searches without waiting.
#[derive(Debug)]
pub struct LastWrites {
    writes: Mutex<LruCache<CallerKey, Written>>,
}

impl LastWrites {
    /// Room for 10,000 callers: 56 bytes each plus the map's own.
    pub const DEFAULT_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).expect("not zero");

    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            writes: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn record(&self, caller: CallerKey, written: Written) {
        self.lock().put(caller, written);
    }

    pub fn last(&self, caller: CallerKey) -> Option<Written> {
        self.lock().get(&caller).copied()
    }

    /// A panic while the lock was held left at worst one entry stale, which
    /// costs a recall a wait it did not need; not a reason to stop serving.
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<CallerKey, Written>> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LastWrites {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::Request;
    use uuid::Uuid;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = Request::builder().uri("/mcp");
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn token_of(authorization: Option<&str>) -> Option<String> {
        let mut extensions = Extensions::new();
        extensions.insert(parts(authorization));
        Credentials::PerRequest
            .token(&extensions)
            .map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn the_bearer_of_the_request_is_the_token_whatever_the_scheme_case() {
        assert_eq!(token_of(Some("Bearer sbk_abc")).as_deref(), Some("sbk_abc"));
        assert_eq!(
            token_of(Some("bearer  sbk_abc ")).as_deref(),
            Some("sbk_abc")
        );
        assert_eq!(token_of(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(token_of(Some("Bearer ")), None);
        assert_eq!(token_of(None), None);
    }

    #[test]
    fn a_server_for_one_user_ignores_the_request_and_uses_its_token() {
        let mut extensions = Extensions::new();
        extensions.insert(parts(Some("Bearer someone-else")));
        let fixed = Credentials::Fixed(Some(SecretString::from("mine".to_owned())));
        assert_eq!(fixed.token(&extensions).unwrap().expose_secret(), "mine");
    }

    #[test]
    fn the_least_recently_used_caller_is_forgotten_first() {
        let writes = LastWrites::new(NonZeroUsize::new(2).unwrap());
        let key = |t: &str| CallerKey::of(&SecretString::from(t.to_owned()));
        let written = |version| Written {
            id: Uuid::nil(),
            version,
            replayed: false,
        };
        writes.record(key("a"), written(1));
        writes.record(key("b"), written(1));
        writes.record(key("a"), written(2));
        writes.record(key("c"), written(1));
        assert_eq!(writes.last(key("a")), Some(written(2)));
        assert_eq!(writes.last(key("b")), None);
        assert_eq!(writes.last(key("c")), Some(written(1)));
    }
}
