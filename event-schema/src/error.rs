//! The crate's errors, one enum per operation, so that a service can map each
//! to its own response with an exhaustive `match`.

use uuid::Uuid;

/// Why a stored payload could not be brought to its current schema version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpcastError {
    #[error("unknown event type `{event_type}` for aggregate `{aggregate_type}`")]
    UnknownEventType {
        aggregate_type: String,
        event_type: String,
    },
    #[error("event version `{version}` is not a positive integer")]
    InvalidVersion { version: String },
    #[error("`{event_type}` version {version} is newer than the newest known, {current}")]
    VersionTooNew {
        event_type: String,
        version: u32,
        current: u32,
    },
    /// A step of the chain is missing: a bug in this crate, caught by its tests.
    #[error("no upcaster from `{event_type}` version {from_version}")]
    MissingUpcaster {
        event_type: String,
        from_version: u32,
    },
    #[error("`{event_type}` version {version} payload is malformed: {reason}")]
    MalformedPayload {
        event_type: String,
        version: u32,
        reason: String,
    },
}

/// Why event metadata could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("event metadata lacks `{0}`")]
    Missing(&'static str),
    #[error("event metadata `{0}` is empty")]
    Empty(&'static str),
    #[error("event metadata `{key}` is not valid: `{value}`")]
    Invalid { key: &'static str, value: String },
    #[error("event metadata is not a JSON object")]
    NotAnObject,
}

/// Why a stored event row could not be turned into a typed envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored event belongs to aggregate type `{found}`, expected `{expected}`")]
    WrongAggregateType {
        expected: &'static str,
        found: String,
    },
    #[error("stored aggregate id `{0}` is not a UUID")]
    InvalidAggregateId(String),
    #[error("stored sequence {0} is not positive")]
    InvalidSequence(i64),
    #[error("stored event type `{stored}` does not match its payload `{payload}`")]
    TypeMismatch {
        stored: String,
        payload: &'static str,
    },
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("`{event_type}` payload does not deserialize")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a stream of envelopes could not be folded into a state.
///
/// Both are caller bugs (the stream must be one aggregate's events in sequence
/// order, from the first), reported rather than asserted because the input
/// comes from storage and a wrong history is worse than a failed read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FoldError {
    #[error("expected sequence {expected}, found {found}")]
    OutOfSequence { expected: u64, found: u64 },
    #[error("expected events of aggregate {expected}, found one of {found}")]
    MixedAggregates { expected: Uuid, found: Uuid },
}
