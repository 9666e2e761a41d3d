//! Who is calling: a bearer JWT (HS256, `sub` is the user id, `exp` required)
//! or a per-user API key. Every handler that takes a [`Caller`] is
//! authenticated; a missing or bad credential is a 401 problem.
//!
//! API keys look like `sbk_<id>_<secret>`. Only a SHA-256 of the secret is
//! stored: the secret is 256 random bits, so a fast hash is enough (a password
//! hash exists to slow down guessing low-entropy input, which this is not).
//! The services remember verified keys and forget them on revocation (see
//! [`crate::api_keys`]), so a key costs a database lookup only the first time.

use crate::api_keys::{ApiKeyCache, Cached, spawn_revocation_listener};
use crate::pg;
use crate::problem::Problem;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lru::LruCache;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

/// The id of a user: the JWT `sub` or the owner of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a user id is 1 to 128 printable characters with no spaces")]
pub struct InvalidUserId;

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidUserId> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.chars().count() <= Self::MAX_LEN
            && value.chars().all(|c| !c.is_control() && !c.is_whitespace());
        if ok {
            Ok(Self(value))
        } else {
            Err(InvalidUserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Jwt,
    ApiKey,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub credential: CredentialKind,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

/// How many verified tokens an [`Authenticator`] remembers.
const VERIFIED_TOKENS: NonZeroUsize = NonZeroUsize::new(10_000).expect("non-zero");

/// Verifies credentials. Register it as `web::Data<Authenticator>`.
#[derive(Clone)]
pub struct Authenticator {
    decoding_key: DecodingKey,
    validation: Validation,
    api_keys: ApiKeyStore,
    /// JWTs already verified, with their subject and expiry. A token's
    /// signature and claims are checked once; each later use of the very
    /// same token (the key is the whole token, signature included) costs a
    /// lookup and an expiry check. Nothing else can change the answer before
    /// the token expires: a JWT cannot be revoked. API keys are not kept
    /// here, since they can be: their cache is [`ApiKeyStore`]'s.
    verified: Arc<Mutex<LruCache<String, (UserId, i64)>>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(jwt_secret: &SecretString, api_keys: ApiKeyStore) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Clock skew between the token issuer and this host.
        validation.leeway = 30;
        Self {
            decoding_key: DecodingKey::from_secret(jwt_secret.expose_secret().as_bytes()),
            validation,
            api_keys,
            verified: Arc::new(Mutex::new(LruCache::new(VERIFIED_TOKENS))),
        }
    }

    /// Whether a token expiring at `exp` is still accepted at `now` (both
    /// Unix seconds): the rule `jsonwebtoken` applies, leeway included.
    fn unexpired(&self, exp: i64, now: i64) -> bool {
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(i64::MAX);
        exp >= now.saturating_sub(leeway)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, LruCache<String, (UserId, i64)>> {
        // The cache holds only verified tokens; a panic elsewhere leaves it valid.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves a bearer token to the caller it names.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        if token.starts_with(API_KEY_PREFIX) {
            let user_id = self.api_keys.verify(token).await?;
            return Ok(Caller {
                user_id,
                credential: CredentialKind::ApiKey,
            });
        }
        let now = Utc::now().timestamp();
        let known = self.verified().get(token).cloned();
        if let Some((user_id, exp)) = known {
            if !self.unexpired(exp, now) {
                self.verified().pop(token);
                return Err(AuthError::Expired);
            }
            return Ok(Caller {
                user_id,
                credential: CredentialKind::Jwt,
            });
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let user_id = UserId::parse(data.claims.sub).map_err(|_| AuthError::Invalid)?;
        self.verified()
            .put(token.to_owned(), (user_id.clone(), data.claims.exp));
        Ok(Caller {
            user_id,
            credential: CredentialKind::Jwt,
        })
    }
}

/// Mints an HS256 token for `user_id`, valid until `expires_at`. Used by the
/// `token` CLI subcommand for local use, and by tests.
pub fn issue_jwt(
    secret: &SecretString,
    user_id: &UserId,
    expires_at: DateTime<Utc>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: user_id.as_str().to_owned(),
        exp: expires_at.timestamp(),
        iat: Some(Utc::now().timestamp()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer credentials")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the credentials are not valid")]
    Invalid,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("credential store unavailable")]
    Store(#[from] sqlx::Error),
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => {
                Problem::unauthorized("send Authorization: Bearer <token or API key>")
            }
            AuthError::Expired => Problem::unauthorized("the token has expired"),
            AuthError::Invalid => Problem::unauthorized("the credentials are not valid"),
            AuthError::Revoked => Problem::unauthorized("the API key has been revoked"),
            AuthError::Store(e) => {
                tracing::error!(error = %e, "credential lookup failed");
                Problem::unavailable("credentials cannot be checked right now")
            }
        }
    }
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The per-user rate limit verified this request's credential already
        // (rate_limit.rs) and left the caller here: verify once, not twice.
        if let Some(caller) = req.extensions().get::<Caller>().cloned() {
            return Box::pin(async move { Ok(caller) });
        }
        let authenticator = req.app_data::<web::Data<Authenticator>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let Some(authenticator) = authenticator else {
                tracing::error!("no Authenticator registered as app data");
                return Err(Problem::internal().into());
            };
            let token = token.ok_or(AuthError::Missing).map_err(Problem::from)?;
            authenticator
                .authenticate(&token)
                .await
                .map_err(|e| Problem::from(e).into())
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

pub const API_KEY_PREFIX: &str = "sbk_";

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// API keys in the `api_keys` table of the event-store database.
#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    pool: PgPool,
    cache: Option<Arc<ApiKeyCache>>,
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl ApiKeyStore {
    /// Looks every key up: for the command line and for tests.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, cache: None }
    }

    /// Remembers verified keys in `cache`, and starts the task that evicts
    /// them when they are revoked (see [`crate::api_keys`]). Needs a Tokio
    /// runtime.
    pub fn cached(pool: PgPool, cache: ApiKeyCache) -> Self {
        let cache = Arc::new(cache);
        // Detached: it ends by itself once the cache is dropped.
        drop(spawn_revocation_listener(&pool, &cache));
        Self {
            pool,
            cache: Some(cache),
        }
    }

    /// The cache of verified keys, when there is one.
    pub fn cache(&self) -> Option<&ApiKeyCache> {
        self.cache.as_deref()
    }

    /// Creates a key and returns it with its one-time plaintext.
    pub async fn create(
        &self,
        user_id: &UserId,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), sqlx::Error> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = hex::encode(secret);
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_keys (id, user_id, name, secret_sha256) VALUES ($1, $2, $3, $4) RETURNING created_at",
        )
        .bind(&id)
        .bind(user_id.as_str())
        .bind(name)
        .bind(secret_hash(&secret))
        .fetch_one(&self.pool)
        .await?;
        let token = format!("{API_KEY_PREFIX}{id}_{secret}");
        let info = ApiKeyInfo {
            id,
            user_id: user_id.as_str().to_owned(),
            name: name.to_owned(),
            created_at,
            revoked_at: None,
        };
        Ok((info, token))
    }

    pub async fn list(&self, user_id: Option<&UserId>) -> Result<Vec<ApiKeyInfo>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, user_id, name, created_at, revoked_at FROM api_keys
             WHERE $1::text IS NULL OR user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id.map(UserId::as_str))
        .fetch_all(&self.pool)
        .await
    }

    /// Revokes a key; returns false when no unrevoked key has that id. The
    /// table's trigger notifies every instance in the same transaction, so
    /// their caches forget the key as the revocation commits.
    pub async fn revoke(&self, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let rest = token
            .strip_prefix(API_KEY_PREFIX)
            .ok_or(AuthError::Invalid)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::Invalid)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Invalid);
        }
        let presented = secret_hash(secret);
        let ticket = match self.cache.as_deref().map(|c| c.lookup(id, &presented)) {
            Some(Cached::Valid(user_id)) => return Ok(user_id),
            // The key's secret never changes: another digest is another key.
            Some(Cached::WrongSecret) => return Err(AuthError::Invalid),
            Some(Cached::Unknown(ticket)) => Some(ticket),
            None => None,
        };
        let row: Option<(String, String, Option<DateTime<Utc>>)> =
            pg::retry_once(&self.pool, || {
                sqlx::query_as(
                    "SELECT user_id, secret_sha256, revoked_at FROM api_keys WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
            })
            .await?;
        let (user_id, stored_hash, revoked_at) = row.ok_or(AuthError::Invalid)?;
        // Compare digests, not secrets: equal-length hex strings leak nothing
        // useful through timing, since the attacker cannot steer the digest.
        if presented != stored_hash {
            return Err(AuthError::Invalid);
        }
        if revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        let user_id = UserId::parse(user_id).map_err(|_| AuthError::Invalid)?;
        if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
            cache.remember(ticket, id, presented, user_id.clone());
        }
        Ok(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        Authenticator::new(&SecretString::from("s".repeat(32)), ApiKeyStore::new(pool))
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_but_only_byte_for_byte_and_until_it_expires() {
        let auth = authenticator();
        let alice = UserId::parse("alice").unwrap();
        let token = issue_jwt(
            &SecretString::from("s".repeat(32)),
            &alice,
            Utc::now() + chrono::Duration::minutes(5),
        )
        .unwrap();
        assert_eq!(auth.authenticate(&token).await.unwrap().user_id, alice);
        assert!(auth.verified().contains(token.as_str()));
        assert_eq!(auth.authenticate(&token).await.unwrap().user_id, alice);

        // Another signature is another key: verified, and refused.
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.AAAA");
        assert!(matches!(
            auth.authenticate(&forged).await,
            Err(AuthError::Invalid)
        ));

        // A remembered token past its expiry (and the leeway) is refused.
        auth.verified()
            .put(token.clone(), (alice, Utc::now().timestamp() - 31));
        assert!(matches!(
            auth.authenticate(&token).await,
            Err(AuthError::Expired)
        ));
        assert!(!auth.verified().contains(token.as_str()));
    }

    #[tokio::test]
    async fn expiry_follows_the_leeway() {
        let auth = authenticator();
        assert!(auth.unexpired(100, 130));
        assert!(!auth.unexpired(100, 131));
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("a\u{0}").is_err());
        assert!(UserId::parse("x".repeat(129)).is_err());
        assert!(UserId::parse("é".repeat(128)).is_ok());
    }
}
