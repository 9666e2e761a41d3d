//! The integration-test harness of the Second Brain services, in one place.
//!
//! Each service crate's `tests/api` binary once started its stack its own
//! way: three copies of database set-up, queue names, Redis prefixes,
//! teardown threads, token helpers and polling loops, which drifted apart.
//! This crate is that harness, written once. It is only ever a
//! dev-dependency (deploy/check, check 8, refuses a normal or build edge to
//! it), so nothing here reaches a service binary.
//!
//! Every test gets its own databases, exchange, queues and Redis key prefix
//! (STYLE.md, "Tests"), against the real servers that
//! `deploy/native/stack test` runs and names in `SB_TEST_*` variables.
//!
//! Modules, by concern:
//! - [`db`]: the admin URL, private databases, login roles, role-specific
//!   URLs, and an injected fault in a read-model table.
//! - [`pg_cluster`]: a throwaway Postgres cluster for tests that restart or
//!   stop the server.
//! - [`broker`]: the private exchange and queue names, queue probes and
//!   dumps, `rabbitmqctl`, and the one place that builds the projector's
//!   consumer settings and the command service's relay settings.
//! - [`redis`]: the private key prefix and its removal.
//! - [`embedder`]: the local model (loaded once per process) and an OpenAI
//!   embedder against [`fake_openai`], the fake provider's HTTP server.
//! - [`http`]: tokens, whole responses ([`http::Answer`]), problem
//!   assertions and raw requests a client library refuses to send.
//! - [`poll`]: waiting with a deadline, never a bare sleep.
//! - [`process`]: the services' binaries (`healthcheck`, subcommands).
//! - [`teardown`]: what a test leaves behind, removed when it ends.
//! - [`command_app`]: a lone command service on its own database.
//! - [`stack`]: command service, relay, projector and query service
//!   in-process, each optional, on one set of private names.

// A failed unwrap is a failed test, with its location; that is the point here.
#![allow(clippy::unwrap_used)]

pub mod broker;
pub mod command_app;
pub mod db;
pub mod embedder;
pub mod fake_openai;
pub mod http;
pub mod pg_cluster;
pub mod poll;
pub mod process;
pub mod redis;
pub mod stack;
pub mod teardown;

/// A fresh tag for one test's private names (databases, exchange, queues,
/// key prefix): short enough for Postgres' 63-byte identifiers.
pub fn unique_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
