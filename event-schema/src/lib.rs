//! The events of Second Brain and everything needed to read them back: their
//! types, schema versions and upcasters, the envelope and its metadata, and
//! the pure folds from events to the state of a memory or a session.
//!
//! Every service depends on this crate, so it does no I/O, starts no runtime
//! and knows no web framework or event-store library; the write side adapts
//! these types to cqrs-es, the read side to its queries.
//!
//! Parts:
//! - [`memory`]: [`MemoryEvent`], the erasure contract
//!   ([`MEMORY_PRIVATE_FIELDS`]) and the memory state ([`MemoryFacts`],
//!   [`MemoryState`]).
//! - [`session`]: [`SessionEvent`] and the session state.
//! - [`envelope`]: [`EventEnvelope`], [`EventMetadata`] and the flat map the
//!   write side stores it as, and [`StoredEvent::decode`] from a raw row.
//! - [`upcast`](mod@upcast): type names, current versions, routing names ([`EventKind`])
//!   and [`upcast()`](upcast::upcast) of an old payload on read.
//! - [`tag`]: the one normalisation of a tag, for writes and filters alike.
//! - [`fold`]: whole-history and point-in-time folds from envelopes to state.
//! - [`error`]: one error enum per operation.

pub mod envelope;
pub mod error;
pub mod fold;
pub mod memory;
pub mod session;
pub mod tag;
pub mod upcast;

pub use envelope::{Event, EventEnvelope, EventMetadata, StoredEvent};
pub use error::{DecodeError, FoldError, MetadataError, UpcastError};
pub use memory::{MEMORY_PRIVATE_FIELDS, MemoryEvent, MemoryFacts, MemoryState, MemoryStatus};
pub use session::{SessionEvent, SessionFacts, SessionState, SessionStatus};
pub use upcast::{EventKind, needs_upcast, upcast};
