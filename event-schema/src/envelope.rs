//! The envelope around a stored event, its metadata, and the decoding of a
//! raw event-store row into a typed envelope.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{DecodeError, MetadataError};
use crate::memory::MemoryEvent;
use crate::session::SessionEvent;
use crate::upcast::{self, EventKind};

/// An event payload type: one per aggregate.
pub trait Event: Serialize + DeserializeOwned {
    const AGGREGATE_TYPE: &'static str;
    fn kind(&self) -> EventKind;
}

impl Event for MemoryEvent {
    const AGGREGATE_TYPE: &'static str = crate::memory::AGGREGATE_TYPE;
    fn kind(&self) -> EventKind {
        MemoryEvent::kind(self)
    }
}

impl Event for SessionEvent {
    const AGGREGATE_TYPE: &'static str = crate::session::AGGREGATE_TYPE;
    fn kind(&self) -> EventKind {
        SessionEvent::kind(self)
    }
}

/// One event with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<E> {
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// Position within its aggregate, from 1: the aggregate's version after it.
    pub sequence: u64,
    /// Position in the whole event store, for ordering across aggregates.
    pub global_position: i64,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
    pub payload: E,
}

/// The metadata keys as the write side stores them.
pub mod keys {
    pub const OWNER_ID: &str = "owner_id";
    pub const ACTOR_ID: &str = "actor_id";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const REQUEST_ID: &str = "request_id";
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    pub const REQUEST_HASH: &str = "request_hash";
    pub const RESPONSE_STATUS: &str = "response_status";
}

/// Who did it and which request it came from.
///
/// The write side keeps this as a flat string-to-string map (what cqrs-es
/// stores), hence [`EventMetadata::to_map`] and [`EventMetadata::from_map`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The user who owns the aggregate: every read is scoped by it.
    pub owner_id: String,
    /// Who issued the command; the owner until delegation exists.
    pub actor_id: String,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Kept with the request hash and response status so that a retried
    /// command can be answered from the event store alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u16>,
}

impl EventMetadata {
    /// Metadata for a command the owner issued themself.
    pub fn new(owner_id: impl Into<String>, correlation_id: impl Into<String>) -> Self {
        let owner_id = owner_id.into();
        Self {
            actor_id: owner_id.clone(),
            owner_id,
            correlation_id: correlation_id.into(),
            causation_id: None,
            request_id: None,
            idempotency_key: None,
            request_hash: None,
            response_status: None,
        }
    }

    /// The flat map the write side stores; absent optional values are left out.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert(keys::OWNER_ID.to_owned(), self.owner_id.clone());
        map.insert(keys::ACTOR_ID.to_owned(), self.actor_id.clone());
        map.insert(keys::CORRELATION_ID.to_owned(), self.correlation_id.clone());
        let optional = [
            (keys::CAUSATION_ID, &self.causation_id),
            (keys::REQUEST_ID, &self.request_id),
            (keys::IDEMPOTENCY_KEY, &self.idempotency_key),
            (keys::REQUEST_HASH, &self.request_hash),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(status) = self.response_status {
            map.insert(keys::RESPONSE_STATUS.to_owned(), status.to_string());
        }
        map
    }

    /// Reads the flat map back. Unknown keys are ignored so that metadata
    /// can grow without breaking older readers; a missing `actor_id` means
    /// the owner acted.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let required = |key: &'static str| match map.get(key) {
            None => Err(MetadataError::Missing(key)),
            Some(v) if v.is_empty() => Err(MetadataError::Empty(key)),
            Some(v) => Ok(v.clone()),
        };
        let optional = |key: &str| map.get(key).cloned();
        let owner_id = required(keys::OWNER_ID)?;
        let response_status = match map.get(keys::RESPONSE_STATUS) {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| MetadataError::Invalid {
                key: keys::RESPONSE_STATUS,
                value: v.clone(),
            })?),
        };
        Ok(Self {
            actor_id: optional(keys::ACTOR_ID).unwrap_or_else(|| owner_id.clone()),
            owner_id,
            correlation_id: required(keys::CORRELATION_ID)?,
            causation_id: optional(keys::CAUSATION_ID),
            request_id: optional(keys::REQUEST_ID),
            idempotency_key: optional(keys::IDEMPOTENCY_KEY),
            request_hash: optional(keys::REQUEST_HASH),
            response_status,
        })
    }

    /// Reads the metadata column as JSON. Strings are expected; numbers are
    /// accepted (as their text) and nulls count as absent, because a
    /// hand-written row or another writer may produce them.
    pub fn from_json(value: &Value) -> Result<Self, MetadataError> {
        let object = value.as_object().ok_or(MetadataError::NotAnObject)?;
        let mut map = HashMap::with_capacity(object.len());
        for (key, value) in object {
            match value {
                Value::String(s) => {
                    map.insert(key.clone(), s.clone());
                }
                Value::Number(n) => {
                    map.insert(key.clone(), n.to_string());
                }
                Value::Null => {}
                // Only a key this crate reads can make the metadata invalid.
                other => {
                    if let Some(key) = known_key(key) {
                        return Err(MetadataError::Invalid {
                            key,
                            value: other.to_string(),
                        });
                    }
                }
            }
        }
        Self::from_map(&map)
    }
}

fn known_key(key: &str) -> Option<&'static str> {
    [
        keys::OWNER_ID,
        keys::ACTOR_ID,
        keys::CORRELATION_ID,
        keys::CAUSATION_ID,
        keys::REQUEST_ID,
        keys::IDEMPOTENCY_KEY,
        keys::REQUEST_HASH,
        keys::RESPONSE_STATUS,
    ]
    .into_iter()
    .find(|k| *k == key)
}

/// An event-store row as read, before upcasting: the column types of the
/// store (`aggregate_id` is text and `sequence` a bigint in postgres-es).
/// Also the body of the message the relay publishes for each event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
    pub metadata: Value,
}

impl StoredEvent {
    /// Upcasts the payload to its current version and types the row.
    ///
    /// The envelope's `schema_version` is the version after upcasting, since
    /// that is the shape its payload now has.
    pub fn decode<E: Event>(self) -> Result<EventEnvelope<E>, DecodeError> {
        if self.aggregate_type != E::AGGREGATE_TYPE {
            return Err(DecodeError::WrongAggregateType {
                expected: E::AGGREGATE_TYPE,
                found: self.aggregate_type,
            });
        }
        let aggregate_id = Uuid::parse_str(&self.aggregate_id)
            .map_err(|_| DecodeError::InvalidAggregateId(self.aggregate_id.clone()))?;
        let sequence = u64::try_from(self.sequence)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or(DecodeError::InvalidSequence(self.sequence))?;
        let metadata = EventMetadata::from_json(&self.metadata)?;
        let (_, payload) = upcast::upcast(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
            self.payload,
        )?;
        let payload: E =
            serde_json::from_value(payload).map_err(|source| DecodeError::Payload {
                event_type: self.event_type.clone(),
                source,
            })?;
        let kind = payload.kind();
        if kind.event_type != self.event_type {
            return Err(DecodeError::TypeMismatch {
                stored: self.event_type,
                payload: kind.event_type,
            });
        }
        Ok(EventEnvelope {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id,
            sequence,
            global_position: self.global_position,
            event_type: self.event_type,
            schema_version: kind.schema_version,
            recorded_at: self.recorded_at,
            metadata,
            payload,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(event_type: &str, version: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::from_u128(1),
            aggregate_type: "Memory".to_owned(),
            aggregate_id: Uuid::from_u128(2).to_string(),
            sequence: 1,
            global_position: 10,
            event_type: event_type.to_owned(),
            event_version: version.to_owned(),
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            payload,
            metadata: json!({"owner_id": "u1", "correlation_id": "c1"}),
        }
    }

    #[test]
    fn metadata_without_optional_keys_reads_as_none_and_the_owner_as_actor() {
        let m = EventMetadata::from_json(&json!({"owner_id": "u", "correlation_id": "c"})).unwrap();
        assert_eq!(m, EventMetadata::new("u", "c"));
    }

    #[test]
    fn metadata_without_owner_or_correlation_is_rejected() {
        assert_eq!(
            EventMetadata::from_json(&json!({"correlation_id": "c"})),
            Err(MetadataError::Missing(keys::OWNER_ID))
        );
        assert_eq!(
            EventMetadata::from_json(&json!({"owner_id": "u"})),
            Err(MetadataError::Missing(keys::CORRELATION_ID))
        );
        assert_eq!(
            EventMetadata::from_json(&json!({"owner_id": "", "correlation_id": "c"})),
            Err(MetadataError::Empty(keys::OWNER_ID))
        );
        assert_eq!(
            EventMetadata::from_json(&json!([])),
            Err(MetadataError::NotAnObject)
        );
    }

    #[test]
    fn metadata_accepts_numbers_and_ignores_unknown_keys() {
        let m = EventMetadata::from_json(&json!({
            "owner_id": "u", "correlation_id": "c", "response_status": 201,
            "causation_id": null, "something_new": {"x": 1}
        }))
        .unwrap();
        assert_eq!(m.response_status, Some(201));
        assert_eq!(m.causation_id, None);
        assert!(matches!(
            EventMetadata::from_json(&json!({
                "owner_id": "u", "correlation_id": "c", "response_status": "teapot"
            })),
            Err(MetadataError::Invalid { .. })
        ));
    }

    #[test]
    fn a_v1_row_decodes_into_a_current_envelope() {
        let envelope = row(
            "MemoryCaptured",
            "1",
            json!({"MemoryCaptured": {"content": "c", "tags": "a,b"}}),
        )
        .decode::<MemoryEvent>()
        .unwrap();
        assert_eq!(envelope.schema_version, 2);
        assert_eq!(envelope.aggregate_id, Uuid::from_u128(2));
        assert_eq!(envelope.metadata.owner_id, "u1");
        match envelope.payload {
            MemoryEvent::MemoryCaptured { tags, .. } => assert_eq!(tags, vec!["a", "b"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_row_whose_type_disagrees_with_its_payload_is_rejected() {
        let err = row("MemoryDeleted", "1", json!({"MemoryRestored": {}}))
            .decode::<MemoryEvent>()
            .unwrap_err();
        assert!(matches!(err, DecodeError::TypeMismatch { .. }), "{err:?}");
    }

    #[test]
    fn a_row_of_another_aggregate_or_with_a_bad_sequence_is_rejected() {
        let err = row("MemoryDeleted", "1", json!({"MemoryDeleted": {}}))
            .decode::<SessionEvent>()
            .unwrap_err();
        assert!(matches!(err, DecodeError::WrongAggregateType { .. }));
        let mut bad = row("MemoryDeleted", "1", json!({"MemoryDeleted": {}}));
        bad.sequence = 0;
        assert!(matches!(
            bad.decode::<MemoryEvent>(),
            Err(DecodeError::InvalidSequence(0))
        ));
    }
}
