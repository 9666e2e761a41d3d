//! The Second Brain command service: the HTTP write API.
//!
//! - [`domain`]: validated inputs (content, titles, tags, metadata).
//! - [`memory`], [`session`]: the cqrs-es aggregates, pure decisions.
//! - [`store`]: running a command on the Postgres event store (postgres-es),
//!   with ownership, `If-Match`, idempotency keys and retries.
//! - [`http`]: the `/v1` routes, problem mapping and the OpenAPI document.
//! - [`relay`]: the outbox relay, a background task that publishes committed
//!   events to RabbitMQ in commit-safe order.
//! - [`startup`], [`settings`], [`cli`]: wiring, configuration, subcommands.

pub mod cli;
pub mod domain;
pub mod http;
pub mod memory;
pub mod relay;
pub mod session;
pub mod settings;
pub mod startup;
pub mod store;
