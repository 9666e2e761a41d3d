//! The Second Brain projector: consumes the events the relay publishes and
//! builds the read models the query service serves. What the read models
//! are (keys, tables, rows, scores, migrations) is the `read_model` crate's;
//! this crate applies events to them.
//!
//! - [`broker`]: the queues and the consume → apply → acknowledge loop.
//! - [`dead_letters`]: attempts counted per event, the bounded dead-letter
//!   queue of references with reasons, parked aggregates, and `projector
//!   dead-letters`.
//! - [`projection`]: the read models, each idempotent and order-safe:
//!   [`projection::search`] (Postgres + pgvector rows with embeddings and
//!   full-text vectors) and [`projection::documents`] (Redis documents,
//!   timelines and indexes).
//! - [`context`]: context vectors (a memory between its neighbours in its
//!   session), made while the search projection is idle; the idle signal
//!   and loop the indexer shares.
//! - [`indexer`]: vectors a batch left pending while a backlog drained,
//!   moved into the nearest-neighbour index while the projection is idle.
//! - [`embedding_cache`]: embeddings by model and content hash.
//! - [`redact`]: memory text kept out of error messages, which outlive an
//!   erase in logs, the ledger and dead letters.
//! - [`source`]: the event store, read to fill gaps, rebuild and verify.
//! - [`rebuild`]: `rebuild-projections`, a replay into a fresh generation
//!   with an atomic switch.
//! - [`verify`]: recompute the expected read state and list differences.
//! - [`startup`], [`settings`], [`cli`]: wiring and configuration.

pub mod broker;
pub mod cli;
pub mod context;
pub mod dead_letters;
pub mod embedding_cache;
pub mod indexer;
pub mod projection;
pub mod rebuild;
pub mod redact;
pub mod settings;
pub mod source;
pub mod startup;
pub mod verify;
