//! The read models' contract: what the projector writes and the query service
//! (and `projector verify`) reads. Besides `event-schema` and `event-log`, it
//! is the only code the two share, so neither reaches into the other's crate.
//!
//! - [`documents`]: the Redis document model: key layout, the active
//!   generation pointer, the compare-and-set script every write goes
//!   through, and the scores of its sorted sets.
//! - [`tables`]: the search read model in Postgres: per-generation table
//!   names, the views over the active one, `projection_state`, and the rows
//!   with their one mapping to memory and session states.
//! - [`MIGRATOR`]: the read database's migrations.
//!
//! Projection names are stable: queue suffixes, metric labels, dead-letter
//! headers and the keys of `projection_state`.

pub mod documents;
pub mod tables;

/// The search projection: Postgres rows with embeddings and full-text vectors.
pub const SEARCH: &str = "search";

/// The document projection: Redis documents, timelines and indexes.
pub const DOCUMENTS: &str = "documents";

/// Every projection, in the order the projector starts them.
pub const PROJECTIONS: [&str; 2] = [SEARCH, DOCUMENTS];

/// The migrations of the read-model database, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/read-model");
