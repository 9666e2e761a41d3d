//! The Second Brain query service: the HTTP read API over the projections.
//!
//! - [`http`]: the `/v1` routes (documents, lists, timelines, search,
//!   history, point-in-time state) and the OpenAPI document.
//! - [`documents`]: the Redis documents and timelines, and the repair of a
//!   missing document from the read database.
//! - [`rows`]: the read database's lists, filters and keyset pagination.
//! - [`search`]: semantic, keyword and hybrid (reciprocal rank fusion) search.
//! - [`history`]: event streams for audit and point-in-time folds, read from
//!   the event store through a read-only role.
//! - [`cursor`]: opaque pagination cursors.
//! - [`startup`], [`settings`]: wiring and configuration.
//! - [`cli`]: the binary's subcommands (`serve`, `healthcheck`).

pub mod cli;
pub mod cursor;
pub mod documents;
pub mod history;
pub mod http;
pub mod rows;
pub mod search;
pub mod settings;
pub mod startup;
