//! Plumbing the Second Brain services share, so that each service gets the same
//! behaviour from one implementation instead of a copy:
//!
//! - [`settings`]: typed settings read once from `SB_*` environment variables.
//! - [`telemetry`]: JSON (or pretty) `tracing` logs and the Prometheus recorder.
//! - [`problem`]: RFC 9457 `application/problem+json` errors with stable codes.
//! - [`http`]: request ids, correlation ids, request metrics, extractor error
//!   handlers, health and metrics endpoints.
//! - [`auth`]: bearer JWTs and per-user API keys, resolved to a [`auth::Caller`].
//! - [`api_keys`]: the cache of verified API keys and the listener that evicts
//!   revoked ones on every instance.
//! - [`pg`]: Postgres pools that come through a server restart, and the
//!   classification of a lost connection.
//! - [`redis`](mod@redis): the Redis connection and its readiness check.
//! - [`rate_limit`]: per-address and per-user token buckets, 429 problems.
//! - [`healthcheck`]: the `healthcheck` subcommand's probe of a service's own health endpoint.

pub mod api_keys;
pub mod auth;
pub mod healthcheck;
pub mod http;
pub mod pg;
pub mod problem;
pub mod rate_limit;
pub mod redis;
pub mod settings;
pub mod telemetry;

pub use problem::Problem;
