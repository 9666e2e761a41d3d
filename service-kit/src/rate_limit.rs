//! Rate limits: token buckets per client address and per user, and a cap on
//! concurrent work per user.
//!
//! - [`RateLimiter`] holds two keyed GCRA limiters (`governor`): one keyed by
//!   the client address, checked before anything else, so a flood of bad
//!   credentials is refused before it can reach the API-key lookup in the
//!   database; one keyed by the authenticated user, checked once the bearer
//!   credential is verified. Register it as `web::Data<RateLimiter>` and wrap
//!   the app in [`rate_limit`].
//! - [`TrustedProxies`] decides the client address: the peer address, or the
//!   address a trusted reverse proxy put in `X-Forwarded-For`.
//! - [`ConcurrencyCap`] bounds how many long-running requests (the query
//!   service's read-your-writes waits) one user has in flight.
//!
//! A refused request is a 429 `rate_limited` problem with `Retry-After` in
//! whole seconds, rounded up, and counts in
//! `http_rate_limited_total{scope="ip"|"user"|"concurrency"}`. The health and
//! metrics endpoints are never limited: probes and scrapes must not fail
//! because a client is noisy.

use crate::auth::{Authenticator, UserId};
use crate::problem::{Code, Problem};
use crate::settings::SettingsError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Routes no limit applies to (their route templates, so no path can pose
/// as one).
const UNLIMITED_ROUTES: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

/// How often a limiter forgets the keys whose buckets have filled up again,
/// which bounds its memory to the keys seen in about this long.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The slowest refill a setting may ask for: one request a day.
const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
const MAX_PER_SECOND: f64 = 1_000_000.0;

/// The defaults, shared by both services' settings. Generous for one person
/// or one agent (a burst of 200, then 50 requests a second), yet a client
/// that loops runs dry within seconds; the per-address limit is twice the
/// per-user one, as it also covers users behind one address (a NAT, an
/// office), and it is all an unauthenticated client gets.
pub fn default_user_per_second() -> f64 {
    50.0
}
pub fn default_user_burst() -> u32 {
    200
}
pub fn default_ip_per_second() -> f64 {
    100.0
}
pub fn default_ip_burst() -> u32 {
    400
}

/// One token bucket as configured: the sustained rate and the burst a full
/// bucket allows. A rate of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// The `governor` quota, or `None` when the limit is off; `names` are the
    /// two settings, for the error.
    fn quota(self, names: (&'static str, &'static str)) -> Result<Option<Quota>, SettingsError> {
        let invalid = |name, reason: String| Err(SettingsError::Invalid { name, reason });
        if self.per_second == 0.0 {
            return Ok(None);
        }
        if !self.per_second.is_finite()
            || !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&self.per_second)
        {
            return invalid(
                names.0,
                format!(
                    "must be 0 (no limit) or between {MIN_PER_SECOND:.8} (one a day) and {MAX_PER_SECOND}"
                ),
            );
        }
        let Some(burst) = NonZeroU32::new(self.burst).filter(|b| b.get() <= 1_000_000) else {
            return invalid(names.1, "must be between 1 and 1000000".to_owned());
        };
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Ok(Quota::with_period(period).map(|q| q.allow_burst(burst)))
    }
}

/// The validated rate-limit settings of a service.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    per_user: Option<Quota>,
    per_ip: Option<Quota>,
    trusted_proxies: TrustedProxies,
}

impl RateLimitConfig {
    /// Validates `SB_RATE_LIMIT_USER_*`, `SB_RATE_LIMIT_IP_*` and
    /// `SB_TRUSTED_PROXIES`, as each service's settings read them.
    pub fn new(user: Rate, ip: Rate, trusted_proxies: &str) -> Result<Self, SettingsError> {
        Ok(Self {
            per_user: user.quota(("RATE_LIMIT_USER_PER_SECOND", "RATE_LIMIT_USER_BURST"))?,
            per_ip: ip.quota(("RATE_LIMIT_IP_PER_SECOND", "RATE_LIMIT_IP_BURST"))?,
            trusted_proxies: TrustedProxies::parse(trusted_proxies).map_err(|reason| {
                SettingsError::Invalid {
                    name: "TRUSTED_PROXIES",
                    reason,
                }
            })?,
        })
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma- or space-separated list of addresses and CIDR networks, e.g.
    /// `10.0.0.0/8, 192.168.1.5`; empty trusts no proxy.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split([',', ' '])
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("`{item}` is not an IP address or CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy.
    /// Then `X-Forwarded-For` is read from the right (each proxy appends the
    /// address it was connected from) past the trusted proxies; the first
    /// address not trusted is the client. Anything to its left was written
    /// by the client itself and is ignored. A malformed entry stops the walk
    /// at the last proxy that was trusted, which then counts as the client:
    /// it is what the evidence supports.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let forwarded: Vec<&str> = headers
            .get_all(header::X_FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in forwarded.iter().rev() {
            let Ok(address) = hop.parse::<IpAddr>() else {
                break;
            };
            client = address.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The key of a client address. An IPv6 host usually holds a whole /64, so
/// limiting one of its addresses would limit nothing: the /64 is the key.
fn ip_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One keyed limiter with its periodic clean-up.
struct Buckets<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    last_sweep: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes a token for `key`, or says how long until one is free.
    fn check(&self, key: &K) -> Result<(), Duration> {
        self.sweep();
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets the keys whose buckets are full again (they are the same as
    /// new ones), at most once per [`SWEEP_EVERY`], on whichever request
    /// comes by: no task to start or stop. Only one request sweeps at a time;
    /// the others go on.
    fn sweep(&self) {
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() < SWEEP_EVERY {
            return;
        }
        *last = Instant::now();
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The per-address and per-user limiters of one service; `web::Data` of it
/// is what [`rate_limit`] reads.
pub struct RateLimiter {
    per_ip: Option<Buckets<IpAddr>>,
    per_user: Option<Buckets<UserId>>,
    trusted_proxies: TrustedProxies,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_ip", &self.per_ip.as_ref().map(|b| b.limiter.len()))
            .field("per_user", &self.per_user.as_ref().map(|b| b.limiter.len()))
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_ip: config.per_ip.map(Buckets::new),
            per_user: config.per_user.map(Buckets::new),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    fn check_ip(&self, req: &ServiceRequest) -> Result<(), Problem> {
        let (Some(buckets), Some(peer)) = (&self.per_ip, req.peer_addr()) else {
            return Ok(());
        };
        let client = self.trusted_proxies.client_ip(peer.ip(), req.headers());
        buckets.check(&ip_key(client)).map_err(|wait| {
            too_many_requests("ip", "too many requests from this client address", wait)
        })
    }

    /// Verifies the bearer credential, when there is one, and takes a token
    /// from its user's bucket. No credential: nothing to do here, the handler
    /// answers 401 if it needs one. A bad one is answered here, as the
    /// handler would, so that the request goes no further.
    async fn check_user(&self, req: &ServiceRequest) -> Result<(), Problem> {
        let Some(buckets) = &self.per_user else {
            return Ok(());
        };
        let Some(token) = bearer_token(req.headers()) else {
            return Ok(());
        };
        let Some(authenticator) = req.app_data::<web::Data<Authenticator>>() else {
            tracing::error!("no Authenticator registered as app data");
            return Err(Problem::internal());
        };
        let caller = authenticator.authenticate(token).await?;
        buckets
            .check(&caller.user_id)
            .map_err(|wait| too_many_requests("user", "too many requests for this user", wait))?;
        // The handler's `Caller` extractor takes the caller verified here
        // instead of verifying the credential a second time.
        req.extensions_mut().insert(caller);
        Ok(())
    }
}

/// The bearer credential, as the `Caller` extractor reads it.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The 429 answer, counted under `scope`.
pub fn too_many_requests(scope: &'static str, detail: &str, wait: Duration) -> Problem {
    metrics::counter!("http_rate_limited_total", "scope" => scope).increment(1);
    // Whole seconds, rounded up: a client that waits this long finds a token.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = u32::try_from(seconds.max(1)).unwrap_or(u32::MAX);
    Problem::new(Code::RateLimited)
        .with_detail(format!("{detail}; retry after {seconds} s"))
        .with_retry_after(seconds)
}

/// Middleware: the per-address limit, then authentication and the per-user
/// limit, before the request reaches its handler. Mount it inside
/// `observe_requests`, so refusals are logged and measured like any answer.
pub async fn rate_limit<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let unlimited = req
        .match_pattern()
        .is_some_and(|route| UNLIMITED_ROUTES.contains(&route.as_str()));
    if !unlimited {
        let Some(limiter) = req.app_data::<web::Data<RateLimiter>>().cloned() else {
            tracing::error!("no RateLimiter registered as app data");
            return Ok(refuse(req, &Problem::internal()));
        };
        let checked = match limiter.check_ip(&req) {
            Ok(()) => limiter.check_user(&req).await,
            refused => refused,
        };
        if let Err(problem) = checked {
            return Ok(refuse(req, &problem));
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn refuse<B>(req: ServiceRequest, problem: &Problem) -> ServiceResponse<EitherBody<B>> {
    req.into_response(problem.error_response())
        .map_into_right_body()
}

/// A cap on how many requests of one kind each user has in flight at once: a
/// counting semaphore per key that is only ever tried, never waited on (a
/// request over the cap is refused, not queued). A key is in the map only
/// while it holds a slot, so the map is never larger than the number of
/// requests in flight.
#[derive(Debug, Clone)]
pub struct ConcurrencyCap {
    per_key: u32,
    in_flight: InFlight,
}

/// The slots held, per key.
type InFlight = Arc<Mutex<HashMap<String, u32>>>;

impl ConcurrencyCap {
    /// At most `per_key` at once for each key; 0 is no cap.
    pub fn new(per_key: u32) -> Self {
        Self {
            per_key,
            in_flight: Arc::default(),
        }
    }

    /// A slot for `key`, held until dropped; a 429 problem when `key` holds
    /// them all. A slot is short-lived, so a second is the retry hint.
    pub fn try_acquire(&self, key: &str) -> Result<Slot, Problem> {
        if self.per_key == 0 {
            return Ok(Slot(None));
        }
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = in_flight.entry(key.to_owned()).or_insert(0);
        if *held >= self.per_key {
            return Err(too_many_requests(
                "concurrency",
                &format!("at most {} such requests per user at once", self.per_key),
                Duration::from_secs(1),
            ));
        }
        *held += 1;
        Ok(Slot(Some((self.in_flight.clone(), key.to_owned()))))
    }
}

/// A slot of a [`ConcurrencyCap`], given back on drop.
#[derive(Debug)]
pub struct Slot(Option<(InFlight, String)>);

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((in_flight, key)) = self.0.take() else {
            return;
        };
        let mut in_flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = in_flight.get_mut(&key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                in_flight.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::http::header::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::X_FORWARDED_FOR,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let none = TrustedProxies::parse("").unwrap();
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(none.client_ip(ip("10.0.0.2"), &headers), ip("10.0.0.2"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_what_the_client_wrote_is_ignored() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.5").unwrap();
        let peer = ip("10.0.0.2");
        // The client sent a forged first entry; the proxy appended its peer.
        let headers = forwarded(&["198.51.100.1, 203.0.113.7"]);
        assert_eq!(trusted.client_ip(peer, &headers), ip("203.0.113.7"));
        // Two trusted hops, in two header lines.
        let headers = forwarded(&["198.51.100.1, 203.0.113.7", "192.168.1.5"]);
        assert_eq!(trusted.client_ip(peer, &headers), ip("203.0.113.7"));
        // An untrusted peer's header counts for nothing.
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(trusted.client_ip(peer, &HeaderMap::new()), peer);
        // Garbage stops the walk at the last trusted hop.
        let headers = forwarded(&["203.0.113.7, not-an-address"]);
        assert_eq!(trusted.client_ip(peer, &headers), peer);
    }

    #[test]
    fn trusted_proxies_are_validated() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy").is_err());
        let parsed = TrustedProxies::parse("::1,127.0.0.1 fd00::/8").unwrap();
        assert!(parsed.trusts(ip("::ffff:127.0.0.1")));
        assert!(parsed.trusts(ip("fd12::1")));
        assert!(!parsed.trusts(ip("127.0.0.2")));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_bit_prefix() {
        assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(ip_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn rates_are_validated_and_zero_is_off() {
        let rate = |per_second, burst| Rate { per_second, burst };
        let names = ("A", "B");
        assert!(rate(0.0, 0).quota(names).unwrap().is_none());
        assert!(rate(10.0, 20).quota(names).unwrap().is_some());
        assert!(rate(10.0, 0).quota(names).is_err());
        assert!(rate(-1.0, 5).quota(names).is_err());
        assert!(rate(f64::NAN, 5).quota(names).is_err());
        assert!(rate(1e-9, 5).quota(names).is_err());
    }

    #[test]
    fn an_empty_bucket_says_how_long_until_the_next_token() {
        let quota = Rate {
            per_second: 1.0 / 3600.0,
            burst: 2,
        }
        .quota(("A", "B"))
        .unwrap()
        .unwrap();
        let buckets = Buckets::new(quota);
        assert!(buckets.check(&"a").is_ok());
        assert!(buckets.check(&"a").is_ok());
        let wait = buckets.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600));
        assert!(buckets.check(&"b").is_ok());
        let problem = too_many_requests("user", "x", wait);
        assert_eq!(problem.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(problem.code, Code::RateLimited);
    }

    #[test]
    fn a_concurrency_cap_counts_per_key_and_forgets_idle_keys() {
        let cap = ConcurrencyCap::new(2);
        let a1 = cap.try_acquire("a").unwrap();
        let _a2 = cap.try_acquire("a").unwrap();
        let refused = cap.try_acquire("a").unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        let b = cap.try_acquire("b").unwrap();
        drop(a1);
        let _a3 = cap.try_acquire("a").unwrap();
        drop(b);
        assert!(!cap.in_flight.lock().unwrap().contains_key("b"));
        let off = ConcurrencyCap::new(0);
        let _many: Vec<_> = (0..10).map(|_| off.try_acquire("a").unwrap()).collect();
    }
}
