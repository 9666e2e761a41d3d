//! Verified API keys, remembered so that a request with a key costs what one
//! with a JWT costs (no database lookup), and forgotten on every instance the
//! moment the key is revoked anywhere.
//!
//! Revocation reaches every instance through Postgres: a trigger on
//! `api_keys` sends `NOTIFY api_key_revoked, '<key id>'` from the revoking
//! transaction (so the notice leaves exactly when the revocation commits,
//! whichever tool revoked), and each instance listens on a connection of its
//! own ([`spawn_revocation_listener`]). A notice can be missed only while that
//! connection is down, so from the moment it is lost the cache is cleared and
//! bypassed (every key is looked up again) until the listener has subscribed
//! again; an instance starts bypassed for the same reason.
//!
//! A lookup that began before an eviction must not put back what the eviction
//! took out (it may have read the row just before the revocation committed):
//! every eviction moves a generation on, and a lookup remembers its answer only
//! if the generation it started in is still current.
//!
//! Entries are kept under the key's id and hold the SHA-256 of its secret,
//! never the secret: a presented key hits only if its secret hashes to the
//! same digest, the comparison the database lookup makes. Revoked and unknown
//! keys are never remembered. A time-to-live bounds an entry's life should
//! every other safeguard fail.

use crate::auth::UserId;
use crate::pg;
use lru::LruCache;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The channel the `api_keys` trigger notifies, with the key id as payload.
pub const REVOCATION_CHANNEL: &str = "api_key_revoked";

/// The payload that stands for every key (key ids are hex, so it is no id).
pub const ALL_KEYS: &str = "*";

/// How many verified keys an instance remembers.
pub const DEFAULT_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).expect("non-zero");

/// How long a verified key is remembered. Revocation does not wait for it
/// (the notice evicts at once); it only bounds the damage of a notice lost
/// in a way the listener could not see.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Verified API keys; see the module docs.
#[derive(Debug)]
pub struct ApiKeyCache {
    state: Mutex<State>,
    ttl: Duration,
}

struct State {
    entries: LruCache<String, Entry>,
    /// Whether revocation notices are arriving: false until the listener
    /// has subscribed and again from the moment its connection is lost.
    live: bool,
    /// Moves on with every eviction, loss and (re)subscription.
    generation: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("entries", &self.entries.len())
            .field("live", &self.live)
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    secret_sha256: String,
    user_id: UserId,
    verified_at: Instant,
}

/// What the cache knows of a presented key.
#[derive(Debug)]
pub(crate) enum Cached {
    /// Verified before, with this secret: the owner.
    Valid(UserId),
    /// A key with this id was verified with another secret.
    WrongSecret,
    /// Not known: look it up, and pass the ticket to [`ApiKeyCache::remember`].
    Unknown(Ticket),
}

/// Leave to remember the answer of one lookup: the generation it began in,
/// or none while the cache is bypassed.
#[derive(Debug)]
pub(crate) struct Ticket(Option<u64>);

impl ApiKeyCache {
    /// An empty cache, bypassed until a listener subscribes for it.
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                entries: LruCache::new(capacity),
                live: false,
                generation: 0,
            }),
            ttl,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent; a panic elsewhere cannot
        // leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lookup(&self, id: &str, secret_sha256: &str) -> Cached {
        let mut state = self.state();
        if !state.live {
            return Cached::Unknown(Ticket(None));
        }
        let ticket = Ticket(Some(state.generation));
        let Some(entry) = state.entries.get(id) else {
            return Cached::Unknown(ticket);
        };
        if entry.verified_at.elapsed() >= self.ttl {
            state.entries.pop(id);
            return Cached::Unknown(ticket);
        }
        if entry.secret_sha256 == secret_sha256 {
            Cached::Valid(entry.user_id.clone())
        } else {
            Cached::WrongSecret
        }
    }

    /// Remembers a key the database has just verified, unless an eviction
    /// or a loss came in between.
    pub(crate) fn remember(
        &self,
        ticket: Ticket,
        id: &str,
        secret_sha256: String,
        user_id: UserId,
    ) {
        let Ticket(Some(generation)) = ticket else {
            return;
        };
        let mut state = self.state();
        if state.live && state.generation == generation {
            state.entries.put(
                id.to_owned(),
                Entry {
                    secret_sha256,
                    user_id,
                    verified_at: Instant::now(),
                },
            );
        }
    }

    /// Forgets key `id` (it was revoked or deleted), or every key for
    /// [`ALL_KEYS`] (the table was truncated).
    pub fn evict(&self, id: &str) {
        let mut state = self.state();
        if id == ALL_KEYS {
            state.entries.clear();
        } else {
            state.entries.pop(id);
        }
        state.generation += 1;
    }

    /// Notices may be missed from now on: forget everything and look every
    /// key up until [`ApiKeyCache::subscribed`].
    fn lost(&self) {
        let mut state = self.state();
        state.live = false;
        state.entries.clear();
        state.generation += 1;
    }

    /// Notices arrive again. What was looked up while they did not may
    /// predate a revocation, so the cache starts empty.
    fn subscribed(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.generation += 1;
        state.live = true;
    }

    /// Whether revocation notices are arriving, so verified keys are kept.
    pub fn is_live(&self) -> bool {
        self.state().live
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Listens for revocations on the database `pool` connects to, on a
/// connection of its own, and evicts from `cache`; it stops once the cache
/// is dropped. Needs a Tokio runtime.
pub fn spawn_revocation_listener(
    pool: &PgPool,
    cache: &Arc<ApiKeyCache>,
) -> tokio::task::JoinHandle<()> {
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*pool.connect_options()).clone());
    tokio::spawn(listen(listener_pool, Arc::downgrade(cache)))
}

/// Why [`receive`] returned.
enum Stopped {
    CacheDropped,
    Lost(Option<sqlx::Error>),
}

async fn listen(pool: PgPool, cache: Weak<ApiKeyCache>) {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    const LONGEST_PAUSE: Duration = Duration::from_secs(5);
    let mut pause = FIRST_PAUSE;
    loop {
        match subscribe(&pool).await {
            Ok(listener) => {
                let Some(live) = cache.upgrade() else { return };
                live.subscribed();
                drop(live);
                tracing::info!(
                    channel = REVOCATION_CHANNEL,
                    "listening for API key revocations"
                );
                pause = FIRST_PAUSE;
                match receive(listener, &cache).await {
                    Stopped::CacheDropped => return,
                    Stopped::Lost(error) => {
                        let Some(live) = cache.upgrade() else { return };
                        live.lost();
                        tracing::warn!(
                            error = error.as_ref().map(tracing::field::display),
                            "revocation listener lost its connection; API keys are looked up until it is back"
                        );
                        // Most likely the server restarted: the service's pools
                        // hold dead connections too, discard them before a
                        // request finds one.
                        if error.as_ref().is_none_or(pg::connection_lost) {
                            pg::mark_lost(&pool);
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for API key revocations yet");
            }
        }
        if cache.strong_count() == 0 {
            return;
        }
        // Not a synchronisation: the pause between reconnection attempts.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection must end `try_recv` at once, so the cache is
    // bypassed until this loop has subscribed again.
    listener.eager_reconnect(false);
    listener.listen(REVOCATION_CHANNEL).await?;
    Ok(listener)
}

async fn receive(mut listener: PgListener, cache: &Weak<ApiKeyCache>) -> Stopped {
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) => {
                let Some(live) = cache.upgrade() else {
                    return Stopped::CacheDropped;
                };
                tracing::debug!(key = notice.payload(), "API key revoked");
                live.evict(notice.payload());
            }
            Ok(None) => return Stopped::Lost(None),
            Err(error) => return Stopped::Lost(Some(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice").expect("valid")
    }

    fn live_cache(ttl: Duration) -> ApiKeyCache {
        let cache = ApiKeyCache::new(NonZeroUsize::new(4).expect("non-zero"), ttl);
        cache.subscribed();
        cache
    }

    fn ticket(cache: &ApiKeyCache, id: &str) -> Ticket {
        match cache.lookup(id, "digest") {
            Cached::Unknown(ticket) => ticket,
            other => panic!("expected a miss, got {other:?}"),
        }
    }

    #[test]
    fn a_verified_key_is_remembered_only_with_its_own_secret() {
        let cache = live_cache(Duration::from_secs(3600));
        let t = ticket(&cache, "k1");
        cache.remember(t, "k1", "digest".into(), alice());
        assert!(matches!(cache.lookup("k1", "digest"), Cached::Valid(user) if user == alice()));
        assert!(matches!(cache.lookup("k1", "other"), Cached::WrongSecret));
    }

    #[test]
    fn an_eviction_during_a_lookup_keeps_its_answer_out() {
        let cache = live_cache(Duration::from_secs(3600));
        let t = ticket(&cache, "k1");
        // The revocation commits and its notice arrives while the lookup
        // that read the row before it is still on its way back.
        cache.evict("k1");
        cache.remember(t, "k1", "digest".into(), alice());
        assert!(matches!(cache.lookup("k1", "digest"), Cached::Unknown(_)));
    }

    #[test]
    fn nothing_is_remembered_while_notices_may_be_missed() {
        let cache = ApiKeyCache::new(NonZeroUsize::new(4).expect("non-zero"), Duration::MAX);
        assert!(!cache.is_live(), "bypassed until subscribed");
        let t = ticket(&cache, "k1");
        cache.remember(t, "k1", "digest".into(), alice());
        assert!(cache.is_empty());

        cache.subscribed();
        let t = ticket(&cache, "k1");
        cache.remember(t, "k1", "digest".into(), alice());
        assert_eq!(cache.len(), 1);
        // A lookup in flight when the connection drops must not land either.
        let t = ticket(&cache, "k2");
        cache.lost();
        assert!(cache.is_empty(), "cleared on loss");
        cache.remember(t, "k2", "digest".into(), alice());
        assert!(cache.is_empty());
        assert!(matches!(
            cache.lookup("k1", "digest"),
            Cached::Unknown(Ticket(None))
        ));
    }

    #[test]
    fn an_entry_past_its_time_to_live_is_looked_up_again() {
        let cache = live_cache(Duration::ZERO);
        let t = ticket(&cache, "k1");
        cache.remember(t, "k1", "digest".into(), alice());
        assert!(matches!(cache.lookup("k1", "digest"), Cached::Unknown(_)));
        assert!(cache.is_empty());
    }
}
