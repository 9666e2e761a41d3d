//! The Second Brain query service: the HTTP read API (reads, search, history). So far it serves its operational endpoints; the read API arrives with the read models.
//!
//! - [`settings`]: configuration from `SB_*` variables.
//! - [`startup`]: the HTTP listener with health and metrics.

pub mod settings;
pub mod startup;
