//! Integration tests of the command service against a real Postgres (and, for
//! the relay, a real RabbitMQ): each test gets its own database, migrated from
//! scratch, and an app on port 0.

// A failed unwrap is a failed test, with its location; that is the point here.
#![allow(clippy::unwrap_used)]

mod auth;
mod bad_input;
mod concurrency;
mod connections;
mod contract;
mod erase;
mod idempotency;
mod operations;
mod privileges;
mod rate_limits;
mod relay;
mod tenancy;
mod writes;
