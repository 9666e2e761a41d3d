//! The query service against the real stack: Postgres with pgvector, Redis,
//! RabbitMQ, and the command service and projector in-process. One binary
//! (one link) for all of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consistency;
mod conversations;
mod erase;
mod history;
mod operations;
mod pending;
mod privileges;
mod quality;
mod rate_limits;
mod reads;
mod redis_connections;
mod restarts;
mod revocation;
mod search;
mod tenancy;
